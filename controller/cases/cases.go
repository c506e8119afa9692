// Package cases keeps incident cases. A case gathers everything about one
// incident on one timeline: the findings that revealed it, the playbook
// runs and steps that answered it, the runs operators made for it, the
// evidence collected, approvals and notes. It records the NIST SP 800-61
// phase the incident is in, derives the response timings (time to detect,
// contain, eradicate and recover) and renders the post-incident report.
//
// Findings attach to cases by resource: a finding on a resource that an
// open case is about (an instance, an access key, a bucket…) or carrying a
// finding id the open case already holds joins that case; any other finding
// opens a new one. Each finding version (id and update time) is recorded
// once.
//
// Timeline entries carry a key unique within their case, so a writer that
// restarts may record the same event again without duplicating it.
package cases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
)

func newID(prefix string) string { return ids.New(prefix) }

// Status says whether a case is still worked on.
type Status string

// The case statuses.
const (
	StatusOpen   Status = "open"
	StatusClosed Status = "closed"
)

// Kind says what a timeline entry records.
type Kind string

// The timeline entry kinds.
const (
	KindCase     Kind = "case"
	KindFinding  Kind = "finding"
	KindPhase    Kind = "phase"
	KindPlaybook Kind = "playbook"
	KindStep     Kind = "step"
	KindRollback Kind = "rollback"
	KindApproval Kind = "approval"
	KindEvidence Kind = "evidence"
	KindNote     Kind = "note"
	KindRun      Kind = "run"
)

// Entry statuses that timings and open items read.
const (
	EntryStarted   = "started"
	EntrySucceeded = "succeeded"
	EntryFailed    = "failed"
	EntrySkipped   = "skipped"
)

// Limits on operator text.
const (
	MaxTitle = 256
	MaxNote  = 16 << 10
)

// Errors the service returns.
var (
	ErrNotFound = errors.New("case not found")
	ErrClosed   = errors.New("the case is closed")
)

// Case is an incident case.
type Case struct {
	// ID is "case-…".
	ID string `json:"id"`
	// Title says what the incident is.
	Title string `json:"title"`
	// Status is open or closed.
	Status Status `json:"status"`
	// Phase is the NIST phase the incident is in.
	Phase playbook.Phase `json:"phase"`
	// Severity is the highest severity of the case's findings, 0–10.
	Severity float64 `json:"severity"`
	// Resource is the affected resource key, e.g. "instance/111122223333/i-…";
	// empty for cases opened by hand.
	Resource string `json:"resource,omitempty"`
	// CreatedBy is who opened the case.
	CreatedBy string `json:"created_by"`
	// CreatedAt is when the case was opened.
	CreatedAt time.Time `json:"created_at"`
	// ClosedBy is who closed the case.
	ClosedBy string `json:"closed_by,omitempty"`
	// ClosedAt is when the case was closed.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Findings counts the finding versions recorded.
	Findings int `json:"findings"`
	// Timings are derived from the findings and the timeline.
	Timings Timings `json:"timings"`
}

// SeverityLabel is the label of the case's severity.
func (c *Case) SeverityLabel() string { return severityLabel(c.Severity) }

// Contained reports whether a contain step succeeded and was not rolled
// back.
func (c *Case) Contained() bool { return !c.Timings.ContainedAt.IsZero() }

func severityLabel(sev float64) string {
	switch {
	case sev >= 9:
		return finding.LabelCritical
	case sev >= 7:
		return finding.LabelHigh
	case sev >= 4:
		return finding.LabelMedium
	case sev >= 1:
		return finding.LabelLow
	}
	return finding.LabelInformational
}

