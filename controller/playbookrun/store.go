package playbookrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// runDB keeps playbook runs in the store: it turns runs and steps into the
// store's records and back. The SQL is the store's.
type runDB struct {
	s store.PlaybookRuns
}

func jsonText(v any) []byte {
	if v == nil {
		return []byte("null")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

func runRecord(r *Run) *store.PlaybookRun {
	rec := &store.PlaybookRun{ID: r.ID, Playbook: r.Playbook, Version: r.Version, CaseID: r.CaseID, Status: string(r.Status), Stopping: r.stopping,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, InputsJSON: jsonText(r.Inputs),
		Rule: r.Rule, Reason: r.Reason, Error: r.Error, ApprovedBy: r.ApprovedBy, Source: r.source, SourceName: r.sourceName,
		Traceparent: r.traceparent, Tracestate: r.tracestate}
	if r.Finding != nil {
		rec.FindingJSON = jsonText(r.Finding)
	}
	return rec
}

func stepRecord(st *Step) *store.PlaybookStep {
	return &store.PlaybookStep{StepID: st.ID, Status: string(st.Status), Token: st.token, RunID: st.RunID, ResolvedJSON: jsonText(st.Resolved),
		OutputsJSON: jsonText(st.Outputs), TargetsJSON: jsonText(st.Targets), RollbackJSON: jsonText(st.Rollback), Error: st.Error,
		StartedAt: st.StartedAt, FinishedAt: st.FinishedAt, DoneSeq: st.doneSeq}
}

func runFromRecord(rec *store.PlaybookRun) (*Run, error) {
	r := &Run{ID: rec.ID, Playbook: rec.Playbook, Version: rec.Version, CaseID: rec.CaseID, Status: Status(rec.Status), stopping: rec.Stopping,
		CreatedBy: rec.CreatedBy, CreatedAt: rec.CreatedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt, Rule: rec.Rule,
		Reason: rec.Reason, Error: rec.Error, ApprovedBy: rec.ApprovedBy, source: rec.Source, sourceName: rec.SourceName,
		traceparent: rec.Traceparent, tracestate: rec.Tracestate}
	if err := json.Unmarshal(rec.InputsJSON, &r.Inputs); err != nil {
		return nil, fmt.Errorf("playbook run %s inputs: %w", r.ID, err)
	}
	if len(rec.FindingJSON) > 0 {
		r.Finding = &finding.Finding{}
		if err := json.Unmarshal(rec.FindingJSON, r.Finding); err != nil {
			return nil, fmt.Errorf("playbook run %s finding: %w", r.ID, err)
		}
	}
	return r, nil
}

// createRun stores a new playbook run with its pending steps.
func (d runDB) createRun(ctx context.Context, r *Run) error {
	steps := make([]*store.PlaybookStep, len(r.Steps))
	for i, st := range r.Steps {
		steps[i] = stepRecord(st)
	}
	return d.s.CreatePlaybookRun(ctx, runRecord(r), steps)
}

// saveRun stores the mutable fields of a playbook run.
func (d runDB) saveRun(ctx context.Context, r *Run) error {
	return d.s.UpdatePlaybookRun(ctx, runRecord(r))
}

// transition changes a playbook run's status only if it still has the
// expected one, so two approvers (or an approver and a canceller) cannot
// both win.
func (d runDB) transition(ctx context.Context, r *Run, from Status) (bool, error) {
	return d.s.TransitionPlaybookRun(ctx, runRecord(r), string(from))
}

// saveStep stores the mutable fields of a step.
func (d runDB) saveStep(ctx context.Context, runID string, st *Step) error {
	return d.s.UpdatePlaybookStep(ctx, runID, stepRecord(st))
}

// getRun loads a playbook run with its steps, in execution order: the
// steps its stored playbook declares, with their stored state.
func (d runDB) getRun(ctx context.Context, id string) (*Run, error) {
	rec, recs, err := d.s.GetPlaybookRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("playbook run %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	r, err := runFromRecord(rec)
	if err != nil {
		return nil, err
	}
	pb, err := playbook.Parse(r.sourceName, r.source)
	if err != nil {
		return nil, fmt.Errorf("playbook run %s: its stored playbook does not parse: %w", r.ID, err)
	}
	r.Steps = declaredSteps(pb)
	for _, sr := range recs {
		st := r.Step(sr.StepID)
		if st == nil {
			continue
		}
		st.Status, st.token, st.RunID, st.Error = StepStatus(sr.Status), sr.Token, sr.RunID, sr.Error
		st.StartedAt, st.FinishedAt, st.doneSeq = sr.StartedAt, sr.FinishedAt, sr.DoneSeq
		for _, f := range []struct {
			text []byte
			dst  any
		}{{sr.ResolvedJSON, &st.Resolved}, {sr.OutputsJSON, &st.Outputs}, {sr.TargetsJSON, &st.Targets}, {sr.RollbackJSON, &st.Rollback}} {
			if err := json.Unmarshal(f.text, f.dst); err != nil {
				return nil, fmt.Errorf("playbook run %s step %s: %w", r.ID, sr.StepID, err)
			}
		}
	}
	return r, nil
}

// declaredSteps lists a playbook's steps in execution order, pending.
func declaredSteps(pb *playbook.Playbook) []*Step {
	var out []*Step
	for _, layer := range pb.Order() {
		for _, s := range layer {
			of := s.OnFailure
			if of == "" {
				of = playbook.OnFailureStop
			}
			out = append(out, &Step{ID: s.ID, Phase: s.Phase, Action: s.ActionName(), Needs: slices.Clone(s.Needs), OnFailure: of,
				ApprovalRequired: s.Approval == playbook.ApprovalRequired, HasRollback: s.Rollback != nil, Status: StepPending})
		}
	}
	return out
}

// ListOptions filters List.
type ListOptions struct {
	// CaseID limits the list to one case.
	CaseID string
	// Active lists only runs awaiting approval or running.
	Active bool
	// Limit caps the number of runs (default 50, at most 1000).
	Limit int
}

// listRuns returns playbook runs newest first, without steps.
func (d runDB) listRuns(ctx context.Context, o ListOptions) ([]*Run, error) {
	f := store.PlaybookRunFilter{CaseID: o.CaseID, Limit: o.Limit}
	if o.Active {
		f.Statuses = []string{string(StatusAwaitingApproval), string(StatusRunning)}
	}
	recs, err := d.s.ListPlaybookRuns(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []*Run
	for _, rec := range recs {
		r, err := runFromRecord(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// runningIDs returns the playbook runs to resume.
func (d runDB) runningIDs(ctx context.Context) ([]string, error) {
	return d.s.PlaybookRunIDs(ctx, string(StatusRunning))
}
