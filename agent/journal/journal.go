// Package journal is the agent's record of the tasks it has accepted. It is
// what keeps a task from running twice: across reconnects, controller
// restarts and agent restarts, and against a replayed signed task.
//
// The journal is an append-only JSON Lines file. A task's start is synced
// to disk before the action runs; its result is written before it is sent;
// the controller's acknowledgement is recorded last. Entries are kept until
// the task's expiry has passed (after which the signature check refuses the
// task anyway), and dropped when the journal is reopened.
package journal

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Retention is how long past its expiry an entry is kept, covering clock
// skew between controller and agent.
const Retention = 10 * time.Minute

// Entry is what the journal knows about one task.
type Entry struct {
	TaskID    string
	Nonce     string
	ExpiresAt time.Time
	StartedAt time.Time
	// Result is set once the task has ended.
	Result *agentv1.TaskResult
	// Acked is set once the controller has stored the result.
	Acked bool
}

type record struct {
	Op        string    `json:"op"`
	TaskID    string    `json:"task"`
	Nonce     string    `json:"nonce,omitempty"`
	ExpiresAt time.Time `json:"expires,omitzero"`
	At        time.Time `json:"at,omitzero"`
	Result    []byte    `json:"result,omitempty"`
}

// Journal is safe for concurrent use.
type Journal struct {
	mu      sync.Mutex
	f       *os.File
	entries map[string]*Entry
	nonces  map[string]string
	now     func() time.Time
}

// Open opens (creating) the journal at path and compacts it.
func Open(path string, now func() time.Time) (*Journal, error) {
	if now == nil {
		now = time.Now
	}
	j := &Journal{entries: map[string]*Entry{}, nonces: map[string]string{}, now: now}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			var r record
			// A torn last line from a crash mid-write is skipped; the
			// synced start record before it is what matters.
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			j.apply(r)
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("opening the task journal: %w", err)
	}
	cutoff := now().Add(-Retention)
	for id, e := range j.entries {
		if !e.ExpiresAt.IsZero() && e.ExpiresAt.Before(cutoff) && (e.Result == nil || e.Acked) {
			delete(j.entries, id)
			delete(j.nonces, e.Nonce)
		}
	}
	if err := j.rewrite(path); err != nil {
		return nil, err
	}
	return j, nil
}

// OpenMemory returns a journal that is not persisted, for simulated agents
// in benchmarks. It still refuses replays within the process.
func OpenMemory() *Journal {
	return &Journal{entries: map[string]*Entry{}, nonces: map[string]string{}, now: time.Now}
}

func (j *Journal) apply(r record) {
	e := j.entries[r.TaskID]
	switch r.Op {
	case "start":
		e = &Entry{TaskID: r.TaskID, Nonce: r.Nonce, ExpiresAt: r.ExpiresAt, StartedAt: r.At}
		j.entries[r.TaskID] = e
		if r.Nonce != "" {
			j.nonces[r.Nonce] = r.TaskID
		}
	case "finish":
		if e == nil {
			e = &Entry{TaskID: r.TaskID}
			j.entries[r.TaskID] = e
		}
		res := &agentv1.TaskResult{}
		if proto.Unmarshal(r.Result, res) == nil {
			e.Result = res
		}
	case "ack":
		if e != nil {
			e.Acked = true
		}
	}
}

func (j *Journal) rewrite(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("compacting the task journal: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range j.entries {
		_ = enc.Encode(record{Op: "start", TaskID: e.TaskID, Nonce: e.Nonce, ExpiresAt: e.ExpiresAt, At: e.StartedAt})
		if e.Result != nil {
			b, _ := proto.Marshal(e.Result)
			_ = enc.Encode(record{Op: "finish", TaskID: e.TaskID, Result: b})
		}
		if e.Acked {
			_ = enc.Encode(record{Op: "ack", TaskID: e.TaskID})
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	j.f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	return err
}

func (j *Journal) append(r record, sync bool) error {
	if j.f == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the task journal: %w", err)
	}
	if sync {
		if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
			return fmt.Errorf("syncing the task journal: %w", err)
		}
	}
	return nil
}

// Lookup returns what the journal knows about a task.
func (j *Journal) Lookup(taskID string) (Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[taskID]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// ErrNonceReused means a nonce was seen before with another task.
var ErrNonceReused = errors.New("the task's nonce was already used by another task")

// Start records that a task is about to run, on disk, before it runs.
func (j *Journal) Start(taskID string, nonce []byte, expiresAt time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := hex.EncodeToString(nonce)
	if owner, ok := j.nonces[n]; ok && owner != taskID {
		return ErrNonceReused
	}
	if _, ok := j.entries[taskID]; ok {
		return fmt.Errorf("task %s is already in the journal", taskID)
	}
	r := record{Op: "start", TaskID: taskID, Nonce: n, ExpiresAt: expiresAt.UTC(), At: j.now().UTC()}
	if err := j.append(r, true); err != nil {
		return err
	}
	j.apply(r)
	return nil
}

// Finish records a task's result before it is sent.
func (j *Journal) Finish(res *agentv1.TaskResult) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, err := proto.Marshal(res)
	if err != nil {
		return err
	}
	r := record{Op: "finish", TaskID: res.GetTaskId(), Result: b}
	if err := j.append(r, true); err != nil {
		return err
	}
	j.apply(r)
	return nil
}

// Ack records that the controller stored a task's result.
func (j *Journal) Ack(taskID string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.entries[taskID]
	if e == nil || e.Acked {
		return nil
	}
	r := record{Op: "ack", TaskID: taskID}
	if err := j.append(r, false); err != nil {
		return err
	}
	j.apply(r)
	return nil
}

// Unacked returns the results the controller has not confirmed.
func (j *Journal) Unacked() []*agentv1.TaskResult {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*agentv1.TaskResult
	for _, e := range j.entries {
		if e.Result != nil && !e.Acked {
			out = append(out, e.Result)
		}
	}
	return out
}

// Interrupted returns tasks that started but never finished: the agent
// stopped while they ran.
func (j *Journal) Interrupted() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Entry
	for _, e := range j.entries {
		if e.Result == nil && !e.StartedAt.IsZero() {
			out = append(out, *e)
		}
	}
	return out
}

// Close closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
