package hostcollect

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// historyFiles are the history files looked for in every home, relative to it.
var historyFiles = []struct{ rel, shell string }{
	{".bash_history", "bash"}, {".zsh_history", "zsh"}, {".zhistory", "zsh"}, {".histfile", "zsh"},
	{".sh_history", "sh"}, {".history", "sh"}, {".ash_history", "ash"}, {".ksh_history", "ksh"},
	{".local/share/fish/fish_history", "fish"}, {".config/fish/fish_history", "fish"},
	{".python_history", "python"}, {".mysql_history", "mysql"}, {".psql_history", "psql"},
	{".sqlite_history", "sqlite"}, {".node_repl_history", "node"}, {".rediscli_history", "redis-cli"},
	{".lesshst", "less"}, {".viminfo", "vim"}, {".wget-hsts", "wget"}, {".irb_history", "irb"},
}

// HistoryEntry is one command of a history file.
type HistoryEntry struct {
	User    string     `json:"user"`
	Path    string     `json:"path"`
	Shell   string     `json:"shell"`
	Line    int        `json:"line"`
	Command string     `json:"command"`
	Time    *time.Time `json:"time,omitempty"`
	// Cut is set when the line was longer than the collector keeps.
	Cut bool `json:"cut,omitempty"`
	// Linked is set when the history file is a symlink (commonly to
	// /dev/null, to hide a session); Command then holds the target.
	Linked bool `json:"linked,omitempty"`
}

// ParseHistory reads history content of the given shell and calls fn per
// command. It understands bash's "#<epoch>" timestamp lines, zsh's extended
// ": <epoch>:<duration>;command" form and fish's YAML-like "- cmd:/when:".
func ParseHistory(shell string, r io.Reader, fn func(HistoryEntry) error) error {
	lr := newLineReader(r, maxLine)
	var pendingTime *time.Time
	var fishEntry *HistoryEntry
	flushFish := func() error {
		if fishEntry == nil {
			return nil
		}
		e := *fishEntry
		fishEntry = nil
		return fn(e)
	}
	for n := 1; ; n++ {
		line, cut, err := lr.next()
		if errors.Is(err, io.EOF) {
			return flushFish()
		}
		if err != nil {
			return err
		}
		e := HistoryEntry{Shell: shell, Line: n, Command: validUTF8(line), Cut: cut}
		switch shell {
		case "bash", "sh", "ksh", "ash":
			if ts, ok := strings.CutPrefix(line, "#"); ok {
				if sec, err := strconv.ParseInt(ts, 10, 64); err == nil && sec > 0 {
					t := time.Unix(sec, 0).UTC()
					pendingTime = &t
					continue
				}
			}
			e.Time, pendingTime = pendingTime, nil
		case "zsh":
			if rest, ok := strings.CutPrefix(line, ": "); ok {
				if meta, cmd, ok := strings.Cut(rest, ";"); ok {
					if sec, _, _ := strings.Cut(meta, ":"); sec != "" {
						if s, err := strconv.ParseInt(sec, 10, 64); err == nil {
							t := time.Unix(s, 0).UTC()
							e.Time = &t
							e.Command = validUTF8(cmd)
						}
					}
				}
			}
		case "fish":
			if cmd, ok := strings.CutPrefix(line, "- cmd: "); ok {
				if err := flushFish(); err != nil {
					return err
				}
				e.Command = validUTF8(cmd)
				fishEntry = &e
				continue
			}
			if when, ok := strings.CutPrefix(strings.TrimSpace(line), "when: "); ok && fishEntry != nil {
				if s, err := strconv.ParseInt(when, 10, 64); err == nil {
					t := time.Unix(s, 0).UTC()
					fishEntry.Time = &t
				}
			}
			continue
		}
		if strings.TrimSpace(e.Command) == "" {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func collectHistory(c *collection, a *artifact) error {
	for _, h := range c.homes() {
		for _, hf := range historyFiles {
			if err := a.stop(); err != nil {
				return err
			}
			path := filepath.Join(h.dir, hf.rel)
			f, err := openBeneath(h.dir, hf.rel)
			switch {
			case errors.Is(err, errSymlink):
				target, _ := os.Readlink(path)
				a.Skip(path, describeOpenError(path, err))
				if err := a.Record(HistoryEntry{User: h.user(), Path: path, Shell: hf.shell, Command: validUTF8(target), Linked: true}); err != nil {
					return err
				}
				continue
			case errors.Is(err, os.ErrNotExist):
				continue
			case err != nil:
				a.Skip(path, describeOpenError(path, err))
				continue
			}
			m, err := a.addOpen(path, f, bundle.FileOptions{MaxBytes: c.p.MaxFileBytes, Tail: true})
			if err != nil {
				f.Close()
				return err
			}
			// Parse what was kept: the newest commands when over the cap.
			var start int64
			if m != nil {
				start = m.Offset
			}
			fi, _ := f.Stat()
			err = ParseHistory(hf.shell, io.NewSectionReader(f, start, fi.Size()-start), func(e HistoryEntry) error {
				e.User, e.Path = h.user(), validUTF8(path)
				return a.Record(e)
			})
			f.Close()
			if errors.Is(err, bundle.ErrCapReached) {
				return err
			}
			if err != nil {
				a.Skip(path, err.Error())
			}
		}
	}
	return nil
}
