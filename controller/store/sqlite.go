package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"modernc.org/sqlite" // registers the pure-Go "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// SQL is the store on a SQL database: SQLite, embedded (one file, WAL
// journal, one writer connection and a pool of readers), or PostgreSQL,
// shared by the controllers of a cluster (see OpenPostgres). The SQL is
// written once, with `?` placeholders (see rebind).
type SQL struct {
	w *sql.DB
	// r is the reader pool; its queries are observed (see readDB).
	r *readDB
	// obs is told of the store's operations (nil: nothing is).
	obs *Observer
	// closePools closes what the database/sql pools are built on (the pgx
	// pools of PostgreSQL); nil for SQLite.
	closePools func()
	// migrated is what opening the store did to the schema.
	migrated *MigrationReport
	// auditMu serialises this process's audit appends and guards
	// lastAuditCP; appends of other controllers are serialised by the
	// audit chain's lock (see chainTx).
	auditMu sync.Mutex
	// lastAuditCP is the audit checkpoint this store last wrote, so the
	// next append need not check its signature again when the stored one
	// is still exactly it. When another controller appended meanwhile the
	// stored checkpoint differs, and its signature is checked.
	lastAuditCP *Checkpoint
	// ckey signs chain checkpoints (nil: none are written or checked).
	ckey atomic.Pointer[CheckpointKey]
}

// OpenSQLite opens (creating and migrating) the database at path. The
// database and its -wal and -shm files are private to this user (0600).
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	if err := privateDatabaseFiles(path); err != nil {
		return nil, err
	}
	unlock, err := lockOpen(ctx, path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The pragmas run in this order on each new connection: busy_timeout
	// first, so that switching a new database to WAL, which needs the
	// database to itself, waits for another opener (a second store on the
	// same file, `controller migrate`) instead of failing with SQLITE_BUSY.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening the database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	s := &SQL{w: w, r: &readDB{DB: r}}
	if s.migrated, err = s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrating the database %s: %w", path, err)
	}
	// SQLite gives the -wal and -shm files it has now created the mode of
	// the database; make sure of it, whatever an earlier version left.
	if err := privateDatabaseFiles(path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrated says which migrations opening the store applied.
func (s *SQL) Migrated() MigrationReport { return *s.migrated }

// privateDatabaseFiles creates the database file 0600 before SQLite opens
// it (SQLite creates it 0644 less the umask, and copies that mode to the
// -wal and -shm files), and removes the group and other bits of the
// database, -wal and -shm files that exist.
func privateDatabaseFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening the database %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("the database file %s: %w", p, err)
		}
		if st.Mode().Perm()&0o077 == 0 {
			continue
		}
		// Security-critical: the database holds the fleet, the runs and
		// the audit log; others must not read it.
		if err := os.Chmod(p, st.Mode().Perm()&^0o077); err != nil {
			return fmt.Errorf("the database file %s is readable by other users (mode %v) and could not be made private: %w",
				p, st.Mode().Perm(), err)
		}
	}
	return nil
}

// Close implements Store.
func (s *SQL) Close() error {
	err := errors.Join(s.r.Close(), s.w.Close())
	if s.closePools != nil {
		s.closePools()
	}
	return err
}

// Ping implements Store: both pools answer.
func (s *SQL) Ping(ctx context.Context) error {
	return errors.Join(s.w.PingContext(ctx), s.r.PingContext(ctx))
}

