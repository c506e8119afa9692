package dispatch

import (
	"sync/atomic"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Task states of ActiveTasks, the values of firebreak.task.state on the
// firebreak.tasks.active gauge.
const (
	StatePending    = "pending"
	StateDispatched = "dispatched"
	StateRunning    = "running"
)

// taskStates counts the loop's tasks that are not final, by state. The
// loop keeps it as tasks change (see recount); metric collection reads it
// from another goroutine without asking the loop or the store.
type taskStates struct {
	pending, dispatched, running atomic.Int64
}

// of returns the counter of an active status, nil for a final one.
func (c *taskStates) of(s agentv1.TaskStatus) *atomic.Int64 {
	switch s {
	case agentv1.TaskStatus_TASK_STATUS_PENDING:
		return &c.pending
	case agentv1.TaskStatus_TASK_STATUS_DISPATCHED:
		return &c.dispatched
	case agentv1.TaskStatus_TASK_STATUS_RUNNING:
		return &c.running
	}
	return nil
}

// recount moves ts from the state it was last counted in to its status
// now. The loop calls it wherever a task is added or changes (addRun,
// changed), so every transition is counted once.
func (d *Dispatcher) recount(ts *taskState) {
	if ts.counted == ts.t.Status {
		return
	}
	if c := d.states.of(ts.counted); c != nil {
		c.Add(-1)
	}
	if c := d.states.of(ts.t.Status); c != nil {
		c.Add(1)
	}
	ts.counted = ts.t.Status
}

// ActiveTasks returns how many of the dispatcher's tasks are pending,
// dispatched and running, for the firebreak.tasks.active gauge. It reads
// counters the loop keeps: it costs neither the loop nor the store.
func (d *Dispatcher) ActiveTasks() map[string]int64 {
	return map[string]int64{
		StatePending:    d.states.pending.Load(),
		StateDispatched: d.states.dispatched.Load(),
		StateRunning:    d.states.running.Load(),
	}
}
