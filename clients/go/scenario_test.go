package capvend_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	capvend "capvend.dev/client"
	capvendv1 "capvend.dev/client/gen/capvend/v1"
	"capvend.dev/client/internal/serverproc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestScenario drives the shared client scenario (test/scenario/scenario.json) through this
// client against real capvend processes, writes $CAPVEND_SCENARIO_OUT/go.json, and checks
// every observation against its expectation. The server shares a nats-server, so its
// sessions and revocations survive the SIGKILL of the restart step.
func TestScenario(t *testing.T) {
	sc := loadScenario(t)
	c := startCluster(t, 1, map[string]string{"CAPVEND_DATA_DIR": t.TempDir()})
	srv := c.replicas[0]
	orch := c.orchestrator(t)

	d := &driver{t: t, c: c, orch: orch, srv: srv}
	defer d.close()
	var results []map[string]any
	defer func() { writeResults(t, results) }()
	for _, step := range sc.Steps {
		t.Run(step.ID, func(t *testing.T) {
			d.t = t
			observed := d.run(step)
			results = append(results, map[string]any{"id": step.ID, "observed": observed})
			var want, got any
			_ = json.Unmarshal(step.Expect, &want)
			raw, _ := json.Marshal(observed)
			_ = json.Unmarshal(raw, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("observed %s, expected %s", raw, step.Expect)
			}
		})
	}
}

