package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The evidence tables. Items and custody entries are append-only for the
// application; what a database administrator changes by hand is caught by
// the custody hash chain. The names are those the evidence package
// registered before the tables moved here.
func init() {
	for i, m := range []migration{
		{sql: `CREATE TABLE evidence_uploads (
			id TEXT PRIMARY KEY, task_id TEXT NOT NULL, name TEXT NOT NULL, media_type TEXT NOT NULL,
			agent_id TEXT NOT NULL, run_id TEXT NOT NULL, committed BIGINT NOT NULL, hash_state BLOB NOT NULL,
			opens INTEGER NOT NULL, state TEXT NOT NULL, evidence_id TEXT NOT NULL,
			created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`},
		{sql: `CREATE INDEX evidence_uploads_state ON evidence_uploads (state)`},
		{sql: `CREATE TABLE evidence (
			id TEXT PRIMARY KEY, upload_id TEXT NOT NULL UNIQUE, task_id TEXT NOT NULL, run_id TEXT NOT NULL,
			case_id TEXT NOT NULL, operator TEXT NOT NULL, agent_id TEXT NOT NULL, cert_serial TEXT NOT NULL,
			cert_fingerprint TEXT NOT NULL, hostname TEXT NOT NULL, name TEXT NOT NULL, media_type TEXT NOT NULL,
			size BIGINT NOT NULL, sha256 TEXT NOT NULL, backend TEXT NOT NULL, location TEXT NOT NULL,
			started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL, stored_at BIGINT NOT NULL, retain_until BIGINT NOT NULL,
			bundle_json TEXT NOT NULL, resumes INTEGER NOT NULL,
			last_verified_at BIGINT NOT NULL DEFAULT 0, last_verdict INTEGER NOT NULL DEFAULT 0)`},
		{sql: `CREATE INDEX evidence_stored ON evidence (stored_at)`},
		{sql: `CREATE INDEX evidence_run ON evidence (run_id)`},
		{sql: `CREATE INDEX evidence_task ON evidence (task_id)`},
		{sql: `CREATE INDEX evidence_case ON evidence (case_id)`},
		// Only the last verification may change on an item.
		refuseTrigger("evidence_fixed", `UPDATE OF id, upload_id, task_id, run_id, case_id, operator, agent_id, cert_serial,
			cert_fingerprint, hostname, name, media_type, size, sha256, backend, location, started_at, finished_at, stored_at,
			retain_until, bundle_json, resumes`, "evidence", "an evidence record cannot be changed"),
		refuseTrigger("evidence_no_delete", "DELETE", "evidence", "evidence records cannot be deleted"),
		{sql: `CREATE TABLE evidence_custody (
			evidence_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
			detail_json TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (evidence_id, seq))`},
		refuseTrigger("evidence_custody_no_update", "UPDATE", "evidence_custody", "the custody record is append-only"),
		refuseTrigger("evidence_custody_no_delete", "DELETE", "evidence_custody", "the custody record is append-only"),
		// evidence-013 to 015: an upload staged by the backend itself (an S3
		// multipart upload) so that any controller can resume it.
		{sql: `ALTER TABLE evidence_uploads ADD COLUMN staging_multipart_id TEXT NOT NULL DEFAULT ''`},
		{sql: `ALTER TABLE evidence_uploads ADD COLUMN staging_parts TEXT NOT NULL DEFAULT '[]'`},
		{sql: `ALTER TABLE evidence_uploads ADD COLUMN staging_seal TEXT NOT NULL DEFAULT ''`},
	} {
		m.name = fmt.Sprintf("evidence-%03d", i+1)
		registerMigration(m)
	}
}

// EvidenceUpload is the persisted state of one evidence upload.
type EvidenceUpload struct {
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
	// Staging is the backend's staging of the upload; zero when the upload
	// is staged in the controller's staging directory.
	Staging UploadStaging
}

// UploadStaging is an upload staged in the evidence backend (an S3
// multipart upload): what was sent, part by part, up to the committed
// offset.
type UploadStaging struct {
	// MultipartID is the backend's id of the multipart upload.
	MultipartID string
	// Parts are the parts sent, in order; their sizes add up to the
	// committed offset.
	Parts []StagedPart
	// Seal is the evidence service's signature over the upload's committed
	// offset, hash state and parts, so a resume trusts none of them unless
	// a controller of the cluster wrote them.
	Seal string
}

