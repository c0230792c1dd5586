package capvend

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	capvendv1 "capvend.dev/client/gen/capvend/v1"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeVending is an in-process VendingService whose WatchSession follows a script, to hold
// the manager to each reason the real server can answer with.
type fakeVending struct {
	capvendv1.UnimplementedVendingServiceServer
	addr  string
	watch func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error

	mu   sync.Mutex
	reqs []*capvendv1.WatchSessionRequest
}

func startFake(t *testing.T, watch func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error) *fakeVending {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVending{addr: lis.Addr().String(), watch: watch}
	srv := grpc.NewServer()
	capvendv1.RegisterVendingServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeVending) WatchSession(req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	f.mu.Unlock()
	return f.watch(n, req, s)
}

func (f *fakeVending) requests() []*capvendv1.WatchSessionRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*capvendv1.WatchSessionRequest(nil), f.reqs...)
}

func refusal(code codes.Code, reason Reason, md map[string]string) error {
	st, _ := status.New(code, string(reason)).WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: string(reason), Metadata: md})
	return st.Err()
}

// serveTokens sends a token for every grant of req, then holds the stream open.
func serveTokens(req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse], resume string) error {
	now := time.Now()
	for i, g := range req.GetGrants() {
		err := s.Send(&capvendv1.WatchSessionResponse{ResumeToken: resume, Event: &capvendv1.WatchSessionResponse_TokenIssued{TokenIssued: &capvendv1.TokenIssued{
			GrantIndex: uint32(i),
			Token: &capvendv1.Token{TokenId: "tok-" + g.GetResource() + "-" + resume, AccessToken: "jwt", Resource: g.GetResource(), Scopes: g.GetScopes(),
				IssuedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(time.Hour))},
		}}})
		if err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

func fakeManager(t *testing.T, endpoints []string, resume string) (*CredentialManager, chan Event) {
	t.Helper()
	events := make(chan Event, 64)
	m, err := New(context.Background(), Options{
		Endpoints:            endpoints,
		SessionCredential:    "ses_x.secret",
		Grants:               []Grant{{Resource: "crm", Scopes: []string{"read"}}, {Resource: "calendar", Scopes: []string{"read"}}},
		ResumeToken:          resume,
		TransportCredentials: insecure.NewCredentials(),
		Backoff:              Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
		OnEvent:              func(e Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, events
}

func waitToken(t *testing.T, m *CredentialManager, resource string) Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := m.Token(ctx, resource)
	if err != nil {
		t.Fatalf("Token(%s): %v", resource, err)
	}
	return tok
}

func TestResumeAheadMovesOnAndKeepsTheResumeToken(t *testing.T) {
	lagging := startFake(t, func(int, *capvendv1.WatchSessionRequest, grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		return refusal(codes.Unavailable, ReasonResumeAhead, map[string]string{"field": "resume_token"})
	})
	current := startFake(t, func(_ int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		return serveTokens(req, s, "rt-2")
	})
	m, _ := fakeManager(t, []string{lagging.addr, current.addr}, "rt-1")
	if tok := waitToken(t, m, "crm"); tok.ID != "tok-crm-rt-2" {
		t.Fatalf("token %s", tok.ID)
	}
	if got := current.requests()[0].GetResumeToken(); got != "rt-1" {
		t.Fatalf("the next replica got resume token %q, want rt-1", got)
	}
	if m.Err() != nil || m.ResumeToken() != "rt-2" {
		t.Fatalf("err %v, resume token %q", m.Err(), m.ResumeToken())
	}
}

func TestResumeTokenExpiredStartsFresh(t *testing.T) {
	f := startFake(t, func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		if req.GetResumeToken() != "" {
			return refusal(codes.FailedPrecondition, ReasonResumeTokenExpired, map[string]string{"field": "resume_token"})
		}
		return serveTokens(req, s, "fresh")
	})
	m, _ := fakeManager(t, []string{f.addr}, "too-old")
	waitToken(t, m, "crm")
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].GetResumeToken() != "too-old" || reqs[1].GetResumeToken() != "" {
		t.Fatalf("requests: %v", reqs)
	}
}

func TestGrantRevokedAtOpenDropsOnlyThatGrant(t *testing.T) {
	f := startFake(t, func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		for _, g := range req.GetGrants() {
			if g.GetResource() == "calendar" {
				return refusal(codes.PermissionDenied, ReasonGrantRevoked, map[string]string{"resource": "calendar"})
			}
		}
		return serveTokens(req, s, "r")
	})
	m, _ := fakeManager(t, []string{f.addr}, "")
	waitToken(t, m, "crm")
	if _, err := m.Token(context.Background(), "calendar"); !errors.Is(err, &Error{Reason: ReasonGrantRevoked}) {
		t.Fatalf("Token(calendar) = %v", err)
	}
	if m.Err() != nil {
		t.Fatalf("stopped: %v", m.Err())
	}
}

