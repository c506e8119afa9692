package e2e_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// awsState is a member account's state without the emulator's log of
// security-group changes, which is a record of calls, not AWS state.
func awsState(lab *awstest.Lab, account string) *awsemu.AccountState {
	s := lab.Emu.Dump().Account(account)
	for i := range s.Resources {
		for j := range s.Resources[i].NetworkInterfaces {
			s.Resources[i].NetworkInterfaces[j].GroupHistory = nil
		}
	}
	return s
}

// TestAWSEC2IsolationThroughAWorker runs the EC2 actions as an operator
// would: real controller, real worker agent and plugin binaries, the
// worker's credentials assumed from its profile into the member account,
// the AWS emulator in this test process.
func TestAWSEC2IsolationThroughAWorker(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	web := awsec2test.Instance(t, lab, member, "web-1")
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	tok := c.Token(t, "worker", 2)
	env := awsec2test.WorkerEnv(t, lab)
	good := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: tok, Role: "worker", Env: env, Labels: []string{"xid=lab"},
		Args: []string{"--external-id", awsemu.LabExternalID}})
	bad := c.StartAgent(t, e2e.AgentOptions{Name: "worker-wrong-xid", Token: tok, Role: "worker", Env: env, Labels: []string{"xid=wrong"},
		Args: []string{"--external-id", "not-the-lab-id"}})
	c.WaitConnected(t, good.AgentID(t), bad.AgentID(t))
	before := awsState(lab, member)

	// Capture first: the facts reach the evidence store. (Each run decodes
	// into a fresh RunJSON: decoding into a used one keeps old fields.)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", awsec2.CaptureName, "--select", "role=worker,label.xid=lab", "--param", "instance_id="+web, "--param", "account="+member, "--wait")
	if run.Succeeded != 1 || len(run.Results) != 1 {
		t.Fatalf("capture run %+v", run)
	}
	var captured awsec2.CaptureResult
	if err := json.Unmarshal(run.Results[0].Output, &captured); err != nil {
		t.Fatal(err)
	}
	if len(captured.Artifacts) != 3 || len(run.Results[0].Evidence) != len(captured.Artifacts) {
		t.Fatalf("capture artifacts %+v, evidence ids %v", captured.Artifacts, run.Results[0].Evidence)
	}

	// Isolate.
	run = e2e.RunJSON{}
	c.MustJSON(t, &run, 0, "run", awsec2.IsolateName, "--select", "role=worker,label.xid=lab", "--param", "instance_id="+web,
		"--param", "account="+member, "--param", "revoke_instance_profile=true", "--wait")
	if run.Status != "succeeded" || len(run.Results) != 1 || len(run.Results[0].Evidence) != 0 {
		t.Fatalf("isolation run %+v", run)
	}
	var iso awsec2.IsolateResult
	if err := json.Unmarshal(run.Results[0].Output, &iso); err != nil {
		t.Fatal(err)
	}
	if iso.AlreadyIsolated || iso.AutoScaling == nil || iso.AutoScaling.Method != "standby" || iso.SessionRevocation == nil || len(iso.Calls) == 0 ||
		iso.RunID != run.RunID {
		t.Fatalf("isolation result %+v", iso)
	}
	r := lab.Emu.Dump().Account(member).Region(awstest.Region)
	i := slices.IndexFunc(r.Instances, func(in awsemu.InstanceState) bool { return in.ID == web })
	in := r.Instances[i]
	if !slices.Equal(in.SecurityGroups, []string{iso.Network[0].IsolationGroup}) || !in.DisableAPITermination || in.InstanceProfile != "" ||
		in.Tags[awsec2.TagRun] != run.RunID || in.Tags[awsec2.TagRecord] == "" {
		t.Fatalf("instance after isolation %+v", in)
	}
	// The plugin acted as the run's session of the responder role.
	if !slices.ContainsFunc(lab.Emu.Calls(), func(call awsemu.Call) bool {
		return call.Operation == "ModifyNetworkInterfaceAttribute" && strings.HasSuffix(call.PrincipalARN, "assumed-role/FirebreakResponder/firebreak-"+run.RunID)
	}) {
		t.Error("no ModifyNetworkInterfaceAttribute call by the run's responder session")
	}

	// Again: nothing to do.
	run = e2e.RunJSON{}
	c.MustJSON(t, &run, 0, "run", awsec2.IsolateName, "--select", "role=worker,label.xid=lab", "--param", "instance_id="+web, "--param", "account="+member, "--wait")
	var again awsec2.IsolateResult
	if err := json.Unmarshal(run.Results[0].Output, &again); err != nil || !again.AlreadyIsolated || again.Changes != 0 {
		t.Fatalf("second isolation %s: %v", run.Results[0].Output, err)
	}

	// Roll back from the instance's record tags. The session deny outlives
	// an isolation by design; restore_role_sessions lifts it too, so the
	// whole account compares.
	run = e2e.RunJSON{}
	c.MustJSON(t, &run, 0, "run", awsec2.UnisolateName, "--select", "role=worker,label.xid=lab", "--param", "instance_id="+web, "--param", "account="+member,
		"--param", "restore_role_sessions=true", "--wait")
	var un awsec2.UnisolateResult
	if err := json.Unmarshal(run.Results[0].Output, &un); err != nil || un.RecordSource != "tag" || un.AlreadyUnisolated {
		t.Fatalf("unisolation %s: %v", run.Results[0].Output, err)
	}
	if diff := cmp.Diff(before, awsState(lab, member)); diff != "" {
		t.Fatalf("the rollback did not restore the account (-before +after):\n%s", diff)
	}

	// A worker whose ExternalId the responder role's trust policy refuses
	// cannot reach the account, and says why.
	run = e2e.RunJSON{}
	r2 := c.CLI(t, "run", awsec2.IsolateName, "--select", "role=worker,label.xid=wrong", "--param", "instance_id="+web, "--param", "account="+member, "--wait", "--json")
	if err := json.Unmarshal([]byte(r2.Stdout), &run); err != nil || r2.Exit == 0 {
		t.Fatalf("run with the wrong ExternalId: exit %d, %q: %v", r2.Exit, r2.Stdout, err)
	}
	if len(run.Results) != 1 || run.Results[0].Status != "unreachable" || !strings.Contains(run.Results[0].Error, "ExternalId") ||
		!strings.Contains(run.Results[0].Error, member) {
		t.Fatalf("wrong ExternalId: %+v", run.Results)
	}
	if diff := cmp.Diff(before, awsState(lab, member)); diff != "" {
		t.Fatalf("an unreachable task changed the account:\n%s", diff)
	}
}
