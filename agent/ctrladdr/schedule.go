package ctrladdr

import (
	"context"
	"time"
)

// Schedule decides which controller an agent dials next and how long it
// waits first. Attempts go in rounds: a round is every resolved address
// once, in a random order (see Picker.Round). While a round has addresses
// left and the last attempt never got a stream, the next address is tried
// after a short delay, uniform in [0, Backoff base]: one dead controller
// in a list of three costs an agent half a second, not a backoff ceiling.
// When a connection that was up ends, or a round is used up, a new round
// starts after the backoff's full-jitter delay, which grows until a
// connection stays up for StableAfter. A Schedule is not safe for
// concurrent use.
type Schedule struct {
	// Picker resolves and orders the addresses.
	Picker *Picker
	// Backoff gives the delays (its zero value uses the defaults).
	Backoff Backoff

	round []Target
}

// First returns the first address to dial, at once.
func (s *Schedule) First(ctx context.Context) (Target, error) {
	round, err := s.Picker.Round(ctx, "")
	if err != nil {
		return Target{}, err
	}
	s.round = round[1:]
	return round[0], nil
}

// After returns the address to dial after an attempt at failed ("" when
// no address resolved) whose stream stayed up for up (0: it never came
// up), and the delay before dialling it. The delay is returned with a
// resolution error too, so the caller waits before trying again.
func (s *Schedule) After(ctx context.Context, failed string, up time.Duration) (Target, time.Duration, error) {
	if up >= StableAfter {
		s.Backoff.Reset()
	}
	if up == 0 && failed != "" && len(s.round) > 0 {
		t := s.round[0]
		s.round = s.round[1:]
		return t, s.Backoff.Short(), nil
	}
	wait := s.Backoff.Next()
	round, err := s.Picker.Round(ctx, failed)
	if err != nil {
		s.round = nil
		return Target{}, wait, err
	}
	s.round = round[1:]
	return round[0], wait, nil
}

// AfterShed returns the address to dial after the controller at shed
// refused the attempt with a retry-after of d (RESOURCE_EXHAUSTED: it is
// up, and at its limit of handshakes), and the delay before dialling it:
// Backoff.RetryAfter(d). The next address comes from a new round that
// starts away from shed when the list has others.
func (s *Schedule) AfterShed(ctx context.Context, shed string, d time.Duration) (Target, time.Duration, error) {
	wait := s.Backoff.RetryAfter(d)
	round, err := s.Picker.Round(ctx, shed)
	if err != nil {
		s.round = nil
		return Target{}, wait, err
	}
	s.round = round[1:]
	return round[0], wait, nil
}
