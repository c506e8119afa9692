package storeview

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func TestController(t *testing.T) {
	tests := []struct {
		name string
		in   *store.ControllerInfo
		want *operatorv1.ControllerInfo
	}{
		{"lease holder", &store.ControllerInfo{ID: "ctl-1", Address: "10.0.1.5:7443", Version: "0.1.0", StartedAt: t0, HeartbeatAt: t1, Agents: 12,
			Leases: []string{"playbook-executor", "sweeper"}},
			&operatorv1.ControllerInfo{Id: "ctl-1", Address: "10.0.1.5:7443", Version: "0.1.0", StartedAt: timestamppb.New(t0),
				HeartbeatAt: timestamppb.New(t1), Agents: 12, Leases: []string{"playbook-executor", "sweeper"}}},
		{"no agents, no leases", &store.ControllerInfo{ID: "ctl-2", HeartbeatAt: t1},
			&operatorv1.ControllerInfo{Id: "ctl-2", HeartbeatAt: timestamppb.New(t1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Controller(tt.in); !proto.Equal(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}
