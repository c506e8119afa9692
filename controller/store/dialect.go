package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// The store's SQL is written once, with `?` placeholders, and runs on
// SQLite as it is. On PostgreSQL the database/sql pools are built on a
// connector that rebinds each statement's `?` to `$1`, `$2`, … before pgx
// sees it, so every *sql.DB and *sql.Tx the store hands out (Writer, Reader
// and those the case, evidence and playbook tables hold) speaks both.

// rebind turns the `?` placeholders of q into PostgreSQL's `$n`. A `?`
// inside a string literal, a quoted identifier, a dollar-quoted body or a
// comment is left alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// A doubled quote inside is read as the end of one literal and
			// the start of the next, which copies it unchanged.
			j := strings.IndexByte(q[i+1:], c)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+2])
			i += j + 2
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+1])
			i += j + 1
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+4])
			i += j + 4
		case c == '$':
			tag := dollarTag(q[i:])
			if tag == "" {
				b.WriteByte(c)
				i++
				continue
			}
			j := strings.Index(q[i+len(tag):], tag)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			end := i + len(tag) + j + len(tag)
			b.WriteString(q[i:end])
			i = end
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// dollarTag returns the dollar-quote opener at the start of s ($$ or
// $tag$), or "" when s does not start with one ($1 is a parameter).
func dollarTag(s string) string {
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			return s[:i+1]
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 1 && c >= '0' && c <= '9'):
		default:
			return ""
		}
	}
	return ""
}

// pgConnector builds the database/sql connections of a PostgreSQL pool.
type pgConnector struct{ inner driver.Connector }

// Connect implements driver.Connector.
func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{inner: conn.(*stdlib.Conn)}, nil
}

// Driver implements driver.Connector.
func (c pgConnector) Driver() driver.Driver { return c.inner.Driver() }

// pgConn is a pgx connection whose statements are rebound. A statement
// run outside a transaction that PostgreSQL aborts for a serialization
// failure or a deadlock rolled back whole, so it is run again (see
// retryable); transactions are retried by writeTx.
type pgConn struct{ inner *stdlib.Conn }

var (
	_ driver.ConnPrepareContext = (*pgConn)(nil)
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
	_ driver.NamedValueChecker  = (*pgConn)(nil)
	_ driver.SessionResetter    = (*pgConn)(nil)
)

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.inner.PrepareContext(ctx, rebind(query))
	if err != nil {
		return nil, err
	}
	return &pgStmt{inner: st.(*stdlib.Stmt)}, nil
}

// pgStmt is a prepared statement whose arguments pass pgArgs.
type pgStmt struct{ inner *stdlib.Stmt }

var (
	_ driver.StmtExecContext  = (*pgStmt)(nil)
	_ driver.StmtQueryContext = (*pgStmt)(nil)
)

func (s *pgStmt) Close() error  { return s.inner.Close() }
func (s *pgStmt) NumInput() int { return s.inner.NumInput() }

func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) { //nolint:staticcheck // driver.Stmt requires it
	return s.inner.Exec(pgValues(args)) //nolint:staticcheck // driver.Stmt requires it
}

func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) { //nolint:staticcheck // driver.Stmt requires it
	return s.inner.Query(pgValues(args)) //nolint:staticcheck // driver.Stmt requires it
}

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.inner.ExecContext(ctx, pgArgs(args))
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.inner.QueryContext(ctx, pgArgs(args))
}

// pgValues is pgArgs for positional values.
func pgValues(args []driver.Value) []driver.Value {
	var out []driver.Value
	for i, a := range args {
		v, ok := withoutNUL(a)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]driver.Value(nil), args...)
		}
		out[i] = v
	}
	if out == nil {
		return args
	}
	return out
}

func (c *pgConn) Close() error { return c.inner.Close() }

func (c *pgConn) Begin() (driver.Tx, error) { return c.inner.Begin() } //nolint:staticcheck // driver.Conn requires it

func (c *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner.BeginTx(ctx, opts)
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	query, args = rebind(query), pgArgs(args)
	autocommit := c.inner.Conn().PgConn().TxStatus() == 'I'
	for attempt := 1; ; attempt++ {
		res, err := c.inner.ExecContext(ctx, query, args)
		if err == nil || !autocommit || !retryable(err) || attempt >= maxTxAttempts {
			return res, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	query, args = rebind(query), pgArgs(args)
	autocommit := c.inner.Conn().PgConn().TxStatus() == 'I'
	for attempt := 1; ; attempt++ {
		rows, err := c.inner.QueryContext(ctx, query, args)
		if err == nil || !autocommit || !retryable(err) || attempt >= maxTxAttempts {
			return rows, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

func (c *pgConn) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

func (c *pgConn) CheckNamedValue(v *driver.NamedValue) error { return c.inner.CheckNamedValue(v) }

func (c *pgConn) ResetSession(ctx context.Context) error { return c.inner.ResetSession(ctx) }

// pgArgs replaces NUL characters in string arguments and string arrays, which PostgreSQL
// text cannot hold (SQLite stores them): a string an agent sent with one
// is stored with U+FFFD in its place instead of failing the whole write.
func pgArgs(args []driver.NamedValue) []driver.NamedValue {
	var out []driver.NamedValue
	for i, a := range args {
		v, ok := withoutNUL(a.Value)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]driver.NamedValue(nil), args...)
		}
		out[i].Value = v
	}
	if out == nil {
		return args
	}
	return out
}

// withoutNUL returns v with U+FFFD for each NUL of a string, or of each
// string of a []string (a text[] of the set-based writes), and true; or
// false when v holds no NUL.
func withoutNUL(v any) (any, bool) {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) < 0 {
			return nil, false
		}
		return strings.ReplaceAll(v, "\x00", "\uFFFD"), true
	case []string:
		var out []string
		for i, s := range v {
			if strings.IndexByte(s, 0) < 0 {
				continue
			}
			if out == nil {
				out = slices.Clone(v)
			}
			out[i] = strings.ReplaceAll(s, "\x00", "\uFFFD")
		}
		if out == nil {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// PostgreSQL's codes for a transaction aborted so that concurrent ones
// stay serializable: run it again from the start.
const (
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	pgUniqueViolation      = "23505"
)

// retryable reports whether err is PostgreSQL aborting a transaction for a
// serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == pgSerializationFailure || pe.Code == pgDeadlockDetected)
}

// uniqueViolation reports whether err is a unique constraint failing on
// PostgreSQL, on the index or constraint named.
func uniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueViolation && pe.ConstraintName == constraint
}

// isUniqueViolation reports whether err is a unique constraint failing
// on PostgreSQL.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueViolation
}

// isPostgres reports whether db is a PostgreSQL pool of this package.
func isPostgres(db *sql.DB) bool {
	_, ok := db.Driver().(*stdlib.Driver)
	return ok
}
