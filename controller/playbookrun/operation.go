package playbookrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/firebreak-ir/firebreak/controller/eradicate"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/internal/eradflow"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// OperationRunner runs a playbook's operation steps (the eradication
// service).
type OperationRunner interface {
	// Operate runs one operation and returns its outputs.
	Operate(ctx context.Context, op eradicate.Operation) (map[string]any, error)
}

// errCancelled stops an operation between its runs.
var errCancelled = errors.New("the playbook run was cancelled")

// operate runs an operation step on the controller. Its runs are the
// step's: created by playbook:NAME on behalf of the run's operator (who
// cannot approve them), in the run's case, each with the idempotency key
// of the step and its place in the operation, so that an operation
// resumed after a restart finds the runs it created instead of creating
// them again.
func (x *execution) operate(ctx context.Context, stepID, token string, rs *playbook.ResolvedStep) (map[string]any, error) {
	if x.e.cfg.Operations == nil {
		return nil, fmt.Errorf("%w: this controller runs no operation steps (operation %s)", errStepFailed, rs.Operation)
	}
	deadline := rs.Timeout
	if deadline <= 0 {
		deadline = runs.DefaultDeadline
	}
	log := x.e.cfg.Logger.With("playbook_run", x.run.ID, "step", stepID, "operation", rs.Operation)
	return x.e.cfg.Operations.Operate(ctx, eradicate.Operation{Name: rs.Operation, Params: rs.Params, CaseID: x.run.CaseID,
		Actor: x.actor().Name, ApprovalRequired: rs.ApprovalRequired, Deadline: deadline,
		Runs: &stepRuns{x: x, stepID: stepID, token: token}, Progress: func(line string) { log.InfoContext(ctx, line) }})
}

// stepRuns creates and follows an operation step's runs.
type stepRuns struct {
	x      *execution
	stepID string
	token  string
}

func (r *stepRuns) CreateRun(ctx context.Context, req eradflow.RunRequest) (string, error) {
	x := r.x
	if x.isCancelled() {
		return "", errCancelled
	}
	params, err := json.Marshal(req.Params)
	if err != nil {
		return "", err
	}
	deadline := req.Deadline
	if deadline <= 0 {
		deadline = runs.DefaultDeadline
	}
	// Every run stays in the playbook run's case, whatever the operation
	// asks.
	spec := runs.Spec{Action: req.Action, Selector: "role=worker", Accounts: req.Accounts, ParamsJSON: params, CaseID: x.run.CaseID,
		Reason: x.stepReason(r.stepID) + ": " + req.Reason, RequireApproval: req.RequireApproval, Deadline: deadline,
		IdempotencyKey: r.token + ":" + req.Key}
	id, status, err := x.e.createOnce(ctx, x.actor(), spec)
	if err != nil {
		return "", err
	}
	x.stepRunCreated(ctx, r.stepID, id, status)
	if x.isCancelled() {
		x.cancelRun(ctx, id)
	}
	return id, nil
}

// FollowRun follows one of the step's runs to its end and records its
// approvals on the case timeline, as a step's own run's are.
func (r *stepRuns) FollowRun(ctx context.Context, runID string) (*operatorv1.Run, error) {
	x := r.x
	final, err := x.e.followRun(ctx, runID,
		func(t *operatorv1.Task) {
			x.e.hub.publish(Event{Kind: EventTask, StepID: r.stepID, Task: t, runID: x.run.ID})
		},
		func(h *operatorv1.Run) { x.stepRunStatus(ctx, r.stepID, h.GetStatus()) })
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	phase := x.run.Step(r.stepID).Phase
	x.mu.Unlock()
	x.recordApprovals(ctx, r.stepID, phase, final, func(i int) string { return fmt.Sprintf("approval/%s/%d", runID, i) })
	return final, nil
}
