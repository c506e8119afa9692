package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Routing runs the cases of store.Routing with several store instances on
// one database, as the controllers of a cluster: run ownership, claims
// racing, the owner-only saves, and agent sessions with their epochs.
func Routing(t *testing.T, fresh func(t *testing.T) Database) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	heartbeat := func(t *testing.T, s *store.SQL, id string, at time.Time) {
		t.Helper()
		if err := s.HeartbeatController(ctx, &store.ControllerInfo{ID: id, Address: id + ":7443", Version: "test", StartedAt: at, HeartbeatAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	newRun := func(t *testing.T, s *store.SQL, id, owner string) *store.Task {
		t.Helper()
		r := &store.Run{ID: id, Action: "noop", Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", CreatedAt: now,
			Deadline: now.Add(time.Hour), Owner: owner}
		task := &store.Task{ID: id + "-t0", RunID: id, AgentID: "agent-1", Hostname: "web-1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}
		if err := s.CreateRun(ctx, r, []*store.Task{task}); err != nil {
			t.Fatal(err)
		}
		return task
	}
	since := now.Add(-15 * time.Second)

	t.Run("a live owner keeps its run; a dead owner's run is claimed once, and the old owner can no longer write it", func(t *testing.T) {
		db := fresh(t)
		a, b := db(t), db(t)
		task := newRun(t, a, "run-1", "ctl-a")
		heartbeat(t, a, "ctl-a", now)
		heartbeat(t, b, "ctl-b", now)
		runs, _, _, err := b.ClaimRuns(ctx, "ctl-b", since)
		if err != nil {
			t.Fatal(err)
		}
		if a.Shared() && len(runs) != 0 {
			t.Fatalf("ctl-b claimed %d runs of the live ctl-a", len(runs))
		}
		if !a.Shared() {
			// One controller per SQLite file: every active run is its own.
			if len(runs) != 1 {
				t.Fatalf("on a store that is not shared ctl-b claimed %d runs, want 1", len(runs))
			}
			return
		}
		// ctl-a's heartbeat stops.
		heartbeat(t, a, "ctl-a", now.Add(-time.Minute))
		runs, tasks, _, err := b.ClaimRuns(ctx, "ctl-b", since)
		if err != nil || len(runs) != 1 || runs[0].Owner != "ctl-b" || len(tasks["run-1"]) != 1 {
			t.Fatalf("claim of the dead owner's run: %+v %v %v", runs, tasks, err)
		}
		again, _, _, err := b.ClaimRuns(ctx, "ctl-b", since)
		if err != nil || len(again) != 0 {
			t.Fatalf("a second claim returned %d runs (%v), want none: a run is claimed once", len(again), err)
		}
		// ctl-a comes back and saves what it did meanwhile: refused.
		done := *task
		done.Status = agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
		lost, err := a.SaveOwnedTasks(ctx, "ctl-a", []*store.Task{&done}, nil)
		if err != nil || !slices.Equal(lost, []string{"run-1"}) {
			t.Fatalf("the old owner's save: lost %v, %v; want [run-1]", lost, err)
		}
		_, got, err := b.GetRun(ctx, "run-1")
		if err != nil || got[0].Status != agentv1.TaskStatus_TASK_STATUS_PENDING {
			t.Fatalf("the task after the old owner's refused save: %+v %v", got, err)
		}
		lost, err = b.SaveOwnedTasks(ctx, "ctl-b", []*store.Task{&done}, nil)
		if err != nil || len(lost) != 0 {
			t.Fatalf("the new owner's save: lost %v, %v", lost, err)
		}
		if _, got, _ = b.GetRun(ctx, "run-1"); got[0].Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("the new owner's save was not stored: %+v", got[0])
		}
		if runID, owner, err := a.TaskRunOwner(ctx, "run-1-t0"); err != nil || runID != "run-1" || owner != "ctl-b" {
			t.Fatalf("TaskRunOwner: %q %q %v", runID, owner, err)
		}
		if _, _, err := a.TaskRunOwner(ctx, "no-such-task"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("TaskRunOwner of an unknown task: %v, want ErrNotFound", err)
		}
		if owner, active, err := a.RunOwner(ctx, "run-1"); err != nil || owner != "ctl-b" || !active {
			t.Fatalf("RunOwner: %q %v %v", owner, active, err)
		}
		if _, _, err := a.RunOwner(ctx, "no-such-run"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("RunOwner of an unknown run: %v, want ErrNotFound", err)
		}
	})

	t.Run("one batch over owned runs and a lost one: the owned ones are stored whole, the lost one untouched", func(t *testing.T) {
		db := fresh(t)
		mixedOwnership(t, db(t), db(t), now)
	})

	t.Run("a large batch of agent sessions opened, moved and closed", func(t *testing.T) {
		db := fresh(t)
		a, b := db(t), db(t)
		heartbeat(t, a, "ctl-a", now)
		heartbeat(t, b, "ctl-b", now)
		sessionBatch(t, a, b, since)
	})

	t.Run("three controllers racing to claim one orphaned run: exactly one wins", func(t *testing.T) {
		db := fresh(t)
		s := []*store.SQL{db(t), db(t), db(t)}
		newRun(t, s[0], "run-2", "ctl-dead")
		for i, id := range []string{"ctl-0", "ctl-1", "ctl-2"} {
			heartbeat(t, s[i], id, now)
		}
		won := make([]int, 3)
		errs := raceN(3, func(i int) error {
			runs, _, _, err := s[i].ClaimRuns(ctx, []string{"ctl-0", "ctl-1", "ctl-2"}[i], since)
			won[i] = len(runs)
			return err
		})
		total := 0
		for i, err := range errs {
			if err != nil {
				t.Errorf("claimer %d: %v", i, err)
			}
			total += won[i]
		}
		if s[0].Shared() && total != 1 {
			t.Fatalf("%d claims of one orphaned run succeeded, want exactly 1 (%v)", total, won)
		}
	})

	t.Run("agent sessions: the newest epoch wins, and a stale close leaves it open", func(t *testing.T) {
		db := fresh(t)
		a, b := db(t), db(t)
		heartbeat(t, a, "ctl-a", now)
		heartbeat(t, b, "ctl-b", now)
		ea, err := a.OpenAgentSessions(ctx, "ctl-a", []string{"agent-1", "agent-2"})
		if err != nil || ea["agent-1"] != 1 || ea["agent-2"] != 1 {
			t.Fatalf("first sessions: %v %v", ea, err)
		}
		eb, err := b.OpenAgentSessions(ctx, "ctl-b", []string{"agent-1"})
		if err != nil || eb["agent-1"] != 2 {
			t.Fatalf("agent-1 moving to ctl-b: %v %v, want epoch 2", eb, err)
		}
		// ctl-a learns late that agent-1's stream there ended.
		if err := a.CloseAgentSessions(ctx, "ctl-a", map[string]int64{"agent-1": ea["agent-1"]}); err != nil {
			t.Fatal(err)
		}
		got, err := a.ListAgentSessions(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		want := []store.AgentSession{{AgentID: "agent-1", ControllerID: "ctl-b", Epoch: 2, Address: "ctl-b:7443"},
			{AgentID: "agent-2", ControllerID: "ctl-a", Epoch: 1, Address: "ctl-a:7443"}}
		if len(got) != len(want) || *got[0] != want[0] || *got[1] != want[1] {
			t.Fatalf("sessions %+v, want %+v", deref(got), want)
		}
		// A dead controller's sessions are not listed.
		heartbeat(t, a, "ctl-a", now.Add(-time.Minute))
		if got, err = b.ListAgentSessions(ctx, since); err != nil || len(got) != 1 || got[0].AgentID != "agent-1" {
			t.Fatalf("sessions with ctl-a dead: %+v %v", deref(got), err)
		}
		if err := b.CloseAgentSessions(ctx, "ctl-b", map[string]int64{"agent-1": 2}); err != nil {
			t.Fatal(err)
		}
		if got, err = b.ListAgentSessions(ctx, since); err != nil || len(got) != 0 {
			t.Fatalf("sessions after the close: %+v %v", deref(got), err)
		}
	})
}

func deref(ss []*store.AgentSession) []store.AgentSession {
	out := make([]store.AgentSession, len(ss))
	for i, s := range ss {
		out[i] = *s
	}
	return out
}

// raceN runs f(i) for i in [0, n) at once and returns their errors.
func raceN(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		go func() {
			<-start
			errs[i] = f(i)
			done <- struct{}{}
		}()
	}
	close(start)
	for range n {
		<-done
	}
	return errs
}
