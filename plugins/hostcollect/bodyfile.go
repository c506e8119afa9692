package hostcollect

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BodyfileLine is one line of The Sleuth Kit 3.x body file, the input of
// mactime:
//
//	MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime
//
// Times are Unix seconds; a time the filesystem does not record is 0.
type BodyfileLine struct {
	// MD5 is the file's MD5 in hex, or "0" when not computed.
	MD5 string `json:"md5"`
	// Name is the path; a symlink's is "path -> target".
	Name  string `json:"name"`
	Inode uint64 `json:"inode"`
	// Mode is TSK's mode string, e.g. "r/rrwxr-xr-x" or "d/drwxr-xr-x".
	Mode   string `json:"mode"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Size   int64  `json:"size"`
	Atime  int64  `json:"atime"`
	Mtime  int64  `json:"mtime"`
	Ctime  int64  `json:"ctime"`
	Crtime int64  `json:"crtime"`
}

// String renders the line exactly as TSK's fls -m does. Like TSK, control
// characters in names are written as '^'; a '|' in a name is left as is, and
// ParseBodyfileLine recovers such names from the fixed fields around them.
func (l BodyfileLine) String() string {
	md5 := l.MD5
	if md5 == "" {
		md5 = "0"
	}
	return fmt.Sprintf("%s|%s|%d|%s|%d|%d|%d|%d|%d|%d|%d", md5, sanitizeBodyName(l.Name), l.Inode, l.Mode,
		l.UID, l.GID, l.Size, l.Atime, l.Mtime, l.Ctime, l.Crtime)
}

func sanitizeBodyName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '^'
		}
		return r
	}, validUTF8(s))
}

// ParseBodyfileLine parses a TSK 3.x body file line. The name is everything
// between the first field and the last nine, so names holding '|' survive.
func ParseBodyfileLine(s string) (BodyfileLine, error) {
	f := strings.Split(strings.TrimRight(s, "\r\n"), "|")
	if len(f) < 11 {
		return BodyfileLine{}, fmt.Errorf("%d fields, want 11", len(f))
	}
	tail := f[len(f)-9:]
	l := BodyfileLine{MD5: f[0], Name: strings.Join(f[1:len(f)-9], "|"), Mode: tail[1]}
	var err error
	ints := []struct {
		s   string
		dst *int64
	}{{tail[4], &l.Size}, {tail[5], &l.Atime}, {tail[6], &l.Mtime}, {tail[7], &l.Ctime}, {tail[8], &l.Crtime}}
	for i, x := range ints {
		if *x.dst, err = strconv.ParseInt(x.s, 10, 64); err != nil {
			return BodyfileLine{}, fmt.Errorf("field %d (%q): %w", i+7, x.s, err)
		}
	}
	if l.Inode, err = strconv.ParseUint(tail[0], 10, 64); err != nil {
		return BodyfileLine{}, fmt.Errorf("inode %q: %w", tail[0], err)
	}
	uid, err := strconv.ParseUint(tail[2], 10, 32)
	if err != nil {
		return BodyfileLine{}, fmt.Errorf("uid %q: %w", tail[2], err)
	}
	gid, err := strconv.ParseUint(tail[3], 10, 32)
	if err != nil {
		return BodyfileLine{}, fmt.Errorf("gid %q: %w", tail[3], err)
	}
	l.UID, l.GID = uint32(uid), uint32(gid)
	return l, nil
}

// TSKMode renders a st_mode as TSK's mode_as_string: the directory-entry
// type, a slash, then the inode type and ls-style permissions, e.g.
// "r/rrwxr-xr-x", "d/drwxr-xr-x", "l/lrwxrwxrwx". TSK writes 'r' for a
// regular file where ls writes '-'.
func TSKMode(mode uint32) string {
	t := tskType(mode)
	var b strings.Builder
	b.WriteString(t)
	b.WriteByte('/')
	b.WriteString(t)
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		c := byte('-')
		if mode&(1<<uint(8-i)) != 0 {
			c = rwx[i]
		}
		switch {
		case i == 2 && mode&unix.S_ISUID != 0:
			c = map[bool]byte{true: 's', false: 'S'}[c == 'x']
		case i == 5 && mode&unix.S_ISGID != 0:
			c = map[bool]byte{true: 's', false: 'S'}[c == 'x']
		case i == 8 && mode&unix.S_ISVTX != 0:
			c = map[bool]byte{true: 't', false: 'T'}[c == 'x']
		}
		b.WriteByte(c)
	}
	return b.String()
}

// tskType is TSK's letter for a file type (tsk_fs_name_type_str and
// tsk_fs_meta_type_str agree for the types a live filesystem shows).
func tskType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "r"
	case unix.S_IFDIR:
		return "d"
	case unix.S_IFLNK:
		return "l"
	case unix.S_IFCHR:
		return "c"
	case unix.S_IFBLK:
		return "b"
	case unix.S_IFIFO:
		return "p"
	case unix.S_IFSOCK:
		return "s"
	}
	return "-"
}

// bodyfileLineOf builds the line for a walked entry.
func bodyfileLineOf(path string, st *fileStat, linkTarget string) BodyfileLine {
	name := path
	if st.isLink() {
		name += " -> " + linkTarget
	}
	l := BodyfileLine{MD5: "0", Name: name, Inode: st.Ino, Mode: TSKMode(st.Mode), UID: st.UID, GID: st.GID,
		Size: st.Size, Atime: st.Atime.Sec, Mtime: st.Mtime.Sec, Ctime: st.Ctime.Sec}
	if st.HasBtime {
		l.Crtime = st.Btime.Sec
	}
	return l
}
