package evidence

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Protocol is the upload protocol this controller speaks: a CRC32C per
// chunk, and the whole artifact's SHA-256 at finish.
const Protocol = agentv1.UploadProtocol_UPLOAD_PROTOCOL_V2_CRC32C_CHUNKS

// castagnoli is the CRC32C table; hash/crc32 computes it with the CPU's
// CRC32 instructions where there are some (SSE 4.2, ARMv8).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// UploadID derives an upload's id from its task and artifact name, so the
// agent's next stream after a drop finds the same upload.
func UploadID(taskID, name string) string {
	sum := sha256.Sum256([]byte(taskID + "\x00" + name))
	return "upl-" + hex.EncodeToString(sum[:16])
}

func (s *Service) partPath(uploadID string) string {
	return filepath.Join(s.cfg.StagingDir, uploadID+".part")
}

// activeUpload marks an upload a stream is receiving.
type activeUpload struct {
	once      sync.Once
	supersede chan struct{}
	done      chan struct{}
}

func (a *activeUpload) stop() { a.once.Do(func() { close(a.supersede) }) }

// claim makes the calling stream the only one receiving an upload. A newer
// stream wins: the agent opens one after it lost the old, which may not
// have noticed yet.
func (s *Service) claim(ctx context.Context, id string) (release func(), superseded <-chan struct{}, err error) {
	for {
		s.mu.Lock()
		cur := s.active[id]
		if cur == nil {
			a := &activeUpload{supersede: make(chan struct{}), done: make(chan struct{})}
			s.active[id] = a
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.active, id)
				s.mu.Unlock()
				close(a.done)
			}, a.supersede, nil
		}
		cur.stop()
		s.mu.Unlock()
		select {
		case <-cur.done:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return nil, nil, status.Error(codes.Unavailable, "an earlier stream of this upload has not ended yet; retry shortly")
		}
	}
}

// receiving is one stream's view of an upload.
type receiving struct {
	up    *upload
	task  *taskInfo
	agent *store.Agent
	id    pki.Identity

	f         *os.File
	h         hash.Hash
	received  int64
	committed int64
	lastSync  time.Time
	// inBackend is set when the bytes already reached the backend before a
	// crash, and only the record is missing.
	inBackend bool
	// stored is the item when the upload was already stored.
	stored *Item
	// stg is the backend's staging when it stages the upload (S3); f then
	// holds only the bytes since the last part, and ph hashes them.
	stg StagingBackend
	ph  hash.Hash
}

func (r *receiving) close() {
	if r.f != nil {
		r.f.Close()
	}
}

