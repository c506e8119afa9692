package controller

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// servedMethods builds a controller and returns the full name of every
// method, unary or streaming, of every service its gRPC server registers.
func servedMethods(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(ctx, Config{DataDir: filepath.Join(t.TempDir(), "controller"), Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatalf("building the controller: %v", err)
	}
	var methods []string
	for service, info := range c.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			methods = append(methods, "/"+service+"/"+m.Name)
		}
	}
	// Run with a cancelled context stops at once and closes the store.
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Logf("stopping the controller: %v", err)
	}
	slices.Sort(methods)
	return methods
}

// declaredMethods returns every method of every service the agent and
// operator protos declare, so a service added to the protos but not yet
// given a policy fails here too.
func declaredMethods(t *testing.T) []string {
	t.Helper()
	// The generated packages register their files on import.
	_ = agentv1.File_firebreak_agent_v1_agent_proto
	_ = operatorv1.OperatorService_ServiceDesc
	_ = clusterv1.PeerService_ServiceDesc
	var methods []string
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		pkg := string(f.Package())
		if pkg != "firebreak.agent.v1" && pkg != "firebreak.operator.v1" && pkg != "firebreak.cluster.v1" {
			return true
		}
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				methods = append(methods, "/"+string(s.FullName())+"/"+string(s.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(methods) == 0 {
		t.Fatal("no agent or operator service is registered with protoregistry")
	}
	slices.Sort(methods)
	return methods
}

// TestEveryRPCHasAPolicy fails when a method the controller serves, or one
// the agent and operator protos declare, has no authorisation entry:
// Security-critical: the authenticator denies such a method, and an entry
// must be a deliberate choice of who may call it.
func TestEveryRPCHasAPolicy(t *testing.T) {
	policy := rpcPolicy()
	served := servedMethods(t)
	declared := declaredMethods(t)
	entries := map[string][]string{}
	for m := range policy.Open {
		entries[m] = append(entries[m], "open")
	}
	for m := range policy.Agent {
		entries[m] = append(entries[m], "agent")
	}
	for m := range policy.Controller {
		entries[m] = append(entries[m], "controller")
	}
	for m, role := range policy.Operator {
		if role == operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED {
			t.Errorf("%s has an operator entry with no role; name the least role that may call it", m)
			continue
		}
		entries[m] = append(entries[m], "operator")
	}
	all := append(slices.Clone(served), declared...)
	slices.Sort(all)
	for _, m := range slices.Compact(all) {
		switch kinds := entries[m]; len(kinds) {
		case 0:
			t.Errorf("%s has no authorisation policy entry: add it to the owning service's Policy (operator, cases, playbookrun, evidence) or to rpcPolicy", m)
		case 1:
		default:
			t.Errorf("%s is in more than one policy class (%s); a method is open, for agents, for operators or for controllers", m, strings.Join(kinds, ", "))
		}
	}
	for m := range entries {
		if !slices.Contains(served, m) {
			t.Errorf("the policy names %s, which the controller does not serve: a renamed or removed RPC left its entry", m)
		}
	}
	for _, m := range declared {
		if !slices.Contains(served, m) {
			t.Errorf("the protos declare %s, but the controller does not register it", m)
		}
	}
}

// TestOpenMethods pins what anyone may call without a certificate.
func TestOpenMethods(t *testing.T) {
	want := []string{
		"/firebreak.agent.v1.AgentService/Enroll",
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/List",
		"/grpc.health.v1.Health/Watch",
	}
	var got []string
	for m, open := range rpcPolicy().Open {
		if open {
			got = append(got, m)
		}
	}
	slices.Sort(got)
	// Security-critical: a method becomes callable without a certificate
	// only by changing this list too.
	if !slices.Equal(got, want) {
		t.Fatalf("open methods are %v; want %v", got, want)
	}
}
