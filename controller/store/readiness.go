package store

import (
	"context"
	"database/sql"
	"time"
)

func init() {
	// A readiness report is stored whole (its JSON, as docs/readiness.md
	// documents it), with its score and time beside it for the history.
	registerMigration(migration{name: "readiness-001-reports", sql: `CREATE TABLE readiness_reports (
		id TEXT PRIMARY KEY, generated_at BIGINT NOT NULL, score INTEGER NOT NULL, created_by TEXT NOT NULL, report_json TEXT NOT NULL)`})
	registerMigration(migration{name: "readiness-002-reports-time", sql: `CREATE INDEX readiness_reports_time ON readiness_reports (generated_at)`})
}

// ReadinessReport is a stored readiness report.
type ReadinessReport struct {
	ID          string
	GeneratedAt time.Time
	Score       int
	CreatedBy   string
	// ReportJSON is the whole report; List leaves it out.
	ReportJSON []byte
}

// ReadinessStore keeps readiness reports for `firebreak readiness
// history`.
type ReadinessStore interface {
	// SaveReadinessReport stores a report.
	SaveReadinessReport(ctx context.Context, r *ReadinessReport) error
	// ListReadinessReports returns up to limit reports, newest first,
	// without their JSON.
	ListReadinessReports(ctx context.Context, limit int) ([]*ReadinessReport, error)
}

// SaveReadinessReport implements ReadinessStore.
func (s *SQL) SaveReadinessReport(ctx context.Context, r *ReadinessReport) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO readiness_reports (id, generated_at, score, created_by, report_json) VALUES (?, ?, ?, ?, ?)`,
			r.ID, ns(r.GeneratedAt), r.Score, r.CreatedBy, string(r.ReportJSON))
		return err
	})
}

// ListReadinessReports implements ReadinessStore.
func (s *SQL) ListReadinessReports(ctx context.Context, limit int) ([]*ReadinessReport, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, generated_at, score, created_by FROM readiness_reports ORDER BY generated_at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*ReadinessReport
	for rows.Next() {
		var r ReadinessReport
		var at int64
		if err := rows.Scan(&r.ID, &at, &r.Score, &r.CreatedBy); err != nil {
			return nil, err
		}
		r.GeneratedAt = tm(at)
		out = append(out, &r)
	}
	return out, rows.Err()
}
