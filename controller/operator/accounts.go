package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// DiscoverAction is the action that reads the organisation.
const DiscoverAction = "aws-org-discover"

// discovery is aws-org-discover's result.
type discovery struct {
	ManagementAccount string `json:"management_account"`
	Accounts          []struct {
		ID      string   `json:"id"`
		Name    string   `json:"name"`
		Email   string   `json:"email"`
		Status  string   `json:"status"`
		OUPath  string   `json:"ou_path"`
		Regions []string `json:"regions"`
		// Unknown is what could not be learned about the account.
		Unknown []store.AccountUnknown `json:"unknown"`
	} `json:"accounts"`
	Skipped []json.RawMessage `json:"skipped"`
}

// SyncAccounts implements operatorv1.OperatorServiceServer.
func (s *Service) SyncAccounts(ctx context.Context, req *operatorv1.SyncAccountsRequest) (*operatorv1.SyncAccountsResponse, error) {
	mgmt := strings.TrimSpace(req.GetManagementAccount())
	if !runs.AccountIDRE.MatchString(mgmt) {
		return nil, status.Errorf(codes.InvalidArgument, "--management-account %q is not a 12-digit account id", mgmt)
	}
	sel := req.GetSelector()
	if sel == "" {
		sel = "role=worker"
	}
	deadline := 5 * time.Minute
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsDuration()
	}
	plan, err := s.cfg.Planner.Plan(ctx, actor(ctx), runs.Spec{Action: DiscoverAction, Selector: sel, Params: map[string]string{"account": mgmt},
		Deadline: deadline, Reason: "account discovery"})
	if err != nil {
		return nil, s.planErrorStatus(ctx, err)
	}
	// One worker reads the organisation; prefer one in the management account.
	pick := plan.Tasks[0]
	for _, t := range plan.Tasks {
		if a, err := s.cfg.Store.GetAgent(ctx, t.AgentID); err == nil && a.Facts.GetAccount() == mgmt {
			pick = t
			break
		}
	}
	pick.Seq = 0
	plan.Tasks = []*store.Task{pick}
	plan.Run.Status = operatorv1.RunStatus_RUN_STATUS_RUNNING
	if err := s.cfg.Store.CreateRun(ctx, plan.Run, plan.Tasks); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the run")
	}
	s.cfg.Dispatcher.Submit(plan.Run, plan.Tasks, "", "")
	run, err := s.waitRun(ctx, plan.Run.ID)
	if err != nil {
		return nil, err
	}
	if len(run.GetTasks()) != 1 || run.GetTasks()[0].GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		msg := "no result"
		if len(run.GetTasks()) == 1 {
			msg = run.GetTasks()[0].GetError()
		}
		return nil, status.Errorf(codes.FailedPrecondition, "account discovery (run %s) failed: %s", run.GetId(), msg)
	}
	var d discovery
	if err := json.Unmarshal(run.GetTasks()[0].GetOutputJson(), &d); err != nil {
		return nil, status.Errorf(codes.Internal, "account discovery returned unreadable output: %v", err)
	}
	now := s.cfg.Clock()
	resp := &operatorv1.SyncAccountsResponse{RunId: run.GetId()}
	var accounts []*store.Account
	for _, a := range d.Accounts {
		if !runs.AccountIDRE.MatchString(a.ID) {
			resp.Skipped = append(resp.Skipped, fmt.Sprintf("%q: not an account id", a.ID))
			continue
		}
		if a.Status != "ACTIVE" {
			resp.Skipped = append(resp.Skipped, fmt.Sprintf("%s (%s): %s", a.ID, a.Name, a.Status))
			continue
		}
		accounts = append(accounts, &store.Account{ID: a.ID, Name: a.Name, Email: a.Email, Status: a.Status, OUPath: a.OUPath,
			Regions: a.Regions, SyncedAt: now, Unknown: a.Unknown})
	}
	for _, sk := range d.Skipped {
		resp.Skipped = append(resp.Skipped, strings.Trim(string(sk), `"`))
	}
	sort.Slice(accounts, func(i, j int) bool { return accounts[i].ID < accounts[j].ID })
	if err := s.cfg.Store.ReplaceAccounts(ctx, accounts); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the accounts")
	}
	unknown := 0
	for _, a := range accounts {
		if len(a.Unknown) > 0 {
			unknown++
		}
	}
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "accounts.sync", mgmt, map[string]any{"run": run.GetId(), "accounts": len(accounts), "skipped": len(resp.Skipped),
		"incomplete": unknown})
	for _, a := range accounts {
		resp.Accounts = append(resp.Accounts, accountProto(a))
	}
	return resp, nil
}

// waitRun follows a run to its end.
func (s *Service) waitRun(ctx context.Context, runID string) (*operatorv1.Run, error) {
	snap, sub, err := s.cfg.Dispatcher.Watch(ctx, runID)
	if err != nil {
		return nil, err
	}
	if sub == nil {
		if snap != nil {
			return runView(snap), nil
		}
		return s.storedRun(ctx, runID)
	}
	defer s.cfg.Dispatcher.Unwatch(sub)
	for {
		select {
		case <-ctx.Done():
			return nil, status.Errorf(codes.DeadlineExceeded, "run %s is still going: follow it with `firebreak runs show %s --wait`", runID, runID)
		case m, ok := <-sub.C:
			if !ok {
				return s.storedRun(ctx, runID)
			}
			if m.Kind == dispatch.EventDone {
				return runView(m.Run), nil
			}
		}
	}
}

func accountProto(a *store.Account) *operatorv1.AWSAccount {
	out := &operatorv1.AWSAccount{Id: a.ID, Name: a.Name, Email: a.Email, Status: a.Status, OuPath: a.OUPath, Regions: a.Regions,
		SyncedAt: timestamppb.New(a.SyncedAt)}
	for _, u := range a.Unknown {
		out.Unknown = append(out.Unknown, &operatorv1.AccountUnknown{Field: u.Field, Reason: u.Reason, Remediation: u.Remediation})
	}
	return out
}

// ListAccounts implements operatorv1.OperatorServiceServer.
func (s *Service) ListAccounts(ctx context.Context, _ *operatorv1.ListAccountsRequest) (*operatorv1.ListAccountsResponse, error) {
	accounts, err := s.cfg.Store.ListAccounts(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the accounts")
	}
	resp := &operatorv1.ListAccountsResponse{}
	for _, a := range accounts {
		resp.Accounts = append(resp.Accounts, accountProto(a))
	}
	return resp, nil
}
