package capvend

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	capvendv1 "capvend.dev/client/gen/capvend/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultMaxAttempts is how many times an Orchestrator tries a call that failed for a
// retryable reason, moving to the next endpoint each time.
const DefaultMaxAttempts = 4

// OrchestratorOptions configure an Orchestrator.
type OrchestratorOptions struct {
	// Endpoints are the capvend replicas as gRPC targets. Required.
	Endpoints []string
	// Credential is the orchestrator's bearer credential. Required.
	Credential string
	// TransportCredentials secure the connections; nil means TLS with the system roots.
	TransportCredentials credentials.TransportCredentials
	// DialOptions are added to every connection.
	DialOptions []grpc.DialOption
	// Backoff paces retries.
	Backoff Backoff
	// MaxAttempts bounds the tries of one call; zero means DefaultMaxAttempts.
	MaxAttempts int
}

// Orchestrator starts, ends and revokes agent sessions. Safe for concurrent use.
type Orchestrator struct {
	opts    OrchestratorOptions
	conns   []*grpc.ClientConn
	clients []capvendv1.VendingServiceClient
}

// NewOrchestrator connects (lazily) to the endpoints.
func NewOrchestrator(opts OrchestratorOptions) (*Orchestrator, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("capvend: OrchestratorOptions.Endpoints must name at least one endpoint")
	}
	if opts.Credential == "" {
		return nil, errors.New("capvend: OrchestratorOptions.Credential is required")
	}
	if opts.TransportCredentials == nil {
		opts.TransportCredentials = credentials.NewTLS(nil)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	o := &Orchestrator{opts: opts}
	for _, e := range opts.Endpoints {
		c, err := dial(e, opts.TransportCredentials, opts.Backoff, opts.DialOptions)
		if err != nil {
			_ = o.Close()
			return nil, fmt.Errorf("capvend: endpoint %q: %w", e, err)
		}
		o.conns = append(o.conns, c)
		o.clients = append(o.clients, capvendv1.NewVendingServiceClient(c))
	}
	return o, nil
}

// Close closes the connections.
func (o *Orchestrator) Close() error {
	var errs []error
	for _, c := range o.conns {
		errs = append(errs, c.Close())
	}
	o.conns = nil
	return errors.Join(errs...)
}

// SessionRequest describes a session to start.
type SessionRequest struct {
	// AgentID is the agent the session is for. Required.
	AgentID string
	// UserID is the user the agent acts for; empty when it acts on its own.
	UserID string
	// Grants are what the session's runtime may ask for. Required.
	Grants []Grant
	// MaxDuration bounds the session's life; zero means the server default.
	MaxDuration time.Duration
	// Labels are passed to policy as context.labels.
	Labels map[string]string
	// RequestID makes the call safe to retry: every attempt carries it, and the server opens
	// at most one session for it. Empty means a new random UUID, used for every retry of
	// this call.
	RequestID string
}

// Session is a started session. Its printed and logged forms omit the credential.
type Session struct {
	// ID names the session in EndSession, Revoke, tokens and audit records.
	ID string
	// Credential is the secret session credential to hand to the session's runtime
	// (Options.SessionCredential).
	Credential string
	// ExpiresAt is when the session ends at the latest.
	ExpiresAt time.Time
	// RequestID is the request id the session was started with.
	RequestID string
}

