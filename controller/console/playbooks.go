package console

import (
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// errNoPlaybooks is the refusal when the controller has no playbook
// service.
var errNoPlaybooks = status.Error(codes.Unavailable, "this controller serves no playbooks")

// playbooks lists the playbooks: built-in and from the playbook
// directory, each with what keeps it from running on this fleet.
func (c *Console) playbookList(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("PlaybookService/ListPlaybooks"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Playbooks == nil {
		c.serviceError(w, r, errNoPlaybooks)
		return
	}
	resp, err := c.cfg.Playbooks.ListPlaybooks(ctx, &operatorv1.ListPlaybooksRequest{})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	p := paginate(resp.GetPlaybooks(), (*operatorv1.PlaybookInfo).GetName, nil, r.URL.Query().Get("after"), c.cfg.PageSize)
	p.link(r, "")
	c.render(w, r, http.StatusOK, "playbooks", map[string]any{"Page": p, "Case": r.URL.Query().Get("case")})
}

// findPlaybook returns the named playbook from ListPlaybooks.
func (c *Console) findPlaybook(r *http.Request) (*operatorv1.PlaybookInfo, error) {
	ctx, err := c.authorize(r, method("PlaybookService/ListPlaybooks"))
	if err != nil {
		return nil, err
	}
	if c.cfg.Playbooks == nil {
		return nil, errNoPlaybooks
	}
	resp, err := c.cfg.Playbooks.ListPlaybooks(ctx, &operatorv1.ListPlaybooksRequest{})
	if err != nil {
		return nil, err
	}
	for _, pb := range resp.GetPlaybooks() {
		if pb.GetName() == r.PathValue("name") {
			return pb, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no playbook %q", r.PathValue("name"))
}

// playbookPage shows one playbook: its inputs, its steps as a table, its
// problems on this fleet, and the form that starts it.
func (c *Console) playbookPage(w http.ResponseWriter, r *http.Request) {
	pb, err := c.findPlaybook(r)
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "playbook", map[string]any{"Playbook": pb, "Case": r.URL.Query().Get("case")})
}

// startPlaybook starts the playbook with the form's inputs through the
// playbook service's StartPlaybookRun, as `firebreak playbook run` does:
// the executor asks for approval of every step that needs it, and the
// run is audited as the operator. The browser goes to the case the run
// works for.
func (c *Console) startPlaybook(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("PlaybookService/StartPlaybookRun"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	pb, err := c.findPlaybook(r)
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.renderError(w, r, http.StatusBadRequest, "give a reason: it is kept with the playbook run and on the case's timeline")
		return
	}
	inputs := map[string]string{}
	for _, in := range pb.GetInputs() {
		if v := strings.TrimSpace(r.PostFormValue("input." + in.GetName())); v != "" {
			inputs[in.GetName()] = v
		}
	}
	resp, err := c.cfg.Playbooks.StartPlaybookRun(ctx, &operatorv1.StartPlaybookRunRequest{Playbook: pb.GetName(), Inputs: inputs,
		CaseId: strings.TrimSpace(r.PostFormValue("case")), Reason: reason})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	http.Redirect(w, r, "/cases/"+url.PathEscape(resp.GetRun().GetCaseId()), http.StatusSeeOther)
}
