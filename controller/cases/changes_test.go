package cases_test

import (
	"context"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbook"
)

// pending reports whether ch holds a notice now. Notices are sent in the
// write path before it returns, so no waiting is involved.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChangesTellTheWatchersOfTheCaseWritten: each write through the case
// service tells the written case's subscribers, and only theirs; a write
// that changes nothing (an entry already on the timeline) tells no one; an
// ended subscription hears nothing more.
func TestChangesTellTheWatchersOfTheCaseWritten(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, err := f.svc.Create(ctx, cases.NewCase{Title: "case a", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.Create(ctx, cases.NewCase{Title: "case b", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	onA, stopA := f.svc.Changes().Subscribe(a.ID)
	defer stopA()
	onB, stopB := f.svc.Changes().Subscribe(b.ID)
	defer stopB()
	step := &cases.Entry{CaseID: a.ID, Key: "step/contain", Kind: cases.KindStep, Phase: playbook.PhaseContain, Status: "succeeded", Summary: "isolated"}
	tests := []struct {
		name         string
		write        func() error
		wantA, wantB bool
	}{
		{"a note on a", func() error { _, err := f.svc.AddNote(ctx, a.ID, "alice", "looking"); return err }, true, false},
		{"a step on a", func() error { _, err := f.svc.Record(ctx, step); return err }, true, false},
		{"the same step again", func() error {
			dup := *step
			_, err := f.svc.Record(ctx, &dup)
			return err
		}, false, false},
		{"a phase on b", func() error {
			_, err := f.svc.SetPhase(ctx, b.ID, playbook.PhaseEradicate, "alice", "contained")
			return err
		}, false, true},
		{"b closed", func() error { _, err := f.svc.Close(ctx, b.ID, "alice", "done"); return err }, false, true},
		{"a finding on a new case", func() error {
			_, err := f.svc.RecordFinding(ctx, gdFinding("f-1", "i-0abc", t0, 8), t0, "test")
			return err
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); err != nil {
				t.Fatal(err)
			}
			if gotA, gotB := pending(onA), pending(onB); gotA != tt.wantA || gotB != tt.wantB {
				t.Fatalf("notices: a %v, b %v; want a %v, b %v", gotA, gotB, tt.wantA, tt.wantB)
			}
		})
	}

	// A subscriber of the finding's case hears the next finding on it.
	res, err := f.svc.RecordFinding(ctx, gdFinding("f-2", "i-0def", t0, 8), t0, "test")
	if err != nil {
		t.Fatal(err)
	}
	onF, stopF := f.svc.Changes().Subscribe(res.CaseID)
	defer stopF()
	if _, err := f.svc.RecordFinding(ctx, gdFinding("f-2", "i-0def", t0.Add(time.Minute), 9), t0.Add(time.Minute), "test"); err != nil {
		t.Fatal(err)
	}
	if !pending(onF) {
		t.Fatal("an update of the finding on its case told no one")
	}

	// Ended: no more notices.
	stopA()
	stopA() // twice is harmless
	if _, err := f.svc.AddNote(ctx, a.ID, "alice", "after"); err != nil {
		t.Fatal(err)
	}
	if pending(onA) {
		t.Fatal("an ended subscription was told of a change")
	}
}
