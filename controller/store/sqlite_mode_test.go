package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestSQLiteFilesArePrivate opens a new database and one an earlier
// version left world-readable, writes to each, and checks that the database
// and its -wal and -shm files are 0600.
func TestSQLiteFilesArePrivate(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
	}{
		{"new database", func(*testing.T, string) {}},
		{"database left 0644 with its -wal and -shm", func(t *testing.T, path string) {
			s, err := store.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateJoinToken(context.Background(), &store.JoinToken{Hash: "h0", Role: "host", Uses: 1, UsesLeft: 1}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Left open, as a crash leaves it: the -wal and -shm stay.
			t.Cleanup(func() { s.Close() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "firebreak.db")
			tt.prepare(t, path)
			s, err := store.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.CreateJoinToken(context.Background(), &store.JoinToken{Hash: "h1", Role: "host", Uses: 1, UsesLeft: 1}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(p), err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
				}
			}
		})
	}
}
