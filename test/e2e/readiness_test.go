package e2e_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// readinessGapsSeed is an organisation ready in every way but the
// deliberate gaps: an account without the responder role, GuardDuty off in
// one region, three running instances without agents, an evidence bucket
// without Object Lock (and, in the controller, one approver).
func readinessGapsSeed() (seed *awsemu.Seed, noRole, gaps, clean string) {
	seed = awsemu.LabSeed(5)
	sec := awsemu.LabAccountID(1)
	clean, gaps, noRole = awstest.Member(0), awstest.Member(1), awstest.Member(2)
	// The security account is the GuardDuty administrator; its rule sends
	// every account's findings to the controller's events endpoint.
	on := func(region string) awsemu.RegionSeed {
		return awsemu.RegionSeed{Region: region, GuardDuty: &awsemu.GuardDutySeed{Administrator: sec}, SecurityHub: &awsemu.SecurityHubSeed{}}
	}
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		switch a.ID {
		case awsemu.LabAccountID(0):
			r := on("us-east-1")
			r.Trails = []awsemu.TrailSeed{{Name: "org-trail", Bucket: "org-trail-logs", Organization: true}}
			a.Resources = append(a.Resources, r)
		case sec:
			r := &a.Resources[0]
			r.GuardDuty, r.SecurityHub = &awsemu.GuardDutySeed{}, &awsemu.SecurityHubSeed{}
			r.APIDestinations = []awsemu.APIDestinationSeed{{Name: "firebreak-controller", Endpoint: "https://firebreak.example.com/v1/events"}}
			r.EventRules = []awsemu.EventRuleSeed{{Name: "firebreak-findings", EventPattern: `{"source":["aws.guardduty"],"detail-type":["GuardDuty Finding"]}`,
				Targets: []string{awsemu.APIDestinationARN(sec, r.Region, "firebreak-controller")}}}
			a.Buckets = append(a.Buckets, awsemu.BucketSeed{Name: "firebreak-evidence-lab", Versioning: "Enabled",
				Encryption: &awsemu.EncryptionSeed{Algorithm: "aws:kms", KMSKeyID: "arn:aws:kms:us-east-1:" + sec + ":key/evidence"}})
		case clean:
			// No instances: nothing to cover.
			r := &a.Resources[0]
			r.Instances, r.AutoScalingGroups, r.TargetGroups = nil, nil, nil
			r.GuardDuty, r.SecurityHub = &awsemu.GuardDutySeed{Administrator: sec}, &awsemu.SecurityHubSeed{}
			a.Resources = append(a.Resources, on("us-west-2"))
		case gaps:
			r := &a.Resources[0]
			r.GuardDuty, r.SecurityHub = &awsemu.GuardDutySeed{Administrator: sec}, &awsemu.SecurityHubSeed{}
			// Isolation can use Standby in every group.
			for j := range r.AutoScalingGroups {
				r.AutoScalingGroups[j].Min = 0
			}
			west := on("us-west-2")
			west.GuardDuty = nil
			a.Resources = append(a.Resources, west)
		case noRole:
			a.Roles = slices.DeleteFunc(a.Roles, func(r awsemu.RoleSeed) bool { return r.Name == awsemu.LabResponderRole })
		}
	}
	return seed, noRole, gaps, clean
}

