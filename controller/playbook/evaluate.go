package playbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// StepStatus is how a finished step ended, as expressions see it in
// steps.<id>.status.
type StepStatus string

// The statuses a finished step may have.
const (
	StatusSucceeded StepStatus = "succeeded"
	StatusFailed    StepStatus = "failed"
	StatusSkipped   StepStatus = "skipped"
)

// StepResult is what a finished step left for the steps after it.
type StepResult struct {
	// Status is how the step ended.
	Status StepStatus
	// Outputs is the action's output object (decoded output_json); for a
	// step over several targets the executor decides how outputs merge.
	Outputs map[string]any
}

// Case identifies the incident case a playbook runs for.
type Case struct {
	// ID is the case id.
	ID string
	// Title is the case title.
	Title string
}

// Scope is everything expressions may read while a playbook runs.
type Scope struct {
	// Inputs are the bound inputs, as BindInputs or ParseInputs return them.
	Inputs map[string]any
	// Finding is the finding that started the playbook, as a map; nil when
	// an operator started it without one.
	Finding map[string]any
	// Case is the incident case.
	Case Case
	// Steps holds the results of finished steps, by step id.
	Steps map[string]StepResult
}

// ResolvedStep is a step with every expression evaluated: what the executor
// turns into a run.
type ResolvedStep struct {
	// ID is the step id.
	ID string `json:"id"`
	// Phase is the step's NIST phase.
	Phase Phase `json:"phase"`
	// Action is the action to run: the step's, or its rollback's; for an
	// operation step, "operation:NAME".
	Action string `json:"action"`
	// Operation is the operation an operation step runs on the controller
	// (Operations); its Action is then OperationKey(Operation) and it has
	// no targets.
	Operation string `json:"operation,omitempty"`
	// Destructive is the action's destructive flag from the catalogue.
	Destructive bool `json:"destructive,omitempty"`
	// Selector picks agents, when the step targets agents.
	Selector string `json:"selector,omitempty"`
	// Accounts picks AWS accounts ("all", "ID,ID" or "ou=ou-…"), when the
	// step targets accounts.
	Accounts string `json:"accounts,omitempty"`
	// Regions picks regions for an accounts target: region names, or the
	// single word "all"; nil leaves the choice to the worker.
	Regions []string `json:"regions,omitempty"`
	// Params are the action's parameters, converted to the schema's types:
	// string, int64, bool, duration strings and []string.
	Params map[string]any `json:"params,omitempty"`
	// Skip is true when the step's when condition is false; the other
	// fields but ID, Phase and Action are then unset.
	Skip bool `json:"skip,omitempty"`
	// Timeout is the step's time limit; zero means the run's default.
	Timeout time.Duration `json:"timeout,omitempty"`
	// OnFailure is the failure policy, never empty.
	OnFailure OnFailure `json:"on_failure,omitempty"`
	// ApprovalRequired is true when the step waits for an approver.
	ApprovalRequired bool `json:"approval_required,omitempty"`
	// HasRollback is true when the step can be undone with ResolveRollback.
	HasRollback bool `json:"has_rollback,omitempty"`
}

// ErrNoRollback is returned by ResolveRollback for a step without rollback.
var ErrNoRollback = errors.New("step has no rollback")

// Evaluator resolves the steps of a validated playbook. It is safe for
// concurrent use.
type Evaluator struct {
	c *compiled
}

// NewEvaluator validates the playbook against the catalogue and prepares
// its expressions. It returns Errors when the playbook is not valid.
func NewEvaluator(pb *Playbook, catalog ActionCatalog, opts ...Option) (*Evaluator, error) {
	c, errs := compile(pb, catalog, buildOptions(opts))
	if len(errs) > 0 {
		return nil, Errors(errs)
	}
	return &Evaluator{c: c}, nil
}

// Playbook returns the playbook the evaluator resolves.
func (ev *Evaluator) Playbook() *Playbook { return ev.c.pb }

