package cases_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func fnd(firstSeen, received time.Duration) *cases.FindingRecord {
	f := &finding.Finding{ID: "f", FirstSeen: at(firstSeen)}
	return &cases.FindingRecord{Finding: f, ReceivedAt: at(received)}
}

func step(pbr, id string, phase playbook.Phase, status string, end time.Duration) *cases.Entry {
	return &cases.Entry{Kind: cases.KindStep, PlaybookRunID: pbr, StepID: id, Phase: phase, Status: status, At: at(end)}
}

func withDetail(e *cases.Entry, detail string) *cases.Entry {
	e.Detail = json.RawMessage(detail)
	return e
}

func rollback(pbr, id, status string, end time.Duration) *cases.Entry {
	return &cases.Entry{Kind: cases.KindRollback, PlaybookRunID: pbr, StepID: id, Status: status, At: at(end)}
}

type want struct {
	detect, contain, eradicate, recover time.Duration // -1: not reached
}

func got(t cases.Timings) want {
	w := want{-1, -1, -1, -1}
	if d, ok := t.TimeToDetect(); ok {
		w.detect = d
	}
	if d, ok := t.TimeToContain(); ok {
		w.contain = d
	}
	if d, ok := t.TimeToEradicate(); ok {
		w.eradicate = d
	}
	if d, ok := t.TimeToRecover(); ok {
		w.recover = d
	}
	return w
}

func TestDeriveTimings(t *testing.T) {
	const m = time.Minute
	tests := []struct {
		name     string
		created  time.Duration
		findings []*cases.FindingRecord
		timeline []*cases.Entry
		want     want
	}{
		{
			name:     "detected only",
			findings: []*cases.FindingRecord{fnd(0, 20*m)},
			want:     want{20 * m, -1, -1, -1},
		},
		{
			name:     "earliest first-seen to first receipt",
			findings: []*cases.FindingRecord{fnd(5*m, 30*m), fnd(0, 40*m), fnd(10*m, 25*m)},
			want:     want{25 * m, -1, -1, -1},
		},
		{
			name:     "contain measured from receipt to the last contain step",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "snapshot", playbook.PhaseAnalyze, cases.EntrySucceeded, 11*m),
				step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 12*m),
				step("p", "guest", playbook.PhaseContain, cases.EntrySucceeded, 13*m),
				step("p", "collect", playbook.PhaseAnalyze, cases.EntrySucceeded, 20*m),
			},
			want: want{10 * m, 3 * m, -1, -1},
		},
		{
			name:     "a failed or started contain step does not count",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "isolate", playbook.PhaseContain, cases.EntryStarted, 11*m),
				step("p", "isolate", playbook.PhaseContain, cases.EntryFailed, 12*m),
			},
			want: want{10 * m, -1, -1, -1},
		},
		{
			name:     "a rolled-back step is undone",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 11*m),
				step("p", "block", playbook.PhaseContain, cases.EntrySucceeded, 12*m),
				rollback("p", "block", cases.EntrySucceeded, 14*m),
			},
			want: want{10 * m, 1 * m, -1, -1},
		},
		{
			name:     "a failed rollback leaves the containment in place",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 11*m),
				rollback("p", "isolate", cases.EntryFailed, 14*m),
			},
			want: want{10 * m, 1 * m, -1, -1},
		},
		{
			name:     "the same step id in another playbook run is another step",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p1", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 11*m),
				step("p2", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 15*m),
				rollback("p2", "isolate", cases.EntrySucceeded, 16*m),
			},
			want: want{10 * m, 1 * m, -1, -1},
		},
		{
			name:     "eradicate and recover",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 11*m),
				step("p", "rotate", playbook.PhaseEradicate, cases.EntrySucceeded, 30*m),
				step("p", "restore", playbook.PhaseRecover, cases.EntrySucceeded, 90*m),
			},
			want: want{10 * m, 1 * m, 20 * m, 80 * m},
		},
		{
			// A plan built and run in the eradicate phase proves nothing is
			// left; only the verified eradication the eradication service
			// records (a step entry without an operation) counts.
			name:     "an operation step marks no timing",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 11*m),
				withDetail(step("p", "eradication_plan", playbook.PhaseEradicate, cases.EntrySucceeded, 12*m), `{"action":"operation:eradication-plan"}`),
				withDetail(step("p", "eradicate", playbook.PhaseEradicate, cases.EntrySucceeded, 14*m), `{"action":"operation:eradicate","outputs":{}}`),
				withDetail(step("p", "rotate", playbook.PhaseEradicate, cases.EntrySucceeded, 15*m), `{"action":"aws-iam-contain"}`),
			},
			want: want{10 * m, 1 * m, 5 * m, -1},
		},
		{
			name:     "a verified eradication counts, not the operation steps around it",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{
				withDetail(step("p", "eradicate", playbook.PhaseEradicate, cases.EntrySucceeded, 14*m), `{"action":"operation:eradicate"}`),
				step("", "erp-1", playbook.PhaseEradicate, cases.EntrySucceeded, 17*m),
				withDetail(step("p", "verify", playbook.PhaseEradicate, cases.EntrySucceeded, 18*m), `{"action":"operation:eradication-verify"}`),
			},
			want: want{10 * m, -1, 7 * m, -1},
		},
		{
			name:     "a case opened by hand counts from its opening",
			created:  5 * m,
			timeline: []*cases.Entry{step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 7*m)},
			want:     want{-1, 2 * m, -1, -1},
		},
		{
			name:     "containment before the finding arrived counts as zero",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{step("p", "isolate", playbook.PhaseContain, cases.EntrySucceeded, 8*m)},
			want:     want{10 * m, 0, -1, -1},
		},
		{
			name:     "a finding without first-seen has no time to detect",
			findings: []*cases.FindingRecord{{Finding: &finding.Finding{ID: "x"}, ReceivedAt: at(3 * m)}},
			want:     want{-1, -1, -1, -1},
		},
		{
			name:     "non-step entries are ignored",
			findings: []*cases.FindingRecord{fnd(0, 10*m)},
			timeline: []*cases.Entry{{Kind: cases.KindNote, Phase: playbook.PhaseContain, Status: cases.EntrySucceeded, At: at(11 * m)}},
			want:     want{10 * m, -1, -1, -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g := got(cases.Derive(at(tt.created), tt.findings, tt.timeline)); g != tt.want {
				t.Fatalf("timings %+v, want %+v", g, tt.want)
			}
		})
	}
}
