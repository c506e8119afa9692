package hostcollect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// userHZ is the unit of /proc/PID/stat times: USER_HZ, 100 on every Linux
// architecture the agent ships for (sysconf(_SC_CLK_TCK) needs cgo).
const userHZ = 100

// maxHashBytes bounds the bytes read to hash one executable.
const maxHashBytes = 1 << 30

// suspiciousDirs are where a running executable is a red flag: world
// writable, often memory-backed, and favoured by droppers.
var suspiciousDirs = []string{"/tmp/", "/dev/shm/", "/var/tmp/", "/run/shm/"}

// Process is one record of the processes artifact.
type Process struct {
	PID          int       `json:"pid"`
	PPID         int       `json:"ppid"`
	Name         string    `json:"name"`
	State        string    `json:"state"`
	UID          int       `json:"uid"`
	EUID         int       `json:"euid"`
	GID          int       `json:"gid"`
	User         string    `json:"user,omitempty"`
	StartTime    time.Time `json:"start_time"`
	Threads      int       `json:"threads"`
	Cmdline      []string  `json:"cmdline"`
	Cwd          string    `json:"cwd,omitempty"`
	Exe          string    `json:"exe,omitempty"`
	ExeDeleted   bool      `json:"exe_deleted"`
	ExeSHA256    string    `json:"exe_sha256,omitempty"`
	ExeSize      int64     `json:"exe_size,omitempty"`
	ExeInode     uint64    `json:"exe_inode,omitempty"`
	ExeCopy      string    `json:"exe_copy,omitempty"`
	Suspicious   bool      `json:"suspicious_location"`
	KernelThread bool      `json:"kernel_thread,omitempty"`
	NetNS        string    `json:"net_ns,omitempty"`
	Errors       []string  `json:"errors,omitempty"`
}

// ProcStat is the part of /proc/PID/stat the collector uses.
type ProcStat struct {
	PID        int
	Comm       string
	State      string
	PPID       int
	StartTicks uint64
	Threads    int
}

// ParseProcStat parses /proc/PID/stat. The command name is in parentheses
// and may itself hold spaces and parentheses, so it ends at the last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return ProcStat{}, errors.New("no command name in parentheses")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return ProcStat{}, fmt.Errorf("pid: %w", err)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return ProcStat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	st := ProcStat{PID: pid, Comm: s[open+1 : end], State: f[0]}
	st.PPID, _ = strconv.Atoi(f[1])
	st.Threads, _ = strconv.Atoi(f[17])
	st.StartTicks, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("starttime: %w", err)
	}
	return st, nil
}

// ParseStatusIDs returns the real and effective uid and the real gid from
// /proc/PID/status.
func ParseStatusIDs(b []byte) (uid, euid, gid int) {
	uid, euid, gid = -1, -1, -1
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch {
		case k == "Uid" && len(f) >= 2:
			uid, euid = atoiOr(f[0], -1), atoiOr(f[1], -1)
		case k == "Gid" && len(f) >= 1:
			gid = atoiOr(f[0], -1)
		}
	}
	return uid, euid, gid
}

// bootTime reads the boot time from /proc/stat.
func bootTime() (time.Time, error) {
	b, _, err := readBounded("/proc/stat", 1<<20)
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(n, 0).UTC(), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}

// listPIDs returns the ids of the processes now running, ascending.
func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

func procPath(pid int, rest string) string { return "/proc/" + strconv.Itoa(pid) + "/" + rest }

// gone reports whether an error means the process exited meanwhile.
func gone(err error) bool { return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) }

type fileKey struct {
	dev, ino uint64
	ctime    int64
}

type hashResult struct {
	sum     string
	size    int64
	partial bool
	err     error
}

// hashFile returns the SHA-256 of an open file, remembered by inode so a
// binary run by a hundred processes is read once.
func (c *collection) hashFile(f *os.File) hashResult {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return hashResult{err: err}
	}
	key := fileKey{st.Dev, st.Ino, st.Ctim.Nano()}
	if h, ok := c.hashes[key]; ok {
		return h
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, maxHashBytes), make([]byte, 64<<10))
	r := hashResult{sum: hex.EncodeToString(h.Sum(nil)), size: st.Size, partial: n < st.Size, err: err}
	if err != nil {
		r.sum = ""
	}
	c.hashes[key] = r
	return r
}

func collectProcesses(c *collection, a *artifact) error {
	boot, err := bootTime()
	if err != nil {
		a.Skip("/proc/stat", "boot time: "+err.Error())
	}
	pids, err := listPIDs()
	if err != nil {
		return fmt.Errorf("listing /proc: %w", err)
	}
	names := c.userNames()
	for _, pid := range pids {
		if err := a.stop(); err != nil {
			return err
		}
		p, ok := c.readProcess(pid, boot, names)
		if !ok {
			continue
		}
		if p.Exe != "" && (p.ExeDeleted || p.Suspicious) {
			// The binary is the evidence: keep a copy, read through the
			// process's own link so a deleted file is still there.
			if m, err := c.copyExe(a, pid); err != nil {
				return err
			} else if m != nil {
				p.ExeCopy = m.Path
			}
		}
		if err := a.Record(p); err != nil {
			return err
		}
	}
	return nil
}

