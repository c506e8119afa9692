package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/version"
)

// TestMigrationsApplyOnce opens one fresh database from three instances at
// once, as controllers starting together do: the migrations are applied
// once in all, and a later open applies none.
func TestMigrationsApplyOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		db := b.fresh(t)
		reps := make([]store.MigrationReport, 3)
		var wg sync.WaitGroup
		for i := range reps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reps[i] = db(t).Migrated()
			}()
		}
		wg.Wait()
		applied := map[string]int{}
		for _, r := range reps {
			for _, n := range r.Applied {
				applied[n]++
			}
		}
		total := reps[0].Total
		if total == 0 || len(applied) != total {
			t.Fatalf("%d migrations applied of %d: %+v", len(applied), total, reps)
		}
		for n, c := range applied {
			if c != 1 {
				t.Errorf("migration %s applied %d times", n, c)
			}
		}
		if again := db(t).Migrated(); len(again.Applied) != 0 || again.Total != total {
			t.Fatalf("opening a current database again: %+v", again)
		}
	})
}

// TestNewerSchemaRefused opens a database that holds a migration this
// binary does not know, as one a newer controller migrated: refused.
func TestNewerSchemaRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		o := b.database(t)
		s, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Writer().ExecContext(context.Background(), `INSERT INTO schema_migrations (name, applied_at) VALUES ('zz-999-from-the-future', 1)`); err != nil {
			t.Fatal(err)
		}
		_, err = store.Open(context.Background(), o)
		want := `the database schema is newer than this binary: it has migration "zz-999-from-the-future", which firebreak ` + version.Version +
			` does not know; upgrade the controller`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("opening a newer schema: %v, want %q", err, want)
		}
	})
}
