package evidence

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/bundle"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Policy is who may call which evidence method. Reading the bytes is a
// responder's act; listing, verifying and reading custody are a viewer's.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.EvidenceService_ListEvidence_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.EvidenceService_GetEvidence_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.EvidenceService_VerifyEvidence_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.EvidenceService_GetCustody_FullMethodName:     operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
}

// Limits on operator input.
const (
	maxListLimit = 10000
	maxReason    = 1024
	maxExportTo  = 256
	sendChunk    = 1 << 20
)

func actor(ctx context.Context) string {
	if o, ok := auth.OperatorFrom(ctx); ok {
		return "operator:" + o.Name
	}
	return "system"
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func (s *Service) item(ctx context.Context, id string) (*Item, error) {
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "no evidence id given")
	}
	it, err := s.GetItem(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "evidence %s not found: see `firebreak evidence list`", id)
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("reading evidence %s", id))
	}
	return it, nil
}

// ListEvidence implements operatorv1.EvidenceServiceServer.
func (s *Service) ListEvidence(ctx context.Context, req *operatorv1.ListEvidenceRequest) (*operatorv1.ListEvidenceResponse, error) {
	if req.GetLimit() > maxListLimit {
		return nil, status.Errorf(codes.InvalidArgument, "limit %d is over %d", req.GetLimit(), maxListLimit)
	}
	items, err := s.ListItems(ctx, Filter{RunID: req.GetRunId(), TaskID: req.GetTaskId(), CaseID: req.GetCaseId(), AgentID: req.GetAgentId(),
		Limit: int(req.GetLimit())})
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "listing evidence")
	}
	out := &operatorv1.ListEvidenceResponse{}
	for _, it := range items {
		out.Items = append(out.Items, ItemProto(it))
	}
	return out, nil
}

// GetEvidence implements operatorv1.EvidenceServiceServer.
func (s *Service) GetEvidence(req *operatorv1.GetEvidenceRequest, stream operatorv1.EvidenceService_GetEvidenceServer) error {
	ctx := stream.Context()
	if len(req.GetReason()) > maxReason || !utf8.ValidString(req.GetReason()) {
		return status.Errorf(codes.InvalidArgument, "the reason must be UTF-8 text of at most %d bytes", maxReason)
	}
	if len(req.GetExportTo()) > maxExportTo || !utf8.ValidString(req.GetExportTo()) {
		return status.Errorf(codes.InvalidArgument, "export_to must be UTF-8 text of at most %d bytes", maxExportTo)
	}
	it, err := s.item(ctx, req.GetEvidenceId())
	if err != nil {
		return err
	}
	rc, err := s.cfg.Backend.Open(ctx, it.SHA256)
	if errors.Is(err, ErrObjectNotFound) {
		return status.Errorf(codes.NotFound, "the evidence store %s no longer holds evidence %s (%s): run `firebreak evidence verify %s`",
			s.cfg.Backend.Describe(), it.ID, it.Location, it.ID)
	}
	if err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("reading evidence %s", it.ID))
	}
	defer rc.Close()
	action := ActionDownload
	detail := map[string]any{"reason": req.GetReason(), "from": peerAddr(ctx), "size": it.Size, "sha256": it.SHA256}
	if req.GetExportTo() != "" {
		action, detail["export_to"] = ActionExport, req.GetExportTo()
	}
	// The access is recorded before the first byte leaves.
	entry, err := s.AppendCustody(ctx, it.ID, actor(ctx), action, detail)
	if err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "recording the access in the custody record (the access is refused)")
	}
	if err := stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_Info{Info: ItemProto(it)}}); err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, sendChunk)
	var off int64
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			h.Write(buf[:n])
			if err := stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_Data{Data: &operatorv1.EvidenceData{
				Offset: uint64(off), Data: buf[:n]}}}); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, rerr, fmt.Sprintf("reading evidence %s at offset %d", it.ID, off))
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if off != it.Size || sum != it.SHA256 {
		s.cfg.Audit(ctx, "system", "evidence.mismatch", it.ID, map[string]any{"size": off, "sha256": sum, "recorded_size": it.Size,
			"recorded_sha256": it.SHA256, "location": it.Location})
		return status.Errorf(codes.DataLoss, "evidence %s in the store is %d bytes with SHA-256 %s, but %d bytes with %s were collected: the stored copy was altered",
			it.ID, off, sum, it.Size, it.SHA256)
	}
	return stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_End{End: &operatorv1.EvidenceEnd{
		Size: uint64(off), Sha256: sum, CustodySeq: uint64(entry.Seq)}}})
}

