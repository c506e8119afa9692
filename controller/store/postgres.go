package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// DatabaseFile is the SQLite database's file in the data directory.
const DatabaseFile = "firebreak.db"

// Options say which database Open opens.
type Options struct {
	// DSN is the PostgreSQL database, postgres://USER[:PASSWORD]@HOST/DB?…
	// (postgresql:// too); empty for SQLite in DataDir.
	DSN string
	// DataDir holds the SQLite database (DatabaseFile) when DSN is empty.
	DataDir string
	// Observer is told of the store's reads and writes once it is open
	// (the controller's metrics); the zero Observer observes nothing.
	Observer Observer
}

// IsPostgresDSN reports whether dsn names a PostgreSQL database.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// ErrUnreachable is wrapped by the errors of a PostgreSQL store that
// could not be reached (refused, timed out, starting up, shutting down):
// worth trying again, unlike a refused password or a missing database.
var ErrUnreachable = errors.New("the store cannot be reached")

// CheckOptions checks that o names a store Open can open, without
// opening it.
func CheckOptions(o Options) error {
	switch {
	case o.DSN == "":
		if o.DataDir == "" {
			return errors.New("the store needs a data directory for its SQLite database, or a postgres:// DSN")
		}
		return nil
	case IsPostgresDSN(o.DSN):
		if _, err := pgxpool.ParseConfig(o.DSN); err != nil {
			// pgx's parse errors quote the DSN, password and all.
			return fmt.Errorf("the store %s is not a valid PostgreSQL URL: give postgres://USER@HOST/DB?sslmode=verify-full", RedactDSN(o.DSN))
		}
		return nil
	}
	scheme, _, found := strings.Cut(o.DSN, "://")
	if !found {
		return fmt.Errorf("the store %q is not a database URL: give postgres://USER@HOST/DB?sslmode=verify-full, or no --store for SQLite in the data directory",
			RedactDSN(o.DSN))
	}
	return fmt.Errorf("the store %q is a %s:// URL: the store is PostgreSQL (postgres:// or postgresql://), or SQLite in the data directory without --store",
		RedactDSN(o.DSN), scheme)
}

// Open opens and migrates the store the options name: SQLite in DataDir
// when DSN is empty, PostgreSQL for a postgres:// or postgresql:// DSN.
func Open(ctx context.Context, o Options) (*SQL, error) {
	if err := CheckOptions(o); err != nil {
		return nil, err
	}
	var s *SQL
	var err error
	if o.DSN == "" {
		s, err = OpenSQLite(ctx, filepath.Join(o.DataDir, DatabaseFile))
	} else {
		s, err = OpenPostgres(ctx, o.DSN)
	}
	if err != nil {
		return nil, err
	}
	obs := o.Observer
	s.obs, s.r.obs = &obs, &obs
	return s, nil
}

// defaultPoolConns is the size of each pgx pool, unless the DSN sets
// pool_max_conns.
const defaultPoolConns = 16

// OpenPostgres opens (migrating) the PostgreSQL database dsn through two
// pgx pools: the writer's, whose transactions are SERIALIZABLE (see
// writeTx), and the reader's, READ COMMITTED. It fails when the database
// cannot be reached; errors name the DSN without its password.
func OpenPostgres(ctx context.Context, dsn string) (*SQL, error) {
	shown := RedactDSN(dsn)
	open := func(isolation string) (*pgxpool.Pool, error) {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			// pgx's parse errors quote the DSN, password and all.
			return nil, fmt.Errorf("the store %s is not a valid PostgreSQL URL: give postgres://USER@HOST/DB?sslmode=verify-full", shown)
		}
		if !strings.Contains(dsn, "pool_max_conns") {
			// pgxpool's default is the number of CPUs (at least 4), too few
			// for a controller's dispatcher, fleet and API writing at once.
			cfg.MaxConns = defaultPoolConns
		}
		if cfg.ConnConfig.ConnectTimeout == 0 {
			// A server that does not answer is reported, not waited for.
			cfg.ConnConfig.ConnectTimeout = 10 * time.Second
		}
		cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = isolation
		if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
			cfg.ConnConfig.RuntimeParams["application_name"] = "firebreak-controller"
		}
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("connecting to the store %s: %s", shown, redactIn(err.Error(), dsn))
		}
		return p, nil
	}
	wp, err := open("serializable")
	if err != nil {
		return nil, err
	}
	rp, err := open("read committed")
	if err != nil {
		wp.Close()
		return nil, err
	}
	s := &SQL{w: pgDB(wp), r: &readDB{DB: pgDB(rp)}, closePools: func() { wp.Close(); rp.Close() }}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, openError("connecting to", shown, dsn, err)
	}
	if s.migrated, err = s.migrate(ctx); err != nil {
		s.Close()
		return nil, openError("migrating", shown, dsn, err)
	}
	return s, nil
}

// openError says what failed on the store shown, without the password,
// wrapping ErrUnreachable when the server could not be reached.
func openError(doing, shown, dsn string, err error) error {
	msg := redactIn(err.Error(), dsn)
	if unreachable(err) {
		return fmt.Errorf("%s the store %s: %w: %s", doing, shown, ErrUnreachable, msg)
	}
	return fmt.Errorf("%s the store %s: %s", doing, shown, msg)
}

// unreachable reports whether err is the server not being reached, rather
// than it refusing this client.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is a connection exception; 57P01-03 a server shutting
		// down or starting up.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// pgDB is a database/sql pool on a pgx pool, whose statements are
// rebound from `?` to `$n`.
func pgDB(p *pgxpool.Pool) *sql.DB {
	db := sql.OpenDB(pgConnector{inner: stdlib.GetPoolConnector(p)})
	// As stdlib.OpenDBFromPool: the pgx pool keeps the idle connections.
	db.SetMaxIdleConns(0)
	return db
}

// RedactDSN returns dsn without its password, for errors and logs: the
// password of a URL's user information, and a password= parameter of the
// URL's query or of a key=value DSN, become "xxxxx".
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.Opaque == "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// Not a URL (a key=value DSN, or a URL that does not parse): hide
	// whatever follows "password=" and, in a URL-like text, what sits
	// between the user's colon and the "@".
	out := dsn
	if i := strings.Index(strings.ToLower(out), "password="); i >= 0 {
		rest := out[i+len("password="):]
		end := strings.IndexAny(rest, " &")
		if end < 0 {
			end = len(rest)
		}
		out = out[:i+len("password=")] + "xxxxx" + rest[end:]
	}
	if scheme := strings.Index(out, "://"); scheme >= 0 {
		auth := out[scheme+3:]
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			if colon := strings.Index(auth[:at], ":"); colon >= 0 {
				out = out[:scheme+3] + auth[:colon+1] + "xxxxx" + auth[at:]
			}
		}
	}
	return out
}

// redactIn removes the password of dsn from a message that may quote it.
func redactIn(msg, dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		if p, has := u.User.Password(); has && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		if p := u.Query().Get("password"); p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return strings.ReplaceAll(msg, dsn, RedactDSN(dsn))
}