// Receive implements fleet.EvidenceReceiver. The fleet has authenticated
// the agent; Receive checks that the task is the agent's and still open,
// then follows the UploadEvidence flow.
func (s *Service) Receive(a *store.Agent, id pki.Identity, stream agentv1.AgentService_UploadEvidenceServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "the first message of UploadEvidence must be open")
	}
	if err := checkProtocol(open.GetProtocol()); err != nil {
		s.cfg.Logger.Warn("evidence upload refused: the agent speaks another upload protocol", "agent", a.ID, "task", open.GetTaskId(),
			"protocol", open.GetProtocol().String())
		return err
	}
	if err := checkOpen(open); err != nil {
		return status.Errorf(codes.InvalidArgument, "upload refused: %v", err)
	}
	task, err := s.lookupTask(ctx, open.GetTaskId())
	if errors.Is(err, errTaskUnknown) {
		return status.Errorf(codes.NotFound, "upload refused: task %s is not known to this controller", open.GetTaskId())
	}
	if err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "upload")
	}
	// Security-critical: evidence is accepted only from the agent the task
	// was dispatched to, so no agent can plant evidence in another host's
	// task.
	if task.AgentID != a.ID {
		s.cfg.Audit(ctx, "agent:"+a.ID, "evidence.upload_refused", task.ID, map[string]string{"name": open.GetName(),
			"reason": "the task was dispatched to " + task.AgentID})
		return status.Errorf(codes.PermissionDenied, "upload refused: task %s was not dispatched to agent %s", task.ID, a.ID)
	}
	// Security-critical: a task that has ended takes no more evidence.
	if !task.open {
		return status.Errorf(codes.FailedPrecondition, "upload refused: task %s is %s; evidence is accepted only while its task is dispatched or running",
			task.ID, apiview.EnumName(task.Status))
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return status.Errorf(codes.Unavailable, "the controller is receiving %d uploads already; retry shortly", s.cfg.MaxConcurrentUploads)
	}
	upID := UploadID(task.ID, open.GetName())
	release, superseded, err := s.claim(ctx, upID)
	if err != nil {
		return err
	}
	defer release()
	r, err := s.resume(ctx, upID, task, a, id, open)
	if err != nil {
		return err
	}
	defer r.close()
	ctx, span := telemetry.Tracer().Start(ctx, "evidence.receive", trace.WithAttributes(telemetry.AttrTaskID.String(task.ID),
		telemetry.AttrAgentID.String(a.ID), attribute.String("firebreak.evidence.name", open.GetName()), telemetry.AttrResumes.Int(r.up.Opens-1)))
	defer span.End()
	from := r.received
	if err := stream.Send(&agentv1.UploadEvidenceResponse{Msg: &agentv1.UploadEvidenceResponse_Opened{Opened: &agentv1.EvidenceOpened{
		UploadId: upID, CommittedOffset: uint64(r.committed), Protocol: Protocol}}}); err != nil {
		return err
	}
	err = s.receive(ctx, r, stream, superseded)
	span.SetAttributes(telemetry.AttrBytes.Int64(r.received - from))
	telemetry.EvidenceReceived(r.received-from, err)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	if r.stored == nil && r.up.State == uploadOpen {
		// What arrived intact is kept, whatever ended the stream, so the
		// next stream resumes after it.
		if cerr := s.checkpoint(context.WithoutCancel(ctx), r, false); cerr != nil {
			s.cfg.Logger.Warn("checkpointing an interrupted upload failed", "upload", upID, "error", cerr)
		}
	}
	return err
}

// checkProtocol refuses an agent that speaks another upload protocol than
// this controller's: its chunks would not carry the check this controller
// makes.
func checkProtocol(p agentv1.UploadProtocol) error {
	if p == Protocol {
		return nil
	}
	var spoken string
	switch p {
	case agentv1.UploadProtocol_UPLOAD_PROTOCOL_UNSPECIFIED:
		spoken = "upload protocol 1 (a SHA-256 per chunk; it states no version)"
	case agentv1.UploadProtocol_UPLOAD_PROTOCOL_V1_SHA256_CHUNKS:
		spoken = "upload protocol 1 (a SHA-256 per chunk)"
	default:
		spoken = fmt.Sprintf("upload protocol %d (unknown to this controller)", int32(p))
	}
	return status.Errorf(codes.FailedPrecondition, "upload refused: the agent speaks %s, but this controller speaks upload protocol %d only (a CRC32C per chunk): upgrade the agent",
		spoken, int32(Protocol))
}

// checkOpen refuses names and media types that could not be shown or
// stored safely.
func checkOpen(o *agentv1.EvidenceOpen) error {
	if o.GetTaskId() == "" || len(o.GetTaskId()) > 64 {
		return errors.New("no valid task_id")
	}
	name := o.GetName()
	if name == "" || len(name) > 200 || !utf8.ValidString(name) || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return fmt.Errorf("artifact name %q is not valid (1-200 characters, no slashes)", name)
	}
	for _, c := range name + o.GetMediaType() {
		if unicode.IsControl(c) {
			return fmt.Errorf("artifact name or media type holds a control character")
		}
	}
	if len(o.GetMediaType()) > 127 {
		return errors.New("media type is longer than 127 characters")
	}
	return nil
}

