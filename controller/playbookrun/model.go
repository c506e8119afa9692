package playbookrun

import (
	"encoding/json"
	"time"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
)

// Status is the state of a playbook run.
type Status string

// The playbook run statuses.
const (
	// StatusAwaitingApproval runs were proposed (a rule in approve mode)
	// and wait for an approver.
	StatusAwaitingApproval Status = "awaiting_approval"
	// StatusRunning runs have steps to do.
	StatusRunning Status = "running"
	// StatusSucceeded runs ended with no failed step, or only failed steps
	// marked on_failure: continue.
	StatusSucceeded Status = "succeeded"
	// StatusFailed runs stopped at a failed step.
	StatusFailed Status = "failed"
	// StatusRolledBack runs failed and every rollback succeeded.
	StatusRolledBack Status = "rolled_back"
	// StatusRollbackFailed runs failed and a rollback failed too.
	StatusRollbackFailed Status = "rollback_failed"
	// StatusCancelled runs were cancelled by an operator.
	StatusCancelled Status = "cancelled"
	// StatusRejected runs were rejected by an approver.
	StatusRejected Status = "rejected"
)

// Final reports whether the status is an end state.
func (s Status) Final() bool {
	return s != StatusAwaitingApproval && s != StatusRunning
}

// StepStatus is the state of a step.
type StepStatus string

// The step statuses.
const (
	// StepPending steps wait for the steps they need.
	StepPending StepStatus = "pending"
	// StepSubmitting steps have a recorded idempotency key but perhaps no
	// run yet: on resume the executor asks the planner for the run again
	// with that key, which returns the run if it was created, so it is
	// created at most once.
	StepSubmitting StepStatus = "submitting"
	// StepAwaitingApproval steps' runs wait for an approver.
	StepAwaitingApproval StepStatus = "awaiting_approval"
	// StepRunning steps have a run in progress.
	StepRunning StepStatus = "running"
	// StepSucceeded steps ran on every target successfully.
	StepSucceeded StepStatus = "succeeded"
	// StepFailed steps could not be resolved, matched no target, or had a
	// target that did not succeed.
	StepFailed StepStatus = "failed"
	// StepSkipped steps had a false when condition.
	StepSkipped StepStatus = "skipped"
	// StepCancelled steps never started because the playbook run stopped,
	// or their run was cancelled.
	StepCancelled StepStatus = "cancelled"
)

// Ended reports whether the step will not change any more.
func (s StepStatus) Ended() bool {
	switch s {
	case StepSucceeded, StepFailed, StepSkipped, StepCancelled:
		return true
	}
	return false
}

// InFlight reports whether the step has (or is getting) a run.
func (s StepStatus) InFlight() bool {
	return s == StepSubmitting || s == StepAwaitingApproval || s == StepRunning
}

// Why no new step starts.
const (
	stopNone     = ""
	stopFailed   = "stop"
	stopRollback = "rollback"
	stopCancel   = "cancel"
)

// Run is one execution of a playbook.
type Run struct {
	// ID is "pbr-…".
	ID string `json:"id"`
	// Playbook and Version identify the playbook.
	Playbook string `json:"playbook"`
	Version  int    `json:"version"`
	// CaseID is the case the run works for.
	CaseID string `json:"case_id"`
	// Status is the run's state.
	Status Status `json:"status"`
	// CreatedBy is an operator or "rule:NAME".
	CreatedBy string `json:"created_by"`
	// CreatedAt, StartedAt and FinishedAt bound the run.
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Inputs are the bound inputs.
	Inputs map[string]any `json:"inputs"`
	// Finding is the finding that started the run, if any.
	Finding *finding.Finding `json:"finding,omitempty"`
	// Rule is the rule that started it, if any.
	Rule string `json:"rule,omitempty"`
	// Reason is the starter's reason.
	Reason string `json:"reason,omitempty"`
	// Error says why the run failed, was cancelled or was rejected.
	Error string `json:"error,omitempty"`
	// ApprovedBy is who approved a proposed run.
	ApprovedBy string `json:"approved_by,omitempty"`
	// Steps are the steps in execution order.
	Steps []*Step `json:"steps"`

	// stopping says why no new step starts (stop, rollback, cancel).
	stopping string
	// source is the playbook file the run executes, kept so a resumed run
	// executes what it started with.
	source     []byte
	sourceName string
	// traceparent and tracestate are the W3C context of the run's
	// playbook.start span: every step's span is its child, so the run is
	// one trace that continues the finding's (or the operator's).
	traceparent, tracestate string
}