// StagedPart is one part of an upload staged in the backend.
type StagedPart struct {
	// Number is the part's number, from 1.
	Number int32 `json:"number"`
	// ETag is the backend's entity tag of the part.
	ETag string `json:"etag"`
	// Size is the part's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the part's SHA-256, base64-encoded as S3 takes it.
	SHA256 string `json:"sha256"`
}

// EvidenceItem is one stored evidence item; the evidence package reads
// BundleJSON.
type EvidenceItem struct {
	ID, UploadID, TaskID, RunID, CaseID, Operator, AgentID string
	CertSerial, CertFingerprint, Hostname, Name, MediaType string
	Size                                                   int64
	SHA256, Backend, Location                              string
	StartedAt, FinishedAt, StoredAt, RetainUntil           time.Time
	// BundleJSON is the bundle summary ("null": not a bundle).
	BundleJSON     []byte
	Resumes        int
	LastVerifiedAt time.Time
	LastVerdict    operatorv1.EvidenceVerdict
}

// CustodyEntry is one entry of an evidence item's chain of custody.
type CustodyEntry struct {
	EvidenceID string
	Seq        int64
	At         time.Time
	Actor      string
	Action     string
	Detail     json.RawMessage
	PrevHash   string
	Hash       string
}

// CustodyHash is an entry's hash over its fields and the previous entry's
// hash. The fields are JSON-encoded as one array, so no two different
// entries encode the same way.
func CustodyHash(e *CustodyEntry) string {
	detail := e.Detail
	if len(detail) == 0 {
		detail = json.RawMessage("{}")
	}
	b, _ := json.Marshal([]any{e.EvidenceID, e.Seq, e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, detail, e.PrevHash})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EvidenceFilter narrows ListEvidence; empty fields match everything.
type EvidenceFilter struct {
	RunID, TaskID, CaseID, AgentID string
	Limit                          int
}

// TaskOwner is what an upload needs to know about a stored task and its run.
type TaskOwner struct {
	RunID, AgentID, Hostname string
	Status                   agentv1.TaskStatus
	// CaseID and CreatedBy are the run's.
	CaseID, CreatedBy string
}

const uploadCols = `id, task_id, name, media_type, agent_id, run_id, committed, hash_state, opens, state, evidence_id, created_at, updated_at,
	staging_multipart_id, staging_parts, staging_seal`

func scanUpload(sc scanner) (*EvidenceUpload, error) {
	var u EvidenceUpload
	var created, updated int64
	var parts string
	if err := sc.Scan(&u.ID, &u.TaskID, &u.Name, &u.MediaType, &u.AgentID, &u.RunID, &u.Committed, &u.HashState, &u.Opens,
		&u.State, &u.EvidenceID, &created, &updated, &u.Staging.MultipartID, &parts, &u.Staging.Seal); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt = tm(created), tm(updated)
	if err := json.Unmarshal([]byte(parts), &u.Staging.Parts); err != nil {
		return nil, fmt.Errorf("upload %s: the staged parts are not valid JSON: %w", u.ID, err)
	}
	return &u, nil
}

func partsJSON(parts []StagedPart) string {
	if len(parts) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(parts)
	return string(b)
}

// GetUpload returns one upload or ErrNotFound. It reads through the
// writer, so it sees the upload's last checkpoint.
func (s *SQL) GetUpload(ctx context.Context, id string) (*EvidenceUpload, error) {
	u, err := scanUpload(s.w.QueryRowContext(ctx, `SELECT `+uploadCols+` FROM evidence_uploads WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return u, err
}

// PutUpload inserts an upload or stores its mutable fields.
func (s *SQL) PutUpload(ctx context.Context, u *EvidenceUpload) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO evidence_uploads (`+uploadCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET committed = excluded.committed, hash_state = excluded.hash_state, opens = excluded.opens,
		state = excluded.state, evidence_id = excluded.evidence_id, media_type = excluded.media_type, updated_at = excluded.updated_at,
		staging_multipart_id = excluded.staging_multipart_id, staging_parts = excluded.staging_parts, staging_seal = excluded.staging_seal`,
		u.ID, u.TaskID, u.Name, u.MediaType, u.AgentID, u.RunID, u.Committed, u.HashState, u.Opens, u.State, u.EvidenceID,
		ns(u.CreatedAt), ns(u.UpdatedAt), u.Staging.MultipartID, partsJSON(u.Staging.Parts), u.Staging.Seal)
	return err
}

// CheckpointUpload records how much of an upload is committed, its hash
// state and, for an upload the backend stages, its staging.
func (s *SQL) CheckpointUpload(ctx context.Context, id string, committed int64, state []byte, staging UploadStaging, now time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence_uploads SET committed = ?, hash_state = ?, staging_multipart_id = ?, staging_parts = ?,
		staging_seal = ?, updated_at = ? WHERE id = ?`,
		committed, state, staging.MultipartID, partsJSON(staging.Parts), staging.Seal, ns(now), id)
	return err
}

// SetUploadState sets an upload's state and the item it stored.
func (s *SQL) SetUploadState(ctx context.Context, id, state, evidenceID string, now time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence_uploads SET state = ?, evidence_id = ?, updated_at = ? WHERE id = ?`,
		state, evidenceID, ns(now), id)
	return err
}

// UploadsIn returns the uploads in a state.
func (s *SQL) UploadsIn(ctx context.Context, state string) ([]*EvidenceUpload, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+uploadCols+` FROM evidence_uploads WHERE state = ?`, state)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*EvidenceUpload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

const itemCols = `id, upload_id, task_id, run_id, case_id, operator, agent_id, cert_serial, cert_fingerprint, hostname, name,
	media_type, size, sha256, backend, location, started_at, finished_at, stored_at, retain_until, bundle_json, resumes,
	last_verified_at, last_verdict`

func scanItem(sc scanner) (*EvidenceItem, error) {
	var it EvidenceItem
	var started, finished, stored, retain, verified int64
	var bundleJSON string
	var verdict int32
	if err := sc.Scan(&it.ID, &it.UploadID, &it.TaskID, &it.RunID, &it.CaseID, &it.Operator, &it.AgentID, &it.CertSerial,
		&it.CertFingerprint, &it.Hostname, &it.Name, &it.MediaType, &it.Size, &it.SHA256, &it.Backend, &it.Location,
		&started, &finished, &stored, &retain, &bundleJSON, &it.Resumes, &verified, &verdict); err != nil {
		return nil, err
	}
	it.StartedAt, it.FinishedAt, it.StoredAt, it.RetainUntil, it.LastVerifiedAt = tm(started), tm(finished), tm(stored), tm(retain), tm(verified)
	it.LastVerdict, it.BundleJSON = operatorv1.EvidenceVerdict(verdict), []byte(bundleJSON)
	return &it, nil
}

// GetEvidence returns one item or ErrNotFound.
func (s *SQL) GetEvidence(ctx context.Context, id string) (*EvidenceItem, error) {
	it, err := scanItem(s.r.QueryRowContext(ctx, `SELECT `+itemCols+` FROM evidence WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return it, err
}

// ListEvidence returns items, newest first (Limit defaults to 100).
func (s *SQL) ListEvidence(ctx context.Context, f EvidenceFilter) ([]*EvidenceItem, error) {
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
	return queryAll(ctx, s.r, q, args, scanItem)
}

// TaskEvidenceIDs returns the ids of the items stored for a task, oldest
// first.
func (s *SQL) TaskEvidenceIDs(ctx context.Context, taskID string) ([]string, error) {
	return s.itemIDs(ctx, `SELECT id FROM evidence WHERE task_id = ? ORDER BY stored_at, id`, taskID)
}

// AllEvidenceIDs returns every item id, oldest first.
func (s *SQL) AllEvidenceIDs(ctx context.Context) ([]string, error) {
	return s.itemIDs(ctx, `SELECT id FROM evidence ORDER BY stored_at, id`)
}

func (s *SQL) itemIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	return queryStrings(ctx, s.r, query, args...)
}

// SetEvidenceVerified records an item's last verification.
func (s *SQL) SetEvidenceVerified(ctx context.Context, id string, at time.Time, v operatorv1.EvidenceVerdict) error {
	_, err := s.w.ExecContext(ctx, `UPDATE evidence SET last_verified_at = ?, last_verdict = ? WHERE id = ?`, ns(at), int32(v), id)
	return err
}

// InsertEvidence stores a new item with its first custody entry (see
// AppendCustody), and marks its upload stored, in one transaction.
func (s *SQL) InsertEvidence(ctx context.Context, it *EvidenceItem, first *CustodyEntry) error {
	return s.chainTx(ctx, CustodyChain(it.ID), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO evidence (`+itemCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			it.ID, it.UploadID, it.TaskID, it.RunID, it.CaseID, it.Operator, it.AgentID, it.CertSerial, it.CertFingerprint, it.Hostname,
			it.Name, it.MediaType, it.Size, it.SHA256, it.Backend, it.Location, ns(it.StartedAt), ns(it.FinishedAt), ns(it.StoredAt),
			ns(it.RetainUntil), string(it.BundleJSON), it.Resumes, 0, 0); err != nil {
			return fmt.Errorf("recording evidence %s: %w", it.ID, err)
		}
		if err := appendCustodyTx(ctx, tx, s.CheckpointKey(), first); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE evidence_uploads SET state = ?, evidence_id = ?, updated_at = ? WHERE id = ?`,
			"stored", it.ID, ns(it.StoredAt), it.UploadID); err != nil {
			return err
		}
		return nil
	})
}

