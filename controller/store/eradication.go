package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

func init() {
	// An eradication plan is stored whole (its JSON, as docs/eradication.md
	// documents it), linked to its case; the case's plans are listed by
	// time.
	registerMigration(migration{name: "eradication-001-plans", sql: `CREATE TABLE eradication_plans (
		id TEXT PRIMARY KEY, case_id TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL,
		steps INTEGER NOT NULL, plan_json TEXT NOT NULL)`})
	registerMigration(migration{name: "eradication-002-plans-case", sql: `CREATE INDEX eradication_plans_case ON eradication_plans (case_id, created_at)`})
}

// EradicationPlan is a stored eradication plan.
type EradicationPlan struct {
	ID        string
	CaseID    string
	CreatedAt time.Time
	CreatedBy string
	// Steps is how many steps the plan has.
	Steps int
	// PlanJSON is the whole plan; ListEradicationPlans leaves it out.
	PlanJSON []byte
}

// EradicationStore keeps the eradication plans built from cases' scopes.
type EradicationStore interface {
	// SaveEradicationPlan stores a new plan; an id already stored is an
	// error.
	SaveEradicationPlan(ctx context.Context, p *EradicationPlan) error
	// GetEradicationPlan returns one plan with its JSON, or ErrNotFound.
	GetEradicationPlan(ctx context.Context, id string) (*EradicationPlan, error)
	// ListEradicationPlans returns a case's plans, newest first, without
	// their JSON.
	ListEradicationPlans(ctx context.Context, caseID string) ([]*EradicationPlan, error)
}

// SaveEradicationPlan implements EradicationStore.
func (s *SQL) SaveEradicationPlan(ctx context.Context, p *EradicationPlan) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO eradication_plans (id, case_id, created_at, created_by, steps, plan_json) VALUES (?, ?, ?, ?, ?, ?)`,
			p.ID, p.CaseID, ns(p.CreatedAt), p.CreatedBy, p.Steps, string(p.PlanJSON))
		return err
	})
}

// GetEradicationPlan implements EradicationStore.
func (s *SQL) GetEradicationPlan(ctx context.Context, id string) (*EradicationPlan, error) {
	var p EradicationPlan
	var at int64
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT id, case_id, created_at, created_by, steps, plan_json FROM eradication_plans WHERE id = ?`, id).
		Scan(&p.ID, &p.CaseID, &at, &p.CreatedBy, &p.Steps, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.CreatedAt, p.PlanJSON = tm(at), []byte(doc)
	return &p, nil
}

// ListEradicationPlans implements EradicationStore.
func (s *SQL) ListEradicationPlans(ctx context.Context, caseID string) ([]*EradicationPlan, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, case_id, created_at, created_by, steps FROM eradication_plans WHERE case_id = ? ORDER BY created_at DESC, id DESC`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*EradicationPlan
	for rows.Next() {
		var p EradicationPlan
		var at int64
		if err := rows.Scan(&p.ID, &p.CaseID, &at, &p.CreatedBy, &p.Steps); err != nil {
			return nil, err
		}
		p.CreatedAt = tm(at)
		out = append(out, &p)
	}
	return out, rows.Err()
}
