package hostisolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RecordFile is the name of the isolation record in the state directory.
const RecordFile = "isolation.json"

// recordVersion is the record format this package writes and reads.
const recordVersion = 1

// lockFile serialises isolate, unisolate and reconcile on one host, which
// run in different plugin processes.
const lockFile = "isolation.lock"

// Record is what an applied isolation leaves in the state directory, so
// that the agent can report the host as isolated and reconcile can restore
// the isolation after a reboot (nftables rules do not survive one).
//
// host-isolate and host-unisolate must be given the same state directory:
// unisolate removes the record that isolate wrote.
type Record struct {
	// Version is the record format, 1.
	Version int `json:"version"`
	// Table is "inet firebreak".
	Table string `json:"table"`
	// Params are the task's parameters as given.
	Params IsolateParams `json:"params"`
	// ControllerAddresses are the controller addresses kept reachable.
	ControllerAddresses []string `json:"controller_addresses"`
	// ControllerPort is the controller's TCP port.
	ControllerPort uint16 `json:"controller_port"`
	// Allow are the allowed networks, in canonical form.
	Allow []string `json:"allow"`
	// DHCP says whether DHCP and DHCPv6 stay open.
	DHCP bool `json:"dhcp"`
	// RuleDigest is the applied ruleset's digest (Ruleset.Digest).
	RuleDigest string `json:"rule_digest"`
	// RuleCount is the number of rules applied.
	RuleCount int `json:"rule_count"`
	// AppliedAt is when the isolation was first applied.
	AppliedAt time.Time `json:"applied_at"`
	// ReappliedAt is when reconcile last restored it, if ever.
	ReappliedAt *time.Time `json:"reapplied_at,omitempty"`
	// Reason is the operator's reason, from the parameters.
	Reason string `json:"reason"`
	// Task identifies the task that applied the isolation.
	Task *TaskRef `json:"task,omitempty"`
}

// TaskRef identifies the task that applied an isolation.
type TaskRef struct {
	// TaskID is the controller's task id.
	TaskID string `json:"task_id,omitempty"`
	// RunID is the run the task belonged to.
	RunID string `json:"run_id,omitempty"`
	// CaseID is the incident case, if any.
	CaseID string `json:"case_id,omitempty"`
	// Operator started the run.
	Operator string `json:"operator,omitempty"`
	// AgentID is the agent that executed the task.
	AgentID string `json:"agent_id,omitempty"`
}

// Spec rebuilds the spec the record was applied from.
func (r *Record) Spec() (Spec, error) {
	s := Spec{ControllerPort: r.ControllerPort, DHCP: r.DHCP}
	for _, a := range r.ControllerAddresses {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return Spec{}, fmt.Errorf("the isolation record's controller address %q: %w", a, err)
		}
		s.Controllers = append(s.Controllers, addr)
	}
	for _, a := range r.Allow {
		entry, err := ParseAllow(a)
		if err != nil {
			return Spec{}, fmt.Errorf("the isolation record: %w", err)
		}
		s.Allow = append(s.Allow, entry)
	}
	if err := s.CheckAndSetDefaults(); err != nil {
		return Spec{}, fmt.Errorf("the isolation record: %w", err)
	}
	return s, nil
}

// RecordPath is where the isolation record lives in a state directory.
func RecordPath(stateDir string) string { return filepath.Join(stateDir, RecordFile) }

// Recorded reports whether an isolation is recorded in the state directory.
// The agent keeps its own record of the host state it reports; this one is
// the plugin's, which reconcile restores the isolation from.
func Recorded(stateDir string) (bool, error) {
	r, err := ReadRecord(stateDir)
	return r != nil, err
}

// ReadRecord reads the isolation record from the state directory. It
// returns nil and no error when no isolation is recorded.
func ReadRecord(stateDir string) (*Record, error) {
	b, err := os.ReadFile(RecordPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the isolation record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("the isolation record %s is not valid JSON: %w", RecordPath(stateDir), err)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("the isolation record %s has format version %d; this plugin reads version %d", RecordPath(stateDir), r.Version, recordVersion)
	}
	return &r, nil
}

// recordStore keeps one host's isolation record.
type recordStore interface {
	// lock serialises the actions on the host until the returned function
	// is called.
	lock(ctx context.Context) (unlock func(), err error)
	// load returns the record, or nil when there is none.
	load() (*Record, error)
	// save replaces the record atomically.
	save(r *Record) error
	// remove deletes the record and reports whether there was one.
	remove() (bool, error)
	// location says where the record lives, for results and errors.
	location() string
}

// fileStore keeps the record in the plugin's state directory.
type fileStore struct{ dir string }

func (s fileStore) location() string { return RecordPath(s.dir) }

func (s fileStore) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the isolation lock: %w", err)
	}
	// Poll rather than block, so that a cancelled task stops waiting.
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for another isolation task on this host: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s fileStore) load() (*Record, error) { return ReadRecord(s.dir) }

// save writes the record to a temporary file, syncs it and renames it over
// the old one, so a crash leaves either the old record or the new one.
func (s fileStore) save(r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, RecordFile+".*")
	if err != nil {
		return fmt.Errorf("writing the isolation record: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing the isolation record: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("syncing the isolation record: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the isolation record: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.location()); err != nil {
		return fmt.Errorf("replacing the isolation record: %w", err)
	}
	return syncDir(s.dir)
}

func (s fileStore) remove() (bool, error) {
	err := os.Remove(s.location())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing the isolation record: %w", err)
	}
	return true, syncDir(s.dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// memoryStore keeps a simulated host's record in memory.
type memoryStore struct {
	name   string
	mu     sync.Mutex // serialises tasks, like the file lock
	record *Record
}

func (s *memoryStore) location() string { return "memory:" + s.name }

func (s *memoryStore) lock(ctx context.Context) (func(), error) {
	s.mu.Lock()
	return s.mu.Unlock, nil
}

func (s *memoryStore) load() (*Record, error) {
	if s.record == nil {
		return nil, nil
	}
	r := *s.record
	return &r, nil
}

func (s *memoryStore) save(r *Record) error {
	c := *r
	s.record = &c
	return nil
}

func (s *memoryStore) remove() (bool, error) {
	had := s.record != nil
	s.record = nil
	return had, nil
}
