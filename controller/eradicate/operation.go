package eradicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
)

// AccountLister lists the organisation's accounts (the store).
type AccountLister interface {
	ListAccounts(ctx context.Context) ([]*store.Account, error)
}

// CaseNotes adds notes to a case (the case service).
type CaseNotes interface {
	AddNote(ctx context.Context, caseID, actor, text string) (*cases.Entry, error)
}

// ErrOperation is wrapped by every refusal of an operation's request: a
// parameter out of form, a plan of another case.
var ErrOperation = errors.New("invalid operation")

// defaultOperationDeadline is each run's deadline when the step sets no
// timeout.
const defaultOperationDeadline = 30 * time.Minute

// Operation is one operation step of a playbook run, as the executor asks
// it (playbook.Operations).
type Operation struct {
	// Name is one of playbook's Op… names.
	Name string
	// Params are the step's resolved parameters, of the operation's
	// schema types. They may come from a finding: they are checked here.
	Params map[string]any
	// CaseID is the playbook run's case: every run, plan and record of the
	// operation belongs to it.
	CaseID string
	// Actor is who acts: playbook:NAME.
	Actor string
	// ApprovalRequired is the step's approval gate.
	ApprovalRequired bool
	// Deadline is each run's; zero is 30 minutes.
	Deadline time.Duration
	// Runs creates and follows the operation's runs, as the step's.
	Runs eradflow.Runs
	// Progress, when set, gets a line per run.
	Progress func(string)
}

// backend is eradflow's Backend in the controller: the runs are the
// step's, and the rest is this service's.
type backend struct {
	eradflow.Runs
	s     *Service
	actor string
}

func (b *backend) OrgAccounts(ctx context.Context) ([]string, error) {
	if b.s.cfg.Accounts == nil {
		return nil, nil
	}
	as, err := b.s.cfg.Accounts.ListAccounts(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(as))
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	return ids, nil
}

func (b *backend) AddNote(ctx context.Context, caseID, text string) error {
	if b.s.cfg.Notes == nil {
		return errors.New("eradicate: the service was built without case notes")
	}
	_, err := b.s.cfg.Notes.AddNote(ctx, caseID, b.actor, text)
	return err
}

func (b *backend) RecordVerification(ctx context.Context, planID string, runIDs []string) ([]byte, error) {
	v, err := b.s.RecordVerification(ctx, planID, runIDs, b.actor)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Operate runs one operation step and returns its outputs (what later
// steps read as steps.ID.outputs). It returns the outputs it has with an
// error when the operation ran but did not reach its end: a scope task
// that failed, an account whose eradication did not finish, a verification
// that found an artifact left.
func (s *Service) Operate(ctx context.Context, op Operation) (map[string]any, error) {
	if op.CaseID == "" {
		return nil, fmt.Errorf("%w: operation %s works in a case, and the playbook run has none", ErrOperation, op.Name)
	}
	if op.Runs == nil {
		return nil, errors.New("eradicate: an operation needs its Runs")
	}
	if op.Deadline <= 0 {
		op.Deadline = defaultOperationDeadline
	}
	f := &eradflow.Flow{Backend: &backend{Runs: op.Runs, s: s, actor: op.Actor}, Progress: op.Progress}
	switch op.Name {
	case playbook.OpCredentialScope:
		return s.operateScope(ctx, f, op)
	case playbook.OpEradicationPlan:
		p, err := s.Plan(ctx, op.CaseID, op.Actor, eradplan.Options{TerminateInstances: boolParam(op.Params, "terminate_instances")})
		if err != nil {
			return nil, err
		}
		return map[string]any{"plan_id": p.ID, "steps": len(p.Steps), "accounts": p.Accounts()}, nil
	case playbook.OpEradicate:
		// Security-critical: changing the accounts waits for a second
		// operator. Validation refuses such a step without approval:
		// required; this refuses it should one reach here anyway.
		if !op.ApprovalRequired {
			return nil, fmt.Errorf("%w: operation %s changes the accounts and runs only with approval: required", ErrOperation, op.Name)
		}
		p, err := s.casePlan(ctx, op)
		if err != nil {
			return nil, err
		}
		return operateRun(ctx, f, p, op)
	case playbook.OpEradicationVerify:
		p, err := s.casePlan(ctx, op)
		if err != nil {
			return nil, err
		}
		v, err := f.Verify(ctx, p, op.Deadline)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"plan_id": p.ID, "eradicated": v.Eradicated, "outcomes": v.Outcomes, "live": v.Live, "unverified": v.Unverified,
			"unplanned": v.Unplanned, "problems": v.Problems, "runs": v.Runs, "time_to_eradicate_ms": v.TimeToEradicateMS}
		if !v.Clean() {
			return out, fmt.Errorf("not eradicated: %d artifact(s) live, %d unverified, %d not in the plan, %d problem(s): %s", len(v.Live),
				len(v.Unverified), len(v.Unplanned), len(v.Problems), clip(strings.Join(append(append(v.Problems, v.Live...), v.Unplanned...), "; ")))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown operation %q (operations: %s)", ErrOperation, op.Name, strings.Join(playbook.OperationNames(), ", "))
}

func (s *Service) operateScope(ctx context.Context, f *eradflow.Flow, op Operation) (map[string]any, error) {
	req := eradflow.ScopeRequest{Key: strParam(op.Params, "access_key_id"), Since: strParam(op.Params, "since"), CaseID: op.CaseID,
		Accounts: strParam(op.Params, "accounts"), Regions: listParam(op.Params, "regions"), TrailBucket: strParam(op.Params, "trail_bucket"),
		TrailPrefix: strParam(op.Params, "trail_prefix"), LogArchive: strParam(op.Params, "log_archive"), OrgID: strParam(op.Params, "org_id"),
		Deadline: op.Deadline}
	if req.Since == "" {
		req.Since = "7d"
	}
	// The key may come from a finding: it is checked before any run.
	if err := req.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOperation, err)
	}
	res, err := f.Scope(ctx, req)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"access_key_id": res.Key, "source": res.Source, "runs": res.Runs, "events": res.Events, "accounts": res.Accounts,
		"sessions": max(0, len(res.Sessions)-1), "by_class": res.ByClass, "artifacts": len(res.Artifacts), "has_artifacts": len(res.Artifacts) > 0,
		"failed_targets": res.Failed}
	if len(res.Failed) > 0 {
		return out, fmt.Errorf("%d scope task(s) did not succeed: %s", len(res.Failed), clip(strings.Join(res.Failed, "; ")))
	}
	return out, nil
}

