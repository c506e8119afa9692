package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The case tables. Each migration is one statement, in portable SQL; the
// names are those the cases package registered before the tables moved
// here, so existing databases do not run them again.
func init() {
	RegisterMigration("cases-001-cases", `CREATE TABLE cases (
		id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL, phase TEXT NOT NULL,
		severity DOUBLE PRECISION NOT NULL, resource TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
		closed_by TEXT NOT NULL, closed_at BIGINT NOT NULL)`)
	RegisterMigration("cases-002-cases-resource", `CREATE INDEX cases_resource ON cases (resource, status)`)
	RegisterMigration("cases-003-cases-created", `CREATE INDEX cases_created ON cases (created_at)`)
	RegisterMigration("cases-004-findings", `CREATE TABLE case_findings (
		dedup_key TEXT PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(id), finding_id TEXT NOT NULL,
		resource TEXT NOT NULL, received_at BIGINT NOT NULL, via TEXT NOT NULL, rule TEXT NOT NULL, playbook_run_id TEXT NOT NULL,
		finding_json TEXT NOT NULL)`)
	RegisterMigration("cases-005-findings-case", `CREATE INDEX case_findings_case ON case_findings (case_id, received_at)`)
	RegisterMigration("cases-006-findings-id", `CREATE INDEX case_findings_id ON case_findings (finding_id)`)
	RegisterMigration("cases-007-timeline", `CREATE TABLE case_timeline (
		case_id TEXT NOT NULL REFERENCES cases(id), seq BIGINT NOT NULL, entry_key TEXT NOT NULL, at BIGINT NOT NULL,
		kind TEXT NOT NULL, phase TEXT NOT NULL, status TEXT NOT NULL, actor TEXT NOT NULL, summary TEXT NOT NULL,
		playbook_run_id TEXT NOT NULL, step_id TEXT NOT NULL, run_id TEXT NOT NULL, finding_id TEXT NOT NULL,
		evidence_ids TEXT NOT NULL, detail_json TEXT NOT NULL, PRIMARY KEY (case_id, seq))`)
	RegisterMigration("cases-008-timeline-key", `CREATE UNIQUE INDEX case_timeline_key ON case_timeline (case_id, entry_key)`)
	// Reports list the runs operators attached to a case by hand.
	RegisterMigration("cases-009-runs-case", `CREATE INDEX runs_case ON runs (case_id)`)
	// The trace an entry was written in, so a report can name the trace of
	// each response.
	RegisterMigration("cases-010-timeline-trace", `ALTER TABLE case_timeline ADD COLUMN trace_id TEXT NOT NULL DEFAULT ''`)
}

// ErrCaseClosed is returned when a closed case is closed again.
var ErrCaseClosed = errors.New("the case is closed")

// The case statuses, as stored.
const (
	CaseOpen   = "open"
	CaseClosed = "closed"
)

// Case is a stored case. The cases package gives its fields their types
// and meaning.
type Case struct {
	ID, Title, Status, Phase string
	Severity                 float64
	Resource, CreatedBy      string
	CreatedAt                time.Time
	ClosedBy                 string
	ClosedAt                 time.Time
}

// CaseEntry is one stored entry of a case's timeline. Key is unique within
// the case; Seq is set when the entry is stored.
type CaseEntry struct {
	CaseID, Key                             string
	Seq                                     int64
	At                                      time.Time
	Kind, Phase, Status, Actor, Summary     string
	PlaybookRunID, StepID, RunID, FindingID string
	EvidenceIDs                             []string
	Detail                                  json.RawMessage
	// TraceID is the W3C trace id (32 hex digits) of the work that wrote
	// the entry, empty when it ran in no trace.
	TraceID string
}

// CaseFinding is one finding version stored on a case.
type CaseFinding struct {
	DedupKey, CaseID, FindingID, Resource string
	ReceivedAt                            time.Time
	Via, Rule, PlaybookRunID              string
	// FindingJSON is the normalised finding.
	FindingJSON []byte
}

// NewCaseFinding is a finding version to record: on the open case about
// Resource or holding FindingID, or else on Case, a new case opened with
// OpenedEntry. FindingEntry goes on the timeline of the case it lands on
// (its CaseID is set then).
type NewCaseFinding struct {
	Finding      CaseFinding
	Severity     float64
	Case         *Case
	OpenedEntry  *CaseEntry
	FindingEntry *CaseEntry
}

// CaseFindingResult says where a finding version was recorded.
type CaseFindingResult struct {
	CaseID              string
	CaseCreated         bool
	Duplicate           bool
	Rule, PlaybookRunID string
}

const caseCols = `id, title, status, phase, severity, resource, created_by, created_at, closed_by, closed_at`

func scanCase(sc scanner) (*Case, error) {
	var c Case
	var created, closed int64
	if err := sc.Scan(&c.ID, &c.Title, &c.Status, &c.Phase, &c.Severity, &c.Resource, &c.CreatedBy, &created, &c.ClosedBy, &closed); err != nil {
		return nil, err
	}
	c.CreatedAt, c.ClosedAt = tm(created), tm(closed)
	return &c, nil
}

