package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestCutAndRecomputedChainsAreCaught plays someone with write access to
// the controller's database but not its key. With the controller stopped,
// it cuts the tail of an evidence item's custody record (an operator's
// download) and of the audit log, or rewrites them and recomputes every
// hash with the exported hash functions, then restarts the controller:
// the signed checkpoints of the chains' heads give each edit away, and an
// anchor exported earlier catches a cut even when the checkpoints were
// deleted too.
func TestCutAndRecomputedChainsAreCaught(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "chain", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, agent.AgentID(t))
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--artifact", "users", "--wait", "--reason", "e2e chain anchor")
	evID, _ := onlyResult(t, run)
	agent.Kill()

	dir := t.TempDir()
	c.MustJSON(t, nil, 0, "evidence", "verify", evID)
	evAnchor := exportAnchor(t, c, filepath.Join(dir, "custody-head.json"), "evidence", "head", evID)
	c.MustJSON(t, nil, 0, "evidence", "verify", evID, "--anchor", evAnchor)
	auditAnchor := exportAnchor(t, c, filepath.Join(dir, "audit-head.json"), "audit", "head")
	c.MustJSON(t, nil, 0, "evidence", "get", evID, "-o", filepath.Join(dir, "download"), "--reason", "e2e download")
	var custody custodyJSON
	c.MustJSON(t, &custody, 0, "evidence", "custody", evID)
	if got := custody.actions(); got != "collected verify verify download" {
		t.Fatalf("custody actions %q", got)
	}
	c.MustJSON(t, nil, 0, "audit", "verify", "--anchor", auditAnchor)
	if err := c.Stop(); err != nil {
		t.Fatalf("stopping the controller: %v", err)
	}
	db := filepath.Join(c.DataDir, "firebreak.db")
	pristine := filepath.Join(dir, "pristine")
	copyDB(t, db, pristine)

	type check struct {
		args []string
		exit int
		want string
	}
	tests := []struct {
		name   string
		tamper []func(t *testing.T, raw *sql.DB)
		checks []check
	}{
		{
			name:   "last custody entry deleted",
			tamper: []func(*testing.T, *sql.DB){cutCustody(evID, 4)},
			checks: []check{
				{[]string{"evidence", "custody", evID}, 6, "entry 4 was removed"},
				{[]string{"evidence", "verify", evID}, 6, "entry 4 was removed"},
			},
		},
		{
			name:   "last audit records deleted",
			tamper: []func(*testing.T, *sql.DB){cutAudit(3)},
			checks: []check{
				{[]string{"audit", "verify"}, 6, "were removed"},
				{[]string{"audit", "head"}, 6, "removed"},
			},
		},
		{
			name: "edited and both chains recomputed",
			tamper: []func(*testing.T, *sql.DB){
				sqlStep(`UPDATE evidence_custody SET detail_json = replace(detail_json, 'e2e download', 'routine check') WHERE action = 'download'`),
				recomputeCustody(evID),
				sqlStep(`UPDATE audit SET actor = 'operator:mallory' WHERE seq = 2`),
				recomputeAudit,
			},
			checks: []check{
				{[]string{"evidence", "custody", evID}, 6, "recomputed"},
				{[]string{"evidence", "verify", evID}, 6, "recomputed"},
				{[]string{"audit", "verify"}, 6, "recomputed"},
			},
		},
		{
			name: "cut and both chains recomputed",
			tamper: []func(*testing.T, *sql.DB){
				cutCustody(evID, 4), sqlStep(`UPDATE evidence_custody SET actor = 'operator:mallory' WHERE seq = 2`), recomputeCustody(evID),
				cutAudit(1), sqlStep(`UPDATE audit SET subject = 'nothing' WHERE seq = 3`), recomputeAudit,
			},
			checks: []check{
				{[]string{"evidence", "custody", evID}, 6, "entry 4 was removed"},
				{[]string{"audit", "verify"}, 6, "removed"},
			},
		},
		{
			name: "tails cut and checkpoints deleted",
			tamper: []func(*testing.T, *sql.DB){
				cutCustody(evID, 2), cutAuditFromAnchor(t, auditAnchor), sqlStep(`DELETE FROM chain_checkpoints`),
			},
			checks: []check{
				// Without the checkpoints only an anchor kept elsewhere
				// shows the cut (docs/evidence.md says so).
				{[]string{"audit", "verify"}, 0, "audit log intact"},
				{[]string{"audit", "verify", "--anchor", auditAnchor}, 6, "against the anchor"},
				{[]string{"evidence", "verify", evID, "--anchor", evAnchor}, 6, "against the anchor"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			copyDB(t, pristine, db)
			raw, err := sql.Open("sqlite", "file:"+db)
			if err != nil {
				t.Fatal(err)
			}
			// The append-only triggers stop the application, not someone
			// holding the file.
			sqlStep(`DROP TRIGGER audit_no_update`, `DROP TRIGGER audit_no_delete`, `DROP TRIGGER evidence_custody_no_update`,
				`DROP TRIGGER evidence_custody_no_delete`)(t, raw)
			for _, f := range tt.tamper {
				f(t, raw)
			}
			if err := raw.Close(); err != nil {
				t.Fatal(err)
			}
			c.Restart(t)
			t.Cleanup(func() { _ = c.Stop() })
			for _, ck := range tt.checks {
				r := c.CLI(t, ck.args...)
				if r.Exit != ck.exit || !strings.Contains(r.Stdout+r.Stderr, ck.want) {
					t.Errorf("firebreak %v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", ck.args, r.Exit, ck.exit, ck.want, r.Stdout, r.Stderr)
				}
			}
			if err := c.Stop(); err != nil {
				t.Fatalf("stopping the controller: %v", err)
			}
		})
	}
}

