package playbookrun

import (
	"fmt"
	"testing"
)

// TestSlowWatcherIsBoundedAndGetsTheEnd checks that a watcher that does
// not read never blocks the executor's publishing, holds at most the
// watch's bounded queue, gets a fresh snapshot in place of what it missed,
// and always gets the end.
func TestSlowWatcherIsBoundedAndGetsTheEnd(t *testing.T) {
	run := &Run{ID: "pbr_test", Status: StatusRunning, Steps: []*Step{{ID: "isolate", Status: StepRunning}}}
	h := newHub(func(id string) (*Run, error) { return cloneRun(run), nil })
	h.mu.Lock()
	sub := h.add(run.ID)
	h.mu.Unlock()

	const published = 20 * watchQueue
	for i := range published {
		// Publishing returns whether or not the watcher reads.
		h.publish(Event{Kind: EventStep, Step: &Step{ID: fmt.Sprintf("s%d", i), Status: StepRunning}, runID: run.ID})
		h.mu.Lock()
		queued := len(sub.queue)
		h.mu.Unlock()
		if queued > watchQueue {
			t.Fatalf("after %d events the watcher holds %d queued, bound %d", i+1, queued, watchQueue)
		}
	}

	received, sawSnapshot := 0, false
	for !sawSnapshot {
		ev, ok := <-sub.C
		if !ok {
			t.Fatal("the watch closed before the end")
		}
		received++
		sawSnapshot = ev.Kind == EventSnapshot
		if sawSnapshot && (ev.Run == nil || len(ev.Run.Steps) != 1) {
			t.Fatalf("snapshot %+v, want the whole run", ev.Run)
		}
	}
	if received >= published {
		t.Fatalf("the watcher received all %d events; it should have got a snapshot in place of most", received)
	}

	// The end arrives even if the watcher fell behind again before it.
	for i := range 2 * watchQueue {
		h.publish(Event{Kind: EventStep, Step: &Step{ID: fmt.Sprintf("t%d", i)}, runID: run.ID})
	}
	h.finish(&Run{ID: run.ID, Status: StatusSucceeded})
	var last Event
	for ev := range sub.C {
		last = ev
	}
	if last.Kind != EventDone || last.Run.Status != StatusSucceeded {
		t.Fatalf("the last event %+v, want the end", last)
	}
}

// TestUnwatchClosesTheWatch checks that an abandoned watch ends.
func TestUnwatchClosesTheWatch(t *testing.T) {
	h := newHub(func(id string) (*Run, error) { return &Run{ID: id}, nil })
	e := &Executor{hub: h}
	h.mu.Lock()
	sub := h.add("pbr_x")
	h.mu.Unlock()
	for range 3 * watchQueue {
		h.publish(Event{Kind: EventStep, Step: &Step{ID: "s"}, runID: "pbr_x"})
	}
	e.Unwatch(sub)
	for range sub.C {
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) != 0 {
		t.Fatalf("%d runs still watched", len(h.subs))
	}
}