func writeResults(t *testing.T, results []map[string]any) {
	dir := os.Getenv("CAPVEND_SCENARIO_OUT")
	if dir == "" {
		dir = filepath.Join(serverproc.RepoRoot(t), ".scenario-results")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(map[string]any{"language": "go", "results": results}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "go.json"), append(raw, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

type driver struct {
	t       *testing.T
	c       *cluster
	orch    *capvend.Orchestrator
	srv     *serverproc.Server
	session capvend.Session
	grants  []capvend.Grant
	m       *capvend.CredentialManager
	rec     *recorder
}

func (d *driver) close() {
	if d.m != nil {
		_ = d.m.Close()
	}
}

func duration(t *testing.T, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("scenario duration %q: %v", s, err)
	}
	return v
}

// errorObservation is the scenario's shape of an error: the gRPC code name and the reason.
func errorObservation(err error) map[string]any {
	ce, ok := capvend.FromError(err)
	if !ok {
		return map[string]any{"code": "UNKNOWN", "reason": err.Error()}
	}
	return map[string]any{"code": serverproc.CodeName(ce.Code), "reason": string(ce.Reason)}
}

func (d *driver) run(step scenarioStep) map[string]any {
	t := d.t
	timeout := duration(t, step.Timeout, 10*time.Second)
	switch step.Do {
	case "start_session":
		for _, g := range step.Grants {
			d.grants = append(d.grants, capvend.Grant{Resource: g.Resource, Scopes: g.Scopes})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := d.orch.StartSession(ctx, capvend.SessionRequest{AgentID: step.AgentID, UserID: step.UserID, Grants: d.grants})
		if err != nil {
			return map[string]any{"error": errorObservation(err)}
		}
		d.session = s
		return map[string]any{"ok": true}

	case "watch":
		d.rec = newRecorder()
		m, err := capvend.New(context.Background(), capvend.Options{
			Endpoints:            []string{d.srv.Addr},
			SessionCredential:    d.session.Credential,
			Grants:               d.grants,
			TransportCredentials: insecure.NewCredentials(),
			OnEvent:              d.rec.on,
		})
		if err != nil {
			t.Fatal(err)
		}
		d.m = m
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		got := []string{}
		for _, g := range d.grants {
			if _, err := m.Token(ctx, g.Resource); err == nil {
				got = append(got, g.Resource)
			} else {
				t.Logf("token for %s: %v", g.Resource, err)
			}
		}
		slices.Sort(got)
		return map[string]any{"tokens_for": got}

	case "await_renewal":
		from := d.rec.mark()
		old, err := tokenWithin(d.m, timeout, step.Resource)
		if err != nil {
			t.Logf("no token to renew: %v", err)
			return map[string]any{"renewed": false, "before_expiry": false}
		}
		ev, at, ok := d.rec.waitFor(from, timeout, func(e capvend.Event) bool {
			return e.Kind == capvend.EventToken && e.Resource == step.Resource && e.TokenID != old.ID
		})
		if !ok {
			return map[string]any{"renewed": false, "before_expiry": false}
		}
		t.Logf("token %s renewed by %s (replaces %q), %s before it expired", old.ID, ev.TokenID, ev.ReplacesTokenID, old.ExpiresAt.Sub(at))
		return map[string]any{"renewed": true, "before_expiry": at.Before(old.ExpiresAt)}

	case "revoke_token":
		held, ok := d.rec.lastToken(step.Resource)
		if !ok {
			t.Logf("the manager never held a token for %s", step.Resource)
			return map[string]any{"revoked_event": false, "revoked_token_returned": false}
		}
		from := d.rec.mark()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if _, err := d.orch.Revoke(ctx, capvend.RevokeToken(held.TokenID), step.Reason); err != nil {
			t.Errorf("Revoke(%s): %v", held.TokenID, err)
		}
		_, _, seen := d.rec.waitFor(from, timeout, func(e capvend.Event) bool {
			return e.Kind == capvend.EventRevoked && containsID(e.TokenIDs, held.TokenID)
		})
		// From now on the revoked token is never handed out: ask until a token comes back
		// (a renewal, a fresh stream's token) or a short wait ends.
		returned := false
		if tok, err := tokenWithin(d.m, 5*time.Second, step.Resource); err == nil && tok.ID == held.TokenID {
			returned = true
		}
		return map[string]any{"revoked_event": seen, "revoked_token_returned": returned}

	case "watch_with_credential":
		m, err := capvend.New(context.Background(), capvend.Options{
			Endpoints:            []string{d.srv.Addr},
			SessionCredential:    step.Credential,
			Grants:               d.grants,
			TransportCredentials: insecure.NewCredentials(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		select {
		case <-m.Done():
		case <-time.After(timeout):
			t.Errorf("a manager with an unknown credential did not stop within %s (state %s)", timeout, m.State())
			return map[string]any{"error": map[string]any{"code": "OK", "reason": ""}}
		}
		return map[string]any{"error": errorObservation(m.Err())}

	case "issue_token":
		conn, err := grpc.NewClient(d.srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.session.Credential)
		req := &capvendv1.IssueTokenRequest{Resource: step.Resource, Scopes: step.Scopes}
		if step.TTL != "" {
			req.Ttl = durationpb.New(duration(t, step.TTL, 0))
		}
		if _, err := capvendv1.NewVendingServiceClient(conn).IssueToken(ctx, req); err != nil {
			return map[string]any{"error": errorObservation(err)}
		}
		return map[string]any{"ok": true}

	case "restart_server":
		if step.Signal != "SIGKILL" {
			t.Fatalf("unsupported signal %q", step.Signal)
		}
		d.srv.Kill(syscall.SIGKILL)
		d.srv.Start()
		return map[string]any{"ok": true}

	case "end_session":
		from := d.rec.mark()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if _, err := d.orch.EndSession(ctx, d.session.ID, step.Reason); err != nil {
			t.Errorf("EndSession: %v", err)
		}
		_, _, ended := d.rec.waitFor(from, timeout, func(e capvend.Event) bool { return e.Kind == capvend.EventEnded })
		stopped := false
		select {
		case <-d.m.Done():
			stopped = true
		case <-time.After(timeout):
		}
		_, err := tokenWithin(d.m, time.Second, d.grants[0].Resource)
		var ce *capvend.Error
		reason := ""
		if errors.As(err, &ce) {
			reason = string(ce.Reason)
		} else if err != nil {
			reason = err.Error()
		}
		return map[string]any{"ended_event": ended, "manager_stopped": stopped, "get_token_error": map[string]any{"reason": reason}}
	}
	t.Fatalf("unknown step kind %q", step.Do)
	return nil
}
