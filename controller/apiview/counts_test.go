package apiview

import (
	"testing"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func TestCountTask(t *testing.T) {
	tests := []struct {
		status agentv1.TaskStatus
		want   *operatorv1.RunCounts
	}{
		{agentv1.TaskStatus_TASK_STATUS_PENDING, &operatorv1.RunCounts{Pending: 1}},
		{agentv1.TaskStatus_TASK_STATUS_DISPATCHED, &operatorv1.RunCounts{Running: 1}},
		{agentv1.TaskStatus_TASK_STATUS_RUNNING, &operatorv1.RunCounts{Running: 1}},
		{agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, &operatorv1.RunCounts{Succeeded: 1}},
		{agentv1.TaskStatus_TASK_STATUS_CANCELLED, &operatorv1.RunCounts{Cancelled: 1}},
		{agentv1.TaskStatus_TASK_STATUS_OFFLINE, &operatorv1.RunCounts{Offline: 1}},
		{agentv1.TaskStatus_TASK_STATUS_FAILED, &operatorv1.RunCounts{Failed: 1}},
		{agentv1.TaskStatus_TASK_STATUS_TIMED_OUT, &operatorv1.RunCounts{Failed: 1}},
		{agentv1.TaskStatus_TASK_STATUS_UNSPECIFIED, &operatorv1.RunCounts{Failed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.status.String(), func(t *testing.T) {
			got := &operatorv1.RunCounts{}
			CountTask(got, tt.status)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("CountTask(%v) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}
