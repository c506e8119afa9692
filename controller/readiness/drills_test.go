package readiness

import (
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestCheckDrills wants a passed drill of each scenario within 30 days,
// with its score; a recent failure with no pass since fails, and a stale
// or missing drill warns.
func TestCheckDrills(t *testing.T) {
	drill := func(scenario string, daysAgo int, contained bool, score int) *store.DrillResult {
		return &store.DrillResult{ID: scenario, Scenario: scenario, Playbook: DrillScenarios[scenario], Contained: contained, Score: score,
			RecordedAt: now.Add(-time.Duration(daysAgo) * 24 * time.Hour), RecordedBy: "operator:alice"}
	}
	all := func(daysAgo int) []*store.DrillResult {
		return []*store.DrillResult{drill("ec2-compromise", daysAgo, true, 90), drill("leaked-key-orgwide", daysAgo, true, 80),
			drill("leaked-key-persistence", daysAgo, true, 100), drill("public-bucket", daysAgo, true, 100)}
	}
	for _, tt := range []struct {
		name   string
		drills []*store.DrillResult // newest first
		want   want
	}{
		{"every scenario passed this month", all(3),
			want{StatusOK, "ec2-compromise: passed 2026-12-04 (3 days ago), score 90/100, playbook ec2-instance-compromise, recorded by operator:alice", ""}},
		{"never drilled", []*store.DrillResult{}, want{StatusWarn, "never drilled: ec2-compromise, leaked-key-orgwide, leaked-key-persistence, public-bucket", "firebreak lab drill SCENARIO --record"}},
		{"one scenario last passed 45 days ago", append(all(2)[:3], drill("public-bucket", 45, true, 70)),
			want{StatusWarn, "no pass within 30 days: public-bucket: last passed 2026-10-23 (45 days ago), score 70/100", "every 30 days"}},
		{"a recent failure with no pass since", append([]*store.DrillResult{drill("ec2-compromise", 1, false, 0)}, all(40)...),
			want{StatusFail, "ec2-compromise: NOT contained 2026-12-06 (1 days ago), score 0/100", "--report"}},
		{"a pass after a failure", append([]*store.DrillResult{drill("ec2-compromise", 1, true, 85), drill("ec2-compromise", 2, false, 0)}, all(5)[1:]...),
			want{StatusOK, "ec2-compromise: passed 2026-12-06 (1 days ago), score 85/100", ""}},
		{"an unknown scenario counts for nothing", []*store.DrillResult{{Scenario: "made-up", Contained: true, Score: 100, RecordedAt: now}},
			want{StatusWarn, "never drilled: ec2-compromise, leaked-key-orgwide, leaked-key-persistence, public-bucket", "--record"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := checkDrills(tt.drills, now)
			tt.want.check(t, c)
			if !strings.Contains(c.Evidence, "operators recorded") {
				t.Fatalf("evidence %q does not say where the drills come from", c.Evidence)
			}
		})
	}
	simulated := drill("ec2-compromise", 1, true, 90)
	simulated.SimulatedHosts = true
	if c := checkDrills([]*store.DrillResult{simulated}, now); !strings.Contains(c.Evidence, "score 90/100, playbook ec2-instance-compromise, recorded by operator:alice, simulated hosts") {
		t.Fatalf("a drill on simulated hosts does not say so: %q", c.Evidence)
	}
	// Build leaves the check out without drills read, and reports it with
	// an empty record.
	for _, c := range Build(Inputs{Now: now}).Checks {
		if c.ID == CheckDrills {
			t.Fatalf("drill check without drills read: %+v", c)
		}
	}
	found := false
	for _, c := range Build(Inputs{Now: now, Drills: []*store.DrillResult{}}).Checks {
		found = found || (c.ID == CheckDrills && c.Status == StatusWarn)
	}
	if !found {
		t.Fatal("no drill check with an empty record")
	}
}
