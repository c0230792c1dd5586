package capvend_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	capvend "capvend.dev/client"
	"capvend.dev/client/internal/serverproc"
)

// benchManager starts one capvend replica (in-process backends, 15-minute tokens), a
// session and a manager holding its tokens.
func benchManager(b *testing.B) *capvend.CredentialManager {
	b.Helper()
	env := map[string]string{}
	for k, v := range loadScenario(b).Server.Env {
		env[k] = v
	}
	env["CAPVEND_POLICY_DIR"] = filepath.Join(serverproc.RepoRoot(b), env["CAPVEND_POLICY_DIR"])
	env["CAPVEND_TOKEN_TTL"], env["CAPVEND_RENEW_LEAD"], env["CAPVEND_HEARTBEAT_INTERVAL"] = "15m", "2m", "15s"
	c := &cluster{env: env, replicas: []*serverproc.Server{serverproc.StartServer(b, env)}}
	// Calendar tokens are capped at a minute by the scenario policy: hold the crm grant only.
	_, m, _ := c.session(b, c.addrs(), func(o *capvend.Options) { o.Grants = scenarioGrants[:1] })
	if _, err := tokenWithin(m, waitTime, "crm"); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkToken is the cost of a cached Token: what every outgoing request pays.
func BenchmarkToken(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Token(ctx, "crm"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenParallel is the same from every core at once (one lock guards the cache).
func BenchmarkTokenParallel(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Token(ctx, "crm", "read"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRoundTripper is a request to a local no-op handler through the RoundTripper,
// against BenchmarkPlainRoundTrip (the same request without it) as the baseline.
func BenchmarkRoundTripper(b *testing.B) {
	m := benchManager(b)
	benchRoundTrip(b, m.RoundTripper("crm", nil))
}

func BenchmarkPlainRoundTrip(b *testing.B) { benchRoundTrip(b, http.DefaultTransport) }

func benchRoundTrip(b *testing.B, rt http.RoundTripper) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	client := &http.Client{Transport: rt}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
