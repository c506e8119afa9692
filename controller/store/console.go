package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The web console's one-time login links and sessions. Only hashes of the
// secrets are stored, so a copy of the database signs nobody in. Both live
// in the store, so any controller of a cluster serves any console request.
func init() {
	RegisterMigration("console-001-links", `CREATE TABLE console_links (
		hash TEXT PRIMARY KEY, operator TEXT NOT NULL, cert_serial TEXT NOT NULL,
		created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT NOT NULL)`)
	RegisterMigration("console-002-sessions", `CREATE TABLE console_sessions (
		hash TEXT PRIMARY KEY, operator TEXT NOT NULL, cert_serial TEXT NOT NULL, role BIGINT NOT NULL,
		source TEXT NOT NULL, csrf TEXT NOT NULL, created_at BIGINT NOT NULL, last_seen BIGINT NOT NULL,
		expires_at BIGINT NOT NULL, ended_at BIGINT NOT NULL)`)
}

// Console link refusals, each a precise reason a login link signs nobody in.
var (
	ErrConsoleLinkUnknown = errors.New("the login link is not known to this controller: ask for a new one with `firebreak console login`")
	ErrConsoleLinkUsed    = errors.New("the login link has been used already; a link signs in once: ask for a new one with `firebreak console login`")
	ErrConsoleLinkExpired = errors.New("the login link has expired (a link is valid for 60 seconds): ask for a new one with `firebreak console login`")
)

// ErrConsoleSessionEnded is returned for a console session that is
// unknown, logged out, idle too long or past its absolute lifetime.
var ErrConsoleSessionEnded = errors.New("the console session has ended: sign in again")

