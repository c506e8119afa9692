package hostcollect

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// maxLine bounds one line of a text file the collector parses.
const maxLine = 64 << 10

// PasswdEntry is one account of /etc/passwd.
type PasswdEntry struct {
	Name string `json:"name"`
	// Password is the passwd field: "x" when the hash is in shadow.
	Password string `json:"password_field"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	GECOS    string `json:"gecos"`
	Home     string `json:"home"`
	Shell    string `json:"shell"`
	Line     int    `json:"line"`
}

// ParseIssue is a line a parser could not read.
type ParseIssue struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// ParsePasswd parses passwd(5) content. Lines it cannot read are returned as
// issues; NIS compat lines ("+", "-") are kept with uid and gid -1.
func ParsePasswd(r io.Reader) ([]PasswdEntry, []ParseIssue) {
	var out []PasswdEntry
	var issues []ParseIssue
	forEachLine(r, func(n int, line string, cut bool) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			return
		}
		f := strings.Split(line, ":")
		if strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			out = append(out, PasswdEntry{Name: validUTF8(f[0]), UID: -1, GID: -1, Line: n})
			return
		}
		if len(f) != 7 || cut {
			issues = append(issues, ParseIssue{n, fmt.Sprintf("%d fields, want 7", len(f))})
			return
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || f[0] == "" {
			issues = append(issues, ParseIssue{n, "empty name or non-numeric uid or gid"})
			return
		}
		out = append(out, PasswdEntry{Name: validUTF8(f[0]), Password: validUTF8(f[1]), UID: uid, GID: gid,
			GECOS: validUTF8(f[4]), Home: validUTF8(f[5]), Shell: validUTF8(f[6]), Line: n})
	})
	return out, issues
}

// GroupEntry is one group of /etc/group.
type GroupEntry struct {
	Name    string   `json:"name"`
	GID     int      `json:"gid"`
	Members []string `json:"members"`
	Line    int      `json:"line"`
}

// ParseGroup parses group(5) content.
func ParseGroup(r io.Reader) ([]GroupEntry, []ParseIssue) {
	var out []GroupEntry
	var issues []ParseIssue
	forEachLine(r, func(n int, line string, cut bool) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			return
		}
		f := strings.Split(line, ":")
		if len(f) != 4 || cut {
			issues = append(issues, ParseIssue{n, fmt.Sprintf("%d fields, want 4", len(f))})
			return
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			issues = append(issues, ParseIssue{n, "non-numeric gid"})
			return
		}
		g := GroupEntry{Name: validUTF8(f[0]), GID: gid, Members: []string{}, Line: n}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.Members = append(g.Members, validUTF8(m))
			}
		}
		out = append(out, g)
	})
	return out, issues
}

// ShadowEntry is the password state of an account from /etc/shadow. The
// hash itself is never recorded.
type ShadowEntry struct {
	Name string `json:"name"`
	// State is "locked", "no_password", "set" or "disabled" (e.g. "*").
	State string `json:"state"`
	// Algorithm is the crypt(5) prefix of the hash, e.g. "$6$" or "$y$".
	Algorithm  string `json:"algorithm,omitempty"`
	LastChange int    `json:"last_change_days"`
	MinDays    string `json:"min_days,omitempty"`
	MaxDays    string `json:"max_days,omitempty"`
	ExpireDays string `json:"expire_days,omitempty"`
	Line       int    `json:"line"`
}

// ParseShadow parses shadow(5) content into password states.
func ParseShadow(r io.Reader) ([]ShadowEntry, []ParseIssue) {
	var out []ShadowEntry
	var issues []ParseIssue
	forEachLine(r, func(n int, line string, cut bool) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			return
		}
		f := strings.Split(line, ":")
		if len(f) < 8 || cut {
			issues = append(issues, ParseIssue{n, fmt.Sprintf("%d fields, want 9", len(f))})
			return
		}
		e := ShadowEntry{Name: validUTF8(f[0]), LastChange: atoiOr(f[2], -1), MinDays: f[3], MaxDays: f[4], ExpireDays: f[7], Line: n}
		hash := f[1]
		switch {
		case hash == "":
			e.State = "no_password"
		case strings.HasPrefix(hash, "!"):
			e.State = "locked"
			hash = strings.TrimLeft(hash, "!")
		case hash == "*" || hash == "x":
			e.State = "disabled"
		default:
			e.State = "set"
		}
		if strings.HasPrefix(hash, "$") {
			if i := strings.IndexByte(hash[1:], '$'); i >= 0 && i < 8 {
				e.Algorithm = hash[:i+2]
			}
		} else if len(hash) == 13 {
			e.Algorithm = "des"
		}
		out = append(out, e)
	})
	return out, issues
}

// SudoersEntry is one logical line of a sudoers file.
type SudoersEntry struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Kind is "rule", "defaults", "alias", "include" or "includedir".
	Kind string `json:"kind"`
	Text string `json:"text"`
	// Target is the file or directory an include names.
	Target string `json:"target,omitempty"`
}

// ParseSudoers parses sudoers(5) content into logical lines, joining
// backslash continuations and telling includes (both the "@include" and the
// legacy "#include" spelling) from comments.
func ParseSudoers(file string, r io.Reader) []SudoersEntry {
	var out []SudoersEntry
	var pending strings.Builder
	start := 0
	forEachLine(r, func(n int, line string, _ bool) {
		if pending.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			pending.WriteString(strings.TrimSuffix(line, "\\"))
			pending.WriteByte(' ')
			return
		}
		pending.WriteString(line)
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if e, ok := sudoersEntry(file, start, text); ok {
			out = append(out, e)
		}
	})
	if pending.Len() > 0 {
		if e, ok := sudoersEntry(file, start, strings.TrimSpace(pending.String())); ok {
			out = append(out, e)
		}
	}
	return out
}

func sudoersEntry(file string, n int, text string) (SudoersEntry, bool) {
	e := SudoersEntry{File: file, Line: n, Text: validUTF8(text)}
	for _, inc := range []string{"@includedir", "#includedir", "@include", "#include"} {
		if rest, ok := strings.CutPrefix(text, inc); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			e.Kind = strings.TrimLeft(inc, "@#")
			e.Target = validUTF8(strings.Trim(strings.TrimSpace(rest), `"`))
			return e, true
		}
	}
	if text == "" || strings.HasPrefix(text, "#") {
		return e, false
	}
	first, _, _ := strings.Cut(text, " ")
	switch {
	case strings.HasPrefix(first, "Defaults"):
		e.Kind = "defaults"
	case slices.Contains([]string{"User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias"}, first):
		e.Kind = "alias"
	default:
		e.Kind = "rule"
	}
	return e, true
}