// Resolve evaluates a step's condition, targets and parameters. Every step
// the step needs must have a result in the scope. A step whose condition is
// false comes back with Skip set and nothing else resolved.
func (ev *Evaluator) Resolve(stepID string, sc Scope) (*ResolvedStep, error) {
	s := ev.c.pb.Step(stepID)
	if s == nil {
		return nil, fmt.Errorf("playbook %s has no step %q", ev.c.pb.Metadata.Name, stepID)
	}
	for _, n := range s.Needs {
		if _, ok := sc.Steps[n]; !ok {
			return nil, fmt.Errorf("step %q needs %q, which has no result yet", s.ID, n)
		}
	}
	r, err := ev.newResolver(&sc, false)
	if err != nil {
		return nil, err
	}
	rs := ev.header(s, s.ActionName())
	rs.Operation = s.Operation
	if s.When != nil {
		ok, _, err := r.when(s.When)
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", s.ID, err)
		}
		if !ok {
			return &ResolvedStep{ID: s.ID, Phase: s.Phase, Action: s.ActionName(), Operation: s.Operation, Skip: true}, nil
		}
	}
	if err := r.targets(s, rs); err != nil {
		return nil, fmt.Errorf("step %q: %w", s.ID, err)
	}
	if rs.Params, err = r.params(s.ActionName(), s.Params); err != nil {
		return nil, fmt.Errorf("step %q: %w", s.ID, err)
	}
	return rs, nil
}

// ResolveRollback resolves the rollback of a step that ran: its action,
// parameters (which may read the step's own outputs) and the step's
// targets. The scope should hold the step's own result.
func (ev *Evaluator) ResolveRollback(stepID string, sc Scope) (*ResolvedStep, error) {
	s := ev.c.pb.Step(stepID)
	if s == nil {
		return nil, fmt.Errorf("playbook %s has no step %q", ev.c.pb.Metadata.Name, stepID)
	}
	if s.Rollback == nil {
		return nil, fmt.Errorf("step %q: %w", s.ID, ErrNoRollback)
	}
	r, err := ev.newResolver(&sc, false)
	if err != nil {
		return nil, err
	}
	rs := ev.header(s, s.Rollback.Action)
	rs.OnFailure, rs.HasRollback, rs.ApprovalRequired = OnFailureStop, false, false
	if err := r.targets(s, rs); err != nil {
		return nil, fmt.Errorf("step %q rollback: %w", s.ID, err)
	}
	if rs.Params, err = r.params(s.Rollback.Action, s.Rollback.Params); err != nil {
		return nil, fmt.Errorf("step %q rollback: %w", s.ID, err)
	}
	return rs, nil
}

func (ev *Evaluator) header(s *Step, action string) *ResolvedStep {
	rs := &ResolvedStep{
		ID: s.ID, Phase: s.Phase, Action: action,
		OnFailure:        s.OnFailure,
		ApprovalRequired: s.Approval == ApprovalRequired,
		HasRollback:      s.Rollback != nil,
	}
	if rs.OnFailure == "" {
		rs.OnFailure = OnFailureStop
	}
	if desc := ev.c.actions[action]; desc != nil {
		rs.Destructive = desc.GetDestructive()
	}
	if s.Timeout != "" {
		rs.Timeout, _ = time.ParseDuration(s.Timeout)
	}
	return rs
}

// resolver evaluates values against one scope. In plan mode, a value that
// needs a result or finding the scope lacks is pending: it keeps its text
// as written and its field is listed instead of failing.
type resolver struct {
	ev      *Evaluator
	sc      *Scope
	act     map[string]any
	plan    bool
	pending bool
}

