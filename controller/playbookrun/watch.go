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
)

// Event is one change of a watched playbook run.
type Event struct {
	// Kind says which fields are set.
	Kind EventKind
	// Run is the header (EventRun) or the ended run (EventDone).
	Run *Run
	// Step is the changed step (EventStep).
	Step *Step
	// StepID, Rollback and Task describe a task update (EventTask).
	StepID   string
	Rollback bool
	Task     *operatorv1.Task

	runID string
}

// subscriptionBuffer is how many events a watcher may fall behind before
// it is dropped.
const subscriptionBuffer = 4096

// Subscription delivers a playbook run's events.
type Subscription struct {
	// C carries the events; it is closed after the done event, or when the
	// watcher fell behind (then Lagged reports true).
	C      <-chan Event
	c      chan Event
	id     string
	closed bool
	lagged bool
}

// Lagged reports whether the subscription was dropped for falling behind.
func (s *Subscription) Lagged() bool { return s.lagged }

// hub fans events out to watchers.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[*Subscription]struct{}{}} }

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

func (h *hub) deliver(s *Subscription, ev Event) {
	if s.closed {
		return
	}
	select {
	case s.c <- ev:
	default:
		s.lagged = true
		h.drop(s)
	}
}

func (h *hub) drop(s *Subscription) {
	if m := h.subs[s.id]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.id)
		}
	}
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

// finish delivers the done event and closes the run's subscriptions.
func (h *hub) finish(r *Run) {
	ev := Event{Kind: EventDone, Run: cloneRun(r)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[r.ID] {
		h.deliver(s, ev)
		h.drop(s)
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
	var snap *Run
	if x := e.activeExec(id); x != nil {
		snap = x.snapshot()
	} else {
		r, err := e.db.getRun(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		snap = r
	}
	c := make(chan Event, subscriptionBuffer)
	s := &Subscription{C: c, c: c, id: id}
	if snap.Status.Final() {
		c <- Event{Kind: EventDone, Run: cloneRun(snap)}
		s.closed = true
		close(c)
		return snap, s, nil
	}
	if h.subs[id] == nil {
		h.subs[id] = map[*Subscription]struct{}{}
	}
	h.subs[id][s] = struct{}{}
	return snap, s, nil
}

// Unwatch ends a subscription.
func (e *Executor) Unwatch(s *Subscription) {
	if s == nil {
		return
	}
	e.hub.mu.Lock()
	defer e.hub.mu.Unlock()
	e.hub.drop(s)
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
