package hostcollect

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// Walk bounds: triage walks are small trees; full walks may cover a whole
// filesystem and are bounded mostly by the time budget.
const (
	triageWalkEntries = 200_000
	fullWalkEntries   = 20_000_000
)

// FileRecord is one record of the file artifacts (tmp_executables,
// suid_sgid, recently_modified, hashes).
type FileRecord struct {
	Path   string     `json:"path"`
	Type   string     `json:"type"`
	Mode   string     `json:"mode"`
	UID    uint32     `json:"uid"`
	GID    uint32     `json:"gid"`
	User   string     `json:"user,omitempty"`
	Size   int64      `json:"size"`
	Inode  uint64     `json:"inode"`
	Nlink  uint32     `json:"nlink"`
	Atime  time.Time  `json:"atime"`
	Mtime  time.Time  `json:"mtime"`
	Ctime  time.Time  `json:"ctime"`
	Btime  *time.Time `json:"btime,omitempty"`
	SHA256 string     `json:"sha256,omitempty"`
	// Magic is "elf" or "script" when the content says so.
	Magic string `json:"magic,omitempty"`
	Copy  string `json:"copy,omitempty"`
	Error string `json:"error,omitempty"`
}

func (c *collection) fileRecord(e *walkEntry, names map[int]string) FileRecord {
	st := e.Stat
	r := FileRecord{Path: validUTF8(e.Path), Type: fileType(st.Mode), Mode: TSKMode(st.Mode)[2:], UID: st.UID, GID: st.GID,
		User: names[int(st.UID)], Size: st.Size, Inode: st.Ino, Nlink: st.Nlink,
		Atime: unixTime(st.Atime), Mtime: unixTime(st.Mtime), Ctime: unixTime(st.Ctime)}
	if st.HasBtime {
		t := unixTime(st.Btime)
		r.Btime = &t
	}
	return r
}

// hashEntry opens a walked regular file and fills in its SHA-256 and magic.
// The file is returned open for copying, or nil.
func (c *collection) hashEntry(e *walkEntry, r *FileRecord) *os.File {
	f, err := e.open()
	if err != nil {
		r.Error = describeOpenError(e.Path, err)
		return nil
	}
	var head [4]byte
	if n, _ := f.ReadAt(head[:], 0); n >= 2 {
		switch {
		case n == 4 && bytes.Equal(head[:], []byte("\x7fELF")):
			r.Magic = "elf"
		case head[0] == '#' && head[1] == '!':
			r.Magic = "script"
		}
	}
	h := c.hashFile(f)
	switch {
	case h.err != nil:
		r.Error = "hash: " + h.err.Error()
	case h.partial:
		r.Error = fmt.Sprintf("larger than %d bytes: not hashed", maxHashBytes)
	default:
		r.SHA256 = h.sum
	}
	return f
}

// walkRoots walks each root with one visit function, recording walk
// failures as skipped items.
func (c *collection) walkRoots(a *artifact, roots []string, maxEntries int64, skipPaths []string, visit func(*walkEntry) error) error { //nolint:unparam // skipPaths is the walk's general form; today's artifacts pass none
	seen := map[string]bool{}
	for _, root := range roots {
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				a.Skip(root, err.Error())
			}
			continue
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		w := &walker{ctx: c.ctx, maxEntries: maxEntries, skipPaths: skipPaths, visit: visit,
			unreadable: func(p string, err error) { a.Skip(p, err.Error()) }}
		if err := w.walk(real); err != nil {
			if c.ctx.Err() != nil || errors.Is(err, bundle.ErrCapReached) || c.w.Err() != nil {
				return err
			}
			a.Skip(root, err.Error())
		}
		if w.limited {
			a.Truncate(fmt.Sprintf("the walk of %s stopped after %d entries", real, maxEntries))
		}
	}
	return nil
}

func (c *collection) walkLimit() int64 {
	if c.p.Profile == ProfileFull {
		return fullWalkEntries
	}
	return triageWalkEntries
}

func collectTmpExecutables(c *collection, a *artifact) error {
	names := c.userNames()
	return c.walkRoots(a, []string{"/tmp", "/dev/shm", "/var/tmp", "/run/shm"}, c.walkLimit(), nil, func(e *walkEntry) error {
		if !e.Stat.isReg() {
			return nil
		}
		r := c.fileRecord(e, names)
		f := c.hashEntry(e, &r)
		if f == nil {
			return nil
		}
		defer f.Close()
		if e.Stat.Mode&0o111 == 0 && r.Magic == "" {
			return nil
		}
		m, err := a.addOpen(e.Path, f, bundle.FileOptions{})
		if err != nil {
			return err
		}
		if m != nil {
			r.Copy = m.Path
		}
		return a.Record(r)
	})
}

func collectSetID(c *collection, a *artifact) error {
	names := c.userNames()
	return c.walkRoots(a, []string{"/"}, c.walkLimit(), nil, func(e *walkEntry) error {
		if !e.Stat.isReg() || e.Stat.Mode&(unix.S_ISUID|unix.S_ISGID) == 0 {
			return nil
		}
		r := c.fileRecord(e, names)
		if f := c.hashEntry(e, &r); f != nil {
			f.Close()
		}
		return a.Record(r)
	})
}

// recentRoots are where a changed file is a sign of tampering.
func recentRoots() []string {
	roots := []string{"/etc", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}
	roots = append(roots, globSorted("/lib*")...)
	return roots
}

