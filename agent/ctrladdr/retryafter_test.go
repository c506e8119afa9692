package ctrladdr_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
)

// TestBackoffRetryAfter checks the delay after a shed attempt: between
// the retry-after and that plus the smaller of it and a second, with the
// retry-after held between the backoff's base and its cap.
func TestBackoffRetryAfter(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name       string
		retryAfter time.Duration
		draw       func(int64) int64
		want       time.Duration
	}{
		{name: "one second, earliest", retryAfter: time.Second, draw: lowest, want: time.Second},
		{name: "one second, latest", retryAfter: time.Second, draw: highest, want: 2 * time.Second},
		{name: "none given, earliest", retryAfter: 0, draw: lowest, want: ctrladdr.BackoffBase},
		{name: "none given, latest", retryAfter: 0, draw: highest, want: 2 * ctrladdr.BackoffBase},
		{name: "ten seconds, latest", retryAfter: 10 * time.Second, draw: highest, want: 11 * time.Second},
		{name: "an hour is held to the cap", retryAfter: time.Hour, draw: highest, want: ctrladdr.BackoffCap + ctrladdr.RetryAfterJitter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ctrladdr.Backoff{Int64N: tt.draw}
			if got := b.RetryAfter(tt.retryAfter); got != tt.want {
				t.Errorf("RetryAfter(%s) = %s, want %s", tt.retryAfter, got, tt.want)
			}
			if c := b.Ceiling(); c != ctrladdr.BackoffBase {
				t.Errorf("the ceiling after a shed attempt is %s, want it unraised (%s)", c, ctrladdr.BackoffBase)
			}
		})
	}
}

// TestRetryAfterSpreadsAHerd checks that 10,000 agents shed at the same
// moment with retry-after 1s come back spread over the second that
// follows it: no tenth of it gets more than one and a half times its share.
func TestRetryAfterSpreadsAHerd(t *testing.T) {
	const agents = 10000
	r := rand.New(rand.NewPCG(14, 14))
	var buckets [10]int
	for range agents {
		b := ctrladdr.Backoff{Int64N: r.Int64N}
		d := b.RetryAfter(time.Second)
		if d < time.Second || d > 2*time.Second {
			t.Fatalf("delay %s outside [1s, 2s]", d)
		}
		buckets[min(int((d-time.Second)/(100*time.Millisecond)), 9)]++
	}
	for i, n := range buckets {
		if n > agents/10*3/2 {
			t.Errorf("%d of %d agents come back in the %d-th tenth of the second: %v", n, agents, i+1, buckets)
		}
	}
}

// TestScheduleAfterShed checks where an agent goes after a shed attempt:
// to another controller of the list when there is one, and back to the
// only one otherwise, in both cases after the retry-after's delay and
// without raising the backoff.
func TestScheduleAfterShed(t *testing.T) {
	tests := []struct {
		name string
		list string
		shed string
		// otherExpected: the next address differs from the shed one.
		otherExpected bool
	}{
		{name: "one controller", list: "127.0.0.1:7443", shed: "127.0.0.1:7443"},
		{name: "three controllers", list: "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", shed: "127.0.0.1:2", otherExpected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(50) {
				s := ctrladdr.Schedule{Picker: newPicker(t, tt.list, nil, rand.New(rand.NewPCG(seed, 1))),
					Backoff: ctrladdr.Backoff{Int64N: rand.New(rand.NewPCG(seed, 2)).Int64N}}
				if _, err := s.First(context.Background()); err != nil {
					t.Fatal(err)
				}
				next, wait, err := s.AfterShed(context.Background(), tt.shed, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if wait < time.Second || wait > 2*time.Second {
					t.Fatalf("seed %d: waits %s after a retry-after of 1s, want within [1s, 2s]", seed, wait)
				}
				if tt.otherExpected == (next.Addr == tt.shed) {
					t.Fatalf("seed %d: next %s after %s shed the attempt", seed, next.Addr, tt.shed)
				}
				if c := s.Backoff.Ceiling(); c != ctrladdr.BackoffBase {
					t.Fatalf("seed %d: ceiling %s after a shed attempt, want %s", seed, c, ctrladdr.BackoffBase)
				}
			}
		})
	}
}