// resume loads or creates the upload's state and positions the staged file
// at the committed offset.
func (s *Service) resume(ctx context.Context, upID string, task *taskInfo, a *store.Agent, id pki.Identity, open *agentv1.EvidenceOpen) (*receiving, error) {
	now := s.cfg.Clock()
	r := &receiving{task: task, agent: a, id: id, lastSync: now}
	u, err := s.getUpload(ctx, upID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = &upload{ID: upID, TaskID: task.ID, Name: open.GetName(), MediaType: open.GetMediaType(), AgentID: a.ID, RunID: task.RunID,
			State: uploadOpen, CreatedAt: now}
	case err != nil:
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the upload state")
	}
	r.up = u
	u.Opens++
	u.UpdatedAt = now
	if u.State == uploadStored {
		it, err := s.GetItem(ctx, u.EvidenceID)
		if err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("reading stored evidence %s", u.EvidenceID))
		}
		r.stored, r.committed, r.received = it, it.Size, it.Size
		return r, nil
	}
	if u.State != uploadOpen {
		// A refused or abandoned upload starts over.
		s.dropStaging(ctx, u)
		u.State, u.Committed, u.HashState, u.Staging = uploadOpen, 0, nil, store.UploadStaging{}
	}
	r.h = sha256.New()
	if s.stg != nil {
		if err := s.resumeStaged(ctx, r); err != nil {
			return nil, err
		}
	} else if err := s.resumeLocal(ctx, r); err != nil {
		return nil, err
	}
	r.committed, r.received = u.Committed, u.Committed
	if u.HashState, err = r.h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		r.close()
		return nil, status.Errorf(codes.Internal, "saving the hash state: %v", err)
	}
	if s.stg != nil {
		u.Staging.Seal = s.seal(u)
	}
	if err := s.putUpload(ctx, u); err != nil {
		r.close()
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "recording the upload")
	}
	if u.Opens > 1 {
		s.cfg.Logger.Info("evidence upload resumed", "upload", upID, "task", task.ID, "name", u.Name, "committed", u.Committed, "opens", u.Opens)
	}
	return r, nil
}

// resumeLocal positions an upload staged in the staging directory at its
// committed offset, restoring its hash state.
func (s *Service) resumeLocal(ctx context.Context, r *receiving) error {
	u, upID := r.up, r.up.ID
	if u.Committed > 0 {
		if err := r.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			s.cfg.Logger.Warn("the saved hash state of an upload is unreadable; starting it over", "upload", upID, "error", err)
			u.Committed, r.h = 0, sha256.New()
		}
	}
	f, err := os.OpenFile(s.partPath(upID), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "opening the staged upload")
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the staged upload")
	}
	if fi.Size() < u.Committed {
		// The staged bytes are gone. If the controller stopped after moving
		// them into the store and before recording the item, the store has
		// them; otherwise the upload starts over.
		sum := hex.EncodeToString(r.h.Sum(nil))
		if n, err := s.cfg.Backend.Stat(ctx, sum); err == nil && n == u.Committed {
			r.inBackend = true
		} else {
			s.cfg.Logger.Warn("the staged bytes of an upload are missing; starting it over", "upload", upID, "committed", u.Committed, "staged", fi.Size())
			u.Committed, r.h = 0, sha256.New()
		}
	}
	if !r.inBackend {
		// Bytes past the last checkpoint were never acknowledged; the agent
		// sends them again.
		if err := f.Truncate(u.Committed); err != nil {
			f.Close()
			return rpcerr.Error(ctx, s.cfg.Logger, err, "resetting the staged upload")
		}
		if _, err := f.Seek(u.Committed, io.SeekStart); err != nil {
			f.Close()
			return rpcerr.Error(ctx, s.cfg.Logger, err, "resetting the staged upload")
		}
		r.f = f
	} else {
		f.Close()
		os.Remove(s.partPath(upID))
	}
	return nil
}

