package capvend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	capvendv1 "capvend.dev/client/gen/capvend/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// State is where a CredentialManager stands, for health checks.
type State int

const (
	// StateConnecting: the first stream is opening.
	StateConnecting State = iota + 1
	// StateReady: a stream is open.
	StateReady
	// StateReconnecting: a stream failed; the manager is waiting or opening the next one.
	StateReconnecting
	// StateEnded: the session ended; the manager has stopped.
	StateEnded
	// StateFailed: a fatal refusal stopped the manager (see Err).
	StateFailed
	// StateClosed: Close was called or New's context ended.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateReady:
		return "ready"
	case StateReconnecting:
		return "reconnecting"
	case StateEnded:
		return "ended"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// CredentialManager is the runtime side of one agent session: it holds the session's
// WatchSession stream in a goroutine and answers Token from memory. Safe for concurrent use.
type CredentialManager struct {
	opts         Options
	cache        *tokenCache
	minRemaining time.Duration
	now          func() time.Time
	cancel       context.CancelFunc
	done         chan struct{}

	mu          sync.Mutex
	conns       []*grpc.ClientConn
	current     int
	state       State
	err         error
	resumeToken string
	stopped     map[int]bool  // grant index → withdrawn by the server
	heartbeat   time.Duration // the server's heartbeat interval, as seen on the stream
}

// New starts a CredentialManager: it connects to Options.Endpoints in the background and
// returns at once. It stops when ctx ends or Close is called.
func New(ctx context.Context, opts Options) (*CredentialManager, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Grants = slices.Clone(opts.Grants)
	opts.Endpoints = slices.Clone(opts.Endpoints)
	if opts.TransportCredentials == nil {
		opts.TransportCredentials = credentials.NewTLS(nil)
	}
	m := &CredentialManager{
		opts:         opts,
		cache:        newTokenCache(),
		minRemaining: opts.MinRemaining,
		now:          opts.clock,
		done:         make(chan struct{}),
		state:        StateConnecting,
		resumeToken:  opts.ResumeToken,
		stopped:      map[int]bool{},
	}
	if m.minRemaining == 0 {
		m.minRemaining = DefaultMinRemaining
	}
	if m.now == nil {
		m.now = time.Now
	}
	for _, e := range opts.Endpoints {
		c, err := m.dial(e)
		if err != nil {
			m.closeConns()
			return nil, fmt.Errorf("capvend: endpoint %q: %w", e, err)
		}
		m.conns = append(m.conns, c)
	}
	runCtx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	go m.run(runCtx)
	return m, nil
}

func (m *CredentialManager) dial(endpoint string) (*grpc.ClientConn, error) {
	return dial(endpoint, m.opts.TransportCredentials, m.opts.Backoff, m.opts.DialOptions)
}

// dial connects lazily to endpoint. gRPC's own reconnects follow b too: its default backoff
// grows to two minutes, which would keep a replica that came back unused long after the
// manager's next attempt.
func dial(endpoint string, tc credentials.TransportCredentials, b Backoff, extra []grpc.DialOption) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(tc),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: b.Ceiling(0), Multiplier: 2, Jitter: 0.2, MaxDelay: b.Ceiling(64)},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	return grpc.NewClient(endpoint, append(opts, extra...)...)
}

// Close stops the manager, closes its connections and forgets every token. It waits for
// the manager's goroutine to end. Safe to call more than once.
func (m *CredentialManager) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// Done is closed once the manager has stopped: closed, session ended, or a fatal refusal.
func (m *CredentialManager) Done() <-chan struct{} { return m.done }

// Err says why the manager stopped (nil while it runs): ErrClosed, or an *Error whose
// Reason is SESSION_ENDED or the fatal refusal's.
func (m *CredentialManager) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// State is where the manager stands now.
func (m *CredentialManager) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// ResumeToken is the stream position after the last event seen. A new manager of the same
// session (after a process restart) passes it as Options.ResumeToken to replay what it missed.
func (m *CredentialManager) ResumeToken() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resumeToken
}

// grant returns the grant for resource and checks that scopes are among its scopes.
func (m *CredentialManager) grant(resource string, scopes []string) (Grant, error) {
	for _, g := range m.opts.Grants {
		if g.Resource != resource {
			continue
		}
		for _, s := range scopes {
			if !slices.Contains(g.Scopes, s) {
				return Grant{}, localError(codes.PermissionDenied, ReasonScopeNotGranted, "scope %q on %q is not among this manager's grants", s, resource)
			}
		}
		return g, nil
	}
	return Grant{}, localError(codes.PermissionDenied, ReasonResourceNotGranted, "resource %q is not among this manager's grants", resource)
}

