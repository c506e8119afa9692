package fleet

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Defaults of the handshake admission.
const (
	// DefaultMaxHandshakes is how many agent handshakes (an enrollment, or
	// a Connect stream up to its welcome) the controller works on at once.
	// Each one reads and writes the store; beyond a few dozen on two cores
	// more at once only lengthens every one of them.
	DefaultMaxHandshakes = 64
	// MinRetryAfter and MaxRetryAfter bound the retry-after a shed
	// handshake is answered with (see Admission).
	MinRetryAfter = time.Second
	MaxRetryAfter = 30 * time.Second
)

// errShed is what Admit returns when the controller sheds a handshake.
var errShed = errors.New("the controller is at its limit of agent handshakes")

// Admission bounds the agent handshakes a controller serves at once: at
// most Limit run, at most as many again wait for a slot, and any beyond
// are shed at once with RESOURCE_EXHAUSTED and a retry-after trailer.
// Waiting briefly costs the agent nothing; shedding costs it a new TLS
// handshake, so only the part of a herd the controller cannot even queue
// is sent away.
//
// The retry-after is a ticket in a virtual queue, so a shed herd comes
// back at the pace the controller completes handshakes rather than all
// together a second later (to be shed again, each time at the price of a
// TLS handshake): each shed handshake is given the next free time at the
// measured completion rate (completions per second, averaged over
// one-second windows), rounded up to whole seconds and held to
// [MinRetryAfter, MaxRetryAfter]; the agent adds its own jitter.
//
// Security-critical: the admission is the controller's own count of what
// it is doing; nothing an agent says about itself (its id, its facts, how
// long it has waited) moves it up or lets it past.
type Admission struct {
	slots chan struct{}
	// waiting counts the handshakes waiting for a slot; above cap(slots)
	// a new one is shed.
	waiting atomic.Int64
	shed    atomic.Int64
	clock   func() time.Time

	mu sync.Mutex
	// windowStart and done count the handshakes completed in the current
	// one-second window; rate is the average over the past windows.
	windowStart time.Time
	done        int
	rate        float64
	// nextFree is the time the last ticket given to a shed handshake
	// ends at.
	nextFree time.Time
}

// NewAdmission returns an admission of limit handshakes at once (0: the
// default); limit must not be negative. clock defaults to time.Now.
func NewAdmission(limit int, clock func() time.Time) (*Admission, error) {
	if limit < 0 {
		return nil, errors.New("fleet: the handshake limit must not be negative")
	}
	if limit == 0 {
		limit = DefaultMaxHandshakes
	}
	if clock == nil {
		clock = time.Now
	}
	// Until a window was measured, the controller is assumed to complete
	// its limit of handshakes each second.
	return &Admission{slots: make(chan struct{}, limit), clock: clock, rate: float64(limit)}, nil
}

// Limit is how many handshakes run at once.
func (a *Admission) Limit() int { return cap(a.slots) }

// Waiting is how many handshakes wait for a slot now.
func (a *Admission) Waiting() int { return int(a.waiting.Load()) }

// Shed is how many handshakes were shed since the controller started.
func (a *Admission) Shed() int64 { return a.shed.Load() }

// Admit takes a slot for one handshake, waiting for one while fewer than
// Limit others wait. It returns the function that gives the slot back, or
// errShed when the handshake is shed, or ctx's error when the caller went
// away while waiting.
func (a *Admission) Admit(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	default:
	}
	// The waiting count only ever holds handshakes that do wait: it is
	// raised only while below the limit.
	for {
		w := a.waiting.Load()
		if w >= int64(cap(a.slots)) {
			a.shed.Add(1)
			return nil, errShed
		}
		if a.waiting.CompareAndSwap(w, w+1) {
			break
		}
	}
	defer a.waiting.Add(-1)
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Admission) release() {
	<-a.slots
	a.mu.Lock()
	a.roll(a.clock())
	a.done++
	a.mu.Unlock()
}

// roll closes the measuring windows that ended by now. a.mu is held.
func (a *Admission) roll(now time.Time) {
	if a.windowStart.IsZero() {
		a.windowStart = now
		return
	}
	for elapsed := now.Sub(a.windowStart); elapsed >= time.Second; elapsed -= time.Second {
		a.rate = (a.rate + float64(a.done)) / 2
		a.done = 0
		a.windowStart = a.windowStart.Add(time.Second)
		if elapsed > 10*time.Second {
			// Idle for a long while: the rate has decayed to what the
			// last window saw; start afresh from now.
			a.windowStart = now
			break
		}
	}
}

// RetryAfter gives a shed handshake its ticket: how long it should wait.
func (a *Admission) RetryAfter() time.Duration {
	now := a.clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roll(now)
	at := a.nextFree
	if at.Before(now) {
		at = now
	}
	a.nextFree = at.Add(time.Duration(float64(time.Second) / max(a.rate, 1)))
	return min(max(at.Sub(now), MinRetryAfter), MaxRetryAfter)
}

// admitHandshake admits one handshake on ctx, the RPC's context, or
// answers it: RESOURCE_EXHAUSTED with a retry-after trailer in whole
// seconds when it is shed.
func (s *Service) admitHandshake(ctx context.Context, what string) (func(), error) {
	release, err := s.admission.Admit(ctx)
	switch {
	case errors.Is(err, errShed):
		secs := int64(math.Ceil(s.admission.RetryAfter().Seconds()))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.FormatInt(secs, 10)))
		return nil, status.Errorf(codes.ResourceExhausted, "%s refused: %v (%d at once); retry after %ds", what, errShed, s.admission.Limit(), secs)
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return release, nil
}
