package controller

import (
	"maps"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/route"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// rpcPolicy is who may call each method of the controller's gRPC server.
// The authenticator denies every method it does not name, and
// TestEveryRPCHasAPolicy fails when a registered method has no entry, so a
// new RPC is neither left open nor silently unusable.
func rpcPolicy() auth.Policy {
	policy := auth.Policy{
		Open: map[string]bool{
			agentv1.AgentService_Enroll_FullMethodName: true,
			healthpb.Health_Check_FullMethodName:       true,
			healthpb.Health_Watch_FullMethodName:       true,
			healthpb.Health_List_FullMethodName:        true,
		},
		Agent: map[string]bool{
			agentv1.AgentService_Renew_FullMethodName:          true,
			agentv1.AgentService_Connect_FullMethodName:        true,
			agentv1.AgentService_UploadEvidence_FullMethodName: true,
		},
		Operator:   maps.Clone(operator.Policy),
		Controller: route.PeerPolicy(),
	}
	maps.Copy(policy.Operator, evidence.Policy)
	maps.Copy(policy.Operator, console.Policy)
	policy.Operator = withIncidentPolicy(policy.Operator)
	return policy
}
