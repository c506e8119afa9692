package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// fakeOperator is an in-process operator service with fixed answers. A
// method whose error is set returns that error.
type fakeOperator struct {
	operatorv1.UnimplementedOperatorServiceServer

	mu sync.Mutex
	// agents is what ListAgents returns.
	agents []*operatorv1.Agent
	// runs is what ListRuns returns, and GetRun finds by id.
	runs []*operatorv1.Run
	// created is the run CreateRun returns; its id and action are the
	// request's.
	created *operatorv1.Run
	// done is the run WatchRun ends with, after a snapshot of created.
	done *operatorv1.Run
	// err, when set, is what every method returns.
	err error
	// requests are the CreateRun requests received.
	requests []*operatorv1.CreateRunRequest
	// calls counts the calls of every method.
	calls int
}

func (f *fakeOperator) begin() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *fakeOperator) ListAgents(context.Context, *operatorv1.ListAgentsRequest) (*operatorv1.ListAgentsResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	return &operatorv1.ListAgentsResponse{Agents: f.agents}, nil
}

func (f *fakeOperator) ListRuns(context.Context, *operatorv1.ListRunsRequest) (*operatorv1.ListRunsResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	return &operatorv1.ListRunsResponse{Runs: f.runs}, nil
}

func (f *fakeOperator) GetRun(_ context.Context, req *operatorv1.GetRunRequest) (*operatorv1.GetRunResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	for _, r := range f.runs {
		if r.GetId() == req.GetRunId() {
			return &operatorv1.GetRunResponse{Run: r}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "run %s not found", req.GetRunId())
}

func (f *fakeOperator) CreateRun(_ context.Context, req *operatorv1.CreateRunRequest) (*operatorv1.CreateRunResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	r := proto.Clone(f.created).(*operatorv1.Run)
	r.Action = req.GetAction()
	return &operatorv1.CreateRunResponse{Run: r}, nil
}

func (f *fakeOperator) WatchRun(req *operatorv1.WatchRunRequest, stream grpc.ServerStreamingServer[operatorv1.WatchRunResponse]) error {
	if err := f.begin(); err != nil {
		return err
	}
	if err := stream.Send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Snapshot{Snapshot: f.created}}); err != nil {
		return err
	}
	for _, t := range f.done.GetTasks() {
		if err := stream.Send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Task{Task: t}}); err != nil {
			return err
		}
	}
	return stream.Send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Done{Done: f.done}})
}

func (f *fakeOperator) GetAuditHead(context.Context, *operatorv1.GetAuditHeadRequest) (*operatorv1.GetAuditHeadResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	return &operatorv1.GetAuditHeadResponse{Head: &operatorv1.ChainCheckpoint{Length: 3, HeadHash: "abc", KeyId: "k1",
		At: timestamppb.New(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))}}, nil
}

// serve serves op over an in-memory listener and returns the dialer the
// CLI connects with.
func serve(t *testing.T, op operatorv1.OperatorServiceServer) func() (*grpc.ClientConn, error) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	operatorv1.RegisterOperatorServiceServer(srv, op)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return func() (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	}
}

// operatorCommands are the operator commands of this package, as the
// composition root lists them.
var operatorCommands = []Command{NewTokenCmd, NewAttestCmd, NewOperatorCmd, NewWhoamiCmd, NewAuditCmd, NewControllersCmd, NewConsoleCmd, NewAgentsCmd, NewActionsCmd, NewAccountsCmd,
	NewArtifactsCmd, NewRunCmd, NewIsolateCmd, NewUnisolateCmd, NewCollectCmd, NewRunsCmd, NewApproveCmd, NewRejectCmd, NewCancelCmd,
	NewPlaybookCmd, NewCaseCmd, NewFindingsCmd, NewEvidenceCmd, NewScopeCmd, NewEradicateCmd, NewVersionCmd, NewReadinessCmd}

