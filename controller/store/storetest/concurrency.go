package storetest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Database opens store instances on one database, each with its own
// pools, as separate controllers open it.
type Database func(t *testing.T) *store.SQL

// RunConcurrency runs the cases where several store instances on one
// database write at once; fresh returns a new, empty database.
func RunConcurrency(t *testing.T, fresh func(t *testing.T) Database) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	key := store.NewCheckpointKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	instances := func(t *testing.T, n int) []*store.SQL {
		db := fresh(t)
		out := make([]*store.SQL, n)
		for i := range out {
			out[i] = db(t)
			out[i].SetCheckpointKey(key)
		}
		return out
	}
	// race runs f(i) for i in [0, n) at once and returns their errors.
	race := func(n int, f func(i int) error) []error {
		errs := make([]error, n)
		var start, wg sync.WaitGroup
		start.Add(1)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				errs[i] = f(i)
			}()
		}
		start.Done()
		wg.Wait()
		return errs
	}

	t.Run("racers on a one-use join token", func(t *testing.T) {
		s := instances(t, 3)
		if err := s[0].CreateJoinToken(ctx, &store.JoinToken{Hash: "once", Role: "host", Uses: 1, UsesLeft: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		errs := race(9, func(i int) error {
			_, err := s[i%3].ConsumeJoinToken(ctx, "once", now)
			return err
		})
		won := tokenWinners(t, errs)
		if won != 1 {
			t.Fatalf("%d racers enrolled with a one-use token, want exactly 1", won)
		}
		toks, err := s[1].ListJoinTokens(ctx)
		if err != nil || len(toks) != 1 || toks[0].UsesLeft != 0 {
			t.Fatalf("tokens after the race: %+v %v", toks, err)
		}
	})

	t.Run("racers enrolling with a one-use join token", func(t *testing.T) {
		s := instances(t, 3)
		if err := s[0].CreateJoinToken(ctx, &store.JoinToken{Hash: "once-enroll", Role: "host", Uses: 1, UsesLeft: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		errs := race(9, func(i int) error {
			_, _, err := s[i%3].EnrollWithToken(ctx, "once-enroll", now, func(tok *store.JoinToken) (*store.Agent, error) {
				id := fmt.Sprintf("agt-racer-%d", i)
				return &store.Agent{ID: id, Role: tok.Role, Hostname: id, Facts: &agentv1.AgentFacts{Hostname: id}, EnrolledAt: now, LastSeen: now}, nil
			})
			return err
		})
		won := tokenWinners(t, errs)
		agents, err := s[2].ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if won != 1 || len(agents) != 1 {
			t.Fatalf("%d racers enrolled and %d agents stored with a one-use token, want exactly 1 and 1", won, len(agents))
		}
	})

	t.Run("two runs with one idempotency key", func(t *testing.T) {
		s := instances(t, 2)
		errs := race(2, func(i int) error {
			id := fmt.Sprintf("run-%d", i)
			return s[i].CreateRun(ctx, &store.Run{ID: id, Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`), CreatedBy: "playbook:p",
				CreatedAt: now, IdempotencyKey: "pbrun:pbr_1:step"},
				[]*store.Task{{ID: id + "-t", RunID: id, AgentID: "a1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}})
		})
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner < 0:
				winner = i
			case err == nil:
				t.Fatal("both runs were stored with one idempotency key")
			case !errors.Is(err, store.ErrIdempotencyKeyUsed):
				t.Fatalf("run %d: %v, want ErrIdempotencyKeyUsed", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("neither run was stored")
		}
		r, tasks, err := s[1-winner].RunByIdempotencyKey(ctx, "pbrun:pbr_1:step")
		if err != nil || r.ID != fmt.Sprintf("run-%d", winner) || len(tasks) != 1 {
			t.Fatalf("the key's run: %+v %d %v", r, len(tasks), err)
		}
		if _, _, err := s[0].GetRun(ctx, fmt.Sprintf("run-%d", 1-winner)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused run was stored: %v", err)
		}
	})

	t.Run("two writers of one task", func(t *testing.T) {
		s := instances(t, 2)
		run := &store.Run{ID: "r", Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedAt: now}
		task := &store.Task{ID: "t", RunID: "r", AgentID: "a1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}
		if err := s[0].CreateRun(ctx, run, []*store.Task{task}); err != nil {
			t.Fatal(err)
		}
		const writes = 15
		written := map[string]bool{}
		var mu sync.Mutex
		errs := race(2, func(w int) error {
			for i := 0; i < writes; i++ {
				v := fmt.Sprintf("writer %d write %d", w, i)
				mu.Lock()
				written[v] = true
				mu.Unlock()
				tk := &store.Task{ID: "t", RunID: "r", Status: agentv1.TaskStatus_TASK_STATUS_RUNNING, Error: v, LastMessage: v,
					OutputJSON: []byte(`"` + v + `"`), StartedAt: now.Add(time.Duration(w*writes + i))}
				r := *run
				r.StartedAt = tk.StartedAt
				if err := s[w].SaveTasks(ctx, []*store.Task{tk}, []*store.Run{&r}); err != nil {
					return err
				}
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		gr, gt, err := s[1].GetRun(ctx, "r")
		if err != nil || len(gt) != 1 {
			t.Fatal(err)
		}
		got := gt[0]
		// Nothing torn: every field of the task, and the run, are of one write.
		if !written[got.Error] || got.LastMessage != got.Error || string(got.OutputJSON) != `"`+got.Error+`"` || !gr.StartedAt.Equal(got.StartedAt) {
			t.Fatalf("the task holds parts of different writes: %+v, run started %v", got, gr.StartedAt)
		}
		last := &store.Task{ID: "t", RunID: "r", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, Error: "last", LastMessage: "last"}
		if err := s[0].SaveTasks(ctx, []*store.Task{last}, nil); err != nil {
			t.Fatal(err)
		}
		if _, gt, _ := s[1].GetRun(ctx, "r"); gt[0].Error != "last" || gt[0].Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("the last write does not stand: %+v", gt[0])
		}
	})

	t.Run("audit appends from three instances", func(t *testing.T) {
		s := instances(t, 3)
		const each = 12
		errs := race(3, func(w int) error {
			for i := 0; i < each; i++ {
				if err := s[w].AppendAudit(ctx, &store.AuditRecord{At: now.Add(time.Duration(i)), Actor: fmt.Sprintf("controller:%d", w),
					Action: "run.create", Subject: fmt.Sprint(i), Detail: []byte(`{"n":1}`)}); err != nil {
					return err
				}
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("instance %d: %v", i, err)
			}
		}
		for i, st := range s {
			chk, err := st.VerifyAudit(ctx)
			if err != nil || !chk.OK || chk.Records != 3*each || chk.Checkpoint == nil || chk.Checkpoint.Length != 3*each {
				t.Fatalf("instance %d verifies %+v %v, want OK with %d records and a checkpoint of them", i, chk, err, 3*each)
			}
		}
		// Each instance appends again after the others did: its remembered
		// checkpoint is not the stored one any more.
		for i, st := range s {
			if err := st.AppendAudit(ctx, &store.AuditRecord{At: now, Actor: "system", Action: "after", Subject: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if chk, err := s[0].VerifyAudit(ctx); err != nil || !chk.OK || chk.Records != 3*each+3 || chk.Checkpoint.Length != 3*each+3 {
			t.Fatalf("after more appends: %+v %v", chk, err)
		}
	})

	t.Run("custody appends from two instances", func(t *testing.T) {
		s := instances(t, 2)
		et := make([]store.EvidenceStore, len(s))
		for i, st := range s {
			et[i] = st
		}
		if err := et[0].PutUpload(ctx, &store.EvidenceUpload{ID: "up", TaskID: "t", State: "open", HashState: []byte{}, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := et[0].InsertEvidence(ctx, &store.EvidenceItem{ID: "ev", UploadID: "up", TaskID: "t", SHA256: "ab", StoredAt: now, BundleJSON: []byte("null")},
			&store.CustodyEntry{EvidenceID: "ev", At: now, Actor: "agent:a1", Action: "collected"}); err != nil {
			t.Fatal(err)
		}
		const each = 10
		errs := race(2, func(w int) error {
			for i := 0; i < each; i++ {
				if err := et[w].AppendCustody(ctx, &store.CustodyEntry{EvidenceID: "ev", At: now.Add(time.Duration(i)), Actor: fmt.Sprintf("operator:%d", w),
					Action: "download"}); err != nil {
					return err
				}
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("instance %d: %v", i, err)
			}
		}
		entries, err := et[1].Custody(ctx, "ev")
		if err != nil || len(entries) != 1+2*each {
			t.Fatalf("custody: %d entries, %v; want %d", len(entries), err, 1+2*each)
		}
		prev := store.GenesisHash
		for i, e := range entries {
			if e.Seq != int64(i+1) || e.PrevHash != prev || store.CustodyHash(e) != e.Hash {
				t.Fatalf("entry %d does not chain: %+v", i+1, e)
			}
			prev = e.Hash
		}
		cp, err := et[0].CustodyCheckpoint(ctx, "ev")
		if err != nil {
			t.Fatal(err)
		}
		hashAt := func(n int64) string {
			if n < 1 || n > int64(len(entries)) {
				return ""
			}
			return entries[n-1].Hash
		}
		if cp == nil || cp.Length != int64(len(entries)) {
			t.Fatalf("custody checkpoint %+v, want one of %d entries", cp, len(entries))
		}
		if p := store.CheckChainHead(key, cp, "custody record", int64(len(entries)), hashAt); p != "" {
			t.Fatalf("the custody chain does not verify: %s", p)
		}
	})

	t.Run("two controllers take one playbook run", func(t *testing.T) {
		s := instances(t, 2)
		if err := s[0].CreatePlaybookRun(ctx, &store.PlaybookRun{ID: "pbr", Playbook: "contain", Version: 1, Status: "pending", CreatedAt: now,
			InputsJSON: []byte(`{}`)}, nil); err != nil {
			t.Fatal(err)
		}
		took := make([]bool, 2)
		errs := race(2, func(i int) error {
			var err error
			took[i], err = s[i].TransitionPlaybookRun(ctx, &store.PlaybookRun{ID: "pbr", Status: "running", Error: fmt.Sprint(i)}, "pending")
			return err
		})
		if errs[0] != nil || errs[1] != nil || took[0] == took[1] {
			t.Fatalf("transitions %v, errors %v: want exactly one", took, errs)
		}
	})

	t.Run("case entries from two instances", func(t *testing.T) {
		s := instances(t, 2)
		ct := []store.CaseStore{s[0], s[1]}
		if err := ct[0].CreateCase(ctx, &store.Case{ID: "c", Title: "t", Status: store.CaseOpen, Phase: "triage", CreatedAt: now}, nil); err != nil {
			t.Fatal(err)
		}
		const each = 8
		added := make([]int, 2)
		errs := race(2, func(w int) error {
			for i := 0; i < each; i++ {
				// Both write the shared keys; each its own too.
				for _, k := range []string{fmt.Sprintf("shared-%d", i), fmt.Sprintf("own-%d-%d", w, i)} {
					ok, err := ct[w].RecordCaseEntry(ctx, &store.CaseEntry{CaseID: "c", Key: k, At: now, Kind: "note", Summary: k}, nil)
					if err != nil {
						return err
					}
					if ok {
						added[w]++
					}
				}
			}
			return nil
		})
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("errors %v", errs)
		}
		tl, err := ct[1].Timeline(ctx, "c")
		if err != nil || len(tl) != 3*each || added[0]+added[1] != 3*each {
			t.Fatalf("timeline of %d entries (%v), %v added; want %d", len(tl), err, added, 3*each)
		}
		for i, e := range tl {
			if e.Seq != int64(i+1) {
				t.Fatalf("entry %d has seq %d", i+1, e.Seq)
			}
		}
	})
}

// tokenWinners counts the racers on a join token that succeeded; every
// other one must have found it exhausted.
func tokenWinners(t *testing.T, errs []error) int {
	t.Helper()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrTokenExhausted):
			t.Errorf("racer %d: %v, want success or ErrTokenExhausted", i, err)
		}
	}
	return won
}