// Entry is one event on a case's timeline.
type Entry struct {
	// Seq orders a case's entries, from 1.
	Seq int64 `json:"seq"`
	// CaseID is the case.
	CaseID string `json:"case_id"`
	// Key identifies the event within the case; recording an entry whose
	// key exists does nothing. Empty keys are made unique.
	Key string `json:"-"`
	// At is when the event happened.
	At time.Time `json:"at"`
	// Kind says what the entry records.
	Kind Kind `json:"kind"`
	// Phase is the NIST phase of a step, rollback or phase entry.
	Phase playbook.Phase `json:"phase,omitempty"`
	// Status is the outcome recorded (started, succeeded, failed…).
	Status string `json:"status,omitempty"`
	// Actor is who acted.
	Actor string `json:"actor"`
	// Summary is one line for people.
	Summary string `json:"summary"`
	// PlaybookRunID, StepID, RunID and FindingID name what the entry is
	// about.
	PlaybookRunID string `json:"playbook_run_id,omitempty"`
	StepID        string `json:"step_id,omitempty"`
	RunID         string `json:"run_id,omitempty"`
	FindingID     string `json:"finding_id,omitempty"`
	// EvidenceIDs are the evidence items the entry records.
	EvidenceIDs []string `json:"evidence_ids,omitempty"`
	// Detail is a JSON object with the particulars.
	Detail json.RawMessage `json:"detail,omitempty"`
	// TraceID is the W3C trace id of the work that recorded the entry (the
	// finding's intake, a playbook run's step, an operator's command);
	// when empty, the trace of the context it is recorded in.
	TraceID string `json:"trace_id,omitempty"`
}

// FindingRecord is one finding version recorded on a case.
type FindingRecord struct {
	// CaseID is the case.
	CaseID string `json:"case_id"`
	// DedupKey is the finding's id and update time.
	DedupKey string `json:"-"`
	// Finding is the normalised finding.
	Finding *finding.Finding `json:"finding"`
	// Resource is the resource key the finding was filed under.
	Resource string `json:"resource"`
	// ReceivedAt is when Firebreak received this version.
	ReceivedAt time.Time `json:"received_at"`
	// Rule is the rule that matched, empty when none did.
	Rule string `json:"rule,omitempty"`
	// PlaybookRunID is the playbook run the finding started or proposed.
	PlaybookRunID string `json:"playbook_run_id,omitempty"`
}

