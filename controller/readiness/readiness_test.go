package readiness

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

var now = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func host(id, account, instance, version string, isolate, simulated bool) *store.Agent {
	a := &store.Agent{ID: id, Role: "host", Hostname: id + ".example", Facts: &agentv1.AgentFacts{Account: account, InstanceId: instance, AgentVersion: version, Simulated: simulated}}
	if isolate {
		a.Plugins = []*agentv1.PluginInfo{{Description: &pluginv1.ActionDescription{Name: "host-isolate"}}}
	}
	return a
}

func op(name string, role operatorv1.OperatorRole, created time.Time, revoked bool) *store.Operator {
	return &store.Operator{Name: name, Role: role, CreatedAt: created, Revoked: revoked}
}

// want checks one outcome: status, and words in the evidence and the
// remediation.
type want struct {
	status   Status
	evidence string
	fix      string
}

func (w want) check(t *testing.T, c Check) {
	t.Helper()
	if c.Status != w.status || !strings.Contains(c.Evidence, w.evidence) || !strings.Contains(c.Remediation, w.fix) {
		t.Fatalf("%s: %s %q fix %q; want %s with %q and fix %q", c.ID, c.Status, c.Evidence, c.Remediation, w.status, w.evidence, w.fix)
	}
	if c.Status != StatusOK && c.Remediation == "" {
		t.Fatalf("%s is %s without a remediation", c.ID, c.Status)
	}
}

func TestCheckRole(t *testing.T) {
	for _, tt := range []struct {
		target Target
		want   want
	}{
		{Target{Account: "210987654302", Region: "us-east-1", Reached: true}, want{StatusOK, "assumed", ""}},
		{Target{Account: "210987654303", Region: "us-east-1", Error: "the responder role is missing in 210987654303"},
			want{StatusFail, "role is missing", "Accounts=210987654303"}},
	} {
		tt.want.check(t, checkRole(tt.target))
	}
}

func TestCheckDiscovery(t *testing.T) {
	for _, tt := range []struct {
		acct *store.Account
		want want
	}{
		{&store.Account{ID: "210987654302", Regions: []string{"us-east-1"}}, want{StatusOK, "us-east-1", ""}},
		{&store.Account{ID: "210987654302", Unknown: []store.AccountUnknown{{Field: "regions", Reason: "account:ListRegions: AccessDeniedException",
			Remediation: "aws organizations enable-aws-service-access --service-principal account.amazonaws.com"}}},
			want{StatusWarn, "regions unknown", "account.amazonaws.com"}},
	} {
		tt.want.check(t, checkDiscovery(tt.acct))
	}
}

func TestCheckCoverage(t *testing.T) {
	acct := "210987654302"
	instances := []instance{{ID: "i-1", Tags: map[string]string{"Name": "web-1"}}, {ID: "i-2", Tags: map[string]string{"Name": "web-2"}}, {ID: "i-3"}}
	for _, tt := range []struct {
		name      string
		instances []instance
		agents    []*store.Agent
		want      want
	}{
		{"none running", nil, nil, want{StatusOK, "no running instances", ""}},
		{"all covered", instances, []*store.Agent{host("a1", acct, "i-1", "", true, false), host("a2", acct, "i-2", "", true, false), host("a3", acct, "i-3", "", true, false)},
			want{StatusOK, "100% of 3", ""}},
		{"one of three", instances, []*store.Agent{host("a1", acct, "i-1", "", true, false)},
			want{StatusFail, "33% of 3 running instances have an agent; without: i-2 {Name=web-2}; i-3 {}", "install-agent.yaml"}},
		{"agent of another account does not count", instances[:1], []*store.Agent{host("a1", "210987654399", "i-1", "", true, false)},
			want{StatusFail, "0% of 1", "install-agent.yaml"}},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.want.check(t, checkCoverage(acct, tt.instances, tt.agents)) })
	}
	// Ten instances, nine covered: a warning.
	var many []instance
	var agents []*store.Agent
	for i := range 10 {
		id := "i-" + string(rune('a'+i))
		many = append(many, instance{ID: id})
		if i > 0 {
			agents = append(agents, host("a"+id, acct, id, "", true, false))
		}
	}
	want{StatusWarn, "90% of 10", "install-agent.yaml"}.check(t, checkCoverage(acct, many, agents))
}

