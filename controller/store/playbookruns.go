package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// playbookRunMigrations are the playbook runs' tables, one portable
// statement per migration, under the names the playbookrun package first
// registered them with.
var playbookRunMigrations = []migration{
	{name: "playbookrun-001-runs", sql: `CREATE TABLE playbook_runs (
		id TEXT PRIMARY KEY, playbook TEXT NOT NULL, version INTEGER NOT NULL, case_id TEXT NOT NULL, status TEXT NOT NULL,
		stopping TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL, started_at BIGINT NOT NULL,
		finished_at BIGINT NOT NULL, inputs_json TEXT NOT NULL, finding_json TEXT NOT NULL, rule TEXT NOT NULL,
		reason TEXT NOT NULL, error TEXT NOT NULL, approved_by TEXT NOT NULL, source TEXT NOT NULL, source_name TEXT NOT NULL)`},
	{name: "playbookrun-002-runs-status", sql: `CREATE INDEX playbook_runs_status ON playbook_runs (status)`},
	{name: "playbookrun-003-runs-case", sql: `CREATE INDEX playbook_runs_case ON playbook_runs (case_id, created_at)`},
	{name: "playbookrun-004-steps", sql: `CREATE TABLE playbook_steps (
		playbook_run_id TEXT NOT NULL REFERENCES playbook_runs(id), step_id TEXT NOT NULL, status TEXT NOT NULL,
		token TEXT NOT NULL, run_id TEXT NOT NULL, resolved_json TEXT NOT NULL, outputs_json TEXT NOT NULL,
		targets_json TEXT NOT NULL, error TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL,
		done_seq INTEGER NOT NULL, rollback_json TEXT NOT NULL, PRIMARY KEY (playbook_run_id, step_id))`},
	// Executors before idempotency keys found a step's run by its reason;
	// runs-004-drop-reason-index drops this index again.
	{name: "playbookrun-005-runs-reason", sql: `CREATE INDEX runs_reason ON runs (reason)`},
	// The W3C trace context a playbook run's steps continue (see
	// PlaybookRun.Traceparent).
	{name: "playbookrun-006-runs-traceparent", sql: `ALTER TABLE playbook_runs ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''`},
	{name: "playbookrun-007-runs-tracestate", sql: `ALTER TABLE playbook_runs ADD COLUMN tracestate TEXT NOT NULL DEFAULT ''`},
}

// PlaybookRun is the stored header of a playbook run. The store keeps its
// JSON columns as the playbookrun package writes them.
type PlaybookRun struct {
	ID         string
	Playbook   string
	Version    int
	CaseID     string
	Status     string
	Stopping   string
	CreatedBy  string
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// InputsJSON is the bound inputs, a JSON object.
	InputsJSON []byte
	// FindingJSON is the finding that started the run (empty: none).
	FindingJSON []byte
	Rule        string
	Reason      string
	Error       string
	ApprovedBy  string
	// Source is the playbook's YAML as it was when the run started, and
	// SourceName its file name.
	Source     []byte
	SourceName string
	// Traceparent and Tracestate are the W3C trace context of the span
	// that started the run (empty: none); every step's span is its child,
	// also after a restart. They never change.
	Traceparent, Tracestate string
}

// PlaybookStep is the stored state of one step of a playbook run.
type PlaybookStep struct {
	StepID string
	Status string
	// Token is the idempotency key of the step's run, stored before the
	// run is created.
	Token        string
	RunID        string
	ResolvedJSON []byte
	OutputsJSON  []byte
	TargetsJSON  []byte
	RollbackJSON []byte
	Error        string
	StartedAt    time.Time
	FinishedAt   time.Time
	DoneSeq      int
}

// PlaybookRunFilter selects playbook runs for ListPlaybookRuns.
type PlaybookRunFilter struct {
	// CaseID limits the list to one case (empty: every case).
	CaseID string
	// Statuses limits the list to runs in these statuses (empty: any).
	Statuses []string
	// Limit caps the number of runs.
	Limit int
}

