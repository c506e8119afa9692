package dispatch

import (
	"fmt"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// evRevoked tells the loop an agent was revoked.
type evRevoked struct{ agentID, reason string }

// AgentRevoked ends the open tasks of a revoked agent in the running runs
// this dispatcher holds, as failed with an error that says the agent was
// revoked, rather than letting them wait for the deadline and end offline
// or timed out.
func (d *Dispatcher) AgentRevoked(agentID, reason string) {
	d.send(evRevoked{agentID: agentID, reason: reason})
}

func (d *Dispatcher) onRevoked(e evRevoked) {
	why := "agent " + e.agentID + " was revoked"
	if e.reason != "" {
		why += " (" + e.reason + ")"
	}
	now := d.cfg.Clock()
	runs := map[*runState]bool{}
	var open []*taskState
	for _, ts := range d.byAgent[e.agentID] {
		open = append(open, ts)
	}
	for _, ts := range open {
		rs := ts.run
		if rs.run.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING {
			continue
		}
		switch ts.t.Status {
		case agentv1.TaskStatus_TASK_STATUS_PENDING:
			ts.t.Error = why + " before the task reached it; it was not sent"
		case agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
			ts.t.Error = why + " while the task was out; it may have run: check the host"
			rs.inflight--
			rs.perAccount[ts.t.Account]--
		default:
			continue
		}
		ts.t.Status = agentv1.TaskStatus_TASK_STATUS_FAILED
		ts.t.FinishedAt = now
		rs.errors++
		d.finishTask(ts)
		runs[rs] = true
	}
	for rs := range runs {
		if rs.threshold >= 0 && rs.errors > rs.threshold && rs.stopped == "" {
			rs.stopped = fmt.Sprintf("cancelled: %d targets failed, more than max-errors %s", rs.errors, rs.run.MaxErrors)
			d.cancelPending(rs, rs.stopped)
		}
		// The ready queue skips tasks that are no longer pending, so
		// the slots the revoked agent held go to the others.
		d.dispatchMore(rs)
		d.maybeFinish(rs)
	}
}
