package capvend_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	capvend "capvend.dev/client"
	"go.uber.org/goleak"
	"google.golang.org/grpc/credentials/insecure"
)

// waitTime bounds every wait on a real server; the assertions are about what happens, not
// how fast.
const waitTime = 30 * time.Second

func TestFailoverToSecondEndpointWhenFirstIsKilled(t *testing.T) {
	c := startCluster(t, 2, nil)
	a, b := c.replicas[0], c.replicas[1]
	_, m, rec := c.session(t, []string{a.Addr, b.Addr}, nil)
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatal(err)
	}
	if e, _, ok := rec.waitFor(0, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventConnected }); !ok || e.Endpoint != a.Addr {
		t.Fatalf("first stream on %q, want %s", e.Endpoint, a.Addr)
	}
	from := rec.mark()
	a.Kill(syscall.SIGKILL)
	e, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventConnected })
	if !ok || e.Endpoint != b.Addr || !e.Resumed {
		t.Fatalf("after A died: connected=%v endpoint %q resumed=%v; want a resumed stream on %s", ok, e.Endpoint, e.Resumed, b.Addr)
	}
	// The stream on B is live: revoking the token it sent reaches the manager.
	held, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventToken && e.Resource == "calendar" })
	if !ok {
		t.Fatal("no token from the second replica")
	}
	from = rec.mark()
	if _, err := c.orchestrator(t).Revoke(context.Background(), capvend.RevokeToken(held.TokenID), "failover test"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool {
		return e.Kind == capvend.EventRevoked && containsID(e.TokenIDs, held.TokenID)
	}); !ok {
		t.Fatal("revocation not seen on the second replica's stream")
	}
	// Revoking a grant's current token stops the grant on the stream.
	if _, err := m.Token(context.Background(), "calendar"); !errors.Is(err, &capvend.Error{Reason: capvend.ReasonGrantRevoked}) {
		t.Fatalf("after revocation: %v, want GRANT_REVOKED", err)
	}
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatal(err)
	}
	if m.Err() != nil {
		t.Fatalf("a dead replica stopped the manager: %v", m.Err())
	}
}

func TestResumeAfterCutReplaysRevocationMadeWhileAway(t *testing.T) {
	c := startCluster(t, 1, nil)
	p := startProxy(t, c.replicas[0].Addr)
	_, m, rec := c.session(t, []string{p.Addr}, nil)
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatal(err)
	}
	held, _ := rec.lastToken("crm")
	// Cut the stream and keep the manager away while the token is revoked.
	p.setRefuse(true)
	from := rec.mark()
	p.cut()
	if _, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventDisconnected }); !ok {
		t.Fatal("cut not noticed")
	}
	if _, err := c.orchestrator(t).Revoke(context.Background(), capvend.RevokeToken(held.TokenID), "while away"); err != nil {
		t.Fatal(err)
	}
	p.setRefuse(false)
	if _, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool {
		return e.Kind == capvend.EventRevoked && containsID(e.TokenIDs, held.TokenID)
	}); !ok {
		t.Fatal("the revocation made while the manager was away was not replayed")
	}
	if e, _, _ := rec.waitFor(from, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventConnected }); !e.Resumed {
		t.Error("the new stream did not resume")
	}
	if tok, err := m.Token(context.Background(), "crm"); err == nil && tok.ID == held.TokenID {
		t.Fatal("the revoked token was handed out after the replay")
	}
}

func TestWatchdogReplacesSilentConnection(t *testing.T) {
	c := startCluster(t, 1, nil) // heartbeats every second
	p := startProxy(t, c.replicas[0].Addr)
	_, m, rec := c.session(t, []string{p.Addr}, nil)
	// After a renewal the manager has seen several heartbeats and knows their interval.
	if _, _, ok := rec.waitFor(0, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventToken && e.ReplacesTokenID != "" }); !ok {
		t.Fatal("no renewal")
	}
	from := rec.mark()
	p.freeze() // the connection stays open but nothing comes through
	e, _, ok := rec.waitFor(from, 2*waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventDisconnected })
	if !ok || e.Err == nil || !strings.Contains(e.Err.Error(), "heartbeat") {
		t.Fatalf("watchdog did not fire: %v %v", ok, e.Err)
	}
	if _, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventConnected && e.Resumed }); !ok {
		t.Fatal("no new stream after the watchdog fired")
	}
	newer := rec.mark()
	if _, _, ok := rec.waitFor(newer, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventToken }); !ok {
		t.Fatal("no token on the new connection")
	}
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatal(err)
	}
}

