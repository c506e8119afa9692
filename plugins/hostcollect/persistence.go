package hostcollect

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// Persistence mechanisms, the "mechanism" field of a persistence record.
const (
	MechCron           = "cron"
	MechCronScript     = "cron_script"
	MechAnacron        = "anacron"
	MechAt             = "at"
	MechSystemd        = "systemd"
	MechSystemdLink    = "systemd_link"
	MechInit           = "init"
	MechAuthorizedKeys = "authorized_keys"
	MechLDPreload      = "ld_preload"
	MechShellRC        = "shell_rc"
)

// PersistenceRecord is one record of the persistence artifact. Mechanism
// says which of the detail fields is set.
type PersistenceRecord struct {
	Mechanism string         `json:"mechanism"`
	Path      string         `json:"path"`
	User      string         `json:"user,omitempty"`
	File      *FileInfo      `json:"file,omitempty"`
	Cron      *CronEntry     `json:"cron,omitempty"`
	Unit      *SystemdUnit   `json:"unit,omitempty"`
	Key       *AuthorizedKey `json:"key,omitempty"`
	// LinkTarget is where a symlink points (not followed).
	LinkTarget string `json:"link_target,omitempty"`
	// Entry is a preloaded library.
	Entry string `json:"entry,omitempty"`
	// Copy is the archive path of the raw copy.
	Copy string `json:"copy,omitempty"`
}

// FileInfo is the metadata of a file as the collector saw it.
type FileInfo struct {
	Size   int64     `json:"size"`
	Mode   string    `json:"mode"`
	UID    uint32    `json:"uid"`
	GID    uint32    `json:"gid"`
	MTime  time.Time `json:"mtime"`
	CTime  time.Time `json:"ctime"`
	SHA256 string    `json:"sha256,omitempty"`
}

// CronEntry is one meaningful line of a crontab.
type CronEntry struct {
	Line int `json:"line"`
	// Kind is "job", "env" or "invalid".
	Kind     string `json:"kind"`
	Schedule string `json:"schedule,omitempty"`
	User     string `json:"user,omitempty"`
	Command  string `json:"command,omitempty"`
	Text     string `json:"text"`
}