// readProcess gathers one process's record; ok is false if it exited.
func (c *collection) readProcess(pid int, boot time.Time, names map[int]string) (*Process, bool) {
	b, _, err := readBounded(procPath(pid, "stat"), 4096)
	if err != nil {
		return nil, false
	}
	st, err := ParseProcStat(b)
	if err != nil {
		return &Process{PID: pid, Errors: []string{"stat: " + err.Error()}}, true
	}
	p := &Process{PID: pid, PPID: st.PPID, Name: validUTF8(st.Comm), State: st.State, Threads: st.Threads, UID: -1, EUID: -1, GID: -1, Cmdline: []string{}}
	if !boot.IsZero() {
		p.StartTime = boot.Add(time.Duration(st.StartTicks) * time.Second / userHZ)
	}
	if b, _, err := readBounded(procPath(pid, "status"), 64<<10); err == nil {
		p.UID, p.EUID, p.GID = ParseStatusIDs(b)
		p.User = names[p.UID]
	}
	if b, more, err := readBounded(procPath(pid, "cmdline"), 128<<10); err == nil {
		p.Cmdline = splitNUL(b)
		if more {
			p.Errors = append(p.Errors, "cmdline longer than 128 KiB; cut")
		}
	}
	if cwd, err := os.Readlink(procPath(pid, "cwd")); err == nil {
		p.Cwd = validUTF8(cwd)
	}
	if ns, err := os.Readlink(procPath(pid, "ns/net")); err == nil {
		p.NetNS = ns
	}
	exe, err := os.Readlink(procPath(pid, "exe"))
	switch {
	case err == nil:
	case pid == 2 || st.PPID == 2:
		p.KernelThread = true
		return p, true
	case gone(err):
		if len(p.Cmdline) == 0 {
			p.KernelThread = true
		}
		return p, true
	default:
		p.Errors = append(p.Errors, "exe: "+err.Error())
		return p, true
	}
	p.Exe = validUTF8(strings.TrimSuffix(exe, " (deleted)"))
	f, err := os.OpenFile(procPath(pid, "exe"), os.O_RDONLY|unix.O_NOATIME, 0)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(procPath(pid, "exe"))
	}
	if err != nil {
		p.Errors = append(p.Errors, "exe open: "+err.Error())
		p.ExeDeleted = strings.HasSuffix(exe, " (deleted)")
	} else {
		defer f.Close()
		var fst unix.Stat_t
		if unix.Fstat(int(f.Fd()), &fst) == nil {
			// The link count, not the " (deleted)" suffix, decides: a file
			// can be named "x (deleted)".
			p.ExeDeleted = fst.Nlink == 0
			p.ExeInode = fst.Ino
		}
		h := c.hashFile(f)
		p.ExeSHA256, p.ExeSize = h.sum, h.size
		if h.err != nil {
			p.Errors = append(p.Errors, "exe hash: "+h.err.Error())
		} else if h.partial {
			p.Errors = append(p.Errors, fmt.Sprintf("exe larger than %d bytes: exe_sha256 covers only its start", maxHashBytes))
		}
	}
	for _, d := range suspiciousDirs {
		if strings.HasPrefix(p.Exe, d) {
			p.Suspicious = true
		}
	}
	return p, true
}

// copyExe copies a process's executable through /proc/PID/exe.
func (c *collection) copyExe(a *artifact, pid int) (*bundle.Member, error) {
	path := procPath(pid, "exe")
	f, err := os.Open(path)
	if err != nil {
		if !gone(err) {
			a.Skip(path, err.Error())
		}
		return nil, nil
	}
	defer f.Close()
	return a.addOpen(path, f, bundle.FileOptions{})
}

func splitNUL(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return []string{}
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = validUTF8(string(p))
	}
	return out
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// EnvironRecord is one record of the process_environ artifact.
type EnvironRecord struct {
	PID       int      `json:"pid"`
	Name      string   `json:"name"`
	Variables []string `json:"variables"`
	Truncated bool     `json:"truncated,omitempty"`
}

