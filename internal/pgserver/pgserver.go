// Package pgserver runs a throwaway PostgreSQL server: initdb in a
// temporary directory, then postgres on a unix socket in that directory
// and on a random 127.0.0.1 port, fsync off (a commit survives the server
// crashing, not the machine), trust authentication for the
// superuser. As root, both run as the postgres system user (initdb refuses
// root). Tests reach it through internal/pgtest; `firebreak bench
// failover` starts one when no --store is given. It is for measurements
// and tests only: nothing it stores is durable.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Superuser is the role initdb creates and clients connect as.
const Superuser = "postgres"

// UnavailableError says why no server can be started on this machine (the
// binaries are absent, or there is no user to run them as); tests skip on
// it rather than fail.
type UnavailableError struct {
	// Reason says what is missing and what to do.
	Reason string
}

// Error implements error.
func (e *UnavailableError) Error() string { return e.Reason }

// IsUnavailable reports whether err says PostgreSQL cannot run here.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// Server is one running throwaway server.
type Server struct {
	bin  string
	dir  string
	port int
	// cred is the user the server runs as (nil: this process's).
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// DSN is the URL of database db on the server, as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, s.port, db)
}

// Exec runs one statement as the superuser in the postgres database (for
// example CREATE DATABASE), through PostgreSQL's own psql: only
// controller/store links a database driver.
func (s *Server) Exec(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	//nolint:gosec // G204: PostgreSQL's own psql, beside initdb
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
		"-p", strconv.Itoa(s.port), "-U", Superuser, "-d", "postgres", "-c", stmt)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("psql: %v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

// Binaries returns the directory holding initdb, postgres, pg_isready and
// psql: from PATH,
// or the newest /usr/lib/postgresql/*/bin (Debian's packages leave them
// off PATH). It returns "" when neither has them.
func Binaries() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasAll(d) {
			return d
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if hasAll(d) {
			return d
		}
	}
	return ""
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// hasAll reports whether dir holds every program the server needs.
func hasAll(dir string) bool {
	for _, p := range []string{"initdb", "postgres", "pg_isready", "psql"} {
		if !isExec(filepath.Join(dir, p)) {
			return false
		}
	}
	return true
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Start makes and starts a server and waits until it takes connections.
// An *UnavailableError says PostgreSQL cannot run on this machine.
func Start() (*Server, error) {
	bin := Binaries()
	if bin == "" {
		return nil, &UnavailableError{Reason: "PostgreSQL is not installed (no initdb, postgres, pg_isready and psql on PATH or in /usr/lib/postgresql/*/bin): install postgresql-15"}
	}
	// initdb and postgres refuse to run as root: as root, they run as the
	// postgres system user, which owns the directory.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, &UnavailableError{Reason: "running as root and there is no postgres user to run PostgreSQL as (initdb refuses root): create one, or run as another user"}
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("the postgres user's uid %q: %w", u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("the postgres user's gid %q: %w", u.Gid, err)
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
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, done: make(chan struct{})}
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	//nolint:gosec // G204: PostgreSQL's own initdb, found on PATH or in Debian's directory
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 10)))
	}
	if s.port, err = freePort(); err != nil {
		return fail(err)
	}
	s.cred = cred
	if err := s.run(); err != nil {
		return fail(err)
	}
	return s, nil
}

// Restart stops the server abruptly, as a crash or a database failover
// does (an immediate shutdown: open connections are cut, no checkpoint),
// and starts it again on the same port and data, waiting until it takes
// connections. Clients must reconnect; committed data survives.
func (s *Server) Restart() error {
	s.halt(syscall.SIGQUIT)
	return s.run()
}

// run starts postgres on s's data directory and port and waits until it
// takes connections.
func (s *Server) run() error {
	s.done = make(chan struct{})
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600) //nolint:gosec // G304: a file in the server's own temporary directory
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		_ = os.Chown(logPath, int(s.cred.Uid), int(s.cred.Gid))
	}
	//nolint:gosec // G204: PostgreSQL's own server, beside initdb
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-k", s.dir, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig stops the server should its parent die without calling
	// Stop. The kernel sends it when the thread that started the server
	// exits, not the process: the goroutine that starts it keeps its
	// thread locked until the server exits, so a Go thread ending (one a
	// test moved into a network namespace and discarded) cannot stop the
	// server in the middle of the tests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGTERM}
	s.cmd = cmd
	done := s.done
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	return s.waitReady(logPath)
}

// waitReady waits, for a bounded time, until the server takes
// connections.
func (s *Server) waitReady(logPath string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		//nolint:gosec // G204: PostgreSQL's own pg_isready, beside initdb
		out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
			"-U", Superuser, "-d", "postgres").CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("pg_isready: %v %s", err, strings.TrimSpace(string(out)))
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

// Stop stops the server (a fast shutdown, then a kill) and removes its
// directory.
func (s *Server) Stop() {
	s.halt(syscall.SIGINT)
	_ = os.RemoveAll(s.dir)
}

// halt sends the server sig (SIGINT: a fast shutdown; SIGQUIT: an
// immediate one) and waits until it exits, killing it after 30 s.
func (s *Server) halt(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
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
