package capvend

import (
	"math/rand/v2"
	"time"
)

// Default reconnect delays: the first retry waits up to DefaultBackoffInitial, each further
// one up to twice as long, never more than DefaultBackoffMax.
const (
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
)

// Backoff computes reconnect delays: exponential growth with full jitter, so a fleet of
// runtimes cut off by one replica does not come back in one burst.
type Backoff struct {
	// Initial bounds the first delay. Zero means DefaultBackoffInitial.
	Initial time.Duration
	// Max bounds every delay. Zero means DefaultBackoffMax.
	Max time.Duration
}

// Ceiling is the upper bound of the delay before retry number attempt (0 for the first):
// min(Max, Initial × 2^attempt).
func (b Backoff) Ceiling(attempt int) time.Duration {
	initial, max := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	if initial > max {
		return max
	}
	c := initial
	for i := 0; i < attempt; i++ {
		if c >= max/2 {
			return max
		}
		c *= 2
	}
	return c
}

// Delay is the wait before retry number attempt: uniform in [0, Ceiling(attempt)] ("full
// jitter"). jitter must return a number in [0, 1); nil means math/rand/v2.
func (b Backoff) Delay(attempt int, jitter func() float64) time.Duration {
	if jitter == nil {
		jitter = rand.Float64
	}
	j := jitter()
	if j < 0 {
		j = 0
	} else if j >= 1 {
		j = 1
	}
	return time.Duration(j * float64(b.Ceiling(attempt)))
}
