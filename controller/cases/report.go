package cases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Report is a case's post-incident report: what happened, what was done
// and how fast, what was collected, what is still open and what to learn.
// Its JSON form is the report's JSON format.
type Report struct {
	// GeneratedAt is when the report was made.
	GeneratedAt time.Time `json:"generated_at"`
	// Case is the case with its timings.
	Case *Case `json:"case"`
	// SeverityLabel is the case severity's label.
	SeverityLabel string `json:"severity_label"`
	// Contained is true once a contain step succeeded and was not undone.
	Contained bool `json:"contained"`
	// Summary is a paragraph for people.
	Summary string `json:"summary"`
	// Findings are the finding versions, oldest first.
	Findings []*FindingRecord `json:"findings"`
	// Timeline is every event, oldest first.
	Timeline []*Entry `json:"timeline"`
	// Scope is what the case's aws-credential-scope runs found, when it
	// has any.
	Scope *ScopeSection `json:"scope,omitempty"`
	// Actions are the runs made for the case, oldest first, with their
	// per-target results.
	Actions []*Action `json:"actions"`
	// Evidence is what the runs collected, with hashes and custody.
	Evidence []*EvidenceEntry `json:"evidence"`
	// Approvals are the approval decisions on the case's runs and playbooks.
	Approvals []*ApprovalEntry `json:"approvals"`
	// Notes are the operators' notes.
	Notes []*Entry `json:"notes"`
	// Traces are the traces the case's timeline was written in, in the
	// order they first appear: open one in the tracing back end to see
	// that response from the finding (or the operator's command) to the
	// agents' tasks and the AWS calls.
	Traces []*TraceRef `json:"traces"`
	// OpenItems are what still needs a responder.
	OpenItems []string `json:"open_items"`
	// Lessons are the post-incident questions to answer.
	Lessons []string `json:"lessons_learned"`
}

// Action is one run made for a case.
type Action struct {
	// RunID is the run.
	RunID string `json:"run_id"`
	// Action is the action run.
	Action string `json:"action"`
	// PlaybookRunID and StepID name the playbook step, if any.
	PlaybookRunID string `json:"playbook_run_id,omitempty"`
	StepID        string `json:"step_id,omitempty"`
	// Rollback is true for the rollback of a step.
	Rollback bool `json:"rollback,omitempty"`
	// Phase is the step's phase, if any.
	Phase playbook.Phase `json:"phase,omitempty"`
	// Status is the run's final (or current) status.
	Status string `json:"status"`
	// CreatedBy is who made the run.
	CreatedBy string `json:"created_by"`
	// CreatedAt and FinishedAt bound the run.
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Params is the run's parameter object.
	Params json.RawMessage `json:"params,omitempty"`
	// Targets are the per-target results.
	Targets []*TargetResult `json:"targets"`
}

// TargetResult is one target of an action.
type TargetResult struct {
	// AgentID and Hostname name the agent that ran the task.
	AgentID  string `json:"agent_id"`
	Hostname string `json:"hostname"`
	// Account and Region are the task's AWS placement.
	Account string `json:"account,omitempty"`
	Region  string `json:"region,omitempty"`
	// Status is the task's status.
	Status string `json:"status"`
	// Error says what failed.
	Error string `json:"error,omitempty"`
	// Output is the action's JSON result, cut at MaxReportOutput bytes
	// (then a JSON string ending in "…").
	Output json.RawMessage `json:"output,omitempty"`
	// EvidenceIDs are the evidence items the task stored.
	EvidenceIDs []string `json:"evidence_ids,omitempty"`
}

// MaxReportOutput caps each task output shown in a report.
const MaxReportOutput = 8 << 10

// EvidenceEntry is one evidence item in a report.
type EvidenceEntry struct {
	Evidence
	// InStore is false when the evidence store does not hold the item (or
	// no evidence store is configured): only the task's record is shown.
	InStore bool `json:"in_store"`
}

// ApprovalEntry is one approval decision.
type ApprovalEntry struct {
	// At is when.
	At time.Time `json:"at"`
	// Operator decided.
	Operator string `json:"operator"`
	// Approved is false for a rejection.
	Approved bool `json:"approved"`
	// RunID or PlaybookRunID is what was decided on.
	RunID         string `json:"run_id,omitempty"`
	PlaybookRunID string `json:"playbook_run_id,omitempty"`
	// Comment is the operator's comment.
	Comment string `json:"comment,omitempty"`
}