func insertCase(ctx context.Context, tx *sql.Tx, c *Case) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO cases (`+caseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Title, c.Status, c.Phase, c.Severity, c.Resource, c.CreatedBy, ns(c.CreatedAt), c.ClosedBy, ns(c.ClosedAt))
	return err
}

// CreateCase stores a case with its first timeline entries (each with a
// key) in one transaction.
func (s *SQL) CreateCase(ctx context.Context, c *Case, entries []*CaseEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := insertCase(ctx, tx, c); err != nil {
			return err
		}
		for _, e := range entries {
			e.CaseID = c.ID
			if _, err := insertEntry(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// tx runs f in a write transaction (see writeTxOn: on PostgreSQL it is
// SERIALIZABLE and run again when concurrent writers abort it, so f
// computes what it writes from what it reads within it).
func (s *SQL) tx(ctx context.Context, f func(*sql.Tx) error) error {
	return s.writeTx(ctx, f)
}

// GetCase returns one case or ErrNotFound.
func (s *SQL) GetCase(ctx context.Context, id string) (*Case, error) {
	c, err := scanCase(s.r.QueryRowContext(ctx, `SELECT `+caseCols+` FROM cases WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

// ListCases returns up to limit cases, newest first; only open ones
// unless includeClosed.
func (s *SQL) ListCases(ctx context.Context, includeClosed bool, limit int) ([]*Case, error) {
	q := `SELECT ` + caseCols + ` FROM cases`
	args := []any{}
	if !includeClosed {
		q += ` WHERE status = ?`
		args = append(args, CaseOpen)
	}
	q += ` ORDER BY created_at DESC, id LIMIT ?`
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Case
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

const entryCols = `case_id, seq, entry_key, at, kind, phase, status, actor, summary, playbook_run_id, step_id, run_id, finding_id, evidence_ids, detail_json, trace_id`

// insertEntry adds e unless its key exists; it reports whether it did.
func insertEntry(ctx context.Context, tx *sql.Tx, e *CaseEntry) (bool, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM case_timeline WHERE case_id = ? AND entry_key = ?`, e.CaseID, e.Key).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM case_timeline WHERE case_id = ?`, e.CaseID).Scan(&e.Seq); err != nil {
		return false, err
	}
	detail := string(e.Detail)
	if detail == "" || !json.Valid(e.Detail) {
		detail = "{}"
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO case_timeline (`+entryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.CaseID, e.Seq, e.Key, ns(e.At), e.Kind, e.Phase, e.Status, e.Actor, e.Summary, e.PlaybookRunID, e.StepID,
		e.RunID, e.FindingID, strings.Join(e.EvidenceIDs, ","), detail, e.TraceID)
	return err == nil, err
}

func scanEntry(sc scanner) (*CaseEntry, error) {
	var e CaseEntry
	var at int64
	var evidence, detail string
	if err := sc.Scan(&e.CaseID, &e.Seq, &e.Key, &at, &e.Kind, &e.Phase, &e.Status, &e.Actor, &e.Summary, &e.PlaybookRunID, &e.StepID,
		&e.RunID, &e.FindingID, &evidence, &detail, &e.TraceID); err != nil {
		return nil, err
	}
	e.At = tm(at)
	if evidence != "" {
		e.EvidenceIDs = strings.Split(evidence, ",")
	}
	if detail != "{}" {
		e.Detail = json.RawMessage(detail)
	}
	return &e, nil
}

// Timeline returns a case's entries in seq order: all of them, or those
// of the given kinds.
func (s *SQL) Timeline(ctx context.Context, caseID string, kinds ...string) ([]*CaseEntry, error) {
	q := `SELECT ` + entryCols + ` FROM case_timeline WHERE case_id = ?`
	args := []any{caseID}
	if len(kinds) > 0 {
		q += ` AND kind IN (?` + strings.Repeat(", ?", len(kinds)-1) + `)`
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*CaseEntry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RecordCaseEntry adds e to its case's timeline unless its key is there,
// and reports whether it did; ErrNotFound when the case does not exist.
// When it did, then (which may be nil) is asked, in the same transaction,
// whether the entry moves the case to a later phase: it returns the phase
// entry to record (its Phase becomes the case's), or nil.
func (s *SQL) RecordCaseEntry(ctx context.Context, e *CaseEntry, then func(c *Case, e *CaseEntry) *CaseEntry) (bool, error) {
	var added bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		c, err := scanCase(tx.QueryRowContext(ctx, `SELECT `+caseCols+` FROM cases WHERE id = ?`, e.CaseID))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if added, err = insertEntry(ctx, tx, e); err != nil || !added || then == nil {
			return err
		}
		if next := then(c, e); next != nil {
			next.CaseID = c.ID
			if _, err := tx.ExecContext(ctx, `UPDATE cases SET phase = ? WHERE id = ?`, next.Phase, c.ID); err != nil {
				return err
			}
			_, err = insertEntry(ctx, tx, next)
			return err
		}
		return nil
	})
	return added, err
}

// SetCasePhase moves an open case to phase, with a timeline entry.
func (s *SQL) SetCasePhase(ctx context.Context, caseID, phase string, e *CaseEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE cases SET phase = ? WHERE id = ? AND status = ?`, phase, caseID, CaseOpen); err != nil {
			return err
		}
		_, err := insertEntry(ctx, tx, e)
		return err
	})
}

