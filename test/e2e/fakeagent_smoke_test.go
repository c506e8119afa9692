package e2e_test

import (
	"testing"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestFakeAgentSpeaksTheProtocol keeps the security tests' fake agent
// honest: it enrolls with a real token, connects, is listed, and receives
// and answers a real signed task.
func TestFakeAgentSpeaksTheProtocol(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", &agentv1.AgentFacts{Hostname: "fake-1", Os: "linux"})
	hello := &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "fake-1", Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}
	if _, err := f.Connect(t, hello, true); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID, "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("run %+v", run)
	}
	specs := f.TaskSpecs(t)
	if len(specs) != 1 || specs[0].GetAgentId() != f.ID || specs[0].GetAction() != "noop" {
		t.Fatalf("pushed %v", specs)
	}
}
