package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Operation kinds an Observer is told of.
const (
	// OpRead is one query on the reader pool.
	OpRead = "read"
	// OpWrite is one write transaction (writeTx, chainTx, exec), its
	// retries included.
	OpWrite = "write"
)

// Outcomes an Observer is told of.
const (
	// OutcomeOK is an operation that succeeded.
	OutcomeOK = "ok"
	// OutcomeConflict is a write PostgreSQL aborted for concurrent writers
	// on every attempt.
	OutcomeConflict = "conflict"
	// OutcomeCanceled is an operation whose context ended first.
	OutcomeCanceled = "canceled"
	// OutcomeError is an operation that failed otherwise.
	OutcomeError = "error"
)

// Reasons a write transaction is run again, passed to Observer.Retry.
const (
	// RetrySerialization is a SERIALIZABLE transaction PostgreSQL aborted
	// (SQLSTATE 40001).
	RetrySerialization = "serialization_failure"
	// RetryDeadlock is a transaction PostgreSQL chose as a deadlock's
	// victim (40P01).
	RetryDeadlock = "deadlock"
	// RetryUnique is the unique violation a concurrent writer's insert
	// caused, which PostgreSQL's manual advises running again (see runTx).
	RetryUnique = "unique_violation"
)

// Observer is told of the store's operations, for the controller's
// metrics. Each operation is told once, from the store's central paths:
// every write transaction (writeTx, chainTx and exec, which uses writeTx)
// and every query on the reader pool (readDB). A nil field is not called;
// the zero Observer observes nothing. Opening the store (its migrations)
// is not observed.
type Observer struct {
	// Operation is called once per operation with its kind (OpRead,
	// OpWrite), outcome (OutcomeOK, …) and how long it took: a write from
	// its first BEGIN to its COMMIT, the backoff between attempts
	// included; a read until its rows are ready to scan.
	Operation func(kind, outcome string, took time.Duration)
	// Retry is called each time a write transaction PostgreSQL aborted is
	// run again, with why (RetrySerialization, RetryDeadlock,
	// RetryUnique).
	Retry func(reason string)
}

func (o *Observer) operation(kind string, start time.Time, err error) {
	if o == nil || o.Operation == nil {
		return
	}
	o.Operation(kind, outcome(err), time.Since(start))
}

func (o *Observer) retry(err error) {
	if o == nil || o.Retry == nil {
		return
	}
	o.Retry(retryReason(err))
}

// outcome classifies an operation's error.
func outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, errConflict):
		return OutcomeConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// retryReason says why PostgreSQL aborted a transaction that is run again.
func retryReason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgDeadlockDetected {
		return RetryDeadlock
	}
	if isUniqueViolation(err) {
		return RetryUnique
	}
	return RetrySerialization
}

// readDB is the reader pool: its queries are timed for the Observer.
// Everything else is the pool's own.
type readDB struct {
	*sql.DB
	obs *Observer
}

// QueryContext runs a query on the reader pool and observes it.
func (r *readDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	start := time.Now()
	rows, err := r.DB.QueryContext(ctx, query, args...)
	r.obs.operation(OpRead, start, err)
	return rows, err
}

// QueryRowContext runs a one-row query on the reader pool and observes it.
// A query that finds no row is an OutcomeOK read: sql.ErrNoRows is the
// caller's answer, not a failure of the store.
func (r *readDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	start := time.Now()
	row := r.DB.QueryRowContext(ctx, query, args...)
	r.obs.operation(OpRead, start, row.Err())
	return row
}