// TestReadinessReportsTheDeliberateGaps is issue 17's end-to-end test
// through the real binaries: `firebreak readiness --regions all` over an
// emulated organisation reports each deliberate gap with the right status,
// account and remediation, nothing else fails, the score is the same for
// the same state, --fail-under exits 7 and --save feeds the history.
func TestReadinessReportsTheDeliberateGaps(t *testing.T) {
	seed, noRole, gaps, _ := readinessGapsSeed()
	sec := awsemu.LabAccountID(1)
	lab := awstest.StartWith(t, seed)
	b := e2e.Build(t)
	// The events endpoint takes findings, so the security account's API
	// destination exports them to the controller.
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--events-listen", "127.0.0.1:0"}})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))
	var synced struct {
		Accounts []struct{ ID string } `json:"accounts"`
	}
	c.MustJSON(t, &synced, 0, "accounts", "sync", "--management-account", awsemu.LabAccountID(0))

	type check struct {
		ID, Account, Region, Status, Evidence, Remediation string
	}
	var report struct {
		Score    int      `json:"score"`
		Accounts []string `json:"accounts"`
		Regions  []string `json:"regions"`
		Checks   []check  `json:"checks"`
	}
	args := []string{"readiness", "--regions", "all", "--evidence-bucket", "firebreak-evidence-lab", "--evidence-account", sec}
	c.MustJSON(t, &report, 0, append(args, "--save")...)
	if len(report.Accounts) != 5 || !slices.Equal(report.Regions, []string{"us-east-1", "us-west-2"}) {
		t.Fatalf("accounts %v regions %v", report.Accounts, report.Regions)
	}
	type gap struct {
		id, account, region, status, evidence, fix string
	}
	want := []gap{
		{"reach.role", noRole, "us-east-1", "fail", "", "member-account.yaml"},
		{"reach.role", noRole, "us-west-2", "fail", "", "member-account.yaml"},
		{"detection.guardduty", gaps, "us-west-2", "fail", "no GuardDuty detector in us-west-2", "aws guardduty create-detector --enable --region us-west-2"},
		{"coverage.instances", gaps, "", "fail", "0% of 3 running instances have an agent", "install-agent.yaml"},
		{"evidence.bucket", sec, "us-east-1", "fail", "no Object Lock", "put-object-lock-configuration"},
		{"people.approvers", "", "", "fail", "1 operator(s) may approve", "firebreak operator add NAME --role approver"},
	}
	var failing []check
	for _, ch := range report.Checks {
		if ch.Status == "fail" {
			failing = append(failing, ch)
		}
	}
	for _, g := range want {
		i := slices.IndexFunc(failing, func(ch check) bool { return ch.ID == g.id && ch.Account == g.account && ch.Region == g.region })
		if i < 0 {
			t.Errorf("gap %s in %q %q not reported as failing", g.id, g.account, g.region)
			continue
		}
		ch := failing[i]
		if !strings.Contains(ch.Evidence, g.evidence) || !strings.Contains(ch.Remediation, g.fix) {
			t.Errorf("%s in %s: evidence %q, remediation %q; want %q and %q", g.id, g.account, ch.Evidence, ch.Remediation, g.evidence, g.fix)
		}
		failing = slices.Delete(failing, i, i+1)
	}
	for _, ch := range failing {
		t.Errorf("not a deliberate gap, but failing: %+v", ch)
	}
	for _, ch := range report.Checks {
		if ch.Status == "unknown" {
			t.Errorf("unknown: %+v", ch)
		}
	}
	if report.Score <= 0 || report.Score >= 100 {
		t.Fatalf("score %d", report.Score)
	}
	// GuardDuty findings reach the controller: the security account's rule
	// to its events endpoint, the members through their administrator.
	exports := map[string]string{ // account/region → status and evidence words
		sec + "/us-east-1":  "ok rule firebreak-findings sends GuardDuty findings to API destination firebreak-controller at https://firebreak.example.com/v1/events",
		gaps + "/us-east-1": "ok aggregated in the GuardDuty administrator account " + sec,
		gaps + "/us-west-2": "warn no GuardDuty detector in us-west-2",
	}
	for _, ch := range report.Checks {
		if want, ok := exports[ch.Account+"/"+ch.Region]; ok && ch.ID == "detection.findings_export" {
			if st, words, _ := strings.Cut(want, " "); ch.Status != st || !strings.Contains(ch.Evidence, words) {
				t.Errorf("findings export in %s %s: %s %q, want %s", ch.Account, ch.Region, ch.Status, ch.Evidence, want)
			}
			delete(exports, ch.Account+"/"+ch.Region)
		}
	}
	for where := range exports {
		t.Errorf("no findings export check in %s", where)
	}

	// The same state scores the same; --fail-under above it exits 7.
	var again struct {
		Score int `json:"score"`
	}
	c.MustJSON(t, &again, 7, append(args, "--fail-under", "100")...)
	if again.Score != report.Score {
		t.Fatalf("score %d, then %d for the same state", report.Score, again.Score)
	}
	if r := c.CLI(t, append(args, "--fail-under", "1")...); r.Exit != 0 || !strings.Contains(r.Stdout, "Readiness score:") {
		t.Fatalf("--fail-under under the score: exit %d\n%s\n%s", r.Exit, r.Stdout, r.Stderr)
	}
	// On a terminal the review draws the per-target bar of its
	// aws-readiness run, as `run --wait` does, and clears it before the
	// report; at the end every target of the run is counted done.
	term := c.CLIOnTerminal(t, args...)
	if term.Exit != 0 || !strings.Contains(term.Stdout, "Readiness score:") {
		t.Fatalf("readiness on a terminal: exit %d\n%s\n%s", term.Exit, term.Stdout, term.Stderr)
	}
	bars := regexp.MustCompile(`succeeded (\d+) · failed (\d+) · cancelled \d+ · offline \d+[^(]*\((\d+)/(\d+)`).FindAllStringSubmatch(term.Stdout, -1)
	if len(bars) == 0 {
		t.Fatalf("no progress bar drawn on the terminal:\n%q", term.Stdout)
	}
	if last := bars[len(bars)-1]; last[3] != last[4] || last[4] == "0" {
		t.Fatalf("the last frame of the bar is %q, not every target done", last[0])
	}
	if !strings.Contains(term.Stdout[strings.LastIndex(term.Stdout, bars[len(bars)-1][0]):], "\r\033[K") {
		t.Fatalf("the bar was not cleared before the report:\n%q", term.Stdout)
	}
	t.Logf("on a terminal the review drew %d frames of its bar; the last: %q", len(bars), bars[len(bars)-1][0])
	var history []struct {
		Score     int    `json:"score"`
		CreatedBy string `json:"created_by"`
	}
	c.MustJSON(t, &history, 0, "readiness", "history")
	if len(history) != 1 || history[0].Score != report.Score || !strings.HasPrefix(history[0].CreatedBy, "operator:") {
		t.Fatalf("history %+v", history)
	}
	t.Logf("readiness score %d with %d checks", report.Score, len(report.Checks))
}

