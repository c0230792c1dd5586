package capvend

import (
	"testing"
	"time"
)

func TestBackoffCeilingDoublesUpToMax(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Ceiling(i); got != w*time.Millisecond && !(w == 1000 && got == time.Second) {
			t.Errorf("Ceiling(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := b.Ceiling(1 << 20); got != time.Second {
		t.Errorf("Ceiling(huge) = %v, want the max (no overflow)", got)
	}
}

func TestBackoffDefaults(t *testing.T) {
	var b Backoff
	if got := b.Ceiling(0); got != DefaultBackoffInitial {
		t.Errorf("Ceiling(0) = %v, want %v", got, DefaultBackoffInitial)
	}
	if got := b.Ceiling(100); got != DefaultBackoffMax {
		t.Errorf("Ceiling(100) = %v, want %v", got, DefaultBackoffMax)
	}
}

func TestBackoffFullJitterSpansZeroToCeiling(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 8 * time.Second}
	if got := b.Delay(2, func() float64 { return 0 }); got != 0 {
		t.Errorf("jitter 0: %v, want 0", got)
	}
	if got := b.Delay(2, func() float64 { return 0.5 }); got != 2*time.Second {
		t.Errorf("jitter 0.5 at attempt 2: %v, want 2s", got)
	}
	if got := b.Delay(2, func() float64 { return 0.999999 }); got <= 3*time.Second || got > 4*time.Second {
		t.Errorf("jitter ~1 at attempt 2: %v, want just under 4s", got)
	}
	// The real source stays within bounds.
	for i := 0; i < 1000; i++ {
		if d := b.Delay(3, nil); d < 0 || d > 8*time.Second {
			t.Fatalf("Delay out of [0, 8s]: %v", d)
		}
	}
}
