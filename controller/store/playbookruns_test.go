package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestPlaybookRuns round-trips playbook runs and their steps through the
// store, and checks that a transition happens only from the expected
// status, so two approvers cannot both win.
func TestPlaybookRuns(t *testing.T) { eachBackend(t, testPlaybookRuns) }

func testPlaybookRuns(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openFresh(t)
	var db store.PlaybookRuns = s
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	mk := func(id, caseID, status string, at time.Duration) *store.PlaybookRun {
		return &store.PlaybookRun{ID: id, Playbook: "contain", Version: 2, CaseID: caseID, Status: status, CreatedBy: "alice",
			CreatedAt: now.Add(at), InputsJSON: []byte(`{"host":"web-1"}`), Source: []byte("kind: Playbook"), SourceName: "contain.yaml"}
	}
	withFinding := mk("pbr_1", "case-1", "running", 0)
	withFinding.FindingJSON = []byte(`{"id":"f1"}`)
	withFinding.Traceparent, withFinding.Tracestate = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x"
	steps := []*store.PlaybookStep{{StepID: "a", Status: "pending", ResolvedJSON: []byte("null"), OutputsJSON: []byte("null"),
		TargetsJSON: []byte("null"), RollbackJSON: []byte("null")}, {StepID: "b", Status: "pending", ResolvedJSON: []byte("null"),
		OutputsJSON: []byte("null"), TargetsJSON: []byte("null"), RollbackJSON: []byte("null")}}
	for _, r := range []*store.PlaybookRun{withFinding, mk("pbr_2", "case-1", "awaiting_approval", time.Second), mk("pbr_3", "case-2", "succeeded", 2*time.Second)} {
		st := steps
		if r.ID != "pbr_1" {
			st = nil
		}
		if err := db.CreatePlaybookRun(ctx, r, st); err != nil {
			t.Fatal(err)
		}
	}
	st := &store.PlaybookStep{StepID: "a", Status: "running", Token: "pbrun:pbr_1:a", RunID: "run_1", ResolvedJSON: []byte(`{"action":"x"}`),
		OutputsJSON: []byte(`{"ok":true}`), TargetsJSON: []byte(`[]`), RollbackJSON: []byte("null"), StartedAt: now, DoneSeq: 1}
	if err := db.UpdatePlaybookStep(ctx, "pbr_1", st); err != nil {
		t.Fatal(err)
	}
	got, gotSteps, err := db.GetPlaybookRun(ctx, "pbr_1")
	if err != nil || got.Version != 2 || string(got.FindingJSON) != `{"id":"f1"}` || string(got.InputsJSON) != `{"host":"web-1"}` ||
		string(got.Source) != "kind: Playbook" || !got.CreatedAt.Equal(now) || len(gotSteps) != 2 ||
		got.Traceparent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || got.Tracestate != "vendor=x" {
		t.Fatalf("playbook run %+v, %d steps (%v)", got, len(gotSteps), err)
	}
	for _, g := range gotSteps {
		if g.StepID == "a" && (g.Token != "pbrun:pbr_1:a" || g.RunID != "run_1" || string(g.OutputsJSON) != `{"ok":true}` || g.DoneSeq != 1 ||
			!g.StartedAt.Equal(now)) {
			t.Fatalf("step a %+v", g)
		}
	}
	if _, _, err := db.GetPlaybookRun(ctx, "pbr_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing playbook run: %v", err)
	}
	if r, _, _ := db.GetPlaybookRun(ctx, "pbr_2"); r.FindingJSON != nil {
		t.Fatalf("a run without a finding reads back with %q", r.FindingJSON)
	}

	lists := []struct {
		name   string
		filter store.PlaybookRunFilter
		want   []string
	}{
		{"all, newest first", store.PlaybookRunFilter{Limit: 10}, []string{"pbr_3", "pbr_2", "pbr_1"}},
		{"one case", store.PlaybookRunFilter{CaseID: "case-1", Limit: 10}, []string{"pbr_2", "pbr_1"}},
		{"active", store.PlaybookRunFilter{Statuses: []string{"awaiting_approval", "running"}, Limit: 10}, []string{"pbr_2", "pbr_1"}},
		{"limited", store.PlaybookRunFilter{Limit: 1}, []string{"pbr_3"}},
	}
	for _, tt := range lists {
		rs, err := db.ListPlaybookRuns(ctx, tt.filter)
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if err != nil || len(ids) != len(tt.want) || (len(ids) > 0 && ids[0] != tt.want[0]) {
			t.Errorf("%s: %v (%v), want %v", tt.name, ids, err, tt.want)
		}
	}
	if ids, err := db.PlaybookRunIDs(ctx, "running"); err != nil || len(ids) != 1 || ids[0] != "pbr_1" {
		t.Fatalf("running: %v %v", ids, err)
	}

	approve := mk("pbr_2", "case-1", "running", time.Second)
	approve.ApprovedBy = "bob"
	transitions := []struct {
		name string
		from string
		want bool
	}{
		{"from the status it has", "awaiting_approval", true},
		{"again, from the status it had", "awaiting_approval", false},
	}
	for _, tt := range transitions {
		ok, err := db.TransitionPlaybookRun(ctx, approve, tt.from)
		if err != nil || ok != tt.want {
			t.Fatalf("%s: %v %v, want %v", tt.name, ok, err, tt.want)
		}
	}
	if r, _, _ := db.GetPlaybookRun(ctx, "pbr_2"); r.Status != "running" || r.ApprovedBy != "bob" {
		t.Fatalf("after the transition: %+v", r)
	}
	done := mk("pbr_1", "case-1", "succeeded", 0)
	done.FinishedAt, done.Stopping = now.Add(time.Minute), "stop"
	if err := db.UpdatePlaybookRun(ctx, done); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := db.GetPlaybookRun(ctx, "pbr_1"); r.Status != "succeeded" || r.Stopping != "stop" || !r.FinishedAt.Equal(done.FinishedAt) {
		t.Fatalf("after the update: %+v", r)
	}
}
