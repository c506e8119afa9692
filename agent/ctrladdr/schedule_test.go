package ctrladdr_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
)

// TestScheduleFindsTheLiveController: of several addresses only some
// serve. From any start, the agent reaches a live one within one round,
// waiting at most the backoff base between the addresses of a round; and
// when an established connection ends, the next round starts elsewhere
// after a backoff delay that grows until a connection stays up.
func TestScheduleFindsTheLiveController(t *testing.T) {
	const base = ctrladdr.BackoffBase
	tests := []struct {
		name string
		list []string
		live map[string]bool
	}{
		{name: "middle of three serves", list: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, live: map[string]bool{"127.0.0.1:2": true}},
		{name: "last of five serves", list: []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1"}, live: map[string]bool{"10.0.0.5:1": true}},
		{name: "two of three serve", list: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, live: map[string]bool{"127.0.0.1:1": true, "127.0.0.1:3": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(200) {
				s := ctrladdr.Schedule{
					Picker:  newPicker(t, strings.Join(tt.list, ","), nil, rand.New(rand.NewPCG(seed, 1))),
					Backoff: ctrladdr.Backoff{Int64N: rand.New(rand.NewPCG(seed, 2)).Int64N},
				}
				target, err := s.First(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var waited time.Duration
				attempts := 1
				for !tt.live[target.Addr] {
					var wait time.Duration
					target, wait, err = s.After(context.Background(), target.Addr, 0)
					if err != nil {
						t.Fatal(err)
					}
					if wait > base {
						t.Fatalf("seed %d: waited %s before the next address of the round, want ≤ %s", seed, wait, base)
					}
					waited += wait
					attempts++
				}
				if attempts > len(tt.list)-len(tt.live)+1 {
					t.Fatalf("seed %d: %d attempts to reach a live controller among %d addresses (%d dead)", seed, attempts, len(tt.list), len(tt.list)-len(tt.live))
				}
				// The connection was up a second and broke: a new round,
				// not starting at the controller that failed, after a
				// delay from the backoff (ceiling base, then 2·base...).
				failed := target.Addr
				next, wait, err := s.After(context.Background(), failed, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if next.Addr == failed {
					t.Fatalf("seed %d: went straight back to %s, which just failed", seed, failed)
				}
				if ceil := s.Backoff.Ceiling(); ceil != 2*base || wait > base {
					t.Fatalf("seed %d: first delay after a lost connection %s (ceiling now %s), want ≤ %s and the ceiling raised to %s", seed, wait, ceil, base, 2*base)
				}
			}
		})
	}
}

// TestScheduleBacksOffBetweenRounds: when no address serves, the agent
// tries each once per round and waits a growing backoff between rounds;
// a connection that stayed up StableAfter starts the backoff again.
func TestScheduleBacksOffBetweenRounds(t *testing.T) {
	list := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	s := ctrladdr.Schedule{
		Picker:  newPicker(t, strings.Join(list, ","), nil, rand.New(rand.NewPCG(9, 9))),
		Backoff: ctrladdr.Backoff{Int64N: func(n int64) int64 { return n - 1 }}, // always the ceiling
	}
	target, err := s.First(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	for range 9 {
		var w time.Duration
		target, w, err = s.After(context.Background(), target.Addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	b := ctrladdr.BackoffBase
	want := []time.Duration{b, b, b, b, b, 2 * b, b, b, 4 * b}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v: the base between the addresses of a round, the growing backoff between rounds", waits, want)
		}
	}
	if _, w, _ := s.After(context.Background(), target.Addr, ctrladdr.StableAfter); w != b {
		t.Fatalf("after a connection that stayed up %s: wait %s, want the base %s again", ctrladdr.StableAfter, w, b)
	}
}

// TestScheduleResolutionFailure: when no address resolves, After returns
// the error with a backoff delay, and the next call tries again.
func TestScheduleResolutionFailure(t *testing.T) {
	res := &flakyResolver{}
	p := newPicker(t, "ctl.example:7443", res, rand.New(rand.NewPCG(1, 2)))
	s := ctrladdr.Schedule{Picker: p, Backoff: ctrladdr.Backoff{Int64N: func(n int64) int64 { return n - 1 }}}
	res.err = errors.New("no such host")
	if _, err := s.First(context.Background()); err == nil {
		t.Fatal("First resolved a name that does not resolve")
	}
	_, w, err := s.After(context.Background(), "", 0)
	if err == nil || w != ctrladdr.BackoffBase {
		t.Fatalf("After a failed resolution: wait %s, error %v; want the backoff %s and the error", w, err, ctrladdr.BackoffBase)
	}
	res.err = nil
	got, w, err := s.After(context.Background(), "", 0)
	if err != nil || got.Addr != "10.0.0.9:7443" || w != 2*ctrladdr.BackoffBase {
		t.Fatalf("After the name resolves again: %v, wait %s, %v", got, w, err)
	}
}

type flakyResolver struct{ err error }

func (r *flakyResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if r.err != nil {
		return nil, r.err
	}
	return []string{"10.0.0.9"}, nil
}
