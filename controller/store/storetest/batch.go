package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// batchTasks is the size of the large batches: more than one statement's
// worth of rows on PostgreSQL, which writes a batch a few thousand rows at
// a time.
const batchTasks = 5000

// batchTask returns the i-th task of run in one of the shapes a run's
// tasks take: pending with nothing set, dispatched with a signed task,
// finished with output, evidence and messages. Times carry nanoseconds.
func batchTask(run string, i int, at time.Time) *store.Task {
	t := &store.Task{ID: fmt.Sprintf("%s-t%05d", run, i), RunID: run, Seq: i, AgentID: fmt.Sprintf("agent-%05d", i),
		Hostname: fmt.Sprintf("web-%d", i), Account: "111122223333", Region: "eu-west-1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}
	switch i % 3 {
	case 1:
		t.Status = agentv1.TaskStatus_TASK_STATUS_DISPATCHED
		t.SignedTask = []byte{byte(i), byte(i >> 8), 0, 0xff}
		t.DispatchedAt = at.Add(time.Duration(i) * time.Nanosecond)
	case 2:
		t.Status = agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
		t.OutputJSON = fmt.Appendf(nil, `{"n":%d}`, i)
		t.SignedTask = []byte{1, 2, 3}
		t.DispatchedAt, t.StartedAt, t.FinishedAt = at, at.Add(time.Millisecond), at.Add(time.Duration(i)*time.Microsecond+7)
		t.EvidenceIDs = []string{fmt.Sprintf("ev-%d", i), "ev-shared"}
		t.Error, t.LastMessage = "partial: one file unreadable", "done, it's 'quoted' and, comma"
	}
	return t
}

// sameTask reports how got differs from want, or "". NULL byte columns
// (nil) must stay nil; an empty evidence list reads back as none.
func sameTask(got, want *store.Task) string {
	switch {
	case got.ID != want.ID || got.RunID != want.RunID || got.Seq != want.Seq || got.AgentID != want.AgentID || got.Hostname != want.Hostname:
		return "identity"
	case got.Status != want.Status || got.Error != want.Error || got.LastMessage != want.LastMessage:
		return "status or text"
	case !bytes.Equal(got.OutputJSON, want.OutputJSON) || (got.OutputJSON == nil) != (want.OutputJSON == nil):
		return "output"
	case !bytes.Equal(got.SignedTask, want.SignedTask) || (got.SignedTask == nil) != (want.SignedTask == nil):
		return "signed task"
	case !got.DispatchedAt.Equal(want.DispatchedAt) || !got.StartedAt.Equal(want.StartedAt) || !got.FinishedAt.Equal(want.FinishedAt):
		return "times"
	case got.DispatchedAt.IsZero() != want.DispatchedAt.IsZero() || got.FinishedAt.IsZero() != want.FinishedAt.IsZero():
		return "zero times"
	case !slices.Equal(got.EvidenceIDs, want.EvidenceIDs) || got.Account != want.Account || got.Region != want.Region:
		return "evidence or place"
	}
	return ""
}

// checkTasks fails t unless run's stored tasks are want, in order.
func checkTasks(t *testing.T, s store.Store, run string, want []*store.Task) *store.Run {
	t.Helper()
	r, got, err := s.GetRun(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("run %s has %d tasks, want %d", run, len(got), len(want))
	}
	for i := range want {
		if d := sameTask(got[i], want[i]); d != "" {
			t.Fatalf("task %d of run %s differs in its %s:\n got %+v\nwant %+v", i, run, d, got[i], want[i])
		}
	}
	return r
}

// largeBatch creates a run of batchTasks tasks in one CreateRun and
// rewrites all of them in one SaveTasks, each read back equal: every
// shape turns into another, times to zero included, and a task given
// twice in one batch keeps its last copy.
func largeBatch(t *testing.T, s store.Store, now time.Time) {
	ctx := context.Background()
	r := &store.Run{ID: "big", Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
		CreatedBy: "admin", CreatedAt: now, StartedAt: now, Deadline: now.Add(time.Hour)}
	tasks := make([]*store.Task, batchTasks)
	for i := range tasks {
		tasks[i] = batchTask("big", i, now)
	}
	if err := s.CreateRun(ctx, r, tasks); err != nil {
		t.Fatal(err)
	}
	checkTasks(t, s, "big", tasks)

	// Each task takes the next shape: pending becomes dispatched,
	// dispatched finished, and finished pending again (zero times, no
	// output, evidence or messages).
	later := now.Add(time.Minute)
	updated := make([]*store.Task, batchTasks)
	for i, old := range tasks {
		u := batchTask("big", i+1, later)
		u.ID, u.Seq, u.AgentID, u.Hostname = old.ID, old.Seq, old.AgentID, old.Hostname
		updated[i] = u
	}
	// A stale copy of task 7 first, then its last: the last is stored.
	stale := *updated[7]
	stale.Status, stale.Error = agentv1.TaskStatus_TASK_STATUS_FAILED, "stale"
	// A task no run holds is written nowhere.
	batch := append([]*store.Task{&stale, {ID: "no-such-task", RunID: "big", Status: agentv1.TaskStatus_TASK_STATUS_FAILED}}, updated...)
	r.Status, r.FinishedAt = operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, later.Add(time.Nanosecond)
	staleRun := *r
	staleRun.Status = operatorv1.RunStatus_RUN_STATUS_FAILED
	if err := s.SaveTasks(ctx, batch, []*store.Run{&staleRun, r}); err != nil {
		t.Fatal(err)
	}
	got := checkTasks(t, s, "big", updated)
	if got.Status != r.Status || !got.FinishedAt.Equal(r.FinishedAt) || !got.StartedAt.Equal(now) || !got.Deadline.Equal(r.Deadline) {
		t.Fatalf("the run after the batch: %+v, want status %v finished %v", got, r.Status, r.FinishedAt)
	}

	// Saving nothing changes nothing.
	if err := s.SaveTasks(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	checkTasks(t, s, "big", updated)
}

// mixedOwnership has controller a save one batch of tasks and run states
// of two runs it owns and one run b took from it: the two are stored whole,
// the third is reported lost and left exactly as b has it.
func mixedOwnership(t *testing.T, a, b *store.SQL, now time.Time) {
	ctx := context.Background()
	runs := map[string]*store.Run{}
	tasks := map[string][]*store.Task{}
	for _, id := range []string{"own-1", "lost", "own-2"} {
		r := &store.Run{ID: id, Action: "noop", Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", CreatedAt: now,
			Deadline: now.Add(time.Hour), Owner: "ctl-a"}
		if id == "lost" {
			r.Owner = "ctl-b"
		}
		for i := range batchTasks / 2 {
			tasks[id] = append(tasks[id], batchTask(id, i, now))
		}
		if err := a.CreateRun(ctx, r, tasks[id]); err != nil {
			t.Fatal(err)
		}
		runs[id] = r
	}
	// The batch interleaves the three runs' tasks, as results arrive.
	var batch []*store.Task
	want := map[string][]*store.Task{}
	for i := range batchTasks / 2 {
		for _, id := range []string{"own-1", "lost", "own-2"} {
			u := batchTask(id, i+1, now.Add(time.Second))
			old := tasks[id][i]
			u.ID, u.Seq, u.AgentID, u.Hostname = old.ID, old.Seq, old.AgentID, old.Hostname
			batch = append(batch, u)
			want[id] = append(want[id], u)
		}
	}
	var saved []*store.Run
	for _, id := range []string{"own-1", "lost", "own-2"} {
		r := *runs[id]
		r.Status, r.FinishedAt = operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, now.Add(2*time.Second)
		saved = append(saved, &r)
	}
	lost, err := a.SaveOwnedTasks(ctx, "ctl-a", batch, saved)
	if err != nil || !slices.Equal(lost, []string{"lost"}) {
		t.Fatalf("the mixed batch: lost %v, %v; want [lost]", lost, err)
	}
	for _, id := range []string{"own-1", "own-2"} {
		if r := checkTasks(t, b, id, want[id]); r.Status != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED || !r.FinishedAt.Equal(now.Add(2*time.Second)) {
			t.Fatalf("owned run %s after the batch: %+v", id, r)
		}
	}
	if r := checkTasks(t, b, "lost", tasks["lost"]); r.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING || !r.FinishedAt.IsZero() || r.Owner != "ctl-b" {
		t.Fatalf("the lost run was written: %+v", r)
	}
}

// fleetAgents is the size of the fleet batches: more than one statement's
// worth of rows on PostgreSQL.
const fleetAgents = 2100

// lastSeenBatch touches fleetAgents agents in one TouchAgents, then again
// with older times for half of them and newer for the rest: last_seen only
// moves forward, and an unknown agent is written nowhere.
func lastSeenBatch(t *testing.T, s store.Store, now time.Time) {
	ctx := context.Background()
	want := map[string]time.Time{}
	first := map[string]time.Time{}
	for i := range fleetAgents {
		id := fmt.Sprintf("agent-%05d", i)
		if err := s.PutAgent(ctx, &store.Agent{ID: id, Role: "host", Hostname: id, EnrolledAt: now, LastSeen: now, CertSerial: id,
			CertNotAfter: now.Add(time.Hour), Facts: &agentv1.AgentFacts{Hostname: id}}); err != nil {
			t.Fatal(err)
		}
		first[id] = now.Add(time.Duration(i+1) * time.Millisecond)
	}
	if err := s.TouchAgents(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := map[string]time.Time{"no-such-agent": now.Add(time.Hour)}
	i := 0
	for id, at := range first {
		want[id] = at
		if i%2 == 0 {
			second[id] = at.Add(-time.Second)
		} else {
			second[id] = at.Add(time.Minute + 3)
			want[id] = second[id]
		}
		i++
	}
	if err := s.TouchAgents(ctx, second); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != fleetAgents {
		t.Fatalf("%d agents after the touches, want %d", len(all), fleetAgents)
	}
	for _, a := range all {
		if !a.LastSeen.Equal(want[a.ID]) {
			t.Fatalf("agent %s last seen %v, want %v", a.ID, a.LastSeen, want[a.ID])
		}
	}
}

// sessionBatch opens fleetAgents sessions on controller a, moves them all
// (one id given twice) to b, has a close them late (stale: they stay open
// on b) and b close every other one.
func sessionBatch(t *testing.T, a, b *store.SQL, since time.Time) {
	ctx := context.Background()
	ids := make([]string, fleetAgents)
	for i := range ids {
		ids[i] = fmt.Sprintf("agent-%05d", i)
	}
	ea, err := a.OpenAgentSessions(ctx, "ctl-a", ids)
	if err != nil || len(ea) != fleetAgents {
		t.Fatalf("opening %d sessions on ctl-a: %d epochs, %v", fleetAgents, len(ea), err)
	}
	eb, err := b.OpenAgentSessions(ctx, "ctl-b", append(slices.Clone(ids), ids[7]))
	if err != nil || len(eb) != fleetAgents {
		t.Fatalf("moving %d sessions to ctl-b: %d epochs, %v", fleetAgents, len(eb), err)
	}
	for _, id := range ids {
		if ea[id] != 1 || eb[id] != 2 {
			t.Fatalf("agent %s: epochs %d then %d, want 1 then 2", id, ea[id], eb[id])
		}
	}
	if err := a.CloseAgentSessions(ctx, "ctl-a", ea); err != nil {
		t.Fatal(err)
	}
	closes := map[string]int64{}
	for i, id := range ids {
		if i%2 == 1 {
			closes[id] = eb[id]
		}
	}
	if err := b.CloseAgentSessions(ctx, "ctl-b", closes); err != nil {
		t.Fatal(err)
	}
	got, err := a.ListAgentSessions(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != (fleetAgents+1)/2 {
		t.Fatalf("%d open sessions, want %d", len(got), (fleetAgents+1)/2)
	}
	for i, s := range got {
		if want := ids[2*i]; s.AgentID != want || s.ControllerID != "ctl-b" || s.Epoch != 2 {
			t.Fatalf("open session %d: %+v, want %s on ctl-b at epoch 2", i, *s, want)
		}
	}
}
