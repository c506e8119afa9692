package cli

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// scopeOperator answers aws-credential-scope runs with the result each
// (key, account) was given, and records the case notes.
type scopeOperator struct {
	operatorv1.UnimplementedOperatorServiceServer
	operatorv1.UnimplementedCaseServiceServer

	mu      sync.Mutex
	results map[string]map[string]any // key@accounts → result
	failed  map[string]bool           // key@accounts → its task fails
	runs    map[string]*operatorv1.Run
	reqs    []*operatorv1.CreateRunRequest
	notes   []*operatorv1.AddNoteRequest
}

func (s *scopeOperator) ListAccounts(context.Context, *operatorv1.ListAccountsRequest) (*operatorv1.ListAccountsResponse, error) {
	return &operatorv1.ListAccountsResponse{Accounts: []*operatorv1.AWSAccount{{Id: "210987654302"}, {Id: "210987654303"}}}, nil
}

func (s *scopeOperator) CreateRun(_ context.Context, req *operatorv1.CreateRunRequest) (*operatorv1.CreateRunResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p map[string]any
	_ = json.Unmarshal(req.GetParamsJson(), &p)
	s.reqs = append(s.reqs, req)
	id := "run-" + string(rune('a'+len(s.reqs)-1))
	key, _ := p["access_key_id"].(string)
	out, _ := json.Marshal(s.results[key+"@"+req.GetAccounts()])
	run := &operatorv1.Run{Id: id, Action: req.GetAction(), Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
		Tasks: []*operatorv1.Task{{Id: id + "-1", RunId: id, Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: out, Account: req.GetAccounts()}}}
	if s.failed[key+"@"+req.GetAccounts()] {
		run.Status, run.Tasks[0].Status, run.Tasks[0].Error = operatorv1.RunStatus_RUN_STATUS_FAILED, agentv1.TaskStatus_TASK_STATUS_FAILED, "ThrottlingException"
	}
	s.runs[id] = run
	return &operatorv1.CreateRunResponse{Run: run}, nil
}

func (s *scopeOperator) WatchRun(req *operatorv1.WatchRunRequest, stream grpc.ServerStreamingServer[operatorv1.WatchRunResponse]) error {
	s.mu.Lock()
	run := s.runs[req.GetRunId()]
	s.mu.Unlock()
	return stream.Send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Done{Done: run}})
}

func (s *scopeOperator) AddNote(_ context.Context, req *operatorv1.AddNoteRequest) (*operatorv1.AddNoteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, req)
	return &operatorv1.AddNoteResponse{}, nil
}

func serveScope(t *testing.T, s *scopeOperator, more ...func(*grpc.Server)) func() (*grpc.ClientConn, error) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	operatorv1.RegisterOperatorServiceServer(srv, s)
	operatorv1.RegisterCaseServiceServer(srv, s)
	for _, m := range more {
		m(srv)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return func() (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	}
}

func scopeResult(key, account string, next []map[string]string, arts []trailscope.Artifact, creds []*trailscope.Credential) map[string]any {
	return map[string]any{"account": account, "source": "lookup", "access_key_id": key, "next_keys": next,
		"scope": map[string]any{"chain": map[string]any{"seed": key, "credentials": creds}, "events": 3,
			"places":   []map[string]any{{"account": account, "region": "us-east-1", "events": 3}},
			"by_class": map[string]int{"persistence": len(arts)}, "artifacts": arts}}
}

func TestScopeKeyFollowsSessionsIntoOtherAccounts(t *testing.T) {
	const leaked, hop, a, b = "AKIAIOSFODNN7EXAMPLE", "ASIAQRSTUVWXYZEXAMPL", "210987654302", "210987654303"
	chain := []*trailscope.Credential{{AccessKeyID: leaked, Account: a}, {AccessKeyID: hop, Parent: leaked, Via: "AssumeRole", Account: b, CrossAccount: true}}
	s := &scopeOperator{runs: map[string]*operatorv1.Run{}, results: map[string]map[string]any{
		leaked + "@all": scopeResult(leaked, a, []map[string]string{{"access_key_id": hop, "account": b}},
			[]trailscope.Artifact{{Kind: trailscope.KindAccessKey, Account: a, Region: "us-east-1", ID: "AKIABACKDOOREXAMPLE"}}, chain),
		hop + "@" + b: scopeResult(hop, b, nil,
			[]trailscope.Artifact{{Kind: trailscope.KindIngressRule, Account: b, Region: "eu-west-1", ID: "sg-1", Public: true}}, chain[1:]),
	}}
	r := run(t, serveScope(t, s), "scope", "key", leaked, "--since", "30d", "--case", "case-1", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if len(s.reqs) != 2 || s.reqs[0].GetAccounts() != "all" || s.reqs[1].GetAccounts() != b || s.reqs[0].GetCaseId() != "case-1" || s.reqs[1].GetAction() != "aws-credential-scope" {
		t.Fatalf("runs %v", s.reqs)
	}
	var p map[string]any
	_ = json.Unmarshal(s.reqs[0].GetParamsJson(), &p)
	if p["start"] != "30d" || p["access_key_id"] != leaked || len(p["org_accounts"].([]any)) != 2 {
		t.Fatalf("params %v", p)
	}
	var out eradflow.ScopeResult
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(out.Artifacts) != 2 || len(out.Sessions) != 2 || out.Events != 6 || len(out.Accounts) != 2 || len(out.Runs) != 2 {
		t.Fatalf("merged %+v", out)
	}
	if len(s.notes) != 1 || s.notes[0].GetCaseId() != "case-1" || !strings.Contains(s.notes[0].GetText(), "ec2-ingress-rule sg-1 in "+b+"/eu-west-1 (public)") {
		t.Fatalf("case notes %v", s.notes)
	}
}

func TestScopeKeyFromTheTrailBucket(t *testing.T) {
	const leaked, archive = "AKIAIOSFODNN7EXAMPLE", "210987654301"
	s := &scopeOperator{runs: map[string]*operatorv1.Run{}, results: map[string]map[string]any{
		leaked + "@" + archive: scopeResult(leaked, archive, nil, nil, []*trailscope.Credential{{AccessKeyID: leaked}}),
	}}
	r := run(t, serveScope(t, s), "scope", "key", leaked, "--trail-bucket", "org-trail-logs", "--log-archive", archive)
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var p map[string]any
	_ = json.Unmarshal(s.reqs[0].GetParamsJson(), &p)
	if len(s.reqs) != 1 || s.reqs[0].GetAccounts() != archive || p["source"] != "trail" || p["trail_bucket"] != "org-trail-logs" {
		t.Fatalf("runs %v, params %v", s.reqs, p)
	}
	if !strings.Contains(r.stdout, "No artifact") {
		t.Fatalf("output %s", r.stdout)
	}
}

func TestScopeKeyRefusesBadInput(t *testing.T) {
	s := &scopeOperator{runs: map[string]*operatorv1.Run{}}
	for _, args := range [][]string{
		{"scope", "key", "not-a-key"},
		{"scope", "key", "AKIAIOSFODNN7EXAMPLE", "--trail-bucket", "b"},
		{"scope", "key", "AKIAIOSFODNN7EXAMPLE", "--trail-bucket", "b", "--log-archive", "12"},
	} {
		if r := run(t, serveScope(t, s), args...); r.code != ExitUsage {
			t.Fatalf("%v: exit %d, want usage", args, r.code)
		}
	}
	if len(s.reqs) != 0 {
		t.Fatal("a run was made from bad input")
	}
}
