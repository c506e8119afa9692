package controller_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
)

// TestDataDirIsPrivate starts the controller on a data directory that
// already exists with mode 0755 and holds a world-readable file, and checks
// that the directory, the database with its -wal and -shm files, and every
// other file end private to the controller's user.
func TestDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "controller")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("left by an operator"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "notes.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	playbookruntest.StartController(t, playbookruntest.Options{DataDir: dir})
	// The address file is written once the controller serves.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, controller.AddrFile)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the controller never wrote its address file")
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen[rel] = true
		switch {
		case st.IsDir() && st.Mode().Perm() != 0o700:
			t.Errorf("directory %s has mode %v, want 0700", rel, st.Mode().Perm())
		case st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0:
			t.Errorf("file %s has mode %v, readable by other users", rel, st.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".", controller.DatabaseFile, controller.DatabaseFile + "-wal", controller.DatabaseFile + "-shm",
		"ca.pem", "ca.key", controller.SigningKeyFile, controller.AdminCredsFile, controller.AddrFile, "notes.txt"} {
		if !seen[f] {
			t.Errorf("%s is not in the data dir; the test expected to check its mode", f)
		}
	}
}
