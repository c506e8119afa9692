package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/firebreak-ir/firebreak/internal/version"
)

// A migration is one versioned change of the schema, applied once per
// database under its name, in order, in its own transaction. sql is
// written for SQLite and runs on PostgreSQL after toPostgres; pg, when
// set, is the PostgreSQL text instead.
type migration struct {
	name string
	sql  string
	pg   string
}

// text is the migration's SQL for the dialect.
func (m migration) text(pg bool) string {
	switch {
	case !pg:
		return m.sql
	case m.pg != "":
		return m.pg
	}
	return toPostgres(m.sql)
}

var blobRE = regexp.MustCompile(`\bBLOB\b`)

// toPostgres turns the column types PostgreSQL spells otherwise.
// Timestamps are BIGINT nanoseconds in both.
func toPostgres(q string) string { return blobRE.ReplaceAllString(q, "BYTEA") }

// refuseTrigger is a migration creating a trigger that refuses every
// statement of event (UPDATE, UPDATE OF cols, DELETE) on table with msg,
// so the application cannot rewrite what must stay append-only. On
// PostgreSQL it is a plpgsql function with the trigger's name; a DELETE
// trigger also refuses TRUNCATE, which skips row triggers.
func refuseTrigger(trigger, event, table, msg string) migration {
	pg := fmt.Sprintf(`CREATE FUNCTION %[1]s() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN RAISE EXCEPTION '%[4]s'; END $fn$;
		CREATE TRIGGER %[1]s BEFORE %[2]s ON %[3]s FOR EACH ROW EXECUTE FUNCTION %[1]s()`, trigger, event, table, msg)
	if event == "DELETE" {
		pg += fmt.Sprintf(`; CREATE TRIGGER %[1]s_truncate BEFORE TRUNCATE ON %[2]s FOR EACH STATEMENT EXECUTE FUNCTION %[1]s()`, trigger, table)
	}
	return migration{pg: pg,
		sql: fmt.Sprintf(`CREATE TRIGGER %s BEFORE %s ON %s BEGIN SELECT RAISE(ABORT, '%s'); END`, trigger, event, table, msg)}
}

// allMigrations is every migration this binary knows, in order.
func allMigrations() []migration {
	all := make([]migration, 0, len(migrations)+len(namedMigrations)+len(extraMigrations))
	for i, m := range migrations {
		m.name = fmt.Sprintf("core-%03d", i+1)
		all = append(all, m)
	}
	all = append(all, namedMigrations...)
	all = append(all, attestationMigrations...)
	return append(all, extraMigrations...)
}

// migrationLockKey is the PostgreSQL advisory lock held while migrating.
var migrationLockKey = lockKey("schema migrations")

// MigrationReport says what opening a store did to its schema.
type MigrationReport struct {
	// Applied names the migrations this open applied, in order (empty:
	// the schema was current).
	Applied []string
	// Total is the number of migrations the database now holds.
	Total int
}

// migrate applies the migrations the database lacks, under a lock: on
// PostgreSQL a session advisory lock held on one connection while it
// applies them, so controllers starting together migrate once; on SQLite
// each migration's immediate transaction, which waits for any other
// writer, and the check inside it that the migration is still missing. A
// database holding a migration this binary does not know is refused.
func (s *SQL) migrate(ctx context.Context) (*MigrationReport, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	pg := isPostgres(s.w)
	if pg {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, migrationLockKey); err != nil {
			conn.Close()
			return nil, fmt.Errorf("taking the migration lock: %w", err)
		}
		defer unlockAndRelease(conn)
	} else {
		defer conn.Close()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("creating the migrations table: %w", err)
	}
	all := allMigrations()
	known := make(map[string]bool, len(all))
	for _, m := range all {
		known[m.name] = true
	}
	have, err := queryConnStrings(ctx, conn, `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("reading the applied migrations: %w", err)
	}
	done := make(map[string]bool, len(have))
	for _, n := range have {
		// Security-critical: a binary older than the schema would write
		// rows the newer schema's rules (and code) do not expect.
		if !known[n] {
			return nil, fmt.Errorf("the database schema is newer than this binary: it has migration %q, which firebreak %s does not know; upgrade the controller",
				n, version.Version)
		}
		done[n] = true
	}
	rep := &MigrationReport{}
	for _, m := range all {
		if done[m.name] {
			continue
		}
		applied, err := applyMigration(ctx, conn, m, pg)
		if err != nil {
			return nil, err
		}
		if applied {
			rep.Applied = append(rep.Applied, m.name)
		}
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rep.Total); err != nil {
		return nil, err
	}
	return rep, nil
}

// applyMigration applies m in one transaction unless another process did
// meanwhile; it reports whether it applied it.
func applyMigration(ctx context.Context, conn *sql.Conn, m migration, pg bool) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %s: beginning: %w", m.name, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, m.name).Scan(&n); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.text(pg)); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`, m.name, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	return true, nil
}

// unlockAndRelease releases the migration lock and the connection. When
// the lock cannot be released the connection is closed, which releases
// it, rather than returned to the pool holding it.
func unlockAndRelease(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock(?)`, migrationLockKey); err != nil {
		_ = conn.Raw(func(dc any) error {
			if c, ok := dc.(*pgConn); ok {
				_ = c.inner.Conn().Close(ctx)
			} else if c, ok := dc.(*stdlib.Conn); ok {
				_ = c.Conn().Close(ctx)
			}
			return driver.ErrBadConn
		})
	}
	conn.Close()
}

func queryConnStrings(ctx context.Context, conn *sql.Conn, q string) ([]string, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