func TestFatalReasonStopsAndUnknownReasonDoesNot(t *testing.T) {
	f := startFake(t, func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		switch n {
		case 1:
			return refusal(codes.Unavailable, "SOME_FUTURE_REASON", nil)
		case 2:
			return status.Error(codes.Unauthenticated, "a proxy's answer, without a reason")
		}
		return refusal(codes.Unauthenticated, ReasonUnknownCredential, nil)
	})
	m, _ := fakeManager(t, []string{f.addr}, "")
	<-m.Done()
	if !errors.Is(m.Err(), &Error{Reason: ReasonUnknownCredential}) || m.State() != StateFailed || len(f.requests()) != 3 {
		t.Fatalf("err %v state %s after %d calls", m.Err(), m.State(), len(f.requests()))
	}
	if _, err := m.Token(context.Background(), "crm"); !errors.Is(err, &Error{Reason: ReasonUnknownCredential}) {
		t.Fatalf("Token after the fatal refusal: %v", err)
	}
}

func TestReconnectEventMovesToNextEndpointWithResumeToken(t *testing.T) {
	draining := startFake(t, func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		_ = s.Send(&capvendv1.WatchSessionResponse{ResumeToken: "rt-a", Event: &capvendv1.WatchSessionResponse_Reconnect{Reconnect: &capvendv1.Reconnect{Reason: "draining"}}})
		return refusal(codes.Unavailable, ReasonDraining, nil)
	})
	other := startFake(t, func(_ int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		return serveTokens(req, s, "rt-b")
	})
	m, _ := fakeManager(t, []string{draining.addr, other.addr}, "")
	waitToken(t, m, "calendar")
	if got := other.requests()[0].GetResumeToken(); got != "rt-a" {
		t.Fatalf("resumed with %q, want rt-a", got)
	}
}

func TestSessionEndedEventStopsTheManager(t *testing.T) {
	// Runs last: after the manager and the fake server have stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := startFake(t, func(n int, req *capvendv1.WatchSessionRequest, s grpc.ServerStreamingServer[capvendv1.WatchSessionResponse]) error {
		_ = s.Send(&capvendv1.WatchSessionResponse{Event: &capvendv1.WatchSessionResponse_SessionEnded{SessionEnded: &capvendv1.SessionEnded{Reason: "done"}}})
		return nil
	})
	m, events := fakeManager(t, []string{f.addr}, "")
	<-m.Done()
	if !errors.Is(m.Err(), &Error{Reason: ReasonSessionEnded}) || m.State() != StateEnded {
		t.Fatalf("err %v state %s", m.Err(), m.State())
	}
	var kinds []EventKind
	for len(events) > 0 {
		kinds = append(kinds, (<-events).Kind)
	}
	if len(kinds) != 2 || kinds[0] != EventConnected || kinds[1] != EventEnded {
		t.Fatalf("events %v", kinds)
	}
	_ = m.Close()
}
