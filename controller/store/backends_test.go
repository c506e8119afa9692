package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/controller/store/storetest"
	"github.com/firebreak-ir/firebreak/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A backend makes fresh databases; each opens as many store instances as
// a test wants, with their own pools, as separate controllers would.
type backend struct {
	name string
	// database returns the options that open a fresh database.
	database func(t testing.TB) store.Options
}

var backends = []backend{
	{name: "sqlite", database: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }},
	{name: "postgres", database: func(t testing.TB) store.Options { return store.Options{DSN: pgtest.New(t)} }},
}

// fresh returns the opener of store instances on a fresh database.
func (b backend) fresh(t *testing.T) storetest.Database {
	o := b.database(t)
	return func(t *testing.T) *store.SQL {
		s, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openFresh opens one store on a fresh database of b.
func (b backend) openFresh(t *testing.T) *store.SQL { return b.fresh(t)(t) }

func TestConformance(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		storetest.Run(t, func(t *testing.T) store.Store { return b.openFresh(t) })
	})
}

func TestConcurrentControllers(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) { storetest.RunConcurrency(t, b.fresh) })
}

func TestRouting(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) { storetest.Routing(t, b.fresh) })
}

// intruder returns a connection to the database o names that writes
// behind the store's back, as someone with write access to the database
// (but not the controller's key) would, with the append-only triggers of
// tables out of the way. Its statements take `?` placeholders.
func (b backend) intruder(t *testing.T, o store.Options, tables ...string) *sql.DB {
	t.Helper()
	ctx := context.Background()
	if o.DSN != "" {
		s, err := store.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		for _, tb := range tables {
			if _, err := s.Writer().ExecContext(ctx, `ALTER TABLE `+tb+` DISABLE TRIGGER USER`); err != nil {
				t.Fatal(err)
			}
		}
		return s.Writer()
	}
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(o.DataDir, store.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	for _, tb := range tables {
		rows, err := raw.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?`, tb)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			if _, err := raw.ExecContext(ctx, `DROP TRIGGER `+n); err != nil {
				t.Fatal(err)
			}
		}
	}
	return raw
}

// TestNULInAgentText stores a task whose hostname, error and message, as
// an agent sent them, hold NUL characters, which PostgreSQL text cannot:
// the writes (the run's creation and the task's update, each a text array
// on PostgreSQL) succeed on both backends, PostgreSQL keeping U+FFFD in
// their place.
func TestNULInAgentText(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openFresh(t)
		sent := "bad\x00byte"
		if err := s.CreateRun(ctx, &store.Run{ID: "r", Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`)},
			[]*store.Task{{ID: "t", RunID: "r", AgentID: "a1", Hostname: sent}}); err != nil {
			t.Fatalf("creating a task with a NUL: %v", err)
		}
		if err := s.SaveTasks(ctx, []*store.Task{{ID: "t", RunID: "r", Error: sent, LastMessage: sent}}, nil); err != nil {
			t.Fatalf("storing a NUL: %v", err)
		}
		_, tasks, err := s.GetRun(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		want := sent
		if b.name == "postgres" {
			want = "bad\uFFFDbyte"
		}
		if tasks[0].Hostname != want || tasks[0].Error != want || tasks[0].LastMessage != want {
			t.Fatalf("stored %q / %q / %q, want %q", tasks[0].Hostname, tasks[0].Error, tasks[0].LastMessage, want)
		}
	})
}
