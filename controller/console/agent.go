package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// agentRecentRuns is how many of the newest runs the agent page searches
// for the agent's tasks.
const agentRecentRuns = 50

// agentTask is one task of an agent, with its run.
type agentTask struct {
	Run  *operatorv1.Run
	Task *operatorv1.Task
}

// findAgent returns one agent, revoked or not, through the operator
// service's ListAgents.
func (c *Console) findAgent(ctx context.Context, id string) (*operatorv1.Agent, error) {
	// Security-critical: the id becomes a selector term; a comma or an
	// equals sign would add terms of the caller's choosing.
	if id == "" || strings.ContainsAny(id, ",= \t") {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not an agent id", id)
	}
	resp, err := c.cfg.Operator.ListAgents(ctx, &operatorv1.ListAgentsRequest{Selector: "id=" + id, IncludeRevoked: true})
	if err != nil {
		return nil, err
	}
	for _, a := range resp.GetAgents() {
		if a.GetId() == id {
			return a, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "agent %q not found", id)
}

// agentPage shows one agent: its facts, its plugins, its recent tasks,
// and isolate, unisolate and revoke for the roles that may.
func (c *Console) agentPage(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("ListAgents"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	a, err := c.findAgent(ctx, r.PathValue("id"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	data := map[string]any{"Agent": a}
	if rctx, err := c.authorize(r, method("GetRun")); err == nil {
		tasks, capped, err := c.agentTasks(rctx, a.GetId())
		if err != nil {
			c.serviceError(w, r, err)
			return
		}
		p := paginate(tasks, func(t agentTask) string { return t.Task.GetId() }, nil, r.URL.Query().Get("after"), c.cfg.PageSize)
		p.link(r, "")
		if capped {
			p.Capped = fmt.Sprintf("only tasks of the newest %d runs are listed", agentRecentRuns)
		}
		data["Tasks"] = p
	}
	c.render(w, r, http.StatusOK, "agent", data)
}

// agentTasks returns the agent's tasks in the newest runs, newest run
// first, and whether older runs were not searched.
func (c *Console) agentTasks(ctx context.Context, agentID string) ([]agentTask, bool, error) {
	resp, err := c.cfg.Operator.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: agentRecentRuns})
	if err != nil {
		return nil, false, err
	}
	var out []agentTask
	for _, run := range resp.GetRuns() {
		full, err := c.cfg.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: run.GetId()})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		for _, t := range full.GetRun().GetTasks() {
			if t.GetAgentId() == agentID {
				out = append(out, agentTask{Run: run, Task: t})
			}
		}
	}
	return out, len(resp.GetRuns()) >= agentRecentRuns, nil
}

// isolateAgent starts a host-isolate run on one agent through the
// operator service's CreateRun, as `firebreak isolate --select id=ID`
// does: the same planner, approval threshold and audit record.
func (c *Console) isolateAgent(w http.ResponseWriter, r *http.Request) {
	c.agentRun(w, r, "host-isolate")
}

// unisolateAgent starts a host-unisolate run on one agent.
func (c *Console) unisolateAgent(w http.ResponseWriter, r *http.Request) {
	c.agentRun(w, r, "host-unisolate")
}

// agentRun starts a run of action on the agent of the path and shows the
// run's page.
func (c *Console) agentRun(w http.ResponseWriter, r *http.Request, action string) {
	ctx, err := c.authorize(r, method("CreateRun"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	a, err := c.findAgent(ctx, r.PathValue("id"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.renderError(w, r, http.StatusBadRequest, "give a reason: it is kept with the run and the audit log")
		return
	}
	resp, err := c.cfg.Operator.CreateRun(ctx, &operatorv1.CreateRunRequest{Action: action, Selector: "id=" + a.GetId(), Reason: reason,
		CaseId: strings.TrimSpace(r.PostFormValue("case"))})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(resp.GetRun().GetId()), http.StatusSeeOther)
}

// revokeAgent revokes the agent's certificate through the operator
// service's RevokeAgents (admins), as `firebreak agents revoke` does.
func (c *Console) revokeAgent(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("RevokeAgents"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	id := r.PathValue("id")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.renderError(w, r, http.StatusBadRequest, "give a reason: it is kept in the audit log")
		return
	}
	if _, err := c.cfg.Operator.RevokeAgents(ctx, &operatorv1.RevokeAgentsRequest{Ids: []string{id}, Reason: reason}); err != nil {
		c.serviceError(w, r, err)
		return
	}
	http.Redirect(w, r, "/agents/"+url.PathEscape(id), http.StatusSeeOther)
}
