package e2e_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestWorkerStartedBeforeAWSRecovers: a worker whose AWS endpoint is not
// up yet enrolls, connects and shows itself degraded with the reason; once
// the emulator comes up on that endpoint, the same process (no restart)
// recovers and acts in a member account.
func TestWorkerStartedBeforeAWSRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	seed := awsemu.LabSeed(3)
	lab := &awstest.Lab{Endpoint: "http://" + addr, Seed: seed}
	member := awstest.Member(0)

	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "early-worker", Token: c.Token(t, "worker", 1), Role: "worker",
		Env: awsec2test.WorkerEnv(t, lab), Args: []string{"--external-id", awsemu.LabExternalID}})
	id := w.AgentID(t)
	c.WaitConnected(t, id)
	pid := w.Pid()

	type listed struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Connected bool   `json:"connected"`
		Degraded  string `json:"degraded"`
	}
	state := func() listed {
		var all []listed
		c.MustJSON(t, &all, 0, "agents", "list", "--select", "id="+id)
		if len(all) != 1 {
			t.Fatalf("agents list --select id=%s: %+v", id, all)
		}
		return all[0]
	}
	e2e.WaitFor(t, time.Minute, "the worker to report itself degraded", func() bool { return state().Degraded != "" })
	if s := state(); !s.Connected || !contains(s.Degraded, "GetCallerIdentity") {
		t.Fatalf("the degraded worker is listed as %+v; want connected, degraded naming sts:GetCallerIdentity", s)
	}
	r := c.CLI(t, "run", awsec2.CaptureName, "--select", "id="+id, "--param", "instance_id=i-0000000000000000", "--param", "account="+member, "--wait", "--json")
	if r.Exit == 0 || !contains(r.Stdout+r.Stderr, "degraded") {
		t.Fatalf("a run through the degraded worker: exit %d\n%s%s\nwant a failure saying it is degraded", r.Exit, r.Stdout, r.Stderr)
	}

	// The AWS endpoint comes up late, at the address the worker was given.
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if _, stop, err := emu.Start(addr); err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(func() { _ = stop(context.Background()) })
	}
	lab.Emu = emu
	// The retry backoff is capped at a minute, with full jitter.
	e2e.WaitFor(t, 3*time.Minute, "the worker to recover", func() bool { return state().Degraded == "" })
	if w.Pid() != pid || !w.Running() {
		t.Fatalf("the worker was restarted (pid %d, now %d): it must recover in place", pid, w.Pid())
	}
	web := awsec2test.Instance(t, lab, member, "web-1")
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", awsec2.CaptureName, "--select", "id="+id, "--param", "instance_id="+web, "--param", "account="+member, "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("a run through the recovered worker: %+v", run)
	}
}
