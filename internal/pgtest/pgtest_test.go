package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/firebreak-ir/firebreak/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestNewGivesFreshDatabases checks that each test gets its own empty,
// writable database on the one server.
func TestNewGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := 0; i < 2; i++ {
		dsn := pgtest.New(t)
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("database %d has %d tables (%v), want a fresh one", i, n, err)
		}
		if _, err := c.Exec(ctx, `CREATE TABLE t (x INT)`); err != nil {
			t.Fatal(err)
		}
		var name string
		if err := c.QueryRow(ctx, `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Fatalf("both tests got database %s", names[0])
	}
}

// TestDedicatedRestart: a dedicated server restarted abruptly cuts its
// connections, comes back on the same DSN, and keeps what was committed.
func TestDedicatedRestart(t *testing.T) {
	ctx := context.Background()
	srv, dsn := pgtest.Dedicated(t)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE kept (x INT); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := c.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a connection opened before the restart still works: the restart did not cut it")
	}
	again, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting after the restart: %v", err)
	}
	defer again.Close(ctx)
	var x int
	if err := again.QueryRow(ctx, `SELECT x FROM kept`).Scan(&x); err != nil || x != 7 {
		t.Fatalf("after the restart: x = %d, %v; want the committed 7", x, err)
	}
}
