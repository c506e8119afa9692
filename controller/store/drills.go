package store

import (
	"context"
	"database/sql"
	"time"
)

func init() {
	// A drill's outcome, recorded by `firebreak lab drill --record`, for
	// the readiness review's drill recency check; the whole result beside
	// the fields the check reads.
	registerMigration(migration{name: "drills-001-results", sql: `CREATE TABLE drill_results (
		id TEXT PRIMARY KEY, scenario TEXT NOT NULL, playbook TEXT NOT NULL, contained INTEGER NOT NULL, score INTEGER NOT NULL,
		simulated_hosts INTEGER NOT NULL, time_to_contain_ms BIGINT NOT NULL, recorded_at BIGINT NOT NULL, recorded_by TEXT NOT NULL,
		result_json TEXT NOT NULL)`})
	registerMigration(migration{name: "drills-002-results-time", sql: `CREATE INDEX drill_results_time ON drill_results (recorded_at)`})
}

// DrillResult is one recorded drill.
type DrillResult struct {
	ID       string
	Scenario string
	Playbook string
	// Contained is true when every containment check of the drill passed.
	Contained bool
	// Score is the drill's score out of 100.
	Score int
	// SimulatedHosts is true when in-guest isolation was not exercised.
	SimulatedHosts  bool
	TimeToContainMS int64
	// RecordedAt is the controller's time of the record, and RecordedBy
	// who recorded it (operator:NAME).
	RecordedAt time.Time
	RecordedBy string
	// ResultJSON is the drill's whole result; List leaves it out.
	ResultJSON []byte
}

// DrillStore keeps recorded drills.
type DrillStore interface {
	// SaveDrillResult stores a drill's outcome.
	SaveDrillResult(ctx context.Context, d *DrillResult) error
	// ListDrillResults returns the drills recorded at or after since,
	// newest first, at most limit, without their JSON.
	ListDrillResults(ctx context.Context, since time.Time, limit int) ([]*DrillResult, error)
}

// SaveDrillResult implements DrillStore.
func (s *SQL) SaveDrillResult(ctx context.Context, d *DrillResult) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO drill_results (id, scenario, playbook, contained, score, simulated_hosts, time_to_contain_ms,
			recorded_at, recorded_by, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, d.Scenario, d.Playbook, b2i(d.Contained), d.Score, b2i(d.SimulatedHosts), d.TimeToContainMS, ns(d.RecordedAt), d.RecordedBy, string(d.ResultJSON))
		return err
	})
}

// ListDrillResults implements DrillStore.
func (s *SQL) ListDrillResults(ctx context.Context, since time.Time, limit int) ([]*DrillResult, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, scenario, playbook, contained, score, simulated_hosts, time_to_contain_ms, recorded_at, recorded_by
		FROM drill_results WHERE recorded_at >= ? ORDER BY recorded_at DESC, id DESC LIMIT ?`, ns(since), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*DrillResult
	for rows.Next() {
		var d DrillResult
		var contained, simulated int
		var at int64
		if err := rows.Scan(&d.ID, &d.Scenario, &d.Playbook, &contained, &d.Score, &simulated, &d.TimeToContainMS, &at, &d.RecordedBy); err != nil {
			return nil, err
		}
		d.Contained, d.SimulatedHosts, d.RecordedAt = contained != 0, simulated != 0, tm(at)
		out = append(out, &d)
	}
	return out, rows.Err()
}