var cronEnvLine = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\s*=`)

// ParseCrontab parses crontab(5) content. System crontabs (/etc/crontab,
// /etc/cron.d) carry a user field after the schedule; user crontabs do not,
// and their jobs run as defaultUser.
func ParseCrontab(r io.Reader, system bool, defaultUser string) []CronEntry {
	var out []CronEntry
	forEachLine(r, func(n int, raw string, _ bool) {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			return
		}
		e := CronEntry{Line: n, Text: validUTF8(line), User: defaultUser}
		if cronEnvLine.MatchString(line) {
			e.Kind = "env"
			out = append(out, e)
			return
		}
		f := strings.Fields(line)
		nsched := 5
		if strings.HasPrefix(f[0], "@") {
			nsched = 1
		}
		need := nsched + 1
		if system {
			need++
		}
		if len(f) < need {
			e.Kind = "invalid"
			out = append(out, e)
			return
		}
		e.Kind = "job"
		e.Schedule = strings.Join(f[:nsched], " ")
		rest := f[nsched:]
		if system {
			e.User = validUTF8(rest[0])
			rest = rest[1:]
		}
		// Keep the command's own spacing: it starts at its first field.
		e.Command = validUTF8(line[fieldOffset(line, len(f)-len(rest)):])
		out = append(out, e)
	})
	return out
}

// fieldOffset returns the byte offset of field i (0-based) of s.
func fieldOffset(s string, i int) int {
	off := 0
	for k := 0; k <= i; k++ {
		for off < len(s) && (s[off] == ' ' || s[off] == '\t') {
			off++
		}
		if k == i {
			return off
		}
		for off < len(s) && s[off] != ' ' && s[off] != '\t' {
			off++
		}
	}
	return off
}

// SystemdUnit is what an examiner reads first in a unit file.
type SystemdUnit struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Exec        []string `json:"exec,omitempty"`
	User        string   `json:"user,omitempty"`
	WantedBy    []string `json:"wanted_by,omitempty"`
	// Triggers are timer, path and socket settings (OnCalendar, OnBootSec,
	// ListenStream, PathChanged, Unit, …) as "Key=value".
	Triggers []string `json:"triggers,omitempty"`
	// Directives are all settings as "[Section] Key=value".
	Directives []string `json:"directives"`
}

var execKeys = []string{"ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload", "ExecCondition"}
var triggerKeys = []string{"OnCalendar", "OnBootSec", "OnStartupSec", "OnActiveSec", "OnUnitActiveSec", "OnUnitInactiveSec",
	"Unit", "ListenStream", "ListenDatagram", "ListenSequentialPacket", "ListenFIFO", "PathExists", "PathExistsGlob",
	"PathChanged", "PathModified", "DirectoryNotEmpty", "Persistent"}

// ParseUnit parses a systemd unit file (systemd.syntax(7)): sections,
// comments, and backslash continuations.
func ParseUnit(name string, r io.Reader) SystemdUnit {
	u := SystemdUnit{Name: name, Type: strings.TrimPrefix(filepath.Ext(name), "."), Directives: []string{}}
	section := ""
	var pending strings.Builder
	forEachLine(r, func(_ int, raw string, _ bool) {
		line := strings.TrimSpace(raw)
		if pending.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			return
		}
		if strings.HasSuffix(line, "\\") {
			pending.WriteString(strings.TrimSuffix(line, "\\"))
			pending.WriteByte(' ')
			return
		}
		pending.WriteString(line)
		line = strings.TrimSpace(pending.String())
		pending.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			return
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return
		}
		k, v = strings.TrimSpace(k), validUTF8(strings.TrimSpace(v))
		u.Directives = append(u.Directives, fmt.Sprintf("[%s] %s=%s", section, k, v))
		switch {
		case k == "Description":
			u.Description = v
		case slices.Contains(execKeys, k):
			if v != "" {
				u.Exec = append(u.Exec, k+"="+v)
			}
		case k == "User":
			u.User = v
		case k == "WantedBy" || k == "RequiredBy":
			u.WantedBy = append(u.WantedBy, strings.Fields(v)...)
		case slices.Contains(triggerKeys, k):
			u.Triggers = append(u.Triggers, k+"="+v)
		}
	})
	return u
}

// AuthorizedKey is one line of an authorized_keys file.
type AuthorizedKey struct {
	Line        int    `json:"line"`
	Options     string `json:"options,omitempty"`
	Type        string `json:"type,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Comment     string `json:"comment,omitempty"`
	// Key is the base64 public key, as written.
	Key   string `json:"key,omitempty"`
	Error string `json:"error,omitempty"`
}

var keyTypes = []string{"ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ecdsa-sha2-nistp256@openssh.com", "sk-ssh-ed25519@openssh.com", "ssh-ed448"}

func isKeyType(s string) bool {
	return slices.Contains(keyTypes, s) || strings.HasSuffix(s, "-cert-v01@openssh.com")
}

// ParseAuthorizedKeys parses sshd(8) AUTHORIZED_KEYS content: optional
// options (which may hold quoted spaces), key type, base64 key, comment. The
// fingerprint is OpenSSH's SHA256: form.
func ParseAuthorizedKeys(r io.Reader) []AuthorizedKey {
	var out []AuthorizedKey
	forEachLine(r, func(n int, raw string, cut bool) {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			return
		}
		k := AuthorizedKey{Line: n}
		if cut {
			k.Error = fmt.Sprintf("line longer than %d bytes", maxLine)
		}
		rest := line
		if first, _, _ := strings.Cut(rest, " "); !isKeyType(first) {
			opts, after := splitOptions(rest)
			k.Options, rest = validUTF8(opts), strings.TrimSpace(after)
		}
		f := strings.Fields(rest)
		if len(f) < 2 || !isKeyType(f[0]) {
			k.Error = "no key type and key"
			k.Comment = validUTF8(truncate(line, 512))
			out = append(out, k)
			return
		}
		k.Type, k.Key = f[0], f[1]
		if len(f) > 2 {
			k.Comment = validUTF8(strings.Join(f[2:], " "))
		}
		blob, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			k.Error = "key is not base64"
		} else {
			sum := sha256.Sum256(blob)
			k.Fingerprint = "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
		}
		out = append(out, k)
	})
	return out
}

// splitOptions splits a leading options field, honouring double quotes.
func splitOptions(s string) (string, string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted && i+1 < len(s):
			i++
		case s[i] == '"':
			quoted = !quoted
		case (s[i] == ' ' || s[i] == '\t') && !quoted:
			return s[:i], s[i:]
		}
	}
	return s, ""
}

