package playbookrun

import (
	"context"
	"slices"
	"sync"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// EventKind says what a watch event carries.
type EventKind int

// The watch event kinds.
const (
	// EventStep carries a changed step.
	EventStep EventKind = iota + 1
	// EventTask carries a task update of a step's run.
	EventTask
	// EventRun carries the playbook run's header after a change.
	EventRun
	// EventDone carries the ended playbook run with its steps; it is the
	// last event.
	EventDone
	// EventSnapshot carries the whole run in place of the events a slow
	// watcher missed.
	EventSnapshot
)

// Event is one change of a watched playbook run.
type Event struct {
	// Kind says which fields are set.
	Kind EventKind
	// Run is the header (EventRun), the whole run (EventSnapshot) or the
	// ended run (EventDone).
	Run *Run
	// Step is the changed step (EventStep).
	Step *Step
	// StepID, Rollback and Task describe a task update (EventTask).
	StepID   string
	Rollback bool
	Task     *operatorv1.Task

	runID string
}

// The buffers of one watch. Together they bound what a watcher that never
// reads can hold in the controller, whatever the size of the playbook run.
const (
	// watchChannel is the capacity of Subscription.C.
	watchChannel = 16
	// watchQueue is how many events wait for a slow watcher before they
	// are dropped for a fresh snapshot.
	watchQueue = 256
)

// Subscription delivers a playbook run's events. The executor never waits
// for a watcher: events queue up to a bound, and a watcher that falls
// further behind gets a fresh snapshot (EventSnapshot) in place of the
// events it missed. The done event is never dropped.
type Subscription struct {
	// C carries the events; it is closed after the done event, or after
	// Unwatch.
	C  <-chan Event
	c  chan Event
	id string

	// Guarded by the hub's lock.
	queue  []Event
	resync bool   // events were dropped: send a snapshot next
	final  *Event // the done event, sent after the queue
	ended  bool   // no more events will come
	wake   chan struct{}
	stop   chan struct{} // closed by Unwatch
	once   sync.Once
}

// hub fans events out to watchers.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
	// snapshot returns the run as it is now; it is called with mu held.
	snapshot func(id string) (*Run, error)
}

func newHub(snapshot func(id string) (*Run, error)) *hub {
	return &hub{subs: map[string]map[*Subscription]struct{}{}, snapshot: snapshot}
}

func (h *hub) publish(ev Event) {
	var id string
	switch {
	case ev.Run != nil:
		id = ev.Run.ID
	case ev.Step != nil || ev.Task != nil:
		id = ev.runID
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[id] {
		h.deliver(s, ev)
	}
}

// deliver queues an event for a watcher; it never blocks the executor.
// Past watchQueue the queue is dropped and the watcher gets a snapshot
// instead. h.mu is held.
func (h *hub) deliver(s *Subscription, ev Event) {
	switch {
	case s.ended, s.resync:
	case len(s.queue) >= watchQueue:
		s.queue, s.resync = nil, true
	default:
		s.queue = append(s.queue, ev)
	}
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// remove forgets a subscription and ends it; h.mu is held.
func (h *hub) remove(s *Subscription) {
	if m := h.subs[s.id]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.id)
		}
	}
	s.ended = true
	s.signal()
}

// finish hands the done event to the run's watchers.
func (h *hub) finish(r *Run) {
	ev := Event{Kind: EventDone, Run: cloneRun(r)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[r.ID] {
		if !s.ended {
			s.final = &ev
		}
		h.remove(s)
	}
}

// pump moves a subscription's queue to its channel at the watcher's pace.
func (h *hub) pump(s *Subscription) {
	defer close(s.c)
	for {
		h.mu.Lock()
		var next *Event
		last := false
		switch {
		case len(s.queue) > 0:
			ev := s.queue[0]
			s.queue[0] = Event{}
			s.queue = s.queue[1:]
			next = &ev
		case s.resync && !s.ended:
			// Taken under the hub's lock, like Watch's snapshot: every
			// change is in it or queued after it.
			s.resync = false
			if snap, err := h.snapshot(s.id); err == nil {
				next = &Event{Kind: EventSnapshot, Run: snap}
			}
		case s.final != nil:
			next, last = s.final, true
			s.final = nil
		case s.ended:
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if next == nil {
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		select {
		case s.c <- *next:
		case <-s.stop:
			return
		}
		if last {
			return
		}
	}
}

// Watch subscribes to a playbook run. It returns the run as it is now and
// a subscription carrying every later change; for a run that has ended the
// subscription holds just the done event. Call Unwatch when done.
func (e *Executor) Watch(ctx context.Context, id string) (*Run, *Subscription, error) {
	h := e.hub
	// The snapshot is taken under the hub's lock: publishers persist before
	// they publish, so every change is either in the snapshot or delivered
	// after it.
	h.mu.Lock()
	defer h.mu.Unlock()
	snap, err := e.currentRun(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if snap.Status.Final() {
		c := make(chan Event, 1)
		c <- Event{Kind: EventDone, Run: cloneRun(snap)}
		close(c)
		return snap, &Subscription{C: c, c: c, id: id, ended: true, wake: make(chan struct{}, 1), stop: make(chan struct{})}, nil
	}
	return snap, h.add(id), nil
}

// add subscribes to the events of run id and starts its pump; h.mu is
// held.
func (h *hub) add(id string) *Subscription {
	c := make(chan Event, watchChannel)
	s := &Subscription{C: c, c: c, id: id, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if h.subs[id] == nil {
		h.subs[id] = map[*Subscription]struct{}{}
	}
	h.subs[id][s] = struct{}{}
	go h.pump(s)
	return s
}

// currentRun is the run as it is now: the executing one's state, or the
// stored one.
func (e *Executor) currentRun(ctx context.Context, id string) (*Run, error) {
	if x := e.activeExec(id); x != nil {
		return x.snapshot(), nil
	}
	return e.db.getRun(ctx, id)
}

// Unwatch ends a subscription; C is closed soon after.
func (e *Executor) Unwatch(s *Subscription) {
	if s == nil {
		return
	}
	s.once.Do(func() { close(s.stop) })
	e.hub.mu.Lock()
	defer e.hub.mu.Unlock()
	s.queue, s.final = nil, nil
	e.hub.remove(s)
}

func cloneStep(s *Step) *Step {
	c := *s
	c.Needs = slices.Clone(s.Needs)
	c.Targets = slices.Clone(s.Targets)
	if s.Rollback != nil {
		rb := *s.Rollback
		rb.Targets = make([]*RollbackTarget, len(s.Rollback.Targets))
		for i, t := range s.Rollback.Targets {
			tc := *t
			rb.Targets[i] = &tc
		}
		c.Rollback = &rb
	}
	return &c
}

func cloneRun(r *Run) *Run {
	c := *r
	c.Steps = make([]*Step, len(r.Steps))
	for i, s := range r.Steps {
		c.Steps[i] = cloneStep(s)
	}
	return &c
}

// header is the run without its steps.
func header(r *Run) *Run {
	c := *r
	c.Steps = nil
	return &c
}
