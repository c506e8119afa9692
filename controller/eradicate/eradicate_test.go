package eradicate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// reports is a ScopeReader over fixed reports.
type reports map[string]*cases.Report

func (r reports) Report(_ context.Context, id string) (*cases.Report, error) {
	if rep, ok := r[id]; ok {
		return rep, nil
	}
	return nil, store.ErrNotFound
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), t.TempDir()+"/firebreak.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPlanFromCaseScope(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	scoped := &cases.Report{Scope: &cases.ScopeSection{Artifacts: []trailscope.Artifact{
		{Kind: trailscope.KindUser, Account: "111111111111", Region: "us-east-1", ID: "backdoor", EventID: "e1"},
		{Kind: trailscope.KindTrailLogging, Account: "222222222222", Region: "us-east-1", ID: "member-trail", EventID: "e2"},
	}}}
	st := openStore(t)
	svc, err := New(Config{Cases: reports{"case-1": scoped, "case-empty": {}}, Plans: st, Runs: st, Timeline: &timeline{}, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		caseID  string
		wantErr error
	}{
		{"scoped case", "case-1", nil},
		{"case without scope", "case-empty", ErrNoScope},
		{"unknown case", "case-9", store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := svc.Plan(t.Context(), tt.caseID, "operator:alice", eradplan.Options{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.CaseID != tt.caseID || len(p.Steps) != 2 || p.Steps[0].Action != "quarantine-delete-user" || !p.CreatedAt.Equal(now) {
				t.Fatalf("plan %+v", p)
			}
			got, err := svc.Get(t.Context(), p.ID)
			if err != nil || got.ID != p.ID || len(got.Steps) != 2 || got.Steps[1].Calls[0].Operation != "StartLogging" || got.CreatedBy != "operator:alice" {
				t.Fatalf("stored plan %+v %v", got, err)
			}
			list, err := svc.List(t.Context(), tt.caseID)
			if err != nil || len(list) != 1 || list[0].ID != p.ID || list[0].Steps != 2 {
				t.Fatalf("case plans %+v %v", list, err)
			}
		})
	}
	if _, err := svc.Get(t.Context(), "erp-none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing plan: %v", err)
	}
}

func TestConfigNamesWhatIsMissing(t *testing.T) {
	_, err := New(Config{})
	if err == nil || err.Error() != "eradicate: missing Cases, Plans, Runs, Timeline" {
		t.Fatalf("error %v", err)
	}
}