func collectRecent(c *collection, a *artifact) error {
	names := c.userNames()
	since := c.now().Add(-time.Duration(c.p.RecentDays) * 24 * time.Hour).Unix()
	return c.walkRoots(a, recentRoots(), c.walkLimit(), nil, func(e *walkEntry) error {
		if e.Stat.isDir() || e.Stat.Mtime.Sec < since && e.Stat.Ctime.Sec < since {
			return nil
		}
		r := c.fileRecord(e, names)
		if e.Stat.isReg() {
			if f := c.hashEntry(e, &r); f != nil {
				f.Close()
			}
		}
		return a.Record(r)
	})
}

func (c *collection) pathRoots(def []string) []string {
	if len(c.p.Paths) > 0 {
		return c.p.Paths
	}
	return def
}

func collectBodyfile(c *collection, a *artifact) error {
	roots := c.pathRoots([]string{"/"})
	buf := make([]byte, 64<<10)
	return c.walkRoots(a, roots, c.walkLimit(), nil, func(e *walkEntry) error {
		target := ""
		if e.Stat.isLink() {
			target, _ = readlinkAt(e.DirFD, e.Name)
		}
		l := bodyfileLineOf(e.Path, e.Stat, target)
		if c.p.BodyfileMD5 && e.Stat.isReg() {
			if f, err := e.open(); err == nil {
				h := md5.New()
				if _, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, e.Stat.Size), buf); err == nil {
					l.MD5 = hex.EncodeToString(h.Sum(nil))
				}
				f.Close()
			}
		}
		if err := a.RenderLine("body", l.String()); err != nil {
			return err
		}
		return a.Record(l)
	})
}

func collectHashes(c *collection, a *artifact) error {
	names := c.userNames()
	roots := c.pathRoots([]string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"})
	return c.walkRoots(a, roots, c.walkLimit(), nil, func(e *walkEntry) error {
		if !e.Stat.isReg() {
			return nil
		}
		r := c.fileRecord(e, names)
		if f := c.hashEntry(e, &r); f != nil {
			f.Close()
		}
		return a.Record(r)
	})
}

// MapsRegion is one line of /proc/PID/maps.
type MapsRegion = bundle.MemoryRegion

// ParseMapsLine parses one line of /proc/PID/maps:
// "start-end perms offset dev inode [pathname]". The pathname may hold
// spaces and ends with " (deleted)" for a deleted file.
func ParseMapsLine(pid int, line string) (MapsRegion, error) {
	var r MapsRegion
	r.PID = pid
	rest := line
	next := func() string {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		i := 0
		for i < len(rest) && rest[i] != ' ' {
			i++
		}
		f := rest[:i]
		rest = rest[i:]
		return f
	}
	rng, perms, off, dev, ino := next(), next(), next(), next(), next()
	lo, hi, ok := bytesCut(rng, '-')
	if !ok || ino == "" || len(perms) != 4 {
		return r, fmt.Errorf("not a maps line: %q", truncate(line, 120))
	}
	var err error
	if r.Start, err = parseHex(lo); err != nil {
		return r, err
	}
	if r.End, err = parseHex(hi); err != nil {
		return r, err
	}
	if r.End < r.Start {
		return r, fmt.Errorf("region %s ends before it starts", rng)
	}
	if r.Offset, err = parseHex(off); err != nil {
		return r, err
	}
	if _, err := fmt.Sscanf(ino, "%d", &r.Inode); err != nil {
		return r, fmt.Errorf("inode %q: %w", ino, err)
	}
	r.Perms, r.Device = perms, dev
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	r.Pathname = validUTF8(rest)
	return r, nil
}

func bytesCut(s string, sep byte) (string, string, bool) {
	i := bytes.IndexByte([]byte(s), sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func parseHex(s string) (uint64, error) {
	var v uint64
	if s == "" || len(s) > 16 {
		return 0, fmt.Errorf("hex number %q", s)
	}
	for _, ch := range []byte(s) {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'f':
			d = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, fmt.Errorf("hex number %q", s)
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}

// unreadableRegions are mappings the kernel does not let /proc/PID/mem read.
var unreadableRegions = []string{"[vvar]", "[vvar_vclock]", "[vsyscall]"}

func collectMemory(c *collection, a *artifact) error {
	pid := c.p.PID
	if pid <= 0 {
		a.Fail("no pid parameter: give pid to dump a process's memory")
		return nil
	}
	maps, err := a.copyProcFile(procPath(pid, "maps"), 64<<20)
	if err != nil {
		return err
	}
	if maps == nil {
		return fmt.Errorf("process %d: cannot read its maps (has it exited?)", pid)
	}
	mem, err := os.Open(procPath(pid, "mem"))
	if err != nil {
		return fmt.Errorf("process %d: opening its memory: %w", pid, err)
	}
	defer mem.Close()
	lr := newLineReader(bytes.NewReader(maps), 8192)
	for {
		line, _, err := lr.next()
		if err != nil {
			break
		}
		if err := a.stop(); err != nil {
			return err
		}
		reg, err := ParseMapsLine(pid, line)
		if err != nil {
			a.Skip(procPath(pid, "maps"), err.Error())
			continue
		}
		if reg.Perms[0] != 'r' || slices.Contains(unreadableRegions, reg.Pathname) {
			continue
		}
		if _, err := a.AddMemoryRegion(reg, mem, c.p.MaxFileBytes); err != nil {
			if errors.Is(err, bundle.ErrCapReached) || c.w.Err() != nil {
				return err
			}
			a.Skip(fmt.Sprintf("%s %x-%x", procPath(pid, "mem"), reg.Start, reg.End), err.Error())
		}
	}
	return nil
}