func (ev *Evaluator) newResolver(sc *Scope, plan bool) (*resolver, error) {
	act := map[string]any{
		"case.id":    sc.Case.ID,
		"case.title": sc.Case.Title,
	}
	if sc.Finding != nil {
		act["finding"] = sc.Finding
	} else {
		act["finding"] = map[string]any{}
	}
	var errs []error
	for _, in := range ev.c.pb.Inputs {
		v, ok := sc.Inputs[in.Name]
		if !ok {
			if in.Default != nil {
				v = literalGo(in.Default)
			} else {
				v = in.Type.zero()
			}
		}
		bound, err := in.Type.convert(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("input %q: %w", in.Name, err))
			continue
		}
		act["inputs."+in.Name] = bound
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for id, res := range sc.Steps {
		outputs := res.Outputs
		if outputs == nil {
			outputs = map[string]any{}
		}
		act["steps."+id+".outputs"] = outputs
		act["steps."+id+".status"] = string(res.Status)
	}
	return &resolver{ev: ev, sc: sc, act: act, plan: plan}, nil
}

// expr evaluates one expression; pending reports, in plan mode, that it
// reads something the scope does not have yet.
func (r *resolver) expr(e *Expr) (any, bool, error) {
	ce := r.ev.c.exprs[e]
	if ce == nil {
		return nil, false, fmt.Errorf("%s: expression was not compiled", e)
	}
	for _, id := range ce.steps {
		if _, ok := r.sc.Steps[id]; !ok {
			if r.plan {
				return nil, true, nil
			}
			return nil, false, r.errorf(e, "step %q has no result yet", id)
		}
	}
	if ce.finding && r.sc.Finding == nil {
		if r.plan {
			return nil, true, nil
		}
		return nil, false, r.errorf(e, "the playbook runs without a finding")
	}
	out, _, err := ce.prg.Eval(r.act)
	if err != nil {
		return nil, false, r.errorf(e, "%v", err)
	}
	v, err := celToGo(out)
	if err != nil {
		return nil, false, r.errorf(e, "%v", err)
	}
	return v, false, nil
}

func (r *resolver) errorf(e *Expr, format string, args ...any) error {
	return Error{File: r.ev.c.pb.File, Pos: e.Pos, Msg: e.String() + ": " + fmt.Sprintf(format, args...)}
}

// safePieceRe is what an interpolated piece of a selector, accounts or
// regions value may hold.
var safePieceRe = regexp.MustCompile(`^[A-Za-z0-9._:/@+-]*$`)

// value evaluates a value. With safe set, interpolated pieces may not hold
// separators, so data from a finding cannot widen a target.
func (r *resolver) value(v *Value, safe bool) (any, bool, error) {
	switch v.Kind {
	case ValueLiteral:
		return v.Literal, false, nil
	case ValueExpr:
		x, pending, err := r.expr(v.Expr)
		if pending {
			return v.Text, true, nil
		}
		return x, false, err
	case ValueTemplate:
		var b strings.Builder
		anyPending := false
		for _, p := range v.Parts {
			if p.Expr == nil {
				b.WriteString(p.Text)
				continue
			}
			x, pending, err := r.expr(p.Expr)
			if err != nil {
				return nil, false, err
			}
			if pending {
				anyPending = true
				continue
			}
			s, err := textOf(x)
			if err != nil {
				return nil, false, r.errorf(p.Expr, "%v", err)
			}
			// Security-critical: a value interpolated into a target must be
			// one term's value. A comma or "=" from a finding or input
			// would add terms and widen the target set.
			if safe && !safePieceRe.MatchString(s) {
				return nil, false, r.errorf(p.Expr, "value %q may hold only letters, digits and . _ : / @ + - inside a target", s)
			}
			b.WriteString(s)
		}
		if anyPending {
			return v.Text, true, nil
		}
		return b.String(), false, nil
	case ValueList:
		out := make([]any, len(v.List))
		anyPending := false
		for i, el := range v.List {
			x, pending, err := r.value(el, safe)
			if err != nil {
				return nil, false, err
			}
			out[i], anyPending = x, anyPending || pending
		}
		return out, anyPending, nil
	case ValueMap:
		out := make(map[string]any, len(v.Map))
		anyPending := false
		for _, p := range v.Map {
			x, pending, err := r.value(p.Value, safe)
			if err != nil {
				return nil, false, err
			}
			out[p.Name], anyPending = x, anyPending || pending
		}
		return out, anyPending, nil
	}
	return nil, false, fmt.Errorf("value of unknown kind")
}

