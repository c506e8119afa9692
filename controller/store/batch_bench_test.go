package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// benchTasks is the batch of BenchmarkBatchWrite: the tasks of a
// 10,000-agent run.
const benchTasks = 10000

// BenchmarkBatchWrite measures, on each backend, the writes made in
// batches of benchTasks rows: by a run's owner, a run's tasks created in
// one CreateRun (create) and task states (dispatched, with a signed task)
// saved in one SaveOwnedTasks with its run's state (save); by the fleet,
// benchTasks agents' last-seen times (touch) and stream sessions opened
// (sessions). One op is one batch; ms/batch repeats ns/op. PostgreSQL is internal/pgtest's
// local server (fsync off), so the figures are the controller's side and
// the round trips, not the disk.
func BenchmarkBatchWrite(b *testing.B) {
	ctx := context.Background()
	now := time.Now().UTC()
	tasksOf := func(run string) []*store.Task {
		ts := make([]*store.Task, benchTasks)
		for i := range ts {
			ts[i] = &store.Task{ID: fmt.Sprintf("%s-t%05d", run, i), RunID: run, Seq: i, AgentID: fmt.Sprintf("agent-%05d", i),
				Hostname: fmt.Sprintf("host-%05d", i), Account: "111122223333", Region: "eu-west-1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}
		}
		return ts
	}
	newRun := func(id string) *store.Run {
		return &store.Run{ID: id, Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
			CreatedBy: "bench", CreatedAt: now, StartedAt: now, Deadline: now.Add(time.Hour), Owner: "ctl-bench"}
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, err := store.Open(ctx, be.database(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			// Run ids stay unique when -count repeats a sub-benchmark on
			// this database.
			made := 0
			nextRun := func(kind string) string { made++; return fmt.Sprintf("%s-%d", kind, made) }
			b.Run("create", func(b *testing.B) {
				runs := make([]*store.Run, b.N)
				tasks := make([][]*store.Task, b.N)
				for i := range b.N {
					id := nextRun("create")
					runs[i], tasks[i] = newRun(id), tasksOf(id)
				}
				b.ResetTimer()
				for i := range b.N {
					if err := s.CreateRun(ctx, runs[i], tasks[i]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/batch")
			})
			b.Run("save", func(b *testing.B) {
				id := nextRun("save")
				r, tasks := newRun(id), tasksOf(id)
				if err := s.CreateRun(ctx, r, tasks); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := range b.N {
					at := now.Add(time.Duration(i+1) * time.Second)
					for j, t := range tasks {
						t.Status, t.DispatchedAt, t.SignedTask = agentv1.TaskStatus_TASK_STATUS_DISPATCHED, at, []byte{byte(i), byte(j), 1, 2}
					}
					r.StartedAt = at
					lost, err := s.SaveOwnedTasks(ctx, "ctl-bench", tasks, []*store.Run{r})
					if err != nil || len(lost) != 0 {
						b.Fatalf("saving: lost %v, %v", lost, err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/batch")
			})
			agents := make([]string, benchTasks)
			for i := range agents {
				agents[i] = fmt.Sprintf("agent-%05d", i)
				if err := s.PutAgent(ctx, &store.Agent{ID: agents[i], Role: "host", Hostname: agents[i], EnrolledAt: now, LastSeen: now,
					CertSerial: agents[i], CertNotAfter: now.Add(time.Hour), Facts: &agentv1.AgentFacts{Hostname: agents[i]}}); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("touch", func(b *testing.B) {
				for i := range b.N {
					seen := make(map[string]time.Time, len(agents))
					for _, id := range agents {
						seen[id] = now.Add(time.Duration(i+1) * time.Second)
					}
					if err := s.TouchAgents(ctx, seen); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/batch")
			})
			b.Run("sessions", func(b *testing.B) {
				for range b.N {
					if _, err := s.OpenAgentSessions(ctx, "ctl-bench", agents); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/batch")
			})
		})
	}
}