// PlaybookRuns is the persistence of playbook runs and their steps;
// *SQL implements it.
type PlaybookRuns interface {
	// CreatePlaybookRun stores a new playbook run with its steps in one
	// transaction.
	CreatePlaybookRun(ctx context.Context, r *PlaybookRun, steps []*PlaybookStep) error
	// UpdatePlaybookRun stores a playbook run's mutable fields: status,
	// stopping, started and finished times, error and approver.
	UpdatePlaybookRun(ctx context.Context, r *PlaybookRun) error
	// TransitionPlaybookRun is UpdatePlaybookRun done only while the stored
	// run still has the status from; it reports whether it was.
	TransitionPlaybookRun(ctx context.Context, r *PlaybookRun, from string) (bool, error)
	// UpdatePlaybookStep stores a step's mutable fields.
	UpdatePlaybookStep(ctx context.Context, playbookRunID string, st *PlaybookStep) error
	// GetPlaybookRun returns a playbook run and its stored steps (in no
	// particular order), or ErrNotFound.
	GetPlaybookRun(ctx context.Context, id string) (*PlaybookRun, []*PlaybookStep, error)
	// ListPlaybookRuns returns playbook runs newest first, without steps.
	ListPlaybookRuns(ctx context.Context, f PlaybookRunFilter) ([]*PlaybookRun, error)
	// PlaybookRunIDs names the playbook runs in a status, oldest first.
	PlaybookRunIDs(ctx context.Context, status string) ([]string, error)
}

var _ PlaybookRuns = (*SQL)(nil)

