// Package readiness scores how ready an organisation is for an incident:
// "if an instance is compromised at 3 a.m., can we contain it, collect from
// it and prove what we did?" It joins the AWS-side checks the aws-readiness
// action ran in each account and region (through run's fan-out) with the
// controller-side checks it runs itself (people, process, PKI, audit,
// agent coverage), and rolls them up into a weighted score out of 100.
//
// Every check is its own function over a snapshot (Inputs), so the same
// state always gives the same report and the same score.
package readiness

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// Status is a check's outcome.
type Status string

// The statuses. Unknown is never counted as ok: a check that could not
// look (an access denied) scores below a warning.
const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"
	StatusFail    Status = "fail"
	StatusUnknown Status = "unknown"
)

// value is what a status contributes to the score, out of 1.
func (s Status) value() float64 {
	switch s {
	case StatusOK:
		return 1
	case StatusWarn:
		return 0.5
	case StatusUnknown:
		return 0.25
	}
	return 0
}

// Check is one check's outcome in one place.
type Check struct {
	// ID names the check, e.g. detection.guardduty.
	ID string `json:"id"`
	// Account and Region say where; both empty for controller checks,
	// Region empty for account-wide ones.
	Account string `json:"account"`
	Region  string `json:"region"`
	Status  Status `json:"status"`
	// Evidence is what the check saw.
	Evidence string `json:"evidence"`
	// Remediation is the exact command, template or console step; empty
	// when the check is ok.
	Remediation string `json:"remediation"`
}

// Report is the scored readiness of the selected accounts and regions.
type Report struct {
	// ID names a stored report; empty when not stored.
	ID string `json:"id,omitempty"`
	// Score is out of 100, weighted by each check's impact.
	Score int `json:"score"`
	// Accounts and Regions are what was checked.
	Accounts []string `json:"accounts"`
	Regions  []string `json:"regions"`
	// Checks are sorted by account, region and id, controller checks
	// first.
	Checks []Check `json:"checks"`
	// GeneratedAt is when the report was made.
	GeneratedAt time.Time `json:"generated_at"`
	// RunID is the aws-readiness run the AWS-side checks came from.
	RunID string `json:"run_id,omitempty"`
	// CreatedBy is who asked: operator:NAME, or controller:readiness for
	// the schedule.
	CreatedBy string `json:"created_by,omitempty"`
}

// Weights are the checks' impact on the score. A check not listed weighs 1.
var Weights = map[string]float64{
	CheckRole:                            10,
	"reach.permissions":                  8,
	CheckDiscovery:                       3,
	"detection.guardduty":                6,
	"detection.findings_export":          5,
	"detection.securityhub":              3,
	"detection.cloudtrail":               6,
	CheckCoverage:                        8,
	CheckStaleAgents:                     2,
	CheckHostIsolation:                   5,
	CheckHostCapability:                  4,
	CheckAgentVersions:                   2,
	CheckPluginManifest:                  4,
	"containment.isolation_group":        8,
	"containment.termination_protection": 4,
	"containment.autoscaling":            2,
	"evidence.bucket":                    8,
	CheckEvidenceBackend:                 6,
	CheckApprovers:                       6,
	CheckAdminCredentials:                4,
	CheckPKI:                             6,
	CheckAuditChain:                      8,
	CheckJoinTokens:                      3,
	CheckPlaybooks:                       5,
	CheckDrills:                          3,
}

// Score weighs the checks: each contributes its weight times its status's
// value (ok 1, warn ½, unknown ¼, fail 0), out of the sum of the weights.
// No checks score 0: nothing was shown to be ready.
func Score(checks []Check) int {
	var got, total float64
	for _, c := range checks {
		w, ok := Weights[c.ID]
		if !ok {
			w = 1
		}
		got += w * c.Status.value()
		total += w
	}
	if total == 0 {
		return 0
	}
	return int(math.Round(100 * got / total))
}

// sortChecks orders checks by account, region and id; controller checks
// (no account) first.
func sortChecks(checks []Check) {
	slices.SortStableFunc(checks, func(x, y Check) int {
		return cmp.Or(strings.Compare(x.Account, y.Account), strings.Compare(x.Region, y.Region), strings.Compare(x.ID, y.ID))
	})
}

// Count returns how many checks have each status.
func (r *Report) Count() map[Status]int {
	out := map[Status]int{}
	for _, c := range r.Checks {
		out[c.Status]++
	}
	return out
}

// JSON is the report in the documented schema (docs/readiness.md).
func (r *Report) JSON() ([]byte, error) { return json.Marshal(r) }
