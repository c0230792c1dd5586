package capvend

import (
	"context"
	"errors"
	"fmt"
	"time"

	capvendv1 "capvend.dev/client/gen/capvend/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Why a stream ended without an error from the server.
var (
	errWatchdog        = errors.New("capvend: no heartbeat from the server in time; replacing the connection")
	errReconnectAsked  = errors.New("capvend: the server asked to reconnect")
	errStreamCompleted = errors.New("capvend: the server closed the stream")
)

// outcome is how one stream ended.
type outcome struct {
	err        error // why; nil only when the manager stopped
	stopped    bool  // the manager is done (ended, failed or closed)
	progressed bool  // the stream delivered at least one event
	freshStart bool  // drop the resume token and every held token
	redial     bool  // the connection is dead: replace it
}

// run holds streams until the manager stops, failing over between endpoints.
func (m *CredentialManager) run(ctx context.Context) {
	defer close(m.done)
	defer m.closeConns()
	defer m.stop(StateClosed, ErrClosed)

	attempt := 0
	for ctx.Err() == nil {
		m.mu.Lock()
		idx := m.current
		m.mu.Unlock()
		out := m.watch(ctx, idx)
		if out.stopped || ctx.Err() != nil {
			return
		}
		if out.progressed {
			attempt = 0
		}
		if out.freshStart {
			m.mu.Lock()
			m.resumeToken = ""
			m.mu.Unlock()
			m.cache.clearHeld()
		}
		m.mu.Lock()
		if out.redial {
			if c, err := m.dial(m.opts.Endpoints[idx]); err == nil {
				_ = m.conns[idx].Close()
				m.conns[idx] = c
			}
		}
		m.current = (idx + 1) % len(m.conns)
		next := m.opts.Endpoints[m.current]
		m.mu.Unlock()
		m.setState(StateReconnecting)

		delay := m.opts.Backoff.Delay(attempt, m.opts.jitter)
		attempt++
		m.logf("capvend: stream on %s ended (%v); retrying on %s in %s", m.opts.Endpoints[idx], out.err, next, delay)
		m.emit(Event{Kind: EventDisconnected, Endpoint: next, Err: out.err, RetryIn: delay})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchTimeout is how long the stream may stay silent.
func (m *CredentialManager) watchTimeout() time.Duration {
	if m.opts.HeartbeatTimeout > 0 {
		return m.opts.HeartbeatTimeout
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.heartbeat > 0 {
		return HeartbeatTimeoutFactor * m.heartbeat
	}
	return DefaultHeartbeatTimeout
}

// request builds the WatchSession request for the grants still served, and the map from
// the stream's grant indexes to the manager's.
func (m *CredentialManager) request() (*capvendv1.WatchSessionRequest, []int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	req := &capvendv1.WatchSessionRequest{ResumeToken: m.resumeToken}
	var index []int
	for i, g := range m.opts.Grants {
		if m.stopped[i] {
			continue
		}
		pg := &capvendv1.Grant{Resource: g.Resource, Scopes: g.Scopes}
		if g.TTL > 0 {
			pg.Ttl = durationpb.New(g.TTL)
		}
		req.Grants = append(req.Grants, pg)
		index = append(index, i)
	}
	return req, index, req.ResumeToken != ""
}

// watch holds one stream on endpoint idx until it ends.
func (m *CredentialManager) watch(ctx context.Context, idx int) outcome {
	req, index, resumed := m.request()
	if len(index) == 0 {
		// Every grant was withdrawn: nothing left to watch, but the session lives on; the
		// manager stops and Token reports each grant's revocation.
		m.stop(StateFailed, localError(codes.PermissionDenied, ReasonGrantRevoked, "every grant of this manager was revoked"))
		return outcome{stopped: true}
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(m.watchTimeout(), func() { cancel(errWatchdog) })
	defer watchdog.Stop()

	m.mu.Lock()
	conn := m.conns[idx]
	m.mu.Unlock()
	endpoint := m.opts.Endpoints[idx]
	stream, err := capvendv1.NewVendingServiceClient(conn).WatchSession(m.authorize(sctx), req)
	if err != nil {
		return m.classify(ctx, sctx, err, false)
	}
	progressed := false
	var lastBeat time.Time
	for {
		msg, err := stream.Recv()
		if err != nil {
			return m.classify(ctx, sctx, err, progressed)
		}
		watchdog.Reset(m.watchTimeout())
		if !progressed {
			progressed = true
			// The new stream sends a fresh token for every grant at once, and from now on
			// tells only of revocations of its own tokens: a token from an earlier stream
			// could be revoked without a word, so none is handed out any more.
			m.cache.clearHeld()
			m.setState(StateReady)
			m.emit(Event{Kind: EventConnected, Endpoint: endpoint, Resumed: resumed})
		}
		if rt := msg.GetResumeToken(); rt != "" {
			m.mu.Lock()
			m.resumeToken = rt
			m.mu.Unlock()
		}
		switch ev := msg.GetEvent().(type) {
		case *capvendv1.WatchSessionResponse_TokenIssued:
			m.onToken(ev.TokenIssued, index)
		case *capvendv1.WatchSessionResponse_TokensRevoked:
			m.onRevoked(ev.TokensRevoked, index)
		case *capvendv1.WatchSessionResponse_SessionEnded:
			reason := ev.SessionEnded.GetReason()
			m.stop(StateEnded, localError(codes.Unauthenticated, ReasonSessionEnded, "session ended: %s", reason))
			m.emit(Event{Kind: EventEnded, Reason: reason})
			return outcome{stopped: true, progressed: true}
		case *capvendv1.WatchSessionResponse_Heartbeat:
			now := time.Now()
			if !lastBeat.IsZero() {
				m.learnHeartbeat(now.Sub(lastBeat))
			}
			lastBeat = now
		case *capvendv1.WatchSessionResponse_Reconnect:
			return outcome{err: fmt.Errorf("%w: %s", errReconnectAsked, ev.Reconnect.GetReason()), progressed: true}
		}
	}
}

// learnHeartbeat keeps the shortest gap seen between two heartbeats: the server's interval.
func (m *CredentialManager) learnHeartbeat(gap time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if gap > 0 && (m.heartbeat == 0 || gap < m.heartbeat) {
		m.heartbeat = gap
	}
}

func (m *CredentialManager) onToken(ti *capvendv1.TokenIssued, index []int) {
	gi := int(ti.GetGrantIndex())
	if gi >= len(index) || ti.GetToken() == nil {
		return
	}
	g := m.opts.Grants[index[gi]]
	tok := tokenFrom(ti.GetToken(), g.Resource)
	tok.Resource = g.Resource
	if m.cache.put(tok) {
		m.emit(Event{Kind: EventToken, Resource: g.Resource, TokenID: tok.ID, ReplacesTokenID: ti.GetReplacesTokenId(), ExpiresAt: tok.ExpiresAt})
	}
}

func (m *CredentialManager) onRevoked(tr *capvendv1.TokensRevoked, index []int) {
	var stop []string
	m.mu.Lock()
	for _, si := range tr.GetGrantIndexes() {
		if int(si) < len(index) {
			m.stopped[index[si]] = true
			stop = append(stop, m.opts.Grants[index[si]].Resource)
		}
	}
	m.mu.Unlock()
	why := localError(codes.PermissionDenied, ReasonGrantRevoked, "the grant was revoked: %s", tr.GetReason())
	dropped := m.cache.revoke(m.now(), tr.GetTokenIds(), stop, why)
	resources := append(dropped, stop...)
	m.emit(Event{Kind: EventRevoked, TokenIDs: tr.GetTokenIds(), Resources: uniq(resources), StoppedResources: stop, Reason: tr.GetReason()})
}

// classify turns a stream's error into what the manager does next.
func (m *CredentialManager) classify(ctx, sctx context.Context, err error, progressed bool) outcome {
	if ctx.Err() != nil {
		return outcome{stopped: true}
	}
	if cause := context.Cause(sctx); errors.Is(cause, errWatchdog) {
		return outcome{err: errWatchdog, progressed: progressed, redial: true}
	}
	ce, ok := FromError(err)
	if !ok {
		return outcome{err: err, progressed: progressed}
	}
	switch {
	case ce.Code == codes.OK:
		return outcome{err: errStreamCompleted, progressed: progressed}
	case ce.Reason == ReasonResumeTokenExpired,
		ce.Reason == ReasonInvalidArgument && ce.Metadata["field"] == "resume_token":
		return outcome{err: ce, progressed: progressed, freshStart: true}
	case ce.Reason == ReasonGrantRevoked && ce.Metadata["resource"] != "":
		m.withdraw(ce.Metadata["resource"], ce)
		return outcome{err: ce, progressed: progressed}
	case ce.Reason == ReasonSessionEnded:
		m.stop(StateEnded, ce)
		m.emit(Event{Kind: EventEnded, Reason: ce.Message, Err: ce})
		return outcome{stopped: true, progressed: progressed}
	case ce.Fatal():
		m.stop(StateFailed, ce)
		m.emit(Event{Kind: EventFailed, Err: ce})
		return outcome{stopped: true, progressed: progressed}
	}
	return outcome{err: ce, progressed: progressed}
}

// withdraw stops a grant the server refused as revoked, so the next stream leaves it out.
func (m *CredentialManager) withdraw(resource string, why *Error) {
	m.mu.Lock()
	for i, g := range m.opts.Grants {
		if g.Resource == resource {
			m.stopped[i] = true
		}
	}
	m.mu.Unlock()
	m.cache.revoke(m.now(), nil, []string{resource}, why)
	m.emit(Event{Kind: EventRevoked, Resources: []string{resource}, StoppedResources: []string{resource}, Reason: why.Message})
}

func (m *CredentialManager) logf(format string, args ...any) {
	if m.opts.Logger != nil {
		m.opts.Logger.Info(fmt.Sprintf(format, args...))
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
