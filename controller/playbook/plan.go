package playbook

import (
	"slices"
	"time"
)

// Plan is a dry run of a playbook: every step in execution order with what
// can be resolved from the inputs, the finding and the case. It is meant to
// be printed as JSON.
type Plan struct {
	// Playbook is the playbook's name.
	Playbook string `json:"playbook"`
	// Version is the playbook's version.
	Version int `json:"version"`
	// Steps are the steps in execution order: layer by layer, file order
	// within a layer.
	Steps []PlannedStep `json:"steps"`
}

// PlannedStep is one step of a Plan. A field whose value depends on
// something not yet known (outputs of earlier steps, or a finding when the
// plan has none) shows its expression text as written and is named in
// Pending.
type PlannedStep struct {
	// ID is the step id.
	ID string `json:"id"`
	// Layer is the step's topological layer, from 0; steps of one layer
	// may run at the same time.
	Layer int `json:"layer"`
	// Phase is the step's NIST phase.
	Phase Phase `json:"phase"`
	// Action is the action the step runs.
	Action string `json:"action"`
	// Destructive is the action's destructive flag.
	Destructive bool `json:"destructive,omitempty"`
	// Needs lists the steps this one waits for.
	Needs []string `json:"needs,omitempty"`
	// When is the condition as written, if any.
	When string `json:"when,omitempty"`
	// Skip is true when the condition is known to be false.
	Skip bool `json:"skip,omitempty"`
	// Selector, Accounts and Regions are the resolved targets.
	Selector string   `json:"selector,omitempty"`
	Accounts string   `json:"accounts,omitempty"`
	Regions  []string `json:"regions,omitempty"`
	// Params are the resolved parameters.
	Params map[string]any `json:"params,omitempty"`
	// ApprovalRequired is true when the step waits for an approver.
	ApprovalRequired bool `json:"approval_required,omitempty"`
	// OnFailure is the failure policy.
	OnFailure OnFailure `json:"on_failure"`
	// Timeout is the step's time limit as written.
	Timeout string `json:"timeout,omitempty"`
	// Rollback is the step's rollback, if it has one.
	Rollback *PlannedRollback `json:"rollback,omitempty"`
	// Pending names the fields not yet resolvable: "when", "targets" or
	// "params.<name>".
	Pending []string `json:"pending,omitempty"`
	// Error says why the step could not be resolved, if it could not.
	Error string `json:"error,omitempty"`
}

// PlannedRollback is the rollback of a planned step.
type PlannedRollback struct {
	// Action is the undoing action.
	Action string `json:"action"`
	// Params are its resolved parameters.
	Params map[string]any `json:"params,omitempty"`
	// Pending names the parameters not yet resolvable.
	Pending []string `json:"pending,omitempty"`
	// Error says why the rollback could not be resolved, if it could not.
	Error string `json:"error,omitempty"`
}

// Plan resolves every step as far as the scope allows, without running
// anything. Steps with a result in the scope's Steps give their outputs to
// later steps, so a plan can also be drawn in the middle of an execution.
func (ev *Evaluator) Plan(sc Scope) *Plan {
	pb := ev.c.pb
	plan := &Plan{Playbook: pb.Metadata.Name, Version: pb.Metadata.Version}
	for layer, steps := range pb.Order() {
		for _, s := range steps {
			plan.Steps = append(plan.Steps, ev.planStep(s, layer, sc))
		}
	}
	return plan
}

func (ev *Evaluator) planStep(s *Step, layer int, sc Scope) PlannedStep {
	ps := PlannedStep{
		ID: s.ID, Layer: layer, Phase: s.Phase, Action: s.ActionName(),
		Needs:            slices.Clone(s.Needs),
		ApprovalRequired: s.Approval == ApprovalRequired,
		OnFailure:        s.OnFailure,
		Timeout:          s.Timeout,
	}
	if ps.OnFailure == "" {
		ps.OnFailure = OnFailureStop
	}
	if desc := ev.c.actions[s.ActionName()]; desc != nil {
		ps.Destructive = desc.GetDestructive()
	}
	if s.Timeout != "" {
		if d, err := time.ParseDuration(s.Timeout); err == nil {
			ps.Timeout = d.String()
		}
	}
	r, err := ev.newResolver(&sc, true)
	if err != nil {
		ps.Error = err.Error()
		return ps
	}
	if s.When != nil {
		ps.When = s.When.Text
		ok, pending, err := r.when(s.When)
		switch {
		case err != nil:
			ps.Error = err.Error()
			return ps
		case pending:
			ps.Pending = append(ps.Pending, "when")
		case !ok:
			ps.Skip = true
		}
	}
	rs := &ResolvedStep{}
	if err := r.targets(s, rs); err != nil {
		ps.Error = err.Error()
		return ps
	}
	if r.pending {
		ps.Pending = append(ps.Pending, "targets")
	}
	ps.Selector, ps.Accounts, ps.Regions = rs.Selector, rs.Accounts, rs.Regions
	ps.Params, ps.Pending, err = planParams(r, s.ActionName(), s.Params, ps.Pending, "params.")
	if err != nil {
		ps.Error = err.Error()
	}
	if rb := s.Rollback; rb != nil {
		pr := &PlannedRollback{Action: rb.Action}
		if pr.Params, pr.Pending, err = planParams(r, rb.Action, rb.Params, nil, ""); err != nil {
			pr.Error = err.Error()
		}
		ps.Rollback = pr
	}
	return ps
}

// planParams resolves parameters one by one so that each pending one is
// named.
func planParams(r *resolver, action string, params []*Param, pending []string, prefix string) (map[string]any, []string, error) {
	out := make(map[string]any, len(params))
	for _, p := range params {
		r.pending = false
		v, err := r.params(action, []*Param{p})
		if err != nil {
			return out, pending, err
		}
		if r.pending {
			pending = append(pending, prefix+p.Name)
		}
		out[p.Name] = v[p.Name]
	}
	return out, pending, nil
}
