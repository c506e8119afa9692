package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

func testKey(seed byte) *store.CheckpointKey {
	return store.NewCheckpointKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

// openKeyed opens a store of backend b that checkpoints the audit log,
// appends n records, and returns it with an intruder's connection to its
// database (see backend.intruder).
func openKeyed(t *testing.T, b backend, n int) (*store.SQL, *sql.DB) {
	t.Helper()
	o := b.database(t)
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetCheckpointKey(testKey(1))
	appendN(t, s, n)
	return s, b.intruder(t, o, "audit")
}

func appendN(t *testing.T, s store.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := s.AppendAudit(context.Background(), &store.AuditRecord{At: time.Now(), Actor: "operator:admin", Action: "evidence.download",
			Subject: "ev-1", Detail: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

// recomputeAudit re-links and re-hashes every record from seq on with the
// exported hash function, so the chain verifies on its own again.
func recomputeAudit(t *testing.T, s store.Store, raw *sql.DB, from int64) {
	t.Helper()
	ctx := context.Background()
	recs, err := s.ListAudit(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	prev := store.GenesisHash
	for _, r := range recs {
		if r.Seq >= from {
			r.PrevHash = prev
			r.Hash = store.AuditHash(r)
			if _, err := raw.ExecContext(ctx, `UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?`, r.PrevHash, r.Hash, r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		prev = r.Hash
	}
}

func exec(t *testing.T, raw *sql.DB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := raw.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestAuditCheckpointCatchesCutAndRecompute cuts the audit log's tail and
// rewrites it with recomputed hashes behind the store's back; the signed
// checkpoint of the head, which the database alone cannot forge, gives
// each away.
func TestAuditCheckpointCatchesCutAndRecompute(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		tamper  func(t *testing.T, s *store.SQL, raw *sql.DB)
		wantSeq int64
		want    string
	}{
		{name: "untouched", tamper: func(*testing.T, *store.SQL, *sql.DB) {}},
		{name: "last record deleted", wantSeq: 5, want: "has 4 entries, but the controller signed a checkpoint of 5 entries",
			tamper: func(t *testing.T, _ *store.SQL, raw *sql.DB) { exec(t, raw, `DELETE FROM audit WHERE seq = 5`) }},
		{name: "two records deleted", wantSeq: 4, want: "entries 4 to 5 were removed",
			tamper: func(t *testing.T, _ *store.SQL, raw *sql.DB) { exec(t, raw, `DELETE FROM audit WHERE seq >= 4`) }},
		{name: "edited and recomputed", wantSeq: 5, want: "recomputed",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET actor = 'operator:mallory' WHERE seq = 3`)
				recomputeAudit(t, s, raw, 3)
			}},
		{name: "cut, edited and recomputed", wantSeq: 5, want: "entry 5 was removed",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 5`, `UPDATE audit SET subject = 'ev-2' WHERE seq = 2`)
				recomputeAudit(t, s, raw, 2)
			}},
		{name: "checkpoint moved back", wantSeq: 4, want: "not genuine",
			tamper: func(t *testing.T, _ *store.SQL, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 5`,
					`UPDATE chain_checkpoints SET length = 4, head_hash = (SELECT hash FROM audit WHERE seq = 4) WHERE chain = 'audit'`)
			}},
		{name: "checkpoint signed by another key", wantSeq: 4, want: "names signing key",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 5`)
				recs, _ := s.ListAudit(ctx, 3, 1)
				cp := testKey(2).Sign(store.AuditChain, 4, recs[0].Hash, time.Now())
				if _, err := raw.ExecContext(ctx, `UPDATE chain_checkpoints SET length = 4, head_hash = ?, key_id = ?, signature = ? WHERE chain = 'audit'`,
					cp.Head, cp.KeyID, cp.Signature); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "forged checkpoint, then the controller appends", wantSeq: 4, want: "not genuine",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 5`,
					`UPDATE chain_checkpoints SET length = 4, head_hash = (SELECT hash FROM audit WHERE seq = 4) WHERE chain = 'audit'`)
				// Neither append may sign over the forged checkpoint.
				appendN(t, s, 2)
			}},
		{name: "cut, then the controller appends", wantSeq: 5, want: "recomputed",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 5`)
				// The next append must not sign over the cut.
				appendN(t, s, 2)
			}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, raw := openKeyed(t, b, 5)
				tt.tamper(t, s, raw)
				chk, err := s.VerifyAudit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want == "" {
					if !chk.OK || chk.Checkpoint == nil || chk.Checkpoint.Length != 5 || chk.Checkpoint.Head != chk.HeadHash {
						t.Fatalf("check %+v, want intact with a checkpoint of record 5", chk)
					}
					return
				}
				if chk.OK || chk.FirstBadSeq != tt.wantSeq || !strings.Contains(chk.Problem, tt.want) {
					t.Fatalf("check %+v, want record %d %q", chk, tt.wantSeq, tt.want)
				}
			})
		}
	})
}