// fileInfoOf describes an open file, hashing it through the collection's cache.
func (c *collection) fileInfoOf(f *os.File) *FileInfo {
	st, err := statFD(int(f.Fd()))
	if err != nil {
		fi, err := f.Stat()
		if err != nil {
			return nil
		}
		return &FileInfo{Size: fi.Size(), Mode: fmt.Sprintf("%04o", uint32(fi.Mode().Perm())), MTime: fi.ModTime().UTC()}
	}
	info := &FileInfo{Size: st.Size, Mode: fmt.Sprintf("%04o", st.Mode&0o7777), UID: st.UID, GID: st.GID,
		MTime: unixTime(st.Mtime), CTime: unixTime(st.Ctime)}
	if h := c.hashFile(f); h.err == nil && !h.partial {
		info.SHA256 = h.sum
	}
	return info
}

// persistFile copies one file, records its metadata under the mechanism and
// returns it still open (nil when absent or unreadable) for parsing.
func (c *collection) persistFile(a *artifact, mech, path, user string, f *os.File, err error) (*os.File, *PersistenceRecord, error) {
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Skip(path, describeOpenError(path, err))
		}
		return nil, nil, nil
	}
	rec := &PersistenceRecord{Mechanism: mech, Path: validUTF8(path), User: user, File: c.fileInfoOf(f)}
	m, werr := a.addOpen(path, f, bundle.FileOptions{})
	if werr != nil {
		f.Close()
		return nil, nil, werr
	}
	if m != nil {
		rec.Copy = m.Path
	}
	return f, rec, nil
}

func collectPersistence(c *collection, a *artifact) error {
	steps := []func(*collection, *artifact) error{persistCron, persistSystemd, persistInit, persistAuthorizedKeys, persistPreload, persistShellRC}
	for _, step := range steps {
		if err := a.stop(); err != nil {
			return err
		}
		if err := step(c, a); err != nil {
			return err
		}
	}
	return nil
}

// regularFilesIn lists the regular files and symlinks directly in dir, sorted.
func regularFilesIn(dir string) []os.DirEntry {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []os.DirEntry
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			out = append(out, e)
		}
	}
	return out
}

func persistCron(c *collection, a *artifact) error {
	type crontab struct {
		path   string
		system bool
		user   string
	}
	tabs := []crontab{{"/etc/crontab", true, ""}}
	for _, e := range regularFilesIn("/etc/cron.d") {
		tabs = append(tabs, crontab{filepath.Join("/etc/cron.d", e.Name()), true, ""})
	}
	// Debian keeps user crontabs in crontabs/, Red Hat directly in /var/spool/cron.
	for _, dir := range []string{"/var/spool/cron/crontabs", "/var/spool/cron", "/var/spool/cron/tabs"} {
		for _, e := range regularFilesIn(dir) {
			tabs = append(tabs, crontab{filepath.Join(dir, e.Name()), false, e.Name()})
		}
	}
	for _, t := range tabs {
		f, err := openRegular(t.path)
		f, rec, werr := c.persistFile(a, MechCron, t.path, t.user, f, err)
		if werr != nil {
			return werr
		}
		if f == nil {
			continue
		}
		entries := ParseCrontab(io.NewSectionReader(f, 0, 16<<20), t.system, t.user)
		f.Close()
		if len(entries) == 0 {
			if err := a.Record(rec); err != nil {
				return err
			}
		}
		for i := range entries {
			r := *rec
			r.Cron = &entries[i]
			r.User = entries[i].User
			if err := a.Record(r); err != nil {
				return err
			}
		}
	}
	// anacron jobs: period, delay, job id, command.
	af, err := openRegular("/etc/anacrontab")
	af, rec, werr := c.persistFile(a, MechAnacron, "/etc/anacrontab", "root", af, err)
	if werr != nil {
		return werr
	}
	if af != nil {
		entries := ParseCrontab(io.NewSectionReader(af, 0, 16<<20), false, "root")
		af.Close()
		for i := range entries {
			r := *rec
			r.Cron = &entries[i]
			if err := a.Record(r); err != nil {
				return err
			}
		}
	}
	// Scripts run by run-parts and queued at jobs are recorded and copied.
	var scripts []struct{ path, mech string }
	for _, dir := range []string{"/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly", "/etc/cron.yearly"} {
		for _, e := range regularFilesIn(dir) {
			scripts = append(scripts, struct{ path, mech string }{filepath.Join(dir, e.Name()), MechCronScript})
		}
	}
	for _, dir := range []string{"/var/spool/cron/atjobs", "/var/spool/at"} {
		for _, e := range regularFilesIn(dir) {
			scripts = append(scripts, struct{ path, mech string }{filepath.Join(dir, e.Name()), MechAt})
		}
	}
	for _, s := range scripts {
		if err := c.recordFile(a, s.mech, s.path, ""); err != nil {
			return err
		}
	}
	return nil
}

