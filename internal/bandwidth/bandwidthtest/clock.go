// Package bandwidthtest holds a virtual clock for pacing tests: a
// bandwidth.Pacer sleeps on it without waiting, so a test reads how long a
// capped transfer would have taken from the clock, not from wall time.
package bandwidthtest

import (
	"context"
	"sync"
	"time"
)

// Clock is a virtual bandwidth.Clock: Sleep advances Now by its duration
// at once. It is safe for concurrent use; sleeps of concurrent flows add
// up, so a test reads one flow's time from it.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  time.Duration
	sleeps int
}

// NewClock returns a clock that starts at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the virtual time by d, unless ctx has ended.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	c.sleeps++
	return nil
}

// Advance moves the virtual time on by d without counting a sleep, as
// time spent sending would.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Slept is the total of all sleeps so far and how many there were.
func (c *Clock) Slept() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept, c.sleeps
}
