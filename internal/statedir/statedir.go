// Package statedir keeps the state directories of the controller and the
// agent private to the user that runs them: the directory and every
// directory under it 0700, every file 0600 or stricter.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Prepare creates dir with mode 0700, or makes an existing one private: a
// directory this process's user owns that group or others may enter is
// tightened to 0700. It refuses a path that is not a directory and a
// directory another user owns, naming what to do.
func Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the data dir %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("the data dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("the data dir %s is not a directory", dir)
	}
	return tighten(dir, st)
}

// Tighten makes everything under dir private: it removes the group and
// other permission bits of every directory and regular file (a file stays
// as strict as it is, e.g. 0400). It refuses an entry another user owns,
// since this process could not keep it private. Symbolic links are not
// followed.
func Tighten(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil // removed meanwhile (a temporary file)
			}
			return fmt.Errorf("the data dir: %w", err)
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		st, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the data dir: %w", err)
		}
		return tighten(path, st)
	})
}

// tighten removes the group and other bits of one entry this user owns.
func tighten(path string, st fs.FileInfo) error {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		// Security-critical: a state file or directory another user owns
		// can be read or swapped by that user whatever mode we want.
		return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d): chown -R it to this user or choose another data dir",
			path, sys.Uid, os.Geteuid())
	}
	perm := st.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	want := perm &^ 0o077
	if st.IsDir() {
		want = 0o700
	}
	if err := os.Chmod(path, want); err != nil {
		// Security-critical: state others can read must not be used.
		return fmt.Errorf("%s has mode %v, readable by other users, and could not be made private: %w (run chmod %o %s)",
			path, perm, err, want, path)
	}
	return nil
}

// CheckPrivate checks, without changing anything, that path is private to
// this process's user: owned by it, and neither group nor others have any
// permission on it. It is for state that is mounted read-only (a cluster's
// --pki-dir), which the process must not modify.
func CheckPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		// Security-critical: a key another user owns can be swapped by
		// that user; it is refused, not used.
		return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d): chown it to this user",
			path, sys.Uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		want := perm &^ 0o077
		if st.IsDir() {
			want = 0o700
		}
		// Security-critical: a key other users can read is a leaked key;
		// it is refused, not used.
		return fmt.Errorf("%s has mode %v, open to other users: run chmod %o %s", path, perm, want, path)
	}
	return nil
}
