package hostcollect

import (
	"bufio"
	"context"
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
)

// errSymlink is an open refused because a path component is a symbolic
// link the collector will not follow.
var errSymlink = errors.New("symbolic link not followed")

// readFlags open evidence read-only, without following a final symlink,
// without blocking on a FIFO, and without updating the access time.
const readFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOATIME

// openat opens name relative to dirfd with readFlags|extra. O_NOATIME is only
// allowed to the file's owner or CAP_FOWNER; without it the open is retried
// plainly, which may update the atime of a file the collector does not own.
func openat(dirfd int, name string, extra int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, readFlags|extra, 0)
		if errors.Is(err, unix.EPERM) {
			fd, err = unix.Openat(dirfd, name, (readFlags&^unix.O_NOATIME)|extra, 0)
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.ELOOP || err == unix.ENOTDIR && extra&unix.O_DIRECTORY != 0 && isSymlinkAt(dirfd, name) {
			return -1, errSymlink
		}
		return fd, err
	}
}

func isSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// regularFile wraps fd as a file after checking that it is a regular file.
func regularFile(fd int, name string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("not a regular file (%s)", fileType(st.Mode))
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openRegular opens an absolute path for reading evidence. The last component
// must not be a symlink and the file must be regular. Intermediate
// components resolve normally: use openBeneath for trees that users control.
func openRegular(path string) (*os.File, error) {
	fd, err := openat(unix.AT_FDCWD, path, 0)
	if err != nil {
		return nil, err
	}
	return regularFile(fd, path)
}

// openBeneath opens rel inside the directory root without following any
// symbolic link below root, so a user cannot point ~/.bash_history or
// ~/.ssh at a file outside their tree.
//
// Security-critical: the collector runs as root and must not be turned into
// a reader of arbitrary files by links that users plant in their homes.
func openBeneath(root, rel string) (*os.File, error) {
	fd, err := openBeneathFD(root, rel, 0)
	if err != nil {
		return nil, err
	}
	return regularFile(fd, filepath.Join(root, filepath.Clean("/" + rel)[1:]))
}

// openBeneathFD opens rel inside root with readFlags|extra, refusing any
// symbolic link below root and any mount crossing. It uses openat2 and, on
// kernels before 5.6, walks the components with openat.
func openBeneathFD(root, rel string, extra int) (int, error) {
	rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	if rel == "" {
		return -1, fmt.Errorf("empty path under %s", root)
	}
	dirfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_PATH, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dirfd)
	how := &unix.OpenHow{
		Flags:   uint64(readFlags | extra),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(dirfd, rel, how)
	if errors.Is(err, unix.EPERM) {
		how.Flags &^= unix.O_NOATIME
		fd, err = unix.Openat2(dirfd, rel, how)
	}
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ELOOP):
		return -1, errSymlink
	case errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("crosses a mount point below %s", root)
	case errors.Is(err, unix.ENOSYS):
		// Kernels before 5.6: walk the components with openat, refusing
		// a symlink at each step.
	default:
		return -1, err
	}
	comps := strings.Split(rel, "/")
	cur, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	for _, c := range comps[:len(comps)-1] {
		next, err := openat(cur, c, unix.O_DIRECTORY|unix.O_PATH)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	fd, err = openat(cur, comps[len(comps)-1], extra)
	unix.Close(cur)
	return fd, err
}

// readlinkAt reads a symlink relative to a directory descriptor.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// describeOpenError turns an open failure into the reason recorded for a
// skipped item; a refused symlink names its target.
func describeOpenError(path string, err error) string {
	if errors.Is(err, errSymlink) {
		if target, lerr := os.Readlink(path); lerr == nil {
			return fmt.Sprintf("symbolic link to %q, not followed", target)
		}
		return "a path component is a symbolic link, not followed"
	}
	return err.Error()
}

// readBounded reads at most limit bytes of a file that has no meaningful
// size (a /proc or /sys file). It reports whether there was more.
func readBounded(path string, limit int64) ([]byte, bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > limit {
		return b[:limit], true, nil
	}
	return b, false, nil
}

// fileStat is what the collector records about a file, from statx.
type fileStat struct {
	Mode     uint32
	Ino      uint64
	Dev      uint64
	Nlink    uint32
	UID      uint32
	GID      uint32
	Size     int64
	Atime    unix.Timespec
	Mtime    unix.Timespec
	Ctime    unix.Timespec
	Btime    unix.Timespec
	HasBtime bool
}

