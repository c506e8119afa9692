package ctrladdr

import (
	"math/rand/v2"
	"time"
)

// The agent's reconnection backoff.
const (
	// BackoffBase is the ceiling of the first delay after a failure.
	BackoffBase = 500 * time.Millisecond
	// BackoffCap is the highest ceiling: an agent whose controllers are
	// all down tries again at least this often.
	BackoffCap = 30 * time.Second
	// StableAfter is how long a connection must have stayed up for the
	// backoff to start again from BackoffBase when it ends. It is long
	// enough that a controller accepting streams and dropping them at once
	// meets a growing backoff, and short enough that an agent moved by
	// several failovers within minutes (a cluster losing controllers one
	// after another) is not left waiting a ceiling each time.
	StableAfter = 10 * time.Second
)

// Backoff is exponential backoff with full jitter: the n-th delay since
// the last Reset is uniform in [0, min(Cap, Base·2ⁿ)]. Full jitter spreads
// the agents of a controller that died over the whole window instead of
// sending them back in waves. The zero value uses BackoffBase and
// BackoffCap. A Backoff is not safe for concurrent use.
type Backoff struct {
	// Base is the first ceiling (default BackoffBase).
	Base time.Duration
	// Cap is the highest ceiling (default BackoffCap).
	Cap time.Duration
	// Int64N returns a uniform random integer in [0, n); defaults to
	// math/rand/v2's Int64N. Tests inject a seeded source.
	Int64N func(n int64) int64

	attempt int
}

// Ceiling returns the upper bound of the next delay.
func (b *Backoff) Ceiling() time.Duration {
	base, capped := b.Base, b.Cap
	if base <= 0 {
		base = BackoffBase
	}
	if capped <= 0 {
		capped = BackoffCap
	}
	c := base
	for i := 0; i < b.attempt && c < capped; i++ {
		c *= 2
	}
	return min(c, capped)
}

// Next returns the delay before the next attempt and raises the ceiling.
func (b *Backoff) Next() time.Duration {
	c := b.Ceiling()
	n := b.Int64N
	if n == nil {
		n = rand.Int64N
	}
	d := time.Duration(n(int64(c) + 1))
	if c < b.capOrDefault() {
		b.attempt++
	}
	return d
}

// Short returns a delay uniform in [0, Base], without raising the
// ceiling: the pause between two addresses of one round.
func (b *Backoff) Short() time.Duration {
	base := b.Base
	if base <= 0 {
		base = BackoffBase
	}
	base = min(base, b.capOrDefault())
	n := b.Int64N
	if n == nil {
		n = rand.Int64N
	}
	return time.Duration(n(int64(base) + 1))
}

// Reset starts the ceilings again from Base, after a connection that
// stayed up.
func (b *Backoff) Reset() { b.attempt = 0 }

func (b *Backoff) capOrDefault() time.Duration {
	if b.Cap <= 0 {
		return BackoffCap
	}
	return b.Cap
}

// RetryAfterJitter is the most an agent adds to a controller's
// retry-after.
const RetryAfterJitter = time.Second

// RetryAfter returns the delay before trying again a controller that shed
// the attempt with a retry-after of d: uniform in [d, d + min(d,
// RetryAfterJitter)]. The controller already spreads a shed herd over
// whole seconds (each gets a later ticket); the jitter spreads the agents
// given the same second over it. d is held to [Base, Cap]: a controller
// cannot park its agents for longer than the backoff's ceiling, nor bring
// them straight back. It does not raise the backoff's ceiling: a
// controller that answers is up.
func (b *Backoff) RetryAfter(d time.Duration) time.Duration {
	base := b.Base
	if base <= 0 {
		base = BackoffBase
	}
	d = min(max(d, base), b.capOrDefault())
	n := b.Int64N
	if n == nil {
		n = rand.Int64N
	}
	return d + time.Duration(n(int64(min(d, RetryAfterJitter))+1))
}