// casePlan reads the plan a step names, which must be of the step's case.
func (s *Service) casePlan(ctx context.Context, op Operation) (*eradplan.Plan, error) {
	id := strParam(op.Params, "plan_id")
	if !strings.HasPrefix(id, "erp-") {
		return nil, fmt.Errorf("%w: plan_id %q is not an eradication plan id (erp-…)", ErrOperation, id)
	}
	p, err := s.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading plan %s: %w", id, err)
	}
	// Security-critical: a playbook acts in its own case only; a plan of
	// another case (a hostile finding or playbook naming it) is refused.
	if p.CaseID != op.CaseID {
		return nil, fmt.Errorf("%w: plan %s belongs to case %s, not to this playbook run's case %s", ErrOperation, p.ID, p.CaseID, op.CaseID)
	}
	return p, nil
}

// operateRun runs the plan dry first, in every account, and then for
// real, each account's run waiting for its approval.
func operateRun(ctx context.Context, f *eradflow.Flow, p *eradplan.Plan, op Operation) (map[string]any, error) {
	dry, err := f.Run(ctx, p, eradflow.RunOptions{DryRun: true, Deadline: op.Deadline})
	if err != nil {
		return nil, err
	}
	out := map[string]any{"plan_id": p.ID, "dry_run": map[string]any{"runs": dry.Runs, "outcomes": dry.Outcomes, "failed_accounts": dry.Failed}}
	if len(dry.Failed) > 0 {
		return out, fmt.Errorf("the dry run did not finish in %d account(s), so nothing was changed: %s", len(dry.Failed), clip(strings.Join(dry.Failed, "; ")))
	}
	ran, err := f.Run(ctx, p, eradflow.RunOptions{ConfirmDeletes: boolParam(op.Params, "confirm_deletes"), Deadline: op.Deadline})
	if err != nil {
		return out, err
	}
	out["runs"], out["outcomes"], out["failed_accounts"] = ran.Runs, ran.Outcomes, ran.Failed
	if len(ran.Failed) > 0 {
		return out, fmt.Errorf("%d account(s) did not finish: %s", len(ran.Failed), clip(strings.Join(ran.Failed, "; ")))
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 1024 {
		return s[:1024] + "…"
	}
	return s
}

func strParam(p map[string]any, name string) string {
	s, _ := p[name].(string)
	return strings.TrimSpace(s)
}

func boolParam(p map[string]any, name string) bool {
	b, _ := p[name].(bool)
	return b
}

func listParam(p map[string]any, name string) []string {
	switch v := p[name].(type) {
	case []string:
		return v
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
