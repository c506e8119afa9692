package operator

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// verifyAudit serves VerifyAudit. It re-computes the chain, checks it
// against the newest signed checkpoint of its head and, when the request
// carries one, against an anchor exported earlier.
func (s *Service) verifyAudit(ctx context.Context, req *operatorv1.VerifyAuditRequest) (*operatorv1.VerifyAuditResponse, error) {
	var anchor *store.Checkpoint
	if req.GetAnchor() != nil {
		var err error
		if anchor, err = store.CheckpointFromProto(req.GetAnchor()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "the anchor is not an audit head exported by `firebreak audit head`: %v", err)
		}
		if s.cfg.Store.CheckpointKey() == nil {
			return nil, status.Error(codes.FailedPrecondition, "this controller signs no checkpoints, so it cannot check an anchor")
		}
	}
	chk, err := s.cfg.Store.VerifyAuditAnchor(ctx, anchor)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "verifying the audit log")
	}
	detail := map[string]any{"ok": chk.OK, "records": chk.Records, "head": chk.HeadHash}
	if anchor != nil {
		detail["anchor_length"], detail["anchor_head"], detail["anchor_ok"] = anchor.Length, anchor.Head, chk.AnchorOK
	}
	if !chk.OK {
		detail["first_bad_seq"], detail["problem"] = chk.FirstBadSeq, chk.Problem
		s.cfg.Logger.Error("the audit log does not verify", "first_bad_seq", chk.FirstBadSeq, "problem", chk.Problem)
	}
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "audit.verify", "", detail)
	return &operatorv1.VerifyAuditResponse{Ok: chk.OK, Records: uint64(chk.Records), FirstBadSeq: uint64(max(chk.FirstBadSeq, 0)),
		Problem: chk.Problem, HeadHash: chk.HeadHash, Checkpoint: store.ProtoFromCheckpoint(chk.Checkpoint, s.cfg.Store.CheckpointKey()),
		AnchorOk: chk.AnchorOK}, nil
}

// GetAuditHead implements operatorv1.OperatorServiceServer.
func (s *Service) GetAuditHead(ctx context.Context, _ *operatorv1.GetAuditHeadRequest) (*operatorv1.GetAuditHeadResponse, error) {
	k := s.cfg.Store.CheckpointKey()
	if k == nil {
		return nil, status.Error(codes.FailedPrecondition, "this controller signs no checkpoints, so it has no head to export")
	}
	chk, err := s.cfg.Store.VerifyAudit(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "verifying the audit log")
	}
	// Security-critical: a head is exported only for a log that verifies,
	// so an anchor never vouches for a tampered log.
	if !chk.OK {
		s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "audit.head", "", map[string]any{"ok": false, "first_bad_seq": chk.FirstBadSeq,
			"problem": chk.Problem})
		return nil, status.Errorf(codes.DataLoss, "the audit log does not verify at record %d (%s), so no head is exported: run `firebreak audit verify`",
			chk.FirstBadSeq, chk.Problem)
	}
	// The export is itself recorded; the head returned covers that record.
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "audit.head", "", map[string]any{"ok": true, "records": chk.Records, "head": chk.HeadHash})
	cp, err := s.cfg.Store.AuditCheckpoint(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the audit log's signed head")
	}
	if cp == nil {
		return nil, status.Error(codes.Unavailable, "the audit log has no signed head yet: the record of this export could not be written (see the controller's log)")
	}
	return &operatorv1.GetAuditHeadResponse{Head: store.ProtoFromCheckpoint(cp, k)}, nil
}
