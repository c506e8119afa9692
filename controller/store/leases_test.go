package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestFencedWritesOfTheSingletonJobs covers the write paths of the
// playbook executor and the findings intake beyond the Store interface
// (playbook runs and steps, cases): each is refused with ErrFenced, and
// writes nothing, once the fencing lease has moved on.
func TestFencedWritesOfTheSingletonJobs(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cases := store.CaseStore(s)
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	const ttl = 10 * time.Second
	old, _, err := s.AcquireLease(ctx, "playbook-executor", "ctl-a", ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	holding := store.WithFence(ctx, store.Fence{Lease: old.Name, Token: old.Token, Clock: func() time.Time { return now }})
	null := []byte("null")
	step := func(status string) *store.PlaybookStep {
		return &store.PlaybookStep{StepID: "a", Status: status, ResolvedJSON: null, OutputsJSON: null, TargetsJSON: null, RollbackJSON: null}
	}
	run := &store.PlaybookRun{ID: "pbr_1", Playbook: "contain", CaseID: "case-1", Status: "running", CreatedAt: now, InputsJSON: []byte("{}")}
	if err := s.CreatePlaybookRun(holding, run, []*store.PlaybookStep{step("pending")}); err != nil {
		t.Fatalf("creating while holding the lease: %v", err)
	}
	if err := cases.CreateCase(holding, &store.Case{ID: "case-1", Title: "t", Status: store.CaseOpen, CreatedAt: now}, nil); err != nil {
		t.Fatalf("creating a case while holding the lease: %v", err)
	}

	// Another controller takes the lease over.
	if _, held, err := s.AcquireLease(ctx, "playbook-executor", "ctl-b", ttl, now.Add(ttl)); err != nil || !held {
		t.Fatalf("takeover %v %v", held, err)
	}
	stale := store.WithFence(ctx, store.Fence{Lease: old.Name, Token: old.Token, Clock: func() time.Time { return now.Add(ttl) }})
	ended := *run
	ended.Status = "succeeded"
	writes := []struct {
		name  string
		write func() error
	}{
		{"create a playbook run", func() error {
			return s.CreatePlaybookRun(stale, &store.PlaybookRun{ID: "pbr_2", CaseID: "case-1", Status: "running", InputsJSON: []byte("{}")}, nil)
		}},
		{"update a playbook run", func() error { return s.UpdatePlaybookRun(stale, &ended) }},
		{"transition a playbook run", func() error { _, err := s.TransitionPlaybookRun(stale, &ended, "running"); return err }},
		{"update a step", func() error { return s.UpdatePlaybookStep(stale, "pbr_1", step("succeeded")) }},
		{"record a case entry", func() error {
			_, err := cases.RecordCaseEntry(stale, &store.CaseEntry{CaseID: "case-1", Key: "k", At: now, Kind: "note"}, nil)
			return err
		}},
		{"link a finding", func() error { return cases.LinkCaseFinding(stale, "dedup", "rule", "pbr_1") }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := w.write(); !errors.Is(err, store.ErrFenced) {
				t.Fatalf("stale write: %v", err)
			}
		})
	}
	got, steps, err := s.GetPlaybookRun(ctx, "pbr_1")
	if err != nil || got.Status != "running" || len(steps) != 1 || steps[0].Status != "pending" {
		t.Fatalf("a refused write changed the playbook run: %+v %+v %v", got, steps, err)
	}
	if _, _, err := s.GetPlaybookRun(ctx, "pbr_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused playbook run was stored: %v", err)
	}
	if tl, err := cases.Timeline(ctx, "case-1"); err != nil || len(tl) != 0 {
		t.Fatalf("a refused case entry was stored: %+v %v", tl, err)
	}
}