// receive handles chunks and finish until the upload is stored or the
// stream ends.
func (s *Service) receive(ctx context.Context, r *receiving, stream agentv1.AgentService_UploadEvidenceServer, superseded <-chan struct{}) error {
	msgs := make(chan received, 1)
	recvErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	// Receiving on its own goroutine lets a newer stream of the same upload
	// take over, and overlaps decoding and each chunk's CRC32C with staging
	// the previous chunk and the whole-upload hash.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			in := received{msg: m}
			if c := m.GetChunk(); c != nil {
				in.crc = crc32.Checksum(c.GetData(), castagnoli)
			}
			select {
			case msgs <- in:
			case <-quit:
				return
			}
		}
	}()
	ack := func() error {
		if err := s.checkpoint(ctx, r, false); err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "checkpointing the upload")
		}
		return stream.Send(&agentv1.UploadEvidenceResponse{Msg: &agentv1.UploadEvidenceResponse_Ack{Ack: &agentv1.EvidenceAck{
			CommittedOffset: uint64(r.committed)}}})
	}
	// A quiet stream still gets its bytes acknowledged, so an agent whose
	// window is smaller than a checkpoint never waits for ever. An upload
	// staged in S3 is checkpointed by size only (S3 takes no small parts
	// but the last); the agent's window holds twice its checkpoint size.
	byTime := s.stg == nil
	checkpointBytes := s.cfg.CheckpointBytes
	if s.stg != nil {
		checkpointBytes = s.partBytes
	}
	tick := time.NewTicker(s.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		var in received
		select {
		case <-tick.C:
			if byTime && r.received > r.committed && s.cfg.Clock().Sub(r.lastSync) >= s.cfg.CheckpointInterval {
				if err := ack(); err != nil {
					return err
				}
			}
			continue
		case in = <-msgs:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return status.Error(codes.InvalidArgument, "the agent closed the upload without finish")
			}
			return err
		case <-superseded:
			return status.Error(codes.Aborted, "a newer stream of this upload took over")
		case <-ctx.Done():
			return ctx.Err()
		}
		switch msg := in.msg.GetMsg().(type) {
		case *agentv1.UploadEvidenceRequest_Chunk:
			if err := s.chunk(ctx, r, msg.Chunk, in.crc); err != nil {
				return err
			}
			if r.received-r.committed >= checkpointBytes || (byTime && s.cfg.Clock().Sub(r.lastSync) >= s.cfg.CheckpointInterval) {
				if err := ack(); err != nil {
					return err
				}
			}
		case *agentv1.UploadEvidenceRequest_Finish:
			return s.finish(ctx, r, msg.Finish, stream)
		default:
			return status.Error(codes.InvalidArgument, "only chunk and finish may follow open")
		}
	}
}

// received is a message of an upload stream; crc is the CRC32C of a
// chunk's data, computed as it arrived.
type received struct {
	msg *agentv1.UploadEvidenceRequest
	crc uint32
}

