package evidence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Local stores evidence in a directory: ROOT/sha256/ab/<hex>, each object
// read-only once stored.
type Local struct {
	root string
}

// NewLocal returns a local store rooted at dir, creating it.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("the local evidence store %q must be an absolute path", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o700); err != nil {
		return nil, fmt.Errorf("creating the evidence store %s: %w", dir, err)
	}
	return &Local{root: dir}, nil
}

// Kind implements Backend.
func (l *Local) Kind() string { return "local" }

// Describe implements Backend.
func (l *Local) Describe() string { return l.root }

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

// Path is where an object lives.
func (l *Local) Path(sum string) string {
	return filepath.Join(l.root, filepath.FromSlash(ObjectKey(sum)))
}

// Put implements Backend: it renames the staged file into place, or copies
// it when the staging directory is on another filesystem.
func (l *Local) Put(_ context.Context, sum string, size int64, path string) (*Stored, error) {
	if err := checkSum(sum); err != nil {
		return nil, err
	}
	dst := l.Path(sum)
	if fi, err := os.Stat(dst); err == nil {
		if fi.Size() != size {
			return nil, fmt.Errorf("the evidence store already holds %s with %d bytes, not %d: verify the store (firebreak evidence verify --all)", dst, fi.Size(), size)
		}
		return &Stored{Location: dst}, nil
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		return nil, err
	}
	if err := os.Rename(path, dst); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return nil, err
		}
		if err := copyFile(path, dst); err != nil {
			return nil, fmt.Errorf("copying the evidence into %s: %w", dst, err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return &Stored{Location: dst}, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o400)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Open implements Backend.
func (l *Local) Open(_ context.Context, sum string) (io.ReadCloser, error) {
	if err := checkSum(sum); err != nil {
		return nil, err
	}
	f, err := os.Open(l.Path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrObjectNotFound
	}
	return f, err
}

// Stat implements Backend.
func (l *Local) Stat(_ context.Context, sum string) (int64, error) {
	if err := checkSum(sum); err != nil {
		return 0, err
	}
	fi, err := os.Stat(l.Path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrObjectNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