// result is what one command printed and its exit code.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the firebreak command line args against the service dial
// reaches.
func run(t *testing.T, dial func() (*grpc.ClientConn, error), args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	g, flush := newGlobals(&out, &errOut)
	g.dialConn = dial
	root := NewRoot(g, operatorCommands)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := g.exit(root.ExecuteContext(ctx))
	flush()
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

var (
	t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	t1 = t0.Add(1500 * time.Millisecond)
)

func TestAgentsListJSON(t *testing.T) {
	op := &fakeOperator{agents: []*operatorv1.Agent{
		{Id: "agt_web1", Role: agentv1.AgentRole_AGENT_ROLE_HOST, Connected: true, LastSeen: timestamppb.New(t0), CertNotAfter: timestamppb.New(t1),
			Facts: &agentv1.AgentFacts{Hostname: "web-1", Labels: map[string]string{"env": "prod"}, AgentVersion: "0.1.0", Os: "linux", Arch: "amd64",
				InstanceId: "i-0abc", Account: "111122223333", Region: "eu-west-1", Isolated: true},
			Plugins:        []*agentv1.PluginInfo{{Description: &pluginv1.ActionDescription{Name: "noop", Version: "1.0.0"}, Sha256: "ab12"}},
			RefusedActions: []*operatorv1.RefusedAction{{Action: "noop", Reason: "described otherwise", Differences: []string{"version"}}}},
		{Id: "agt_wrk1", Role: agentv1.AgentRole_AGENT_ROLE_WORKER},
	}}
	r := run(t, serve(t, op), "agents", "list", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(got) != 2 {
		t.Fatalf("%d agents, want 2", len(got))
	}
	want := map[string]any{"id": "agt_web1", "role": "host", "hostname": "web-1", "connected": true, "isolated": true, "simulated": false,
		"instance_id": "i-0abc", "account": "111122223333", "region": "eu-west-1", "agent_version": "0.1.0", "identity_source": "certificate",
		"suspect": true, "last_seen": "2026-12-07T03:00:00Z", "cert_not_after": "2026-12-07T03:00:01.5Z",
		"labels": map[string]any{"env": "prod"}}
	for k, v := range want {
		if !jsonEqual(got[0][k], v) {
			t.Errorf("agent 0 %s = %v, want %v", k, got[0][k], v)
		}
	}
	if !jsonEqual(got[0]["plugins"], []any{map[string]any{"name": "noop", "version": "1.0.0", "sha256": "ab12"}}) {
		t.Errorf("plugins %v", got[0]["plugins"])
	}
	if !jsonEqual(got[0]["refused_actions"], []any{map[string]any{"action": "noop", "reason": "described otherwise", "differences": []any{"version"}}}) {
		t.Errorf("refused_actions %v", got[0]["refused_actions"])
	}
	if !jsonEqual(got[0]["reported"], map[string]any{"hostname": "web-1", "os": "linux", "arch": "amd64", "agent_version": "0.1.0",
		"isolated": true, "simulated": false, "labels": map[string]any{"env": "prod"}}) {
		t.Errorf("reported %v", got[0]["reported"])
	}
	// An agent with nothing reported: empty lists and maps, never null;
	// no time, null; identity fields omitted.
	w := got[1]
	if w["role"] != "worker" || w["last_seen"] != nil || !jsonEqual(w["labels"], map[string]any{}) || !jsonEqual(w["plugins"], []any{}) ||
		!jsonEqual(w["refused_actions"], []any{}) || w["suspect"] != false {
		t.Errorf("agent 1 %v", w)
	}
	for _, k := range []string{"instance_id", "account", "region", "cert_not_after"} {
		if _, ok := w[k]; ok {
			t.Errorf("agent 1 has %s; it is omitted when empty", k)
		}
	}
}

func TestRunsListJSON(t *testing.T) {
	op := &fakeOperator{runs: []*operatorv1.Run{
		{Id: "run-1", Action: "noop", Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CreatedBy: "alice", CreatedAt: timestamppb.New(t0),
			FinishedAt: timestamppb.New(t1), Counts: &operatorv1.RunCounts{Targets: 3, Succeeded: 2, Failed: 1}},
		{Id: "run-2", Action: "host-isolate", Status: operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, CreatedBy: "playbook:x", OnBehalfOf: "bob",
			CreatedAt: timestamppb.New(t1), Counts: &operatorv1.RunCounts{Targets: 20, Pending: 20}},
	}}
	r := run(t, serve(t, op), "runs", "list", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	wants := []map[string]any{
		{"run_id": "run-1", "action": "noop", "status": "succeeded", "targets": 3.0, "succeeded": 2.0, "failed": 1.0, "cancelled": 0.0,
			"offline": 0.0, "results": nil, "created_by": "alice", "created_at": "2026-12-07T03:00:00Z", "finished_at": "2026-12-07T03:00:01.5Z"},
		{"run_id": "run-2", "action": "host-isolate", "status": "awaiting_approval", "targets": 20.0, "succeeded": 0.0, "results": nil,
			"created_by": "playbook:x", "on_behalf_of": "bob", "created_at": "2026-12-07T03:00:01.5Z"},
	}
	if len(got) != len(wants) {
		t.Fatalf("%d runs, want %d", len(got), len(wants))
	}
	for i, want := range wants {
		for k, v := range want {
			if !jsonEqual(got[i][k], v) {
				t.Errorf("run %d %s = %v, want %v", i, k, got[i][k], v)
			}
		}
	}
	if _, ok := got[1]["finished_at"]; ok {
		t.Error("an unfinished run has finished_at; it is omitted")
	}
	if _, ok := got[0]["on_behalf_of"]; ok {
		t.Error("on_behalf_of is omitted when empty")
	}
}

func TestRunWaitExitCodes(t *testing.T) {
	task := func(agent string, s agentv1.TaskStatus, errText string) *operatorv1.Task {
		return &operatorv1.Task{Id: "tsk-" + agent, RunId: "run-1", AgentId: agent, Hostname: agent, Status: s, Error: errText,
			StartedAt: timestamppb.New(t0), FinishedAt: timestamppb.New(t1)}
	}
	ok1, ok2 := task("a1", agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, ""), task("a2", agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, "")
	bad := task("a2", agentv1.TaskStatus_TASK_STATUS_FAILED, "exit status 1")
	taskText := map[agentv1.TaskStatus]string{agentv1.TaskStatus_TASK_STATUS_SUCCEEDED: "succeeded", agentv1.TaskStatus_TASK_STATUS_FAILED: "failed"}
	tests := []struct {
		name       string
		status     operatorv1.RunStatus
		tasks      []*operatorv1.Task
		counts     *operatorv1.RunCounts
		wantExit   int
		wantStderr string
		wantStatus string
	}{
		{"succeeded", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, []*operatorv1.Task{ok1, ok2},
			&operatorv1.RunCounts{Targets: 2, Succeeded: 2}, ExitOK, "", "succeeded"},
		{"failed", operatorv1.RunStatus_RUN_STATUS_FAILED, []*operatorv1.Task{ok1, bad},
			&operatorv1.RunCounts{Targets: 2, Succeeded: 1, Failed: 1}, ExitRunFailed, "run run-1: 1 of 2 targets did not succeed", "failed"},
		{"rejected", operatorv1.RunStatus_RUN_STATUS_REJECTED, nil, &operatorv1.RunCounts{Targets: 2}, ExitRejected, "run run-1 was rejected", "rejected"},
		{"cancelled", operatorv1.RunStatus_RUN_STATUS_CANCELLED, nil, &operatorv1.RunCounts{Targets: 2}, ExitRejected, "run run-1 was cancelled", "cancelled"},
		{"awaiting approval", operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, nil, &operatorv1.RunCounts{Targets: 2}, ExitAwaitingApproval, "", "awaiting_approval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &fakeOperator{created: &operatorv1.Run{Id: "run-1", Status: operatorv1.RunStatus_RUN_STATUS_RUNNING},
				done: &operatorv1.Run{Id: "run-1", Action: "noop", Status: tt.status, Tasks: tt.tasks, Counts: tt.counts, CreatedBy: "alice"}}
			r := run(t, serve(t, op), "run", "noop", "--select", "all", "--wait", "--json")
			if r.code != tt.wantExit {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.wantExit, r.stderr)
			}
			if tt.wantStderr != "" && !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want %q", r.stderr, tt.wantStderr)
			}
			var got runJSON
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.stdout)
			}
			if got.RunID != "run-1" || got.Status != tt.wantStatus || got.Targets != int(tt.counts.GetTargets()) || len(got.Results) != len(tt.tasks) {
				t.Errorf("report %+v", got)
			}
			for i, res := range got.Results {
				if res.Status != taskText[tt.tasks[i].GetStatus()] || res.Duration != "1.5s" || string(res.Output) != "null" {
					t.Errorf("result %d %+v", i, res)
				}
			}
		})
	}
}