// recordFile records and copies one file, or the target of a symlink
// without following it.
func (c *collection) recordFile(a *artifact, mech, path, user string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		return a.Record(PersistenceRecord{Mechanism: mech, Path: validUTF8(path), User: user, LinkTarget: validUTF8(target)})
	}
	f, err := openRegular(path)
	f, rec, werr := c.persistFile(a, mech, path, user, f, err)
	if werr != nil || f == nil {
		return werr
	}
	f.Close()
	return a.Record(rec)
}

// vendorUnitDirs are not collected: they hold what packages installed. Units
// an administrator or intruder adds go to the directories below.
var systemdDirs = []string{"/etc/systemd/system", "/etc/systemd/user", "/etc/systemd/system.control",
	"/run/systemd/system", "/run/systemd/transient", "/run/systemd/user", "/run/systemd/system.control"}

func persistSystemd(c *collection, a *artifact) error {
	type root struct{ base, rel, user string }
	roots := make([]root, 0, len(systemdDirs))
	for _, d := range systemdDirs {
		roots = append(roots, root{d, "", ""})
	}
	for _, h := range c.homes() {
		roots = append(roots, root{h.dir, ".config/systemd/user", h.user()})
	}
	for _, r := range roots {
		dir := filepath.Join(r.base, r.rel)
		if _, err := os.Lstat(dir); err != nil {
			continue
		}
		w := &walker{ctx: c.ctx, maxEntries: 100_000, maxDepth: 8,
			unreadable: func(p string, err error) { a.Skip(p, err.Error()) }}
		w.visit = func(e *walkEntry) error {
			switch {
			case e.Stat.isLink():
				target, _ := readlinkAt(e.DirFD, e.Name)
				return a.Record(PersistenceRecord{Mechanism: MechSystemdLink, Path: validUTF8(e.Path), User: r.user, LinkTarget: validUTF8(target)})
			case !e.Stat.isReg():
				return nil
			}
			f, err := e.open()
			f, rec, werr := c.persistFile(a, MechSystemd, e.Path, r.user, f, err)
			if werr != nil || f == nil {
				return werr
			}
			u := ParseUnit(e.Name, io.NewSectionReader(f, 0, 4<<20))
			f.Close()
			rec.Unit = &u
			return a.Record(rec)
		}
		var err error
		if r.rel == "" {
			err = w.walk(dir)
		} else {
			// A user's own tree: no link below the home is followed.
			err = w.walkBeneath(r.base, r.rel)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			if c.ctx.Err() != nil || errors.Is(err, bundle.ErrCapReached) {
				return err
			}
			a.Skip(dir, describeOpenError(dir, err))
		}
	}
	return nil
}

func persistInit(c *collection, a *artifact) error {
	for _, p := range []string{"/etc/rc.local", "/etc/rc.d/rc.local"} {
		if err := c.recordFile(a, MechInit, p, "root"); err != nil {
			return err
		}
	}
	for _, dir := range []string{"/etc/init.d", "/etc/rc.d/init.d"} {
		for _, e := range regularFilesIn(dir) {
			if err := c.recordFile(a, MechInit, filepath.Join(dir, e.Name()), "root"); err != nil {
				return err
			}
		}
	}
	return nil
}

// authorizedKeysFiles returns the AuthorizedKeysFile patterns from sshd's
// configuration, or OpenSSH's default.
func authorizedKeysFiles() []string {
	var out []string
	files := append([]string{"/etc/ssh/sshd_config"}, globSorted("/etc/ssh/sshd_config.d/*.conf")...)
	for _, path := range files {
		f, err := openRegular(path)
		if err != nil {
			continue
		}
		forEachLine(io.LimitReader(f, 1<<20), func(_ int, raw string, _ bool) {
			fields := strings.Fields(raw)
			if len(fields) >= 2 && strings.EqualFold(fields[0], "AuthorizedKeysFile") && out == nil {
				out = fields[1:]
			}
		})
		f.Close()
	}
	if out == nil {
		out = []string{".ssh/authorized_keys", ".ssh/authorized_keys2"}
	}
	if !slices.Contains(out, ".ssh/authorized_keys2") {
		// Deprecated but still read by many builds; a classic hiding place.
		out = append(out, ".ssh/authorized_keys2")
	}
	return out
}