// AppendCustody appends an entry to an item's custody record, filling
// Seq, PrevHash and Hash (and compacting Detail), and with a checkpoint
// key signs the item's new custody head in the same transaction. Appends
// to one item follow one another under its custody chain's lock (see
// chainTxOn; on SQLite the one writer), so the chain cannot fork.
func (s *SQL) AppendCustody(ctx context.Context, e *CustodyEntry) error {
	return s.chainTx(ctx, CustodyChain(e.EvidenceID), func(tx *sql.Tx) error { return appendCustodyTx(ctx, tx, s.CheckpointKey(), e) })
}

func appendCustodyTx(ctx context.Context, tx *sql.Tx, k *CheckpointKey, e *CustodyEntry) error {
	if len(e.Detail) == 0 {
		e.Detail = json.RawMessage("{}")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, e.Detail); err != nil {
		return fmt.Errorf("custody detail is not JSON: %w", err)
	}
	e.Detail = compact.Bytes()
	prev := GenesisHash
	var seq int64
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM evidence_custody WHERE evidence_id = ? ORDER BY seq DESC LIMIT 1`, e.EvidenceID).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	e.Seq, e.PrevHash, e.At = seq+1, prev, e.At.UTC()
	e.Hash = CustodyHash(e)
	if _, err = tx.ExecContext(ctx, `INSERT INTO evidence_custody (evidence_id, seq, at, actor, action, detail_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.EvidenceID, e.Seq, ns(e.At), e.Actor, e.Action, string(e.Detail), e.PrevHash, e.Hash); err != nil {
		return err
	}
	if k == nil {
		return nil
	}
	hashAt := func(n int64) (string, error) {
		var h string
		err := tx.QueryRowContext(ctx, `SELECT hash FROM evidence_custody WHERE evidence_id = ? AND seq = ?`, e.EvidenceID, n).Scan(&h)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return h, err
	}
	_, _, err = WriteCheckpointTx(ctx, tx, k, CustodyChain(e.EvidenceID), e.Seq, e.Hash, e.At, hashAt, nil)
	return err
}

