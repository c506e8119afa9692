// Package evidence is the controller's evidence store and chain of custody.
//
// Agents stream evidence on AgentService.UploadEvidence; the [Service]
// receives it (it is the fleet's EvidenceReceiver). An upload is staged in a
// partial file (local backend) or as an S3 multipart upload (S3 backend, a
// [StagingBackend]); its committed offset and SHA-256 state (and its S3
// parts) are persisted at checkpoints, so a dropped connection or a
// controller restart resumes where it stopped without re-reading what is
// already there, and with S3 on any controller of the cluster. Every chunk's hash
// and offset are checked; at the end the whole SHA-256 is checked, a bundle
// is verified member by member against its manifest, and the bytes are
// stored content-addressed by SHA-256 in a [Backend]: a local directory or
// S3 (with Object Lock retention and SSE-KMS).
//
// Each stored item starts a custody record: the task, run, case, operator,
// agent and its certificate, host identity, collection times, size, hash and
// location. Every later access through the operator API (download, export,
// verify) appends to it. The record is hash-chained per item, guarded by
// append-only triggers, and mirrored to the controller's audit log.
package evidence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Defaults for Config.
const (
	// DefaultMaxBytes caps one evidence item.
	DefaultMaxBytes = 64 << 30
	// DefaultMaxConcurrentUploads caps the uploads received at once.
	DefaultMaxConcurrentUploads = 64
	// DefaultCheckpointBytes is how much is received between checkpoints.
	// Agents keep at least twice this unacknowledged, so it must stay well
	// under their window.
	DefaultCheckpointBytes = 4 << 20
	// S3CheckpointBytes is how much is received between checkpoints of an
	// upload staged in S3: each checkpoint sends one part, and S3 takes
	// parts of MinPartBytes or more except the last. Agents keep twice this
	// unacknowledged (agent/evidence.go), and MaxParts of it bound an item.
	S3CheckpointBytes = 8 << 20
	// DefaultCheckpointInterval bounds the time between checkpoints of a
	// slow upload.
	DefaultCheckpointInterval = time.Second
	// MaxChunkBytes is the largest chunk an agent may send.
	MaxChunkBytes = 1 << 20
)