// chunk checks and stages one chunk; crc is the CRC32C of its data.
func (s *Service) chunk(ctx context.Context, r *receiving, c *agentv1.EvidenceChunk, crc uint32) error {
	if r.stored != nil || r.inBackend {
		return status.Errorf(codes.FailedPrecondition, "all %d bytes of this upload are stored already; send finish", r.received)
	}
	data := c.GetData()
	switch {
	case c.GetOffset() != uint64(r.received):
		return status.Errorf(codes.FailedPrecondition, "chunk at offset %d, but the upload continues at %d: resume from the committed offset %d",
			c.GetOffset(), r.received, r.committed)
	case len(data) == 0 || len(data) > MaxChunkBytes:
		return status.Errorf(codes.InvalidArgument, "a chunk holds 1 to %d bytes, not %d", MaxChunkBytes, len(data))
	case r.received+int64(len(data)) > s.cfg.MaxBytes:
		return status.Errorf(codes.ResourceExhausted, "the evidence is larger than this controller's cap of %d bytes (--evidence-max-bytes)", s.cfg.MaxBytes)
	}
	// A chunk is checked before any byte of it is staged, so a corrupted
	// chunk leaves nothing behind. The CRC32C guards against accidents (a
	// wrong offset, a torn write, a buffer bug); TLS authenticates the wire,
	// and the whole artifact's SHA-256 at finish decides what is stored.
	if crc != c.GetCrc32C() {
		s.cfg.Audit(ctx, "agent:"+r.agent.ID, "evidence.chunk_refused", r.task.ID, map[string]any{"upload_id": r.up.ID, "name": r.up.Name,
			"offset": c.GetOffset(), "bytes": len(data), "claimed_crc32c": fmt.Sprintf("%08x", c.GetCrc32C()), "crc32c": fmt.Sprintf("%08x", crc)})
		return status.Errorf(codes.DataLoss, "chunk at offset %d (%d bytes) does not match its CRC32C (got %08x, the agent sent %08x): refused, nothing from it was stored; resume from offset %d",
			c.GetOffset(), len(data), crc, c.GetCrc32C(), r.received)
	}
	if _, err := r.f.Write(data); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("staging the chunk at offset %d", c.GetOffset()))
	}
	r.h.Write(data)
	if r.ph != nil {
		r.ph.Write(data)
	}
	r.received += int64(len(data))
	return nil
}

// checkpoint makes what was received durable: the staged bytes, then the
// offset and hash state that describe them. final is set by finish: the
// bytes are the upload's last.
func (s *Service) checkpoint(ctx context.Context, r *receiving, final bool) error {
	if r.f == nil || r.received == r.committed {
		return nil
	}
	if r.stg != nil {
		return s.checkpointStaged(ctx, r, final)
	}
	if err := r.f.Sync(); err != nil {
		return err
	}
	state, err := r.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	now := s.cfg.Clock()
	if err := s.checkpointUpload(ctx, r.up.ID, r.received, state, store.UploadStaging{}, now); err != nil {
		return err
	}
	r.committed, r.lastSync = r.received, now
	r.up.Committed, r.up.HashState = r.received, state
	return nil
}

