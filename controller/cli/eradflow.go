package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// rpcFlow is eradflow's Backend over the operator RPCs: the runs are the
// operator's own, created with CreateRun and followed with WatchRun.
type rpcFlow struct {
	g *Globals
	c *client
}

// flow returns the scope and eradication flows, driven through the
// operator RPCs, with progress on standard error unless --json.
func (g *Globals) flow(c *client) *eradflow.Flow {
	f := &eradflow.Flow{Backend: &rpcFlow{g: g, c: c}}
	if !g.json {
		f.Progress = func(line string) { fmt.Fprintln(g.errOut, line) }
	}
	return f
}

func (b *rpcFlow) CreateRun(ctx context.Context, r eradflow.RunRequest) (string, error) {
	pj, err := json.Marshal(r.Params)
	if err != nil {
		return "", err
	}
	rctx, cancel := b.g.ctx(ctx)
	defer cancel()
	resp, err := b.c.op.CreateRun(rctx, &operatorv1.CreateRunRequest{Action: r.Action, Accounts: r.Accounts, ParamsJson: pj, CaseId: r.CaseID,
		Deadline: durationpb.New(r.Deadline), RequireApproval: r.RequireApproval, Reason: r.Reason})
	if err != nil {
		return "", rpcError(err)
	}
	return resp.GetRun().GetId(), nil
}

func (b *rpcFlow) FollowRun(ctx context.Context, runID string) (*operatorv1.Run, error) {
	return b.g.follow(ctx, b.c, runID)
}

func (b *rpcFlow) OrgAccounts(ctx context.Context) ([]string, error) {
	lctx, cancel := b.g.ctx(ctx)
	defer cancel()
	resp, err := b.c.op.ListAccounts(lctx, &operatorv1.ListAccountsRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, a := range resp.GetAccounts() {
		ids = append(ids, a.GetId())
	}
	return ids, nil
}

func (b *rpcFlow) AddNote(ctx context.Context, caseID, text string) error {
	nctx, cancel := b.g.ctx(ctx)
	defer cancel()
	if _, err := b.c.cases().AddNote(nctx, &operatorv1.AddNoteRequest{CaseId: caseID, Text: text}); err != nil {
		return rpcError(err)
	}
	return nil
}

func (b *rpcFlow) RecordVerification(ctx context.Context, planID string, runIDs []string) ([]byte, error) {
	rctx, cancel := b.g.ctx(ctx)
	defer cancel()
	vr, err := b.c.eradication().RecordVerification(rctx, &operatorv1.RecordVerificationRequest{PlanId: planID, RunIds: runIDs})
	if err != nil {
		return nil, rpcError(err)
	}
	return vr.GetVerificationJson(), nil
}
