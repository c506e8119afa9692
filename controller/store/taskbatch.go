package store

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"
)

// A run's tasks are written in batches: all of a run's tasks when it is
// created, and a dispatcher's task states and results as they arrive. On
// SQLite each row is an Exec of one prepared statement inside the batch's
// transaction, a call into the library in the same process. On PostgreSQL
// each Exec is a round trip to the server, so a batch is written with one
// statement per pgBatchRows rows, its columns passed as arrays (pgx encodes
// Go slices as PostgreSQL arrays) and turned back into rows by unnest. The
// values stored are those of the per-row statements, ns() times and the
// comma-joined evidence ids included. Under SERIALIZABLE an UPDATE … FROM
// that scans the whole table takes a table-wide read lock; per-row updates
// of a batch this size already had theirs promoted to one (past 32 locked
// pages or rows of a table, PostgreSQL's default), so no conflict is new.

// pgBatchRows is the most rows one set-based statement writes.
const pgBatchRows = 2000

// insertTasksPG inserts tasks in tx, a PostgreSQL transaction, pgBatchRows
// rows per statement. A task id that already exists fails the statement
// with the primary key's unique violation, as one row's INSERT does.
func insertTasksPG(ctx context.Context, tx *sql.Tx, tasks []*Task) error {
	const q = `INSERT INTO tasks (` + taskCols + `) SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[],
		?::bigint[], ?::text[], ?::bytea[], ?::bytea[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[])`
	for chunk := range slices.Chunk(tasks, pgBatchRows) {
		n := len(chunk)
		var (
			id, runID, agentID, hostname, errText      = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			account, region, evidence, lastMessage     = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			seq, status, dispatched, started, finished = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
			output, signed                             = make([][]byte, n), make([][]byte, n)
		)
		for i, t := range chunk {
			id[i], runID[i], seq[i], agentID[i], hostname[i] = t.ID, t.RunID, int64(t.Seq), t.AgentID, t.Hostname
			status[i], errText[i], output[i], signed[i] = int64(t.Status), t.Error, t.OutputJSON, t.SignedTask
			dispatched[i], started[i], finished[i] = ns(t.DispatchedAt), ns(t.StartedAt), ns(t.FinishedAt)
			account[i], region[i], evidence[i], lastMessage[i] = t.Account, t.Region, strings.Join(t.EvidenceIDs, ","), t.LastMessage
		}
		if _, err := tx.ExecContext(ctx, q, id, runID, seq, agentID, hostname, status, errText, output, signed,
			dispatched, started, finished, account, region, evidence, lastMessage); err != nil {
			return err
		}
	}
	return nil
}

// updateTasksPG stores the mutable fields of tasks in tx, a PostgreSQL
// transaction, pgBatchRows rows per statement. A task given twice is
// stored as its last copy, as consecutive per-row UPDATEs leave it; an
// unknown id changes nothing.
func updateTasksPG(ctx context.Context, tx *sql.Tx, tasks []*Task) error {
	const q = `UPDATE tasks SET status = v.status, error = v.error, output_json = v.output_json, signed_task = v.signed_task,
		dispatched_at = v.dispatched_at, started_at = v.started_at, finished_at = v.finished_at, evidence_ids = v.evidence_ids,
		last_message = v.last_message
		FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bytea[], ?::bytea[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::text[])
		AS v (id, status, error, output_json, signed_task, dispatched_at, started_at, finished_at, evidence_ids, last_message)
		WHERE tasks.id = v.id`
	tasks = lastOfEach(tasks, func(t *Task) string { return t.ID })
	for chunk := range slices.Chunk(tasks, pgBatchRows) {
		n := len(chunk)
		var (
			id, errText, evidence, lastMessage    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			status, dispatched, started, finished = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
			output, signed                        = make([][]byte, n), make([][]byte, n)
		)
		for i, t := range chunk {
			id[i], status[i], errText[i], output[i], signed[i] = t.ID, int64(t.Status), t.Error, t.OutputJSON, t.SignedTask
			dispatched[i], started[i], finished[i] = ns(t.DispatchedAt), ns(t.StartedAt), ns(t.FinishedAt)
			evidence[i], lastMessage[i] = strings.Join(t.EvidenceIDs, ","), t.LastMessage
		}
		if _, err := tx.ExecContext(ctx, q, id, status, errText, output, signed, dispatched, started, finished, evidence, lastMessage); err != nil {
			return err
		}
	}
	return nil
}