// finish verifies the whole upload, checks a bundle, stores the bytes and
// records the item with the first entry of its custody.
func (s *Service) finish(ctx context.Context, r *receiving, fin *agentv1.EvidenceFinish, stream agentv1.AgentService_UploadEvidenceServer) error {
	stored := func(it *Item) error {
		return stream.Send(&agentv1.UploadEvidenceResponse{Msg: &agentv1.UploadEvidenceResponse_Stored{Stored: &agentv1.EvidenceStored{
			EvidenceId: it.ID, Sha256: it.SHA256, Size: uint64(it.Size)}}})
	}
	if len(fin.GetSha256()) != sha256.Size {
		return status.Errorf(codes.InvalidArgument, "finish carries a %d-byte SHA-256; want %d bytes", len(fin.GetSha256()), sha256.Size)
	}
	claimed := hex.EncodeToString(fin.GetSha256())
	if r.stored != nil {
		if r.stored.SHA256 != claimed || uint64(r.stored.Size) != fin.GetSize() {
			return status.Errorf(codes.DataLoss, "this upload was stored as %d bytes with SHA-256 %s, not %d bytes with %s",
				r.stored.Size, r.stored.SHA256, fin.GetSize(), claimed)
		}
		return stored(r.stored)
	}
	if err := s.checkpoint(ctx, r, true); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "checkpointing the upload")
	}
	sum := hex.EncodeToString(r.h.Sum(nil))
	// Security-critical: what is stored is exactly what the agent hashed.
	if uint64(r.received) != fin.GetSize() || sum != claimed {
		s.cfg.Audit(ctx, "agent:"+r.agent.ID, "evidence.refused", r.task.ID, map[string]any{"upload_id": r.up.ID, "name": r.up.Name,
			"run": r.task.RunID, "received_bytes": r.received, "sha256": sum, "claimed_bytes": fin.GetSize(), "claimed_sha256": claimed})
		s.cfg.Logger.Error("evidence refused: the upload does not match the agent's hash", "task", r.task.ID, "name", r.up.Name,
			"received", r.received, "sha256", sum, "claimed_size", fin.GetSize(), "claimed_sha256", claimed)
		r.close()
		r.f = nil
		os.Remove(s.partPath(r.up.ID))
		s.dropStaging(ctx, r.up)
		r.up.State = uploadRefused
		if err := s.setUploadState(context.WithoutCancel(ctx), r.up.ID, uploadRefused, ""); err != nil {
			s.cfg.Logger.Warn("recording a refused upload failed", "upload", r.up.ID, "error", err)
		}
		return status.Errorf(codes.DataLoss, "evidence refused: the controller received %d bytes with SHA-256 %s, but the agent sent %d bytes with %s; nothing was stored: run the collection again",
			r.received, sum, fin.GetSize(), claimed)
	}

	// Security-critical: a task that ended while its upload ran (its
	// deadline passed, or it was cancelled) takes no evidence either.
	if t, err := s.lookupTask(ctx, r.task.ID); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "upload")
	} else if !t.open {
		return status.Errorf(codes.FailedPrecondition, "task %s ended before its upload finished; the evidence was not stored", r.task.ID)
	}

	var summary *BundleSummary
	bundled := IsBundle(r.up.Name, r.up.MediaType)
	if bundled && r.stg == nil {
		var err error
		if summary, err = s.checkBundle(ctx, r, sum); err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the upload back to check the bundle")
		}
	}
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	var st *Stored
	var err error
	if r.stg != nil {
		st, err = s.commitStaged(ctx, r, sum)
	} else {
		st, err = s.cfg.Backend.Put(ctx, sum, r.received, s.partPath(r.up.ID))
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "storing the evidence in %s: %v; it stays staged, send finish again", s.cfg.Backend.Describe(), err)
	}
	if bundled && r.stg != nil {
		// Staged in S3, the bundle is read back from where it is stored.
		if summary, err = s.checkBundle(ctx, r, sum); err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the evidence back to check the bundle")
		}
	}
	if err := os.Remove(s.partPath(r.up.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Warn("removing a staged upload failed", "upload", r.up.ID, "error", err)
	}
	now := s.cfg.Clock().UTC()
	it := &Item{ID: ids.New("evd"), UploadID: r.up.ID, TaskID: r.task.ID, RunID: r.task.RunID, CaseID: r.task.CaseID,
		Operator: r.task.Operator, AgentID: r.agent.ID, CertSerial: r.id.Serial, CertFingerprint: r.id.Fingerprint,
		Hostname: r.agent.Hostname, Name: r.up.Name, MediaType: r.up.MediaType, Size: r.received, SHA256: sum,
		Backend: s.cfg.Backend.Kind(), Location: st.Location, StoredAt: now, RetainUntil: st.RetainUntil, Bundle: summary,
		Resumes: r.up.Opens - 1}
	if fin.GetStartedAt() != nil {
		it.StartedAt = fin.GetStartedAt().AsTime().UTC()
	}
	if fin.GetFinishedAt() != nil {
		it.FinishedAt = fin.GetFinishedAt().AsTime().UTC()
	}
	detail := collectedDetail{itemFacts: itemFactsOf(it), Resumes: it.Resumes}
	if summary != nil {
		host := summary.Host
		detail.Host = &host
		detail.Bundle = &bundleFacts{Valid: summary.Valid, Problem: summary.Problem, Collector: summary.CollectorName + " " + summary.CollectorVersion,
			Profile: summary.Profile, Members: summary.Members, Truncated: summary.Truncated}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return status.Errorf(codes.Internal, "recording the custody: %v", err)
	}
	first := &CustodyEntry{EvidenceID: it.ID, At: now, Actor: "agent:" + r.agent.ID, Action: ActionCollected, Detail: b}
	if err := s.insertItem(ctx, it, first); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "recording the evidence")
	}
	r.up.State, r.stored = uploadStored, it
	s.mirror(ctx, first)
	s.cfg.Logger.Info("evidence stored", "evidence", it.ID, "task", it.TaskID, "agent", it.AgentID, "name", it.Name,
		"bytes", it.Size, "sha256", it.SHA256, "location", it.Location, "resumes", it.Resumes, "bundle_valid", summary == nil || summary.Valid,
		"rate", bandwidth.Format(rate(it)))
	if summary != nil && !summary.Valid {
		s.cfg.Audit(ctx, "system", "evidence.bundle_invalid", it.ID, map[string]string{"task": it.TaskID, "problem": summary.Problem})
	}
	return stored(it)
}