// CreatePlaybookRun implements PlaybookRuns.
func (s *SQL) CreatePlaybookRun(ctx context.Context, r *PlaybookRun, steps []*PlaybookStep) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO playbook_runs (`+playbookRunCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Playbook, r.Version, r.CaseID, r.Status, r.Stopping, r.CreatedBy, ns(r.CreatedAt), ns(r.StartedAt),
			ns(r.FinishedAt), string(r.InputsJSON), string(r.FindingJSON), r.Rule, r.Reason, r.Error, r.ApprovedBy, string(r.Source), r.SourceName,
			r.Traceparent, r.Tracestate); err != nil {
			return err
		}
		for _, st := range steps {
			if _, err := tx.ExecContext(ctx, `INSERT INTO playbook_steps (playbook_run_id, step_id, status, token, run_id, resolved_json, outputs_json,
				targets_json, error, started_at, finished_at, done_seq, rollback_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, st.StepID, st.Status, st.Token, st.RunID, string(st.ResolvedJSON), string(st.OutputsJSON), string(st.TargetsJSON),
				st.Error, ns(st.StartedAt), ns(st.FinishedAt), st.DoneSeq, string(st.RollbackJSON)); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdatePlaybookRun implements PlaybookRuns.
func (s *SQL) UpdatePlaybookRun(ctx context.Context, r *PlaybookRun) error {
	_, err := s.exec(ctx, `UPDATE playbook_runs SET status = ?, stopping = ?, started_at = ?, finished_at = ?, error = ?, approved_by = ?
		WHERE id = ?`, r.Status, r.Stopping, ns(r.StartedAt), ns(r.FinishedAt), r.Error, r.ApprovedBy, r.ID)
	return err
}

// TransitionPlaybookRun implements PlaybookRuns.
func (s *SQL) TransitionPlaybookRun(ctx context.Context, r *PlaybookRun, from string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE playbook_runs SET status = ?, stopping = ?, started_at = ?, finished_at = ?, error = ?, approved_by = ?
		WHERE id = ? AND status = ?`, r.Status, r.Stopping, ns(r.StartedAt), ns(r.FinishedAt), r.Error, r.ApprovedBy, r.ID, from)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// UpdatePlaybookStep implements PlaybookRuns.
func (s *SQL) UpdatePlaybookStep(ctx context.Context, playbookRunID string, st *PlaybookStep) error {
	_, err := s.exec(ctx, `UPDATE playbook_steps SET status = ?, token = ?, run_id = ?, resolved_json = ?, outputs_json = ?,
		targets_json = ?, error = ?, started_at = ?, finished_at = ?, done_seq = ?, rollback_json = ? WHERE playbook_run_id = ? AND step_id = ?`,
		st.Status, st.Token, st.RunID, string(st.ResolvedJSON), string(st.OutputsJSON), string(st.TargetsJSON), st.Error,
		ns(st.StartedAt), ns(st.FinishedAt), st.DoneSeq, string(st.RollbackJSON), playbookRunID, st.StepID)
	return err
}

const playbookRunCols = `id, playbook, version, case_id, status, stopping, created_by, created_at, started_at, finished_at, inputs_json,
	finding_json, rule, reason, error, approved_by, source, source_name, traceparent, tracestate`

func scanPlaybookRun(sc scanner) (*PlaybookRun, error) {
	var r PlaybookRun
	var inputs, fj, source string
	var created, started, finished int64
	if err := sc.Scan(&r.ID, &r.Playbook, &r.Version, &r.CaseID, &r.Status, &r.Stopping, &r.CreatedBy, &created, &started, &finished,
		&inputs, &fj, &r.Rule, &r.Reason, &r.Error, &r.ApprovedBy, &source, &r.SourceName, &r.Traceparent, &r.Tracestate); err != nil {
		return nil, err
	}
	r.CreatedAt, r.StartedAt, r.FinishedAt = tm(created), tm(started), tm(finished)
	r.InputsJSON, r.Source = []byte(inputs), []byte(source)
	if fj != "" {
		r.FindingJSON = []byte(fj)
	}
	return &r, nil
}

// GetPlaybookRun implements PlaybookRuns.
func (s *SQL) GetPlaybookRun(ctx context.Context, id string) (*PlaybookRun, []*PlaybookStep, error) {
	r, err := scanPlaybookRun(s.r.QueryRowContext(ctx, `SELECT `+playbookRunCols+` FROM playbook_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT step_id, status, token, run_id, resolved_json, outputs_json, targets_json, error, started_at,
		finished_at, done_seq, rollback_json FROM playbook_steps WHERE playbook_run_id = ?`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var steps []*PlaybookStep
	for rows.Next() {
		var st PlaybookStep
		var resolved, outputs, targets, rollback string
		var started, finished int64
		if err := rows.Scan(&st.StepID, &st.Status, &st.Token, &st.RunID, &resolved, &outputs, &targets, &st.Error, &started, &finished,
			&st.DoneSeq, &rollback); err != nil {
			return nil, nil, fmt.Errorf("playbook run %s steps: %w", id, err)
		}
		st.ResolvedJSON, st.OutputsJSON, st.TargetsJSON, st.RollbackJSON = []byte(resolved), []byte(outputs), []byte(targets), []byte(rollback)
		st.StartedAt, st.FinishedAt = tm(started), tm(finished)
		steps = append(steps, &st)
	}
	return r, steps, rows.Err()
}

// ListPlaybookRuns implements PlaybookRuns.
func (s *SQL) ListPlaybookRuns(ctx context.Context, f PlaybookRunFilter) ([]*PlaybookRun, error) {
	q := `SELECT ` + playbookRunCols + ` FROM playbook_runs WHERE 1 = 1`
	var args []any
	if f.CaseID != "" {
		q += ` AND case_id = ?`
		args = append(args, f.CaseID)
	}
	if len(f.Statuses) > 0 {
		q += ` AND status IN (?` + strings.Repeat(`, ?`, len(f.Statuses)-1) + `)`
		for _, st := range f.Statuses {
			args = append(args, st)
		}
	}
	q += ` ORDER BY created_at DESC, id LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, s.r, q, args, scanPlaybookRun)
}

// PlaybookRunIDs implements PlaybookRuns.
func (s *SQL) PlaybookRunIDs(ctx context.Context, status string) ([]string, error) {
	return queryStrings(ctx, s.r, `SELECT id FROM playbook_runs WHERE status = ? ORDER BY created_at`, status)
}