var migrations = []migration{
	{sql: `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`},
	{sql: `CREATE TABLE agents (
		id TEXT PRIMARY KEY, role TEXT NOT NULL, hostname TEXT NOT NULL,
		facts_json TEXT NOT NULL, plugins_json TEXT NOT NULL,
		enrolled_at BIGINT NOT NULL, last_seen BIGINT NOT NULL,
		cert_serial TEXT NOT NULL, cert_not_after BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
		token_labels_json TEXT NOT NULL DEFAULT '{}')`},
	{sql: `CREATE TABLE join_tokens (
		hash TEXT PRIMARY KEY, role TEXT NOT NULL, uses INTEGER NOT NULL, uses_left INTEGER NOT NULL,
		expires_at BIGINT NOT NULL, labels_json TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL)`},
	{sql: `CREATE TABLE operators (
		name TEXT PRIMARY KEY, role INTEGER NOT NULL, cert_serial TEXT NOT NULL,
		created_by TEXT NOT NULL, created_at BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)`},
	{sql: `CREATE TABLE runs (
		id TEXT PRIMARY KEY, action TEXT NOT NULL, selector TEXT NOT NULL, params_json TEXT NOT NULL,
		status INTEGER NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
		started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL, deadline BIGINT NOT NULL,
		deadline_after BIGINT NOT NULL, max_concurrency INTEGER NOT NULL, max_errors TEXT NOT NULL,
		reason TEXT NOT NULL, case_id TEXT NOT NULL, destructive INTEGER NOT NULL,
		accounts TEXT NOT NULL, regions TEXT NOT NULL, upload_bps BIGINT NOT NULL DEFAULT 0)`},
	{sql: `CREATE INDEX runs_created ON runs (created_at)`},
	{sql: `CREATE INDEX runs_status ON runs (status)`},
	{sql: `CREATE TABLE tasks (
		id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL,
		agent_id TEXT NOT NULL, hostname TEXT NOT NULL, status INTEGER NOT NULL, error TEXT NOT NULL,
		output_json BLOB, signed_task BLOB, dispatched_at BIGINT NOT NULL, started_at BIGINT NOT NULL,
		finished_at BIGINT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL,
		evidence_ids TEXT NOT NULL, last_message TEXT NOT NULL)`},
	{sql: `CREATE INDEX tasks_run ON tasks (run_id, seq)`},
	{sql: `CREATE TABLE approvals (
		run_id TEXT NOT NULL REFERENCES runs(id), operator TEXT NOT NULL, approved INTEGER NOT NULL,
		at BIGINT NOT NULL, comment TEXT NOT NULL)`},
	{sql: `CREATE TABLE audit (
		seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
		subject TEXT NOT NULL, detail_json TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`},
	// The audit log is append-only for the application; tampering by hand
	// is caught by the hash chain.
	refuseTrigger("audit_no_update", "UPDATE", "audit", "the audit log is append-only"),
	refuseTrigger("audit_no_delete", "DELETE", "audit", "the audit log is append-only"),
	{sql: `CREATE TABLE accounts (
		id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, status TEXT NOT NULL,
		ou_path TEXT NOT NULL, regions TEXT NOT NULL, synced_at BIGINT NOT NULL)`},
	{sql: `ALTER TABLE runs ADD COLUMN max_per_account INTEGER NOT NULL DEFAULT 0`},
	{sql: `ALTER TABLE runs ADD COLUMN on_behalf_of TEXT NOT NULL DEFAULT ''`},
	{sql: `ALTER TABLE join_tokens ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0`},
}

// namedMigrations run after the core ones, in order, each once per
// database under its name: the playbook runs' tables (see playbookruns.go),
// then the runs' idempotency keys. The playbook tables' names are those the
// playbookrun package registered them under, so databases it migrated are
// not migrated again.
var namedMigrations = append(append([]migration{}, playbookRunMigrations...),
	migration{name: "runs-001-idempotency-key", sql: `ALTER TABLE runs ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT ''`},
	// Runs a playbook created before keys existed carry their key as their
	// reason (the executor looked them up by it): the first run with each
	// such reason gets it as its key, so a step in flight across the
	// upgrade still finds its run.
	migration{name: "runs-002-idempotency-key-backfill", sql: `UPDATE runs SET idempotency_key = reason
		WHERE created_by LIKE 'playbook:%' AND reason <> '' AND idempotency_key = '' AND NOT EXISTS (
			SELECT 1 FROM runs o WHERE o.reason = runs.reason AND o.created_by LIKE 'playbook:%'
			AND (o.created_at < runs.created_at OR (o.created_at = runs.created_at AND o.id < runs.id)))`},
	migration{name: "runs-003-idempotency-key-unique", sql: `CREATE UNIQUE INDEX runs_idempotency_key ON runs (idempotency_key) WHERE idempotency_key <> ''`},
	// Nothing looks runs up by their reason any more.
	migration{name: "runs-004-drop-reason-index", sql: `DROP INDEX IF EXISTS runs_reason`},
	// The agent lifecycle: when and why an agent was revoked, and the
	// instance an agent's certificate names (account/instance id), by
	// which an instance of a revoked agent is refused enrollment.
	migration{name: "agents-001-lifecycle", sql: `ALTER TABLE agents ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
		ALTER TABLE agents ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';
		ALTER TABLE agents ADD COLUMN instance_key TEXT NOT NULL DEFAULT '';
		CREATE INDEX agents_instance ON agents (instance_key) WHERE instance_key <> ''`},
	// What discovery could not learn about each account (a JSON list of
	// AccountUnknown), so an account whose regions were refused is kept.
	migration{name: "accounts-001-unknown", sql: `ALTER TABLE accounts ADD COLUMN unknown_json TEXT NOT NULL DEFAULT '[]'`},
	// When AWS reported an agent's instance terminated (0: never), so a
	// terminated agent is neither offline nor a target, and is forgotten
	// after --forget-terminated-after.
	migration{name: "agents-002-terminated", sql: `ALTER TABLE agents ADD COLUMN terminated_at BIGINT NOT NULL DEFAULT 0`},
)

