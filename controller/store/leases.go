package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The lease and controller registry tables. Each migration is one
// portable statement. A lease row is never deleted: its token only grows,
// so a token once handed out is never handed out again.
func init() {
	RegisterMigration("cluster-001-leases", `CREATE TABLE leases (
		name TEXT PRIMARY KEY, holder TEXT NOT NULL, token BIGINT NOT NULL, expires_at BIGINT NOT NULL)`)
	RegisterMigration("cluster-002-controllers", `CREATE TABLE controllers (
		id TEXT PRIMARY KEY, address TEXT NOT NULL, version TEXT NOT NULL, started_at BIGINT NOT NULL,
		heartbeat_at BIGINT NOT NULL, agents BIGINT NOT NULL, leases_json TEXT NOT NULL)`)
	RegisterMigration("cluster-003-controllers-heartbeat", `CREATE INDEX controllers_heartbeat ON controllers (heartbeat_at)`)
}

// Lease is a named lease of a job that must run once in the cluster. Token
// is its fencing token: it grows by one every time the lease changes hands
// (or is taken again after it expired), so a write fenced with an older
// token is refused.
type Lease struct {
	Name      string
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

// ErrLeaseLost is returned by RenewLease when the lease is no longer the
// caller's: another holder took it, or it expired or was released.
var ErrLeaseLost = errors.New("the lease is no longer held")

// ErrFenced is returned by a write made with a fenced context (WithFence)
// when its lease has moved on: nothing of the write is stored.
var ErrFenced = errors.New("write refused: the fencing lease is no longer held with this token")

// Fence ties writes to a lease held with a token: see WithFence.
type Fence struct {
	// Lease is the lease's name.
	Lease string
	// Token is the fencing token the writer holds the lease with.
	Token int64
	// Clock tells the time the lease's expiry is checked against;
	// defaults to time.Now.
	Clock func() time.Time
}

type fenceKey struct{}

// WithFence returns a context whose store writes are fenced: each checks,
// inside its own transaction, that lease f.Lease is still held with token
// f.Token and has not expired, and is refused with ErrFenced otherwise.
func WithFence(ctx context.Context, f Fence) context.Context {
	if f.Clock == nil {
		f.Clock = time.Now
	}
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceOf returns the fence of ctx, if it has one.
func FenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// ControllerInfo is one controller's entry in the registry.
type ControllerInfo struct {
	// ID is the controller's id, random per process start.
	ID string
	// Address is its --listen address.
	Address string
	// Version is the controller's build version.
	Version string
	// StartedAt is when the process started.
	StartedAt time.Time
	// HeartbeatAt is its last heartbeat.
	HeartbeatAt time.Time
	// Agents is the number of agent streams it holds.
	Agents int64
	// Leases names the leases it held at its last heartbeat.
	Leases []string
}

// Leases are the leased singletons and the controller registry; *SQLite
// implements them.
type Leases interface {
	// AcquireLease takes lease name for holder until now+ttl when it is
	// free or expired (with the next fencing token), or renews it when
	// holder holds it already (same token). held reports whether holder
	// holds it now; the returned lease is the current row either way.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (l Lease, held bool, err error)
	// AcquireLeaseOfStopped is AcquireLease that also takes the lease,
	// unexpired, from a holder that stopped: a controller whose registry
	// heartbeat is older than stoppedBefore. A holder with no registry
	// entry counts as live until the lease expires. The old holder is
	// fenced as after an expiry: the token moves on.
	AcquireLeaseOfStopped(ctx context.Context, name, holder string, ttl time.Duration, now, stoppedBefore time.Time) (l Lease, held bool, err error)
	// RenewLease extends a held, unexpired lease to now+ttl, or returns an
	// error wrapping ErrLeaseLost.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration, now time.Time) (Lease, error)
	// ReleaseLease gives up a held lease at once, so another holder takes
	// it (with the next token) without waiting for it to expire. A lease
	// no longer held is left alone.
	ReleaseLease(ctx context.Context, l Lease) error
	// ListLeases returns every lease by name.
	ListLeases(ctx context.Context) ([]*Lease, error)
	// HeartbeatController records (inserts or replaces) a controller's
	// registry entry.
	HeartbeatController(ctx context.Context, info *ControllerInfo) error
	// ListControllers returns the controllers whose last heartbeat is at or
	// after aliveSince, by id.
	ListControllers(ctx context.Context, aliveSince time.Time) ([]*ControllerInfo, error)
}

var _ Leases = (*SQL)(nil)

// AcquireLease implements Leases. One conditional upsert decides, so two
// controllers racing for a free or expired lease cannot both take it.
func (s *SQL) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (Lease, bool, error) {
	return s.AcquireLeaseOfStopped(ctx, name, holder, ttl, now, time.Time{})
}

// AcquireLeaseOfStopped implements Leases: the same conditional upsert,
// whose condition also reads the holder's registry entry.
func (s *SQL) AcquireLeaseOfStopped(ctx context.Context, name, holder string, ttl time.Duration, now, stoppedBefore time.Time) (Lease, bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return Lease{}, false, fmt.Errorf("acquiring lease %q for %q: a name, a holder and a positive TTL are required", name, holder)
	}
	var l *Lease
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		// The SET expressions read the row as it was: the token moves on
		// unless the same holder renews an unexpired lease.
		// With a zero stoppedBefore no heartbeat is older (heartbeat_at
		// < 0 never holds).
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, 1, ?)
			ON CONFLICT (name) DO UPDATE SET
				token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ? THEN leases.token ELSE leases.token + 1 END,
				holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
				OR EXISTS (SELECT 1 FROM controllers c WHERE c.id = leases.holder AND c.heartbeat_at < ?)`,
			name, holder, ns(now.Add(ttl)), ns(now), ns(now), ns(stoppedBefore)); err != nil {
			return err
		}
		var err error
		l, err = scanLease(tx.QueryRowContext(ctx, `SELECT name, holder, token, expires_at FROM leases WHERE name = ?`, name))
		return err
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("acquiring lease %s: %w", name, err)
	}
	return *l, l.Holder == holder && l.ExpiresAt.After(now), nil
}

// RenewLease implements Leases.
func (s *SQL) RenewLease(ctx context.Context, l Lease, ttl time.Duration, now time.Time) (Lease, error) {
	res, err := s.exec(ctx, `UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?`,
		ns(now.Add(ttl)), l.Name, l.Holder, l.Token, ns(now))
	if err != nil {
		return l, fmt.Errorf("renewing lease %s: %w", l.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return l, fmt.Errorf("renewing lease %s: %w", l.Name, err)
	} else if n != 1 {
		return l, fmt.Errorf("renewing lease %s (token %d) for %s: %w", l.Name, l.Token, l.Holder, ErrLeaseLost)
	}
	l.ExpiresAt = tm(ns(now.Add(ttl)))
	return l, nil
}

// ReleaseLease implements Leases. The row stays, expired, so the next
// holder's token is still greater than every earlier one.
func (s *SQL) ReleaseLease(ctx context.Context, l Lease) error {
	if _, err := s.exec(ctx, `UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?`, l.Name, l.Holder, l.Token); err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.Name, err)
	}
	return nil
}

// ListLeases implements Leases.
func (s *SQL) ListLeases(ctx context.Context) ([]*Lease, error) {
	return queryAll(ctx, s.r, `SELECT name, holder, token, expires_at FROM leases ORDER BY name`, nil, scanLease)
}

func scanLease(sc scanner) (*Lease, error) {
	var l Lease
	var exp int64
	if err := sc.Scan(&l.Name, &l.Holder, &l.Token, &exp); err != nil {
		return nil, err
	}
	l.ExpiresAt = tm(exp)
	return &l, nil
}

// fenceTx refuses, inside tx, a write made with a fenced context whose
// lease is no longer held with the fence's token or has expired; without a
// fence it does nothing. Every write transaction of the store runs it
// first (see tryTx). It is a conditional no-op update rather
// than a read, so on PostgreSQL it also locks the lease row until tx ends:
// the lease cannot change hands between the check and the commit.
func fenceTx(ctx context.Context, tx *sql.Tx) error {
	f, ok := FenceOf(ctx)
	if !ok {
		return nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE leases SET token = token WHERE name = ? AND token = ? AND expires_at > ?`, f.Lease, f.Token, ns(f.Clock()))
	if err != nil {
		return fmt.Errorf("checking the fence of lease %s: %w", f.Lease, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("checking the fence of lease %s: %w", f.Lease, err)
	}
	// Security-critical: a holder that lost its lease (paused past its
	// TTL, cut off from the store) must not write over its successor.
	if n != 1 {
		return fmt.Errorf("lease %s, token %d: %w", f.Lease, f.Token, ErrFenced)
	}
	return nil
}