// TestRunWithoutWait: a run that awaits approval exits 4 at once; one that
// started exits 0 with its id on standard output.
func TestRunWithoutWait(t *testing.T) {
	tests := []struct {
		status     operatorv1.RunStatus
		wantExit   int
		wantStderr string
	}{
		{operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, ExitAwaitingApproval, "awaits approval by another operator: firebreak approve run-9"},
		{operatorv1.RunStatus_RUN_STATUS_RUNNING, ExitOK, "follow it with: firebreak runs show run-9 --wait"},
	}
	for _, tt := range tests {
		t.Run(tt.status.String(), func(t *testing.T) {
			op := &fakeOperator{created: &operatorv1.Run{Id: "run-9", Status: tt.status,
				Tasks: []*operatorv1.Task{{Id: "t1", AgentId: "a1"}, {Id: "t2", AgentId: "a2"}}}}
			r := run(t, serve(t, op), "isolate", "--select", "label.env=prod", "--allow", "10.0.0.0/8", "--reason", "case 7")
			if r.code != tt.wantExit || !strings.Contains(r.stderr, tt.wantStderr) || strings.TrimSpace(r.stdout) != "run-9" {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tt.wantExit, tt.wantStderr)
			}
			req := op.requests[0]
			if req.GetAction() != "host-isolate" || req.GetSelector() != "label.env=prod" || req.GetParams()["allow"] != "10.0.0.0/8" ||
				req.GetParams()["reason"] != "case 7" || req.GetReason() != "case 7" || req.GetDeadline().AsDuration() != time.Hour {
				t.Errorf("request %v", req)
			}
		})
	}
}

