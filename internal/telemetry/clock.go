package telemetry

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// clockStep is how far the wall clock must move against the monotonic
// clock before span times follow it. Smaller gaps are read noise; larger
// ones are a step of the system clock (NTP at boot, an operator's date).
const clockStep = time.Second

// spanClock stamps the start of every span in the process from one anchor:
// the anchor's wall time plus the monotonic time elapsed since it. The SDK
// ends a span at its start plus the monotonic time elapsed, so with this
// clock every start and end in the process lies on one time line, and a
// child span always sits inside its parent.
//
// time.Now reads the wall and the monotonic clocks one after the other; a
// thread descheduled between the two reads gets a wall time that is late
// against its monotonic time (24 ms was measured on a loaded two-core
// machine). Without the anchor, a span started on such a reading ends
// that much early on the wall clock and pokes out of its parent in every
// trace view.
type spanClock struct {
	anchor atomic.Pointer[time.Time]
}

func newSpanClock() *spanClock {
	c := &spanClock{}
	now := time.Now()
	c.anchor.Store(&now)
	return c
}

// Now is the anchored time of a reading of time.Now.
func (c *spanClock) Now() time.Time { return c.at(time.Now()) }

// at returns now on the anchor's time line. When the wall clock has been
// stepped by more than clockStep since the anchor was taken, now becomes
// the anchor, so span times never stay wrong for long after a step.
func (c *spanClock) at(now time.Time) time.Time {
	a := c.anchor.Load()
	t := a.Add(now.Sub(*a)) // monotonic elapsed; keeps a's monotonic reading
	if stepped(t, now) {
		c.anchor.CompareAndSwap(a, &now)
		return now
	}
	return t
}

// stepped reports whether two readings of the same instant disagree on
// the wall clock by more than clockStep.
func stepped(anchored, now time.Time) bool {
	d := now.Round(0).Sub(anchored.Round(0))
	return d > clockStep || d < -clockStep
}

// clockedProvider hands out tracers that start every span at the clock's
// time, unless the caller gives a timestamp of its own.
type clockedProvider struct {
	embedded.TracerProvider
	tp    trace.TracerProvider
	clock *spanClock
}

func (p clockedProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return clockedTracer{tr: p.tp.Tracer(name, opts...), clock: p.clock}
}

type clockedTracer struct {
	embedded.Tracer
	tr    trace.Tracer
	clock *spanClock
}

func (t clockedTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	// A later WithTimestamp wins, so a caller's own timestamp still counts.
	return t.tr.Start(ctx, name, append([]trace.SpanStartOption{trace.WithTimestamp(t.clock.Now())}, opts...)...)
}
