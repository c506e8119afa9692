package dispatch_test

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestActiveTasksFollowTheLoop checks the counts behind the
// firebreak.tasks.active gauge through a run's life: each transition the
// loop makes (dispatch, start, result, cancel, approval, restart) moves a
// task between pending, dispatched and running, and a final task leaves
// them.
func TestActiveTasksFollowTheLoop(t *testing.T) {
	counts := func(pending, dispatched, running int64) map[string]int64 {
		return map[string]int64{dispatch.StatePending: pending, dispatch.StateDispatched: dispatched, dispatch.StateRunning: running}
	}
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "db"), nil)
	ctx := context.Background()
	taskOf := func(agent string) string {
		h.f.mu.Lock()
		defer h.f.mu.Unlock()
		return h.f.pushed[agent][0].GetTaskId()
	}
	var run, proposed string
	steps := []struct {
		name string
		do   func()
		want map[string]int64
	}{
		{"nothing yet", func() {}, counts(0, 0, 0)},
		{"two of three agents connected", func() {
			h.f.connect("a0")
			h.f.connect("a1")
			run = h.submit(3, nil)
		}, counts(1, 2, 0)},
		{"a0 starts", func() {
			h.d.TaskEvent("a0", &agentv1.TaskEvent{TaskId: taskOf("a0"),
				Event: &agentv1.TaskEvent_Started{Started: timestamppb.New(h.clock.Now())}})
		}, counts(1, 1, 1)},
		{"a0 succeeds", func() {
			h.d.TaskResult("a0", &agentv1.TaskResult{TaskId: taskOf("a0"), Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED})
		}, counts(1, 1, 0)},
		{"a result for another agent's task changes nothing", func() {
			h.d.TaskResult("a0", &agentv1.TaskResult{TaskId: taskOf("a1"), Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED})
		}, counts(1, 1, 0)},
		{"a run awaiting approval is pending", func() {
			proposed = h.submit(2, func(r *store.Run) {
				r.Status, r.StartedAt, r.Deadline, r.Destructive = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, time.Time{}, time.Time{}, true
			})
		}, counts(3, 1, 0)},
		{"cancelling cancels the pending task, not the dispatched one", func() {
			if _, err := h.d.Cancel(ctx, run, "alice", "enough"); err != nil {
				t.Fatal(err)
			}
		}, counts(2, 1, 0)},
		{"the dispatched task's result ends it", func() {
			h.d.TaskResult("a1", &agentv1.TaskResult{TaskId: taskOf("a1"), Status: agentv1.TaskStatus_TASK_STATUS_FAILED})
		}, counts(2, 0, 0)},
		{"a restarted dispatcher counts what it loads", func() {
			h.stop()
			h = newHarness(t, filepath.Join(dir, "db"), nil) // its Run loads the active runs
		}, counts(2, 0, 0)},
		{"rejecting cancels the proposed run's tasks", func() {
			if _, err := h.d.Decide(ctx, proposed, "bob", false, "no"); err != nil {
				t.Fatal(err)
			}
		}, counts(0, 0, 0)},
	}
	defer func() { h.stop() }()
	for _, step := range steps {
		step.do()
		if err := h.d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := h.d.ActiveTasks(); !maps.Equal(got, step.want) {
			t.Fatalf("%s: active tasks %v, want %v", step.name, got, step.want)
		}
	}
}