// VerifyEvidence implements operatorv1.EvidenceServiceServer.
func (s *Service) VerifyEvidence(req *operatorv1.VerifyEvidenceRequest, stream operatorv1.EvidenceService_VerifyEvidenceServer) error {
	ctx := stream.Context()
	var list []string
	var anchor *store.Checkpoint
	if req.GetAnchor() != nil {
		if req.GetAll() {
			return status.Error(codes.InvalidArgument, "an anchor checks one item: give its evidence id, not all")
		}
		var err error
		if anchor, err = store.CheckpointFromProto(req.GetAnchor()); err != nil {
			return status.Errorf(codes.InvalidArgument, "the anchor is not a custody checkpoint: %v", err)
		}
	}
	switch {
	case req.GetAll() && req.GetEvidenceId() != "":
		return status.Error(codes.InvalidArgument, "give an evidence id or all, not both")
	case req.GetAll():
		var err error
		if list, err = s.allItemIDs(ctx); err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "listing evidence")
		}
	default:
		if _, err := s.item(ctx, req.GetEvidenceId()); err != nil {
			return err
		}
		list = []string{req.GetEvidenceId()}
	}
	if err := stream.Send(&operatorv1.VerifyEvidenceResponse{Msg: &operatorv1.VerifyEvidenceResponse_Started{Started: &operatorv1.VerifyStarted{
		Total: uint32(len(list))}}}); err != nil {
		return err
	}
	for _, id := range list {
		v, err := s.verify(ctx, id, actor(ctx), anchor)
		if err != nil {
			return err
		}
		if err := stream.Send(&operatorv1.VerifyEvidenceResponse{Msg: &operatorv1.VerifyEvidenceResponse_Result{Result: v}}); err != nil {
			return err
		}
	}
	return nil
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}

// Verify re-reads an item from the store, re-hashes it, re-checks a
// bundle against its manifest and re-computes the custody chain, then
// records the verification in the item's custody. Only a failure to record
// is returned as an error; what the verification found is in the result.
func (s *Service) Verify(ctx context.Context, id, who string) (*operatorv1.EvidenceVerification, error) {
	return s.verify(ctx, id, who, nil)
}

// verify is Verify that also checks the custody record still holds an
// anchor, when one is given. Appending the verification signs a new
// checkpoint of the custody head, unless the chain no longer holds the
// stored one: then that one is kept, so the tampering it proves stays
// reported.
func (s *Service) verify(ctx context.Context, id, who string, anchor *store.Checkpoint) (*operatorv1.EvidenceVerification, error) {
	it, err := s.item(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock()
	v := &operatorv1.EvidenceVerification{EvidenceId: it.ID, Location: it.Location, VerifiedAt: timestamppb.New(now)}
	_, chk, err := s.checkCustody(ctx, it, anchor)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("reading the custody of %s", it.ID))
	}
	v.CustodyOk = chk.OK

	v.Verdict, v.Problem = s.verifyBytes(ctx, it, v)
	if v.Verdict == operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK && !chk.OK {
		v.Verdict = operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_CUSTODY_BROKEN
		v.Problem = fmt.Sprintf("custody entry %d: %s", chk.FirstBadSeq, chk.Problem)
		if chk.FirstBadSeq == 0 {
			v.Problem = "custody: " + chk.Problem
		}
	}
	detail := map[string]any{"verdict": VerdictName(v.Verdict), "problem": v.Problem, "size": v.Size, "sha256": v.Sha256,
		"members_verified": v.MembersVerified, "custody_ok": v.CustodyOk, "from": peerAddr(ctx)}
	if _, err := s.AppendCustody(ctx, it.ID, who, ActionVerify, detail); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("recording the verification of %s", it.ID))
	}
	if err := s.setVerified(ctx, it.ID, now, v.Verdict); err != nil {
		s.cfg.Logger.Warn("recording the last verification failed", "evidence", it.ID, "error", err)
	}
	if v.Verdict != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
		s.cfg.Logger.Error("evidence verification failed", "evidence", it.ID, "verdict", VerdictName(v.Verdict), "problem", v.Problem)
	}
	return v, nil
}

func (s *Service) verifyBytes(ctx context.Context, it *Item, v *operatorv1.EvidenceVerification) (operatorv1.EvidenceVerdict, string) {
	rc, err := s.cfg.Backend.Open(ctx, it.SHA256)
	if errors.Is(err, ErrObjectNotFound) {
		return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISSING, fmt.Sprintf("the evidence store %s no longer holds %s", s.cfg.Backend.Describe(), it.Location)
	}
	if err != nil {
		return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNREADABLE, err.Error()
	}
	defer rc.Close()
	hr := &hashingReader{r: rc, h: sha256.New()}
	var bundleErr error
	var rep *bundle.Report
	if it.Bundle != nil {
		_, rep, bundleErr = bundle.Verify(bufio.NewReaderSize(hr, 256<<10))
	}
	// Whatever the bundle reader left unread still counts for the hash.
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNREADABLE, fmt.Sprintf("reading %s at offset %d: %v", it.Location, hr.n, err)
	}
	v.Size, v.Sha256 = uint64(hr.n), hex.EncodeToString(hr.h.Sum(nil))
	if rep != nil {
		v.MembersVerified = uint32(rep.Verified)
	}
	if hr.n != it.Size || v.Sha256 != it.SHA256 {
		return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISMATCH, fmt.Sprintf("the store holds %d bytes with SHA-256 %s; %d bytes with %s were collected",
			hr.n, v.Sha256, it.Size, it.SHA256)
	}
	if it.Bundle != nil {
		switch {
		case !it.Bundle.Valid:
			return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID, "the bundle was already invalid when it was collected: " + it.Bundle.Problem
		case bundleErr != nil:
			return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID, bundleErr.Error()
		case rep.Members != it.Bundle.Members:
			return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID, fmt.Sprintf("the bundle has %d members; %d were recorded", rep.Members, it.Bundle.Members)
		}
	}
	return operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK, ""
}