// ConsoleLink is a one-time console login link, bound to the operator
// credential that asked for it.
type ConsoleLink struct {
	// Hash is the SHA-256 of the link's secret, hex.
	Hash string
	// Operator is the operator the link signs in.
	Operator string
	// CertSerial is the serial of the credential that asked for the link:
	// a revoked or replaced credential's links sign nobody in.
	CertSerial string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// ConsoleSession is a signed-in console session.
type ConsoleSession struct {
	// Hash is the SHA-256 of the session cookie's secret, hex.
	Hash string
	// Operator is who the session acts as: an operator's name, or for
	// single sign-on the identity provider's subject as oidc:EMAIL.
	Operator string
	// CertSerial binds a link session to the operator's credential; empty
	// for single sign-on sessions.
	CertSerial string
	// Role is the operator role of a single sign-on session (from the
	// group mapping); link sessions take the operator's stored role.
	Role int32
	// Source is how the session was signed in: "link" or "oidc".
	Source string
	// CSRF is the session's anti-forgery token.
	CSRF      string
	CreatedAt time.Time
	LastSeen  time.Time
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time
}

// ConsoleStore keeps the console's login links and sessions.
type ConsoleStore interface {
	// CreateConsoleLink stores a login link.
	CreateConsoleLink(ctx context.Context, l *ConsoleLink) error
	// ConsumeConsoleLink uses a link up atomically and returns it, or
	// returns ErrConsoleLinkUnknown, ErrConsoleLinkUsed or
	// ErrConsoleLinkExpired. A link is consumed once, by one controller.
	ConsumeConsoleLink(ctx context.Context, hash string, now time.Time) (*ConsoleLink, error)
	// CreateConsoleSession stores a new session.
	CreateConsoleSession(ctx context.Context, s *ConsoleSession) error
	// TouchConsoleSession returns a live session and records now as its
	// last use, or returns ErrConsoleSessionEnded when it is unknown,
	// ended, unused for idle or past its absolute expiry.
	TouchConsoleSession(ctx context.Context, hash string, now time.Time, idle time.Duration) (*ConsoleSession, error)
	// EndConsoleSession ends a session at now; ending an ended or unknown
	// session is not an error.
	EndConsoleSession(ctx context.Context, hash string, now time.Time) error
}

var _ ConsoleStore = (*SQL)(nil)

// CreateConsoleLink implements ConsoleStore.
func (s *SQL) CreateConsoleLink(ctx context.Context, l *ConsoleLink) error {
	if _, err := s.exec(ctx, `INSERT INTO console_links (hash, operator, cert_serial, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, 0)`,
		l.Hash, l.Operator, l.CertSerial, ns(l.CreatedAt), ns(l.ExpiresAt)); err != nil {
		return fmt.Errorf("storing a console login link: %w", err)
	}
	return nil
}

// ConsumeConsoleLink implements ConsoleStore. The conditional update
// decides: two controllers given the same link cannot both use it.
func (s *SQL) ConsumeConsoleLink(ctx context.Context, hash string, now time.Time) (*ConsoleLink, error) {
	var l ConsoleLink
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var created, exp, used int64
		err := tx.QueryRowContext(ctx, `SELECT hash, operator, cert_serial, created_at, expires_at, used_at FROM console_links WHERE hash = ?`, hash).
			Scan(&l.Hash, &l.Operator, &l.CertSerial, &created, &exp, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrConsoleLinkUnknown
		}
		if err != nil {
			return err
		}
		l.CreatedAt, l.ExpiresAt = tm(created), tm(exp)
		if used != 0 {
			return ErrConsoleLinkUsed
		}
		if !now.Before(l.ExpiresAt) {
			return ErrConsoleLinkExpired
		}
		res, err := tx.ExecContext(ctx, `UPDATE console_links SET used_at = ? WHERE hash = ? AND used_at = 0`, ns(now), hash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrConsoleLinkUsed
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &l, nil
}

// CreateConsoleSession implements ConsoleStore.
func (s *SQL) CreateConsoleSession(ctx context.Context, cs *ConsoleSession) error {
	if _, err := s.exec(ctx, `INSERT INTO console_sessions (hash, operator, cert_serial, role, source, csrf, created_at, last_seen, expires_at, ended_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
		cs.Hash, cs.Operator, cs.CertSerial, cs.Role, cs.Source, cs.CSRF, ns(cs.CreatedAt), ns(cs.LastSeen), ns(cs.ExpiresAt)); err != nil {
		return fmt.Errorf("storing a console session: %w", err)
	}
	return nil
}

// TouchConsoleSession implements ConsoleStore. The update names every
// condition of a live session, so a session another controller ended is
// never revived.
func (s *SQL) TouchConsoleSession(ctx context.Context, hash string, now time.Time, idle time.Duration) (*ConsoleSession, error) {
	res, err := s.exec(ctx, `UPDATE console_sessions SET last_seen = ?
		WHERE hash = ? AND ended_at = 0 AND expires_at > ? AND last_seen > ?`, ns(now), hash, ns(now), ns(now.Add(-idle)))
	if err != nil {
		return nil, fmt.Errorf("reading the console session: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("reading the console session: %w", err)
	} else if n != 1 {
		return nil, ErrConsoleSessionEnded
	}
	var cs ConsoleSession
	var created, seen, exp int64
	err = s.r.QueryRowContext(ctx, `SELECT hash, operator, cert_serial, role, source, csrf, created_at, last_seen, expires_at FROM console_sessions WHERE hash = ?`, hash).
		Scan(&cs.Hash, &cs.Operator, &cs.CertSerial, &cs.Role, &cs.Source, &cs.CSRF, &created, &seen, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrConsoleSessionEnded
	}
	if err != nil {
		return nil, fmt.Errorf("reading the console session: %w", err)
	}
	cs.CreatedAt, cs.LastSeen, cs.ExpiresAt = tm(created), tm(seen), tm(exp)
	return &cs, nil
}

// EndConsoleSession implements ConsoleStore.
func (s *SQL) EndConsoleSession(ctx context.Context, hash string, now time.Time) error {
	if _, err := s.exec(ctx, `UPDATE console_sessions SET ended_at = ? WHERE hash = ? AND ended_at = 0`, ns(now), hash); err != nil {
		return fmt.Errorf("ending the console session: %w", err)
	}
	return nil
}
