package cases_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/controller/cases"
)

// inTrace returns ctx inside a span of the trace with the given id.
func inTrace(t *testing.T, traceID string) context.Context {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.FlagsSampled}))
}

// TestReportListsTraces: timeline entries keep the trace they were written
// in (or the one they name), and the report, in every format, lists each
// trace once with the playbook runs, runs and findings it covers.
func TestReportListsTraces(t *testing.T) {
	const intake, operator = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
	f := newFixture(t)
	ctx := inTrace(t, intake)
	res, err := f.svc.RecordFinding(ctx, gdFinding("f-1", "i-0abc", t0, 8), t0, "intake/https")
	if err != nil {
		t.Fatal(err)
	}
	caseID := res.CaseID
	for _, rec := range []struct {
		ctx context.Context
		e   *cases.Entry
	}{
		{ctx, &cases.Entry{Key: "pbr/pbr-1/created", Kind: cases.KindPlaybook, Status: "started", Actor: "rule:r", PlaybookRunID: "pbr-1",
			Summary: "playbook contain started"}},
		{context.Background(), &cases.Entry{Key: "pbr/pbr-1/step/isolate/started", Kind: cases.KindStep, Status: cases.EntryStarted,
			Actor: "playbook:contain", PlaybookRunID: "pbr-1", StepID: "isolate", RunID: "run-1", TraceID: intake, Summary: "step isolate started"}},
		{inTrace(t, operator), &cases.Entry{Key: "note-1", Kind: cases.KindNote, Actor: "alice", Summary: "checked by hand"}},
		{context.Background(), &cases.Entry{Key: "note-2", Kind: cases.KindNote, Actor: "bob", Summary: "outside any trace"}},
	} {
		rec.e.CaseID = caseID
		if _, err := f.svc.Record(rec.ctx, rec.e); err != nil {
			t.Fatal(err)
		}
	}
	r, err := f.svc.Report(context.Background(), caseID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		got                  *cases.TraceRef
		traceID              string
		playbookRuns, runIDs []string
		entries              int
	}{
		{"the finding's trace", r.Traces[0], intake, []string{"pbr-1"}, []string{"run-1"}, 4},
		{"the operator's trace", r.Traces[1], operator, nil, nil, 1},
	}
	if len(r.Traces) != 2 {
		t.Fatalf("traces %+v, want the finding's and the operator's", r.Traces)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.got
			if g.TraceID != tt.traceID || !slices.Equal(g.PlaybookRunIDs, tt.playbookRuns) || !slices.Equal(g.RunIDs, tt.runIDs) || g.Entries != tt.entries {
				t.Errorf("trace %+v, want %s with playbook runs %v, runs %v and %d entries", g, tt.traceID, tt.playbookRuns, tt.runIDs, tt.entries)
			}
		})
	}
	if !slices.Equal(r.Traces[0].FindingIDs, []string{"f-1"}) {
		t.Errorf("the finding's trace names findings %v, want f-1", r.Traces[0].FindingIDs)
	}
	for _, format := range []cases.Format{cases.FormatMarkdown, cases.FormatHTML, cases.FormatJSON} {
		var b bytes.Buffer
		if err := r.Render(&b, format); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{intake, operator} {
			if !strings.Contains(b.String(), id) {
				t.Errorf("the %s report does not name trace %s", format, id)
			}
		}
		if format == cases.FormatJSON {
			var back struct {
				Traces []cases.TraceRef `json:"traces"`
			}
			if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Traces) != 2 {
				t.Errorf("the JSON report's traces: %+v (%v)", back.Traces, err)
			}
		}
	}
}
