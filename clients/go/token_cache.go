package capvend

import (
	"sync"
	"time"
)

// revokedMemory is how long a revoked id is remembered when its expiry is unknown: the
// longest token lifetime a server grants by default.
const revokedMemory = time.Hour

// tokenCache holds the newest token of each grant, the ids the server revoked, the grants it
// stopped, and the manager's terminal error. Every change wakes the waiters.
type tokenCache struct {
	mu       sync.Mutex
	held     map[string]Token     // resource → newest token
	stopped  map[string]*Error    // resource → why the grant gets no more tokens
	revoked  map[string]time.Time // token id → when it can be forgotten
	terminal error
	changed  chan struct{} // closed and replaced on every change
}

func newTokenCache() *tokenCache {
	return &tokenCache{
		held:    map[string]Token{},
		stopped: map[string]*Error{},
		revoked: map[string]time.Time{},
		changed: make(chan struct{}),
	}
}

func (c *tokenCache) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// put keeps t as its resource's token unless t was revoked, the grant stopped, or a newer
// token is held. It reports whether t was kept.
func (c *tokenCache) put(t Token) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminal != nil || c.stopped[t.Resource] != nil {
		return false
	}
	if _, gone := c.revoked[t.ID]; gone {
		return false
	}
	if cur, ok := c.held[t.Resource]; ok && cur.IssuedAt.After(t.IssuedAt) {
		return false
	}
	c.held[t.Resource] = t
	c.broadcast()
	return true
}

// revoke forgets the tokens named by ids and stops the grants of stopResources. It returns
// the resources whose held token was dropped.
func (c *tokenCache) revoke(now time.Time, ids []string, stopResources []string, why *Error) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, until := range c.revoked {
		if now.After(until) {
			delete(c.revoked, id)
		}
	}
	var dropped []string
	for _, id := range ids {
		forget := now.Add(revokedMemory)
		for resource, t := range c.held {
			if t.ID == id {
				forget = t.ExpiresAt
				delete(c.held, resource)
				dropped = append(dropped, resource)
			}
		}
		c.revoked[id] = forget
	}
	for _, resource := range stopResources {
		if _, ok := c.held[resource]; ok {
			delete(c.held, resource)
			dropped = append(dropped, resource)
		}
		c.stopped[resource] = why
	}
	c.broadcast()
	return dropped
}

// clearHeld forgets every held token (not the revoked ids): used when a stream starts over
// without a resume token, so no token that may have been revoked meanwhile is handed out.
func (c *tokenCache) clearHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.held)
	c.broadcast()
}

// finish makes every later lookup fail with err (the first call wins) and forgets every token.
func (c *tokenCache) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminal != nil {
		return
	}
	c.terminal = err
	clear(c.held)
	c.broadcast()
}

// lookup answers a token request from memory. When it returns neither a token nor an error,
// the caller waits on the returned channel, which closes at the next change.
func (c *tokenCache) lookup(now time.Time, resource string, scopes []string, minRemaining time.Duration) (Token, error, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminal != nil {
		return Token{}, c.terminal, nil
	}
	if why := c.stopped[resource]; why != nil {
		return Token{}, why, nil
	}
	if t, ok := c.held[resource]; ok && t.usableAt(now, minRemaining) && t.hasScopes(scopes) {
		return t, nil, nil
	}
	return Token{}, nil, c.changed
}

// isRevoked reports whether the server revoked the token id.
func (c *tokenCache) isRevoked(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.revoked[id]
	return ok
}