// TestAuditAnchor checks the log against a head exported earlier, after the
// intruder also deleted the stored checkpoints.
func TestAuditAnchor(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(t *testing.T, s *store.SQL, raw *sql.DB)
		anchor func(cp *store.Checkpoint) *store.Checkpoint
		want   string
	}{
		{name: "log extends the anchor", tamper: func(t *testing.T, s *store.SQL, _ *sql.DB) { appendN(t, s, 2) }},
		{name: "tail cut and checkpoints deleted", want: "against the anchor: the audit log has 2 entries, but the controller signed a checkpoint of 3 entries",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				appendN(t, s, 2)
				exec(t, raw, `DELETE FROM audit WHERE seq >= 3`, `DELETE FROM chain_checkpoints`)
			}},
		{name: "rewritten and checkpoints deleted", want: "against the anchor: entry 3's hash",
			tamper: func(t *testing.T, s *store.SQL, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET detail_json = '{"n":2}' WHERE seq = 1`, `DELETE FROM chain_checkpoints`)
				recomputeAudit(t, s, raw, 1)
			}},
		{name: "anchor altered", want: "not genuine",
			tamper: func(*testing.T, *store.SQL, *sql.DB) {},
			anchor: func(cp *store.Checkpoint) *store.Checkpoint { cp.Length = 2; return cp }},
		{name: "anchor of another chain", want: "not of the audit log",
			tamper: func(*testing.T, *store.SQL, *sql.DB) {},
			anchor: func(cp *store.Checkpoint) *store.Checkpoint {
				return testKey(1).Sign("custody:ev-1", cp.Length, cp.Head, cp.At)
			}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, raw := openKeyed(t, b, 3)
				anchor, err := s.AuditCheckpoint(ctx)
				if err != nil || anchor == nil || anchor.Length != 3 {
					t.Fatalf("head %+v, %v; want record 3", anchor, err)
				}
				if tt.anchor != nil {
					anchor = tt.anchor(anchor)
				}
				tt.tamper(t, s, raw)
				chk, err := s.VerifyAuditAnchor(ctx, anchor)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want == "" {
					if !chk.OK || !chk.AnchorOK {
						t.Fatalf("check %+v, want intact and holding the anchor", chk)
					}
					return
				}
				if chk.OK || chk.AnchorOK || !strings.Contains(chk.Problem, tt.want) {
					t.Fatalf("check %+v, want %q", chk, tt.want)
				}
			})
		}
	})
}

// BenchmarkAppendAudit measures an audit append with and without a signed
// checkpoint in the same transaction, the figure behind signing every
// append rather than batching.
func BenchmarkAppendAudit(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "plain"
		if keyed {
			name = "checkpointed"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "firebreak.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if keyed {
				s.SetCheckpointKey(testKey(1))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.AppendAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: "operator:admin", Action: "run.create",
					Detail: []byte(`{"run":"r-1"}`)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/append")
		})
	}
}
