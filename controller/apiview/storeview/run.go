package storeview

import (
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Run is a stored run with its tasks and approvals on the wire. Its
// counts tally the tasks given; use RunWithCounts when the tasks are left
// out but the counts are known.
func Run(r *store.Run, tasks []*store.Task, approvals []*store.Approval) *operatorv1.Run {
	return RunWithCounts(r, tasks, approvals, store.CountTasks(tasks))
}

// RunWithCounts is Run with counts the caller tallied (over every task of
// the run, whether or not tasks holds them).
func RunWithCounts(r *store.Run, tasks []*store.Task, approvals []*store.Approval, c store.RunCounts) *operatorv1.Run {
	out := &operatorv1.Run{
		Id: r.ID, Action: r.Action, Selector: r.Selector, ParamsJson: r.ParamsJSON, Status: r.Status,
		CreatedBy: r.CreatedBy, OnBehalfOf: r.OnBehalfOf, CreatedAt: apiview.Timestamp(r.CreatedAt), FinishedAt: apiview.Timestamp(r.FinishedAt),
		MaxConcurrency: uint32(max(r.MaxConcurrency, 0)), MaxErrors: r.MaxErrors, Deadline: apiview.Timestamp(r.Deadline),
		Reason: r.Reason, CaseId: r.CaseID, Destructive: r.Destructive,
	}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, Task(t))
	}
	out.Counts = Counts(c)
	for _, a := range approvals {
		out.Approvals = append(out.Approvals, Approval(a))
	}
	return out
}

// Task is a stored task on the wire.
func Task(t *store.Task) *operatorv1.Task {
	return &operatorv1.Task{
		Id: t.ID, RunId: t.RunID, AgentId: t.AgentID, Hostname: t.Hostname, Status: t.Status, Error: t.Error,
		OutputJson: t.OutputJSON, DispatchedAt: apiview.Timestamp(t.DispatchedAt), StartedAt: apiview.Timestamp(t.StartedAt),
		FinishedAt: apiview.Timestamp(t.FinishedAt), Account: t.Account, Region: t.Region, EvidenceIds: t.EvidenceIDs,
		LastMessage: t.LastMessage,
	}
}

// Approval is one stored approval decision on the wire.
func Approval(a *store.Approval) *operatorv1.Approval {
	return &operatorv1.Approval{Operator: a.Operator, Approved: a.Approved, At: apiview.Timestamp(a.At), Comment: a.Comment}
}

// Counts is a run's task tally on the wire.
func Counts(c store.RunCounts) *operatorv1.RunCounts {
	return &operatorv1.RunCounts{Targets: u32(c.Targets), Pending: u32(c.Pending), Running: u32(c.Running),
		Succeeded: u32(c.Succeeded), Failed: u32(c.Failed), Cancelled: u32(c.Cancelled), Offline: u32(c.Offline)}
}

func u32(n int) uint32 { return uint32(max(n, 0)) }
