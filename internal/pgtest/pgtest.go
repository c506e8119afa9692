// Package pgtest runs a throwaway PostgreSQL server for tests: one server
// per test binary (internal/pgserver: initdb in a temporary directory,
// then postgres on a unix socket in that directory and on a random
// 127.0.0.1 port, fsync off), and one fresh database per test. A test
// binary that uses it calls Main from its TestMain, which stops the server
// and removes its directory. Tests skip, saying why, when the PostgreSQL
// binaries are not installed.
package pgtest

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/pgserver"
)

var (
	once    sync.Once
	running *pgserver.Server
	// skip is why the tests cannot have a server (binaries absent).
	skip string
	// startErr is why starting the server failed.
	startErr error
	dbSeq    atomic.Int64
)

// New returns the DSN of a new, empty database on this binary's server,
// starting the server on first use, and drops the database when t ends.
// It skips t when PostgreSQL is not installed.
func New(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		running, startErr = pgserver.Start()
		if pgserver.IsUnavailable(startErr) {
			skip, startErr = startErr.Error()+" to run the PostgreSQL tests", nil
		}
	})
	if skip != "" {
		t.Skip(skip)
	}
	if startErr != nil {
		t.Fatalf("starting the test PostgreSQL: %v", startErr)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := running.Exec(fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		t.Fatalf("creating the test database: %v", err)
	}
	t.Cleanup(func() { _ = running.Exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)) })
	return running.DSN(name)
}

// Main runs the tests of a binary that uses New and then stops its
// server: call os.Exit(pgtest.Main(m)) from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if running != nil {
		running.Stop()
	}
	return code
}

// Dedicated starts a server of t's own, which t may restart (a test of
// the controllers riding out a database restart must not cut the
// connections of the other tests), and returns it with the DSN of a
// database on it. The server is stopped when t ends. It skips t when
// PostgreSQL is not installed.
func Dedicated(t testing.TB) (*pgserver.Server, string) {
	t.Helper()
	s, err := pgserver.Start()
	if pgserver.IsUnavailable(err) {
		t.Skip(err.Error() + " to run the PostgreSQL tests")
	}
	if err != nil {
		t.Fatalf("starting a test PostgreSQL: %v", err)
	}
	t.Cleanup(s.Stop)
	const name = "firebreak"
	if err := s.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("creating the test database: %v", err)
	}
	return s, s.DSN(name)
}
