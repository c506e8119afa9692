package cases

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// The package's tables. Each migration is one statement, in portable SQL.
func init() {
	store.RegisterMigration("cases-001-cases", `CREATE TABLE cases (
		id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL, phase TEXT NOT NULL,
		severity DOUBLE PRECISION NOT NULL, resource TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
		closed_by TEXT NOT NULL, closed_at BIGINT NOT NULL)`)
	store.RegisterMigration("cases-002-cases-resource", `CREATE INDEX cases_resource ON cases (resource, status)`)
	store.RegisterMigration("cases-003-cases-created", `CREATE INDEX cases_created ON cases (created_at)`)
	store.RegisterMigration("cases-004-findings", `CREATE TABLE case_findings (
		dedup_key TEXT PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(id), finding_id TEXT NOT NULL,
		resource TEXT NOT NULL, received_at BIGINT NOT NULL, via TEXT NOT NULL, rule TEXT NOT NULL, playbook_run_id TEXT NOT NULL,
		finding_json TEXT NOT NULL)`)
	store.RegisterMigration("cases-005-findings-case", `CREATE INDEX case_findings_case ON case_findings (case_id, received_at)`)
	store.RegisterMigration("cases-006-findings-id", `CREATE INDEX case_findings_id ON case_findings (finding_id)`)
	store.RegisterMigration("cases-007-timeline", `CREATE TABLE case_timeline (
		case_id TEXT NOT NULL REFERENCES cases(id), seq BIGINT NOT NULL, entry_key TEXT NOT NULL, at BIGINT NOT NULL,
		kind TEXT NOT NULL, phase TEXT NOT NULL, status TEXT NOT NULL, actor TEXT NOT NULL, summary TEXT NOT NULL,
		playbook_run_id TEXT NOT NULL, step_id TEXT NOT NULL, run_id TEXT NOT NULL, finding_id TEXT NOT NULL,
		evidence_ids TEXT NOT NULL, detail_json TEXT NOT NULL, PRIMARY KEY (case_id, seq))`)
	store.RegisterMigration("cases-008-timeline-key", `CREATE UNIQUE INDEX case_timeline_key ON case_timeline (case_id, entry_key)`)
	// Reports list the runs operators attached to a case by hand.
	store.RegisterMigration("cases-009-runs-case", `CREATE INDEX runs_case ON runs (case_id)`)
}

// sqlStore is the case tables.
type sqlStore struct {
	w, r *sql.DB
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

type scanner interface{ Scan(...any) error }

const caseCols = `id, title, status, phase, severity, resource, created_by, created_at, closed_by, closed_at`

func scanCase(sc scanner) (*Case, error) {
	var c Case
	var status, phase string
	var created, closed int64
	if err := sc.Scan(&c.ID, &c.Title, &status, &phase, &c.Severity, &c.Resource, &c.CreatedBy, &created, &c.ClosedBy, &closed); err != nil {
		return nil, err
	}
	c.Status, c.Phase, c.CreatedAt, c.ClosedAt = Status(status), playbook.Phase(phase), tm(created), tm(closed)
	return &c, nil
}

func insertCase(ctx context.Context, tx *sql.Tx, c *Case) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO cases (`+caseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Title, string(c.Status), string(c.Phase), c.Severity, c.Resource, c.CreatedBy, ns(c.CreatedAt), c.ClosedBy, ns(c.ClosedAt))
	return err
}

func (s *sqlStore) createCase(ctx context.Context, c *Case, entries []*Entry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := insertCase(ctx, tx, c); err != nil {
			return err
		}
		for _, e := range entries {
			e.CaseID = c.ID
			if e.Key == "" {
				e.Key = newID("entry")
			}
			if _, err := insertEntry(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqlStore) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cases: %w", err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cases: %w", err)
	}
	return nil
}

func (s *sqlStore) getCase(ctx context.Context, id string) (*Case, error) {
	c, err := scanCase(s.r.QueryRowContext(ctx, `SELECT `+caseCols+` FROM cases WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("case %q: %w", id, ErrNotFound)
	}
	return c, err
}