func TestCheckStaleAgents(t *testing.T) {
	running := map[string][]instance{"210987654302": {{ID: "i-1"}}}
	inv := map[string]bool{"210987654302": true}
	want{StatusOK, "every host agent", ""}.check(t, checkStaleAgents(running, inv, []*store.Agent{host("a1", "210987654302", "i-1", "", true, false)}))
	want{StatusWarn, "a2 (a2.example, i-9)", "firebreak agents revoke"}.check(t, checkStaleAgents(running, inv,
		[]*store.Agent{host("a1", "210987654302", "i-1", "", true, false), host("a2", "210987654302", "i-9", "", true, false)}))
	// An account that was not inventoried proves nothing about its agents.
	want{StatusOK, "every host agent", ""}.check(t, checkStaleAgents(running, inv, []*store.Agent{host("a3", "210987654399", "i-9", "", true, false)}))
	// An agent already marked terminated is known gone: nothing to revoke.
	gone := host("a4", "210987654302", "i-9", "", true, false)
	gone.TerminatedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	want{StatusOK, "every host agent", ""}.check(t, checkStaleAgents(running, inv, []*store.Agent{host("a1", "210987654302", "i-1", "", true, false), gone}))
	// Nor is it counted among the agents whose version matters.
	want{StatusOK, "0 of 1 agents (0%)", ""}.check(t, checkAgentVersions([]*store.Agent{host("a1", "", "", "1.2.0", true, false),
		func() *store.Agent {
			a := host("a5", "", "", "1.1.0", true, false)
			a.TerminatedAt = gone.TerminatedAt
			return a
		}()}, "1.2.0"))
}

func TestCheckHostIsolationAndVersions(t *testing.T) {
	want{StatusOK, "2 host agent(s)", ""}.check(t, checkHostIsolation([]*store.Agent{host("a1", "", "", "", true, false), host("a2", "", "", "", true, false)}))
	want{StatusFail, "a2 (a2.example): no host-isolate plugin; a3 (a3.example): a simulated host", "systemd"}.check(t,
		checkHostIsolation([]*store.Agent{host("a1", "", "", "", true, false), host("a2", "", "", "", false, false), host("a3", "", "", "", true, true)}))
	want{StatusOK, "0 of 2 agents (0%)", ""}.check(t, checkAgentVersions([]*store.Agent{host("a1", "", "", "1.2.0", true, false), host("a2", "", "", "1.2.0", true, false)}, "1.2.0"))
	want{StatusWarn, "1 of 2 agents (50%) are outdated (controller 1.2.0): a2=1.1.0", "upgrade"}.check(t,
		checkAgentVersions([]*store.Agent{host("a1", "", "", "1.2.0", true, false), host("a2", "", "", "1.1.0", true, false)}, "1.2.0"))
}

func TestCheckPeople(t *testing.T) {
	approver, admin := operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER, operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN
	responder := operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER
	for _, tt := range []struct {
		name string
		ops  []*store.Operator
		want want
	}{
		{"two approvers", []*store.Operator{op("alice", approver, now, false), op("root", admin, now, false)}, want{StatusOK, "2 operator(s) may approve: alice, root", ""}},
		{"one approver", []*store.Operator{op("alice", approver, now, false), op("bob", responder, now, false)}, want{StatusFail, "1 operator(s)", "firebreak operator add NAME --role approver"}},
		{"revoked approver does not count", []*store.Operator{op("alice", approver, now, false), op("carol", approver, now, true)}, want{StatusFail, "1 operator(s)", "--role approver"}},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.want.check(t, checkApprovers(tt.ops)) })
	}
	old := now.Add(-100 * 24 * time.Hour)
	ops := []*store.Operator{op("root", admin, old, false), op("ops", admin, old, false)}
	want{StatusOK, "2 admin credential(s)", ""}.check(t, checkAdminCredentials(ops, map[string]time.Time{"root": now, "ops": now.Add(-time.Hour)}, now))
	want{StatusWarn, "ops (last used 2026-08-29)", "firebreak operator revoke NAME"}.check(t, checkAdminCredentials(ops, map[string]time.Time{"root": now}, now))
}