// TraceRef is one trace of a case: the work that wrote some of its
// timeline entries.
type TraceRef struct {
	// TraceID is the W3C trace id, 32 hex digits.
	TraceID string `json:"trace_id"`
	// At is when its first entry happened, and Started that entry's
	// summary.
	At      time.Time `json:"at"`
	Started string    `json:"started"`
	// PlaybookRunIDs, RunIDs and FindingIDs are what its entries name.
	PlaybookRunIDs []string `json:"playbook_run_ids,omitempty"`
	RunIDs         []string `json:"run_ids,omitempty"`
	FindingIDs     []string `json:"finding_ids,omitempty"`
	// Entries counts its timeline entries.
	Entries int `json:"entries"`
}

// tracesOf gathers the traces of a timeline, in order of first entry.
func tracesOf(timeline []*Entry) []*TraceRef {
	out := []*TraceRef{}
	byID := map[string]*TraceRef{}
	add := func(list []string, id string) []string {
		if id == "" || slices.Contains(list, id) {
			return list
		}
		return append(list, id)
	}
	for _, e := range timeline {
		if e.TraceID == "" {
			continue
		}
		t := byID[e.TraceID]
		if t == nil {
			t = &TraceRef{TraceID: e.TraceID, At: e.At, Started: e.Summary}
			byID[e.TraceID] = t
			out = append(out, t)
		}
		t.Entries++
		t.PlaybookRunIDs = add(t.PlaybookRunIDs, e.PlaybookRunID)
		t.RunIDs = add(t.RunIDs, e.RunID)
		t.FindingIDs = add(t.FindingIDs, e.FindingID)
	}
	return out
}

// LessonsLearned are the post-incident questions of NIST SP 800-61r2
// §3.4.1, for the lessons-learned meeting to answer.
var LessonsLearned = []string{
	"Exactly what happened, and at what times?",
	"How well did staff and management perform in dealing with the incident? Were the documented procedures followed, and were they adequate?",
	"What information was needed sooner?",
	"Were any steps or actions taken that might have inhibited the recovery?",
	"What would staff and management do differently the next time a similar incident occurs?",
	"How could information sharing with other organizations have been improved?",
	"What corrective actions can prevent similar incidents in the future?",
	"What precursors or indicators should be watched for in the future to detect similar incidents?",
	"What additional tools or resources are needed to detect, analyze, and mitigate future incidents?",
}