// rate is the item's average collection-to-store rate, for the log.
func rate(it *Item) int64 {
	if it.StartedAt.IsZero() {
		return 0
	}
	d := it.StoredAt.Sub(it.StartedAt).Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(it.Size) / d)
}

// IsBundle reports whether an artifact is an evidence bundle the
// controller verifies member by member.
func IsBundle(name, mediaType string) bool {
	switch mediaType {
	case bundle.Gzip.MediaType(), bundle.Zstd.MediaType():
		return true
	}
	return strings.HasSuffix(name, bundle.Gzip.Extension()) || strings.HasSuffix(name, bundle.Zstd.Extension())
}

// checkBundle verifies a bundle and summarises its manifest. A bundle that
// does not verify is still stored, exactly as collected, and marked
// invalid: evidence is never thrown away because it is damaged.
func (s *Service) checkBundle(ctx context.Context, r *receiving, sum string) (*BundleSummary, error) {
	var rd io.Reader
	if r.f != nil {
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		rd = bufio.NewReaderSize(r.f, 256<<10)
	} else {
		rc, err := s.cfg.Backend.Open(ctx, sum)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		rd = rc
	}
	man, rep, verr := bundle.Verify(rd)
	return summarise(man, rep, verr, r.task.ID, r.agent.ID), nil
}

// summarise turns a verification into a bundle summary, and checks that
// the manifest names the task and agent that uploaded it.
func summarise(man *bundle.Manifest, rep *bundle.Report, verr error, taskID, agentID string) *BundleSummary {
	sum := &BundleSummary{Valid: verr == nil}
	if rep != nil {
		sum.Members, sum.Compression = rep.Members, string(rep.Compression)
		sum.PayloadBytes = rep.PayloadBytes
	}
	if verr != nil {
		sum.Problem = verr.Error()
		return sum
	}
	sum.CollectorName, sum.CollectorVersion, sum.Profile = man.Collector.Name, man.Collector.Version, man.Profile
	sum.Truncated, sum.TruncatedReasons = man.Truncated, man.TruncatedReasons
	sum.ManifestTaskID = man.Task.TaskID
	h := man.Host
	sum.Host = HostIdentity{Hostname: h.Hostname, AgentID: h.AgentID, InstanceID: h.InstanceID, BootID: h.BootID, MachineID: h.MachineID,
		Kernel: h.Kernel, Addresses: h.Addresses}
	for _, a := range man.Artifacts {
		sum.Artifacts = append(sum.Artifacts, ArtifactStatus{Name: a.Name, Status: a.Status, Reason: a.Reason, Items: a.Items, Files: a.Files,
			Bytes: a.Bytes, Skipped: a.SkippedCount, Truncated: a.Truncated})
	}
	// Security-critical: a bundle that names another task or agent was not
	// produced by this collection.
	switch {
	case man.Task.TaskID != taskID:
		sum.Valid, sum.Problem = false, fmt.Sprintf("the manifest names task %q, but the bundle was uploaded for task %s", man.Task.TaskID, taskID)
	case man.Host.AgentID != agentID:
		sum.Valid, sum.Problem = false, fmt.Sprintf("the manifest names agent %q, but agent %s uploaded it", man.Host.AgentID, agentID)
	}
	return sum
}
