package telemetry

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestStepped(t *testing.T) {
	base := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{name: "same instant", now: base},
		{name: "read noise of a descheduled thread", now: base.Add(24 * time.Millisecond)},
		{name: "read noise the other way", now: base.Add(-24 * time.Millisecond)},
		{name: "exactly the step bound", now: base.Add(clockStep)},
		{name: "wall clock stepped forward", now: base.Add(2 * time.Second), want: true},
		{name: "wall clock stepped back", now: base.Add(-2 * time.Second), want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stepped(base, tc.now); got != tc.want {
				t.Fatalf("stepped(base, base%+v) = %v, want %v", tc.now.Sub(base), got, tc.want)
			}
		})
	}
}

// TestSpanClockFollowsTheMonotonicClock: a reading maps onto the anchor's
// time line by its monotonic distance from the anchor, so readings taken
// in order come out in order and keep a monotonic reading (which the SDK
// needs to end the span on the same line).
func TestSpanClockFollowsTheMonotonicClock(t *testing.T) {
	c := newSpanClock()
	a := *c.anchor.Load()
	r1 := a.Add(3 * time.Millisecond)
	r2 := a.Add(5 * time.Millisecond)
	got1, got2 := c.at(r1), c.at(r2)
	if !got1.Equal(a.Add(3*time.Millisecond)) || !got2.Equal(a.Add(5*time.Millisecond)) {
		t.Fatalf("at() = %v, %v; want the anchor plus 3 ms and 5 ms (%v)", got1, got2, a)
	}
	if got2.Sub(got1) != 2*time.Millisecond {
		t.Fatalf("the readings are %v apart, want 2ms", got2.Sub(got1))
	}
	if got1.String() == got1.Round(0).String() {
		t.Fatalf("at() dropped the monotonic reading: %v", got1)
	}
}

// TestClockedTracerNestsSpans: through the provider, a child started and
// ended inside its parent lies inside it on the exported times, and a
// caller's own start timestamp is kept.
func TestClockedTracerNestsSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	tr := clockedProvider{tp: sdk, clock: newSpanClock()}.Tracer("test")

	ctx, parent := tr.Start(context.Background(), "parent")
	_, child := tr.Start(ctx, "child")
	child.End()
	parent.End()
	given := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	_, own := tr.Start(context.Background(), "own", trace.WithTimestamp(given))
	own.End(trace.WithTimestamp(given.Add(time.Second)))

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	p, c := spans["parent"], spans["child"]
	if p == nil || c == nil {
		t.Fatalf("recorded %d spans, want parent and child", len(rec.Ended()))
	}
	if c.StartTime().Before(p.StartTime()) || c.EndTime().After(p.EndTime()) {
		t.Errorf("child [%v, %v] is not inside parent [%v, %v]", c.StartTime(), c.EndTime(), p.StartTime(), p.EndTime())
	}
	if c.Parent().SpanID() != p.SpanContext().SpanID() {
		t.Errorf("child's parent is %v, want %v", c.Parent().SpanID(), p.SpanContext().SpanID())
	}
	if o := spans["own"]; o == nil || !o.StartTime().Equal(given) {
		t.Errorf("a caller's start timestamp was not kept: %v", spans["own"])
	}
}
