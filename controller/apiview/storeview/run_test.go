package storeview

import (
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

func TestRun(t *testing.T) {
	run := &store.Run{ID: "run-1", Action: "host-isolate", Selector: "role=host", ParamsJSON: []byte(`{}`),
		Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", OnBehalfOf: "bob", CreatedAt: t0,
		Deadline: t1, MaxConcurrency: 5, MaxErrors: "10%", Reason: "ir-7", CaseID: "case-1", Destructive: true}
	tasks := []*store.Task{
		{ID: "t1", RunID: "run-1", AgentID: "a1", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, FinishedAt: t1},
		{ID: "t2", RunID: "run-1", AgentID: "a2", Status: agentv1.TaskStatus_TASK_STATUS_OFFLINE},
	}
	aps := []*store.Approval{{RunID: "run-1", Operator: "carol", Approved: true, At: t1, Comment: "ok"}}
	base := func() *operatorv1.Run {
		return &operatorv1.Run{Id: "run-1", Action: "host-isolate", Selector: "role=host", ParamsJson: []byte(`{}`),
			Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", OnBehalfOf: "bob",
			CreatedAt: timestamppb.New(t0), Deadline: timestamppb.New(t1), MaxConcurrency: 5, MaxErrors: "10%",
			Reason: "ir-7", CaseId: "case-1", Destructive: true}
	}
	tests := []struct {
		name      string
		run       *store.Run
		tasks     []*store.Task
		approvals []*store.Approval
		want      func() *operatorv1.Run
	}{
		{"header only", run, nil, nil, func() *operatorv1.Run {
			r := base()
			r.Counts = &operatorv1.RunCounts{}
			return r
		}},
		{"with tasks and approvals", run, tasks, aps, func() *operatorv1.Run {
			r := base()
			r.Tasks = []*operatorv1.Task{
				{Id: "t1", RunId: "run-1", AgentId: "a1", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, FinishedAt: timestamppb.New(t1)},
				{Id: "t2", RunId: "run-1", AgentId: "a2", Status: agentv1.TaskStatus_TASK_STATUS_OFFLINE},
			}
			r.Counts = &operatorv1.RunCounts{Targets: 2, Succeeded: 1, Offline: 1}
			r.Approvals = []*operatorv1.Approval{{Operator: "carol", Approved: true, At: timestamppb.New(t1), Comment: "ok"}}
			return r
		}},
		{"negative concurrency is zero", &store.Run{ID: "r", MaxConcurrency: -1}, nil, nil, func() *operatorv1.Run {
			return &operatorv1.Run{Id: "r", Counts: &operatorv1.RunCounts{}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := Run(tt.run, tt.tasks, tt.approvals), tt.want(); !proto.Equal(got, want) {
				t.Errorf("Run =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestRunWithCounts(t *testing.T) {
	c := store.RunCounts{Targets: 7, Pending: 1, Running: 2, Succeeded: 1, Failed: 1, Cancelled: 1, Offline: 1}
	got := RunWithCounts(&store.Run{ID: "r"}, nil, nil, c)
	want := &operatorv1.RunCounts{Targets: 7, Pending: 1, Running: 2, Succeeded: 1, Failed: 1, Cancelled: 1, Offline: 1}
	if len(got.GetTasks()) != 0 || !proto.Equal(got.GetCounts(), want) {
		t.Errorf("RunWithCounts counts %v tasks %d; want %v and no tasks", got.GetCounts(), len(got.GetTasks()), want)
	}
}

func TestTask(t *testing.T) {
	tests := []struct {
		name string
		in   *store.Task
		want *operatorv1.Task
	}{
		{"pending: no times", &store.Task{ID: "t", RunID: "r", AgentID: "a", Hostname: "h", Status: agentv1.TaskStatus_TASK_STATUS_PENDING},
			&operatorv1.Task{Id: "t", RunId: "r", AgentId: "a", Hostname: "h", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}},
		{"finished", &store.Task{ID: "t", Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: "boom", OutputJSON: []byte(`{"x":1}`),
			DispatchedAt: t0, StartedAt: t0, FinishedAt: t1, Account: "111111111111", Region: "eu-west-1",
			EvidenceIDs: []string{"ev-1"}, LastMessage: "done", Seq: 3, SignedTask: []byte("sig")},
			&operatorv1.Task{Id: "t", Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: "boom", OutputJson: []byte(`{"x":1}`),
				DispatchedAt: timestamppb.New(t0), StartedAt: timestamppb.New(t0), FinishedAt: timestamppb.New(t1),
				Account: "111111111111", Region: "eu-west-1", EvidenceIds: []string{"ev-1"}, LastMessage: "done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Task(tt.in); !proto.Equal(got, tt.want) {
				t.Errorf("Task = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApproval(t *testing.T) {
	tests := []struct {
		in   *store.Approval
		want *operatorv1.Approval
	}{
		{&store.Approval{RunID: "r", Operator: "bob", Approved: true, At: t0, Comment: "go"},
			&operatorv1.Approval{Operator: "bob", Approved: true, At: timestamppb.New(t0), Comment: "go"}},
		{&store.Approval{RunID: "r", Operator: "bob"}, &operatorv1.Approval{Operator: "bob"}},
	}
	for _, tt := range tests {
		if got := Approval(tt.in); !proto.Equal(got, tt.want) {
			t.Errorf("Approval(%+v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
