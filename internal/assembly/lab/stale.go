package lab

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile names, in a lab's directory, the process that owns it.
const ownerFile = "lab.pid"

// claimDir records this process as the owner of a lab directory.
func claimDir(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// sweepStale removes the directories of earlier labs whose owning process
// is gone, and returns them. A lab killed with SIGKILL cannot clean up
// after itself, and its directory holds plugin executables and keys: a
// later triage collection on this host would copy them as executables in
// a temporary directory. A directory without an owner file (written by
// another tool, or by a lab of an earlier version) is left alone, as is
// one whose owner still runs.
func sweepStale(tmp string) []string {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "firebreak-lab-*"))
	var removed []string
	for _, dir := range dirs {
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || labRunning(pid) {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// labRunning reports whether pid is a live process that can be a lab's
// (a firebreak binary, or a test binary running one in process). A pid
// reused by something else counts as gone; one whose command line cannot
// be read counts as running.
func labRunning(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return true
	}
	return bytes.Contains(cmdline, []byte("firebreak")) || bytes.Contains(cmdline, []byte(".test"))
}
