package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

func openCaseTables(t *testing.T, b backend) store.CaseStore {
	return b.openFresh(t)
}

// TestCaseEntries: an entry is recorded once per key, the hook moves the
// case's phase in the same transaction, and a missing case is ErrNotFound.
func TestCaseEntries(t *testing.T) { eachBackend(t, testCaseEntries) }

func testCaseEntries(t *testing.T, b backend) {
	ctx := context.Background()
	ct := openCaseTables(t, b)
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	if err := ct.CreateCase(ctx, &store.Case{ID: "case-1", Title: "t", Status: store.CaseOpen, Phase: "detect", CreatedAt: t0},
		[]*store.CaseEntry{{Key: "case/opened", At: t0, Kind: "case"}}); err != nil {
		t.Fatal(err)
	}
	toContain := func(c *store.Case, e *store.CaseEntry) *store.CaseEntry {
		if e.Phase == "contain" && c.Phase != "contain" {
			return &store.CaseEntry{Key: "phase/auto/contain", At: e.At, Kind: "phase", Phase: "contain"}
		}
		return nil
	}
	tests := []struct {
		name      string
		entry     *store.CaseEntry
		wantAdded bool
		wantErr   error
		wantPhase string
	}{
		{"a new entry", &store.CaseEntry{CaseID: "case-1", Key: "note-1", At: t0, Kind: "note"}, true, nil, "detect"},
		{"the same key again", &store.CaseEntry{CaseID: "case-1", Key: "note-1", At: t0, Kind: "note"}, false, nil, "detect"},
		{"a step that moves the phase", &store.CaseEntry{CaseID: "case-1", Key: "step-1", At: t0, Kind: "step", Phase: "contain",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}, true, nil, "contain"},
		{"no such case", &store.CaseEntry{CaseID: "case-9", Key: "x", At: t0, Kind: "note"}, false, store.ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, err := ct.RecordCaseEntry(ctx, tt.entry, toContain)
			if added != tt.wantAdded || !errors.Is(err, tt.wantErr) {
				t.Fatalf("added %v err %v; want %v %v", added, err, tt.wantAdded, tt.wantErr)
			}
			if tt.wantPhase == "" {
				return
			}
			c, err := ct.GetCase(ctx, "case-1")
			if err != nil || c.Phase != tt.wantPhase {
				t.Fatalf("case phase %v (%v), want %s", c, err, tt.wantPhase)
			}
		})
	}
	tl, err := ct.Timeline(ctx, "case-1")
	if err != nil || len(tl) != 4 || tl[3].Key != "phase/auto/contain" || tl[3].Seq != 4 {
		t.Fatalf("timeline %d entries (%v); want opened, note, step and the phase entry last", len(tl), err)
	}
	steps, err := ct.Timeline(ctx, "case-1", "step")
	if err != nil || len(steps) != 1 || steps[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("step entries %d (%v), want 1 with its trace id", len(steps), err)
	}
	if err := ct.CloseCase(ctx, "case-1", "post-incident", "alice", t0, &store.CaseEntry{CaseID: "case-1", Key: "case/closed", Kind: "case"}); err != nil {
		t.Fatal(err)
	}
	if err := ct.CloseCase(ctx, "case-1", "post-incident", "alice", t0, &store.CaseEntry{CaseID: "case-1", Key: "case/closed2", Kind: "case"}); !errors.Is(err, store.ErrCaseClosed) {
		t.Fatalf("closing twice: %v, want ErrCaseClosed", err)
	}
}

// TestCaseFindings: a finding opens a case, a second one about the same
// resource joins it and raises its severity, and a version seen before is
// a duplicate.
func TestCaseFindings(t *testing.T) { eachBackend(t, testCaseFindings) }

func testCaseFindings(t *testing.T, b backend) {
	ctx := context.Background()
	ct := openCaseTables(t, b)
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	nf := func(dedup, caseID string, sev float64) *store.NewCaseFinding {
		return &store.NewCaseFinding{
			Finding:      store.CaseFinding{DedupKey: dedup, FindingID: dedup, Resource: "instance/1/i-1", ReceivedAt: t0, Via: "test", FindingJSON: []byte(`{}`)},
			Severity:     sev,
			Case:         &store.Case{ID: caseID, Title: "t", Status: store.CaseOpen, Phase: "detect", Severity: sev, Resource: "instance/1/i-1", CreatedAt: t0},
			OpenedEntry:  &store.CaseEntry{Key: "case/opened", At: t0, Kind: "case"},
			FindingEntry: &store.CaseEntry{Key: "finding/" + dedup, At: t0, Kind: "finding"},
		}
	}
	tests := []struct {
		name string
		in   *store.NewCaseFinding
		want store.CaseFindingResult
	}{
		{"opens a case", nf("f1", "case-a", 5), store.CaseFindingResult{CaseID: "case-a", CaseCreated: true}},
		{"joins the open case", nf("f2", "case-b", 8), store.CaseFindingResult{CaseID: "case-a"}},
		{"a duplicate", nf("f1", "case-c", 5), store.CaseFindingResult{CaseID: "case-a", Duplicate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ct.RecordCaseFinding(ctx, tt.in)
			if err != nil || *got != tt.want {
				t.Fatalf("got %+v (%v), want %+v", got, err, tt.want)
			}
		})
	}
	c, err := ct.GetCase(ctx, "case-a")
	if err != nil || c.Severity != 8 {
		t.Fatalf("case severity %v (%v), want 8", c, err)
	}
	fs, err := ct.CaseFindings(ctx, "case-a")
	if err != nil || len(fs) != 2 {
		t.Fatalf("findings %d (%v), want 2", len(fs), err)
	}
}
