package bandwidth

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// Chunk sizes a Pacer chooses.
const (
	// MaxChunk is the chunk size without a cap, and the largest with one.
	MaxChunk = 1 << 20
	// MinChunk is the smallest chunk a low cap shrinks chunks to.
	MinChunk = 16 << 10
)

// Clock is the time a Pacer paces by. SystemClock is the real one; tests
// inject a clock whose Sleep advances its Now without waiting.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx ends (then it returns ctx's error).
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ChunkFor is the chunk size that keeps a flow capped at bps bytes per
// second smooth: about a quarter of a second's worth, between MinChunk and
// MaxChunk (MaxChunk when bps is Unlimited).
func ChunkFor(bps int64) int {
	if bps <= 0 {
		return MaxChunk
	}
	return int(min(max(bps/4, MinChunk), MaxChunk))
}

// Limiter is one cap, in bytes per second. One Limiter may be shared by
// several flows (an agent's --bandwidth covers all its uploads at once);
// the flows then share its rate. A nil Limiter is no cap.
type Limiter struct {
	bps int64
	lim *rate.Limiter // safe for concurrent use
}

// NewLimiter returns a cap of bps bytes per second, or nil (no cap) for
// Unlimited. Its burst is ChunkFor(bps): a flow that was idle may send one
// chunk at once, never more.
func NewLimiter(bps int64) *Limiter {
	if bps <= 0 {
		return nil
	}
	return &Limiter{bps: bps, lim: rate.NewLimiter(rate.Limit(bps), ChunkFor(bps))}
}

// Rate is the cap in bytes per second (Unlimited for a nil Limiter).
func (l *Limiter) Rate() int64 {
	if l == nil {
		return Unlimited
	}
	return l.bps
}

// Pacer paces one flow of bytes under every cap it holds; the lowest cap
// sets the pace.
type Pacer struct {
	clock Clock
	caps  []*Limiter
	chunk int
}

// NewPacer paces by clock (SystemClock when nil) under caps; nil caps are
// no caps, and a Pacer with none never waits.
func NewPacer(clock Clock, caps ...*Limiter) *Pacer {
	if clock == nil {
		clock = SystemClock
	}
	p := &Pacer{clock: clock, chunk: MaxChunk}
	for _, c := range caps {
		if c != nil {
			p.caps = append(p.caps, c)
			p.chunk = min(p.chunk, ChunkFor(c.bps))
		}
	}
	return p
}

// Rate is the pace in bytes per second: the lowest cap (Unlimited when
// there is none).
func (p *Pacer) Rate() int64 {
	r := Unlimited
	for _, c := range p.caps {
		if r == Unlimited || c.bps < r {
			r = c.bps
		}
	}
	return r
}

// Chunk is the largest n Wait takes: ChunkFor of the lowest cap.
func (p *Pacer) Chunk() int { return p.chunk }

// Wait blocks until n more bytes may be sent under every cap, or until ctx
// ends. n must not exceed Chunk.
func (p *Pacer) Wait(ctx context.Context, n int) error {
	if len(p.caps) == 0 || n <= 0 {
		return nil
	}
	if n > p.chunk {
		return fmt.Errorf("pacing %d bytes at once: the most is %d", n, p.chunk)
	}
	now := p.clock.Now()
	// Each cap reserves the bytes at the same instant; the flow waits for
	// the latest of them, so the lowest cap sets the pace and the others
	// count the bytes as sent.
	rs := make([]*rate.Reservation, 0, len(p.caps))
	var wait time.Duration
	for _, c := range p.caps {
		r := c.lim.ReserveN(now, n)
		if !r.OK() {
			cancelAll(rs, now)
			return fmt.Errorf("pacing %d bytes: more than the burst of the %s cap", n, Format(c.bps))
		}
		rs = append(rs, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait <= 0 {
		return nil
	}
	if err := p.clock.Sleep(ctx, wait); err != nil {
		// Bytes not sent give their reservation back to shared caps.
		cancelAll(rs, p.clock.Now())
		return err
	}
	return nil
}

func cancelAll(rs []*rate.Reservation, at time.Time) {
	for _, r := range rs {
		r.CancelAt(at)
	}
}
