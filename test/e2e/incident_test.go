package e2e_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// incidentPlaybook answers a compromised instance with the noop and sysinfo
// actions: a probe, a containment on the host agent that runs on the
// instance (its selector comes from the finding's instance id), an
// eradication and, when asked, a failure that rolls the containment back.
const incidentPlaybook = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: rehearse-instance
  version: 1
  description: Rehearsal of an instance compromise with harmless actions.
inputs:
  - {name: instance_id, type: string, required: true}
  - {name: fail_eradicate, type: bool, default: false}
  - {name: pause, type: duration, default: 0s}
steps:
  - id: probe
    phase: analyze
    action: sysinfo
    targets: {selector: "label.instance_id=${{ inputs.instance_id }}"}
  - id: contain
    needs: [probe]
    phase: contain
    action: noop
    targets: {selector: "label.instance_id=${{ inputs.instance_id }}"}
    params:
      message: "isolate ${{ inputs.instance_id }} on ${{ steps.probe.outputs.hostname }}"
      delay: ${{ inputs.pause }}
    rollback:
      action: noop
      params: {message: "release ${{ inputs.instance_id }}"}
  - id: eradicate
    needs: [contain]
    phase: eradicate
    action: noop
    targets: {selector: "label.instance_id=${{ inputs.instance_id }}"}
    params: {message: rebuild, fail: "${{ inputs.fail_eradicate }}"}
    on_failure: rollback
`

const incidentRules = `
- name: rehearse-ssh
  match: {types: ["UnauthorizedAccess:EC2/*"]}
  playbook: rehearse-instance
  mode: auto
- name: rehearse-crypto
  match: {types: ["CryptoCurrency:EC2/*"]}
  playbook: rehearse-instance
  mode: approve
`

type incidentRun struct {
	ID     string `json:"playbook_run_id"`
	CaseID string `json:"case_id"`
	Status string `json:"status"`
	Steps  []struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		RunID    string `json:"run_id"`
		Rollback *struct {
			Status string   `json:"status"`
			RunIDs []string `json:"run_ids"`
		} `json:"rollback"`
	} `json:"steps"`
}

type outcome struct {
	FindingID     string `json:"finding_id"`
	Duplicate     bool   `json:"duplicate"`
	CaseID        string `json:"case_id"`
	CaseCreated   bool   `json:"case_created"`
	Rule          string `json:"rule"`
	Mode          string `json:"mode"`
	PlaybookRunID string `json:"playbook_run_id"`
}

func incidentController(t *testing.T, extra ...string) (*e2e.Controller, string) {
	t.Helper()
	b := e2e.Build(t)
	dir := t.TempDir()
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pbDir, "rehearse-instance.yaml"), incidentPlaybook)
	write(filepath.Join(dir, "rules.yaml"), incidentRules)
	write(filepath.Join(dir, "secret"), strings.Repeat("e", 48)+"\n")
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: append([]string{"--playbook-dir", pbDir, "--rules", filepath.Join(dir, "rules.yaml"),
		"--events-listen", "127.0.0.1:0", "--events-secret-file", filepath.Join(dir, "secret")}, extra...)})
	// Host agents on the instances of the sample findings.
	tok := c.Token(t, "host", 2)
	a := c.StartAgent(t, e2e.AgentOptions{Name: "web-1", Token: tok, Labels: []string{"instance_id=i-0a1b2c3d4e5f67890"}})
	b2 := c.StartAgent(t, e2e.AgentOptions{Name: "batch-7", Token: tok, Labels: []string{"instance_id=i-0fedcba9876543210"}})
	c.WaitConnected(t, a.AgentID(t), b2.AgentID(t))
	return c, pbDir
}

var eventsRE = regexp.MustCompile(`"events":"(https://[^"]+)"`)

