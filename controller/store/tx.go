package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Every write of the store goes through writeTx or chainTx. On SQLite a
// write transaction is immediate and the writer is one connection, so
// writes follow one another. On PostgreSQL several controllers write at
// once: the writer pool's transactions are SERIALIZABLE (set on each
// connection, so every read-modify-write stays as correct as it is on
// SQLite), and one PostgreSQL aborts to keep that promise (a serialization
// failure or a deadlock) is run again from the start, a bounded number of
// times. A transaction function must therefore compute everything it
// writes from what it reads inside the transaction.

// maxTxAttempts bounds how often one transaction is tried.
const maxTxAttempts = 12

// backoff waits before attempt+1: a few milliseconds, doubling, jittered
// so that the aborted writers do not collide again.
func backoff(ctx context.Context, attempt int) error {
	d := min(2*time.Millisecond<<min(attempt, 8), 250*time.Millisecond)
	d = d/2 + rand.N(d) //nolint:gosec // G404: retry jitter needs spread, not secrecy
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errConflict is wrapped by the error of a write transaction PostgreSQL
// aborted for concurrent writers on every attempt.
var errConflict = errors.New("the transaction was aborted by concurrent writers")

// writeTx runs f in one write transaction of the store's writer. The
// Observer is told of it once, retries included.
func (s *SQL) writeTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	start := time.Now()
	err := writeTxOn(ctx, s.w, s.obs, f)
	s.obs.operation(OpWrite, start, err)
	return err
}

// chainTx runs f in one write transaction that appends to the hash chain
// named chain (AuditChain, CustodyChain(id)); see chainTxOn. The Observer
// is told of it once, retries included.
func (s *SQL) chainTx(ctx context.Context, chain string, f func(tx *sql.Tx) error) error {
	start := time.Now()
	err := chainTxOn(ctx, s.w, s.obs, chain, f)
	s.obs.operation(OpWrite, start, err)
	return err
}

// writeTxOn runs f in a write transaction on db, again when PostgreSQL
// aborted it for a serialization failure or a deadlock; obs (nil: none)
// is told of each retry.
func writeTxOn(ctx context.Context, db *sql.DB, obs *Observer, f func(tx *sql.Tx) error) error {
	return runTx(ctx, db, obs, nil, "", f)
}

// chainTxOn runs f in a write transaction on db that appends to one hash
// chain. On PostgreSQL the transaction first takes the chain's advisory
// lock (pg_advisory_xact_lock, released at commit or rollback), so the
// appends of every controller to one chain follow one another and each
// reads the head the previous one committed; it runs READ COMMITTED, so
// the statements after the lock see that head. The chain stays one chain.
func chainTxOn(ctx context.Context, db *sql.DB, obs *Observer, chain string, f func(tx *sql.Tx) error) error {
	return runTx(ctx, db, obs, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, chain, f)
}

func runTx(ctx context.Context, db *sql.DB, obs *Observer, opts *sql.TxOptions, chain string, f func(tx *sql.Tx) error) error {
	pg := isPostgres(db)
	if !pg {
		opts = nil
	}
	for attempt := 1; ; attempt++ {
		err := tryTx(ctx, db, opts, pg, chain, f)
		// PostgreSQL reports some conflicts between SERIALIZABLE
		// transactions as the unique violation the later insert causes
		// (two writers that read the same MAX(seq)), and its manual advises
		// retrying those: run again, the transaction reads what the other
		// committed and decides anew (its own checks report a real
		// duplicate, which recurs until the attempts run out). A chain
		// append holds its chain's lock, so its violations are real.
		again := retryable(err) || (pg && chain == "" && isUniqueViolation(err))
		if err == nil || !again || attempt >= maxTxAttempts {
			if err != nil && again {
				return fmt.Errorf("%w %d times: %w", errConflict, attempt, err)
			}
			return err
		}
		obs.retry(err)
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

func tryTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, pg bool, chain string, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if pg && chain != "" {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, lockKey("chain:"+chain)); err != nil {
			return fmt.Errorf("locking the %s chain: %w", chain, err)
		}
	}
	// Security-critical: a singleton job's write is refused, in its own
	// transaction, once its controller no longer holds the job's lease.
	if err := fenceTx(ctx, tx); err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// lockKey is the PostgreSQL advisory lock key of a name. Two names that
// share a key only wait for each other.
func lockKey(name string) int64 {
	sum := sha256.Sum256([]byte("firebreak:" + name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// exec runs one write statement in its own write transaction.
func (s *SQL) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, q, args...)
		return err
	})
	return res, err
}
