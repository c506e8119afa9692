package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Upload states.
const (
	uploadOpen      = "open"
	uploadStored    = "stored"
	uploadRefused   = "refused"
	uploadAbandoned = "abandoned"
)

// upload is the persisted state of one upload.
type upload = store.EvidenceUpload

func (s *Service) getUpload(ctx context.Context, id string) (*upload, error) {
	return s.t.GetUpload(ctx, id)
}

func (s *Service) putUpload(ctx context.Context, u *upload) error { return s.t.PutUpload(ctx, u) }

func (s *Service) checkpointUpload(ctx context.Context, id string, committed int64, state []byte, staging store.UploadStaging, now time.Time) error {
	return s.t.CheckpointUpload(ctx, id, committed, state, staging, now)
}

func (s *Service) setUploadState(ctx context.Context, id, state, evidenceID string) error {
	return s.t.SetUploadState(ctx, id, state, evidenceID, s.cfg.Clock())
}

func (s *Service) openUploads(ctx context.Context) ([]*upload, error) {
	return s.t.UploadsIn(ctx, uploadOpen)
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

// itemOf is a stored item in this package's terms: its bundle summary
// read.
func itemOf(si *store.EvidenceItem) (*Item, error) {
	it := &Item{ID: si.ID, UploadID: si.UploadID, TaskID: si.TaskID, RunID: si.RunID, CaseID: si.CaseID, Operator: si.Operator,
		AgentID: si.AgentID, CertSerial: si.CertSerial, CertFingerprint: si.CertFingerprint, Hostname: si.Hostname, Name: si.Name,
		MediaType: si.MediaType, Size: si.Size, SHA256: si.SHA256, Backend: si.Backend, Location: si.Location,
		StartedAt: si.StartedAt, FinishedAt: si.FinishedAt, StoredAt: si.StoredAt, RetainUntil: si.RetainUntil,
		Resumes: si.Resumes, LastVerifiedAt: si.LastVerifiedAt, LastVerdict: si.LastVerdict}
	if b := string(si.BundleJSON); b != "" && b != "null" {
		it.Bundle = &BundleSummary{}
		if err := json.Unmarshal(si.BundleJSON, it.Bundle); err != nil {
			return nil, fmt.Errorf("evidence %s: the stored bundle summary is not valid: %w", it.ID, err)
		}
	}
	return it, nil
}

// GetItem returns one item or store.ErrNotFound.
func (s *Service) GetItem(ctx context.Context, id string) (*Item, error) {
	si, err := s.t.GetEvidence(ctx, id)
	if err != nil {
		return nil, err
	}
	return itemOf(si)
}

// TaskEvidenceIDs returns the ids of the items stored for a task, oldest
// first.
func (s *Service) TaskEvidenceIDs(ctx context.Context, taskID string) ([]string, error) {
	return s.t.TaskEvidenceIDs(ctx, taskID)
}

// Filter narrows ListItems; empty fields match everything.
type Filter struct {
	RunID, TaskID, CaseID, AgentID string
	// Limit caps the result (default 100).
	Limit int
}

// ListItems returns items, newest first.
func (s *Service) ListItems(ctx context.Context, f Filter) ([]*Item, error) {
	sis, err := s.t.ListEvidence(ctx, store.EvidenceFilter{RunID: f.RunID, TaskID: f.TaskID, CaseID: f.CaseID, AgentID: f.AgentID,
		Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	var out []*Item
	for _, si := range sis {
		it, err := itemOf(si)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// allItemIDs returns every item id, oldest first.
func (s *Service) allItemIDs(ctx context.Context) ([]string, error) { return s.t.AllEvidenceIDs(ctx) }

func (s *Service) setVerified(ctx context.Context, id string, at time.Time, v operatorv1.EvidenceVerdict) error {
	return s.t.SetEvidenceVerified(ctx, id, at, v)
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
	return s.t.InsertEvidence(ctx, &store.EvidenceItem{ID: it.ID, UploadID: it.UploadID, TaskID: it.TaskID, RunID: it.RunID,
		CaseID: it.CaseID, Operator: it.Operator, AgentID: it.AgentID, CertSerial: it.CertSerial, CertFingerprint: it.CertFingerprint,
		Hostname: it.Hostname, Name: it.Name, MediaType: it.MediaType, Size: it.Size, SHA256: it.SHA256, Backend: it.Backend,
		Location: it.Location, StartedAt: it.StartedAt, FinishedAt: it.FinishedAt, StoredAt: it.StoredAt, RetainUntil: it.RetainUntil,
		BundleJSON: bundleJSON, Resumes: it.Resumes}, first)
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
	o, err := s.t.TaskOwnerOf(ctx, taskID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTaskUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("looking up task %s: %w", taskID, err)
	}
	t := &taskInfo{ID: taskID, RunID: o.RunID, AgentID: o.AgentID, Hostname: o.Hostname, CaseID: o.CaseID, Operator: o.CreatedBy,
		Status: o.Status}
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
