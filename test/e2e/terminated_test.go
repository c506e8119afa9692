package e2e_test

import (
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestTerminatedInstanceAgent: a host agent enrolled by its instance
// identity document is marked terminated once its instance is terminated
// in the (emulated) account, as the controller reads it through the EC2
// API, never as the agent says; it is then neither offline nor a run's
// target, and it is forgotten after --forget-terminated-after, its audit
// records staying.
func TestTerminatedInstanceAgent(t *testing.T) {
	l := startAttestLab(t)
	b := e2e.Build(t)
	const forgetAfter = 6 * time.Second
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: append(l.controllerArgs(),
		"--terminated-check-every", "1s", "--forget-terminated-after", forgetAfter.String()),
		Env: awsec2test.WorkerEnv(t, l.lab)})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "sts-worker", Role: "worker", Env: awsec2test.WorkerEnv(t, l.lab),
		Args: []string{"--join", "aws-sts", "--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))
	c.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", l.mgmt)
	h := l.iidAgent(t, c, "iid-web-1", l.m0, l.fresh)
	hid := h.AgentID(t)
	c.WaitConnected(t, hid)

	find := func() (e2e.AgentJSON, bool) {
		for _, a := range c.Agents(t) {
			if a.ID == hid {
				return a, true
			}
		}
		return e2e.AgentJSON{}, false
	}
	// A running instance stays as it is through several sweeps.
	time.Sleep(3 * time.Second)
	if a, ok := find(); !ok || a.State != "connected" || a.TerminatedAt != nil {
		t.Fatalf("the agent of a running instance: %+v (listed %v); want connected, not terminated", a, ok)
	}

	if err := l.lab.Emu.TerminateInstance(l.m0, awstest.Region, l.fresh); err != nil {
		t.Fatal(err)
	}
	var marked e2e.AgentJSON
	e2e.WaitFor(t, 30*time.Second, "the agent to be marked terminated", func() bool {
		a, ok := find()
		marked = a
		return ok && a.State == "terminated"
	})
	if marked.Connected || marked.TerminatedAt == nil {
		t.Fatalf("the terminated agent %+v; want its stream closed and terminated_at set", marked)
	}
	if !audited(t, c, "agent.terminated", hid) {
		t.Fatal("no agent.terminated audit record")
	}
	// No run reaches it, and the refusal says why.
	if r := c.CLI(t, "run", "noop", "--select", "id="+hid); r.Exit == 0 || !contains(r.Stderr, "terminated") {
		t.Fatalf("a run at the terminated agent: exit %d, stderr %q; want a refusal naming the termination", r.Exit, r.Stderr)
	}

	e2e.WaitFor(t, forgetAfter+30*time.Second, "the terminated agent to be forgotten", func() bool {
		_, ok := find()
		return !ok
	})
	if !audited(t, c, "agent.forget", hid) {
		t.Fatal("no agent.forget audit record for the terminated agent")
	}
	// History stays: the termination is still in the audit log, and the
	// chain verifies.
	if !audited(t, c, "agent.terminated", hid) {
		t.Fatal("the agent.terminated record is gone after the forget")
	}
	c.MustJSON(t, nil, 0, "audit", "verify")
}
