package cases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// sqlStore is the store's case tables (store.CaseStore) in this package's types;
// the decisions (which phase a step moves a case to, a new case's title)
// are made here, the SQL is the store's.
type sqlStore struct {
	t store.CaseStore
	// changes is told of each case written through this store.
	changes *Changes
}

func toStoreCase(c *Case) *store.Case {
	return &store.Case{ID: c.ID, Title: c.Title, Status: string(c.Status), Phase: string(c.Phase), Severity: c.Severity,
		Resource: c.Resource, CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt, ClosedBy: c.ClosedBy, ClosedAt: c.ClosedAt}
}

func fromStoreCase(c *store.Case) *Case {
	return &Case{ID: c.ID, Title: c.Title, Status: Status(c.Status), Phase: playbook.Phase(c.Phase), Severity: c.Severity,
		Resource: c.Resource, CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt, ClosedBy: c.ClosedBy, ClosedAt: c.ClosedAt}
}

// toStoreEntry converts an entry to store; an entry that names no trace
// takes the one it is written in.
func toStoreEntry(ctx context.Context, e *Entry) *store.CaseEntry {
	if e.TraceID == "" {
		e.TraceID = traceIDOf(ctx)
	}
	return &store.CaseEntry{CaseID: e.CaseID, Key: e.Key, Seq: e.Seq, At: e.At, Kind: string(e.Kind), Phase: string(e.Phase),
		Status: e.Status, Actor: e.Actor, Summary: e.Summary, PlaybookRunID: e.PlaybookRunID, StepID: e.StepID, RunID: e.RunID,
		FindingID: e.FindingID, EvidenceIDs: e.EvidenceIDs, Detail: e.Detail, TraceID: e.TraceID}
}