func TestCheckController(t *testing.T) {
	want{StatusOK, "the CA expires", ""}.check(t, checkPKI(now.AddDate(1, 0, 0), now))
	want{StatusFail, "(10 days)", "rotate the CA"}.check(t, checkPKI(now.Add(10*24*time.Hour), now))
	want{StatusUnknown, "not available", "--pki-dir"}.check(t, checkPKI(time.Time{}, now))

	want{StatusOK, "verifies (12 records)", ""}.check(t, checkAuditChain(&store.AuditCheck{OK: true, Records: 12}))
	want{StatusFail, "broken at record 7", "firebreak audit verify"}.check(t, checkAuditChain(&store.AuditCheck{FirstBadSeq: 7}))
	want{StatusUnknown, "not verified", "audit verify"}.check(t, checkAuditChain(nil))

	tokens := []*store.JoinToken{
		{Hash: "aaaaaaaaaaaaaaaa0", UsesLeft: 1, ExpiresAt: now.Add(time.Hour)},
		{Hash: "bbbbbbbbbbbbbbbb0", UsesLeft: 0, ExpiresAt: now.Add(time.Hour)},  // used up
		{Hash: "cccccccccccccccc0", UsesLeft: 1, ExpiresAt: now.Add(-time.Hour)}, // expired
		{Hash: "dddddddddddddddd0", UsesLeft: 1, Revoked: true},
	}
	want{StatusOK, "1 outstanding", ""}.check(t, checkJoinTokens(tokens, now))
	want{StatusWarn, "2 outstanding join token(s), 1 without expiry: eeeeeeeeeeeeeeee", "firebreak token revoke"}.check(t,
		checkJoinTokens(append(tokens, &store.JoinToken{Hash: "eeeeeeeeeeeeeeee0", UsesLeft: 5}), now))
}

// TestBuildAndScore joins the AWS-side results with the controller's
// checks: every check is placed and sorted, an unreachable account fails
// reach.role, and the score is the same for the same state.
func TestBuildAndScore(t *testing.T) {
	out := func(checks ...Check) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"region": "us-east-1", "checks": checks, "instances": []instance{{ID: "i-1"}, {ID: "i-2"}}})
		return b
	}
	in := Inputs{
		Now: now, Accounts: []*store.Account{{ID: "210987654302", Regions: []string{"us-east-1"}}, {ID: "210987654303", Regions: []string{"us-east-1"}}},
		Targets: []Target{
			{Account: "210987654302", Region: "us-east-1", Reached: true, Output: out(Check{ID: "detection.guardduty", Status: StatusFail, Evidence: "no detector", Remediation: "aws guardduty create-detector"})},
			{Account: "210987654303", Region: "us-east-1", Error: "role is missing"},
		},
		Agents:     []*store.Agent{host("a1", "210987654302", "i-1", "1.0.0", true, false)},
		Operators:  []*store.Operator{op("root", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, now, false), op("alice", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER, now, false)},
		Audit:      &store.AuditCheck{OK: true},
		CANotAfter: now.AddDate(5, 0, 0), ControllerVersion: "1.0.0",
	}
	r := Build(in)
	if r.Score <= 0 || r.Score >= 100 || len(r.Accounts) != 2 || len(r.Regions) != 1 {
		t.Fatalf("report %+v", r)
	}
	byKey := map[string]Check{}
	for _, c := range r.Checks {
		byKey[c.Account+"/"+c.ID] = c
	}
	for key, w := range map[string]want{
		"210987654302/detection.guardduty": {StatusFail, "no detector", "create-detector"},
		"210987654302/coverage.instances":  {StatusFail, "50% of 2", "install-agent"},
		"210987654303/reach.role":          {StatusFail, "role is missing", "member-account.yaml"},
		"/people.approvers":                {StatusOK, "2 operator(s)", ""},
		"/controller.audit":                {StatusOK, "verifies", ""},
	} {
		c, ok := byKey[key]
		if !ok {
			t.Fatalf("no %s in %+v", key, r.Checks)
		}
		w.check(t, c)
	}
	if _, ok := byKey["210987654303/coverage.instances"]; ok {
		t.Fatal("coverage was judged in an account whose instances could not be read")
	}
	if r.Checks[0].Account != "" {
		t.Fatalf("controller checks are not first: %+v", r.Checks[0])
	}
	if again := Build(in); again.Score != r.Score || len(again.Checks) != len(r.Checks) {
		t.Fatalf("same state, score %d then %d", r.Score, again.Score)
	}
}