func TestTransportErrorsDoNotStopTheManager(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := newRecorder()
	p := startProxy(t, "127.0.0.1:1")
	p.setRefuse(true)
	m, err := capvend.New(context.Background(), capvend.Options{
		Endpoints:            []string{p.Addr},
		SessionCredential:    "ses_x.y",
		Grants:               scenarioGrants,
		TransportCredentials: insecure.NewCredentials(),
		OnEvent:              rec.on,
		Backoff:              capvend.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, ok := rec.waitFor(i, waitTime, func(e capvend.Event) bool { return e.Kind == capvend.EventDisconnected }); !ok {
			t.Fatal("no retry")
		}
	}
	if m.Err() != nil || m.State() == capvend.StateFailed {
		t.Fatalf("a transport error stopped the manager: %v", m.Err())
	}
	_ = m.Close()
	p.close()
	if _, err := m.Token(context.Background(), "crm"); !errors.Is(err, capvend.ErrClosed) {
		t.Fatalf("Token after Close: %v", err)
	}
}

func TestCloseAndContextEndLeaveNoGoroutines(t *testing.T) {
	c := startCluster(t, 1, nil)
	// Runs after the cleanups registered below (the orchestrator's and the managers'),
	// before the server processes stop.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	_, m, _ := c.session(t, c.addrs(), nil)
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatal(err)
	}
	_ = m.Close()
	_ = m.Close() // idempotent
	if m.State() != capvend.StateClosed || !errors.Is(m.Err(), capvend.ErrClosed) {
		t.Fatalf("after Close: %s %v", m.State(), m.Err())
	}

	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.orchestrator(t).StartSession(context.Background(), capvend.SessionRequest{AgentID: "scenario-bot", UserID: "alice", Grants: scenarioGrants})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := capvend.New(ctx, capvend.Options{Endpoints: c.addrs(), SessionCredential: s.Credential, Grants: scenarioGrants, TransportCredentials: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokenWithin(m2, waitTime, "calendar"); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-m2.Done()
	if _, err := m2.Token(context.Background(), "calendar"); !errors.Is(err, capvend.ErrClosed) {
		t.Fatalf("Token after the context ended: %v", err)
	}
}

func TestRevokedGrantFailsTokenAtOnce(t *testing.T) {
	c := startCluster(t, 1, nil)
	_, m, rec := c.session(t, c.addrs(), nil)
	if _, err := tokenWithin(m, waitTime, "calendar"); err != nil {
		t.Fatal(err)
	}
	from := rec.mark()
	if _, err := c.orchestrator(t).Revoke(context.Background(), capvend.RevokeResource("calendar"), "resource withdrawn"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := rec.waitFor(from, waitTime, func(e capvend.Event) bool {
		return e.Kind == capvend.EventRevoked && containsID(e.StoppedResources, "calendar")
	}); !ok {
		t.Fatal("no revocation stopping the calendar grant")
	}
	_, err := m.Token(context.Background(), "calendar")
	if !errors.Is(err, &capvend.Error{Reason: capvend.ReasonGrantRevoked}) {
		t.Fatalf("Token(calendar) = %v, want GRANT_REVOKED", err)
	}
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		t.Fatalf("the other grant suffered: %v", err)
	}
	// Local checks need no server.
	if _, err := m.Token(context.Background(), "mail"); !errors.Is(err, &capvend.Error{Reason: capvend.ReasonResourceNotGranted}) {
		t.Fatalf("unknown resource: %v", err)
	}
	if _, err := m.Token(context.Background(), "crm", "delete"); !errors.Is(err, &capvend.Error{Reason: capvend.ReasonScopeNotGranted}) {
		t.Fatalf("unknown scope: %v", err)
	}
}

func TestStartSessionWithSameRequestIDOpensOneSession(t *testing.T) {
	c := startCluster(t, 1, nil)
	o := c.orchestrator(t)
	req := capvend.SessionRequest{AgentID: "scenario-bot", UserID: "alice", Grants: scenarioGrants, RequestID: "6f1c2f0e-8f7a-4c1e-9d2b-5a4e3c2b1a00"}
	first, err := o.StartSession(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := o.StartSession(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != again.ID {
		t.Fatalf("a retry opened a second session: %s and %s", first.ID, again.ID)
	}
	if strings.Contains(first.String(), first.Credential) || strings.Contains(fmtAll(first), first.Credential) {
		t.Fatal("a session's printed form shows its credential")
	}
	req.Grants = scenarioGrants[:1]
	_, err = o.StartSession(context.Background(), req)
	if !errors.Is(err, &capvend.Error{Reason: capvend.ReasonRequestIDReused}) {
		t.Fatalf("same request id, other request: %v", err)
	}
	// Generated request ids are fresh per call.
	x, _ := o.StartSession(context.Background(), capvend.SessionRequest{AgentID: "scenario-bot", UserID: "alice", Grants: scenarioGrants})
	y, _ := o.StartSession(context.Background(), capvend.SessionRequest{AgentID: "scenario-bot", UserID: "alice", Grants: scenarioGrants})
	if x.ID == "" || x.ID == y.ID || x.RequestID == y.RequestID {
		t.Fatalf("two calls without a request id: %s/%s %s/%s", x.ID, x.RequestID, y.ID, y.RequestID)
	}
}

// TestRoundTripperRefreshesFromTheServerOn401: a resource server that refuses the first
// token it sees makes the RoundTripper get a new one from capvend and retry once.
func TestRoundTripperRefreshesFromTheServerOn401(t *testing.T) {
	c := startCluster(t, 1, nil)
	_, m, _ := c.session(t, c.addrs(), nil)
	var mu sync.Mutex
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Authorization"))
		if len(seen) == 1 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(body)
	}))
	defer api.Close()
	client := &http.Client{Transport: m.RoundTripper("crm", nil)}
	resp, err := client.Post(api.URL, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || !strings.HasPrefix(seen[0], "Bearer ey") || seen[0] == seen[1] {
		t.Fatalf("want two requests with two different bearer tokens, got %d", len(seen))
	}
}
