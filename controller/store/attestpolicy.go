package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

func init() {
	// Every version of the attestation policy is kept: the newest is the
	// one every controller of the cluster enforces, the older ones say
	// what was allowed when an agent enrolled.
	registerMigration(migration{name: "attest-002-policies", sql: `CREATE TABLE attest_policies (
		version BIGINT PRIMARY KEY, policy_yaml TEXT NOT NULL, source TEXT NOT NULL, set_by TEXT NOT NULL, set_at BIGINT NOT NULL)`})
}

// AttestPolicy is one stored version of the attestation policy.
type AttestPolicy struct {
	// Version numbers the policies from 1; the store assigns it.
	Version int64
	// YAML is the policy as the operator wrote it.
	YAML []byte
	// Source names where it came from: the file name given to `firebreak
	// attest policy set` or to --attest-policy.
	Source string
	// SetBy is the operator (operator:NAME) or controller that stored it.
	SetBy string
	// SetAt is when it was stored.
	SetAt time.Time
}

// AttestPolicies keep the attestation policy that every controller of a
// cluster enforces.
type AttestPolicies interface {
	// SetAttestPolicy stores p as the newest version and sets p.Version.
	SetAttestPolicy(ctx context.Context, p *AttestPolicy) error
	// SeedAttestPolicy stores p as version 1 when no policy is stored yet
	// and reports whether it did; a stored policy is left as it is.
	SeedAttestPolicy(ctx context.Context, p *AttestPolicy) (bool, error)
	// GetAttestPolicy returns the newest policy, or ErrNotFound.
	GetAttestPolicy(ctx context.Context) (*AttestPolicy, error)
}

// SetAttestPolicy implements AttestPolicies.
func (s *SQL) SetAttestPolicy(ctx context.Context, p *AttestPolicy) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error { return insertAttestPolicy(ctx, tx, p) })
}

func insertAttestPolicy(ctx context.Context, tx *sql.Tx, p *AttestPolicy) error {
	var newest int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM attest_policies`).Scan(&newest); err != nil {
		return err
	}
	p.Version = newest + 1
	_, err := tx.ExecContext(ctx, `INSERT INTO attest_policies (version, policy_yaml, source, set_by, set_at) VALUES (?, ?, ?, ?, ?)`,
		p.Version, string(p.YAML), p.Source, p.SetBy, ns(p.SetAt))
	return err
}

// SeedAttestPolicy implements AttestPolicies.
func (s *SQL) SeedAttestPolicy(ctx context.Context, p *AttestPolicy) (bool, error) {
	stored := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM attest_policies`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		stored = true
		return insertAttestPolicy(ctx, tx, p)
	})
	return stored, err
}

// GetAttestPolicy implements AttestPolicies.
func (s *SQL) GetAttestPolicy(ctx context.Context) (*AttestPolicy, error) {
	var p AttestPolicy
	var doc string
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT version, policy_yaml, source, set_by, set_at FROM attest_policies ORDER BY version DESC LIMIT 1`).
		Scan(&p.Version, &doc, &p.Source, &p.SetBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.YAML, p.SetAt = []byte(doc), tm(at)
	return &p, nil
}
