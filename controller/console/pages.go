package console

import (
	"net/http"
	"sort"
	"strings"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// overview shows the runs in flight, the approvals waiting and the fleet
// in numbers.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{}
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
