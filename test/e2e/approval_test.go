package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestRuleProposedPlaybookKeepsTheTwoPersonRule is issue 11's finding 2
// through the real binaries. A rule in approve mode proposes a playbook
// whose step contains an IAM user in two accounts: destructive, over the
// approval threshold of one target. bob approves the playbook run; the
// step's run is then created on his behalf, so his approval of it is
// refused with the reason, and nothing changes in AWS. carol, a second
// approver, approves it and the containment runs.
func TestRuleProposedPlaybookKeepsTheTwoPersonRule(t *testing.T) {
	lab := awstest.Start(t, 4)
	mgmt, m0, m1 := awsemu.LabAccountID(0), awstest.Member(0), awstest.Member(1)
	b := e2e.Build(t)
	dir := t.TempDir()
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pbDir, "contain-user.yaml"), fmt.Sprintf(`apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: contain-user
  version: 1
inputs:
  - {name: user_name, type: string, required: true}
steps:
  - id: contain
    phase: contain
    action: aws-iam-contain
    targets: {accounts: "%s,%s", regions: [%s]}
    params: {user: "${{ inputs.user_name }}"}
`, m0, m1, awstest.Region))
	write(filepath.Join(dir, "rules.yaml"), `
- name: leaked-user-key
  match: {types: ["UnauthorizedAccess:IAMUser/*"]}
  playbook: contain-user
  mode: approve
`)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--playbook-dir", pbDir, "--rules", filepath.Join(dir, "rules.yaml"),
		"--approval-threshold", "1"}})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))
	c.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", mgmt)
	bob, carol := filepath.Join(dir, "bob.creds"), filepath.Join(dir, "carol.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)
	c.MustJSON(t, nil, 0, "operator", "add", "carol", "--role", "approver", "-o", carol)

	// The finding: ci-deployer's key in the first member account is used
	// from outside.
	event := fmt.Sprintf(`{"version": "0", "id": "5d1e0c3a-2b4f-4e6a-8c7d-9e0f1a2b3c4d", "detail-type": "GuardDuty Finding",
  "source": "aws.guardduty", "account": %[1]q, "time": "2026-11-30T09:00:00Z", "region": %[2]q, "resources": [],
  "detail": {"schemaVersion": "2.0", "accountId": %[1]q, "region": %[2]q, "partition": "aws", "id": "c0ffee00c0ffee00c0ffee00c0ffee01",
    "type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller", "title": "API called from a known malicious IP", "description": "e2e",
    "severity": 8, "createdAt": "2026-11-30T08:59:00Z", "updatedAt": "2026-11-30T08:59:30Z",
    "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": "AKIAEXAMPLEE2E00001", "principalId": "AIDAEXAMPLEE2E00001",
      "userType": "IAMUser", "userName": %[3]q}},
    "service": {"serviceName": "guardduty", "eventFirstSeen": "2026-11-30T08:58:00Z", "eventLastSeen": "2026-11-30T08:59:00Z", "count": 1}}}`,
		m0, awstest.Region, awsemu.LabCompromisedUser)
	eventFile := filepath.Join(dir, "finding.json")
	write(eventFile, event)
	var outs []outcome
	c.MustJSON(t, &outs, 0, "findings", "send", eventFile)
	if len(outs) != 1 || outs[0].Rule != "leaked-user-key" || outs[0].Mode != "approve" || outs[0].PlaybookRunID == "" {
		t.Fatalf("findings send: %+v", outs)
	}
	pbr := outs[0].PlaybookRunID

	// bob approves the proposal: the playbook runs, and its destructive
	// step's run awaits approval on bob's behalf.
	if r := c.CLIAs(t, bob, "playbook", "approve", pbr, "--comment", "contain it"); r.Exit != 0 {
		t.Fatalf("bob approving the playbook run: exit %d %s", r.Exit, r.Stderr)
	}
	var runID string
	e2e.WaitFor(t, 60*time.Second, "the contain step to await approval", func() bool {
		var run incidentRun
		c.MustJSON(t, &run, 0, "playbook", "show", pbr)
		if run.Status != "running" && run.Status != "awaiting_approval" {
			t.Fatalf("the playbook run ended before its step was approved: %+v", run)
		}
		runID = run.Steps[0].RunID
		return run.Steps[0].Status == "awaiting_approval" && runID != ""
	})
	// runs show exits 4 for a run awaiting approval.
	var step struct {
		Status     string `json:"status"`
		CreatedBy  string `json:"created_by"`
		OnBehalfOf string `json:"on_behalf_of"`
		Targets    int    `json:"targets"`
	}
	c.MustJSON(t, &step, 4, "runs", "show", runID)
	if step.Status != "awaiting_approval" || step.CreatedBy != "playbook:contain-user" || step.OnBehalfOf != "bob" || step.Targets != 2 {
		t.Fatalf("the step's run %+v: want awaiting approval, by playbook:contain-user for bob, over 2 accounts", step)
	}

	// The attack: bob approves the step too. Refused, with the reason.
	r := c.CLIAs(t, bob, "approve", runID)
	if r.Exit == 0 || !strings.Contains(r.Stderr, "playbook:contain-user created it on behalf of bob, who started or approved its playbook run") {
		t.Fatalf("bob approving the step of the playbook run he approved: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	c.MustJSON(t, &step, 4, "runs", "show", runID)
	if step.Status != "awaiting_approval" {
		t.Fatalf("after bob's refused approval the step's run is %s", step.Status)
	}
	for _, acct := range []string{m0, m1} {
		if keysActive(t, lab, acct) == 0 {
			t.Fatalf("ci-deployer's keys in %s were deactivated without a second approver", acct)
		}
	}

	// carol, a second approver, may: the step runs in both accounts.
	var run e2e.RunJSON
	ar := c.CLIAs(t, carol, "approve", runID, "--comment", "second pair of eyes", "--wait", "--json")
	if ar.Exit != 0 {
		t.Fatalf("carol approving: exit %d\n%s%s", ar.Exit, ar.Stdout, ar.Stderr)
	}
	if err := json.Unmarshal([]byte(ar.Stdout), &run); err != nil || run.Succeeded != 2 {
		t.Fatalf("the step's run after carol's approval %s: %v", ar.Stdout, err)
	}
	var done incidentRun
	c.MustJSON(t, &done, 0, "playbook", "show", pbr, "--wait")
	if done.Status != "succeeded" {
		t.Fatalf("playbook run %+v", done)
	}
	for _, acct := range []string{m0, m1} {
		if n := keysActive(t, lab, acct); n != 0 {
			t.Errorf("ci-deployer has %d active keys in %s after the approved containment", n, acct)
		}
	}
}

// keysActive counts the lab's compromised user's active access keys in an
// account.
func keysActive(t *testing.T, lab *awstest.Lab, account string) int {
	t.Helper()
	n := 0
	for _, u := range lab.Emu.Dump().Account(account).Users {
		if u.Name != awsemu.LabCompromisedUser {
			continue
		}
		for _, k := range u.AccessKeys {
			if k.Status == "Active" {
				n++
			}
		}
	}
	return n
}