// traceIDOf is the W3C trace id of the span in ctx, or "" outside one.
func traceIDOf(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

func fromStoreEntry(e *store.CaseEntry) *Entry {
	return &Entry{CaseID: e.CaseID, Key: e.Key, Seq: e.Seq, At: e.At, Kind: Kind(e.Kind), Phase: playbook.Phase(e.Phase),
		Status: e.Status, Actor: e.Actor, Summary: e.Summary, PlaybookRunID: e.PlaybookRunID, StepID: e.StepID, RunID: e.RunID,
		FindingID: e.FindingID, EvidenceIDs: e.EvidenceIDs, Detail: e.Detail, TraceID: e.TraceID}
}

// stored writes back what the store set on a stored entry (its seq and
// case).
func stored(e *Entry, se *store.CaseEntry) { e.Seq, e.CaseID = se.Seq, se.CaseID }

func (s *sqlStore) createCase(ctx context.Context, c *Case, entries []*Entry) error {
	ses := make([]*store.CaseEntry, len(entries))
	for i, e := range entries {
		if e.Key == "" {
			e.Key = newID("entry")
		}
		ses[i] = toStoreEntry(ctx, e)
	}
	if err := s.t.CreateCase(ctx, toStoreCase(c), ses); err != nil {
		return err
	}
	for i, e := range entries {
		stored(e, ses[i])
	}
	s.changes.notify(c.ID)
	return nil
}

func (s *sqlStore) getCase(ctx context.Context, id string) (*Case, error) {
	c, err := s.t.GetCase(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("case %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return fromStoreCase(c), nil
}

func (s *sqlStore) listCases(ctx context.Context, o ListOptions) ([]*Case, error) {
	cs, err := s.t.ListCases(ctx, o.IncludeClosed, o.Limit)
	if err != nil {
		return nil, err
	}
	var out []*Case
	for _, c := range cs {
		out = append(out, fromStoreCase(c))
	}
	return out, nil
}

// timeline returns a case's entries in seq order; stepsOnly keeps the
// entries timings read.
func (s *sqlStore) timeline(ctx context.Context, caseID string, stepsOnly bool) ([]*Entry, error) {
	var kinds []string
	if stepsOnly {
		kinds = []string{string(KindStep), string(KindRollback)}
	}
	es, err := s.t.Timeline(ctx, caseID, kinds...)
	if err != nil {
		return nil, err
	}
	var out []*Entry
	for _, e := range es {
		out = append(out, fromStoreEntry(e))
	}
	return out, nil
}

// record adds e unless its key is on the timeline; a step of a later phase
// moves an open case forward to that phase, with a timeline entry.
func (s *sqlStore) record(ctx context.Context, e *Entry) (bool, error) {
	se := toStoreEntry(ctx, e)
	added, err := s.t.RecordCaseEntry(ctx, se, func(sc *store.Case, _ *store.CaseEntry) *store.CaseEntry {
		c := fromStoreCase(sc)
		if e.Kind != KindStep || c.Status != StatusOpen || PhaseIndex(e.Phase) <= PhaseIndex(c.Phase) ||
			e.Phase == playbook.PhasePostIncident {
			return nil
		}
		return toStoreEntry(ctx, phaseEntry(c.ID, e.Phase, e.At, e.Actor))
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("case %q: %w", e.CaseID, ErrNotFound)
	}
	if err != nil {
		return false, err
	}
	stored(e, se)
	if added {
		s.changes.notify(e.CaseID)
	}
	return added, nil
}

// phaseEntry records that a case moved forward to phase on its own.
func phaseEntry(caseID string, phase playbook.Phase, at time.Time, actor string) *Entry {
	return &Entry{CaseID: caseID, Key: "phase/auto/" + string(phase), At: at, Kind: KindPhase, Phase: phase,
		Status: string(phase), Actor: actor, Summary: "the case entered the " + string(phase) + " phase"}
}

func (s *sqlStore) setPhase(ctx context.Context, caseID string, phase playbook.Phase, e *Entry) error {
	se := toStoreEntry(ctx, e)
	if err := s.t.SetCasePhase(ctx, caseID, string(phase), se); err != nil {
		return err
	}
	stored(e, se)
	s.changes.notify(caseID)
	return nil
}

func (s *sqlStore) closeCase(ctx context.Context, caseID, actor string, at time.Time, e *Entry) error {
	se := toStoreEntry(ctx, e)
	err := s.t.CloseCase(ctx, caseID, string(playbook.PhasePostIncident), actor, at, se)
	if errors.Is(err, store.ErrCaseClosed) {
		return fmt.Errorf("case %s: %w", caseID, ErrClosed)
	}
	if err != nil {
		return err
	}
	stored(e, se)
	s.changes.notify(caseID)
	return nil
}

func (s *sqlStore) recordFinding(ctx context.Context, f *finding.Finding, resource string, receivedAt time.Time, via string) (*FindingResult, error) {
	fj, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	c := &Case{ID: newID("case"), Title: findingTitle(f), Status: StatusOpen, Phase: playbook.PhaseDetect, Severity: f.Severity,
		Resource: resource, CreatedBy: via, CreatedAt: receivedAt}
	detail, _ := json.Marshal(map[string]any{"type": f.Type, "severity": f.Severity, "source": f.Source, "account": f.Account,
		"region": f.Region, "updated_at": f.UpdatedAt, "first_seen": f.FirstSeen})
	res, err := s.t.RecordCaseFinding(ctx, &store.NewCaseFinding{
		Finding: store.CaseFinding{DedupKey: f.DedupKey(), FindingID: f.ID, Resource: resource, ReceivedAt: receivedAt, Via: via,
			FindingJSON: fj},
		Severity: f.Severity,
		Case:     toStoreCase(c),
		OpenedEntry: toStoreEntry(ctx, &Entry{Key: "case/opened", At: receivedAt, Kind: KindCase,
			Phase: playbook.PhaseDetect, Status: "opened", Actor: via, Summary: "case opened for " + resource}),
		FindingEntry: toStoreEntry(ctx, &Entry{Key: "finding/" + f.DedupKey(), At: receivedAt, Kind: KindFinding,
			Phase: playbook.PhaseDetect, Status: "received", Actor: via, FindingID: f.ID, Detail: detail,
			Summary: fmt.Sprintf("%s finding %s (%s %.1f): %s", f.Source, f.Type, severityLabel(f.Severity), f.Severity, f.Title)}),
	})
	if err != nil {
		return nil, err
	}
	s.changes.notify(res.CaseID)
	return &FindingResult{CaseID: res.CaseID, CaseCreated: res.CaseCreated, Duplicate: res.Duplicate, Rule: res.Rule,
		PlaybookRunID: res.PlaybookRunID}, nil
}

// findingTitle names a case opened by a finding.
func findingTitle(f *finding.Finding) string {
	subject := f.InstanceID
	for _, s := range []string{f.AccessKeyID, f.Bucket, f.FunctionName, f.RoleName, f.UserName} {
		if subject == "" {
			subject = s
		}
	}
	title := f.Type
	if subject != "" {
		title += " on " + subject
	}
	if f.Account != "" {
		title += " in " + f.Account
	}
	if len(title) > MaxTitle {
		title = title[:MaxTitle]
	}
	return title
}

func (s *sqlStore) findings(ctx context.Context, caseID string) ([]*FindingRecord, error) {
	fs, err := s.t.CaseFindings(ctx, caseID)
	if err != nil {
		return nil, err
	}
	var out []*FindingRecord
	for _, sf := range fs {
		fr := &FindingRecord{DedupKey: sf.DedupKey, CaseID: sf.CaseID, Resource: sf.Resource, ReceivedAt: sf.ReceivedAt,
			Rule: sf.Rule, PlaybookRunID: sf.PlaybookRunID, Finding: &finding.Finding{}}
		if err := json.Unmarshal(sf.FindingJSON, fr.Finding); err != nil {
			return nil, fmt.Errorf("case %s finding %s: %w", caseID, fr.DedupKey, err)
		}
		out = append(out, fr)
	}
	return out, nil
}

func (s *sqlStore) linkFinding(ctx context.Context, dedupKey, rule, playbookRunID string) error {
	return s.t.LinkCaseFinding(ctx, dedupKey, rule, playbookRunID)
}

// runsOfCase returns the ids of the runs linked to a case, oldest first.
func (s *sqlStore) runsOfCase(ctx context.Context, caseID string) ([]string, error) {
	return s.t.RunsOfCase(ctx, caseID)
}

func (s *sqlStore) playbookRunsOfCase(ctx context.Context, caseID string) ([]string, error) {
	return s.t.PlaybookRunsOfCase(ctx, caseID)
}