func (s *sqlStore) listCases(ctx context.Context, o ListOptions) ([]*Case, error) {
	q := `SELECT ` + caseCols + ` FROM cases`
	args := []any{}
	if !o.IncludeClosed {
		q += ` WHERE status = ?`
		args = append(args, string(StatusOpen))
	}
	q += ` ORDER BY created_at DESC, id LIMIT ?`
	args = append(args, o.Limit)
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

const entryCols = `case_id, seq, entry_key, at, kind, phase, status, actor, summary, playbook_run_id, step_id, run_id, finding_id, evidence_ids, detail_json`

// insertEntry adds e unless its key exists; it reports whether it did.
func insertEntry(ctx context.Context, tx *sql.Tx, e *Entry) (bool, error) {
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
	_, err := tx.ExecContext(ctx, `INSERT INTO case_timeline (`+entryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.CaseID, e.Seq, e.Key, ns(e.At), string(e.Kind), string(e.Phase), e.Status, e.Actor, e.Summary, e.PlaybookRunID, e.StepID,
		e.RunID, e.FindingID, strings.Join(e.EvidenceIDs, ","), detail)
	return err == nil, err
}

func scanEntry(sc scanner) (*Entry, error) {
	var e Entry
	var at int64
	var kind, phase, evidence, detail string
	if err := sc.Scan(&e.CaseID, &e.Seq, &e.Key, &at, &kind, &phase, &e.Status, &e.Actor, &e.Summary, &e.PlaybookRunID, &e.StepID,
		&e.RunID, &e.FindingID, &evidence, &detail); err != nil {
		return nil, err
	}
	e.At, e.Kind, e.Phase = tm(at), Kind(kind), playbook.Phase(phase)
	if evidence != "" {
		e.EvidenceIDs = strings.Split(evidence, ",")
	}
	if detail != "{}" {
		e.Detail = json.RawMessage(detail)
	}
	return &e, nil
}

// timeline returns a case's entries in seq order; stepsOnly keeps the
// entries timings read.
func (s *sqlStore) timeline(ctx context.Context, caseID string, stepsOnly bool) ([]*Entry, error) {
	q := `SELECT ` + entryCols + ` FROM case_timeline WHERE case_id = ?`
	args := []any{caseID}
	if stepsOnly {
		q += ` AND kind IN (?, ?)`
		args = append(args, string(KindStep), string(KindRollback))
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *sqlStore) record(ctx context.Context, e *Entry) (bool, error) {
	var added bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		c, err := scanCase(tx.QueryRowContext(ctx, `SELECT `+caseCols+` FROM cases WHERE id = ?`, e.CaseID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("case %q: %w", e.CaseID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if added, err = insertEntry(ctx, tx, e); err != nil || !added {
			return err
		}
		if e.Kind == KindStep && c.Status == StatusOpen && PhaseIndex(e.Phase) > PhaseIndex(c.Phase) &&
			e.Phase != playbook.PhasePostIncident {
			return advance(ctx, tx, c.ID, e.Phase, e.At, e.Actor)
		}
		return nil
	})
	return added, err
}

// advance moves a case forward to phase, with a timeline entry.
func advance(ctx context.Context, tx *sql.Tx, caseID string, phase playbook.Phase, at time.Time, actor string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE cases SET phase = ? WHERE id = ?`, string(phase), caseID); err != nil {
		return err
	}
	_, err := insertEntry(ctx, tx, &Entry{CaseID: caseID, Key: "phase/auto/" + string(phase), At: at, Kind: KindPhase, Phase: phase,
		Status: string(phase), Actor: actor, Summary: "the case entered the " + string(phase) + " phase"})
	return err
}

func (s *sqlStore) setPhase(ctx context.Context, caseID string, phase playbook.Phase, e *Entry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE cases SET phase = ? WHERE id = ? AND status = ?`, string(phase), caseID, string(StatusOpen)); err != nil {
			return err
		}
		_, err := insertEntry(ctx, tx, e)
		return err
	})
}

