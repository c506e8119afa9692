package evidence

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// An upload staged in the backend (S3): each checkpoint sends the bytes
// received since the last one as a part of the upload's multipart upload,
// and only then commits the offset, the hash state and the parts in the
// store, sealed with the cluster's checkpoint key. The staging directory
// holds only the bytes since the last part, so any controller resumes the
// upload from the store and the bucket.

// stagingRefusal is why a staged upload cannot resume.
type stagingRefusal struct{ reason string }

func (e *stagingRefusal) Error() string { return e.reason }

func refuse(format string, args ...any) error {
	return &stagingRefusal{reason: fmt.Sprintf(format, args...)}
}

// sealChain names an upload's staging in its seal.
func sealChain(uploadID string) string { return "evidence-upload/" + uploadID }

// sealEpoch stands for the time in a seal: a seal vouches for the staging,
// not for when it was written.
var sealEpoch = time.Unix(0, 0).UTC()

// sealHead is the digest a seal signs: the backend, the upload and its
// task and agent, the committed offset, the hash state and the parts.
func (s *Service) sealHead(u *upload) string {
	b, _ := json.Marshal([]any{"firebreak.evidence.staging.v1", s.cfg.Backend.Describe(), u.ID, u.TaskID, u.AgentID, u.Committed,
		hex.EncodeToString(u.HashState), u.Staging.MultipartID, u.Staging.Parts})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// seal signs an upload's staging with the store's checkpoint key; it is
// empty when the controller has none.
func (s *Service) seal(u *upload) string {
	k := s.t.CheckpointKey()
	if k == nil {
		return ""
	}
	cp := k.Sign(sealChain(u.ID), u.Committed, s.sealHead(u), sealEpoch)
	return cp.KeyID + ":" + hex.EncodeToString(cp.Signature)
}

// checkSeal checks an upload's seal against the checkpoint key.
func (s *Service) checkSeal(u *upload) error {
	k := s.t.CheckpointKey()
	if k == nil {
		return nil
	}
	keyID, sig, ok := strings.Cut(u.Staging.Seal, ":")
	raw, err := hex.DecodeString(sig)
	if !ok || err != nil {
		return refuse("its checkpoint in the store carries no valid seal")
	}
	cp := &store.Checkpoint{Chain: sealChain(u.ID), Length: u.Committed, Head: s.sealHead(u), At: sealEpoch, KeyID: keyID, Signature: raw}
	if err := k.Verify(cp); err != nil {
		return refuse("its checkpoint in the store (offset %d, hash state, %d parts) does not match its seal: %v", u.Committed, len(u.Staging.Parts), err)
	}
	return nil
}

// hashedLength is the number of bytes a serialised SHA-256 state covers
// (its last eight bytes, big-endian).
func hashedLength(state []byte) int64 {
	if len(state) < 8 {
		return -1
	}
	return int64(binary.BigEndian.Uint64(state[len(state)-8:]))
}

// resumeStaged checks an upload's staging against the store and the
// backend, restores its hash state and opens the file for the bytes of its
// next part. A staging that does not check is refused: the upload is
// discarded and the agent told precisely why.
func (s *Service) resumeStaged(ctx context.Context, r *receiving) error {
	u := r.up
	r.stg, r.ph = s.stg, sha256.New()
	if u.Staging.MultipartID == "" && u.Committed > 0 {
		// Staged on a controller's disk by a local store: not reachable here.
		s.cfg.Logger.Warn("an upload staged on a controller's disk cannot continue in the S3 store; starting it over", "upload", u.ID, "committed", u.Committed)
		u.Committed, u.HashState = 0, nil
	}
	if u.Staging.MultipartID != "" {
		err := s.checkStaging(ctx, r)
		var ref *stagingRefusal
		if errors.As(err, &ref) {
			s.refuseStaging(ctx, r, ref.reason)
			return status.Errorf(codes.FailedPrecondition, "upload %s cannot resume: %s; it was discarded: run the collection again", u.ID, ref.reason)
		}
		if err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the staged upload")
		}
	} else {
		id, err := s.stg.StartStaging(ctx, u.ID)
		if err != nil {
			return status.Errorf(codes.Unavailable, "staging the upload in %s: %v; retry shortly", s.cfg.Backend.Describe(), err)
		}
		u.Staging = store.UploadStaging{MultipartID: id}
	}
	if r.inBackend {
		return nil
	}
	// Bytes past the last part were never acknowledged; the agent sends
	// them again.
	f, err := os.OpenFile(s.partPath(u.ID), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "opening the staging file of the upload's next part")
	}
	r.f = f
	return nil
}