func (s *fileStat) isDir() bool  { return s.Mode&unix.S_IFMT == unix.S_IFDIR }
func (s *fileStat) isReg() bool  { return s.Mode&unix.S_IFMT == unix.S_IFREG }
func (s *fileStat) isLink() bool { return s.Mode&unix.S_IFMT == unix.S_IFLNK }

// statAt stats name relative to dirfd without following a symlink, with the
// birth time where the filesystem records one. It never syncs a remote
// filesystem's attributes.
func statAt(dirfd int, name string) (*fileStat, error) {
	return statxAt(dirfd, name, unix.AT_SYMLINK_NOFOLLOW)
}

// statFD stats an open descriptor.
func statFD(fd int) (*fileStat, error) { return statxAt(fd, "", unix.AT_EMPTY_PATH) }

func statxAt(dirfd int, name string, flags int) (*fileStat, error) {
	var sx unix.Statx_t
	err := unix.Statx(dirfd, name, flags|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx)
	if err == unix.ENOSYS {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
			return nil, err
		}
		return &fileStat{Mode: st.Mode, Ino: st.Ino, Dev: st.Dev, Nlink: uint32(st.Nlink), UID: st.Uid, GID: st.Gid,
			Size: st.Size, Atime: st.Atim, Mtime: st.Mtim, Ctime: st.Ctim}, nil
	}
	if err != nil {
		return nil, err
	}
	ts := func(t unix.StatxTimestamp) unix.Timespec { return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)} }
	return &fileStat{Mode: uint32(sx.Mode), Ino: sx.Ino, Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Nlink: sx.Nlink,
		UID: sx.Uid, GID: sx.Gid, Size: int64(sx.Size), Atime: ts(sx.Atime), Mtime: ts(sx.Mtime), Ctime: ts(sx.Ctime),
		Btime: ts(sx.Btime), HasBtime: sx.Mask&unix.STATX_BTIME != 0 && sx.Btime.Sec != 0}, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char_device"
	case unix.S_IFBLK:
		return "block_device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

// skippedFS are filesystem types a walk does not enter: kernel pseudo
// filesystems (no evidence on disk, and reading some has side effects) and
// network filesystems (slow, may hang, and belong to another host).
var skippedFS = map[int64]string{
	unix.PROC_SUPER_MAGIC: "proc", unix.SYSFS_MAGIC: "sysfs", unix.DEVPTS_SUPER_MAGIC: "devpts",
	unix.CGROUP_SUPER_MAGIC: "cgroup", unix.CGROUP2_SUPER_MAGIC: "cgroup2", unix.DEBUGFS_MAGIC: "debugfs",
	unix.TRACEFS_MAGIC: "tracefs", unix.SECURITYFS_MAGIC: "securityfs", unix.PSTOREFS_MAGIC: "pstore",
	unix.BPF_FS_MAGIC: "bpf", 0x62656570: "configfs", 0x65735543: "fusectl", 0x19800202: "mqueue",
	unix.HUGETLBFS_MAGIC: "hugetlbfs", unix.AUTOFS_SUPER_MAGIC: "autofs", unix.BINFMTFS_MAGIC: "binfmt_misc",
	unix.EFIVARFS_MAGIC: "efivarfs", unix.SELINUX_MAGIC: "selinuxfs", unix.NSFS_MAGIC: "nsfs",
	unix.NFS_SUPER_MAGIC: "nfs", unix.SMB_SUPER_MAGIC: "smb", unix.CIFS_SUPER_MAGIC: "cifs", unix.SMB2_SUPER_MAGIC: "smb2",
	unix.FUSE_SUPER_MAGIC: "fuse", unix.CEPH_SUPER_MAGIC: "ceph", unix.AFS_FS_MAGIC: "afs",
}

// errSkipDir tells a walk not to descend into a directory.
var errSkipDir = errors.New("skip directory")

// walkEntry is one directory entry seen by a walk.
type walkEntry struct {
	// Path is the absolute path.
	Path string
	// DirFD is the parent directory's descriptor, valid during the visit.
	DirFD int
	// Name is the entry's name in its parent.
	Name string
	// Stat is the entry's own metadata (a symlink is not followed).
	Stat *fileStat
}

