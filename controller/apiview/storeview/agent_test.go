package storeview

import (
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestAgent(t *testing.T) {
	facts := &agentv1.AgentFacts{Hostname: "web-1", Account: "111111111111"}
	plugins := []*agentv1.PluginInfo{{Sha256: "ab12"}}
	tests := []struct {
		name      string
		in        *store.Agent
		connected bool
		want      *operatorv1.Agent
	}{
		{"connected host", &store.Agent{ID: "a1", Role: "host", Plugins: plugins, EnrolledAt: t0, LastSeen: t1, CertNotAfter: t1},
			true, &operatorv1.Agent{Id: "a1", Role: agentv1.AgentRole_AGENT_ROLE_HOST, Facts: facts, Connected: true,
				Plugins: plugins, EnrolledAt: timestamppb.New(t0), LastSeen: timestamppb.New(t1), CertNotAfter: timestamppb.New(t1)}},
		{"never seen worker", &store.Agent{ID: "w1", Role: "worker"}, false,
			&operatorv1.Agent{Id: "w1", Role: agentv1.AgentRole_AGENT_ROLE_WORKER, Facts: facts}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Agent(tt.in, facts, tt.connected); !proto.Equal(got, tt.want) {
				t.Errorf("Agent = %v, want %v", got, tt.want)
			}
		})
	}
}
