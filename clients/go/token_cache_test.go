package capvend

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func tok(id, resource string, issued time.Time, ttl time.Duration) Token {
	return Token{ID: id, Resource: resource, Scopes: []string{"read", "write"}, IssuedAt: issued, ExpiresAt: issued.Add(ttl), value: "jwt-" + id}
}

func TestCacheNeverHandsOutANearlyExpiredToken(t *testing.T) {
	c := newTokenCache()
	c.put(tok("a", "crm", t0, 15*time.Minute))
	// Margin is min(5s, 15m/4) = 5s.
	if got, err, _ := c.lookup(t0.Add(15*time.Minute-6*time.Second), "crm", nil, 5*time.Second); err != nil || got.ID != "a" {
		t.Fatalf("6s before expiry: %v %v", got, err)
	}
	if got, err, wait := c.lookup(t0.Add(15*time.Minute-4*time.Second), "crm", nil, 5*time.Second); err != nil || wait == nil || got.ID != "" {
		t.Fatalf("4s before expiry: got %v err %v; want to wait", got, err)
	}
	// A short test token: margin is a quarter of its 6 s life.
	c.put(tok("b", "cal", t0, 6*time.Second))
	if _, _, wait := c.lookup(t0.Add(4400*time.Millisecond), "cal", nil, 5*time.Second); wait != nil {
		t.Fatal("1.6s before expiry of a 6s token: want it handed out")
	}
	if _, _, wait := c.lookup(t0.Add(4600*time.Millisecond), "cal", nil, 5*time.Second); wait == nil {
		t.Fatal("1.4s before expiry of a 6s token: want to wait")
	}
}

func TestCacheDropsRevokedAndRefusesThemLater(t *testing.T) {
	c := newTokenCache()
	c.put(tok("a", "crm", t0, time.Minute))
	dropped := c.revoke(t0, []string{"a", "unknown"}, nil, nil)
	if len(dropped) != 1 || dropped[0] != "crm" {
		t.Fatalf("dropped %v", dropped)
	}
	if _, _, wait := c.lookup(t0, "crm", nil, time.Second); wait == nil {
		t.Fatal("a revoked token was handed out")
	}
	// A replay of the revoked token (an older stream event) is refused.
	if c.put(tok("a", "crm", t0, time.Minute)) {
		t.Fatal("a revoked token was kept")
	}
	if !c.isRevoked("a") || !c.isRevoked("unknown") {
		t.Fatal("revoked ids forgotten")
	}
	// Revoked ids are forgotten once the token has expired.
	c.revoke(t0.Add(2*time.Minute), nil, nil, nil)
	if c.isRevoked("a") {
		t.Fatal("an expired revoked id kept forever")
	}
}

func TestCacheStoppedGrantFailsAtOnce(t *testing.T) {
	c := newTokenCache()
	c.put(tok("a", "crm", t0, time.Minute))
	why := localError(codes.PermissionDenied, ReasonGrantRevoked, "grant revoked")
	c.revoke(t0, nil, []string{"crm"}, why)
	_, err, _ := c.lookup(t0, "crm", nil, time.Second)
	if !errors.Is(err, &Error{Reason: ReasonGrantRevoked}) {
		t.Fatalf("err = %v", err)
	}
	if c.put(tok("b", "crm", t0.Add(time.Second), time.Minute)) {
		t.Fatal("a token for a stopped grant was kept")
	}
}

func TestCacheKeepsTheNewestAndWakesWaiters(t *testing.T) {
	c := newTokenCache()
	_, _, wait := c.lookup(t0, "crm", nil, time.Second)
	c.put(tok("new", "crm", t0.Add(time.Minute), time.Hour))
	select {
	case <-wait:
	default:
		t.Fatal("waiter not woken by put")
	}
	if c.put(tok("old", "crm", t0, time.Hour)) {
		t.Fatal("an older token replaced a newer one")
	}
	if got, _, _ := c.lookup(t0.Add(time.Minute), "crm", []string{"write"}, time.Second); got.ID != "new" {
		t.Fatalf("got %v", got)
	}
	if _, _, wait := c.lookup(t0.Add(time.Minute), "crm", []string{"admin"}, time.Second); wait == nil {
		t.Fatal("a token without the scope asked for was handed out")
	}
	c.finish(ErrClosed)
	if _, err, _ := c.lookup(t0, "crm", nil, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("after finish: %v", err)
	}
}

func TestTokenPrintsNoSecret(t *testing.T) {
	tk := tok("a", "crm", t0, time.Minute)
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("held", "token", tk)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", tk, tk, tk, tk), fmt.Sprint([]Token{tk}), logged.String()} {
		if strings.Contains(s, "jwt-a") {
			t.Fatalf("secret printed: %s", s)
		}
		if !strings.Contains(s, "a") {
			t.Fatalf("token not named: %s", s)
		}
	}
}
