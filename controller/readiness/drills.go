package readiness

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// CheckDrills is the id of the drill recency check.
const CheckDrills = "process.drills"

// DrillScenarios are the game-day scenarios of `firebreak lab drill`, each
// with the built-in playbook it rehearses. The lab's tests keep this list
// equal to the lab's own.
var DrillScenarios = map[string]string{
	"ec2-compromise":         "ec2-instance-compromise",
	"leaked-key-orgwide":     "iam-credential-compromise",
	"leaked-key-persistence": "iam-credential-compromise",
	"public-bucket":          "s3-public-exposure",
}

// DrillWindow is how recent a passed drill of each scenario must be.
const DrillWindow = 30 * 24 * time.Hour

// DrillLookback is how far back a review reads recorded drills, to say
// when a scenario last passed before the window.
const DrillLookback = 365 * 24 * time.Hour

// checkDrills wants a passed (contained) drill of each scenario within the
// last 30 days, and quotes its score. A scenario whose drills in the
// window all failed fails: the rehearsal showed the response does not
// contain. One never drilled, or passed only before the window, warns. The
// records are what operators recorded from `lab drill --record`, and the
// evidence says so. drills are newest first.
func checkDrills(drills []*store.DrillResult, now time.Time) Check {
	c := Check{ID: CheckDrills, Status: StatusOK}
	var passed, failed, stale, never []string
	for _, sc := range sortedKeys(DrillScenarios) {
		var lastPass, lastFail *store.DrillResult
		for _, d := range drills {
			if d.Scenario != sc {
				continue
			}
			if d.Contained && lastPass == nil {
				lastPass = d
			}
			if !d.Contained && lastFail == nil {
				lastFail = d
			}
		}
		recent := func(d *store.DrillResult) bool { return d != nil && now.Sub(d.RecordedAt) <= DrillWindow }
		switch {
		case recent(lastPass):
			passed = append(passed, sc+": passed "+drillLine(lastPass, now))
		case recent(lastFail):
			failed = append(failed, sc+": NOT contained "+drillLine(lastFail, now))
		case lastPass != nil:
			stale = append(stale, sc+": last passed "+drillLine(lastPass, now))
		default:
			never = append(never, sc)
		}
	}
	var parts []string
	if len(failed) > 0 {
		parts = append(parts, "drills that did not contain, with no pass since: "+strings.Join(failed, "; "))
	}
	if len(stale) > 0 {
		parts = append(parts, "no pass within 30 days: "+strings.Join(stale, "; "))
	}
	if len(never) > 0 {
		parts = append(parts, "never drilled: "+strings.Join(never, ", "))
	}
	if len(passed) > 0 {
		parts = append(parts, "passed within 30 days: "+strings.Join(passed, "; "))
	}
	const basis = "drills operators recorded with firebreak lab drill --record"
	c.Evidence = strings.Join(parts, "; ") + " (" + basis + ")"
	switch {
	case len(failed) > 0:
		c.Status = StatusFail
		c.Remediation = "read the failed drill's checks (firebreak lab drill SCENARIO --report), fix the playbook or the fleet, and drill again with --record"
	case len(stale) > 0 || len(never) > 0:
		c.Status = StatusWarn
		c.Remediation = "rehearse each scenario at least every 30 days: firebreak lab drill SCENARIO --record (as root, so in-guest isolation is exercised)"
	}
	return c
}

// drillLine describes one recorded drill.
func drillLine(d *store.DrillResult, now time.Time) string {
	s := fmt.Sprintf("%s (%d days ago), score %d/100, playbook %s, recorded by %s", d.RecordedAt.UTC().Format("2006-01-02"),
		int(now.Sub(d.RecordedAt).Hours()/24), d.Score, d.Playbook, d.RecordedBy)
	if d.SimulatedHosts {
		s += ", simulated hosts"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