// GetCustody implements operatorv1.EvidenceServiceServer.
func (s *Service) GetCustody(ctx context.Context, req *operatorv1.GetCustodyRequest) (*operatorv1.GetCustodyResponse, error) {
	it, err := s.item(ctx, req.GetEvidenceId())
	if err != nil {
		return nil, err
	}
	entries, chk, err := s.checkCustody(ctx, it, nil)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("reading the custody of %s", it.ID))
	}
	out := &operatorv1.GetCustodyResponse{Item: ItemProto(it), ChainOk: chk.OK, FirstBadSeq: uint64(max(chk.FirstBadSeq, 0)), Problem: chk.Problem,
		Checkpoint: store.ProtoFromCheckpoint(chk.Checkpoint, s.t.CheckpointKey())}
	for _, e := range entries {
		out.Records = append(out.Records, &operatorv1.CustodyRecord{Seq: uint64(e.Seq), At: timestamppb.New(e.At), Actor: e.Actor, Action: e.Action,
			DetailJson: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash})
	}
	return out, nil
}

// VerdictName is the lower-case name of a verdict, e.g. "ok", "mismatch".
func VerdictName(v operatorv1.EvidenceVerdict) string {
	switch v {
	case operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNSPECIFIED:
		return ""
	case operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID:
		return "bundle_invalid"
	case operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_CUSTODY_BROKEN:
		return "custody_broken"
	}
	n := v.String()
	out := make([]byte, 0, len(n))
	for _, c := range []byte(n[len("EVIDENCE_VERDICT_"):]) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	return string(out)
}

// ItemProto converts an item for operators.
func ItemProto(it *Item) *operatorv1.EvidenceItem {
	out := &operatorv1.EvidenceItem{Id: it.ID, TaskId: it.TaskID, RunId: it.RunID, CaseId: it.CaseID, Operator: it.Operator,
		AgentId: it.AgentID, AgentCertSerial: it.CertSerial, AgentCertFingerprint: it.CertFingerprint, Hostname: it.Hostname,
		Name: it.Name, MediaType: it.MediaType, Size: uint64(it.Size), Sha256: it.SHA256, Backend: it.Backend, Location: it.Location,
		CollectionStartedAt:  apiview.Timestamp(it.StartedAt),
		CollectionFinishedAt: apiview.Timestamp(it.FinishedAt),
		StoredAt:             timestamppb.New(it.StoredAt),
		Resumes:              uint32(max(it.Resumes, 0)),
		LastVerifiedAt:       apiview.Timestamp(it.LastVerifiedAt),
		LastVerdict:          it.LastVerdict,
		RetainUntil:          apiview.Timestamp(it.RetainUntil),
	}
	if b := it.Bundle; b != nil {
		pb := &operatorv1.EvidenceBundle{Valid: b.Valid, Problem: b.Problem, CollectorName: b.CollectorName, CollectorVersion: b.CollectorVersion,
			Profile: b.Profile, Compression: b.Compression, Members: uint32(max(b.Members, 0)), PayloadBytes: uint64(max(b.PayloadBytes, 0)),
			Truncated: b.Truncated, TruncatedReasons: b.TruncatedReasons, ManifestTaskId: b.ManifestTaskID,
			Host: &operatorv1.EvidenceHost{Hostname: b.Host.Hostname, AgentId: b.Host.AgentID, InstanceId: b.Host.InstanceID, BootId: b.Host.BootID,
				MachineId: b.Host.MachineID, Kernel: b.Host.Kernel, Addresses: b.Host.Addresses}}
		for _, a := range b.Artifacts {
			pb.Artifacts = append(pb.Artifacts, &operatorv1.EvidenceArtifactStatus{Name: a.Name, Status: a.Status, Reason: a.Reason,
				Items: uint64(max(a.Items, 0)), Files: uint64(max(a.Files, 0)), Bytes: uint64(max(a.Bytes, 0)), Skipped: uint64(max(a.Skipped, 0)),
				Truncated: a.Truncated})
		}
		out.Bundle = pb
	}
	return out
}