// open opens the entry, which must be a regular file, without following
// links and checking that it is still the inode that was stat'ed.
func (e *walkEntry) open() (*os.File, error) {
	fd, err := openat(e.DirFD, e.Name, 0)
	if err != nil {
		return nil, err
	}
	f, err := regularFile(fd, e.Path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Ino != e.Stat.Ino {
		f.Close()
		return nil, errors.New("replaced while it was being read")
	}
	return f, nil
}

// walker walks a directory tree with openat and statx: it never follows a
// symbolic link, never leaves the tree through one, skips pseudo and
// network filesystems, and is bounded in depth, entries and time.
type walker struct {
	ctx        context.Context
	maxEntries int64
	maxDepth   int
	// skipPaths are absolute directories not to enter.
	skipPaths []string
	visit     func(e *walkEntry) error
	// unreadable is told about entries that could not be read.
	unreadable func(path string, err error)
	entries    int64
	// limited is set when maxEntries stopped the walk.
	limited bool
}

var errEntryLimit = errors.New("entry limit reached")

// walk walks root, which is resolved through symlinks first because the
// operator named it; nothing below it is followed.
func (w *walker) walk(root string) error {
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	fd, err := openat(unix.AT_FDCWD, resolved, unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	return w.walkFD(fd, resolved)
}

// walkBeneath walks base/rel where rel lies in a tree a user controls: no
// symlink below base is followed, not even to reach the walk's root.
func (w *walker) walkBeneath(base, rel string) error {
	fd, err := openBeneathFD(base, rel, unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	return w.walkFD(fd, filepath.Join(base, rel))
}

func (w *walker) walkFD(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	if w.maxDepth == 0 {
		w.maxDepth = 64
	}
	err := w.dir(fd, path, st.Dev, 0)
	if errors.Is(err, errEntryLimit) {
		w.limited = true
		return nil
	}
	return err
}

func (w *walker) dir(fd int, path string, dev uint64, depth int) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		if err != nil && err != io.EOF {
			w.unreadable(path, err)
			return nil
		}
		if len(names) == 0 {
			return nil
		}
		slices.Sort(names)
		for _, name := range names {
			w.entries++
			if w.maxEntries > 0 && w.entries > w.maxEntries {
				return errEntryLimit
			}
			if w.entries%256 == 0 {
				if err := w.ctx.Err(); err != nil {
					return err
				}
			}
			child := filepath.Join(path, name)
			st, err := statAt(fd, name)
			if err != nil {
				if !errors.Is(err, unix.ENOENT) {
					w.unreadable(child, err)
				}
				continue
			}
			e := &walkEntry{Path: child, DirFD: fd, Name: name, Stat: st}
			verr := w.visit(e)
			if verr != nil && !errors.Is(verr, errSkipDir) {
				return verr
			}
			if !st.isDir() || errors.Is(verr, errSkipDir) || slices.Contains(w.skipPaths, child) {
				continue
			}
			if depth+1 >= w.maxDepth {
				w.unreadable(child, fmt.Errorf("deeper than %d levels, not entered", w.maxDepth))
				continue
			}
			sub, err := openat(fd, name, unix.O_DIRECTORY)
			if err != nil {
				if !errors.Is(err, unix.ENOENT) {
					w.unreadable(child, err)
				}
				continue
			}
			var sst unix.Stat_t
			if unix.Fstat(sub, &sst) != nil || sst.Ino != st.Ino {
				unix.Close(sub)
				w.unreadable(child, errors.New("replaced during the walk, not entered"))
				continue
			}
			if sst.Dev != dev {
				var sfs unix.Statfs_t
				if unix.Fstatfs(sub, &sfs) == nil {
					if _, skip := skippedFS[int64(sfs.Type)]; skip {
						unix.Close(sub)
						continue
					}
				}
			}
			if err := w.dir(sub, child, sst.Dev, depth+1); err != nil {
				return err
			}
		}
	}
}

// lineReader reads lines of any length from hostile content without
// holding more than max bytes of one line.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its newline, whether it was cut at
// max bytes, and io.EOF after the last line.
func (l *lineReader) next() (string, bool, error) {
	l.buf = l.buf[:0]
	total := 0
	for {
		frag, err := l.r.ReadSlice('\n')
		total += len(frag)
		if room := l.max - len(l.buf); room > 0 {
			l.buf = append(l.buf, frag[:min(len(frag), room)]...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && total == 0:
			return "", false, io.EOF
		case err != nil && err != io.EOF:
			return "", false, err
		}
		content := total
		if err == nil {
			content-- // the newline
		}
		line := strings.TrimSuffix(string(l.buf), "\n")
		return strings.TrimSuffix(line, "\r"), content > l.max, nil
	}
}

func unixTime(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec).UTC() }

func atoiOr(s string, def int) int { //nolint:unparam // the default is the caller's choice of "unknown"
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def
	}
	return n
}
