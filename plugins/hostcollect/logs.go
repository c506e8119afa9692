package hostcollect

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// logBases are the logs an examiner reads first, relative to /var/log.
var logBases = []string{"auth.log", "secure", "syslog", "messages", "kern.log", "daemon.log", "audit/audit.log",
	"cloud-init.log", "cloud-init-output.log", "amazon/ssm/amazon-ssm-agent.log", "sudo.log", "faillog"}

// LogRecord describes one copied log file, or one entry of /var/log.
type LogRecord struct {
	// Kind is "log", "journal" or "listing".
	Kind   string    `json:"kind"`
	Path   string    `json:"path"`
	Size   int64     `json:"size"`
	MTime  time.Time `json:"mtime"`
	Copied int64     `json:"copied"`
	// Offset is where the copy starts: non-zero when only the newest bytes
	// were kept.
	Offset    int64  `json:"offset,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Copy      string `json:"copy,omitempty"`
	// Mode and Type describe a listing entry.
	Mode string `json:"mode,omitempty"`
	Type string `json:"type,omitempty"`
}

func collectLogs(c *collection, a *artifact) error {
	// The listing shows what is there, including emptied or deleted-then-
	// recreated logs whose sizes and times are themselves evidence.
	if err := listDir(a, "/var/log"); err != nil {
		return err
	}
	var paths []string
	for _, base := range logBases {
		p := filepath.Join("/var/log", base)
		paths = append(paths, p)
		if c.p.Profile == ProfileFull {
			paths = append(paths, globSorted(p+".*")...)
		} else {
			paths = append(paths, p+".1")
		}
	}
	for _, p := range globSorted("/var/log/cloud-init*.log") {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if err := a.stop(); err != nil {
			return err
		}
		if err := copyLog(c, a, p); err != nil {
			return err
		}
	}
	return collectJournal(c, a)
}

// copyLog copies a log, keeping its newest bytes when it is over the log cap.
// A compressed rotation cannot be cut, so one over the cap is skipped.
func copyLog(c *collection, a *artifact, path string) error {
	f, err := openRegular(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Skip(path, describeOpenError(path, err))
		}
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		a.Skip(path, err.Error())
		return nil
	}
	compressed := slices.Contains([]string{".gz", ".xz", ".bz2", ".zst"}, filepath.Ext(path))
	if compressed && fi.Size() > c.p.MaxLogBytes {
		a.Skip(path, fmt.Sprintf("compressed rotation of %d bytes is over the log cap of %d and cannot be cut", fi.Size(), c.p.MaxLogBytes))
		return nil
	}
	m, err := a.addOpen(path, f, bundle.FileOptions{MaxBytes: c.p.MaxLogBytes, Tail: true})
	if err != nil || m == nil {
		return err
	}
	return a.Record(LogRecord{Kind: "log", Path: validUTF8(path), Size: fi.Size(), MTime: fi.ModTime().UTC(), Copied: m.Size,
		Offset: m.Offset, Truncated: m.Truncated, SHA256: m.SHA256, Copy: m.Path})
}

// collectJournal copies systemd journal files, newest first, within a
// budget of four log caps. A journal file cannot be cut and stay readable,
// so one that does not fit is skipped and recorded.
func collectJournal(c *collection, a *artifact) error {
	type jf struct {
		path  string
		size  int64
		mtime time.Time
	}
	var files []jf
	for _, root := range []string{"/var/log/journal", "/run/log/journal"} {
		w := &walker{ctx: c.ctx, maxEntries: 100_000, maxDepth: 4, unreadable: func(p string, err error) { a.Skip(p, err.Error()) }}
		w.visit = func(e *walkEntry) error {
			if e.Stat.isReg() && (strings.HasSuffix(e.Name, ".journal") || strings.HasSuffix(e.Name, ".journal~")) {
				files = append(files, jf{e.Path, e.Stat.Size, unixTime(e.Stat.Mtime)})
			}
			return nil
		}
		if err := w.walk(root); err != nil && !errors.Is(err, os.ErrNotExist) {
			if c.ctx.Err() != nil {
				return err
			}
			a.Skip(root, err.Error())
		}
	}
	slices.SortFunc(files, func(x, y jf) int { return y.mtime.Compare(x.mtime) })
	budget := 4 * c.p.MaxLogBytes
	for _, j := range files {
		if err := a.stop(); err != nil {
			return err
		}
		if j.size > budget || j.size > c.p.MaxFileBytes {
			a.Skip(j.path, fmt.Sprintf("journal file of %d bytes does not fit the remaining journal budget of %d bytes", j.size, budget))
			continue
		}
		f, err := openRegular(j.path)
		if err != nil {
			a.Skip(j.path, describeOpenError(j.path, err))
			continue
		}
		m, err := a.addOpen(j.path, f, bundle.FileOptions{})
		f.Close()
		if err != nil {
			return err
		}
		if m == nil {
			continue
		}
		budget -= m.Size
		if err := a.Record(LogRecord{Kind: "journal", Path: validUTF8(j.path), Size: j.size, MTime: j.mtime, Copied: m.Size,
			Truncated: m.Truncated, SHA256: m.SHA256, Copy: m.Path}); err != nil {
			return err
		}
	}
	return nil
}

// listDir records the entries directly in dir.
func listDir(a *artifact, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Skip(dir, err.Error())
		}
		return nil
	}
	slices.SortFunc(ents, func(x, y os.DirEntry) int { return cmp.Compare(x.Name(), y.Name()) })
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		r := LogRecord{Kind: "listing", Path: validUTF8(filepath.Join(dir, e.Name())), Size: fi.Size(), MTime: fi.ModTime().UTC(),
			Mode: fi.Mode().String(), Type: fileTypeOf(fi.Mode())}
		if err := a.Record(r); err != nil {
			return err
		}
	}
	return nil
}

func fileTypeOf(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "other"
}
