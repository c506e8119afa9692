package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestAuditTamperDetected edits and deletes audit rows behind the store's
// back, the way an intruder with the database file would, and checks that
// verification names the first bad record.
func TestAuditTamperDetected(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		tamper  []string
		wantSeq int64
		want    string
	}{
		{name: "edited detail", tamper: []string{`UPDATE audit SET detail_json = '{"n":2}' WHERE seq = 3`}, wantSeq: 3, want: "edited"},
		{name: "deleted record", tamper: []string{`DELETE FROM audit WHERE seq = 2`}, wantSeq: 2, want: "missing"},
		{name: "rewritten actor", tamper: []string{`UPDATE audit SET actor = 'operator:mallory' WHERE seq = 4`}, wantSeq: 4, want: "edited"},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				o := b.database(t)
				s, err := store.Open(ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				for i := 0; i < 5; i++ {
					if err := s.AppendAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: "operator:admin", Action: "run.create", Detail: []byte(`{"n":1}`)}); err != nil {
						t.Fatal(err)
					}
				}
				// The triggers stop the application itself from rewriting history.
				if _, err := s.Writer().ExecContext(ctx, tt.tamper[0]); err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Fatalf("tamper through the store connection: %v, want the append-only refusal", err)
				}
				raw := b.intruder(t, o, "audit")
				for _, q := range tt.tamper {
					if _, err := raw.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				chk, err := s.VerifyAudit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if chk.OK || chk.FirstBadSeq != tt.wantSeq || !strings.Contains(chk.Problem, tt.want) {
					t.Fatalf("check %+v, want record %d %q", chk, tt.wantSeq, tt.want)
				}
			})
		}
	})
}

// TestIdempotencyKeyMigration replays the key migrations over runs that
// playbooks created before keys existed, which carry their key as their
// reason: the first run of each reason gets it as its key, and the runs of
// operators keep none.
func TestIdempotencyKeyMigration(t *testing.T) { eachBackend(t, testIdempotencyKeyMigration) }

func testIdempotencyKeyMigration(t *testing.T, b backend) {
	ctx := context.Background()
	o := b.database(t)
	s, err := store.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	old := []struct {
		id, createdBy, reason string
		at                    time.Duration
	}{
		{"r-step", "playbook:contain", "playbook contain step a [pbr_1]", 0},
		// A second run with the same reason (the old executor could make one)
		// keeps no key: the first one is the step's run.
		{"r-step-dup", "playbook:contain", "playbook contain step a [pbr_1]", time.Second},
		{"r-rollback", "playbook:contain", "playbook contain rollback of step a target 0 [pbr_1]", 2 * time.Second},
		{"r-operator", "alice", "playbook contain step a [pbr_1]", 3 * time.Second},
		{"r-empty", "playbook:contain", "", 4 * time.Second},
	}
	for _, r := range old {
		if err := s.CreateRun(ctx, &store.Run{ID: r.id, Action: "sysinfo", Selector: "all", ParamsJSON: []byte(`{}`), CreatedBy: r.createdBy,
			Reason: r.reason, CreatedAt: base.Add(r.at)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Forget the key migrations, as a database from before them would.
	if _, err := s.Writer().ExecContext(ctx, `DROP INDEX runs_idempotency_key`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer().ExecContext(ctx, `DELETE FROM schema_migrations WHERE name IN ('runs-002-idempotency-key-backfill', 'runs-003-idempotency-key-unique')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = store.Open(ctx, o); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	defer s.Close()
	want := map[string]string{
		"r-step": "playbook contain step a [pbr_1]", "r-step-dup": "", "r-rollback": "playbook contain rollback of step a target 0 [pbr_1]",
		"r-operator": "", "r-empty": "",
	}
	for id, key := range want {
		r, _, err := s.GetRun(ctx, id)
		if err != nil || r.IdempotencyKey != key {
			t.Errorf("run %s: key %q (%v), want %q", id, r.IdempotencyKey, err, key)
		}
	}
	if r, _, err := s.RunByIdempotencyKey(ctx, "playbook contain step a [pbr_1]"); err != nil || r.ID != "r-step" {
		t.Fatalf("the step's run by its old key: %+v %v", r, err)
	}
	// The unique index is back: the key cannot be taken twice.
	if _, err := s.Writer().ExecContext(ctx, `UPDATE runs SET idempotency_key = 'playbook contain step a [pbr_1]' WHERE id = 'r-step-dup'`); err == nil {
		t.Fatal("two runs hold one key")
	}
	var n int
	indexes := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
	if o.DSN != "" {
		indexes = `SELECT COUNT(*) FROM pg_indexes WHERE indexname = ?`
	}
	if err := s.Reader().QueryRowContext(ctx, indexes, "runs_reason").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the reason index is still there (%d, %v)", n, err)
	}
}
