package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/controller/store/storetest"
)

func openSQLite(t *testing.T) store.Store {
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteConformance(t *testing.T) { storetest.Run(t, openSQLite) }

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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "firebreak.db")
			s, err := store.OpenSQLite(ctx, path)
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
			raw, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range append([]string{`DROP TRIGGER audit_no_update`, `DROP TRIGGER audit_no_delete`}, tt.tamper...) {
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
}