// ResourceKey is the key under which a finding's cases are kept: findings
// with the same key attach to the same open case.
func ResourceKey(f *finding.Finding) string {
	switch {
	case f.InstanceID != "":
		return "instance/" + f.Account + "/" + f.InstanceID
	case f.AccessKeyID != "":
		return "access_key/" + f.Account + "/" + f.AccessKeyID
	case f.Bucket != "":
		return "s3_bucket/" + f.Bucket
	case f.FunctionName != "":
		return "lambda/" + f.Account + "/" + f.Region + "/" + f.FunctionName
	case f.RoleName != "":
		return "iam_role/" + f.Account + "/" + f.RoleName
	case f.UserName != "":
		return "iam_user/" + f.Account + "/" + f.UserName
	}
	return "finding/" + f.ID
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// RunReader reads runs for reports; store.Store satisfies it.
type RunReader interface {
	// GetRun returns a run and its tasks.
	GetRun(ctx context.Context, id string) (*store.Run, []*store.Task, error)
	// ListApprovals returns a run's approval decisions.
	ListApprovals(ctx context.Context, runID string) ([]*store.Approval, error)
}

// Evidence is a stored evidence item as a report shows it.
type Evidence struct {
	// ID is the evidence id.
	ID string `json:"id"`
	// Name is the item's name (artifact or bundle name).
	Name string `json:"name,omitempty"`
	// SHA256 is the hex SHA-256 of the stored bytes.
	SHA256 string `json:"sha256,omitempty"`
	// Size is the stored size in bytes.
	Size int64 `json:"size,omitempty"`
	// TaskID, RunID, AgentID and Hostname say where it came from.
	TaskID   string `json:"task_id,omitempty"`
	RunID    string `json:"run_id,omitempty"`
	AgentID  string `json:"agent_id,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// CollectedAt is when the controller stored it.
	CollectedAt time.Time `json:"collected_at,omitzero"`
	// Custody is the item's chain-of-custody record, oldest first.
	Custody []CustodyEvent `json:"custody,omitempty"`
	// CustodyIntact is true when the custody record's hash chain verifies.
	CustodyIntact bool `json:"custody_intact"`
}

// CustodyEvent is one entry of an evidence item's custody record.
type CustodyEvent struct {
	// At is when it happened.
	At time.Time `json:"at"`
	// Actor is who handled the item.
	Actor string `json:"actor"`
	// Action is what was done (collected, stored, read, verified…).
	Action string `json:"action"`
	// Detail says more.
	Detail string `json:"detail,omitempty"`
}

// EvidenceCatalog describes stored evidence items for reports. The
// evidence store implements it; items it does not know are left out of
// its answer.
type EvidenceCatalog interface {
	// DescribeEvidence returns the items with the given ids that it holds.
	DescribeEvidence(ctx context.Context, ids []string) ([]*Evidence, error)
}

// Config holds the service's dependencies.
type Config struct {
	// Store keeps the cases, their timelines and their findings.
	Store store.CaseStore
	// Runs reads runs for reports.
	Runs RunReader
	// Evidence describes evidence for reports; nil shows evidence ids only.
	Evidence EvidenceCatalog
	// ActivePlaybookRuns names the playbook runs of a case that have not
	// ended; a case with any cannot be closed. Nil means none.
	ActivePlaybookRuns func(ctx context.Context, caseID string) ([]string, error)
	// Audit records changes; defaults to nothing.
	Audit AuditFunc
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Store == nil {
		missing = append(missing, "Store")
	}
	if c.Runs == nil {
		missing = append(missing, "Runs")
	}
	if len(missing) > 0 {
		return fmt.Errorf("cases: missing %s", strings.Join(missing, ", "))
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

// Service keeps cases. It is safe for concurrent use.
type Service struct {
	cfg Config
	db  *sqlStore
}

// New returns the case service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, db: &sqlStore{t: cfg.Store, changes: &Changes{}}}, nil
}

// Changes is where this service tells of the cases it writes (the console's
// live case pages listen there).
func (s *Service) Changes() *Changes { return s.db.changes }

// SetActivePlaybookRuns sets the hook that names a case's active playbook
// runs, for composition roots that build the executor after the cases.
func (s *Service) SetActivePlaybookRuns(f func(ctx context.Context, caseID string) ([]string, error)) {
	s.cfg.ActivePlaybookRuns = f
}

// SetEvidence sets the evidence catalogue used by reports.
func (s *Service) SetEvidence(e EvidenceCatalog) { s.cfg.Evidence = e }

// NewCase describes a case to open by hand.
type NewCase struct {
	// Title says what the incident is.
	Title string
	// CreatedBy is the operator.
	CreatedBy string
	// Note is an optional first note.
	Note string
}

// Create opens a case by hand.
func (s *Service) Create(ctx context.Context, nc NewCase) (*Case, error) {
	title := strings.TrimSpace(nc.Title)
	if title == "" {
		return nil, fmt.Errorf("a case needs a title")
	}
	if len(title) > MaxTitle {
		return nil, fmt.Errorf("the title is longer than %d characters", MaxTitle)
	}
	if len(nc.Note) > MaxNote {
		return nil, fmt.Errorf("the note is longer than %d bytes", MaxNote)
	}
	now := s.cfg.Clock()
	c := &Case{ID: newID("case"), Title: title, Status: StatusOpen, Phase: playbook.PhaseDetect, CreatedBy: nc.CreatedBy, CreatedAt: now}
	entries := []*Entry{{Key: "case/opened", At: now, Kind: KindCase, Phase: playbook.PhaseDetect, Status: "opened", Actor: nc.CreatedBy,
		Summary: "case opened: " + title}}
	if strings.TrimSpace(nc.Note) != "" {
		entries = append(entries, &Entry{At: now, Kind: KindNote, Actor: nc.CreatedBy, Summary: nc.Note})
	}
	if err := s.db.createCase(ctx, c, entries); err != nil {
		return nil, err
	}
	s.cfg.Audit(ctx, nc.CreatedBy, "case.create", c.ID, map[string]string{"title": title})
	return c, nil
}

// Get returns a case with its derived timings.
func (s *Service) Get(ctx context.Context, id string) (*Case, error) {
	c, err := s.db.getCase(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.derive(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Service) derive(ctx context.Context, c *Case) error {
	fs, err := s.db.findings(ctx, c.ID)
	if err != nil {
		return err
	}
	tl, err := s.db.timeline(ctx, c.ID, true)
	if err != nil {
		return err
	}
	c.Findings = len(fs)
	c.Timings = Derive(c.CreatedAt, fs, tl)
	return nil
}

// ListOptions filters List.
type ListOptions struct {
	// IncludeClosed also lists closed cases.
	IncludeClosed bool
	// Limit caps the number of cases (default 100, at most 1000).
	Limit int
}

// List returns cases, newest first, with their timings.
func (s *Service) List(ctx context.Context, o ListOptions) ([]*Case, error) {
	if o.Limit <= 0 {
		o.Limit = 100
	}
	o.Limit = min(o.Limit, 1000)
	cs, err := s.db.listCases(ctx, o)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := s.derive(ctx, c); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// Timeline returns a case's timeline, oldest first, with the runs that
// operators attached to the case by hand (run --case) merged in.
func (s *Service) Timeline(ctx context.Context, id string) ([]*Entry, error) {
	if _, err := s.db.getCase(ctx, id); err != nil {
		return nil, err
	}
	tl, err := s.db.timeline(ctx, id, false)
	if err != nil {
		return nil, err
	}
	manual, err := s.manualRuns(ctx, id, tl)
	if err != nil {
		return nil, err
	}
	for _, r := range manual {
		tl = append(tl, runEntry(id, r.run, r.tasks))
	}
	slices.SortStableFunc(tl, func(a, b *Entry) int { return a.At.Compare(b.At) })
	return tl, nil
}

type runWithTasks struct {
	run   *store.Run
	tasks []*store.Task
}

// manualRuns returns the runs linked to the case (run --case) that no
// timeline entry names.
func (s *Service) manualRuns(ctx context.Context, caseID string, tl []*Entry) ([]runWithTasks, error) {
	ids, err := s.db.runsOfCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, e := range tl {
		if e.RunID != "" {
			named[e.RunID] = true
		}
	}
	var out []runWithTasks
	for _, id := range ids {
		if named[id] {
			continue
		}
		r, tasks, err := s.cfg.Runs.GetRun(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading run %s: %w", id, err)
		}
		out = append(out, runWithTasks{run: r, tasks: tasks})
	}
	return out, nil
}

func runEntry(caseID string, r *store.Run, tasks []*store.Task) *Entry {
	ok := 0
	for _, t := range tasks {
		if t.Status.String() == "TASK_STATUS_SUCCEEDED" {
			ok++
		}
	}
	status := apiview.EnumName(r.Status)
	return &Entry{CaseID: caseID, At: r.CreatedAt, Kind: KindRun, Status: status, Actor: r.CreatedBy, RunID: r.ID,
		Summary: fmt.Sprintf("run %s of %s on %d targets (%d succeeded): %s", r.ID, r.Action, len(tasks), ok, status)}
}

// Findings returns the finding versions recorded on a case, oldest first.
func (s *Service) Findings(ctx context.Context, id string) ([]*FindingRecord, error) {
	if _, err := s.db.getCase(ctx, id); err != nil {
		return nil, err
	}
	return s.db.findings(ctx, id)
}

// Record adds an entry to a case's timeline unless an entry with its key
// exists. A step entry of a later phase moves an open case to that phase
// (phases only move forward on their own). It reports whether the entry
// was added.
func (s *Service) Record(ctx context.Context, e *Entry) (bool, error) {
	if e.At.IsZero() {
		e.At = s.cfg.Clock()
	}
	if e.Key == "" {
		e.Key = newID("entry")
	}
	return s.db.record(ctx, e)
}

// AddNote adds an operator's note.
func (s *Service) AddNote(ctx context.Context, caseID, actor, text string) (*Entry, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("the note is empty")
	}
	if len(text) > MaxNote {
		return nil, fmt.Errorf("the note is longer than %d bytes", MaxNote)
	}
	if _, err := s.db.getCase(ctx, caseID); err != nil {
		return nil, err
	}
	e := &Entry{CaseID: caseID, Key: newID("note"), At: s.cfg.Clock(), Kind: KindNote, Actor: actor, Summary: text}
	if _, err := s.db.record(ctx, e); err != nil {
		return nil, err
	}
	s.cfg.Audit(ctx, actor, "case.note", caseID, map[string]int{"bytes": len(text)})
	return e, nil
}

// SetPhase moves a case to a phase chosen by an operator, forward or back.
func (s *Service) SetPhase(ctx context.Context, caseID string, phase playbook.Phase, actor, reason string) (*Case, error) {
	if !slices.Contains(playbook.Phases, phase) {
		return nil, fmt.Errorf("phase %q: want one of %s", phase, phaseList())
	}
	if len(reason) > MaxNote {
		return nil, fmt.Errorf("the reason is longer than %d bytes", MaxNote)
	}
	c, err := s.db.getCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if c.Status == StatusClosed {
		return nil, fmt.Errorf("case %s: %w; its phase stays %s", caseID, ErrClosed, c.Phase)
	}
	now := s.cfg.Clock()
	summary := fmt.Sprintf("phase set to %s by %s", phase, actor)
	if reason != "" {
		summary += ": " + reason
	}
	if err := s.db.setPhase(ctx, caseID, phase, &Entry{CaseID: caseID, Key: newID("phase"), At: now, Kind: KindPhase, Phase: phase,
		Status: string(phase), Actor: actor, Summary: summary}); err != nil {
		return nil, err
	}
	s.cfg.Audit(ctx, actor, "case.phase", caseID, map[string]string{"phase": string(phase), "reason": reason})
	return s.Get(ctx, caseID)
}

// Close closes a case: it moves to post-incident and takes no new findings.
// A case whose playbook runs have not ended cannot be closed.
func (s *Service) Close(ctx context.Context, caseID, actor, reason string) (*Case, error) {
	if len(reason) > MaxNote {
		return nil, fmt.Errorf("the reason is longer than %d bytes", MaxNote)
	}
	c, err := s.db.getCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if c.Status == StatusClosed {
		return nil, fmt.Errorf("case %s: %w", caseID, ErrClosed)
	}
	if s.cfg.ActivePlaybookRuns != nil {
		active, err := s.cfg.ActivePlaybookRuns(ctx, caseID)
		if err != nil {
			return nil, err
		}
		if len(active) > 0 {
			return nil, fmt.Errorf("case %s has playbook runs that have not ended (%s): %w", caseID, strings.Join(active, ", "), ErrActiveWork)
		}
	}
	now := s.cfg.Clock()
	summary := "case closed by " + actor
	if reason != "" {
		summary += ": " + reason
	}
	if err := s.db.closeCase(ctx, caseID, actor, now, &Entry{CaseID: caseID, Key: "case/closed", At: now, Kind: KindCase,
		Phase: playbook.PhasePostIncident, Status: "closed", Actor: actor, Summary: summary}); err != nil {
		return nil, err
	}
	s.cfg.Audit(ctx, actor, "case.close", caseID, map[string]string{"reason": reason})
	return s.Get(ctx, caseID)
}

// ErrActiveWork is returned when a case cannot be closed because work on it
// has not ended.
var ErrActiveWork = errors.New("cancel them or let them end first")

// FindingResult says where a finding was recorded.
type FindingResult struct {
	// CaseID is the case the finding is on.
	CaseID string
	// CaseCreated is true when the finding opened the case.
	CaseCreated bool
	// Duplicate is true when this finding version was recorded before; it
	// was not recorded again. Rule and PlaybookRunID then say what the
	// first receipt did.
	Duplicate bool
	// Rule and PlaybookRunID are those of the first receipt of a duplicate.
	Rule, PlaybookRunID string
}

// RecordFinding records a finding version on a case: on the open case about
// the same resource or holding the same finding id, or on a new case. A
// version seen before is not recorded again.
func (s *Service) RecordFinding(ctx context.Context, f *finding.Finding, receivedAt time.Time, via string) (*FindingResult, error) {
	if receivedAt.IsZero() {
		receivedAt = s.cfg.Clock()
	}
	res, err := s.db.recordFinding(ctx, f, ResourceKey(f), receivedAt, via)
	if err != nil {
		return nil, err
	}
	if !res.Duplicate {
		s.cfg.Audit(ctx, via, "case.finding", res.CaseID, map[string]any{"finding": f.ID, "type": f.Type, "updated_at": f.UpdatedAt,
			"severity": f.Severity, "case_created": res.CaseCreated})
	}
	return res, nil
}

// LinkFinding records the rule a finding version matched and the playbook
// run it started or proposed.
func (s *Service) LinkFinding(ctx context.Context, f *finding.Finding, rule, playbookRunID string) error {
	return s.db.linkFinding(ctx, f.DedupKey(), rule, playbookRunID)
}

// PlaybookRunsOfCase returns the playbook runs named on a case's timeline.
func (s *Service) PlaybookRunsOfCase(ctx context.Context, caseID string) ([]string, error) {
	return s.db.playbookRunsOfCase(ctx, caseID)
}

func phaseList() string {
	names := make([]string, len(playbook.Phases))
	for i, p := range playbook.Phases {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// PhaseIndex is a phase's position in process order, -1 when unknown.
func PhaseIndex(p playbook.Phase) int { return slices.Index(playbook.Phases, p) }