// RunSnapshotter returns the live state of an active run; the dispatcher
// provides it. It settles whether a task is open when the store has not yet
// caught up with the dispatcher.
type RunSnapshotter interface {
	Snapshot(ctx context.Context, runID string) (*dispatch.RunView, error)
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the service's dependencies.
type Config struct {
	// Store is the controller's store; it must also implement SQL.
	Store store.Store
	// Backend holds the stored bytes.
	Backend Backend
	// StagingDir holds partial uploads; it must be on a local filesystem
	// (and, for the local backend, the same one as the store directory, so
	// a finished upload is renamed rather than copied). With a backend
	// that stages uploads itself (S3) it holds only the bytes received
	// since an upload's last part.
	StagingDir string
	// Runs gives the live state of active runs (optional).
	Runs RunSnapshotter
	// Audit mirrors custody entries and refusals to the audit log.
	Audit AuditFunc
	// Logger logs; defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// MaxBytes caps one item (default DefaultMaxBytes).
	MaxBytes int64
	// MaxConcurrentUploads caps uploads received at once; more are told to
	// retry (default DefaultMaxConcurrentUploads).
	MaxConcurrentUploads int
	// CheckpointBytes and CheckpointInterval set how often an upload's
	// progress is made durable and acknowledged. An upload staged in S3 is
	// checkpointed every max(CheckpointBytes, S3CheckpointBytes) bytes,
	// and never by time (S3 takes no small parts).
	CheckpointBytes    int64
	CheckpointInterval time.Duration
	// JanitorInterval is how often partial uploads of closed tasks are
	// removed (default 10m).
	JanitorInterval time.Duration
}

// CheckAndSetDefaults names every missing dependency and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Store == nil {
		missing = append(missing, "Store")
	}
	if c.Backend == nil {
		missing = append(missing, "Backend")
	}
	if c.StagingDir == "" {
		missing = append(missing, "StagingDir")
	}
	if len(missing) > 0 {
		return fmt.Errorf("evidence: missing %s", strings.Join(missing, ", "))
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxConcurrentUploads <= 0 {
		c.MaxConcurrentUploads = DefaultMaxConcurrentUploads
	}
	if c.CheckpointBytes <= 0 {
		c.CheckpointBytes = DefaultCheckpointBytes
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.JanitorInterval <= 0 {
		c.JanitorInterval = 10 * time.Minute
	}
	return nil
}

// Service receives uploads from agents, keeps the evidence records and
// their custody, and serves operatorv1.EvidenceServiceServer.
type Service struct {
	operatorv1.UnimplementedEvidenceServiceServer
	cfg   Config
	t     store.Store
	slots chan struct{}
	// stg is the backend when it stages uploads itself, else nil.
	stg StagingBackend
	// partBytes is the checkpoint size of an upload staged in the backend.
	partBytes int64

	mu     sync.Mutex
	active map[string]*activeUpload
}

// New returns the evidence service. Its tables are the store's
// (store.EvidenceTables).
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("evidence: creating the staging directory: %w", err)
	}
	s := &Service{cfg: cfg, t: cfg.Store, slots: make(chan struct{}, cfg.MaxConcurrentUploads),
		active: map[string]*activeUpload{}}
	if stg, ok := cfg.Backend.(StagingBackend); ok {
		s.stg, s.partBytes = stg, max(cfg.CheckpointBytes, S3CheckpointBytes)
		if limit := s.partBytes * MaxParts; cfg.MaxBytes > limit {
			return nil, fmt.Errorf("evidence: --evidence-max-bytes %d is more than an upload staged in %s can hold (%d parts of %d bytes: %d bytes)",
				cfg.MaxBytes, cfg.Backend.Describe(), MaxParts, s.partBytes, limit)
		}
	}
	return s, nil
}

// Backend returns the evidence store backend.
func (s *Service) Backend() Backend { return s.cfg.Backend }

// Run removes the partial uploads of tasks that have closed, at start and
// then every JanitorInterval, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("removing abandoned evidence uploads failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep removes the staged bytes of uploads whose task can no longer
// upload: the agent cannot resume them, so they would only fill the disk,
// or, staged in S3, be billed for ever.
func (s *Service) sweep(ctx context.Context) error {
	ups, err := s.openUploads(ctx)
	if err != nil {
		return err
	}
	for _, u := range ups {
		s.mu.Lock()
		busy := s.active[u.ID] != nil
		s.mu.Unlock()
		if busy {
			continue
		}
		t, err := s.lookupTask(ctx, u.TaskID)
		if err != nil && !errors.Is(err, errTaskUnknown) {
			return err
		}
		if err == nil && t.open {
			continue
		}
		_ = os.Remove(s.partPath(u.ID))
		if s.stg != nil && u.Staging.MultipartID != "" {
			if err := s.stg.AbortStaging(ctx, u.ID, u.Staging.MultipartID); err != nil {
				// The upload stays open, so the next sweep tries again.
				s.cfg.Logger.Warn("aborting the staging of an abandoned evidence upload failed; retrying later", "upload", u.ID, "error", err)
				continue
			}
		}
		if err := s.setUploadState(ctx, u.ID, uploadAbandoned, ""); err != nil {
			return err
		}
		s.cfg.Audit(ctx, "system", "evidence.upload_abandoned", u.TaskID, map[string]any{"upload_id": u.ID, "name": u.Name,
			"agent": u.AgentID, "committed_bytes": u.Committed})
		s.cfg.Logger.Info("removed an abandoned evidence upload", "upload", u.ID, "task", u.TaskID, "committed", u.Committed)
	}
	return nil
}