func (s *sqlStore) closeCase(ctx context.Context, caseID, actor string, at time.Time, e *Entry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cases SET status = ?, phase = ?, closed_by = ?, closed_at = ? WHERE id = ? AND status = ?`,
			string(StatusClosed), string(playbook.PhasePostIncident), actor, ns(at), caseID, string(StatusOpen))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("case %s: %w", caseID, ErrClosed)
		}
		_, err = insertEntry(ctx, tx, e)
		return err
	})
}

func (s *sqlStore) recordFinding(ctx context.Context, f *finding.Finding, resource string, receivedAt time.Time, via string) (*FindingResult, error) {
	fj, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	res := &FindingResult{}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT case_id, rule, playbook_run_id FROM case_findings WHERE dedup_key = ?`, f.DedupKey()).
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
			OR EXISTS (SELECT 1 FROM case_findings f WHERE f.case_id = c.id AND f.finding_id = ?)) ORDER BY c.created_at DESC LIMIT 1`,
			string(StatusOpen), resource, f.ID).Scan(&res.CaseID, &sev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			c := &Case{ID: newID("case"), Title: findingTitle(f), Status: StatusOpen, Phase: playbook.PhaseDetect, Severity: f.Severity,
				Resource: resource, CreatedBy: via, CreatedAt: receivedAt}
			if err := insertCase(ctx, tx, c); err != nil {
				return err
			}
			if _, err := insertEntry(ctx, tx, &Entry{CaseID: c.ID, Key: "case/opened", At: receivedAt, Kind: KindCase,
				Phase: playbook.PhaseDetect, Status: "opened", Actor: via, Summary: "case opened for " + resource}); err != nil {
				return err
			}
			res.CaseID, res.CaseCreated = c.ID, true
		case err != nil:
			return err
		case f.Severity > sev:
			if _, err := tx.ExecContext(ctx, `UPDATE cases SET severity = ? WHERE id = ?`, f.Severity, res.CaseID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO case_findings (dedup_key, case_id, finding_id, resource, received_at, via, rule, playbook_run_id, finding_json)
			VALUES (?, ?, ?, ?, ?, ?, '', '', ?)`, f.DedupKey(), res.CaseID, f.ID, resource, ns(receivedAt), via, string(fj)); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]any{"type": f.Type, "severity": f.Severity, "source": f.Source, "account": f.Account,
			"region": f.Region, "updated_at": f.UpdatedAt, "first_seen": f.FirstSeen})
		_, err = insertEntry(ctx, tx, &Entry{CaseID: res.CaseID, Key: "finding/" + f.DedupKey(), At: receivedAt, Kind: KindFinding,
			Phase: playbook.PhaseDetect, Status: "received", Actor: via, FindingID: f.ID, Detail: detail,
			Summary: fmt.Sprintf("%s finding %s (%s %.1f): %s", f.Source, f.Type, severityLabel(f.Severity), f.Severity, f.Title)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
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
	rows, err := s.r.QueryContext(ctx, `SELECT dedup_key, case_id, resource, received_at, rule, playbook_run_id, finding_json
		FROM case_findings WHERE case_id = ? ORDER BY received_at, dedup_key`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*FindingRecord
	for rows.Next() {
		var fr FindingRecord
		var received int64
		var fj string
		if err := rows.Scan(&fr.DedupKey, &fr.CaseID, &fr.Resource, &received, &fr.Rule, &fr.PlaybookRunID, &fj); err != nil {
			return nil, err
		}
		fr.ReceivedAt = tm(received)
		fr.Finding = &finding.Finding{}
		if err := json.Unmarshal([]byte(fj), fr.Finding); err != nil {
			return nil, fmt.Errorf("case %s finding %s: %w", caseID, fr.DedupKey, err)
		}
		out = append(out, &fr)
	}
	return out, rows.Err()
}

func (s *sqlStore) linkFinding(ctx context.Context, dedupKey, rule, playbookRunID string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE case_findings SET rule = ?, playbook_run_id = ? WHERE dedup_key = ?`, rule, playbookRunID, dedupKey)
	return err
}

// runsOfCase returns the ids of the runs linked to a case, oldest first.
func (s *sqlStore) runsOfCase(ctx context.Context, caseID string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM runs WHERE case_id = ? ORDER BY created_at, id`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *sqlStore) playbookRunsOfCase(ctx context.Context, caseID string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT playbook_run_id FROM case_timeline WHERE case_id = ? AND playbook_run_id <> '' ORDER BY playbook_run_id`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
