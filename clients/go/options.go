package capvend

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Defaults for Options, with units.
const (
	// DefaultMinRemaining: a token with less life left than this (or a quarter of its
	// lifetime, whichever is less) is not handed out; Token waits for its renewal instead.
	DefaultMinRemaining = 5 * time.Second
	// DefaultHeartbeatTimeout is how long a stream may stay silent before the watchdog
	// replaces it, until the server's heartbeat interval has been seen on the stream: three
	// times the server's default interval (15 s).
	DefaultHeartbeatTimeout = 45 * time.Second
	// HeartbeatTimeoutFactor: once the server's heartbeat interval is known from the
	// stream, a silence of this many intervals means the connection is dead.
	HeartbeatTimeoutFactor = 3
)

// Grant is a resource whose tokens the manager keeps fresh.
type Grant struct {
	// Resource is the token audience, e.g. "salesforce"; one of the session's grants.
	Resource string
	// Scopes to ask for: a non-empty subset of the session's grant.
	Scopes []string
	// TTL is the token lifetime to ask for; zero means the server default.
	TTL time.Duration
}

// Options configure a CredentialManager.
type Options struct {
	// Endpoints are the capvend replicas as gRPC targets ("host:port" or "dns:///host:port").
	// The manager uses one at a time and moves to the next when it fails. Required.
	Endpoints []string
	// SessionCredential is the session credential from StartSession. Required. It is kept
	// in memory only and sent only to Endpoints.
	SessionCredential string
	// Grants are kept fresh on the stream. Required; one per resource.
	Grants []Grant
	// ResumeToken, from ResumeToken of an earlier manager of the same session, makes the
	// first stream replay what happened since (a process that restarts keeps revocations).
	ResumeToken string
	// TransportCredentials secure the connections; nil means TLS with the system roots.
	// Use insecure.NewCredentials() only for a server on loopback.
	TransportCredentials credentials.TransportCredentials
	// DialOptions are added to every connection.
	DialOptions []grpc.DialOption
	// Backoff paces reconnects; the zero value uses DefaultBackoffInitial/DefaultBackoffMax.
	Backoff Backoff
	// HeartbeatTimeout overrides the watchdog's silence limit (see DefaultHeartbeatTimeout).
	HeartbeatTimeout time.Duration
	// MinRemaining overrides DefaultMinRemaining.
	MinRemaining time.Duration
	// OnEvent, when set, is called for every event, in order, from the manager's goroutine:
	// it must return quickly. Events never carry a token or credential.
	OnEvent func(Event)
	// Logger receives the manager's own log lines (connects, failovers); nil means none.
	Logger *slog.Logger

	// clock and jitter are replaced by tests.
	clock  func() time.Time
	jitter func() float64
}

func (o *Options) validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("capvend: Options.Endpoints must name at least one endpoint")
	}
	for i, e := range o.Endpoints {
		if e == "" {
			return fmt.Errorf("capvend: Options.Endpoints[%d] is empty", i)
		}
	}
	if o.SessionCredential == "" {
		return errors.New("capvend: Options.SessionCredential is required")
	}
	if len(o.Grants) == 0 {
		return errors.New("capvend: Options.Grants must name at least one grant")
	}
	seen := map[string]bool{}
	for i, g := range o.Grants {
		if g.Resource == "" {
			return fmt.Errorf("capvend: Options.Grants[%d].Resource is empty", i)
		}
		if seen[g.Resource] {
			return fmt.Errorf("capvend: Options.Grants[%d]: resource %q named twice", i, g.Resource)
		}
		seen[g.Resource] = true
		if len(g.Scopes) == 0 {
			return fmt.Errorf("capvend: Options.Grants[%d].Scopes must name at least one scope", i)
		}
		if g.TTL < 0 {
			return fmt.Errorf("capvend: Options.Grants[%d].TTL is negative", i)
		}
	}
	if o.MinRemaining < 0 || o.HeartbeatTimeout < 0 {
		return errors.New("capvend: Options durations must not be negative")
	}
	return nil
}