func persistAuthorizedKeys(c *collection, a *artifact) error {
	patterns := authorizedKeysFiles()
	seen := map[string]bool{}
	for _, h := range c.homes() {
		for _, user := range h.users {
			for _, pat := range patterns {
				p := strings.NewReplacer("%h", h.dir, "%u", user, "%%", "%").Replace(pat)
				if p == "none" {
					continue
				}
				var f *os.File
				var err error
				var path string
				if rel, ok := strings.CutPrefix(p, h.dir+"/"); ok || !filepath.IsAbs(p) {
					if !ok {
						rel = p
					}
					path = filepath.Join(h.dir, rel)
					if seen[path] {
						continue
					}
					seen[path] = true
					f, err = openBeneath(h.dir, rel)
				} else {
					path = filepath.Clean(p)
					if seen[path] {
						continue
					}
					seen[path] = true
					f, err = openRegular(path)
				}
				f, rec, werr := c.persistFile(a, MechAuthorizedKeys, path, user, f, err)
				if werr != nil {
					return werr
				}
				if f == nil {
					continue
				}
				keys := ParseAuthorizedKeys(io.NewSectionReader(f, 0, 16<<20))
				f.Close()
				if len(keys) == 0 {
					if err := a.Record(rec); err != nil {
						return err
					}
				}
				for i := range keys {
					r := *rec
					r.Key = &keys[i]
					if err := a.Record(r); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func persistPreload(c *collection, a *artifact) error {
	const path = "/etc/ld.so.preload"
	f, err := openRegular(path)
	f, rec, werr := c.persistFile(a, MechLDPreload, path, "root", f, err)
	if werr != nil || f == nil {
		return werr
	}
	defer f.Close()
	var entries []string
	forEachLine(io.NewSectionReader(f, 0, 1<<20), func(_ int, raw string, _ bool) {
		line, _, _ := strings.Cut(raw, "#")
		for _, e := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ':' }) {
			entries = append(entries, validUTF8(e))
		}
	})
	if len(entries) == 0 {
		return a.Record(rec)
	}
	for _, e := range entries {
		r := *rec
		r.Entry = e
		if err := a.Record(r); err != nil {
			return err
		}
	}
	return nil
}

var systemShellFiles = []string{"/etc/profile", "/etc/bash.bashrc", "/etc/bashrc", "/etc/environment",
	"/etc/zsh/zshrc", "/etc/zsh/zshenv", "/etc/zsh/zprofile", "/etc/zshrc", "/etc/zshenv", "/etc/csh.cshrc", "/etc/csh.login"}

var userShellFiles = []string{".bashrc", ".profile", ".bash_profile", ".bash_login", ".bash_logout",
	".zshrc", ".zshenv", ".zprofile", ".zlogin", ".cshrc", ".tcshrc", ".config/fish/config.fish"}

func persistShellRC(c *collection, a *artifact) error {
	files := slices.Clone(systemShellFiles)
	for _, e := range regularFilesIn("/etc/profile.d") {
		files = append(files, filepath.Join("/etc/profile.d", e.Name()))
	}
	for _, p := range files {
		if err := c.recordFile(a, MechShellRC, p, ""); err != nil {
			return err
		}
	}
	for _, h := range c.homes() {
		for _, rel := range userShellFiles {
			path := filepath.Join(h.dir, rel)
			f, err := openBeneath(h.dir, rel)
			if errors.Is(err, errSymlink) {
				target, _ := os.Readlink(path)
				if err := a.Record(PersistenceRecord{Mechanism: MechShellRC, Path: validUTF8(path), User: h.user(), LinkTarget: validUTF8(target)}); err != nil {
					return err
				}
				continue
			}
			f, rec, werr := c.persistFile(a, MechShellRC, path, h.user(), f, err)
			if werr != nil {
				return werr
			}
			if f == nil {
				continue
			}
			f.Close()
			if err := a.Record(rec); err != nil {
				return err
			}
		}
	}
	return nil
}