func TestRunsShowAwaitingApproval(t *testing.T) {
	op := &fakeOperator{runs: []*operatorv1.Run{{Id: "run-3", Action: "host-isolate", Status: operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL,
		Counts: &operatorv1.RunCounts{Targets: 12, Pending: 12}}}}
	dial := serve(t, op)
	if r := run(t, dial, "runs", "show", "run-3"); r.code != ExitAwaitingApproval || !strings.Contains(r.stdout, "AWAITING_APPROVAL") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, dial, "runs", "show", "run-404"); r.code != ExitError || !strings.Contains(r.stderr, "firebreak: run run-404 not found") {
		t.Fatalf("unknown run: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestControllerErrors: the exit code and message of each kind of failure
// the controller reports.
func TestControllerErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		args     []string
		wantExit int
		want     string
		notWant  string
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), []string{"agents", "list"}, ExitError,
			"firebreak: the controller is unreachable: connection refused\n", ""},
		{"internal", status.Error(codes.Internal, "the store failed (trace 4bf92f35)"), []string{"agents", "list"}, ExitError,
			"firebreak: the store failed (trace 4bf92f35)\n", "unreachable"},
		{"invalid argument", status.Error(codes.InvalidArgument, `unknown action "nosuch"`), []string{"run", "nosuch", "--select", "all"}, ExitUsage,
			"firebreak: unknown action \"nosuch\"\n", ""},
		{"permission denied", status.Error(codes.PermissionDenied, "a viewer may not create runs"), []string{"run", "noop", "--select", "all"}, ExitError,
			"firebreak: refused: a viewer may not create runs\n", ""},
		{"failed precondition worded like a usage error", status.Error(codes.FailedPrecondition, "the selector requires an agent: invalid argument"),
			[]string{"run", "noop", "--select", "all"}, ExitError, "firebreak: the selector requires an agent: invalid argument\n", ""},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), []string{"runs", "list"}, ExitError,
			"firebreak: the controller did not answer in time (raise --timeout): slow\n", ""},
		{"data loss on the audit head", status.Error(codes.DataLoss, "the audit log does not verify at record 4"), []string{"audit", "head"},
			ExitVerifyFailed, "firebreak: the audit log does not verify at record 4\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, serve(t, &fakeOperator{err: tt.err}), tt.args...)
			if r.code != tt.wantExit || r.stderr != tt.want || (tt.notWant != "" && strings.Contains(r.stderr, tt.notWant)) {
				t.Fatalf("exit %d stderr %q; want exit %d and %q", r.code, r.stderr, tt.wantExit, tt.want)
			}
		})
	}
}

