// Package intake takes security findings in and answers them: it parses
// EventBridge events (GuardDuty findings, Security Hub imported findings),
// records each finding version once on a case (the open case about the same
// resource, or a new one), matches the finding against the rules and starts
// the rule's playbook — at once in auto mode, or as a playbook run awaiting
// `firebreak playbook approve` in approve mode. A finding no rule matches is
// recorded on a case all the same.
//
// Findings arrive over HTTPS (POST /v1/events, see Handler), from an SQS
// queue (see SQSPoller) and from operators (`firebreak findings send`,
// through SendEvent); all three take the same path, Submit.
//
// A rule's playbook starts for a finding unless the case already has a run
// of that playbook that is awaiting approval, running or succeeded: an
// update of a finding that is being (or was) answered does not answer it
// again.
package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Attributes of the finding.intake span.
const (
	AttrFindingID     = attribute.Key("firebreak.finding.id")
	AttrFindingType   = attribute.Key("firebreak.finding.type")
	AttrFindingSource = attribute.Key("firebreak.finding.source")
	// AttrFindingVia is the path it came in by: intake/eventbridge (the
	// HTTPS endpoint), intake/sqs, operator:NAME.
	AttrFindingVia = attribute.Key("firebreak.finding.via")
)

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the intake's dependencies.
type Config struct {
	// Cases records findings.
	Cases *cases.Service
	// Playbooks starts playbook runs.
	Playbooks *playbookrun.Executor
	// Library resolves a rule's playbook to its declared inputs.
	Library *playbookrun.Library
	// Rules map findings to playbooks; nil means DefaultRules.
	Rules *finding.RuleSet
	// Audit records refused events; defaults to nothing.
	Audit AuditFunc
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Cases": c.Cases != nil, "Playbooks": c.Playbooks != nil, "Library": c.Library != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("intake: missing %s", strings.Join(missing, ", "))
	}
	if c.Rules == nil {
		c.Rules = DefaultRules()
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Intake takes findings in. It is safe for concurrent use.
type Intake struct {
	cfg Config
	// mu serialises findings, so two versions of one finding arriving
	// together cannot both start the playbook.
	mu sync.Mutex
}

// New returns the intake.
func New(cfg Config) (*Intake, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Intake{cfg: cfg}, nil
}

// Rules returns the rules in force.
func (in *Intake) Rules() *finding.RuleSet { return in.cfg.Rules }

// EventError is a refused event: malformed, too large or not a finding
// event. Its message is the precise reason, with the JSON path of the bad
// value.
type EventError struct {
	Err error
}

func (e *EventError) Error() string { return e.Err.Error() }

// Unwrap returns the parse error.
func (e *EventError) Unwrap() error { return e.Err }

// Outcome says what happened to one finding of an event.
type Outcome struct {
	// FindingID and UpdatedAt identify the finding version.
	FindingID string    `json:"finding_id"`
	UpdatedAt time.Time `json:"updated_at"`
	// Duplicate is true when the version was received before.
	Duplicate bool `json:"duplicate,omitempty"`
	// CaseID is the case the finding is on; CaseCreated says it is new.
	CaseID      string `json:"case_id"`
	CaseCreated bool   `json:"case_created,omitempty"`
	// Rule, Playbook and Mode are those of the first matching rule.
	Rule     string `json:"rule,omitempty"`
	Playbook string `json:"playbook,omitempty"`
	Mode     string `json:"mode,omitempty"`
	// PlaybookRunID is the playbook run started or proposed.
	PlaybookRunID string `json:"playbook_run_id,omitempty"`
	// Note says why no playbook run was started when a rule matched.
	Note string `json:"note,omitempty"`
}

// Submit ingests one EventBridge event on behalf of actor ("intake/https",
// "intake/sqs", "operator:NAME"…). A refused event returns *EventError; any
// other error is a passing failure (the store), and the event may be sent
// again.
func (in *Intake) Submit(ctx context.Context, actor string, event []byte) ([]*Outcome, error) {
	findings, err := finding.ParseEvent(event)
	if err != nil {
		in.cfg.Audit(ctx, actor, "finding.refused", "", map[string]any{"reason": err.Error(), "bytes": len(event)})
		return nil, &EventError{Err: err}
	}
	received := in.cfg.Clock()
	out := make([]*Outcome, 0, len(findings))
	for _, f := range findings {
		o, err := in.take(ctx, actor, f, received)
		if err != nil {
			telemetry.FindingReceived(actor, "error")
			return out, fmt.Errorf("finding %s: %w", f.ID, err)
		}
		telemetry.FindingReceived(actor, map[bool]string{true: "duplicate", false: "taken"}[o.Duplicate])
		out = append(out, o)
	}
	return out, nil
}

// take records one finding and answers it, inside its finding.intake span:
// the trace the playbook run it starts continues.
func (in *Intake) take(ctx context.Context, actor string, f *finding.Finding, received time.Time) (o *Outcome, err error) {
	ctx, span := telemetry.Tracer().Start(ctx, "finding.intake", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(telemetry.NonEmpty(AttrFindingID.String(f.ID), AttrFindingType.String(f.Type),
			AttrFindingSource.String(string(f.Source)), AttrFindingVia.String(actor), telemetry.AttrAccount.String(f.Account),
			telemetry.AttrRegion.String(f.Region))...))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, err.Error())
		} else {
			span.SetAttributes(telemetry.NonEmpty(telemetry.AttrCaseID.String(o.CaseID), attribute.Bool("firebreak.finding.duplicate", o.Duplicate),
				attribute.String("firebreak.rule", o.Rule), telemetry.AttrPlaybook.String(o.Playbook),
				telemetry.AttrPlaybookRunID.String(o.PlaybookRunID))...)
		}
		span.End()
	}()
	in.mu.Lock()
	defer in.mu.Unlock()
	res, err := in.cfg.Cases.RecordFinding(ctx, f, received, actor)
	if err != nil {
		return nil, err
	}
	o = &Outcome{FindingID: f.ID, UpdatedAt: f.UpdatedAt, CaseID: res.CaseID, CaseCreated: res.CaseCreated, Duplicate: res.Duplicate}
	if res.Duplicate {
		o.Rule, o.PlaybookRunID = res.Rule, res.PlaybookRunID
		return o, nil
	}
	rules := in.cfg.Rules.Match(f)
	if len(rules) == 0 {
		in.cfg.Logger.InfoContext(ctx, "finding matched no rule; recorded on its case", "finding", f.ID, "type", f.Type, "case", o.CaseID)
		return o, nil
	}
	r := rules[0]
	o.Rule, o.Playbook, o.Mode = r.Name, r.Playbook, string(r.Mode)
	pbrID, note := in.answer(ctx, r, f, o.CaseID)
	o.PlaybookRunID, o.Note = pbrID, note
	if err := in.cfg.Cases.LinkFinding(ctx, f, r.Name, pbrID); err != nil {
		return nil, err
	}
	if note != "" && pbrID == "" {
		if _, err := in.cfg.Cases.Record(ctx, &cases.Entry{CaseID: o.CaseID, Key: "finding/" + f.DedupKey() + "/not-answered",
			Kind: cases.KindPlaybook, Status: "not_started", Actor: "rule:" + r.Name, FindingID: f.ID,
			Summary: fmt.Sprintf("rule %s matched but playbook %s did not start: %s", r.Name, r.Playbook, note)}); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// answer starts (or proposes) the rule's playbook for the finding, unless
// the case already has a run of it that is not over or succeeded. It
// returns the playbook run id, or a note saying why there is none.
func (in *Intake) answer(ctx context.Context, r *finding.Rule, f *finding.Finding, caseID string) (string, string) {
	existing, err := in.cfg.Playbooks.List(ctx, playbookrun.ListOptions{CaseID: caseID, Limit: 1000})
	if err != nil {
		return "", "listing the case's playbook runs: " + err.Error()
	}
	for _, pr := range existing {
		if pr.Playbook != r.Playbook {
			continue
		}
		switch pr.Status {
		case playbookrun.StatusAwaitingApproval, playbookrun.StatusRunning, playbookrun.StatusSucceeded:
			return pr.ID, fmt.Sprintf("playbook run %s of %s (%s) already answers this case", pr.ID, pr.Playbook, pr.Status)
		}
	}
	var declared []string
	if e, err := in.cfg.Library.Get(r.Playbook); err == nil && e.Playbook != nil {
		for _, i := range e.Playbook.Inputs {
			declared = append(declared, i.Name)
		}
	}
	inputs := r.PlaybookInputs(f, declared)
	run, _, err := in.cfg.Playbooks.Start(ctx, playbookrun.StartRequest{Playbook: r.Playbook, Inputs: inputs, CaseID: caseID, Finding: f,
		Rule: r.Name, RequireApproval: r.Mode != finding.ModeAuto, CreatedBy: "rule:" + r.Name,
		Reason: fmt.Sprintf("%s finding %s (%s, severity %.1f)", f.Source, f.ID, f.Type, f.Severity)})
	if err != nil {
		in.cfg.Logger.WarnContext(ctx, "a rule's playbook did not start", "rule", r.Name, "playbook", r.Playbook, "finding", f.ID, "error", err)
		note := err.Error()
		if first, rest, many := strings.Cut(note, "\n"); many {
			note = fmt.Sprintf("%s (and %d more problems)", first, strings.Count(rest, "\n")+1)
		}
		return "", note
	}
	return run.ID, ""
}

// SendEvent implements cases.EventSender: it is Submit for the CaseService.
func (in *Intake) SendEvent(ctx context.Context, actor string, event []byte) (*operatorv1.SendEventResponse, error) {
	outcomes, err := in.Submit(ctx, actor, event)
	var ee *EventError
	switch {
	case errors.As(err, &ee):
		return nil, status.Errorf(codes.InvalidArgument, "the event was refused: %v", ee.Err)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "recording the finding: %v", err)
	}
	resp := &operatorv1.SendEventResponse{}
	for _, o := range outcomes {
		resp.Outcomes = append(resp.Outcomes, &operatorv1.FindingOutcome{FindingId: o.FindingID, UpdatedAt: timestamppb.New(o.UpdatedAt),
			Duplicate: o.Duplicate, CaseId: o.CaseID, CaseCreated: o.CaseCreated, Rule: o.Rule, Playbook: o.Playbook, Mode: o.Mode,
			PlaybookRunId: o.PlaybookRunID, Note: o.Note})
	}
	return resp, nil
}