func collectEnviron(c *collection, a *artifact) error {
	pids, err := listPIDs()
	if err != nil {
		return fmt.Errorf("listing /proc: %w", err)
	}
	for _, pid := range pids {
		if err := a.stop(); err != nil {
			return err
		}
		b, more, err := readBounded(procPath(pid, "environ"), 256<<10)
		if err != nil {
			if !gone(err) {
				a.Skip(procPath(pid, "environ"), err.Error())
			}
			continue
		}
		comm, _, _ := readBounded(procPath(pid, "comm"), 64)
		vars := splitNUL(b)
		// Secrets by variable name, whatever their shape; the bundle's
		// redactor then looks for secrets by shape in every value.
		var byName map[string]int64
		for i, v := range vars {
			if red, name := redactEnvVariable(v); name != "" {
				vars[i] = red
				if byName == nil {
					byName = map[string]int64{}
				}
				byName[name]++
			}
		}
		a.NoteRecordRedactions(byName)
		if err := a.Record(EnvironRecord{PID: pid, Name: validUTF8(strings.TrimSpace(string(comm))), Variables: vars, Truncated: more}); err != nil {
			return err
		}
	}
	return nil
}

// FDRecord is one record of the process_fds artifact.
type FDRecord struct {
	PID     int    `json:"pid"`
	Name    string `json:"name"`
	FD      int    `json:"fd"`
	Target  string `json:"target"`
	Type    string `json:"type"`
	Deleted bool   `json:"deleted,omitempty"`
	Pos     int64  `json:"pos"`
	Flags   string `json:"flags,omitempty"`
}

// fdType classifies a descriptor's link target.
func fdType(target string) string {
	switch {
	case strings.HasPrefix(target, "socket:["):
		return "socket"
	case strings.HasPrefix(target, "pipe:["):
		return "pipe"
	case strings.HasPrefix(target, "anon_inode:"):
		return "anon_inode"
	case strings.HasPrefix(target, "/memfd:"):
		return "memfd"
	case strings.HasPrefix(target, "/dev/"):
		return "device"
	case strings.HasPrefix(target, "/"):
		return "file"
	}
	return "other"
}

// ParseFDInfo returns the pos and flags fields of /proc/PID/fdinfo/N.
func ParseFDInfo(b []byte) (pos int64, flags string) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "pos":
			pos, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "flags":
			flags = strings.TrimSpace(v)
		}
	}
	return pos, flags
}

// forEachFD calls fn with each open descriptor of each process and its target.
func forEachFD(c *collection, fn func(pid, fd int, target string) error, unreadable func(string, error)) error {
	pids, err := listPIDs()
	if err != nil {
		return fmt.Errorf("listing /proc: %w", err)
	}
	for _, pid := range pids {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		dir := procPath(pid, "fd")
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !gone(err) && unreadable != nil {
				unreadable(dir, err)
			}
			continue
		}
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if err := fn(pid, fd, target); err != nil {
				return err
			}
		}
	}
	return nil
}

func collectFDs(c *collection, a *artifact) error {
	comms := map[int]string{}
	return forEachFD(c, func(pid, fd int, target string) error {
		name, ok := comms[pid]
		if !ok {
			b, _, _ := readBounded(procPath(pid, "comm"), 64)
			name = validUTF8(strings.TrimSpace(string(b)))
			comms[pid] = name
		}
		r := FDRecord{PID: pid, Name: name, FD: fd, Target: validUTF8(target), Type: fdType(target)}
		if r.Type == "file" || r.Type == "memfd" {
			r.Deleted = strings.HasSuffix(target, " (deleted)")
		}
		if b, _, err := readBounded(procPath(pid, "fdinfo/"+strconv.Itoa(fd)), 4096); err == nil {
			r.Pos, r.Flags = ParseFDInfo(b)
		}
		return a.Record(r)
	}, func(path string, err error) { a.Skip(path, err.Error()) })
}

// userNames maps uids to account names.
func (c *collection) userNames() map[int]string {
	m := map[int]string{}
	for _, u := range c.loadAccounts() {
		if _, dup := m[u.UID]; !dup {
			m[u.UID] = u.Name
		}
	}
	return m
}

// loadAccounts parses /etc/passwd once per collection.
func (c *collection) loadAccounts() []PasswdEntry {
	if !c.accountsLoaded {
		c.accountsLoaded = true
		if f, err := openRegular("/etc/passwd"); err == nil {
			c.accounts, _ = ParsePasswd(io.LimitReader(f, 64<<20))
			f.Close()
		}
	}
	return c.accounts
}

// homes returns each distinct home directory with the accounts using it,
// root's first, skipping homes that are not directories.
func (c *collection) homes() []home {
	var out []home
	seen := map[string]int{}
	add := func(dir, user string, uid int) {
		if dir == "" || !strings.HasPrefix(dir, "/") {
			return
		}
		dir = filepath.Clean(dir)
		if i, ok := seen[dir]; ok {
			out[i].users = append(out[i].users, user)
			return
		}
		var st unix.Stat_t
		if unix.Stat(dir, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		seen[dir] = len(out)
		out = append(out, home{dir: dir, users: []string{user}, uid: uid})
	}
	add("/root", "root", 0)
	for _, u := range c.loadAccounts() {
		add(u.Home, u.Name, u.UID)
	}
	return out
}

// home is a home directory and the accounts that use it.
type home struct {
	dir   string
	users []string
	uid   int
}

func (h home) user() string { return strings.Join(h.users, ",") }