// TestUsageErrorsNeverReachTheController: a wrong command line exits 2
// before anything is sent.
func TestUsageErrorsNeverReachTheController(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad max-errors", []string{"run", "noop", "--select", "all", "--max-errors", "lots"}, "max-errors"},
		{"no target", []string{"run", "noop"}, "say what to target"},
		{"bad param", []string{"run", "noop", "--select", "all", "--param", "novalue"}, "want key=value"},
		{"missing argument", []string{"run"}, "accepts 1 arg(s)"},
		{"unknown flag", []string{"agents", "list", "--bogus"}, "unknown flag"},
		{"required flag", []string{"accounts", "sync"}, "management-account"},
		{"unknown role", []string{"token", "create", "--role", "admin"}, "want host or worker"},
		{"unknown operator role", []string{"operator", "add", "eve", "--role", "root"}, "want viewer, responder, approver or admin"},
		{"unknown report format", []string{"case", "report", "case-1", "--format", "pdf"}, "want md, html or json"},
		{"unknown phase", []string{"case", "phase", "case-1", "triage"}, "want detect, analyze"},
		{"unknown profile", []string{"collect", "--select", "all", "--profile", "deep"}, "want triage or full"},
		{"unknown artifact", []string{"collect", "--select", "all", "--artifact", "nosuch"}, "not in the catalogue"},
		{"collect profile as a param", []string{"collect", "--select", "all", "--param", "profile=full"}, "use --profile instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &fakeOperator{}
			r := run(t, serve(t, op), tt.args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d stderr %q; want exit 2 and %q", r.code, r.stderr, tt.want)
			}
			if op.calls != 0 {
				t.Errorf("%d calls reached the controller", op.calls)
			}
		})
	}
}

// TestEnumNamesSent: the names the CLI parses are the wire values the
// controller expects.
func TestEnumNamesSent(t *testing.T) {
	op := &tokenOperator{}
	dial := serve(t, op)
	if r := run(t, dial, "token", "create", "--role", "worker", "--uses", "3", "--label", "team=ir"); r.code != ExitOK {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	if op.req.GetRole() != agentv1.AgentRole_AGENT_ROLE_WORKER || op.req.GetUses() != 3 || op.req.GetTtl().AsDuration() != time.Hour ||
		op.req.GetLabels()["team"] != "ir" {
		t.Errorf("request %v", op.req)
	}
	r := run(t, dial, "whoami", "--json")
	if r.code != ExitOK || !jsonEqualText(r.stdout, `{"name":"alice","role":"approver"}`) {
		t.Errorf("whoami: exit %d stdout %q", r.code, r.stdout)
	}
}

// tokenOperator answers CreateJoinToken and Whoami.
type tokenOperator struct {
	operatorv1.UnimplementedOperatorServiceServer
	req *operatorv1.CreateJoinTokenRequest
}

func (o *tokenOperator) CreateJoinToken(_ context.Context, req *operatorv1.CreateJoinTokenRequest) (*operatorv1.CreateJoinTokenResponse, error) {
	o.req = req
	return &operatorv1.CreateJoinTokenResponse{Token: "fbjt_secret", Uses: req.GetUses(), ExpiresAt: timestamppb.New(t0)}, nil
}

func (o *tokenOperator) Whoami(context.Context, *operatorv1.WhoamiRequest) (*operatorv1.WhoamiResponse, error) {
	return &operatorv1.WhoamiResponse{Name: "alice", Role: operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER}, nil
}

// jsonEqual compares a decoded JSON value with want.
func jsonEqual(got, want any) bool {
	a, err1 := json.Marshal(got)
	b, err2 := json.Marshal(want)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// jsonEqualText compares a JSON document with want.
func jsonEqualText(doc, want string) bool {
	var a, b any
	return json.Unmarshal([]byte(doc), &a) == nil && json.Unmarshal([]byte(want), &b) == nil && jsonEqual(a, b)
}