// Report gathers a case's report.
func (s *Service) Report(ctx context.Context, caseID string) (*Report, error) {
	c, err := s.Get(ctx, caseID)
	if err != nil {
		return nil, err
	}
	findings, err := s.db.findings(ctx, caseID)
	if err != nil {
		return nil, err
	}
	timeline, err := s.Timeline(ctx, caseID)
	if err != nil {
		return nil, err
	}
	r := &Report{GeneratedAt: s.cfg.Clock().UTC(), Case: c, SeverityLabel: c.SeverityLabel(), Contained: c.Contained(),
		Findings: findings, Timeline: timeline, Actions: []*Action{}, Evidence: []*EvidenceEntry{}, Approvals: []*ApprovalEntry{},
		Notes: []*Entry{}, Traces: tracesOf(timeline), Lessons: LessonsLearned}

	type stepRef struct {
		pbr, step string
		phase     playbook.Phase
		rollback  bool
	}
	refs := map[string]stepRef{}
	runIDs := []string{}
	for _, e := range timeline {
		switch {
		case e.Kind == KindNote:
			r.Notes = append(r.Notes, e)
		case e.Kind == KindApproval && e.RunID == "":
			r.Approvals = append(r.Approvals, &ApprovalEntry{At: e.At, Operator: e.Actor, Approved: e.Status == "approved",
				PlaybookRunID: e.PlaybookRunID, Comment: commentOf(e)})
		}
		if e.RunID == "" {
			continue
		}
		if _, seen := refs[e.RunID]; !seen {
			runIDs = append(runIDs, e.RunID)
		}
		if e.Kind == KindStep || e.Kind == KindRollback || refs[e.RunID].pbr == "" {
			refs[e.RunID] = stepRef{pbr: e.PlaybookRunID, step: e.StepID, phase: e.Phase, rollback: e.Kind == KindRollback}
		}
	}
	var evidenceOrder []string
	evidenceFrom := map[string]*EvidenceEntry{}
	for _, id := range runIDs {
		run, tasks, err := s.cfg.Runs.GetRun(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading run %s: %w", id, err)
		}
		ref := refs[id]
		a := &Action{RunID: run.ID, Action: run.Action, PlaybookRunID: ref.pbr, StepID: ref.step, Rollback: ref.rollback, Phase: ref.phase,
			Status: runStatusName(run.Status), CreatedBy: run.CreatedBy, CreatedAt: run.CreatedAt, FinishedAt: run.FinishedAt,
			Params: json.RawMessage(run.ParamsJSON), Targets: []*TargetResult{}}
		if !json.Valid(a.Params) {
			a.Params = nil
		}
		if run.Action == ScopeActionName {
			if r.Scope == nil && slices.ContainsFunc(tasks, func(t *store.Task) bool { return len(t.OutputJSON) > 0 }) {
				r.Scope = newScopeSection()
			}
			if r.Scope != nil {
				r.Scope.request(run)
			}
		}
		for _, t := range tasks {
			if run.Action == ScopeActionName && len(t.OutputJSON) > 0 {
				r.Scope.add(run.ID, t.OutputJSON)
			}
			a.Targets = append(a.Targets, &TargetResult{AgentID: t.AgentID, Hostname: t.Hostname, Account: t.Account, Region: t.Region,
				Status: taskStatusName(t.Status), Error: t.Error, Output: clipOutput(t.OutputJSON), EvidenceIDs: t.EvidenceIDs})
			for _, ev := range t.EvidenceIDs {
				if evidenceFrom[ev] == nil {
					evidenceOrder = append(evidenceOrder, ev)
					evidenceFrom[ev] = &EvidenceEntry{Evidence: Evidence{ID: ev, TaskID: t.ID, RunID: run.ID, AgentID: t.AgentID,
						Hostname: t.Hostname, CollectedAt: t.FinishedAt}}
				}
			}
		}
		r.Actions = append(r.Actions, a)
		aps, err := s.cfg.Runs.ListApprovals(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading the approvals of run %s: %w", id, err)
		}
		for _, ap := range aps {
			r.Approvals = append(r.Approvals, &ApprovalEntry{At: ap.At, Operator: ap.Operator, Approved: ap.Approved, RunID: ap.RunID, Comment: ap.Comment})
		}
	}
	if r.Scope != nil {
		r.Scope.finish()
	}
	slices.SortStableFunc(r.Actions, func(a, b *Action) int { return a.CreatedAt.Compare(b.CreatedAt) })
	slices.SortStableFunc(r.Approvals, func(a, b *ApprovalEntry) int { return a.At.Compare(b.At) })
	if err := s.describeEvidence(ctx, r, evidenceOrder, evidenceFrom); err != nil {
		return nil, err
	}
	r.OpenItems = openItems(r)
	r.Summary = summary(r)
	return r, nil
}

func commentOf(e *Entry) string {
	var d struct {
		Comment string `json:"comment"`
	}
	_ = json.Unmarshal(e.Detail, &d)
	return d.Comment
}