// extraMigrations are the named migrations of the tables kept beside the
// core ones: the store's checkpoint, case and evidence tables, and those
// other packages register.
var extraMigrations []migration

// RegisterMigration adds a named migration that runs after the core ones,
// once per database. Names must be unique and stable. The SQL is written
// for SQLite; on PostgreSQL its BLOB columns become BYTEA.
func RegisterMigration(name, sql string) {
	registerMigration(migration{name: name, sql: sql})
}

// registerMigration adds a migration, which may carry its own PostgreSQL
// text, after the core ones.
func registerMigration(m migration) { extraMigrations = append(extraMigrations, m) }

var _ Store = (*SQL)(nil)

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PutAgent implements Store.
func (s *SQL) PutAgent(ctx context.Context, a *Agent) error {
	facts, err := protojson.Marshal(orEmpty(a.Facts))
	if err != nil {
		return err
	}
	plugins, err := marshalPlugins(a.Plugins)
	if err != nil {
		return err
	}
	tokenLabels, _ := json.Marshal(a.TokenLabels)
	return s.writeTx(ctx, func(tx *sql.Tx) error { return putAgentTx(ctx, tx, a, string(facts), plugins, string(tokenLabels)) })
}

// putAgentTx writes an agent row in tx.
func putAgentTx(ctx context.Context, tx *sql.Tx, a *Agent, facts, plugins, tokenLabels string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO agents (id, role, hostname, facts_json, plugins_json, enrolled_at, last_seen, cert_serial, cert_not_after, revoked, token_labels_json,
		revoked_at, revoke_reason, instance_key, terminated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET role = excluded.role, hostname = excluded.hostname, facts_json = excluded.facts_json,
		plugins_json = excluded.plugins_json, last_seen = excluded.last_seen, cert_serial = excluded.cert_serial,
		cert_not_after = excluded.cert_not_after, revoked = excluded.revoked, token_labels_json = excluded.token_labels_json,
		revoked_at = excluded.revoked_at, revoke_reason = excluded.revoke_reason, instance_key = excluded.instance_key,
		terminated_at = excluded.terminated_at`,
		a.ID, a.Role, a.Hostname, facts, plugins, ns(a.EnrolledAt), ns(a.LastSeen), a.CertSerial, ns(a.CertNotAfter), b2i(a.Revoked), tokenLabels,
		ns(a.RevokedAt), a.RevokeReason, instanceKey(a.Facts.GetAccount(), a.Facts.GetInstanceId()), ns(a.TerminatedAt))
	return err
}

func orEmpty(f *agentv1.AgentFacts) *agentv1.AgentFacts {
	if f == nil {
		return &agentv1.AgentFacts{}
	}
	return f
}

func marshalPlugins(ps []*agentv1.PluginInfo) (string, error) {
	raw := make([]json.RawMessage, 0, len(ps))
	for _, p := range ps {
		b, err := protojson.Marshal(p)
		if err != nil {
			return "", err
		}
		raw = append(raw, b)
	}
	b, err := json.Marshal(raw)
	return string(b), err
}

func unmarshalPlugins(s string) ([]*agentv1.PluginInfo, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, err
	}
	out := make([]*agentv1.PluginInfo, 0, len(raw))
	for _, r := range raw {
		p := &agentv1.PluginInfo{}
		if err := protojson.Unmarshal(r, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

const agentCols = `id, role, hostname, facts_json, plugins_json, enrolled_at, last_seen, cert_serial, cert_not_after, revoked, token_labels_json,
	revoked_at, revoke_reason, terminated_at`

func scanAgent(sc interface{ Scan(...any) error }) (*Agent, error) {
	var a Agent
	var facts, plugins, tokenLabels string
	var enrolled, seen, notAfter, revokedAt, terminatedAt int64
	var revoked int
	if err := sc.Scan(&a.ID, &a.Role, &a.Hostname, &facts, &plugins, &enrolled, &seen, &a.CertSerial, &notAfter, &revoked, &tokenLabels,
		&revokedAt, &a.RevokeReason, &terminatedAt); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(tokenLabels), &a.TokenLabels)
	a.Facts = &agentv1.AgentFacts{}
	if err := protojson.Unmarshal([]byte(facts), a.Facts); err != nil {
		return nil, fmt.Errorf("agent %s facts: %w", a.ID, err)
	}
	var err error
	if a.Plugins, err = unmarshalPlugins(plugins); err != nil {
		return nil, fmt.Errorf("agent %s plugins: %w", a.ID, err)
	}
	a.EnrolledAt, a.LastSeen, a.CertNotAfter, a.Revoked = tm(enrolled), tm(seen), tm(notAfter), revoked != 0
	a.RevokedAt, a.TerminatedAt = tm(revokedAt), tm(terminatedAt)
	return &a, nil
}

// GetAgent implements Store.
func (s *SQL) GetAgent(ctx context.Context, id string) (*Agent, error) {
	a, err := scanAgent(s.r.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return a, err
}

// ListAgents implements Store.
func (s *SQL) ListAgents(ctx context.Context) ([]*Agent, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+agentCols+` FROM agents ORDER BY hostname, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// instanceKey is an agent's instance as the agents table indexes it; ""
// for an agent not on an EC2 instance.
func instanceKey(account, instanceID string) string {
	if instanceID == "" {
		return ""
	}
	return account + "/" + instanceID
}

// AgentsOnInstance implements Store.
func (s *SQL) AgentsOnInstance(ctx context.Context, account, instanceID string) ([]*Agent, error) {
	key := instanceKey(account, instanceID)
	if key == "" {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+agentCols+` FROM agents WHERE instance_key = ? ORDER BY id`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAgent implements Store.
func (s *SQL) DeleteAgent(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `DELETE FROM agents WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}

// TouchAgents implements Store.
func (s *SQL) TouchAgents(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	pg := isPostgres(s.w)
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if pg {
			return touchAgentsPG(ctx, tx, seen)
		}
		st, err := tx.PrepareContext(ctx, `UPDATE agents SET last_seen = ? WHERE id = ? AND last_seen < ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for id, t := range seen {
			if _, err := st.ExecContext(ctx, ns(t), id, ns(t)); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetAgentFacts implements Store.
func (s *SQL) SetAgentFacts(ctx context.Context, id string, facts *agentv1.AgentFacts) error {
	b, err := protojson.Marshal(orEmpty(facts))
	if err != nil {
		return err
	}
	res, err := s.exec(ctx, `UPDATE agents SET facts_json = ? WHERE id = ?`, string(b), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateJoinToken implements Store.
func (s *SQL) CreateJoinToken(ctx context.Context, t *JoinToken) error {
	labels, _ := json.Marshal(t.Labels)
	_, err := s.exec(ctx, `INSERT INTO join_tokens (hash, role, uses, uses_left, expires_at, labels_json, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.Hash, t.Role, t.Uses, t.UsesLeft, ns(t.ExpiresAt), string(labels), t.CreatedBy, ns(t.CreatedAt))
	return err
}

// ConsumeJoinToken implements Store.
func (s *SQL) ConsumeJoinToken(ctx context.Context, hash string, now time.Time) (*JoinToken, error) {
	var t *JoinToken
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = consumeJoinToken(ctx, tx, hash, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// EnrollWithToken implements Store.
func (s *SQL) EnrollWithToken(ctx context.Context, hash string, now time.Time, build func(*JoinToken) (*Agent, error)) (*JoinToken, *Agent, error) {
	var t *JoinToken
	var a *Agent
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = consumeJoinToken(ctx, tx, hash, now); err != nil {
			return err
		}
		if a, err = build(t); err != nil {
			return err
		}
		facts, err := protojson.Marshal(orEmpty(a.Facts))
		if err != nil {
			return err
		}
		plugins, err := marshalPlugins(a.Plugins)
		if err != nil {
			return err
		}
		tokenLabels, _ := json.Marshal(a.TokenLabels)
		return putAgentTx(ctx, tx, a, string(facts), plugins, string(tokenLabels))
	})
	if err != nil {
		return nil, nil, err
	}
	return t, a, nil
}

// consumeJoinToken reads the token and takes one use within tx. Two
// controllers that read the same uses left cannot both take the last:
// PostgreSQL aborts one of the SERIALIZABLE transactions, which reads the
// token again (see writeTx); SQLite has one writer.
func consumeJoinToken(ctx context.Context, tx *sql.Tx, hash string, now time.Time) (*JoinToken, error) {
	var t JoinToken
	var labels string
	var exp, created int64
	var revoked int
	err := tx.QueryRowContext(ctx, `SELECT hash, role, uses, uses_left, expires_at, labels_json, created_by, created_at, revoked FROM join_tokens WHERE hash = ?`, hash).
		Scan(&t.Hash, &t.Role, &t.Uses, &t.UsesLeft, &exp, &labels, &t.CreatedBy, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrTokenUnknown
	}
	if err != nil {
		return nil, err
	}
	t.ExpiresAt, t.CreatedAt, t.Revoked = tm(exp), tm(created), revoked != 0
	_ = json.Unmarshal([]byte(labels), &t.Labels)
	if t.Revoked {
		return nil, ErrTokenRevoked
	}
	if !now.Before(t.ExpiresAt) {
		return nil, ErrTokenExpired
	}
	if t.UsesLeft <= 0 {
		return nil, ErrTokenExhausted
	}
	t.UsesLeft--
	if _, err := tx.ExecContext(ctx, `UPDATE join_tokens SET uses_left = ? WHERE hash = ?`, t.UsesLeft, hash); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListJoinTokens implements Store.
func (s *SQL) ListJoinTokens(ctx context.Context) ([]*JoinToken, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT hash, role, uses, uses_left, expires_at, labels_json, created_by, created_at, revoked FROM join_tokens ORDER BY created_at, hash`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*JoinToken
	for rows.Next() {
		var t JoinToken
		var labels string
		var exp, created int64
		var revoked int
		if err := rows.Scan(&t.Hash, &t.Role, &t.Uses, &t.UsesLeft, &exp, &labels, &t.CreatedBy, &created, &revoked); err != nil {
			return nil, err
		}
		t.ExpiresAt, t.CreatedAt, t.Revoked = tm(exp), tm(created), revoked != 0
		_ = json.Unmarshal([]byte(labels), &t.Labels)
		out = append(out, &t)
	}
	return out, rows.Err()
}

// RevokeJoinToken implements Store.
func (s *SQL) RevokeJoinToken(ctx context.Context, id string) (*JoinToken, error) {
	if !tokenIDRE.MatchString(id) {
		return nil, ErrNotFound
	}
	all, err := s.ListJoinTokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range all {
		if t.ID() != id {
			continue
		}
		if _, err := s.exec(ctx, `UPDATE join_tokens SET revoked = 1 WHERE hash = ?`, t.Hash); err != nil {
			return nil, err
		}
		t.Revoked = true
		return t, nil
	}
	return nil, ErrNotFound
}

// PutOperator implements Store.
func (s *SQL) PutOperator(ctx context.Context, o *Operator) error {
	_, err := s.exec(ctx, `INSERT INTO operators (name, role, cert_serial, created_by, created_at, revoked) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial, revoked = excluded.revoked`,
		o.Name, int(o.Role), o.CertSerial, o.CreatedBy, ns(o.CreatedAt), b2i(o.Revoked))
	return err
}

func scanOperator(sc interface{ Scan(...any) error }) (*Operator, error) {
	var o Operator
	var role, revoked int
	var created int64
	if err := sc.Scan(&o.Name, &role, &o.CertSerial, &o.CreatedBy, &created, &revoked); err != nil {
		return nil, err
	}
	o.Role, o.CreatedAt, o.Revoked = operatorv1.OperatorRole(role), tm(created), revoked != 0
	return &o, nil
}

// GetOperator implements Store.
func (s *SQL) GetOperator(ctx context.Context, name string) (*Operator, error) {
	o, err := scanOperator(s.r.QueryRowContext(ctx, `SELECT name, role, cert_serial, created_by, created_at, revoked FROM operators WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return o, err
}

// ListOperators implements Store.
func (s *SQL) ListOperators(ctx context.Context) ([]*Operator, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, role, cert_serial, created_by, created_at, revoked FROM operators ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Operator
	for rows.Next() {
		o, err := scanOperator(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

const runCols = `id, action, selector, params_json, status, created_by, created_at, started_at, finished_at, deadline, deadline_after, max_concurrency, max_errors, reason, case_id, destructive, accounts, regions, upload_bps, max_per_account, on_behalf_of, idempotency_key, owner`

func runArgs(r *Run) []any {
	return []any{r.ID, r.Action, r.Selector, string(r.ParamsJSON), int(r.Status), r.CreatedBy, ns(r.CreatedAt), ns(r.StartedAt), ns(r.FinishedAt),
		ns(r.Deadline), int64(r.DeadlineAfter), r.MaxConcurrency, r.MaxErrors, r.Reason, r.CaseID, b2i(r.Destructive), r.Accounts, r.Regions, r.UploadBPS, r.MaxPerAccount, r.OnBehalfOf, r.IdempotencyKey, r.Owner}
}

func scanRun(sc interface{ Scan(...any) error }) (*Run, error) {
	var r Run
	var params string
	var status, destructive int
	var created, started, finished, deadline, after int64
	if err := sc.Scan(&r.ID, &r.Action, &r.Selector, &params, &status, &r.CreatedBy, &created, &started, &finished, &deadline, &after,
		&r.MaxConcurrency, &r.MaxErrors, &r.Reason, &r.CaseID, &destructive, &r.Accounts, &r.Regions, &r.UploadBPS, &r.MaxPerAccount, &r.OnBehalfOf, &r.IdempotencyKey, &r.Owner); err != nil {
		return nil, err
	}
	r.ParamsJSON, r.Status, r.Destructive = []byte(params), operatorv1.RunStatus(status), destructive != 0
	r.CreatedAt, r.StartedAt, r.FinishedAt, r.Deadline, r.DeadlineAfter = tm(created), tm(started), tm(finished), tm(deadline), time.Duration(after)
	return &r, nil
}

const taskCols = `id, run_id, seq, agent_id, hostname, status, error, output_json, signed_task, dispatched_at, started_at, finished_at, account, region, evidence_ids, last_message`

func scanTask(sc scanner) (*Task, error) {
	var t Task
	var status int
	var disp, started, finished int64
	var ev string
	if err := sc.Scan(&t.ID, &t.RunID, &t.Seq, &t.AgentID, &t.Hostname, &status, &t.Error, &t.OutputJSON, &t.SignedTask,
		&disp, &started, &finished, &t.Account, &t.Region, &ev, &t.LastMessage); err != nil {
		return nil, err
	}
	t.Status = agentv1.TaskStatus(status)
	t.DispatchedAt, t.StartedAt, t.FinishedAt = tm(disp), tm(started), tm(finished)
	if ev != "" {
		t.EvidenceIDs = strings.Split(ev, ",")
	}
	return &t, nil
}

// CreateRun implements Store.
func (s *SQL) CreateRun(ctx context.Context, r *Run, tasks []*Task) error {
	pg := isPostgres(s.w)
	return s.writeTx(ctx, func(tx *sql.Tx) error { return createRun(ctx, tx, pg, r, tasks) })
}

// createRun stores r and its tasks in tx; pg says tx is PostgreSQL's,
// where the tasks are inserted set-based (see insertTasksPG).
func createRun(ctx context.Context, tx *sql.Tx, pg bool, r *Run, tasks []*Task) error {
	if r.IdempotencyKey != "" {
		// No other run can take the key between this read and the insert:
		// SQLite has one writer, and PostgreSQL aborts one of two
		// SERIALIZABLE transactions that both found it free (the retry
		// then finds it taken). The unique index holds it anyway.
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM runs WHERE idempotency_key = ?`, r.IdempotencyKey).Scan(&id)
		if err == nil {
			return fmt.Errorf("idempotency key %q (run %s): %w", r.IdempotencyKey, id, ErrIdempotencyKeyUsed)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO runs (`+runCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, runArgs(r)...); err != nil {
		if r.IdempotencyKey != "" && idempotencyKeyTaken(err) {
			return fmt.Errorf("idempotency key %q: %w", r.IdempotencyKey, ErrIdempotencyKeyUsed)
		}
		return err
	}
	if pg {
		return insertTasksPG(ctx, tx, tasks)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO tasks (`+taskCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, t := range tasks {
		if _, err := st.ExecContext(ctx, t.ID, t.RunID, t.Seq, t.AgentID, t.Hostname, int(t.Status), t.Error, t.OutputJSON, t.SignedTask,
			ns(t.DispatchedAt), ns(t.StartedAt), ns(t.FinishedAt), t.Account, t.Region, strings.Join(t.EvidenceIDs, ","), t.LastMessage); err != nil {
			return err
		}
	}
	return nil
}

// idempotencyKeyTaken reports whether err is the runs' unique index on
// idempotency keys refusing an insert, in either dialect.
func idempotencyKeyTaken(err error) bool {
	if se := (*sqlite.Error)(nil); errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(se.Error(), "idempotency_key")
	}
	return uniqueViolation(err, "runs_idempotency_key")
}

// UpdateRun implements Store.
func (s *SQL) UpdateRun(ctx context.Context, r *Run) error {
	return s.SaveTasks(ctx, nil, []*Run{r})
}

// SaveTasks implements Store.
func (s *SQL) SaveTasks(ctx context.Context, tasks []*Task, runs []*Run) error {
	pg := isPostgres(s.w)
	return s.writeTx(ctx, func(tx *sql.Tx) error { return saveTasks(ctx, tx, pg, tasks, runs) })
}

// saveTasks stores the mutable fields of tasks and runs in tx; pg says tx
// is PostgreSQL's, where they are written set-based (see updateTasksPG).
func saveTasks(ctx context.Context, tx *sql.Tx, pg bool, tasks []*Task, runs []*Run) error {
	if pg {
		if err := updateTasksPG(ctx, tx, tasks); err != nil {
			return err
		}
		return updateRunsPG(ctx, tx, runs)
	}
	if len(tasks) > 0 {
		st, err := tx.PrepareContext(ctx, `UPDATE tasks SET status = ?, error = ?, output_json = ?, signed_task = ?, dispatched_at = ?, started_at = ?,
		finished_at = ?, evidence_ids = ?, last_message = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, t := range tasks {
			if _, err := st.ExecContext(ctx, int(t.Status), t.Error, t.OutputJSON, t.SignedTask, ns(t.DispatchedAt), ns(t.StartedAt),
				ns(t.FinishedAt), strings.Join(t.EvidenceIDs, ","), t.LastMessage, t.ID); err != nil {
				return err
			}
		}
	}
	for _, r := range runs {
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, started_at = ?, finished_at = ?, deadline = ? WHERE id = ?`,
			int(r.Status), ns(r.StartedAt), ns(r.FinishedAt), ns(r.Deadline), r.ID); err != nil {
			return err
		}
	}
	return nil
}

// GetRun implements Store.
func (s *SQL) GetRun(ctx context.Context, id string) (*Run, []*Task, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	tasks, err := s.tasksOf(ctx, id)
	return r, tasks, err
}

// RunByIdempotencyKey implements Store.
func (s *SQL) RunByIdempotencyKey(ctx context.Context, key string) (*Run, []*Task, error) {
	if key == "" {
		return nil, nil, ErrNotFound
	}
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE idempotency_key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	tasks, err := s.tasksOf(ctx, r.ID)
	return r, tasks, err
}

func (s *SQL) tasksOf(ctx context.Context, runID string) ([]*Task, error) {
	return tasksIn(ctx, s.r, runID)
}

// tasksIn reads a run's tasks through q (the reader pool, or a
// transaction).
func tasksIn(ctx context.Context, q rowsQuerier, runID string) ([]*Task, error) {
	return queryAll(ctx, q, `SELECT `+taskCols+` FROM tasks WHERE run_id = ? ORDER BY seq`, []any{runID}, scanTask)
}

// ListRuns implements Store.
func (s *SQL) ListRuns(ctx context.Context, limit int) ([]*Run, error) {
	if limit <= 0 {
		limit = 50
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+runCols+` FROM runs ORDER BY created_at DESC, id LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ListActiveRuns implements Store.
func (s *SQL) ListActiveRuns(ctx context.Context) ([]*Run, map[string][]*Task, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+runCols+` FROM runs WHERE status IN (?, ?) ORDER BY created_at`,
		int(operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL), int(operatorv1.RunStatus_RUN_STATUS_RUNNING))
	if err != nil {
		return nil, nil, err
	}
	var runs []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, nil, err
		}
		runs = append(runs, r)
	}
	rows.Close()
	tasks := map[string][]*Task{}
	for _, r := range runs {
		ts, err := s.tasksOf(ctx, r.ID)
		if err != nil {
			return nil, nil, err
		}
		tasks[r.ID] = ts
	}
	return runs, tasks, nil
}

// AddApproval implements Store.
func (s *SQL) AddApproval(ctx context.Context, a *Approval) error {
	_, err := s.exec(ctx, `INSERT INTO approvals (run_id, operator, approved, at, comment) VALUES (?, ?, ?, ?, ?)`,
		a.RunID, a.Operator, b2i(a.Approved), ns(a.At), a.Comment)
	return err
}

// ListApprovals implements Store.
func (s *SQL) ListApprovals(ctx context.Context, runID string) ([]*Approval, error) {
	return approvalsIn(ctx, s.r, runID)
}

// approvalsIn reads a run's approvals through q (the reader pool, or a
// transaction).
func approvalsIn(ctx context.Context, q rowsQuerier, runID string) ([]*Approval, error) {
	return queryAll(ctx, q, `SELECT run_id, operator, approved, at, comment FROM approvals WHERE run_id = ? ORDER BY at`, []any{runID},
		func(sc scanner) (*Approval, error) {
			var a Approval
			var approved int
			var at int64
			if err := sc.Scan(&a.RunID, &a.Operator, &approved, &at, &a.Comment); err != nil {
				return nil, err
			}
			a.Approved, a.At = approved != 0, tm(at)
			return &a, nil
		})
}

// ReplaceAccounts implements Store.
func (s *SQL) ReplaceAccounts(ctx context.Context, accounts []*Account) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM accounts`); err != nil {
			return err
		}
		for _, a := range accounts {
			regions, _ := json.Marshal(a.Regions)
			unknown := []byte("[]")
			if len(a.Unknown) > 0 {
				unknown, _ = json.Marshal(a.Unknown)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, name, email, status, ou_path, regions, synced_at, unknown_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				a.ID, a.Name, a.Email, a.Status, a.OUPath, string(regions), ns(a.SyncedAt), string(unknown)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListAccounts implements Store.
func (s *SQL) ListAccounts(ctx context.Context) ([]*Account, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, email, status, ou_path, regions, synced_at, unknown_json FROM accounts ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Account
	for rows.Next() {
		var a Account
		var regions, unknown string
		var synced int64
		if err := rows.Scan(&a.ID, &a.Name, &a.Email, &a.Status, &a.OUPath, &regions, &synced, &unknown); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(regions), &a.Regions)
		_ = json.Unmarshal([]byte(unknown), &a.Unknown)
		a.SyncedAt = tm(synced)
		out = append(out, &a)
	}
	return out, rows.Err()
}

// GetMeta implements Store.
func (s *SQL) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

// SetMeta implements Store.
func (s *SQL) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.exec(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// SetMetaIfAbsent implements Store: the insert does nothing on a key that
// exists, and the read in the same transaction returns what it holds.
func (s *SQL) SetMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	var stored string
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&stored)
	})
	return stored, err
}

// EncodeSignedTask serialises a signed task for the tasks table.
func EncodeSignedTask(st *agentv1.SignedTask) ([]byte, error) { return proto.Marshal(st) }

// DecodeSignedTask parses a stored signed task.
func DecodeSignedTask(b []byte) (*agentv1.SignedTask, error) {
	st := &agentv1.SignedTask{}
	return st, proto.Unmarshal(b, st)
}