// TestLabReadiness runs `firebreak lab readiness --simulated --json`
// through the real binary: every deliberate gap of the lab organisation is
// reported with the right status, account and remediation, and nothing
// else fails but host isolation, which simulated hosts cannot do. (As root
// the lab without --simulated uses network namespaces and nftables, which
// TestLabDrills covers.)
func TestLabReadiness(t *testing.T) {
	b := e2e.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.Firebreak, "lab", "readiness", "--simulated", "--json").Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	var report struct {
		Score  int `json:"score"`
		Checks []struct {
			ID, Account, Region, Status, Evidence, Remediation string
		} `json:"checks"`
	}
	if jerr := json.Unmarshal(out, &report); err != nil || jerr != nil {
		t.Fatalf("exit %v, %v\nstdout: %s\nstderr: %s", err, jerr, out, stderr)
	}
	want := map[string]string{ // id/account/region → remediation words
		"reach.role/" + awsemu.LabAccountID(4) + "/us-east-1":          "member-account.yaml",
		"reach.role/" + awsemu.LabAccountID(4) + "/us-west-2":          "member-account.yaml",
		"detection.guardduty/" + awsemu.LabAccountID(3) + "/us-west-2": "aws guardduty create-detector",
		"coverage.instances/" + awsemu.LabAccountID(3) + "/":           "install-agent.yaml",
		"evidence.bucket/" + awsemu.LabAccountID(1) + "/us-east-1":     "put-object-lock-configuration",
		"people.approvers//": "--role approver",
	}
	for _, c := range report.Checks {
		key := c.ID + "/" + c.Account + "/" + c.Region
		fix, deliberate := want[key]
		switch {
		case deliberate:
			if c.Status != "fail" || !strings.Contains(c.Remediation, fix) {
				t.Errorf("%s: %s, fix %q", key, c.Status, c.Remediation)
			}
			delete(want, key)
		case c.Status == "fail" && c.ID == "host.isolation":
			// Simulated hosts cannot be isolated, and the report says so.
		case c.Status == "fail" || c.Status == "unknown":
			t.Errorf("not a deliberate gap: %+v", c)
		}
	}
	for key := range want {
		t.Errorf("deliberate gap %s not reported", key)
	}
	// The lab's hosts are simulated, so no host agent offers the in-guest
	// actions the EC2 playbooks run (a warning, not a failure: the worker
	// offers every AWS action), and no drill was recorded.
	process := map[string]string{ // id → status and evidence words
		"process.playbooks": "warn ec2-instance-compromise (built-in): host-collect (no host agent is enrolled)",
		"process.drills":    "warn never drilled: ec2-compromise, leaked-key-orgwide, leaked-key-persistence, public-bucket",
	}
	for _, c := range report.Checks {
		if w, ok := process[c.ID]; ok {
			if st, words, _ := strings.Cut(w, " "); c.Status != st || !strings.Contains(c.Evidence, words) {
				t.Errorf("%s: %s %q, want %s", c.ID, c.Status, c.Evidence, w)
			}
			delete(process, c.ID)
		}
	}
	for id := range process {
		t.Errorf("no %s check", id)
	}
	t.Logf("lab readiness score %d, %d checks", report.Score, len(report.Checks))
}