func eventsURL(t *testing.T, c *e2e.Controller) string {
	t.Helper()
	var url string
	e2e.WaitFor(t, 10*time.Second, "the events endpoint", func() bool {
		m := eventsRE.FindStringSubmatch(c.Log())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

func TestPlaybooksFindingsAndCasesThroughTheRealBinaries(t *testing.T) {
	c, pbDir := incidentController(t)
	sample := filepath.Join(c.Bins.Root, "controller", "finding", "testdata")

	// Validation with file:line:column and exit 2.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(incidentPlaybook, "action: noop", "action: no-such-action", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.CLI(t, "playbook", "validate", bad); r.Exit != 2 || !regexp.MustCompile(`bad\.yaml:\d+:\d+: step "contain": unknown action "no-such-action"`).MatchString(r.Stdout) {
		t.Fatalf("validate bad: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	c.MustJSON(t, nil, 0, "playbook", "validate", filepath.Join(pbDir, "rehearse-instance.yaml"))
	var list []struct {
		Name     string `json:"name"`
		Runnable bool   `json:"runnable"`
	}
	c.MustJSON(t, &list, 0, "playbook", "list")
	runnable := map[string]bool{}
	for _, p := range list {
		runnable[p.Name] = p.Runnable
	}
	if !runnable["rehearse-instance"] || runnable["ec2-instance-compromise"] {
		t.Fatalf("playbook list %+v: want the rehearsal runnable and the AWS playbooks not (no worker)", list)
	}

	// A dry run resolves what it can and changes nothing.
	var plan struct {
		DryRun bool `json:"dry_run"`
		Plan   struct {
			Steps []struct {
				ID       string   `json:"id"`
				Selector string   `json:"selector"`
				Pending  []string `json:"pending"`
			} `json:"steps"`
		} `json:"plan"`
	}
	c.MustJSON(t, &plan, 0, "playbook", "run", "rehearse-instance", "--input", "instance_id=i-0a1b2c3d4e5f67890", "--dry-run")
	if !plan.DryRun || len(plan.Plan.Steps) != 3 || plan.Plan.Steps[0].Selector != "label.instance_id=i-0a1b2c3d4e5f67890" ||
		strings.Join(plan.Plan.Steps[1].Pending, ",") != "params.message" {
		t.Fatalf("plan %+v", plan)
	}

	// A finding matching an auto rule runs the playbook on a new case.
	var outs []outcome
	c.MustJSON(t, &outs, 0, "findings", "send", filepath.Join(sample, "guardduty-ssh-bruteforce.json"))
	if len(outs) != 1 || !outs[0].CaseCreated || outs[0].Rule != "rehearse-ssh" || outs[0].PlaybookRunID == "" {
		t.Fatalf("findings send: %+v", outs)
	}
	var run incidentRun
	c.MustJSON(t, &run, 0, "playbook", "show", outs[0].PlaybookRunID, "--wait")
	if run.Status != "succeeded" || len(run.Steps) != 3 || run.CaseID != outs[0].CaseID {
		t.Fatalf("playbook run %+v", run)
	}
	// The same event posted to the HTTPS endpoint with the operator's
	// certificate is a duplicate of the same case.
	url := eventsURL(t, c)
	c.MustJSON(t, &outs, 0, "findings", "send", filepath.Join(sample, "guardduty-ssh-bruteforce.json"), "--url", url)
	if len(outs) != 1 || !outs[0].Duplicate || outs[0].CaseID != run.CaseID {
		t.Fatalf("findings send --url: %+v", outs)
	}
	if r := c.CLI(t, "findings", "send", "-", "--url", url); r.Exit != 2 || !strings.Contains(r.Stderr, "400") {
		t.Fatalf("an empty event over HTTPS: exit %d %s", r.Exit, r.Stderr)
	}

	// The case holds the finding, the steps and their phases, and timings.
	var cs struct {
		ID              string `json:"case_id"`
		Phase           string `json:"phase"`
		Contained       bool   `json:"contained"`
		TimeToContainMS *int64 `json:"time_to_contain_ms"`
		TimeToDetectMS  *int64 `json:"time_to_detect_ms"`
		Timeline        []struct {
			Kind   string `json:"kind"`
			Phase  string `json:"phase"`
			Status string `json:"status"`
			StepID string `json:"step_id"`
		} `json:"timeline"`
	}
	c.MustJSON(t, &cs, 0, "case", "show", run.CaseID)
	if cs.Phase != "eradicate" || !cs.Contained || cs.TimeToContainMS == nil || cs.TimeToDetectMS == nil {
		t.Fatalf("case %+v", cs)
	}
	kinds := map[string]bool{}
	for _, e := range cs.Timeline {
		kinds[e.Kind+"/"+e.Status] = true
	}
	for _, k := range []string{"finding/received", "playbook/started", "step/started", "step/succeeded", "phase/contain", "playbook/succeeded"} {
		if !kinds[k] {
			t.Errorf("the timeline has no %s entry: %v", k, kinds)
		}
	}
	if r := c.CLI(t, "case", "note", run.CaseID, "owner <b>confirmed</b> the rebuild"); r.Exit != 0 {
		t.Fatalf("case note: %d %s", r.Exit, r.Stderr)
	}
	report := filepath.Join(t.TempDir(), "report.html")
	if r := c.CLI(t, "case", "report", run.CaseID, "--format", "html", "-o", report); r.Exit != 0 {
		t.Fatalf("case report: %d %s", r.Exit, r.Stderr)
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Lessons learned", "Time to contain", "&lt;b&gt;confirmed&lt;/b&gt;", "i-0a1b2c3d4e5f67890"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if st, err := os.Stat(report); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the report file's mode: %v %v", st.Mode(), err)
	}
	md := c.CLI(t, "case", "report", run.CaseID)
	if md.Exit != 0 || !strings.Contains(md.Stdout, "## Timeline") || !strings.Contains(md.Stdout, "## Open items") {
		t.Fatalf("markdown report: %d %s", md.Exit, md.Stderr)
	}
	if r := c.CLI(t, "case", "close", run.CaseID, "--reason", "rebuilt"); r.Exit != 0 {
		t.Fatalf("case close: %d %s", r.Exit, r.Stderr)
	}

	// A rollback rule: the eradication fails and the containment is undone.
	c.MustJSON(t, &run, 3, "playbook", "run", "rehearse-instance", "--input", "instance_id=i-0a1b2c3d4e5f67890", "--input", "fail_eradicate=true", "--wait")
	if run.Status != "rolled_back" || run.Steps[1].Rollback == nil || run.Steps[1].Rollback.Status != "succeeded" {
		t.Fatalf("rolled-back run %+v", run)
	}

	// An approve rule proposes; a second operator approves.
	c.MustJSON(t, &outs, 0, "findings", "send", filepath.Join(sample, "guardduty-bitcointool-dns.json"))
	if outs[0].Mode != "approve" || outs[0].PlaybookRunID == "" {
		t.Fatalf("approve rule: %+v", outs)
	}
	c.MustJSON(t, &run, 4, "playbook", "show", outs[0].PlaybookRunID)
	bob := filepath.Join(t.TempDir(), "bob.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)
	r := c.CLIAs(t, bob, "playbook", "approve", outs[0].PlaybookRunID, "--wait", "--json")
	if r.Exit != 0 {
		t.Fatalf("approve --wait: exit %d %s", r.Exit, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || run.Status != "succeeded" {
		t.Fatalf("approved run %s: %v", r.Stdout, err)
	}
}

func TestPlaybookRunSurvivesAControllerRestart(t *testing.T) {
	c, _ := incidentController(t)
	r := c.CLI(t, "playbook", "run", "rehearse-instance", "--input", "instance_id=i-0a1b2c3d4e5f67890", "--input", "pause=4s")
	if r.Exit != 0 {
		t.Fatalf("playbook run: %d %s", r.Exit, r.Stderr)
	}
	id := strings.TrimSpace(r.Stdout)
	e2e.WaitFor(t, 30*time.Second, "the contain step to run", func() bool {
		var run incidentRun
		c.MustJSON(t, &run, 0, "playbook", "show", id)
		return len(run.Steps) == 3 && run.Steps[1].RunID != ""
	})
	c.Restart(t)
	var run incidentRun
	c.MustJSON(t, &run, 0, "playbook", "show", id, "--wait")
	if run.Status != "succeeded" {
		t.Fatalf("after the restart: %+v", run)
	}
	var runs []struct {
		RunID string `json:"run_id"`
	}
	c.MustJSON(t, &runs, 0, "runs", "list")
	if len(runs) != 3 {
		t.Fatalf("%d runs for three steps: a step ran twice", len(runs))
	}
}