// Custody returns an item's custody entries in order.
func (s *SQL) Custody(ctx context.Context, evidenceID string) ([]*CustodyEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, at, actor, action, detail_json, prev_hash, hash FROM evidence_custody WHERE evidence_id = ? ORDER BY seq`, evidenceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*CustodyEntry
	for rows.Next() {
		e := &CustodyEntry{EvidenceID: evidenceID}
		var at int64
		var detail string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &detail, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At, e.Detail = tm(at), json.RawMessage(detail)
		out = append(out, e)
	}
	return out, rows.Err()
}

// TaskOwnerOf reads a stored task and its run, or returns ErrNotFound.
func (s *SQL) TaskOwnerOf(ctx context.Context, taskID string) (*TaskOwner, error) {
	var t TaskOwner
	var st int32
	err := s.r.QueryRowContext(ctx, `SELECT t.run_id, t.agent_id, t.hostname, t.status, r.case_id, r.created_by
		FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.id = ?`, taskID).Scan(&t.RunID, &t.AgentID, &t.Hostname, &st, &t.CaseID, &t.CreatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	t.Status = agentv1.TaskStatus(st)
	return &t, nil
}

// CustodyCheckpoint returns the newest signed checkpoint of an item's
// custody head, or nil when none is stored.
func (s *SQL) CustodyCheckpoint(ctx context.Context, evidenceID string) (*Checkpoint, error) {
	return ReadCheckpoint(ctx, s.r, CustodyChain(evidenceID))
}
