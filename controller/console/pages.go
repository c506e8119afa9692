package console

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// overview shows the open cases by severity, the runs in flight, the
// approvals waiting, the fleet in numbers and the last drill of each
// scenario. Each card shows only what the operator's role may read.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{}
	if ctx, err := c.authorize(r, method("CaseService/ListCases")); err == nil && c.cfg.Cases != nil {
		resp, err := c.cfg.Cases.ListCases(ctx, &operatorv1.ListCasesRequest{Limit: caseListCap})
		if err != nil {
			c.serviceError(w, r, err)
			return
		}
		data["Cases"] = casesBySeverity(resp.GetCases(), len(resp.GetCases()) >= caseListCap)
	}
	if _, err := c.authorize(r, method("ListReadinessReports")); err == nil {
		// The drills recorded with `lab drill --record`, as readiness
		// reads them (process.drills).
		drills, err := c.cfg.Store.ListDrillResults(r.Context(), time.Time{}, 200)
		if err != nil {
			c.serviceError(w, r, err)
			return
		}
		data["Drills"] = &drillsCard{Last: lastDrills(drills)}
	}
	if ctx, err := c.authorize(r, method("ListRuns")); err == nil {
		resp, err := c.cfg.Operator.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: runListCap})
		if err != nil {
			c.serviceError(w, r, err)
			return
		}
		var inFlight, waiting []*operatorv1.Run
		for _, run := range resp.GetRuns() {
			switch run.GetStatus() {
			case operatorv1.RunStatus_RUN_STATUS_RUNNING:
				inFlight = append(inFlight, run)
			case operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL:
				waiting = append(waiting, run)
			}
		}
		data["InFlight"] = paginate(inFlight, (*operatorv1.Run).GetId, nil, "", c.cfg.PageSize)
		data["Waiting"] = paginate(waiting, (*operatorv1.Run).GetId, nil, "", c.cfg.PageSize)
	}
	if ctx, err := c.authorize(r, method("ListAgents")); err == nil {
		resp, err := c.cfg.Operator.ListAgents(ctx, &operatorv1.ListAgentsRequest{})
		if err != nil {
			c.serviceError(w, r, err)
			return
		}
		var f fleetCounts
		perAccount := map[string]int{}
		for _, a := range resp.GetAgents() {
			f.Total++
			switch {
			case a.GetTerminatedAt() != nil:
				// AWS reports the instance terminated: gone, not offline.
				f.Terminated++
			case a.GetConnected():
				f.Connected++
			default:
				f.Offline++
			}
			if a.GetFacts().GetIsolated() {
				f.Isolated++
			}
			if a.GetRole().String() == "AGENT_ROLE_WORKER" {
				perAccount[a.GetFacts().GetAccount()]++
			}
		}
		f.WorkersPerAccount = perAccount
		data["Fleet"] = f
	}
	c.render(w, r, http.StatusOK, "overview", data)
}

// severityOrder is the order of the overview's case counts, worst first.
var severityOrder = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"}

// caseCounts is the overview's open cases, counted by severity label.
type caseCounts struct {
	Open     int
	Severity []severityCount
	// Capped says the count is of the newest cases only.
	Capped bool
}

type severityCount struct {
	Label string
	N     int
}

// casesBySeverity counts the open cases (ListCases lists only those
// unless asked) by severity label, worst first; a case with no finding
// yet counts as "none".
func casesBySeverity(cases []*operatorv1.Case, capped bool) caseCounts {
	by := map[string]int{}
	for _, cs := range cases {
		if cs.GetStatus() == operatorv1.CaseStatus_CASE_STATUS_CLOSED {
			continue
		}
		label := strings.ToUpper(cs.GetSeverityLabel())
		if !slices.Contains(severityOrder, label) {
			label = "none"
		}
		by[label]++
	}
	out := caseCounts{Capped: capped}
	for _, l := range append(slices.Clone(severityOrder), "none") {
		if by[l] > 0 {
			out.Severity = append(out.Severity, severityCount{Label: l, N: by[l]})
			out.Open += by[l]
		}
	}
	return out
}

// drillsCard is the overview's last drills; Last is empty when none was
// recorded.
type drillsCard struct {
	Last []*store.DrillResult
}

// lastDrills keeps the newest recorded drill of each scenario, by
// scenario name.
func lastDrills(ds []*store.DrillResult) []*store.DrillResult {
	seen := map[string]bool{}
	var out []*store.DrillResult
	for _, d := range ds { // newest first
		if !seen[d.Scenario] {
			seen[d.Scenario] = true
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Scenario < out[j].Scenario })
	return out
}

// fleetCounts is the overview's fleet summary.
type fleetCounts struct {
	Total, Connected, Offline, Isolated int
	// Terminated counts the agents whose instance AWS reports terminated,
	// which are not counted as offline.
	Terminated int
	// WorkersPerAccount counts API workers by the account they run in.
	WorkersPerAccount map[string]int
}

// approvals lists the runs waiting for approval, with who asked, what,
// where, why and when each expires.
func (c *Console) approvals(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("ListRuns"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: runListCap})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	waiting := func(run *operatorv1.Run) bool {
		return run.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
	}
	p := paginate(resp.GetRuns(), (*operatorv1.Run).GetId, waiting, r.URL.Query().Get("after"), c.cfg.PageSize)
	p.link(r, "")
	if len(resp.GetRuns()) >= runListCap {
		p.Capped = "only approvals among the newest 1000 runs are listed"
	}
	rows := make([]approvalRow, 0, len(p.Rows))
	for _, run := range p.Rows {
		row := approvalRow{Run: run}
		if full, err := c.cfg.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: run.GetId()}); err == nil {
			seen := map[string]bool{}
			for _, t := range full.GetRun().GetTasks() {
				row.Targets++
				if a := t.GetAccount(); a != "" && !seen[a] {
					seen[a] = true
					row.Accounts = append(row.Accounts, a)
				}
				if len(row.Hosts) < 5 {
					row.Hosts = append(row.Hosts, t.GetHostname())
				}
			}
			sort.Strings(row.Accounts)
		}
		rows = append(rows, row)
	}
	c.render(w, r, http.StatusOK, "approvals", map[string]any{"Page": p, "Rows": rows})
}

// approvalRow is one run waiting for approval, with what it targets.
type approvalRow struct {
	Run *operatorv1.Run
	// Targets is the number of targets, Hosts the first few of them.
	Targets int
	Hosts   []string
	// Accounts are the AWS accounts the run acts in.
	Accounts []string
}

// agentList lists the fleet, searchable by hostname, label, account and
// instance id, paged.
func (c *Console) agentList(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("ListAgents"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.ListAgents(ctx, &operatorv1.ListAgentsRequest{})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	keep := func(a *operatorv1.Agent) bool {
		if q == "" {
			return true
		}
		f := a.GetFacts()
		for _, s := range []string{a.GetId(), f.GetHostname(), f.GetAccount(), f.GetInstanceId(), f.GetRegion()} {
			if strings.Contains(strings.ToLower(s), q) {
				return true
			}
		}
		for k, v := range f.GetLabels() {
			if strings.Contains(strings.ToLower(k+"="+v), q) {
				return true
			}
		}
		return false
	}
	p := paginate(resp.GetAgents(), (*operatorv1.Agent).GetId, keep, r.URL.Query().Get("after"), c.cfg.PageSize)
	p.Filtered = q != ""
	p.link(r, "")
	c.render(w, r, http.StatusOK, "agents", map[string]any{"Page": p, "Q": q})
}