// checkStaging restores the hash state of a staged upload after checking,
// each as security-critical, that the store's checkpoint is sealed, that
// the hash state and the parts cover exactly the committed offset, and
// that the backend holds those very parts.
func (s *Service) checkStaging(ctx context.Context, r *receiving) error {
	u := r.up
	// Security-critical: the store row says where bytes go on and what hash
	// the evidence gets; only what a controller of the cluster sealed is
	// believed.
	if err := s.checkSeal(u); err != nil {
		return err
	}
	// Security-critical: the hash state resumes the evidence's SHA-256, so
	// it must be a SHA-256 state over exactly the committed bytes.
	if err := r.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
		return refuse("the saved hash state is not a SHA-256 state (%v)", err)
	}
	if n := hashedLength(u.HashState); n != u.Committed {
		return refuse("the saved hash state covers %d bytes, but %d are committed", n, u.Committed)
	}
	var total int64
	for i, p := range u.Staging.Parts {
		if p.Number != int32(i+1) || p.Size <= 0 || (i < len(u.Staging.Parts)-1 && p.Size < MinPartBytes) {
			return refuse("the saved part list is not parts 1 to %d of %d bytes or more (part %d: number %d, %d bytes)",
				len(u.Staging.Parts), MinPartBytes, i+1, p.Number, p.Size)
		}
		total += p.Size
	}
	if total != u.Committed {
		return refuse("the saved parts hold %d bytes, but %d are committed", total, u.Committed)
	}
	held, err := s.stg.StagedParts(ctx, u.ID, u.Staging.MultipartID)
	if errors.Is(err, ErrStagingGone) {
		// A controller that died while storing it completed the staging
		// (or the copy): finish takes it from there.
		if n, serr := s.cfg.Backend.Stat(ctx, hex.EncodeToString(r.h.Sum(nil))); serr == nil && n == u.Committed && u.Committed > 0 {
			r.inBackend = true
			return nil
		}
		if n, serr := s.stg.StagedSize(ctx, u.ID); serr == nil && n == u.Committed && u.Committed > 0 {
			r.inBackend = true
			return nil
		}
		return refuse("its staged parts are gone from %s (multipart upload %s)", s.cfg.Backend.Describe(), u.Staging.MultipartID)
	}
	if err != nil {
		return err
	}
	byNumber := make(map[int32]store.StagedPart, len(held))
	for _, p := range held {
		byNumber[p.Number] = p
	}
	// Security-critical: the parts the evidence will be made of are those
	// the checkpoint recorded. Parts past them were sent by a checkpoint
	// that never committed; they are sent again and replaced.
	for _, want := range u.Staging.Parts {
		got, ok := byNumber[want.Number]
		switch {
		case !ok:
			return refuse("part %d, recorded at the last checkpoint, is not in %s", want.Number, s.cfg.Backend.Describe())
		case strings.Trim(got.ETag, `"`) != strings.Trim(want.ETag, `"`) || got.Size != want.Size || (got.SHA256 != "" && got.SHA256 != want.SHA256):
			return refuse("part %d in %s (%d bytes, ETag %s, SHA-256 %q) is not the part recorded at the last checkpoint (%d bytes, ETag %s, SHA-256 %q)",
				want.Number, s.cfg.Backend.Describe(), got.Size, got.ETag, got.SHA256, want.Size, want.ETag, want.SHA256)
		}
	}
	return nil
}

// refuseStaging discards a staged upload that cannot resume, and records
// why.
func (s *Service) refuseStaging(ctx context.Context, r *receiving, reason string) {
	u := r.up
	ctx = context.WithoutCancel(ctx)
	s.cfg.Audit(ctx, "system", "evidence.resume_refused", u.TaskID, map[string]any{"upload_id": u.ID, "name": u.Name, "agent": u.AgentID,
		"committed_bytes": u.Committed, "reason": reason})
	s.cfg.Logger.Error("a staged evidence upload cannot resume; it was discarded", "upload", u.ID, "task", u.TaskID, "reason", reason)
	s.dropStaging(ctx, u)
	if err := s.setUploadState(ctx, u.ID, uploadRefused, ""); err != nil {
		s.cfg.Logger.Warn("recording a refused upload failed", "upload", u.ID, "error", err)
	}
}

// dropStaging discards an upload's staging in the backend, if it has one.
func (s *Service) dropStaging(ctx context.Context, u *upload) {
	if s.stg == nil || u.Staging.MultipartID == "" {
		return
	}
	if err := s.stg.AbortStaging(context.WithoutCancel(ctx), u.ID, u.Staging.MultipartID); err != nil {
		s.cfg.Logger.Warn("discarding the staging of an evidence upload failed; the janitor does not see it again", "upload", u.ID,
			"multipart_upload", u.Staging.MultipartID, "error", err)
	}
}

// checkpointStaged sends the bytes received since the last part as the
// next part, then commits them. Until finish (final), fewer than the
// checkpoint size wait for more: S3 takes no small parts but the last.
func (s *Service) checkpointStaged(ctx context.Context, r *receiving, final bool) error {
	n := r.received - r.committed
	if n < s.partBytes && !final {
		return nil
	}
	u := r.up
	number := int32(len(u.Staging.Parts) + 1)
	if number > MaxParts {
		return fmt.Errorf("upload %s has %d parts already, the most S3 takes", u.ID, MaxParts)
	}
	part, err := r.stg.StagePart(ctx, u.ID, u.Staging.MultipartID, number, io.NewSectionReader(r.f, 0, n), n, r.ph.Sum(nil))
	if err != nil {
		return err
	}
	state, err := r.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	next := *u
	next.Committed, next.HashState = r.received, state
	next.Staging = store.UploadStaging{MultipartID: u.Staging.MultipartID, Parts: append(slices.Clone(u.Staging.Parts), part)}
	next.Staging.Seal = s.seal(&next)
	now := s.cfg.Clock()
	if err := s.checkpointUpload(ctx, u.ID, next.Committed, state, next.Staging, now); err != nil {
		return err
	}
	r.committed, r.lastSync = r.received, now
	u.Committed, u.HashState, u.Staging = next.Committed, state, next.Staging
	if err := r.f.Truncate(0); err != nil {
		return err
	}
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r.ph.Reset()
	return nil
}

// commitStaged stores a verified staged upload at its content address.
func (s *Service) commitStaged(ctx context.Context, r *receiving, sum string) (*Stored, error) {
	if r.received == 0 {
		// S3 takes no empty part: an empty artifact is put whole.
		st, err := s.cfg.Backend.Put(ctx, sum, 0, s.partPath(r.up.ID))
		if err != nil {
			return nil, err
		}
		s.dropStaging(ctx, r.up)
		return st, nil
	}
	return r.stg.CommitStaging(ctx, r.up.ID, r.up.Staging, sum, r.received)
}