func (s *Service) describeEvidence(ctx context.Context, r *Report, order []string, from map[string]*EvidenceEntry) error {
	known := map[string]*Evidence{}
	if s.cfg.Evidence != nil && len(order) > 0 {
		items, err := s.cfg.Evidence.DescribeEvidence(ctx, order)
		if err != nil {
			return fmt.Errorf("describing evidence: %w", err)
		}
		for _, it := range items {
			known[it.ID] = it
		}
	}
	for _, id := range order {
		e := from[id]
		if it := known[id]; it != nil {
			recorded := e.Evidence
			e.Evidence = *it
			e.InStore = true
			// The task's record fills what the catalogue leaves out.
			e.TaskID = cmpOr(e.TaskID, recorded.TaskID)
			e.RunID = cmpOr(e.RunID, recorded.RunID)
			e.AgentID = cmpOr(e.AgentID, recorded.AgentID)
			e.Hostname = cmpOr(e.Hostname, recorded.Hostname)
		}
		r.Evidence = append(r.Evidence, e)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func clipOutput(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if len(b) <= MaxReportOutput && json.Valid(b) {
		return json.RawMessage(b)
	}
	s := string(b)
	if len(s) > MaxReportOutput {
		s = s[:MaxReportOutput]
	}
	out, _ := json.Marshal(strings.ToValidUTF8(s, "") + "…")
	return out
}

func runStatusName(s operatorv1.RunStatus) string {
	return apiview.EnumName(s)
}

func taskStatusName(s agentv1.TaskStatus) string {
	return apiview.EnumName(s)
}

// openItems lists what still needs a responder.
func openItems(r *Report) []string {
	items := []string{}
	c := r.Case
	if c.Status == StatusOpen {
		items = append(items, fmt.Sprintf("The case is still open, in the %s phase.", c.Phase))
	}
	if !r.Contained {
		items = append(items, "No containment is recorded: no contain step succeeded, or its rollback undid it.")
	}
	if c.Timings.EradicatedAt.IsZero() {
		items = append(items, "No eradication is recorded: remove the cause (rebuild the instance, rotate credentials) and record it.")
	}
	if c.Timings.RecoveredAt.IsZero() {
		items = append(items, "No recovery is recorded: restore service from known-good state and record it.")
	}
	pbStatus := map[string]string{}
	var pbOrder []string
	for _, e := range r.Timeline {
		switch e.Kind {
		case KindPlaybook:
			if _, seen := pbStatus[e.PlaybookRunID]; !seen {
				pbOrder = append(pbOrder, e.PlaybookRunID)
			}
			pbStatus[e.PlaybookRunID] = e.Status
		case KindStep:
			if e.Status == EntryFailed {
				items = append(items, fmt.Sprintf("Step %s of playbook run %s failed: %s", e.StepID, e.PlaybookRunID, e.Summary))
			}
		case KindRollback:
			if e.Status == EntryFailed {
				items = append(items, fmt.Sprintf("The rollback of step %s of playbook run %s failed; check the affected resources by hand: %s",
					e.StepID, e.PlaybookRunID, e.Summary))
			}
		}
	}
	for _, id := range pbOrder {
		switch pbStatus[id] {
		case "awaiting_approval":
			items = append(items, fmt.Sprintf("Playbook run %s awaits approval: firebreak playbook approve %s", id, id))
		case "running", "started", "approved":
			items = append(items, fmt.Sprintf("Playbook run %s has not ended.", id))
		}
	}
	for _, a := range r.Actions {
		if a.Status == "awaiting_approval" {
			items = append(items, fmt.Sprintf("Run %s (%s) awaits approval: firebreak approve %s", a.RunID, a.Action, a.RunID))
		}
		for _, t := range a.Targets {
			switch t.Status {
			case "succeeded", "cancelled", "pending", "dispatched", "running":
			default:
				items = append(items, fmt.Sprintf("Run %s (%s) did not succeed on %s: %s %s", a.RunID, a.Action, targetName(t), t.Status, t.Error))
			}
		}
	}
	for _, f := range r.Findings {
		if f.Rule == "" && f.PlaybookRunID == "" {
			items = append(items, fmt.Sprintf("Finding %s (%s) matched no rule: no playbook answered it.", f.Finding.ID, f.Finding.Type))
		}
	}
	for _, e := range r.Evidence {
		if !e.InStore {
			items = append(items, fmt.Sprintf("Evidence %s is not in the evidence store; only the task's record of it is shown.", e.ID))
		} else if !e.CustodyIntact {
			items = append(items, fmt.Sprintf("The custody record of evidence %s does not verify.", e.ID))
		}
	}
	return items
}

func targetName(t *TargetResult) string {
	name := t.Hostname
	if name == "" {
		name = t.AgentID
	}
	if t.Account != "" {
		name += " (" + t.Account + "/" + t.Region + ")"
	}
	return name
}

func summary(r *Report) string {
	c := r.Case
	var b strings.Builder
	fmt.Fprintf(&b, "Case %s, %q, is %s in the %s phase, severity %s (%.1f).", c.ID, c.Title, c.Status, c.Phase, r.SeverityLabel, c.Severity)
	if c.Resource != "" {
		fmt.Fprintf(&b, " It concerns %s.", c.Resource)
	}
	t := c.Timings
	if len(r.Findings) > 0 {
		fmt.Fprintf(&b, " %d finding version(s) were received, the first at %s", len(r.Findings), t.DetectedAt.UTC().Format(time.RFC3339))
		if d, ok := t.TimeToDetect(); ok {
			fmt.Fprintf(&b, ", %s after the activity was first seen", d.Round(time.Second))
		}
		b.WriteString(".")
	}
	pbs := map[string]bool{}
	for _, e := range r.Timeline {
		if e.PlaybookRunID != "" {
			pbs[e.PlaybookRunID] = true
		}
	}
	fmt.Fprintf(&b, " %d playbook run(s) and %d action run(s) answered it.", len(pbs), len(r.Actions))
	if d, ok := t.TimeToContain(); ok {
		fmt.Fprintf(&b, " Containment was reached at %s, %s after detection.", t.ContainedAt.UTC().Format(time.RFC3339), d.Round(time.Millisecond))
	} else {
		b.WriteString(" Containment is not recorded.")
	}
	if len(r.Evidence) > 0 {
		fmt.Fprintf(&b, " %d evidence item(s) were collected.", len(r.Evidence))
	}
	if len(r.OpenItems) > 0 {
		fmt.Fprintf(&b, " %d item(s) remain open.", len(r.OpenItems))
	}
	return b.String()
}