// CloseCase closes an open case, which enters phase, with a timeline
// entry; ErrCaseClosed when it is not open.
func (s *SQL) CloseCase(ctx context.Context, caseID, phase, actor string, at time.Time, e *CaseEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cases SET status = ?, phase = ?, closed_by = ?, closed_at = ? WHERE id = ? AND status = ?`,
			CaseClosed, phase, actor, ns(at), caseID, CaseOpen)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrCaseClosed
		}
		_, err = insertEntry(ctx, tx, e)
		return err
	})
}

// RecordCaseFinding records a finding version in one transaction (see
// NewCaseFinding). A version recorded before (same DedupKey) is not
// recorded again: the result says Duplicate, with the first receipt's
// case, rule and playbook run. A more severe finding raises its case's
// severity.
func (s *SQL) RecordCaseFinding(ctx context.Context, nf *NewCaseFinding) (*CaseFindingResult, error) {
	f := nf.Finding
	res := &CaseFindingResult{}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		*res = CaseFindingResult{}
		err := tx.QueryRowContext(ctx, `SELECT case_id, rule, playbook_run_id FROM case_findings WHERE dedup_key = ?`, f.DedupKey).
			Scan(&res.CaseID, &res.Rule, &res.PlaybookRunID)
		if err == nil {
			res.Duplicate = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var sev float64
		err = tx.QueryRowContext(ctx, `SELECT c.id, c.severity FROM cases c WHERE c.status = ? AND (c.resource = ?
			OR EXISTS (SELECT 1 FROM case_findings f WHERE f.case_id = c.id AND f.finding_id = ?)) ORDER BY c.created_at DESC LIMIT 1`, CaseOpen, f.Resource, f.FindingID).Scan(&res.CaseID, &sev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := insertCase(ctx, tx, nf.Case); err != nil {
				return err
			}
			nf.OpenedEntry.CaseID = nf.Case.ID
			if _, err := insertEntry(ctx, tx, nf.OpenedEntry); err != nil {
				return err
			}
			res.CaseID, res.CaseCreated = nf.Case.ID, true
		case err != nil:
			return err
		case nf.Severity > sev:
			if _, err := tx.ExecContext(ctx, `UPDATE cases SET severity = ? WHERE id = ?`, nf.Severity, res.CaseID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO case_findings (dedup_key, case_id, finding_id, resource, received_at, via, rule, playbook_run_id, finding_json)
			VALUES (?, ?, ?, ?, ?, ?, '', '', ?)`, f.DedupKey, res.CaseID, f.FindingID, f.Resource, ns(f.ReceivedAt), f.Via, string(f.FindingJSON)); err != nil {
			return err
		}
		nf.FindingEntry.CaseID = res.CaseID
		_, err = insertEntry(ctx, tx, nf.FindingEntry)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// CaseFindings returns the finding versions of a case in the order they
// were received.
func (s *SQL) CaseFindings(ctx context.Context, caseID string) ([]*CaseFinding, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT dedup_key, case_id, resource, received_at, rule, playbook_run_id, finding_json
		FROM case_findings WHERE case_id = ? ORDER BY received_at, dedup_key`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*CaseFinding
	for rows.Next() {
		var fr CaseFinding
		var received int64
		var fj string
		if err := rows.Scan(&fr.DedupKey, &fr.CaseID, &fr.Resource, &received, &fr.Rule, &fr.PlaybookRunID, &fj); err != nil {
			return nil, err
		}
		fr.ReceivedAt, fr.FindingJSON = tm(received), []byte(fj)
		out = append(out, &fr)
	}
	return out, rows.Err()
}

// LinkCaseFinding records the rule a finding version matched and the
// playbook run it started or proposed.
func (s *SQL) LinkCaseFinding(ctx context.Context, dedupKey, rule, playbookRunID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE case_findings SET rule = ?, playbook_run_id = ? WHERE dedup_key = ?`, rule, playbookRunID, dedupKey)
		return err
	})
}

// RunsOfCase returns the ids of the runs linked to a case, oldest first.
func (s *SQL) RunsOfCase(ctx context.Context, caseID string) ([]string, error) {
	return s.ids(ctx, `SELECT id FROM runs WHERE case_id = ? ORDER BY created_at, id`, caseID)
}

// PlaybookRunsOfCase returns the playbook runs named on a case's timeline.
func (s *SQL) PlaybookRunsOfCase(ctx context.Context, caseID string) ([]string, error) {
	return s.ids(ctx, `SELECT DISTINCT playbook_run_id FROM case_timeline WHERE case_id = ? AND playbook_run_id <> '' ORDER BY playbook_run_id`, caseID)
}

func (s *SQL) ids(ctx context.Context, q string, args ...any) ([]string, error) {
	return queryStrings(ctx, s.r, q, args...)
}
