package playbookrun

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// The package's tables, one portable statement per migration.
func init() {
	store.RegisterMigration("playbookrun-001-runs", `CREATE TABLE playbook_runs (
		id TEXT PRIMARY KEY, playbook TEXT NOT NULL, version INTEGER NOT NULL, case_id TEXT NOT NULL, status TEXT NOT NULL,
		stopping TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL, started_at BIGINT NOT NULL,
		finished_at BIGINT NOT NULL, inputs_json TEXT NOT NULL, finding_json TEXT NOT NULL, rule TEXT NOT NULL,
		reason TEXT NOT NULL, error TEXT NOT NULL, approved_by TEXT NOT NULL, source TEXT NOT NULL, source_name TEXT NOT NULL)`)
	store.RegisterMigration("playbookrun-002-runs-status", `CREATE INDEX playbook_runs_status ON playbook_runs (status)`)
	store.RegisterMigration("playbookrun-003-runs-case", `CREATE INDEX playbook_runs_case ON playbook_runs (case_id, created_at)`)
	store.RegisterMigration("playbookrun-004-steps", `CREATE TABLE playbook_steps (
		playbook_run_id TEXT NOT NULL REFERENCES playbook_runs(id), step_id TEXT NOT NULL, status TEXT NOT NULL,
		token TEXT NOT NULL, run_id TEXT NOT NULL, resolved_json TEXT NOT NULL, outputs_json TEXT NOT NULL,
		targets_json TEXT NOT NULL, error TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL,
		done_seq INTEGER NOT NULL, rollback_json TEXT NOT NULL, PRIMARY KEY (playbook_run_id, step_id))`)
	// Resume finds a run the executor may have created by its reason text.
	store.RegisterMigration("playbookrun-005-runs-reason", `CREATE INDEX runs_reason ON runs (reason)`)
}

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

func jsonText(v any) string {
	if v == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}

// createRun stores a new playbook run with its pending steps.
func (s *sqlStore) createRun(ctx context.Context, r *Run) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	fj := ""
	if r.Finding != nil {
		fj = jsonText(r.Finding)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO playbook_runs (id, playbook, version, case_id, status, stopping, created_by, created_at,
		started_at, finished_at, inputs_json, finding_json, rule, reason, error, approved_by, source, source_name)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Playbook, r.Version, r.CaseID, string(r.Status), r.stopping, r.CreatedBy, ns(r.CreatedAt), ns(r.StartedAt),
		ns(r.FinishedAt), jsonText(r.Inputs), fj, r.Rule, r.Reason, r.Error, r.ApprovedBy, string(r.source), r.sourceName); err != nil {
		return err
	}
	for _, st := range r.Steps {
		if err := insertStep(ctx, tx, r.ID, st); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func insertStep(ctx context.Context, tx *sql.Tx, runID string, st *Step) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO playbook_steps (playbook_run_id, step_id, status, token, run_id, resolved_json, outputs_json,
		targets_json, error, started_at, finished_at, done_seq, rollback_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		runID, st.ID, string(st.Status), st.token, st.RunID, jsonText(st.Resolved), jsonText(st.Outputs), jsonText(st.Targets),
		st.Error, ns(st.StartedAt), ns(st.FinishedAt), st.doneSeq, jsonText(st.Rollback))
	return err
}

// saveRun stores the mutable fields of a playbook run.
func (s *sqlStore) saveRun(ctx context.Context, r *Run) error {
	_, err := s.w.ExecContext(ctx, `UPDATE playbook_runs SET status = ?, stopping = ?, started_at = ?, finished_at = ?, error = ?, approved_by = ?
		WHERE id = ?`, string(r.Status), r.stopping, ns(r.StartedAt), ns(r.FinishedAt), r.Error, r.ApprovedBy, r.ID)
	return err
}

// transition changes a playbook run's status only if it still has the
// expected one, so two approvers (or an approver and a canceller) cannot
// both win.
func (s *sqlStore) transition(ctx context.Context, r *Run, from Status) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE playbook_runs SET status = ?, stopping = ?, started_at = ?, finished_at = ?, error = ?, approved_by = ?
		WHERE id = ? AND status = ?`, string(r.Status), r.stopping, ns(r.StartedAt), ns(r.FinishedAt), r.Error, r.ApprovedBy, r.ID, string(from))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// saveStep stores the mutable fields of a step.
func (s *sqlStore) saveStep(ctx context.Context, runID string, st *Step) error {
	_, err := s.w.ExecContext(ctx, `UPDATE playbook_steps SET status = ?, token = ?, run_id = ?, resolved_json = ?, outputs_json = ?,
		targets_json = ?, error = ?, started_at = ?, finished_at = ?, done_seq = ?, rollback_json = ? WHERE playbook_run_id = ? AND step_id = ?`,
		string(st.Status), st.token, st.RunID, jsonText(st.Resolved), jsonText(st.Outputs), jsonText(st.Targets), st.Error,
		ns(st.StartedAt), ns(st.FinishedAt), st.doneSeq, jsonText(st.Rollback), runID, st.ID)
	return err
}

const runCols = `id, playbook, version, case_id, status, stopping, created_by, created_at, started_at, finished_at, inputs_json, finding_json,
	rule, reason, error, approved_by, source, source_name`

func scanRun(sc interface{ Scan(...any) error }) (*Run, error) {
	var r Run
	var status, inputs, fj, source string
	var created, started, finished int64
	if err := sc.Scan(&r.ID, &r.Playbook, &r.Version, &r.CaseID, &status, &r.stopping, &r.CreatedBy, &created, &started, &finished,
		&inputs, &fj, &r.Rule, &r.Reason, &r.Error, &r.ApprovedBy, &source, &r.sourceName); err != nil {
		return nil, err
	}
	r.Status, r.CreatedAt, r.StartedAt, r.FinishedAt, r.source = Status(status), tm(created), tm(started), tm(finished), []byte(source)
	if err := json.Unmarshal([]byte(inputs), &r.Inputs); err != nil {
		return nil, fmt.Errorf("playbook run %s inputs: %w", r.ID, err)
	}
	if fj != "" {
		r.Finding = &finding.Finding{}
		if err := json.Unmarshal([]byte(fj), r.Finding); err != nil {
			return nil, fmt.Errorf("playbook run %s finding: %w", r.ID, err)
		}
	}
	return &r, nil
}

// getRun loads a playbook run with its steps, in execution order.
func (s *sqlStore) getRun(ctx context.Context, id string) (*Run, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM playbook_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("playbook run %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadSteps(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *sqlStore) loadSteps(ctx context.Context, r *Run) error {
	pb, err := playbook.Parse(r.sourceName, r.source)
	if err != nil {
		return fmt.Errorf("playbook run %s: its stored playbook does not parse: %w", r.ID, err)
	}
	r.Steps = declaredSteps(pb)
	rows, err := s.r.QueryContext(ctx, `SELECT step_id, status, token, run_id, resolved_json, outputs_json, targets_json, error, started_at,
		finished_at, done_seq, rollback_json FROM playbook_steps WHERE playbook_run_id = ?`, r.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, status, token, runID, resolved, outputs, targets, errText, rollback string
		var started, finished int64
		var doneSeq int
		if err := rows.Scan(&id, &status, &token, &runID, &resolved, &outputs, &targets, &errText, &started, &finished, &doneSeq, &rollback); err != nil {
			return err
		}
		st := r.Step(id)
		if st == nil {
			continue
		}
		st.Status, st.token, st.RunID, st.Error = StepStatus(status), token, runID, errText
		st.StartedAt, st.FinishedAt, st.doneSeq = tm(started), tm(finished), doneSeq
		for _, f := range []struct {
			text string
			dst  any
		}{{resolved, &st.Resolved}, {outputs, &st.Outputs}, {targets, &st.Targets}, {rollback, &st.Rollback}} {
			if err := json.Unmarshal([]byte(f.text), f.dst); err != nil {
				return fmt.Errorf("playbook run %s step %s: %w", r.ID, id, err)
			}
		}
	}
	return rows.Err()
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
			out = append(out, &Step{ID: s.ID, Phase: s.Phase, Action: s.Action, Needs: slices.Clone(s.Needs), OnFailure: of,
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
func (s *sqlStore) listRuns(ctx context.Context, o ListOptions) ([]*Run, error) {
	q := `SELECT ` + runCols + ` FROM playbook_runs WHERE 1 = 1`
	var args []any
	if o.CaseID != "" {
		q += ` AND case_id = ?`
		args = append(args, o.CaseID)
	}
	if o.Active {
		q += ` AND status IN (?, ?)`
		args = append(args, string(StatusAwaitingApproval), string(StatusRunning))
	}
	q += ` ORDER BY created_at DESC, id LIMIT ?`
	args = append(args, o.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// runningIDs returns the playbook runs to resume.
func (s *sqlStore) runningIDs(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM playbook_runs WHERE status = ? ORDER BY created_at`, string(StatusRunning))
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

// runByToken finds the run the executor created with a token as its
// reason, if the creation reached the store.
func (s *sqlStore) runByToken(ctx context.Context, token, createdBy string) (string, error) {
	var id string
	err := s.r.QueryRowContext(ctx, `SELECT id FROM runs WHERE reason = ? AND created_by = ? ORDER BY created_at LIMIT 1`, token, createdBy).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}
