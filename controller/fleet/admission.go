package fleet

import (
	"context"
	"errors"
	"math"
	"strconv"
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
	// HandshakeRetryAfter is the retry-after a shed handshake is answered
	// with. The agent waits between it and twice it, picked at random, so
	// the shed part of a herd comes back spread over a second rather than
	// in one wave.
	HandshakeRetryAfter = time.Second
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
// Security-critical: the admission is the controller's own count of what
// it is doing; nothing an agent says about itself (its id, its facts, how
// long it has waited) moves it up or lets it past.
type Admission struct {
	slots chan struct{}
	// waiting counts the handshakes waiting for a slot; above cap(slots)
	// a new one is shed.
	waiting atomic.Int64
	shed    atomic.Int64
	// RetryAfter is the delay given to shed handshakes.
	RetryAfter time.Duration
}

// NewAdmission returns an admission of limit handshakes at once (0: the
// default); limit must not be negative.
func NewAdmission(limit int) (*Admission, error) {
	if limit < 0 {
		return nil, errors.New("fleet: the handshake limit must not be negative")
	}
	if limit == 0 {
		limit = DefaultMaxHandshakes
	}
	return &Admission{slots: make(chan struct{}, limit), RetryAfter: HandshakeRetryAfter}, nil
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

func (a *Admission) release() { <-a.slots }

// admitHandshake admits one handshake on ctx, the RPC's context, or
// answers it: RESOURCE_EXHAUSTED with a retry-after trailer in whole
// seconds when it is shed.
func (s *Service) admitHandshake(ctx context.Context, what string) (func(), error) {
	release, err := s.admission.Admit(ctx)
	switch {
	case errors.Is(err, errShed):
		secs := int64(math.Ceil(s.admission.RetryAfter.Seconds()))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.FormatInt(secs, 10)))
		return nil, status.Errorf(codes.ResourceExhausted, "%s refused: %v (%d at once); retry after %ds", what, errShed, s.admission.Limit(), secs)
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return release, nil
}
