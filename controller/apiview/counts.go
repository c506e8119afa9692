package apiview

import (
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// CountTask adds one task's status to a run's counts: dispatched counts as
// running, and every ending other than succeeded, cancelled and offline
// (failed, timed out, refused, …) as failed. The controller counts a run's
// tasks with it, and the CLI its progress bar.
func CountTask(c *operatorv1.RunCounts, s agentv1.TaskStatus) {
	switch s {
	case agentv1.TaskStatus_TASK_STATUS_PENDING:
		c.Pending++
	case agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
		c.Running++
	case agentv1.TaskStatus_TASK_STATUS_SUCCEEDED:
		c.Succeeded++
	case agentv1.TaskStatus_TASK_STATUS_CANCELLED:
		c.Cancelled++
	case agentv1.TaskStatus_TASK_STATUS_OFFLINE:
		c.Offline++
	default:
		c.Failed++
	}
}
