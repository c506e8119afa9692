package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// openLockPoll is how often a waiting opener tries the open lock again.
const openLockPoll = 10 * time.Millisecond

// lockOpen takes the exclusive open lock of the SQLite database at path:
// an flock(2) on the file path+".lock", beside the database, which every
// store opening that database holds while it sets its journal mode and
// migrates. SQLite refuses a second connection's switch of a new database
// to WAL at once, with SQLITE_BUSY and without waiting (its busy timeout
// does not cover it), so two controllers or a `controller migrate`
// starting together on one data directory would otherwise fail; with the
// lock the later opener waits and then finds the database already
// migrated. The lock is released by the returned function, or by the
// kernel when the process dies. It waits until ctx ends.
func lockOpen(ctx context.Context, path string) (func(), error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the database's open lock %s: %w", name, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("taking the database's open lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the database's open lock %s, held by another process opening or migrating it: %w", name, ctx.Err())
		case <-time.After(openLockPoll):
		}
	}
}
