package e2e_test

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestForgetRevokedAgent: a revoked agent stays listed (with --revoked)
// with its reason; its instance cannot enroll again, nor can a connected
// agent be forgotten; once forgotten, its runs keep naming it and its
// instance enrolls again.
func TestForgetRevokedAgent(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	facts := &agentv1.AgentFacts{Hostname: "victim", Os: "linux", InstanceId: "i-0feed", Account: "111111111111", Region: "eu-west-1"}
	hello := &agentv1.Hello{Facts: facts, Plugins: e2e.HonestPlugins(t, "noop")}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", facts)
	if _, err := f.Connect(t, hello, true); err != nil {
		t.Fatal(err)
	}
	bystanderFacts := &agentv1.AgentFacts{Hostname: "bystander", Os: "linux"}
	bystander := c.EnrollFake(t, c.Token(t, "host", 1), "host", bystanderFacts)
	if _, err := bystander.Connect(t, &agentv1.Hello{Facts: bystanderFacts}, false); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID, bystander.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID, "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("run before the revoke: %+v", run)
	}
	if r := c.CLI(t, "agents", "forget", bystander.ID); r.Exit != 1 || !contains(r.Stderr, "connected") {
		t.Fatalf("forgetting a connected agent: exit %d, stderr %q; want exit 1 saying it is connected", r.Exit, r.Stderr)
	}
	c.MustJSON(t, nil, 0, "agents", "revoke", f.ID, "--reason", "host compromised")

	type listed struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		RevokeReason string `json:"revoke_reason"`
	}
	var all []listed
	c.MustJSON(t, &all, 0, "agents", "list")
	for _, a := range all {
		if a.ID == f.ID {
			t.Fatalf("agents list without --revoked lists the revoked agent: %+v", a)
		}
	}
	c.MustJSON(t, &all, 0, "agents", "list", "--revoked", "--select", "instance_id=i-0feed")
	if len(all) != 1 || all[0].ID != f.ID || all[0].State != "revoked" || all[0].RevokeReason != "host compromised" {
		t.Fatalf("agents list --revoked: %+v; want the agent revoked with its reason", all)
	}

	// The instance cannot come back with a new enrollment.
	tok := c.Token(t, "host", 1)
	_, err := c.TryEnrollFake(tok, "host", facts)
	if status.Code(err) != codes.PermissionDenied || !contains(err.Error(), "forget") {
		t.Fatalf("re-enrolling the revoked instance: %v; want PermissionDenied naming forget", err)
	}
	if r := c.CLI(t, "agents", "forget", f.ID, bystander.ID); r.Exit != 1 {
		t.Fatalf("forgetting a revoked and a connected agent together: exit %d, want 1", r.Exit)
	}
	var gone []struct {
		ID  string `json:"id"`
		Why string `json:"why"`
	}
	c.MustJSON(t, &gone, 0, "agents", "forget", f.ID, "--reason", "instance rebuilt")
	if len(gone) != 1 || gone[0].ID != f.ID || gone[0].Why != "revoked" {
		t.Fatalf("agents forget: %+v", gone)
	}
	if !audited(t, c, "agent.forget", f.ID) {
		t.Fatal("no agent.forget audit record")
	}
	c.MustJSON(t, &all, 0, "agents", "list", "--revoked", "--select", "id="+f.ID)
	if len(all) != 0 {
		t.Fatalf("the forgotten agent is still listed: %+v", all)
	}
	// Its history stays attributed to it.
	var got struct {
		Results []struct {
			AgentID  string `json:"agent_id"`
			Hostname string `json:"hostname"`
		} `json:"results"`
	}
	c.MustJSON(t, &got, 0, "runs", "show", run.RunID)
	if len(got.Results) != 1 || got.Results[0].AgentID != f.ID || got.Results[0].Hostname != "victim" {
		t.Fatalf("the run after forgetting its agent: %+v; want its task still naming %s (victim)", got, f.ID)
	}
	_, err = f.Renew(t)
	wantDenied(t, "renewal by a forgotten agent", err)
	// The same token, which the refusal did not use up, now enrolls it.
	if _, err := c.TryEnrollFake(tok, "host", facts); err != nil {
		t.Fatalf("enrolling the instance after its agent was forgotten: %v", err)
	}
}

// TestRevokeMidRun: a run whose agent is revoked while its task is out
// ends at once, the task failed and saying the agent was revoked, not
// offline or timed out at the deadline.
func TestRevokeMidRun(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	hello := &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "silent", Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", hello.GetFacts())
	if _, err := f.Connect(t, hello, false); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID, "--deadline", "1h")
	e2e.WaitFor(t, time.Minute, "the task to reach the agent", func() bool { return len(f.Tasks()) == 1 })
	c.MustJSON(t, nil, 0, "agents", "revoke", f.ID, "--reason", "host compromised")
	var got e2e.RunJSON
	e2e.WaitFor(t, time.Minute, "the run to end", func() bool {
		got = e2e.RunJSON{}
		r := c.CLI(t, "runs", "show", run.RunID, "--json")
		return json.Unmarshal([]byte(r.Stdout), &got) == nil && got.Status != "" && got.Status != "running"
	})
	if got.Offline != 0 || len(got.Results) != 1 || got.Results[0].Status != "failed" || !contains(got.Results[0].Error, "revoked (host compromised)") {
		t.Fatalf("the run after its agent was revoked: %+v; want its task failed saying the agent was revoked", got)
	}
}