// forEachLine calls fn for every line of r, cut at maxLine bytes.
func forEachLine(r io.Reader, fn func(n int, line string, cut bool)) {
	lr := newLineReader(r, maxLine)
	for n := 1; ; n++ {
		line, cut, err := lr.next()
		if err != nil {
			return
		}
		fn(n, line, cut)
	}
}

// UserRecord is one record of the users artifact; Kind says which fields are set.
type UserRecord struct {
	Kind    string        `json:"kind"`
	Account *PasswdEntry  `json:"account,omitempty"`
	Shadow  *ShadowEntry  `json:"shadow,omitempty"`
	Group   *GroupEntry   `json:"group,omitempty"`
	Sudoers *SudoersEntry `json:"sudoers,omitempty"`
	// Flags marks what an examiner looks at first: "uid_zero" for a
	// non-root account with uid 0, "no_password", "login_shell".
	Flags []string `json:"flags,omitempty"`
}

var nonLoginShells = []string{"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync", ""}

func collectUsers(c *collection, a *artifact) error {
	shadow := map[string]*ShadowEntry{}
	if f, err := openRegular("/etc/shadow"); err == nil {
		entries, _ := ParseShadow(io.LimitReader(f, 64<<20))
		f.Close()
		for i := range entries {
			shadow[entries[i].Name] = &entries[i]
		}
	} else if !os.IsNotExist(err) {
		a.Skip("/etc/shadow", describeOpenError("/etc/shadow", err))
	}
	if _, err := a.copyFile("/etc/passwd", bundle.FileOptions{}); err != nil {
		return err
	}
	f, err := openRegular("/etc/passwd")
	if err != nil {
		return fmt.Errorf("reading /etc/passwd: %w", err)
	}
	accounts, issues := ParsePasswd(io.LimitReader(f, 64<<20))
	f.Close()
	for _, is := range issues {
		a.Skip(fmt.Sprintf("/etc/passwd:%d", is.Line), is.Reason)
	}
	for i := range accounts {
		u := &accounts[i]
		r := UserRecord{Kind: "account", Account: u, Shadow: shadow[u.Name]}
		if u.UID == 0 && u.Name != "root" {
			r.Flags = append(r.Flags, "uid_zero")
		}
		if u.Password == "" || r.Shadow != nil && r.Shadow.State == "no_password" {
			r.Flags = append(r.Flags, "no_password")
		}
		if !slices.Contains(nonLoginShells, u.Shell) {
			r.Flags = append(r.Flags, "login_shell")
		}
		if err := a.Record(r); err != nil {
			return err
		}
	}
	if _, err := a.copyFile("/etc/group", bundle.FileOptions{}); err != nil {
		return err
	}
	if f, err := openRegular("/etc/group"); err == nil {
		groups, issues := ParseGroup(io.LimitReader(f, 64<<20))
		f.Close()
		for _, is := range issues {
			a.Skip(fmt.Sprintf("/etc/group:%d", is.Line), is.Reason)
		}
		for i := range groups {
			if err := a.Record(UserRecord{Kind: "group", Group: &groups[i]}); err != nil {
				return err
			}
		}
	}
	return c.collectSudoers(a)
}

// collectSudoers reads /etc/sudoers and every file it includes, once each.
func (c *collection) collectSudoers(a *artifact) error {
	queue := []string{"/etc/sudoers"}
	seen := map[string]bool{}
	if ents, err := os.ReadDir("/etc/sudoers.d"); err == nil {
		for _, e := range ents {
			queue = append(queue, filepath.Join("/etc/sudoers.d", e.Name()))
		}
	}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] || len(seen) > 256 {
			continue
		}
		seen[path] = true
		f, err := openRegular(path)
		if err != nil {
			if !os.IsNotExist(err) {
				a.Skip(path, describeOpenError(path, err))
			}
			continue
		}
		if _, err := a.addOpen(path, f, bundle.FileOptions{}); err != nil {
			f.Close()
			return err
		}
		entries := ParseSudoers(path, io.NewSectionReader(f, 0, 16<<20))
		f.Close()
		for i := range entries {
			e := &entries[i]
			if err := a.Record(UserRecord{Kind: "sudoers", Sudoers: e}); err != nil {
				return err
			}
			switch e.Kind {
			case "include":
				t := e.Target
				if !filepath.IsAbs(t) {
					t = filepath.Join(filepath.Dir(path), t)
				}
				queue = append(queue, t)
			case "includedir":
				if ents, err := os.ReadDir(e.Target); err == nil {
					for _, d := range ents {
						// sudo skips names ending in '~' or holding a '.'.
						if n := d.Name(); !strings.HasSuffix(n, "~") && !strings.Contains(n, ".") {
							queue = append(queue, filepath.Join(e.Target, n))
						}
					}
				}
			}
		}
	}
	return nil
}
