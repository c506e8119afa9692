package hostcollect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// plantHome builds a home directory whose history and ssh files are links
// pointing out of it, as an intruder (or a user probing the collector) would.
func plantHome(t *testing.T) (home, secret string) {
	t.Helper()
	outside := t.TempDir()
	secret = filepath.Join(outside, "shadow")
	if err := os.WriteFile(secret, []byte("root:$6$secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(outside, "sshdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "sshdir", "authorized_keys"), []byte("ssh-ed25519 AAAA outside\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home = t.TempDir()
	for link, target := range map[string]string{
		".bash_history": secret,
		".ssh":          filepath.Join(outside, "sshdir"),
		".zsh_history":  "/dev/null",
		".config":       outside,
	} {
		if err := os.Symlink(target, filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, ".profile"), []byte("umask 022\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../"+filepath.Base(outside), filepath.Join(home, "sub", "up")); err != nil {
		t.Fatal(err)
	}
	return home, secret
}

func TestOpenBeneathRefusesSymlinkEscapes(t *testing.T) {
	home, _ := plantHome(t)
	for _, tc := range []struct {
		rel     string
		refused bool
	}{
		{".bash_history", true},
		{".ssh/authorized_keys", true},
		{".zsh_history", true},
		{".config/systemd/user/x.service", true},
		{"sub/up/shadow", true},
		{"../../etc/passwd", true},
		{".profile", false},
	} {
		t.Run(tc.rel, func(t *testing.T) {
			f, err := openBeneath(home, tc.rel)
			if f != nil {
				f.Close()
			}
			if tc.refused && err == nil {
				t.Fatalf("openBeneath(%q) followed a link out of the home", tc.rel)
			}
			if !tc.refused && err != nil {
				t.Fatalf("openBeneath(%q): %v", tc.rel, err)
			}
		})
	}
	if _, err := openBeneath(home, ".bash_history"); !errors.Is(err, errSymlink) {
		t.Errorf("a symlinked history gives %v, want errSymlink", err)
	}
	if reason := describeOpenError(filepath.Join(home, ".zsh_history"), errSymlink); !strings.Contains(reason, `"/dev/null"`) {
		t.Errorf("reason %q does not name the link target", reason)
	}
	if _, err := openRegular(filepath.Join(home, ".bash_history")); !errors.Is(err, errSymlink) {
		t.Errorf("openRegular followed a final symlink: %v", err)
	}
	if _, err := openRegular(home); err == nil {
		t.Error("openRegular opened a directory")
	}
}

func TestWalkerStaysInTheTree(t *testing.T) {
	home, secret := plantHome(t)
	var seen []string
	w := &walker{ctx: context.Background(), visit: func(e *walkEntry) error {
		seen = append(seen, e.Path)
		if e.Stat.isReg() {
			f, err := e.open()
			if err != nil {
				t.Errorf("opening %s: %v", e.Path, err)
			} else {
				f.Close()
			}
		}
		return nil
	}, unreadable: func(p string, err error) { t.Errorf("unreadable %s: %v", p, err) }}
	if err := w.walk(home); err != nil {
		t.Fatal(err)
	}
	for _, p := range seen {
		if !strings.HasPrefix(p, home+"/") {
			t.Errorf("walk left the tree: %s", p)
		}
		if strings.Contains(p, "authorized_keys") || strings.HasSuffix(p, filepath.Base(secret)) {
			t.Errorf("walk followed a link to %s", p)
		}
	}
	for _, want := range []string{".bash_history", ".ssh", ".profile", "sub", "sub/up"} {
		if !slices.Contains(seen, filepath.Join(home, want)) {
			t.Errorf("walk missed %s in %v", want, seen)
		}
	}
	// A walk rooted below a symlinked component of a user's tree is refused.
	w2 := &walker{ctx: context.Background(), visit: func(*walkEntry) error { return nil }, unreadable: func(string, error) {}}
	if err := w2.walkBeneath(home, ".config/systemd/user"); err == nil {
		t.Error("walkBeneath followed .config out of the home")
	}
}

func TestWalkerBounds(t *testing.T) {
	root := t.TempDir()
	deep := root
	for i := 0; i < 10; i++ {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(root, "f"+strings.Repeat("x", i)), nil, 0o644)
	}
	var deepErr error
	w := &walker{ctx: context.Background(), maxDepth: 5, visit: func(*walkEntry) error { return nil },
		unreadable: func(p string, err error) { deepErr = err }}
	if err := w.walk(root); err != nil || deepErr == nil {
		t.Errorf("depth bound: walk %v, unreadable %v", err, deepErr)
	}
	w = &walker{ctx: context.Background(), maxEntries: 20, visit: func(*walkEntry) error { return nil }, unreadable: func(string, error) {}}
	if err := w.walk(root); err != nil || !w.limited || w.entries != 21 {
		t.Errorf("entry bound: walk %v, limited %v after %d", err, w.limited, w.entries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w = &walker{ctx: ctx, visit: func(*walkEntry) error { return nil }, unreadable: func(string, error) {}}
	for i := 0; i < 300; i++ {
		os.WriteFile(filepath.Join(root, "g"+strings.Repeat("y", i%200)+string(rune('a'+i%26))), nil, 0o644)
	}
	if err := w.walk(root); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}

func TestLineReaderCutsHostileLines(t *testing.T) {
	in := strings.Repeat("A", 100) + "\nshort\r\n" + strings.Repeat("B", 10) + "\n" + "tail"
	lr := newLineReader(strings.NewReader(in), 10)
	type line struct {
		s   string
		cut bool
	}
	var got []line
	for {
		s, cut, err := lr.next()
		if err != nil {
			break
		}
		got = append(got, line{s, cut})
	}
	want := []line{{strings.Repeat("A", 10), true}, {"short", false}, {strings.Repeat("B", 10), false}, {"tail", false}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestTSKMode(t *testing.T) {
	for _, tc := range []struct {
		mode uint32
		want string
	}{
		{0o100755, "r/rrwxr-xr-x"},
		{0o040755, "d/drwxr-xr-x"},
		{0o120777, "l/lrwxrwxrwx"},
		{0o104755, "r/rrwsr-xr-x"},
		{0o102644, "r/rrw-r-Sr--"},
		{0o041777, "d/drwxrwxrwt"},
		{0o020620, "c/crw--w----"},
		{0o010644, "p/prw-r--r--"},
		{0o140755, "s/srwxr-xr-x"},
	} {
		if got := TSKMode(tc.mode); got != tc.want {
			t.Errorf("TSKMode(%o) = %q, want %q", tc.mode, got, tc.want)
		}
	}
}
