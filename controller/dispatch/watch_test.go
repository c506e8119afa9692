package dispatch_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestSlowWatchersAreBoundedAndSeeTheEnd: watchers that never read hold
// no more than their bounded buffers while a run makes far more updates,
// do not hold the run up, and still get a snapshot and the end; a reader
// that keeps up sees the end too.
func TestSlowWatchersAreBoundedAndSeeTheEnd(t *testing.T) {
	const targets, stalled = 600, 40
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
	defer h.stop()
	ctx := context.Background()
	id := h.submit(targets, nil)
	var subs []*dispatch.Subscription
	for range stalled {
		_, sub, err := h.d.Watch(ctx, id)
		if err != nil || sub == nil {
			t.Fatalf("watch: %v %v", sub, err)
		}
		subs = append(subs, sub)
	}
	_, reader, err := h.d.Watch(ctx, id)
	if err != nil || reader == nil {
		t.Fatal(err)
	}
	defer h.d.Unwatch(reader)
	var final *operatorv1.Run
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for m := range reader.C {
			if m.Kind == dispatch.EventDone {
				final = wire(m.Run)
			}
		}
	}()
	for i := range targets {
		h.f.connect(fmt.Sprintf("a%d", i))
	}
	r := h.wait(id, "the end", ended)
	<-readerDone
	if r.GetCounts().GetSucceeded() != targets || final == nil || final.GetCounts().GetSucceeded() != targets {
		t.Fatalf("run %v, reader's end %v", r.GetCounts(), final.GetCounts())
	}
	for i, sub := range subs {
		queued, chanCap, bound := dispatch.WatchBuffers(sub)
		if queued > bound || chanCap > 16 {
			t.Fatalf("stalled watcher %d holds %d queued updates (bound %d) and a channel of %d", i, queued, bound, chanCap)
		}
	}
	// Each stalled watcher, reading at last, gets what its buffers held
	// (the run made more updates than that: the rest were coalesced) and
	// then the end, which holds every task.
	for i, sub := range subs {
		var got int
		var end *operatorv1.Run
		for m := range sub.C {
			got++
			if m.Kind == dispatch.EventDone {
				end = wire(m.Run)
			}
		}
		if end == nil || end.GetCounts().GetSucceeded() != targets {
			t.Fatalf("stalled watcher %d did not get the end: %v", i, end)
		}
		if _, chanCap, bound := dispatch.WatchBuffers(sub); got > chanCap+bound+2 {
			t.Errorf("stalled watcher %d got %d messages, more than its buffers hold", i, got)
		}
		h.d.Unwatch(sub)
	}
}

// TestLaggingWatcherGetsASnapshot: a watcher that falls behind a run
// still going gets a fresh snapshot in place of the updates it missed.
func TestLaggingWatcherGetsASnapshot(t *testing.T) {
	const targets = 400
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), nil)
	defer h.stop()
	ctx := context.Background()
	id := h.submit(targets, nil)
	_, sub, err := h.d.Watch(ctx, id)
	if err != nil || sub == nil {
		t.Fatal(err)
	}
	defer h.d.Unwatch(sub)
	// Agents take their tasks and never answer: one update each, more
	// than the watcher's buffers, and the run stays open.
	for i := range targets {
		h.f.connect(fmt.Sprintf("a%d", i))
	}
	h.wait(id, "every task dispatched", func(r *operatorv1.Run) bool { return r.GetCounts().GetRunning() == targets })
	for m := range sub.C {
		if m.Kind == dispatch.EventSnapshot {
			s := wire(m.Run)
			if s.GetCounts().GetRunning() != targets {
				t.Fatalf("snapshot counts %v", s.GetCounts())
			}
			return
		}
	}
	t.Fatal("the subscription ended without a snapshot")
}

// TestUnwatchClosesTheChannel: a watcher that leaves early stops its
// subscription and its channel closes.
func TestUnwatchClosesTheChannel(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
	defer h.stop()
	id := h.submit(3, nil)
	_, sub, err := h.d.Watch(context.Background(), id)
	if err != nil || sub == nil {
		t.Fatal(err)
	}
	h.d.Unwatch(sub)
	for range sub.C {
	}
}
