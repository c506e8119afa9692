package evidence

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The evidence tables. Items and custody entries are append-only for the
// application; what a database administrator changes by hand is caught by
// the custody hash chain.
func init() {
	for i, stmt := range []string{
		`CREATE TABLE evidence_uploads (
			id TEXT PRIMARY KEY, task_id TEXT NOT NULL, name TEXT NOT NULL, media_type TEXT NOT NULL,
			agent_id TEXT NOT NULL, run_id TEXT NOT NULL, committed BIGINT NOT NULL, hash_state BLOB NOT NULL,
			opens INTEGER NOT NULL, state TEXT NOT NULL, evidence_id TEXT NOT NULL,
			created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE INDEX evidence_uploads_state ON evidence_uploads (state)`,
		`CREATE TABLE evidence (
			id TEXT PRIMARY KEY, upload_id TEXT NOT NULL UNIQUE, task_id TEXT NOT NULL, run_id TEXT NOT NULL,
			case_id TEXT NOT NULL, operator TEXT NOT NULL, agent_id TEXT NOT NULL, cert_serial TEXT NOT NULL,
			cert_fingerprint TEXT NOT NULL, hostname TEXT NOT NULL, name TEXT NOT NULL, media_type TEXT NOT NULL,
			size BIGINT NOT NULL, sha256 TEXT NOT NULL, backend TEXT NOT NULL, location TEXT NOT NULL,
			started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL, stored_at BIGINT NOT NULL, retain_until BIGINT NOT NULL,
			bundle_json TEXT NOT NULL, resumes INTEGER NOT NULL,
			last_verified_at BIGINT NOT NULL DEFAULT 0, last_verdict INTEGER NOT NULL DEFAULT 0)`,
		`CREATE INDEX evidence_stored ON evidence (stored_at)`,
		`CREATE INDEX evidence_run ON evidence (run_id)`,
		`CREATE INDEX evidence_task ON evidence (task_id)`,
		`CREATE INDEX evidence_case ON evidence (case_id)`,
		// Only the last verification may change on an item.
		`CREATE TRIGGER evidence_fixed BEFORE UPDATE OF id, upload_id, task_id, run_id, case_id, operator, agent_id, cert_serial,
			cert_fingerprint, hostname, name, media_type, size, sha256, backend, location, started_at, finished_at, stored_at,
			retain_until, bundle_json, resumes ON evidence
			BEGIN SELECT RAISE(ABORT, 'an evidence record cannot be changed'); END`,
		`CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence BEGIN SELECT RAISE(ABORT, 'evidence records cannot be deleted'); END`,
		`CREATE TABLE evidence_custody (
			evidence_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
			detail_json TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (evidence_id, seq))`,
		`CREATE TRIGGER evidence_custody_no_update BEFORE UPDATE ON evidence_custody BEGIN SELECT RAISE(ABORT, 'the custody record is append-only'); END`,
		`CREATE TRIGGER evidence_custody_no_delete BEFORE DELETE ON evidence_custody BEGIN SELECT RAISE(ABORT, 'the custody record is append-only'); END`,
	} {
		store.RegisterMigration(fmt.Sprintf("evidence-%03d", i+1), stmt)
	}
}

// Upload states.
const (
	uploadOpen      = "open"
	uploadStored    = "stored"
	uploadRefused   = "refused"
	uploadAbandoned = "abandoned"
)

