package capvend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	capvend "capvend.dev/client"
	"capvend.dev/client/internal/serverproc"
	"google.golang.org/grpc/credentials/insecure"
)

// recorder keeps every event of a manager and lets a test wait for one.
type recorder struct {
	mu      sync.Mutex
	events  []capvend.Event
	at      []time.Time
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) on(e capvend.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.at = append(r.at, time.Now())
	close(r.changed)
	r.changed = make(chan struct{})
}

// mark is the index the next event will have.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// waitFor waits up to timeout for an event at index from or later that matches.
func (r *recorder) waitFor(from int, timeout time.Duration, match func(capvend.Event) bool) (capvend.Event, time.Time, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.events); i++ {
			if match(r.events[i]) {
				e, at := r.events[i], r.at[i]
				r.mu.Unlock()
				return e, at, true
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return capvend.Event{}, time.Time{}, false
		}
	}
}

// lastToken is the newest token event for resource.
func (r *recorder) lastToken(resource string) (capvend.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if e := r.events[i]; e.Kind == capvend.EventToken && e.Resource == resource {
			return e, true
		}
	}
	return capvend.Event{}, false
}

func (r *recorder) count(kind capvend.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// scenarioFile is test/scenario/scenario.json.
type scenarioFile struct {
	Server struct {
		Env map[string]string `json:"env"`
	} `json:"server"`
	Steps []scenarioStep `json:"steps"`
}

type scenarioStep struct {
	ID         string          `json:"id"`
	Do         string          `json:"do"`
	AgentID    string          `json:"agent_id"`
	UserID     string          `json:"user_id"`
	Grants     []scenarioGrant `json:"grants"`
	Resource   string          `json:"resource"`
	Scopes     []string        `json:"scopes"`
	TTL        string          `json:"ttl"`
	Reason     string          `json:"reason"`
	Timeout    string          `json:"timeout"`
	Signal     string          `json:"signal"`
	Credential string          `json:"credential"`
	Expect     json.RawMessage `json:"expect"`
}

type scenarioGrant struct {
	Resource string   `json:"resource"`
	Scopes   []string `json:"scopes"`
}

func loadScenario(t testing.TB) scenarioFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(serverproc.RepoRoot(t), "test", "scenario", "scenario.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s scenarioFile
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("scenario.json: %v", err)
	}
	return s
}

// cluster is a nats-server and capvend replicas sharing it (sessions, revocations and keys
// live in JetStream, so a replica's restart loses nothing and any replica serves any session).
type cluster struct {
	env      map[string]string
	nats     *serverproc.NATS
	replicas []*serverproc.Server
}

// startCluster starts n replicas with the scenario's server environment plus extra.
func startCluster(t testing.TB, n int, extra map[string]string) *cluster {
	t.Helper()
	env := map[string]string{}
	for k, v := range loadScenario(t).Server.Env {
		env[k] = v
	}
	env["CAPVEND_POLICY_DIR"] = filepath.Join(serverproc.RepoRoot(t), env["CAPVEND_POLICY_DIR"])
	for k, v := range extra {
		env[k] = v
	}
	c := &cluster{env: env, nats: serverproc.StartNATS(t)}
	env["NATS_URL"] = c.nats.URL
	for i := 0; i < n; i++ {
		c.replicas = append(c.replicas, serverproc.StartServer(t, env))
	}
	return c
}

func (c *cluster) addrs() []string {
	var out []string
	for _, r := range c.replicas {
		out = append(out, r.Addr)
	}
	return out
}

func (c *cluster) orchestrator(t testing.TB) *capvend.Orchestrator {
	t.Helper()
	o, err := capvend.NewOrchestrator(capvend.OrchestratorOptions{
		Endpoints:            c.addrs(),
		Credential:           c.env["CAPVEND_ORCHESTRATOR_TOKEN"],
		TransportCredentials: insecure.NewCredentials(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

var scenarioGrants = []capvend.Grant{
	{Resource: "crm", Scopes: []string{"read", "write"}},
	{Resource: "calendar", Scopes: []string{"read"}},
}

// session starts a scenario session and a manager for it with the given endpoints.
func (c *cluster) session(t testing.TB, endpoints []string, opts func(*capvend.Options)) (capvend.Session, *capvend.CredentialManager, *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.orchestrator(t).StartSession(ctx, capvend.SessionRequest{AgentID: "scenario-bot", UserID: "alice", Grants: scenarioGrants})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	o := capvend.Options{
		Endpoints:            endpoints,
		SessionCredential:    s.Credential,
		Grants:               scenarioGrants,
		TransportCredentials: insecure.NewCredentials(),
		OnEvent:              rec.on,
	}
	if opts != nil {
		opts(&o)
	}
	m, err := capvend.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return s, m, rec
}

// tokenWithin is m.Token with a timeout.
func tokenWithin(m *capvend.CredentialManager, d time.Duration, resource string) (capvend.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return m.Token(ctx, resource)
}

func containsID(ids []string, id string) bool { return slices.Contains(ids, id) }

// fmtAll is every printed form of v.
func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }
