package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The tables that route runs and agents between the controllers of a
// cluster: each run's owner, and each agent's stream session.
func init() {
	RegisterMigration("routing-001-run-owner", `ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT ''`)
	RegisterMigration("routing-002-agent-sessions", `CREATE TABLE agent_sessions (
		agent_id TEXT PRIMARY KEY, controller_id TEXT NOT NULL, epoch BIGINT NOT NULL, open INTEGER NOT NULL)`)
	RegisterMigration("routing-003-agent-sessions-controller", `CREATE INDEX agent_sessions_controller ON agent_sessions (controller_id)`)
}

// AgentSession is where an agent's stream is held: the controller and the
// session's epoch, which grows by one at each new stream of the agent on
// any controller, so the newest of two sessions is known whatever order
// their news arrives in.
type AgentSession struct {
	AgentID      string
	ControllerID string
	Epoch        int64
	// Address is the holding controller's peer address (its registry
	// entry's).
	Address string
}

// Routing is how the controllers that share a store share runs and
// agents. A run has one owner, the controller that drives it; only the
// owner writes its task states, and a run whose owner died is claimed by a
// live controller. An agent's stream session names the controller that
// holds it, so an owner knows where to send its tasks.
type Routing interface {
	// Shared reports whether several controllers may share this store
	// (PostgreSQL). A SQLite store belongs to one controller.
	Shared() bool
	// ClaimRuns makes owner the owner of every active run (awaiting
	// approval or running) that has no live owner, and returns them with
	// their tasks and approvals. Runs owner has already are not returned.
	// Another owner is live when its registry heartbeat is at or after
	// liveSince; on a store that is not shared every active run of
	// another owner is claimed. Each claim is conditional on the owner it
	// read, so two controllers never both claim one run.
	ClaimRuns(ctx context.Context, owner string, liveSince time.Time) ([]*Run, map[string][]*Task, map[string][]*Approval, error)
	// SaveOwnedTasks is SaveTasks for the runs owner still owns: the rows
	// of any other run are left alone and its id is returned in lost, in
	// the same transaction. An empty owner saves everything.
	SaveOwnedTasks(ctx context.Context, owner string, tasks []*Task, runs []*Run) (lost []string, err error)
	// TaskRunOwner returns the run of a task and the run's owner, or
	// ErrNotFound.
	TaskRunOwner(ctx context.Context, taskID string) (runID, owner string, err error)
	// RunOwner returns a run's owner and whether the run is active
	// (awaiting approval or running), or ErrNotFound.
	RunOwner(ctx context.Context, runID string) (owner string, active bool, err error)
	// OpenAgentSessions records that controller holds the streams of
	// agentIDs now and returns each new session's epoch. An agent given
	// twice opens one session.
	OpenAgentSessions(ctx context.Context, controller string, agentIDs []string) (map[string]int64, error)
	// CloseAgentSessions records that the sessions ended, each only if it
	// is still the agent's current session (the same controller and
	// epoch).
	CloseAgentSessions(ctx context.Context, controller string, epochs map[string]int64) error
	// ListAgentSessions returns the open sessions held by controllers
	// whose heartbeat is at or after liveSince, by agent id.
	ListAgentSessions(ctx context.Context, liveSince time.Time) ([]*AgentSession, error)
}

var _ Routing = (*SQL)(nil)

// Shared implements Routing: a PostgreSQL store is shared.
func (s *SQL) Shared() bool { return s.closePools != nil }

