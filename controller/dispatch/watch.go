package dispatch

import (
	"context"
	"sync"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// The buffers of one watch. Together they bound what a watcher that never
// reads can hold in the controller, whatever the size of the run.
const (
	// watchChannel is the capacity of Subscription.C.
	watchChannel = 16
	// watchQueue is how many updates wait for a slow watcher before they
	// are dropped for a fresh snapshot.
	watchQueue = 256
)

// EventKind says what an Event carries.
type EventKind int

// The kinds of Event.
const (
	// EventTask carries one task as it changed (Event.Task).
	EventTask EventKind = iota + 1
	// EventRun carries the run's header after it changed (Event.Run,
	// without tasks): it was approved and started.
	EventRun
	// EventSnapshot carries the whole run (Event.Run, with tasks) in place
	// of updates the watcher fell too far behind to be sent.
	EventSnapshot
	// EventDone carries the ended run (Event.Run, with tasks); it is the
	// last event of a subscription.
	EventDone
)

// Event is one update of a watched run. Its contents are copies the
// dispatcher no longer changes.
type Event struct {
	// Kind says which of Task and Run is set.
	Kind EventKind
	// Task is the changed task (EventTask).
	Task *store.Task
	// Run is the run (EventRun, EventSnapshot, EventDone).
	Run *RunView
}

// Subscription delivers a watched run's changes. The dispatcher's loop
// never waits for a watcher: updates queue up to a bound, and a watcher
// that falls further behind gets a fresh snapshot in place of the updates
// it missed. The run's end is never dropped.
type Subscription struct {
	// C carries task updates (EventTask), run header updates (EventRun),
	// a snapshot (EventSnapshot) when updates were coalesced and, last,
	// the ended run (EventDone); it is closed after that, or after
	// Unwatch.
	C     <-chan Event
	c     chan Event
	runID string

	mu     sync.Mutex
	queue  []Event
	resync bool     // updates were dropped: send a snapshot next
	final  *RunView // the ended run, sent after the queue
	ended  bool     // no more updates will come
	wake   chan struct{}
	stop   chan struct{} // closed by Unwatch
	once   sync.Once
}

// Watch subscribes to an active run. It returns the run's snapshot and a
// subscription, or a nil subscription when the run is not active. Call
// Unwatch when done.
func (d *Dispatcher) Watch(ctx context.Context, runID string) (*RunView, *Subscription, error) {
	reply := make(chan watchReply, 1)
	d.send(evWatch{runID: runID, reply: reply})
	select {
	case r := <-reply:
		if r.sub != nil {
			go d.pump(r.sub)
		}
		return r.snap, r.sub, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Unwatch ends a subscription; C is closed soon after.
func (d *Dispatcher) Unwatch(sub *Subscription) {
	if sub == nil {
		return
	}
	sub.once.Do(func() { close(sub.stop) })
	d.send(evUnwatch{sub: sub})
}

func (d *Dispatcher) onWatch(runID string) watchReply {
	rs := d.runs[runID]
	if rs == nil {
		return watchReply{}
	}
	c := make(chan Event, watchChannel)
	sub := &Subscription{C: c, c: c, runID: runID, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if rs.subs == nil {
		rs.subs = map[*Subscription]struct{}{}
	}
	rs.subs[sub] = struct{}{}
	return watchReply{snap: d.view(rs, true), sub: sub}
}

func (d *Dispatcher) onUnwatch(sub *Subscription) {
	if rs := d.runs[sub.runID]; rs != nil {
		delete(rs.subs, sub)
	}
	sub.mu.Lock()
	sub.ended, sub.queue = true, nil
	sub.mu.Unlock()
}

// onResync takes a fresh snapshot for a watcher that fell behind and
// drops what was queued before it, which the snapshot holds. It returns
// nil when the run has ended (the end is then on its way).
func (d *Dispatcher) onResync(sub *Subscription) *RunView {
	rs := d.runs[sub.runID]
	if rs == nil {
		return nil
	}
	if _, ok := rs.subs[sub]; !ok {
		return nil
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.queue, sub.resync = nil, false
	return d.view(rs, true)
}

// endWatches hands the ended run to the run's watchers.
func (d *Dispatcher) endWatches(rs *runState) {
	if len(rs.subs) == 0 {
		return
	}
	final := d.view(rs, true)
	for sub := range rs.subs {
		sub.mu.Lock()
		sub.final, sub.ended = final, true
		sub.mu.Unlock()
		sub.signal()
	}
	rs.subs = nil
}

// deliver queues an update for a watcher; it never blocks the loop. Past
// watchQueue the queue is dropped and the watcher gets a snapshot instead.
func (d *Dispatcher) deliver(sub *Subscription, msg Event) {
	sub.mu.Lock()
	switch {
	case sub.ended, sub.resync:
	case len(sub.queue) >= watchQueue:
		sub.queue, sub.resync = nil, true
	default:
		sub.queue = append(sub.queue, msg)
	}
	sub.mu.Unlock()
	sub.signal()
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pump moves a subscription's queue to its channel at the watcher's pace.
func (d *Dispatcher) pump(sub *Subscription) {
	defer close(sub.c)
	for {
		sub.mu.Lock()
		var next Event
		resync, last := false, false
		switch {
		case len(sub.queue) > 0:
			next = sub.queue[0]
			sub.queue[0] = Event{}
			sub.queue = sub.queue[1:]
		case sub.resync && !sub.ended:
			resync = true
		case sub.final != nil:
			next, last = Event{Kind: EventDone, Run: sub.final}, true
			sub.final = nil
		case sub.ended:
			sub.mu.Unlock()
			return
		}
		sub.mu.Unlock()
		if resync {
			reply := make(chan *RunView, 1)
			d.send(evResync{sub: sub, reply: reply})
			select {
			case snap := <-reply:
				if snap != nil {
					next = Event{Kind: EventSnapshot, Run: snap}
				}
			case <-sub.stop:
				return
			}
		}
		if next.Kind == 0 {
			select {
			case <-sub.wake:
				continue
			case <-sub.stop:
				return
			}
		}
		select {
		case sub.c <- next:
		case <-sub.stop:
			return
		}
		if last {
			return
		}
	}
}