// OnBehalfOf is the operator on whose authority the run's steps act, and
// who may therefore not approve a step's run (the two-person rule): the
// approver of a proposed run — a rule proposes, and only the approval
// starts it — or else whoever started it.
func (r *Run) OnBehalfOf() string {
	if r.ApprovedBy != "" {
		return r.ApprovedBy
	}
	return r.CreatedBy
}

// Step returns the step with the id, or nil.
func (r *Run) Step(id string) *Step {
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Step is a step of a playbook run.
type Step struct {
	// ID, Phase, Action, Needs, OnFailure and ApprovalRequired are the
	// step as the playbook declares it.
	ID               string             `json:"id"`
	Phase            playbook.Phase     `json:"phase"`
	Action           string             `json:"action"`
	Needs            []string           `json:"needs,omitempty"`
	OnFailure        playbook.OnFailure `json:"on_failure"`
	ApprovalRequired bool               `json:"approval_required,omitempty"`
	HasRollback      bool               `json:"has_rollback,omitempty"`
	// Status is the step's state.
	Status StepStatus `json:"status"`
	// RunID is the step's run, once created.
	RunID string `json:"run_id,omitempty"`
	// Resolved is the step with its expressions evaluated.
	Resolved *playbook.ResolvedStep `json:"resolved,omitempty"`
	// Outputs are what later steps see as steps.<id>.outputs.
	Outputs map[string]any `json:"outputs,omitempty"`
	// Targets are the per-target results of the step's run.
	Targets []*TargetResult `json:"targets,omitempty"`
	// Error says why the step failed, was skipped or was cancelled.
	Error string `json:"error,omitempty"`
	// StartedAt and FinishedAt bound the step.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Rollback is the step's rollback, once started.
	Rollback *Rollback `json:"rollback,omitempty"`

	// token is the idempotency key of the step's run, unique to this step
	// of this playbook run: the key by which a resumed executor finds a
	// run it may have created. (Playbook runs from before keys existed
	// stored the run's reason text here, which the store's migration made
	// those runs' key.)
	token string
	// doneSeq orders ended steps by completion, for rollback.
	doneSeq int
}

// EvidenceIDs are the evidence items the step's targets stored.
func (s *Step) EvidenceIDs() []string {
	var out []string
	for _, t := range s.Targets {
		out = append(out, t.EvidenceIDs...)
	}
	return out
}

// TargetResult is the outcome of a step's run on one target.
type TargetResult struct {
	// TaskID is the task.
	TaskID string `json:"task_id"`
	// AgentID and Hostname name the agent.
	AgentID  string `json:"agent_id"`
	Hostname string `json:"hostname"`
	// Account and Region are the task's AWS placement.
	Account string `json:"account,omitempty"`
	Region  string `json:"region,omitempty"`
	// Status is the task's status (succeeded, failed, …).
	Status string `json:"status"`
	// Error says what failed.
	Error string `json:"error,omitempty"`
	// Output is the action's JSON result.
	Output json.RawMessage `json:"output,omitempty"`
	// EvidenceIDs are the evidence items the task stored.
	EvidenceIDs []string `json:"evidence_ids,omitempty"`
}

// Rollback is the undoing of one step: one run per target of the step
// that succeeded, each with that target's own outputs.
type Rollback struct {
	// Status is running, succeeded or failed.
	Status StepStatus `json:"status"`
	// Action is the undoing action.
	Action string `json:"action"`
	// Targets are the rollback's runs.
	Targets []*RollbackTarget `json:"targets"`
	// Error says what failed.
	Error string `json:"error,omitempty"`
	// StartedAt and FinishedAt bound the rollback.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// RollbackTarget is the rollback of one target.
type RollbackTarget struct {
	// Token is the idempotency key of the rollback run, unique to this
	// rollback target.
	Token string `json:"token"`
	// RunID is the rollback run, once created.
	RunID string `json:"run_id,omitempty"`
	// Index is the target's position among the step's targets.
	Index int `json:"index"`
	// Status is the rollback run's outcome.
	Status StepStatus `json:"status"`
	// Error says what failed.
	Error string `json:"error,omitempty"`
}