func TestScore(t *testing.T) {
	for _, tt := range []struct {
		checks []Check
		want   int
	}{
		{nil, 0},
		{[]Check{{ID: CheckRole, Status: StatusOK}}, 100},
		{[]Check{{ID: CheckRole, Status: StatusFail}}, 0},
		{[]Check{{ID: CheckRole, Status: StatusWarn}}, 50},
		{[]Check{{ID: CheckRole, Status: StatusUnknown}}, 25},
		// Weighted: reach.role (10) ok, join tokens (3) fail: 10/13.
		{[]Check{{ID: CheckRole, Status: StatusOK}, {ID: CheckJoinTokens, Status: StatusFail}}, 77},
	} {
		if got := Score(tt.checks); got != tt.want {
			t.Errorf("Score(%+v) = %d, want %d", tt.checks, got, tt.want)
		}
	}
}

// TestCheckHostCapability reports the host agents' claims as claims: a
// host that says it cannot isolate fails, one outside the hardened unit
// or silent (an older agent) warns, one that claims it can isolate warns
// as unproven until the controller holds a host-isolate task that
// succeeded on it, and simulated hosts are left to host.isolation.
func TestCheckHostCapability(t *testing.T) {
	hardened := func() *agentv1.HostCapability {
		return &agentv1.HostCapability{Root: true, Nftables: true, SystemdUnit: "firebreak-agent.service",
			Protections: []string{"NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem"}}
	}
	with := func(a *store.Agent, hc *agentv1.HostCapability) *store.Agent { a.Facts.HostCapability = hc; return a }
	noNft := hardened()
	noNft.Nftables, noNft.NftablesDetail = false, "nf_tables is not loaded in the kernel (modprobe nf_tables)"
	notRoot := hardened()
	notRoot.Root = false
	bare := hardened()
	bare.SystemdUnit, bare.Protections = "", nil
	partial := hardened()
	partial.Protections = []string{"NoNewPrivileges"}
	// The controller's record: a host-isolate task it sent p succeeded.
	proven := map[string]time.Time{"p": time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}
	for _, tt := range []struct {
		name   string
		agents []*store.Agent
		want   want
	}{
		{"hardened but unproven", []*store.Agent{with(host("a", "1", "i-1", "1", true, false), hardened())},
			want{StatusWarn, "isolation unproven until a drill or an isolation proves it (only the agent's own claim): a (a.example)", "firebreak isolate --select id=AGENT_ID"}},
		{"hardened and proven", []*store.Agent{with(host("p", "1", "i-1", "1", true, false), hardened())},
			want{StatusOK, "isolation proven by a host-isolate task the controller sent and recorded as succeeded: p (p.example) on 2026-12-01", ""}},
		{"one proven, one only claimed", []*store.Agent{with(host("p", "1", "i-1", "1", true, false), hardened()), with(host("a", "1", "i-2", "1", true, false), hardened())},
			want{StatusWarn, "2 host agent(s) claim root, usable nftables", "firebreak unisolate"}},
		{"proof does not outweigh a claim of inability", []*store.Agent{with(host("p", "1", "i-1", "1", true, false), noNft)},
			want{StatusFail, "nftables not usable", "modprobe nf_tables"}},
		{"only simulated", []*store.Agent{host("s", "1", "i-1", "1", true, true)}, want{StatusOK, "no host agent on a real host", ""}},
		{"no nftables", []*store.Agent{with(host("a", "1", "i-1", "1", true, false), noNft), with(host("b", "1", "i-2", "1", true, false), hardened())},
			want{StatusFail, "a (a.example): nftables not usable: nf_tables is not loaded", "modprobe nf_tables"}},
		{"not root", []*store.Agent{with(host("a", "1", "i-1", "1", true, false), notRoot)}, want{StatusFail, "not root", "firebreak-agent.service"}},
		{"outside systemd", []*store.Agent{with(host("a", "1", "i-1", "1", true, false), bare)}, want{StatusWarn, "a (a.example): not under systemd", "sandboxed"}},
		{"partial sandbox", []*store.Agent{with(host("a", "1", "i-1", "1", true, false), partial)},
			want{StatusWarn, "without CapabilityBoundingSet, ProtectSystem", "docs/deploy.md"}},
		{"older agent", []*store.Agent{host("a", "1", "i-1", "1", true, false)}, want{StatusWarn, "no capability reported", "upgrade the agents"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := checkHostCapability(tt.agents, proven)
			tt.want.check(t, c)
			if !strings.Contains(c.Evidence, "own claims") {
				t.Fatalf("evidence %q does not say these are the agents' claims", c.Evidence)
			}
		})
	}
}

