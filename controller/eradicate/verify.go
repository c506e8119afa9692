package eradicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Action is the action that executes and verifies a plan's steps.
const Action = "aws-eradicate"

// ErrNotVerification is returned when the runs given do not verify the plan:
// not its verify runs, unfinished, or an account of the plan not covered.
var ErrNotVerification = errors.New("the runs do not verify the plan")

// RunReader reads runs and their tasks from the controller's store.
type RunReader interface {
	// GetRun returns a run and its tasks, or store.ErrNotFound.
	GetRun(ctx context.Context, id string) (*store.Run, []*store.Task, error)
}

// CaseTimeline records a case's eradication and reads back its timings.
type CaseTimeline interface {
	// Record adds an entry unless one with its key exists.
	Record(ctx context.Context, e *cases.Entry) (bool, error)
	// Get returns the case with its timings.
	Get(ctx context.Context, id string) (*cases.Case, error)
}

// VerifiedStep is one step's state after eradication, as its account's
// verify run read it.
type VerifiedStep = eradflow.VerifiedStep

// Verification is the controller's verdict on a plan's verify runs.
type Verification = eradflow.Verification

// verifyOutput is the part of an aws-eradicate verify result the verdict
// reads.
type verifyOutput struct {
	PlanID string `json:"plan_id"`
	Verify bool   `json:"verify"`
	Steps  []struct {
		ID      string `json:"id"`
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
	} `json:"steps"`
}

// verifyParams is the part of an aws-eradicate run's parameters the
// verdict checks.
type verifyParams struct {
	PlanID string `json:"plan_id"`
	Steps  string `json:"steps"`
	Verify bool   `json:"verify"`
}

// RecordVerification judges the plan's verify runs and, when no artifact is
// live in any account of the plan, each of the plan's keys was scoped again
// since the plan and its last eradication run (notRescoped), and the case's
// scope holds no artifact the plan lacks, records the case's eradication: a
// succeeded step of the eradicate phase at the end of the last verify task,
// which moves the case to the eradicate phase and sets its time to
// eradicate. It returns the verdict either way; ErrNotVerification when the
// runs cannot be judged.
//
// The controller reads the runs from its own store. It accepts only runs of
// this plan's case, of aws-eradicate with verify, carrying exactly the
// plan's steps for the account each task ran in (a task's account is the
// controller's record of its target, not what the worker says); the
// outcomes themselves are the workers' reads of AWS.
func (s *Service) RecordVerification(ctx context.Context, planID string, runIDs []string, actor string) (*Verification, error) {
	p, err := s.Get(ctx, planID)
	if err != nil {
		return nil, err
	}
	v := &Verification{PlanID: p.ID, CaseID: p.CaseID, Runs: runIDs, Steps: []VerifiedStep{}, Outcomes: map[string]int{},
		Live: []string{}, Unverified: []string{}, Problems: []string{}, Unplanned: []string{}}
	// The case's scope as it stands now (the re-scope `eradicate verify`
	// runs first adds to it): every artifact must have its step in the
	// plan.
	r, err := s.cfg.Cases.Report(ctx, p.CaseID)
	if err != nil {
		return nil, fmt.Errorf("reading case %s: %w", p.CaseID, err)
	}
	if r.Scope != nil {
		v.Unplanned = unplanned(p, r.Scope.Artifacts)
	}
	// Security-critical: the scope must have been read again since the
	// plan and its eradication, or an artifact made since goes unseen.
	v.Problems = append(v.Problems, notRescoped(p, r)...)
	verified := map[string]bool{}
	var last time.Time
	for _, id := range runIDs {
		r, tasks, err := s.cfg.Runs.GetRun(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading run %s: %w", id, err)
		}
		// Security-critical: only this plan's verify runs count; a run of
		// another action, case or plan, or one that changes things, is
		// refused rather than read.
		var rp verifyParams
		if r.Action != Action || r.CaseID != p.CaseID || json.Unmarshal(r.ParamsJSON, &rp) != nil || rp.PlanID != p.ID || !rp.Verify {
			return nil, fmt.Errorf("run %s: %w: it is not an %s verify run of plan %s in case %s", id, ErrNotVerification, Action, p.ID, p.CaseID)
		}
		if r.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING || r.Status == operatorv1.RunStatus_RUN_STATUS_UNSPECIFIED ||
			r.Status == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
			return nil, fmt.Errorf("run %s: %w: it has not finished", id, ErrNotVerification)
		}
		for _, t := range tasks {
			if verified[t.Account] {
				continue
			}
			if problem := s.judgeTask(p, id, rp, t, v); problem != "" {
				v.Problems = append(v.Problems, problem)
				continue
			}
			verified[t.Account] = true
			if t.FinishedAt.After(last) {
				last = t.FinishedAt
			}
		}
	}
	for _, a := range p.Accounts() {
		if !verified[a] {
			v.Problems = append(v.Problems, "account "+a+": no verify run read it")
		}
	}
	for _, st := range v.Steps {
		v.Outcomes[st.Outcome]++
		line := st.Account + " " + st.ID + " " + st.Kind + " " + st.Resource + ": " + st.Reason
		switch {
		case st.Outcome == eradplan.VerifyLive:
			v.Live = append(v.Live, line)
		case st.Outcome == eradplan.VerifyUnverified && !st.Manual:
			v.Unverified = append(v.Unverified, line)
		}
	}
	v.Eradicated = len(v.Problems) == 0 && len(v.Live) == 0 && len(v.Unverified) == 0 && len(v.Unplanned) == 0
	if !v.Eradicated {
		s.cfg.Logger.InfoContext(ctx, "eradication not verified", "plan", p.ID, "case", p.CaseID, "live", len(v.Live),
			"unverified", len(v.Unverified), "problems", len(v.Problems), "unplanned", len(v.Unplanned))
		return v, nil
	}
	if last.IsZero() {
		last = s.cfg.Clock()
	}
	if _, err := s.cfg.Timeline.Record(ctx, &cases.Entry{CaseID: p.CaseID, Key: "eradicated-" + p.ID, At: last, Kind: cases.KindStep,
		Phase: playbook.PhaseEradicate, Status: cases.EntrySucceeded, Actor: actor, StepID: p.ID,
		Summary: fmt.Sprintf("eradication verified: plan %s, %d step(s) in %d account(s), no live artifact (runs %s)", p.ID, len(p.Steps),
			len(p.Accounts()), strings.Join(runIDs, ", "))}); err != nil {
		return nil, fmt.Errorf("recording the eradication on case %s: %w", p.CaseID, err)
	}
	c, err := s.cfg.Timeline.Get(ctx, p.CaseID)
	if err != nil {
		return nil, fmt.Errorf("reading case %s: %w", p.CaseID, err)
	}
	if at := c.Timings.EradicatedAt; !at.IsZero() {
		v.EradicatedAt = &at
		if d, ok := c.Timings.TimeToEradicate(); ok {
			v.TimeToEradicateMS = d.Milliseconds()
		}
	}
	s.cfg.Logger.InfoContext(ctx, "eradication verified", "plan", p.ID, "case", p.CaseID, "by", actor)
	return v, nil
}

