package capvend

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeSource hands out "tok-1", then "tok-2" after a refresh, and counts calls.
type fakeSource struct {
	mu        sync.Mutex
	n         int
	refreshes int
	err       error
}

func (f *fakeSource) Token(_ context.Context, resource string, _ ...string) (Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Token{}, f.err
	}
	if f.n == 0 {
		f.n = 1
	}
	return Token{ID: "id-" + string(rune('0'+f.n)), Resource: resource, value: "tok-" + string(rune('0'+f.n))}, nil
}

func (f *fakeSource) Refresh(_ context.Context, resource, rejected string, _ ...string) (Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	if rejected == "id-"+string(rune('0'+f.n)) {
		f.n++
	}
	return Token{ID: "id-" + string(rune('0'+f.n)), Resource: resource, value: "tok-" + string(rune('0'+f.n))}, nil
}

// resourceServer accepts only "Bearer tok-2" and records each request's auth header and body.
func resourceServer(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+string(body))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok-2" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "expired token")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func TestRoundTripperRetriesOnceOn401WithFreshTokenAndSameBody(t *testing.T) {
	srv, seen := resourceServer(t)
	src := &fakeSource{}
	client := &http.Client{Transport: NewRoundTripper(src, "crm", nil)}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("payload"))
	req.Header.Set("X-Keep", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("status %d body %q", resp.StatusCode, b)
	}
	got := seen()
	want := []string{"Bearer tok-1|payload", "Bearer tok-2|payload"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("requests seen %q, want %q", got, want)
	}
	if req.Header.Get("Authorization") != "" {
		t.Error("the caller's request was modified")
	}
}

func TestRoundTripperRetriesOnlyOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
	defer srv.Close()
	src := &fakeSource{}
	resp, err := (&http.Client{Transport: NewRoundTripper(src, "crm", nil)}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || src.refreshes != 1 {
		t.Fatalf("status %d after %d refreshes, want 401 after 1", resp.StatusCode, src.refreshes)
	}
}

type onceReader struct{ io.Reader }

func TestRoundTripperDoesNotRetryUnreplayableBody(t *testing.T) {
	srv, seen := resourceServer(t)
	src := &fakeSource{}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, onceReader{strings.NewReader("stream")})
	if req.GetBody != nil {
		t.Fatal("test needs a body without GetBody")
	}
	resp, err := NewRoundTripper(src, "crm", nil).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(seen()) != 1 || src.refreshes != 0 {
		t.Fatalf("status %d, %d requests, %d refreshes: want the 401 back, unretried", resp.StatusCode, len(seen()), src.refreshes)
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestRoundTripperTokenErrorClosesBody(t *testing.T) {
	ended := &Error{Code: codes.Unauthenticated, Reason: ReasonSessionEnded, Message: "session ended"}
	src := &fakeSource{err: ended}
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", body)
	_, err := NewRoundTripper(src, "crm", nil).RoundTrip(req)
	if !errors.Is(err, &Error{Reason: ReasonSessionEnded}) {
		t.Fatalf("err = %v, want SESSION_ENDED", err)
	}
	if !body.closed {
		t.Error("request body left open")
	}
}

func TestPerRPCCredentialsSendsBearer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var auth []string
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		auth = append(auth, md.Get("authorization")...)
		mu.Unlock()
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	creds := NewPerRPCCredentials(&fakeSource{}, "crm")
	if !creds.RequireTransportSecurity() {
		t.Fatal("must require transport security by default")
	}
	creds.AllowInsecure = true
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) != 1 || auth[0] != "Bearer tok-1" {
		t.Fatalf("authorization seen %q", auth)
	}

	// A token failure fails the call with the error's own code.
	failing := &PerRPCCredentials{Source: &fakeSource{err: &Error{Code: codes.PermissionDenied, Reason: ReasonGrantRevoked, Message: "grant revoked"}}, Resource: "crm", AllowInsecure: true}
	conn2, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(failing))
	defer conn2.Close()
	_, err = healthpb.NewHealthClient(conn2).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
}