// exportAnchor runs an export command and saves its stdout as an anchor.
func exportAnchor(t *testing.T, c *e2e.Controller, path string, args ...string) string {
	t.Helper()
	r := c.CLI(t, args...)
	if r.Exit != 0 || !json.Valid([]byte(r.Stdout)) {
		t.Fatalf("firebreak %v: exit %d\nstdout: %s\nstderr: %s", args, r.Exit, r.Stdout, r.Stderr)
	}
	if err := os.WriteFile(path, []byte(r.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// copyDB copies a SQLite database with its WAL files, removing stale ones.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(to + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		src, err := os.Open(from + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.OpenFile(to+suffix, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if err := errors.Join(err, dst.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

func sqlStep(qs ...string) func(*testing.T, *sql.DB) {
	return func(t *testing.T, raw *sql.DB) {
		t.Helper()
		for _, q := range qs {
			if _, err := raw.ExecContext(context.Background(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
}

// cutCustody deletes an item's custody entries from seq on.
func cutCustody(evID string, from int) func(*testing.T, *sql.DB) {
	return func(t *testing.T, raw *sql.DB) {
		t.Helper()
		if _, err := raw.ExecContext(context.Background(), `DELETE FROM evidence_custody WHERE evidence_id = ? AND seq >= ?`, evID, from); err != nil {
			t.Fatal(err)
		}
	}
}

// cutAudit deletes the last n audit records.
func cutAudit(n int) func(*testing.T, *sql.DB) {
	return func(t *testing.T, raw *sql.DB) {
		t.Helper()
		if _, err := raw.ExecContext(context.Background(), `DELETE FROM audit WHERE seq > (SELECT MAX(seq) FROM audit) - ?`, n); err != nil {
			t.Fatal(err)
		}
	}
}

// cutAuditFromAnchor deletes the audit records from an anchor's on.
func cutAuditFromAnchor(t *testing.T, anchorFile string) func(*testing.T, *sql.DB) {
	b, err := os.ReadFile(anchorFile)
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Length json.Number `json:"length"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.Length == "" {
		t.Fatalf("anchor %s: %v", b, err)
	}
	return func(t *testing.T, raw *sql.DB) {
		t.Helper()
		if _, err := raw.ExecContext(context.Background(), `DELETE FROM audit WHERE seq >= ?`, a.Length.String()); err != nil {
			t.Fatal(err)
		}
	}
}

// recomputeAudit re-links and re-hashes the whole audit log with the
// exported hash function.
func recomputeAudit(t *testing.T, raw *sql.DB) {
	t.Helper()
	ctx := context.Background()
	rows, err := raw.QueryContext(ctx, `SELECT seq, at, actor, action, subject, detail_json FROM audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*store.AuditRecord
	for rows.Next() {
		r := &store.AuditRecord{}
		var at int64
		var detail string
		if err := rows.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Subject, &detail); err != nil {
			t.Fatal(err)
		}
		r.At, r.Detail = time.Unix(0, at).UTC(), []byte(detail)
		recs = append(recs, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	prev := store.GenesisHash
	for _, r := range recs {
		r.PrevHash = prev
		r.Hash = store.AuditHash(r)
		if _, err := raw.ExecContext(ctx, `UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?`, r.PrevHash, r.Hash, r.Seq); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
	}
}

// recomputeCustody re-links and re-hashes an item's custody record with
// the exported hash function.
func recomputeCustody(evID string) func(*testing.T, *sql.DB) {
	return func(t *testing.T, raw *sql.DB) {
		t.Helper()
		ctx := context.Background()
		rows, err := raw.QueryContext(ctx, `SELECT seq, at, actor, action, detail_json FROM evidence_custody WHERE evidence_id = ? ORDER BY seq`, evID)
		if err != nil {
			t.Fatal(err)
		}
		var entries []*evidence.CustodyEntry
		for rows.Next() {
			e := &evidence.CustodyEntry{EvidenceID: evID}
			var at int64
			var detail string
			if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &detail); err != nil {
				t.Fatal(err)
			}
			e.At, e.Detail = time.Unix(0, at).UTC(), json.RawMessage(detail)
			entries = append(entries, e)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			t.Fatal(err)
		}
		prev := store.GenesisHash
		for _, e := range entries {
			e.PrevHash = prev
			e.Hash = evidence.CustodyHash(e)
			if _, err := raw.ExecContext(ctx, `UPDATE evidence_custody SET prev_hash = ?, hash = ? WHERE evidence_id = ? AND seq = ?`,
				e.PrevHash, e.Hash, evID, e.Seq); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash
		}
	}
}
