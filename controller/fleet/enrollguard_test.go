package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/firebreak-ir/firebreak/controller/fleet"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// auditRecords collects what the guard writes to the audit log.
type auditRecords struct {
	mu   sync.Mutex
	recs []map[string]any
}

func (a *auditRecords) audit(_ context.Context, actor, action, subject string, detail any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := map[string]any{"_actor": actor, "_action": action, "_subject": subject}
	for k, v := range detail.(map[string]any) {
		d[k] = v
	}
	a.recs = append(a.recs, d)
}

func (a *auditRecords) all() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.recs...)
}

func newGuard(t *testing.T, l fleet.EnrollLimits) (*fleet.EnrollGuard, *fakeClock, *auditRecords) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec := &auditRecords{}
	g, err := fleet.NewEnrollGuard(fleet.EnrollGuardConfig{Limits: l, Audit: rec.audit, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return g, clk, rec
}

// TestEnrollGuardLimits checks the per-source, overall and refusal budgets
// and their refill, step by step on an injected clock.
func TestEnrollGuardLimits(t *testing.T) {
	type step struct {
		advance time.Duration
		refuse  bool // record a refusal instead of asking to be admitted
		addr    string
		wantOK  bool
	}
	tests := []struct {
		name   string
		limits fleet.EnrollLimits
		steps  []step
	}{
		{
			name:   "per-source burst then refusal, other sources unaffected",
			limits: fleet.EnrollLimits{PerSource: 1, PerSourceBurst: 3},
			steps: []step{{addr: "10.0.0.1", wantOK: true}, {addr: "10.0.0.1", wantOK: true}, {addr: "10.0.0.1", wantOK: true},
				{addr: "10.0.0.1"}, {addr: "10.0.0.2", wantOK: true}},
		},
		{
			name:   "overall limit across sources",
			limits: fleet.EnrollLimits{Overall: 1, OverallBurst: 2},
			steps:  []step{{addr: "10.0.0.1", wantOK: true}, {addr: "10.0.0.2", wantOK: true}, {addr: "10.0.0.3"}, {addr: "10.0.0.4"}},
		},
		{
			name:   "per-source refill",
			limits: fleet.EnrollLimits{PerSource: 2, PerSourceBurst: 2},
			steps: []step{{addr: "a", wantOK: true}, {addr: "a", wantOK: true}, {addr: "a"},
				{advance: 100 * time.Millisecond, addr: "a"}, {advance: 400 * time.Millisecond, addr: "a", wantOK: true}, {addr: "a"}},
		},
		{
			name:   "refusal budget stops the source, then refills",
			limits: fleet.EnrollLimits{Refusals: 1, RefusalBurst: 2},
			steps: []step{{addr: "a", wantOK: true}, {refuse: true, addr: "a"}, {addr: "a", wantOK: true}, {refuse: true, addr: "a"},
				{addr: "a"}, {addr: "b", wantOK: true}, {advance: time.Second, addr: "a", wantOK: true}},
		},
		{
			name:   "lifted limits",
			limits: fleet.EnrollLimits{PerSource: rate.Inf, PerSourceBurst: 1, Overall: rate.Inf, OverallBurst: 1},
			steps:  []step{{addr: "a", wantOK: true}, {addr: "a", wantOK: true}, {addr: "a", wantOK: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, clk, _ := newGuard(t, tc.limits)
			for i, s := range tc.steps {
				clk.Advance(s.advance)
				if s.refuse {
					g.Refused(context.Background(), s.addr, s.addr, "join token unknown")
					continue
				}
				wait, ok := g.Admit(context.Background(), s.addr)
				if ok != s.wantOK {
					t.Fatalf("step %d (%s): admitted %v, want %v", i, s.addr, ok, s.wantOK)
				}
				if !ok && wait <= 0 {
					t.Fatalf("step %d: refused without a retry-after", i)
				}
			}
		})
	}
}

func count(t *testing.T, r map[string]any) int {
	t.Helper()
	n, ok := r["count"].(int)
	if !ok {
		t.Fatalf("record without a count: %v", r)
	}
	return n
}

// TestEnrollGuardAggregatesRefusals checks that the first refusal of a
// source is written at once and the rest of its window as one summary,
// whether the window is closed by the ticker's flush or by the next
// refusal after it.
func TestEnrollGuardAggregatesRefusals(t *testing.T) {
	for _, closeBy := range []string{"flush", "next refusal"} {
		t.Run(closeBy, func(t *testing.T) {
			g, clk, rec := newGuard(t, fleet.EnrollLimits{RefusalWindow: time.Minute, Refusals: 1e6, RefusalBurst: 1000})
			ctx := context.Background()
			start := clk.Now()
			for range 10 {
				g.Refused(ctx, "192.0.2.7", "web-1", "join token unknown")
			}
			if got := rec.all(); len(got) != 1 || count(t, got[0]) != 1 || got[0]["source"] != "192.0.2.7" ||
				got[0]["_action"] != "agent.enroll_refused" || got[0]["_subject"] != "web-1" {
				t.Fatalf("after the first refusals: %v, want one record of the first", got)
			}
			clk.Advance(30 * time.Second)
			g.Refused(ctx, "192.0.2.7", "web-1", "join token expired")
			g.Flush(ctx, false)
			if got := rec.all(); len(got) != 1 {
				t.Fatalf("the window is still open, yet %d records", len(got))
			}
			clk.Advance(31 * time.Second)
			if closeBy == "flush" {
				g.Flush(ctx, false)
			} else {
				g.Refused(ctx, "192.0.2.7", "web-1", "join token unknown")
			}
			got := rec.all()
			if len(got) < 2 {
				t.Fatalf("no summary after the window: %v", got)
			}
			sum := got[1]
			if count(t, sum) != 10 || sum["source"] != "192.0.2.7" || sum["window_start"] != start ||
				sum["window_end"] != start.Add(time.Minute) || fmt.Sprint(sum["reasons"]) != "[join token expired join token unknown]" {
				t.Fatalf("summary %v, want count 10 over the minute with both reasons", sum)
			}
			if closeBy == "next refusal" && (len(got) != 3 || count(t, got[2]) != 1) {
				t.Fatalf("the refusal after the window should be written at once: %v", got)
			}
		})
	}
}

// TestEnrollGuardEvictsOldestSource checks that a flood from many
// addresses cannot grow the guard: the least recently seen source goes,
// and its pending refusals are written first.
func TestEnrollGuardEvictsOldestSource(t *testing.T) {
	g, _, rec := newGuard(t, fleet.EnrollLimits{MaxSources: 3})
	ctx := context.Background()
	total := 0
	for i := range 50 {
		addr := fmt.Sprintf("198.51.100.%d", i)
		for range 2 {
			g.Refused(ctx, addr, addr, "join token unknown")
			total++
		}
		if n := g.Sources(); n > 3 {
			t.Fatalf("%d sources tracked, cap 3", n)
		}
	}
	g.Flush(ctx, true)
	sum := 0
	for _, r := range rec.all() {
		sum += count(t, r)
	}
	if sum != total {
		t.Fatalf("the records count %d refusals, want %d", sum, total)
	}
}

// TestEnrollGuardFlushesAtShutdown checks that the refusals counted in an
// open window are written when the guard's Run ends.
func TestEnrollGuardFlushesAtShutdown(t *testing.T) {
	g, _, rec := newGuard(t, fleet.EnrollLimits{RefusalWindow: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	for range 5 {
		g.Refused(context.Background(), "203.0.113.9", "x", "join token unknown")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 || count(t, got[0])+count(t, got[1]) != 5 {
		t.Fatalf("records at shutdown %v, want the first and a summary of 4", got)
	}
}

// TestEnrollLimitsRefuseNegative checks the configuration check.
func TestEnrollLimitsRefuseNegative(t *testing.T) {
	for _, l := range []fleet.EnrollLimits{{PerSource: -1}, {OverallBurst: -1}, {RefusalWindow: -time.Second}, {MaxSources: -3}} {
		if err := l.CheckAndSetDefaults(); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	var l fleet.EnrollLimits
	if err := l.CheckAndSetDefaults(); err != nil || l.PerSource != fleet.DefaultEnrollPerSource || l.OverallBurst != fleet.DefaultEnrollOverallBurst {
		t.Fatalf("defaults %+v, %v", l, err)
	}
}