// TestCheckPluginManifest wants every agent to offer the catalogue's
// actions for its role with the catalogue's description, from one binary
// per action across the fleet.
func TestCheckPluginManifest(t *testing.T) {
	isolate := &pluginv1.ActionDescription{Name: "host-isolate", Version: "1.0.0", Roles: []string{"host"}, Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Description: "isolates"}
	collect := &pluginv1.ActionDescription{Name: "host-collect", Version: "1.0.0", Roles: []string{"host"}, Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Description: "collects"}
	snapshot := &pluginv1.ActionDescription{Name: "aws-ebs-snapshot", Version: "1.0.0", Roles: []string{"worker"}, Domain: pluginv1.Domain_DOMAIN_SERVICE, Description: "snapshots"}
	cat, err := actioncatalog.New(map[string]*pluginv1.ActionDescription{"host-isolate": isolate, "host-collect": collect, "aws-ebs-snapshot": snapshot})
	if err != nil {
		t.Fatal(err)
	}
	plugin := func(d *pluginv1.ActionDescription, sum string) *agentv1.PluginInfo {
		return &agentv1.PluginInfo{Description: proto.Clone(d).(*pluginv1.ActionDescription), Sha256: sum}
	}
	agent := func(id, role string, plugins ...*agentv1.PluginInfo) *store.Agent {
		return &store.Agent{ID: id, Role: role, Hostname: id + ".example", Facts: &agentv1.AgentFacts{}, Plugins: plugins}
	}
	oldIsolate := proto.Clone(isolate).(*pluginv1.ActionDescription)
	oldIsolate.Version = "0.9.0"
	full := func(id, sum string) *store.Agent {
		return agent(id, "host", plugin(isolate, sum), plugin(collect, "cc"))
	}
	for _, tt := range []struct {
		name   string
		agents []*store.Agent
		want   want
	}{
		{"complete", []*store.Agent{full("h1", "aa"), full("h2", "aa"), agent("w1", "worker", plugin(snapshot, "ee"))},
			want{StatusOK, "3 agent(s) offer every catalogue action of their role", ""}},
		{"no agents", nil, want{StatusOK, "no agents enrolled", ""}},
		{"simulated hosts without isolation", []*store.Agent{func() *store.Agent {
			a := agent("s1", "host", plugin(collect, "cc"))
			a.Facts.Simulated = true
			return a
		}(),
			agent("w1", "worker", plugin(snapshot, "ee"))}, want{StatusOK, "1 agent(s)", ""}},
		{"missing plugin", []*store.Agent{agent("h1", "host", plugin(isolate, "aa")), agent("w1", "worker")},
			want{StatusFail, "h1 (h1.example, host): host-collect: missing; w1 (w1.example, worker): aws-ebs-snapshot: missing", "manifest.json"}},
		{"other description", []*store.Agent{agent("h1", "host", plugin(oldIsolate, "aa"), plugin(collect, "cc"))},
			want{StatusFail, "host-isolate: described differently from the controller's action catalogue (version)", "firebreak actions list"}},
		{"different binaries", []*store.Agent{full("h1", "aa"), full("h2", "bb"), full("h3", "bb")},
			want{StatusWarn, "host-isolate: aa… on h1 / bb… on h2, h3", "restart the agents"}},
		{"revoked agents do not count", []*store.Agent{full("h1", "aa"), func() *store.Agent { a := agent("h2", "host"); a.Revoked = true; return a }()},
			want{StatusOK, "1 agent(s)", ""}},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.want.check(t, checkPluginManifest(tt.agents, cat)) })
	}
}