// judgeTask reads one verify task into v, or says why it cannot be read.
func (s *Service) judgeTask(p *eradplan.Plan, runID string, rp verifyParams, t *store.Task, v *Verification) string {
	want := p.StepsIn(t.Account)
	if len(want) == 0 {
		return fmt.Sprintf("run %s: task %s ran in account %s, which has no step in the plan", runID, t.ID, t.Account)
	}
	// Security-critical: the run must have carried exactly the plan's
	// steps for the account its task ran in.
	planned, err := json.Marshal(want)
	if err != nil {
		return err.Error()
	}
	var given []eradplan.Step
	if json.Unmarshal([]byte(rp.Steps), &given) != nil {
		return fmt.Sprintf("run %s: its steps are unreadable", runID)
	}
	if again, err := json.Marshal(given); err != nil || !bytes.Equal(again, planned) {
		return fmt.Sprintf("run %s: its steps are not plan %s's steps for account %s", runID, p.ID, t.Account)
	}
	if t.Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED && t.Status != agentv1.TaskStatus_TASK_STATUS_FAILED {
		return fmt.Sprintf("run %s: account %s's task ended %s without a verdict", runID, t.Account, t.Status)
	}
	var out verifyOutput
	if json.Unmarshal(t.OutputJSON, &out) != nil || out.PlanID != p.ID || !out.Verify {
		return fmt.Sprintf("run %s: account %s's task has no verify result (%s)", runID, t.Account, orNone(t.Error))
	}
	byID := map[string]int{}
	for i, st := range out.Steps {
		byID[st.ID] = i
	}
	if len(out.Steps) != len(want) {
		return fmt.Sprintf("run %s: account %s's result has %d step(s), the plan %d", runID, t.Account, len(out.Steps), len(want))
	}
	var steps []VerifiedStep
	for _, w := range want {
		i, ok := byID[w.ID]
		if !ok {
			return fmt.Sprintf("run %s: account %s's result lacks step %s", runID, t.Account, w.ID)
		}
		o := out.Steps[i]
		if !slices.Contains([]string{eradplan.VerifyGone, eradplan.VerifyNeutralised, eradplan.VerifyLive, eradplan.VerifyUnverified}, o.Outcome) {
			return fmt.Sprintf("run %s: account %s's step %s has outcome %q, not a verification", runID, t.Account, w.ID, o.Outcome)
		}
		steps = append(steps, VerifiedStep{Account: t.Account, ID: w.ID, Kind: w.Kind, Resource: w.Resource, Manual: w.Manual, Outcome: o.Outcome, Reason: o.Error})
	}
	v.Steps = append(v.Steps, steps...)
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "no error"
	}
	return s
}

// unplanned lists the artifacts whose step the plan lacks: a step is the
// same when eradplan would build it alike (kind, place, resource, action,
// calls).
func unplanned(p *eradplan.Plan, artifacts []trailscope.Artifact) []string {
	key := func(st eradplan.Step) string {
		b, _ := json.Marshal([]any{st.Kind, st.Account, st.Region, st.Resource, st.Action, st.Calls})
		return string(b)
	}
	planned := map[string]bool{}
	for _, st := range p.Steps {
		planned[key(st)] = true
	}
	out := []string{}
	for _, st := range eradplan.Build(artifacts, eradplan.Options{TerminateInstances: p.TerminateInstances}) {
		if !planned[key(st)] {
			out = append(out, st.Account+" "+st.Kind+" "+st.Resource+" (event "+st.EventID+")")
		}
	}
	return out
}