// HeartbeatController implements Leases.
func (s *SQL) HeartbeatController(ctx context.Context, c *ControllerInfo) error {
	if c.ID == "" {
		return errors.New("recording a controller heartbeat: the controller id is empty")
	}
	leases := c.Leases
	if leases == nil {
		leases = []string{}
	}
	lj, err := json.Marshal(leases)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO controllers (id, address, version, started_at, heartbeat_at, agents, leases_json) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version, started_at = excluded.started_at,
		heartbeat_at = excluded.heartbeat_at, agents = excluded.agents, leases_json = excluded.leases_json`,
		c.ID, c.Address, c.Version, ns(c.StartedAt), ns(c.HeartbeatAt), c.Agents, string(lj))
	if err != nil {
		return fmt.Errorf("recording the heartbeat of controller %s: %w", c.ID, err)
	}
	return nil
}

// ListControllers implements Leases.
func (s *SQL) ListControllers(ctx context.Context, aliveSince time.Time) ([]*ControllerInfo, error) {
	return queryAll(ctx, s.r, `SELECT id, address, version, started_at, heartbeat_at, agents, leases_json FROM controllers
		WHERE heartbeat_at >= ? ORDER BY id`, []any{ns(aliveSince)}, func(sc scanner) (*ControllerInfo, error) {
		var c ControllerInfo
		var started, hb int64
		var lj string
		if err := sc.Scan(&c.ID, &c.Address, &c.Version, &started, &hb, &c.Agents, &lj); err != nil {
			return nil, err
		}
		c.StartedAt, c.HeartbeatAt = tm(started), tm(hb)
		if err := json.Unmarshal([]byte(lj), &c.Leases); err != nil {
			return nil, fmt.Errorf("controller %s leases: %w", c.ID, err)
		}
		return &c, nil
	})
}