// Token returns the held token for resource that carries scopes (the grant's when none are
// named). It answers from memory; it never returns a token the server revoked, nor one with
// less than MinRemaining (or a quarter of its lifetime) left. While none is held (the stream
// is connecting, or a renewal is due) it waits until one arrives or ctx ends. It fails at
// once when the grant was revoked (GRANT_REVOKED), the session ended (SESSION_ENDED), a
// fatal refusal stopped the manager, or the manager was closed (ErrClosed).
func (m *CredentialManager) Token(ctx context.Context, resource string, scopes ...string) (Token, error) {
	if _, err := m.grant(resource, scopes); err != nil {
		return Token{}, err
	}
	for {
		tok, err, wait := m.cache.lookup(m.now(), resource, scopes, m.minRemaining)
		if err != nil || wait == nil {
			return tok, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return Token{}, fmt.Errorf("capvend: no token for %q yet: %w", resource, context.Cause(ctx))
		}
	}
}

// Refresh returns a token for resource other than the one whose id is rejected: the held
// one when it differs, else a new one from IssueToken, which then becomes the held token.
// RoundTripper calls it after a resource server answers 401.
func (m *CredentialManager) Refresh(ctx context.Context, resource, rejected string, scopes ...string) (Token, error) {
	g, err := m.grant(resource, scopes)
	if err != nil {
		return Token{}, err
	}
	tok, err, wait := m.cache.lookup(m.now(), resource, scopes, m.minRemaining)
	if err != nil {
		return Token{}, err
	}
	if wait == nil && tok.ID != rejected {
		return tok, nil
	}
	req := &capvendv1.IssueTokenRequest{Resource: g.Resource, Scopes: g.Scopes}
	if g.TTL > 0 {
		req.Ttl = durationpb.New(g.TTL)
	}
	var lastErr error
	for i := range m.opts.Endpoints {
		m.mu.Lock()
		if len(m.conns) == 0 {
			m.mu.Unlock()
			return Token{}, ErrClosed
		}
		conn := m.conns[(m.current+i)%len(m.conns)]
		m.mu.Unlock()
		resp, err := capvendv1.NewVendingServiceClient(conn).IssueToken(m.authorize(ctx), req)
		if err != nil {
			ce, _ := FromError(err)
			if ce != nil && !ce.Retryable() {
				return Token{}, ce
			}
			lastErr = err
			continue
		}
		fresh := tokenFrom(resp.GetToken(), g.Resource)
		if m.cache.isRevoked(fresh.ID) {
			return Token{}, localError(codes.PermissionDenied, ReasonTokenRevoked, "token %s was revoked", fresh.ID)
		}
		m.cache.put(fresh)
		return fresh, nil
	}
	if ce, ok := FromError(lastErr); ok {
		return Token{}, ce
	}
	return Token{}, lastErr
}

// authorize adds the session credential to an outgoing call's metadata.
func (m *CredentialManager) authorize(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+m.opts.SessionCredential)
}

func (m *CredentialManager) emit(e Event) {
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(e)
	}
}

func (m *CredentialManager) setState(s State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.state = s
	}
}

// stop records why the manager stopped (the first reason wins) and fails every lookup with it.
func (m *CredentialManager) stop(state State, err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
		m.state = state
	}
	m.mu.Unlock()
	m.cache.finish(err)
}

func (m *CredentialManager) closeConns() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		_ = c.Close()
	}
	m.conns = nil
}

// tokenFrom converts a token message; resource names the grant it serves.
func tokenFrom(t *capvendv1.Token, resource string) Token {
	r := t.GetResource()
	if r == "" {
		r = resource
	}
	return Token{
		ID:        t.GetTokenId(),
		Resource:  r,
		Scopes:    slices.Clone(t.GetScopes()),
		IssuedAt:  t.GetIssuedAt().AsTime(),
		ExpiresAt: t.GetExpiresAt().AsTime(),
		value:     t.GetAccessToken(),
	}
}

// RoundTripper returns an http.RoundTripper over base (nil: http.DefaultTransport) that sends
// this manager's token for resource and retries once on a 401 (see RoundTripper).
func (m *CredentialManager) RoundTripper(resource string, base http.RoundTripper, scopes ...string) http.RoundTripper {
	return NewRoundTripper(m, resource, base, scopes...)
}

// PerRPCCredentials returns gRPC per-call credentials that send this manager's token for
// resource; they require transport security.
func (m *CredentialManager) PerRPCCredentials(resource string, scopes ...string) *PerRPCCredentials {
	return NewPerRPCCredentials(m, resource, scopes...)
}
