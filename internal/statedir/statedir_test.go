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
