package pluginhost

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareSocketDir(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base, err := os.MkdirTemp("", "fbsock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "s")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A socket a killed plugin left, and a file that is not a socket.
	l, err := net.Listen("unix", filepath.Join(dir, "plugin123"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, "note"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareSocketDir(dir, quiet); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "plugin123")); !os.IsNotExist(err) {
		t.Errorf("the stale socket is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "note")); err != nil {
		t.Errorf("a file that is not a socket was removed: %v", err)
	}
}

func TestSocketDirTooLongFallsBack(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	h, err := New(Config{SocketDir: long, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.cfg.SocketDir != "" {
		t.Fatalf("kept a socket dir of %d bytes, too long for a socket path", len(long))
	}
	if _, err := os.Stat(long); !os.IsNotExist(err) {
		t.Errorf("created the unusable directory: %v", err)
	}
}