// updateRunsPG stores the mutable fields of runs in tx, a PostgreSQL
// transaction, in one statement per pgBatchRows runs; a run given twice is
// stored as its last copy.
func updateRunsPG(ctx context.Context, tx *sql.Tx, runs []*Run) error {
	const q = `UPDATE runs SET status = v.status, started_at = v.started_at, finished_at = v.finished_at, deadline = v.deadline
		FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) AS v (id, status, started_at, finished_at, deadline)
		WHERE runs.id = v.id`
	runs = lastOfEach(runs, func(r *Run) string { return r.ID })
	for chunk := range slices.Chunk(runs, pgBatchRows) {
		n := len(chunk)
		id := make([]string, n)
		status, started, finished, deadline := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, r := range chunk {
			id[i], status[i], started[i], finished[i], deadline[i] = r.ID, int64(r.Status), ns(r.StartedAt), ns(r.FinishedAt), ns(r.Deadline)
		}
		if _, err := tx.ExecContext(ctx, q, id, status, started, finished, deadline); err != nil {
			return err
		}
	}
	return nil
}

// lastOfEach returns xs with only the last of the elements that share a
// key, in the order of those last ones. One UPDATE … FROM joins each row to
// one of its matches, not to the last, so duplicates are settled here. xs
// is returned as it is when every key is unique.
func lastOfEach[T any](xs []T, key func(T) string) []T {
	last := make(map[string]int, len(xs))
	for i, x := range xs {
		last[key(x)] = i
	}
	if len(last) == len(xs) {
		return xs
	}
	out := make([]T, 0, len(last))
	for i, x := range xs {
		if last[key(x)] == i {
			out = append(out, x)
		}
	}
	return out
}

// The fleet's per-agent writes go the same way on PostgreSQL: the
// last-seen times of a flush, and the stream sessions a batch of agents
// opens or closes. Each of their callers gives one entry per agent.

// touchAgentsPG is TouchAgents' write on PostgreSQL: a time only moves an
// agent's last_seen forward.
func touchAgentsPG(ctx context.Context, tx *sql.Tx, seen map[string]time.Time) error {
	const q = `UPDATE agents SET last_seen = v.at FROM unnest(?::text[], ?::bigint[]) AS v (id, at)
		WHERE agents.id = v.id AND agents.last_seen < v.at`
	ids, ats := make([]string, 0, len(seen)), make([]int64, 0, len(seen))
	for id, t := range seen {
		ids, ats = append(ids, id), append(ats, ns(t))
	}
	for i := 0; i < len(ids); i += pgBatchRows {
		end := min(i+pgBatchRows, len(ids))
		if _, err := tx.ExecContext(ctx, q, ids[i:end], ats[i:end]); err != nil {
			return err
		}
	}
	return nil
}

// openAgentSessionsPG is OpenAgentSessions' write on PostgreSQL: each
// agent's session moves to controller with the next epoch (1 for a new
// agent), returned by agent. agentIDs must not repeat an id (one row
// cannot be inserted or updated twice by one statement).
func openAgentSessionsPG(ctx context.Context, tx *sql.Tx, controller string, agentIDs []string, out map[string]int64) error {
	const q = `INSERT INTO agent_sessions (agent_id, controller_id, epoch, open) SELECT id, ?, 1, 1 FROM unnest(?::text[]) AS v (id)
		ON CONFLICT (agent_id) DO UPDATE SET controller_id = excluded.controller_id, epoch = agent_sessions.epoch + 1, open = 1
		RETURNING agent_id, epoch`
	for chunk := range slices.Chunk(agentIDs, pgBatchRows) {
		rows, err := tx.QueryContext(ctx, q, controller, chunk)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var epoch int64
			if err := rows.Scan(&id, &epoch); err != nil {
				rows.Close()
				return err
			}
			out[id] = epoch
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// closeAgentSessionsPG is CloseAgentSessions' write on PostgreSQL: each
// session closes only if it is still the agent's current one.
func closeAgentSessionsPG(ctx context.Context, tx *sql.Tx, controller string, epochs map[string]int64) error {
	const q = `UPDATE agent_sessions SET open = 0 FROM unnest(?::text[], ?::bigint[]) AS v (id, epoch)
		WHERE agent_sessions.agent_id = v.id AND agent_sessions.controller_id = ? AND agent_sessions.epoch = v.epoch`
	ids, eps := make([]string, 0, len(epochs)), make([]int64, 0, len(epochs))
	for id, e := range epochs {
		ids, eps = append(ids, id), append(eps, e)
	}
	for i := 0; i < len(ids); i += pgBatchRows {
		end := min(i+pgBatchRows, len(ids))
		if _, err := tx.ExecContext(ctx, q, ids[i:end], eps[i:end], controller); err != nil {
			return err
		}
	}
	return nil
}