// ClaimRuns implements Routing.
func (s *SQL) ClaimRuns(ctx context.Context, owner string, liveSince time.Time) ([]*Run, map[string][]*Task, map[string][]*Approval, error) {
	if owner == "" {
		return nil, nil, nil, errors.New("claiming runs: an owner is required")
	}
	var claimed []*Run
	var tasks map[string][]*Task
	var approvals map[string][]*Approval
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		claimed, tasks, approvals = nil, map[string][]*Task{}, map[string][]*Approval{}
		live := map[string]bool{owner: true}
		if s.Shared() {
			rows, err := tx.QueryContext(ctx, `SELECT id FROM controllers WHERE heartbeat_at >= ?`, ns(liveSince))
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				live[id] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+runCols+` FROM runs WHERE status IN (?, ?) ORDER BY created_at, id`,
			int(operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL), int(operatorv1.RunStatus_RUN_STATUS_RUNNING))
		if err != nil {
			return err
		}
		var cands []*Run
		for rows.Next() {
			r, err := scanRun(rows)
			if err != nil {
				rows.Close()
				return err
			}
			// Security-critical for the run's integrity: a run driven by a
			// live controller is never taken from it, or two dispatchers
			// would write its tasks.
			if r.Owner != owner && (!s.Shared() || !live[r.Owner]) {
				cands = append(cands, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range cands {
			res, err := tx.ExecContext(ctx, `UPDATE runs SET owner = ? WHERE id = ? AND owner = ?`, owner, r.ID, r.Owner)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				r.Owner = owner
				claimed = append(claimed, r)
			}
		}
		// The claimed runs' tasks and approvals are read in the claim's
		// transaction: a claim that commits hands them to the caller,
		// and one whose reads fail claims nothing (a run owned here in
		// the store but never held in memory would stall until this
		// controller stops).
		for _, r := range claimed {
			var err error
			if tasks[r.ID], err = tasksIn(ctx, tx, r.ID); err != nil {
				return err
			}
			if approvals[r.ID], err = approvalsIn(ctx, tx, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("claiming runs: %w", err)
	}
	return claimed, tasks, approvals, nil
}

// SaveOwnedTasks implements Routing.
func (s *SQL) SaveOwnedTasks(ctx context.Context, owner string, tasks []*Task, runs []*Run) ([]string, error) {
	if owner == "" {
		return nil, s.SaveTasks(ctx, tasks, runs)
	}
	ids := map[string]bool{}
	for _, t := range tasks {
		ids[t.RunID] = true
	}
	for _, r := range runs {
		ids[r.ID] = true
	}
	var lost []string
	pg := isPostgres(s.w)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		lost = nil
		owned, err := ownedRuns(ctx, tx, owner, ids)
		if err != nil {
			return err
		}
		for id := range ids {
			if !owned[id] {
				lost = append(lost, id)
			}
		}
		keepT := make([]*Task, 0, len(tasks))
		for _, t := range tasks {
			if owned[t.RunID] {
				keepT = append(keepT, t)
			}
		}
		keepR := make([]*Run, 0, len(runs))
		for _, r := range runs {
			if owned[r.ID] {
				keepR = append(keepR, r)
			}
		}
		return saveTasks(ctx, tx, pg, keepT, keepR)
	})
	slices.Sort(lost)
	return lost, err
}

// ownedRuns returns which of ids owner owns, in chunks of a few hundred ids
// per query.
func ownedRuns(ctx context.Context, tx *sql.Tx, owner string, ids map[string]bool) (map[string]bool, error) {
	all := make([]string, 0, len(ids))
	for id := range ids {
		all = append(all, id)
	}
	owned := map[string]bool{}
	for chunk := range slices.Chunk(all, 500) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, owner)
		for _, id := range chunk {
			args = append(args, id)
		}
		q := `SELECT id FROM runs WHERE owner = ? AND id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			owned[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return owned, nil
}

// TaskRunOwner implements Routing.
func (s *SQL) TaskRunOwner(ctx context.Context, taskID string) (string, string, error) {
	var runID, owner string
	err := s.r.QueryRowContext(ctx, `SELECT r.id, r.owner FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.id = ?`, taskID).Scan(&runID, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	return runID, owner, err
}

// RunOwner implements Routing.
func (s *SQL) RunOwner(ctx context.Context, runID string) (string, bool, error) {
	var owner string
	var st int
	err := s.r.QueryRowContext(ctx, `SELECT owner, status FROM runs WHERE id = ?`, runID).Scan(&owner, &st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, ErrNotFound
	}
	active := operatorv1.RunStatus(st) == operatorv1.RunStatus_RUN_STATUS_RUNNING || operatorv1.RunStatus(st) == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
	return owner, active, err
}

// OpenAgentSessions implements Routing.
func (s *SQL) OpenAgentSessions(ctx context.Context, controller string, agentIDs []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(agentIDs) == 0 {
		return out, nil
	}
	// An agent given twice opens one session (on PostgreSQL one statement
	// cannot write a row twice; SQLite does the same, so both agree).
	agentIDs = lastOfEach(agentIDs, func(id string) string { return id })
	pg := isPostgres(s.w)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		if pg {
			return openAgentSessionsPG(ctx, tx, controller, agentIDs, out)
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO agent_sessions (agent_id, controller_id, epoch, open) VALUES (?, ?, 1, 1)
			ON CONFLICT (agent_id) DO UPDATE SET controller_id = excluded.controller_id, epoch = agent_sessions.epoch + 1, open = 1
			RETURNING epoch`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range agentIDs {
			var epoch int64
			if err := st.QueryRowContext(ctx, id, controller).Scan(&epoch); err != nil {
				return err
			}
			out[id] = epoch
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording agent sessions: %w", err)
	}
	return out, nil
}

// CloseAgentSessions implements Routing.
func (s *SQL) CloseAgentSessions(ctx context.Context, controller string, epochs map[string]int64) error {
	if len(epochs) == 0 {
		return nil
	}
	pg := isPostgres(s.w)
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if pg {
			return closeAgentSessionsPG(ctx, tx, controller, epochs)
		}
		st, err := tx.PrepareContext(ctx, `UPDATE agent_sessions SET open = 0 WHERE agent_id = ? AND controller_id = ? AND epoch = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for id, epoch := range epochs {
			if _, err := st.ExecContext(ctx, id, controller, epoch); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListAgentSessions implements Routing.
func (s *SQL) ListAgentSessions(ctx context.Context, liveSince time.Time) ([]*AgentSession, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT s.agent_id, s.controller_id, s.epoch, c.address FROM agent_sessions s
		JOIN controllers c ON c.id = s.controller_id WHERE s.open = 1 AND c.heartbeat_at >= ? ORDER BY s.agent_id`, ns(liveSince))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*AgentSession
	for rows.Next() {
		var a AgentSession
		if err := rows.Scan(&a.AgentID, &a.ControllerID, &a.Epoch, &a.Address); err != nil {
			return nil, err
		}
		out = append(out, &a)
	}
	return out, rows.Err()
}