// upload is the persisted state of one upload.
type upload struct {
	ID         string
	TaskID     string
	Name       string
	MediaType  string
	AgentID    string
	RunID      string
	Committed  int64
	HashState  []byte
	Opens      int
	State      string
	EvidenceID string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

const uploadCols = `id, task_id, name, media_type, agent_id, run_id, committed, hash_state, opens, state, evidence_id, created_at, updated_at`

func scanUpload(sc interface{ Scan(...any) error }) (*upload, error) {
	var u upload
	var created, updated int64
	if err := sc.Scan(&u.ID, &u.TaskID, &u.Name, &u.MediaType, &u.AgentID, &u.RunID, &u.Committed, &u.HashState, &u.Opens,
		&u.State, &u.EvidenceID, &created, &updated); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt = tm(created), tm(updated)
	return &u, nil
}

func (s *Service) getUpload(ctx context.Context, id string) (*upload, error) {
	u, err := scanUpload(s.w.QueryRowContext(ctx, `SELECT `+uploadCols+` FROM evidence_uploads WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return u, err
}

func (s *Service) putUpload(ctx context.Context, u *upload) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO evidence_uploads (`+uploadCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET committed = excluded.committed, hash_state = excluded.hash_state, opens = excluded.opens,
		state = excluded.state, evidence_id = excluded.evidence_id, media_type = excluded.media_type, updated_at = excluded.updated_at`,
		u.ID, u.TaskID, u.Name, u.MediaType, u.AgentID, u.RunID, u.Committed, u.HashState, u.Opens, u.State, u.EvidenceID,
		ns(u.CreatedAt), ns(u.UpdatedAt))
	return err
}

func (s *Service) checkpointUpload(ctx context.Context, id string, committed int64, state []byte, now time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence_uploads SET committed = ?, hash_state = ?, updated_at = ? WHERE id = ?`,
		committed, state, ns(now), id)
	return err
}

func (s *Service) setUploadState(ctx context.Context, id, state, evidenceID string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence_uploads SET state = ?, evidence_id = ?, updated_at = ? WHERE id = ?`,
		state, evidenceID, ns(s.cfg.Clock()), id)
	return err
}

func (s *Service) openUploads(ctx context.Context) ([]*upload, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+uploadCols+` FROM evidence_uploads WHERE state = ?`, uploadOpen)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Item is one stored evidence item.
type Item struct {
	ID              string
	UploadID        string
	TaskID          string
	RunID           string
	CaseID          string
	Operator        string
	AgentID         string
	CertSerial      string
	CertFingerprint string
	Hostname        string
	Name            string
	MediaType       string
	Size            int64
	SHA256          string
	Backend         string
	Location        string
	StartedAt       time.Time
	FinishedAt      time.Time
	StoredAt        time.Time
	RetainUntil     time.Time
	// Bundle is the manifest summary, nil for an item that is not a bundle.
	Bundle         *BundleSummary
	Resumes        int
	LastVerifiedAt time.Time
	LastVerdict    operatorv1.EvidenceVerdict
}

// BundleSummary is what the controller keeps of a bundle's manifest.
type BundleSummary struct {
	Valid            bool             `json:"valid"`
	Problem          string           `json:"problem,omitempty"`
	CollectorName    string           `json:"collector_name,omitempty"`
	CollectorVersion string           `json:"collector_version,omitempty"`
	Profile          string           `json:"profile,omitempty"`
	Compression      string           `json:"compression,omitempty"`
	Members          int              `json:"members"`
	PayloadBytes     int64            `json:"payload_bytes"`
	Truncated        bool             `json:"truncated,omitempty"`
	TruncatedReasons []string         `json:"truncated_reasons,omitempty"`
	Artifacts        []ArtifactStatus `json:"artifacts,omitempty"`
	Host             HostIdentity     `json:"host"`
	ManifestTaskID   string           `json:"manifest_task_id,omitempty"`
}

// ArtifactStatus is one artifact's outcome in a bundle.
type ArtifactStatus struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	Items     int64  `json:"items"`
	Files     int64  `json:"files"`
	Bytes     int64  `json:"bytes"`
	Skipped   int64  `json:"skipped"`
	Truncated bool   `json:"truncated,omitempty"`
}

// HostIdentity is the host a bundle's manifest names.
type HostIdentity struct {
	Hostname   string   `json:"hostname,omitempty"`
	AgentID    string   `json:"agent_id,omitempty"`
	InstanceID string   `json:"instance_id,omitempty"`
	BootID     string   `json:"boot_id,omitempty"`
	MachineID  string   `json:"machine_id,omitempty"`
	Kernel     string   `json:"kernel,omitempty"`
	Addresses  []string `json:"addresses,omitempty"`
}

const itemCols = `id, upload_id, task_id, run_id, case_id, operator, agent_id, cert_serial, cert_fingerprint, hostname, name,
	media_type, size, sha256, backend, location, started_at, finished_at, stored_at, retain_until, bundle_json, resumes,
	last_verified_at, last_verdict`

func scanItem(sc interface{ Scan(...any) error }) (*Item, error) {
	var it Item
	var started, finished, stored, retain, verified int64
	var bundleJSON string
	var verdict int32
	if err := sc.Scan(&it.ID, &it.UploadID, &it.TaskID, &it.RunID, &it.CaseID, &it.Operator, &it.AgentID, &it.CertSerial,
		&it.CertFingerprint, &it.Hostname, &it.Name, &it.MediaType, &it.Size, &it.SHA256, &it.Backend, &it.Location,
		&started, &finished, &stored, &retain, &bundleJSON, &it.Resumes, &verified, &verdict); err != nil {
		return nil, err
	}
	it.StartedAt, it.FinishedAt, it.StoredAt, it.RetainUntil, it.LastVerifiedAt = tm(started), tm(finished), tm(stored), tm(retain), tm(verified)
	it.LastVerdict = operatorv1.EvidenceVerdict(verdict)
	if bundleJSON != "" && bundleJSON != "null" {
		it.Bundle = &BundleSummary{}
		if err := json.Unmarshal([]byte(bundleJSON), it.Bundle); err != nil {
			return nil, fmt.Errorf("evidence %s: the stored bundle summary is not valid: %w", it.ID, err)
		}
	}
	return &it, nil
}

// GetItem returns one item or store.ErrNotFound.
func (s *Service) GetItem(ctx context.Context, id string) (*Item, error) {
	it, err := scanItem(s.r.QueryRowContext(ctx, `SELECT `+itemCols+` FROM evidence WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return it, err
}

// TaskEvidenceIDs returns the ids of the items stored for a task, oldest
// first.
func (s *Service) TaskEvidenceIDs(ctx context.Context, taskID string) ([]string, error) {
	return s.itemIDs(ctx, `SELECT id FROM evidence WHERE task_id = ? ORDER BY stored_at, id`, taskID)
}

// Filter narrows ListItems; empty fields match everything.
type Filter struct {
	RunID, TaskID, CaseID, AgentID string
	// Limit caps the result (default 100).
	Limit int
}

// ListItems returns items, newest first.
func (s *Service) ListItems(ctx context.Context, f Filter) ([]*Item, error) {
	var where []string
	var args []any
	for col, v := range map[string]string{"run_id": f.RunID, "task_id": f.TaskID, "case_id": f.CaseID, "agent_id": f.AgentID} {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	q := `SELECT ` + itemCols + ` FROM evidence`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY stored_at DESC, id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// allItemIDs returns every item id, oldest first.
func (s *Service) allItemIDs(ctx context.Context) ([]string, error) {
	return s.itemIDs(ctx, `SELECT id FROM evidence ORDER BY stored_at, id`)
}

// itemIDs runs a query that selects item ids.
func (s *Service) itemIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *Service) setVerified(ctx context.Context, id string, at time.Time, v operatorv1.EvidenceVerdict) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence SET last_verified_at = ?, last_verdict = ? WHERE id = ?`, ns(at), int32(v), id)
	return err
}

// insertItem stores a new item with its first custody entry, and marks its
// upload stored, in one transaction.
func (s *Service) insertItem(ctx context.Context, it *Item, first *CustodyEntry) error {
	bundleJSON := []byte("null")
	if it.Bundle != nil {
		var err error
		if bundleJSON, err = json.Marshal(it.Bundle); err != nil {
			return err
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO evidence (`+itemCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.ID, it.UploadID, it.TaskID, it.RunID, it.CaseID, it.Operator, it.AgentID, it.CertSerial, it.CertFingerprint, it.Hostname,
		it.Name, it.MediaType, it.Size, it.SHA256, it.Backend, it.Location, ns(it.StartedAt), ns(it.FinishedAt), ns(it.StoredAt),
		ns(it.RetainUntil), string(bundleJSON), it.Resumes, 0, 0); err != nil {
		return fmt.Errorf("recording evidence %s: %w", it.ID, err)
	}
	if err := appendCustodyTx(ctx, tx, s.db.CheckpointKey(), first); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE evidence_uploads SET state = ?, evidence_id = ?, updated_at = ? WHERE id = ?`,
		uploadStored, it.ID, ns(it.StoredAt), it.UploadID); err != nil {
		return err
	}
	return tx.Commit()
}

// taskInfo is what an upload needs to know about its task.
type taskInfo struct {
	ID       string
	RunID    string
	AgentID  string
	Hostname string
	CaseID   string
	Operator string
	Status   agentv1.TaskStatus
	open     bool
}

var errTaskUnknown = errors.New("task not known")

// lookupTask reads a task and its run from the store. A task the store
// still shows as pending may already be dispatched: the dispatcher persists
// after it pushes, so its live view settles that case.
func (s *Service) lookupTask(ctx context.Context, taskID string) (*taskInfo, error) {
	t := &taskInfo{ID: taskID}
	var st int32
	err := s.r.QueryRowContext(ctx, `SELECT t.run_id, t.agent_id, t.hostname, t.status, r.case_id, r.created_by
		FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.id = ?`, taskID).Scan(&t.RunID, &t.AgentID, &t.Hostname, &st, &t.CaseID, &t.Operator)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errTaskUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("looking up task %s: %w", taskID, err)
	}
	t.Status = agentv1.TaskStatus(st)
	if t.Status == agentv1.TaskStatus_TASK_STATUS_PENDING && s.cfg.Runs != nil {
		run, err := s.cfg.Runs.Snapshot(ctx, t.RunID)
		if err != nil {
			return nil, fmt.Errorf("reading the live state of run %s: %w", t.RunID, err)
		}
		if run != nil {
			for _, lt := range run.Tasks {
				if lt.ID == taskID {
					t.Status = lt.Status
				}
			}
		}
	}
	t.open = t.Status == agentv1.TaskStatus_TASK_STATUS_DISPATCHED || t.Status == agentv1.TaskStatus_TASK_STATUS_RUNNING
	return t, nil
}