// String names the session without its credential.
func (s Session) String() string {
	return fmt.Sprintf("capvend.Session{ID:%s ExpiresAt:%s}", s.ID, s.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from printing the credential.
func (s Session) GoString() string { return s.String() }

// LogValue keeps log/slog from printing the credential.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", s.ID), slog.Time("expires_at", s.ExpiresAt))
}

// StartSession opens a session. A retryable failure (a replica away, draining, the audit
// log unavailable) is retried on the next endpoint with the same request id, so the
// session is opened at most once.
func (o *Orchestrator) StartSession(ctx context.Context, r SessionRequest) (Session, error) {
	if r.RequestID == "" {
		r.RequestID = newUUID()
	}
	req := &capvendv1.StartSessionRequest{AgentId: r.AgentID, RequestId: r.RequestID, Labels: r.Labels}
	if r.UserID != "" {
		req.UserId = &r.UserID
	}
	for _, g := range r.Grants {
		pg := &capvendv1.Grant{Resource: g.Resource, Scopes: g.Scopes}
		if g.TTL > 0 {
			pg.Ttl = durationpb.New(g.TTL)
		}
		req.Grants = append(req.Grants, pg)
	}
	if r.MaxDuration > 0 {
		req.MaxDuration = durationpb.New(r.MaxDuration)
	}
	var resp *capvendv1.StartSessionResponse
	err := o.retry(ctx, func(ctx context.Context, c capvendv1.VendingServiceClient) (err error) {
		resp, err = c.StartSession(ctx, req)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	return Session{ID: resp.GetSessionId(), Credential: resp.GetSessionCredential(), ExpiresAt: resp.GetExpiresAt().AsTime(), RequestID: r.RequestID}, nil
}

// EndSession ends a session: its tokens are revoked and its streams closed. It returns when
// the session ended.
func (o *Orchestrator) EndSession(ctx context.Context, sessionID, reason string) (time.Time, error) {
	var resp *capvendv1.EndSessionResponse
	err := o.retry(ctx, func(ctx context.Context, c capvendv1.VendingServiceClient) (err error) {
		resp, err = c.EndSession(ctx, &capvendv1.EndSessionRequest{SessionId: sessionID, Reason: reason})
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	return resp.GetEndedAt().AsTime(), nil
}

// RevokeTarget is what Revoke revokes; build one with RevokeToken, RevokeSession,
// RevokeAgent, RevokeUser or RevokeResource.
type RevokeTarget struct {
	set func(*capvendv1.RevokeRequest)
}

// RevokeToken targets one token by id (jti).
func RevokeToken(id string) RevokeTarget {
	return RevokeTarget{func(r *capvendv1.RevokeRequest) { r.Target = &capvendv1.RevokeRequest_TokenId{TokenId: id} }}
}

// RevokeSession targets every token of a session; the session ends too.
func RevokeSession(id string) RevokeTarget {
	return RevokeTarget{func(r *capvendv1.RevokeRequest) { r.Target = &capvendv1.RevokeRequest_SessionId{SessionId: id} }}
}

// RevokeAgent targets every token of an agent; its sessions end too.
func RevokeAgent(id string) RevokeTarget {
	return RevokeTarget{func(r *capvendv1.RevokeRequest) { r.Target = &capvendv1.RevokeRequest_AgentId{AgentId: id} }}
}

// RevokeUser targets every token acting for a user; those sessions end too.
func RevokeUser(id string) RevokeTarget {
	return RevokeTarget{func(r *capvendv1.RevokeRequest) { r.Target = &capvendv1.RevokeRequest_UserId{UserId: id} }}
}

// RevokeResource targets every token for a resource; streams stop renewing it.
func RevokeResource(resource string) RevokeTarget {
	return RevokeTarget{func(r *capvendv1.RevokeRequest) { r.Target = &capvendv1.RevokeRequest_Resource{Resource: resource} }}
}

// Revocation is a recorded revocation.
type Revocation struct {
	// ID names the revocation in the audit log and on the revocation feed.
	ID string
	// RevokedAt is when it took effect.
	RevokedAt time.Time
}

// Revoke revokes every live token that matches target, with a reason recorded in the audit
// log and pushed to streams. Revoking twice has the effect of revoking once, so retryable
// failures are retried.
func (o *Orchestrator) Revoke(ctx context.Context, target RevokeTarget, reason string) (Revocation, error) {
	if target.set == nil {
		return Revocation{}, errors.New("capvend: Revoke needs a target (RevokeToken, RevokeSession, …)")
	}
	req := &capvendv1.RevokeRequest{Reason: reason}
	target.set(req)
	var resp *capvendv1.RevokeResponse
	err := o.retry(ctx, func(ctx context.Context, c capvendv1.VendingServiceClient) (err error) {
		resp, err = c.Revoke(ctx, req)
		return err
	})
	if err != nil {
		return Revocation{}, err
	}
	return Revocation{ID: resp.GetRevocationId(), RevokedAt: resp.GetRevokedAt().AsTime()}, nil
}

// retry runs call on each endpoint in turn until it succeeds, fails for a reason retrying
// cannot help, MaxAttempts is reached or ctx ends. Errors come back as *Error.
func (o *Orchestrator) retry(ctx context.Context, call func(context.Context, capvendv1.VendingServiceClient) error) error {
	if len(o.clients) == 0 {
		return errors.New("capvend: orchestrator closed")
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.opts.Credential)
	var last *Error
	for attempt := 0; attempt < o.opts.MaxAttempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(o.opts.Backoff.Delay(attempt-1, nil))
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(last, ctx.Err())
			case <-t.C:
			}
		}
		err := call(actx, o.clients[attempt%len(o.clients)])
		if err == nil {
			return nil
		}
		ce, ok := FromError(err)
		if !ok {
			return err
		}
		last = ce
		if !ce.Retryable() || ctx.Err() != nil {
			return ce
		}
	}
	return last
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