func (r *resolver) when(v *Value) (ok, pending bool, err error) {
	x, pending, err := r.value(v, false)
	if err != nil || pending {
		return false, pending, err
	}
	b, isBool := x.(bool)
	if !isBool {
		return false, false, fmt.Errorf("when: want a boolean, got %s", describeValue(x))
	}
	return b, false, nil
}

// targets resolves a step's targets into rs. Pending values keep their
// text and are not checked.
func (r *resolver) targets(s *Step, rs *ResolvedStep) error {
	t := s.Targets
	if t.Selector != nil {
		x, pending, err := r.value(t.Selector, true)
		if err != nil {
			return err
		}
		sel, ok := x.(string)
		if !ok {
			return fmt.Errorf("targets.selector: want a string, got %s", describeValue(x))
		}
		if !pending {
			if err := r.ev.c.opts.selectorCheck(sel); err != nil {
				return fmt.Errorf("targets.selector: %w", err)
			}
		}
		r.pending = r.pending || pending
		rs.Selector = sel
	}
	if t.Accounts != nil {
		x, pending, err := r.value(t.Accounts, true)
		if err != nil {
			return err
		}
		var acc string
		switch a := x.(type) {
		case string:
			acc = a
		case []any:
			list, err := toStringList(a)
			if err != nil {
				return fmt.Errorf("targets.accounts: %w", err)
			}
			acc = strings.Join(list, ",")
		default:
			return fmt.Errorf("targets.accounts: want a string or a list of account ids, got %s", describeValue(x))
		}
		if !pending {
			if err := CheckAccounts(acc); err != nil {
				return fmt.Errorf("targets.%w", err)
			}
		}
		r.pending = r.pending || pending
		rs.Accounts = acc
	}
	if t.Regions != nil {
		x, pending, err := r.value(t.Regions, true)
		if err != nil {
			return err
		}
		var regions []string
		switch v := x.(type) {
		case string:
			regions = splitList(v)
		case []any:
			if regions, err = toStringList(v); err != nil {
				return fmt.Errorf("targets.regions: %w", err)
			}
		default:
			return fmt.Errorf("targets.regions: want a string or a list of regions, got %s", describeValue(x))
		}
		if !pending {
			if err := CheckRegions(regions); err != nil {
				return fmt.Errorf("targets.%w", err)
			}
		}
		r.pending = r.pending || pending
		rs.Regions = regions
	}
	return nil
}

// params resolves parameters and converts them to the action's schema.
// In plan mode, pending parameters keep their text as written.
func (r *resolver) params(action string, params []*Param) (map[string]any, error) {
	desc := r.ev.c.actions[action]
	out := make(map[string]any, len(params))
	for _, p := range params {
		x, pending, err := r.value(p.Value, false)
		if err != nil {
			return nil, fmt.Errorf("param %q: %w", p.Name, err)
		}
		if pending {
			r.pending = true
			out[p.Name] = x
			continue
		}
		if desc != nil {
			if spec := paramSpec(desc, p.Name); spec != nil {
				if x, err = convertParam(x, spec); err != nil {
					return nil, fmt.Errorf("param %q: %w", p.Name, err)
				}
			}
		}
		out[p.Name] = x
	}
	return out, nil
}

// ParamsJSON encodes resolved parameters as the JSON object a run carries.
func (rs *ResolvedStep) ParamsJSON() ([]byte, error) {
	if rs.Params == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(rs.Params)
}
