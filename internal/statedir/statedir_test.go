package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestPrepareAndTighten(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  map[string]os.FileMode
	}{
		{"new directory", func(t *testing.T, dir string) {}, map[string]os.FileMode{"": 0o700}},
		{"existing 0755 directory with readable files", func(t *testing.T, dir string) {
			must(t, os.Mkdir(dir, 0o755))
			must(t, os.Chmod(dir, 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "db"), []byte("x"), 0o644))
			must(t, os.Chmod(filepath.Join(dir, "db"), 0o644))
			must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
			must(t, os.Chmod(filepath.Join(dir, "sub"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "sub", "obj"), []byte("x"), 0o444))
			must(t, os.Chmod(filepath.Join(dir, "sub", "obj"), 0o444))
		}, map[string]os.FileMode{"": 0o700, "db": 0o600, "sub": 0o700, "sub/obj": 0o400}},
		{"private files keep their mode", func(t *testing.T, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.WriteFile(filepath.Join(dir, "key"), []byte("x"), 0o400))
			must(t, os.Chmod(filepath.Join(dir, "key"), 0o400))
		}, map[string]os.FileMode{"": 0o700, "key": 0o400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			tt.setup(t, dir)
			if err := Prepare(dir); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if err := Tighten(dir); err != nil {
				t.Fatalf("Tighten: %v", err)
			}
			for rel, want := range tt.want {
				if got := mode(t, filepath.Join(dir, rel)); got != want {
					t.Errorf("%s: mode %v, want %v", rel, got, want)
				}
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	t.Run("not a directory", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		must(t, os.WriteFile(p, nil, 0o600))
		if err := Prepare(p); err == nil {
			t.Fatal("Prepare accepted a file")
		}
	})
	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory to another user")
		}
		dir := filepath.Join(t.TempDir(), "data")
		must(t, os.Mkdir(dir, 0o755))
		must(t, os.Chown(dir, 65534, 65534))
		err := Prepare(dir)
		if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("Prepare: %v, want a refusal naming the owner", err)
		}
		if got := mode(t, dir); got != 0o755 {
			t.Fatalf("the refused directory's mode changed to %v", got)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckPrivate checks that a private file or directory passes and one
// open to other users is refused with the chmod to run, unchanged.
func TestCheckPrivate(t *testing.T) {
	tests := []struct {
		name    string
		dir     bool
		perm    os.FileMode
		wantErr string
	}{
		{name: "private file", perm: 0o600},
		{name: "read-only private file", perm: 0o400},
		{name: "private directory", dir: true, perm: 0o700},
		{name: "group-readable file", perm: 0o640, wantErr: "run chmod 600"},
		{name: "world-readable file", perm: 0o644, wantErr: "open to other users"},
		{name: "group-enterable directory", dir: true, perm: 0o750, wantErr: "run chmod 700"},
		{name: "missing file", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x")
			switch {
			case tt.perm == 0:
			case tt.dir:
				must(t, os.Mkdir(path, tt.perm))
				must(t, os.Chmod(path, tt.perm))
			default:
				must(t, os.WriteFile(path, []byte("k"), tt.perm))
				must(t, os.Chmod(path, tt.perm))
			}
			err := CheckPrivate(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckPrivate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.perm != 0 && mode(t, path) != tt.perm {
				t.Fatalf("mode changed to %v; CheckPrivate must change nothing", mode(t, path))
			}
		})
	}
}
