// Package pgtest runs a throwaway PostgreSQL server for tests: one server
// per test binary, in a temporary directory (initdb, then postgres on a
// unix socket in that directory and on a random 127.0.0.1 port, fsync
// off), and one fresh database per test. A test binary that uses it calls
// Main from its TestMain, which stops the server and removes its
// directory. Tests skip, saying why, when the PostgreSQL binaries are not
// installed.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// superuser is the role initdb creates and the tests connect as.
const superuser = "postgres"

// server is the one server of this test binary.
type server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	once    sync.Once
	running *server
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
	once.Do(func() { running, skip, startErr = start() })
	if skip != "" {
		t.Skip(skip)
	}
	if startErr != nil {
		t.Fatalf("starting the test PostgreSQL: %v", startErr)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := running.admin(fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		t.Fatalf("creating the test database: %v", err)
	}
	t.Cleanup(func() { _ = running.admin(fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)) })
	return running.dsn(name)
}

// Main runs the tests of a binary that uses New and then stops its
// server: call os.Exit(pgtest.Main(m)) from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if running != nil {
		running.stop()
	}
	return code
}

// DSN is a database's URL on the server.
func (s *server) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

func (s *server) admin(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, stmt)
	return err
}

// Binaries returns the directory holding initdb and postgres: from PATH,
// or the newest /usr/lib/postgresql/*/bin (Debian's packages leave them
// off PATH). It returns "" when neither has them.
func Binaries() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// start makes and starts the server; it returns why the tests must skip,
// or why starting failed.
func start() (*server, string, error) {
	bin := Binaries()
	if bin == "" {
		return nil, "PostgreSQL is not installed (no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin): install postgresql-15 to run the PostgreSQL tests", nil
	}
	// initdb and postgres refuse to run as root: as root, they run as the
	// postgres system user, which owns the directory.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "the tests run as root and there is no postgres user to run PostgreSQL as (initdb refuses root): create one, or run the tests as another user", nil
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("the postgres user's uid %q: %w", u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("the postgres user's gid %q: %w", u.Gid, err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	base := os.TempDir()
	if cred != nil && !othersCanEnter(base) {
		// The postgres user must reach the directory: a private TMPDIR of
		// root's will not do.
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "pgtest-")
	if err != nil {
		return nil, "", err
	}
	s := &server{dir: dir, done: make(chan struct{})}
	fail := func(err error) (*server, string, error) {
		s.stop()
		return nil, "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	//nolint:gosec // G204: PostgreSQL's own initdb, found on PATH or in Debian's directory
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 10)))
	}
	if s.port, err = freePort(); err != nil {
		return fail(err)
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath) //nolint:gosec // G304: a file in the server's own temporary directory
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	if cred != nil {
		_ = os.Chown(logPath, int(cred.Uid), int(cred.Gid))
	}
	//nolint:gosec // G204: PostgreSQL's own server, beside initdb
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Pdeathsig stops the server should the test binary die without
	// reaching Main's stop.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting postgres: %w", err))
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(logPath); err != nil {
		return fail(err)
	}
	return s, "", nil
}

// waitReady waits, for a bounded time, until the server takes
// connections.
func (s *server) waitReady(logPath string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, s.dsn("postgres"))
		if err == nil {
			c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-s.done:
			b, _ := os.ReadFile(logPath) //nolint:gosec // G304: the server's log, in its own temporary directory
			return fmt.Errorf("postgres exited: %s", lastLines(string(b), 10))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath) //nolint:gosec // G304: the server's log, in its own temporary directory
			return fmt.Errorf("postgres did not accept connections within 60s: %v: %s", err, lastLines(string(b), 10))
		}
	}
}

// stop stops the server (a fast shutdown, then a kill) and removes its
// directory.
func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = os.RemoveAll(s.dir)
}

// othersCanEnter reports whether every directory from / down to dir lets
// other users through.
func othersCanEnter(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
