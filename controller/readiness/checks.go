package readiness

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The controller-side checks' ids.
const (
	CheckRole             = "reach.role"
	CheckDiscovery        = "reach.discovery"
	CheckCoverage         = "coverage.instances"
	CheckStaleAgents      = "coverage.stale_agents"
	CheckHostIsolation    = "host.isolation"
	CheckAgentVersions    = "host.versions"
	CheckApprovers        = "people.approvers"
	CheckAdminCredentials = "people.admin_credentials"
	CheckPKI              = "controller.pki"
	CheckAuditChain       = "controller.audit"
	CheckJoinTokens       = "controller.join_tokens"
	CheckEvidenceBackend  = "evidence.backend"
	CheckHostCapability   = "host.capability"
	CheckPluginManifest   = "host.plugins"
)

// ReadinessAction is the action whose results the AWS-side checks are.
const ReadinessAction = "aws-readiness"

// HostIsolateAction is the host isolation action a host agent must offer;
// a task of it that succeeded proves the agent can isolate its host.
const HostIsolateAction = "host-isolate"

// Target is one (account, region) task of the aws-readiness run.
type Target struct {
	Account, Region string
	// Reached is false when the task could not run there (the responder
	// role could not be assumed): Error says why.
	Reached bool
	Error   string
	// Output is the action's result.
	Output json.RawMessage
}

// awsResult is aws-readiness's result, as far as the controller reads it.
type awsResult struct {
	Region         string     `json:"region"`
	Checks         []Check    `json:"checks"`
	Instances      []instance `json:"instances"`
	InventoryError string     `json:"inventory_error"`
}

type instance struct {
	ID   string            `json:"id"`
	Tags map[string]string `json:"tags"`
}

// Inputs is the state a report is made from.
type Inputs struct {
	Now time.Time
	// Accounts are the selected accounts, Regions the regions asked for
	// (empty: each worker's own).
	Accounts []*store.Account
	Regions  []string
	// Targets are the aws-readiness tasks' outcomes.
	Targets []Target
	// RunID is the aws-readiness run.
	RunID     string
	Agents    []*store.Agent
	Operators []*store.Operator
	// LastActive maps an operator's name to its latest audited action.
	LastActive map[string]time.Time
	Tokens     []*store.JoinToken
	Audit      *store.AuditCheck
	// CANotAfter is when the controller CA expires.
	CANotAfter time.Time
	// ControllerVersion is the controller's version; agents on another
	// are outdated.
	ControllerVersion string
	// Evidence is what probing the controller's evidence store found; nil
	// when it was not probed.
	Evidence *evidence.Probe
	// Actions is the controller's action catalogue; nil skips the plugin
	// manifest and playbook checks.
	Actions *actioncatalog.Catalogue
	// Playbooks are the controller's playbooks, built-in and custom, and
	// PlaybooksErr why they could not be listed; neither skips the
	// playbook check.
	Playbooks    []Playbook
	PlaybooksErr string
	// IsolationProven maps a host agent's id to the latest host-isolate
	// task the controller sent it and stored as succeeded: the proof
	// host.capability takes over the agent's own claim.
	IsolationProven map[string]time.Time
	// Drills are the drills recorded within DrillLookback, newest first;
	// nil skips the drill recency check.
	Drills []*store.DrillResult
}

// Build runs every check over the inputs and scores them.
func Build(in Inputs) *Report {
	var checks []Check
	aws := map[string][]instance{} // account → running instances
	inventoried := map[string]bool{}
	regions := map[string]bool{}
	for _, t := range in.Targets {
		checks = append(checks, checkRole(t))
		if !t.Reached {
			continue
		}
		var r awsResult
		if err := json.Unmarshal(t.Output, &r); err != nil {
			checks = append(checks, Check{ID: CheckRole, Account: t.Account, Region: t.Region, Status: StatusUnknown,
				Evidence: "aws-readiness returned an unreadable result: " + err.Error(), Remediation: "upgrade the workers' plugins to the controller's version"})
			continue
		}
		region := cmpOr(t.Region, r.Region)
		regions[region] = true
		for _, c := range r.Checks {
			c.Account, c.Region = t.Account, region
			checks = append(checks, c)
		}
		if r.InventoryError == "" {
			aws[t.Account] = append(aws[t.Account], r.Instances...)
			inventoried[t.Account] = true
		}
	}
	if len(in.Accounts) == 0 {
		checks = append(checks, Check{ID: CheckDiscovery, Status: StatusFail, Evidence: "no AWS accounts are known, so no account was checked",
			Remediation: "firebreak accounts sync --management-account MANAGEMENT_ACCOUNT_ID (deploy/README.md)"})
	}
	for _, a := range in.Accounts {
		checks = append(checks, checkDiscovery(a))
		if inventoried[a.ID] {
			checks = append(checks, checkCoverage(a.ID, aws[a.ID], in.Agents))
		}
	}
	checks = append(checks, checkStaleAgents(aws, inventoried, in.Agents))
	checks = append(checks, checkHostIsolation(in.Agents), checkHostCapability(in.Agents, in.IsolationProven), checkAgentVersions(in.Agents, in.ControllerVersion))
	if in.Actions != nil {
		checks = append(checks, checkPluginManifest(in.Agents, in.Actions))
		if len(in.Playbooks) > 0 || in.PlaybooksErr != "" {
			checks = append(checks, checkPlaybooks(in.Playbooks, in.PlaybooksErr, in.Agents, in.Actions))
		}
	}
	checks = append(checks, checkApprovers(in.Operators), checkAdminCredentials(in.Operators, in.LastActive, in.Now))
	checks = append(checks, checkPKI(in.CANotAfter, in.Now), checkAuditChain(in.Audit), checkJoinTokens(in.Tokens, in.Now))
	checks = append(checks, checkEvidenceBackend(in.Evidence))
	if in.Drills != nil {
		checks = append(checks, checkDrills(in.Drills, in.Now))
	}
	sortChecks(checks)
	r := &Report{Checks: checks, GeneratedAt: in.Now.UTC(), RunID: in.RunID, Accounts: []string{}, Regions: []string{}}
	for _, a := range in.Accounts {
		r.Accounts = append(r.Accounts, a.ID)
	}
	for reg := range regions {
		if reg != "" {
			r.Regions = append(r.Regions, reg)
		}
	}
	slices.Sort(r.Regions)
	r.Score = Score(checks)
	return r
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkRole is the responder role's reach: a task that ran could assume
// it; one that could not names why.
func checkRole(t Target) Check {
	c := Check{ID: CheckRole, Account: t.Account, Region: t.Region}
	if t.Reached {
		c.Status, c.Evidence = StatusOK, "the responder role was assumed with the ExternalId"
		return c
	}
	c.Status, c.Evidence = StatusFail, cmpOr(t.Error, "the aws-readiness task did not run")
	c.Remediation = "deploy the responder role to account " + t.Account + " from deploy/cloudformation/member-account.yaml " +
		"(aws cloudformation create-stack-instances --stack-set-name FirebreakResponder --deployment-targets Accounts=" + t.Account + " --regions us-east-1), " +
		"with the workers' ExternalId; see deploy/README.md"
	return c
}

// checkDiscovery reports what `accounts sync` could not learn about an
// account (its regions, when trusted access for account.amazonaws.com is
// missing).
func checkDiscovery(a *store.Account) Check {
	c := Check{ID: CheckDiscovery, Account: a.ID, Status: StatusOK, Evidence: fmt.Sprintf("enabled regions known: %s", strings.Join(a.Regions, ", "))}
	if len(a.Unknown) > 0 {
		var why, fix []string
		for _, u := range a.Unknown {
			why = append(why, u.Field+" unknown: "+u.Reason)
			fix = append(fix, u.Remediation)
		}
		c.Status, c.Evidence, c.Remediation = StatusWarn, strings.Join(why, "; "), strings.Join(slices.Compact(fix), "; ")
	}
	return c
}

// hostAgents are the enrolled host agents neither revoked nor on an
// instance AWS reports terminated.
func hostAgents(agents []*store.Agent) []*store.Agent {
	var out []*store.Agent
	for _, a := range agents {
		if a.Role == "host" && !a.Revoked && !a.Terminated() {
			out = append(out, a)
		}
	}
	return out
}

// checkCoverage matches an account's running instances to enrolled host
// agents by the instance id of their IMDS facts.
func checkCoverage(account string, instances []instance, agents []*store.Agent) Check {
	c := Check{ID: CheckCoverage, Account: account}
	covered := map[string]bool{}
	for _, a := range hostAgents(agents) {
		if a.Facts.GetAccount() == account && a.Facts.GetInstanceId() != "" {
			covered[a.Facts.GetInstanceId()] = true
		}
	}
	var missing []string
	for _, i := range instances {
		if !covered[i.ID] {
			missing = append(missing, i.ID+" "+tagString(i.Tags))
		}
	}
	n := len(instances)
	if n == 0 {
		c.Status, c.Evidence = StatusOK, "no running instances"
		return c
	}
	pct := 100 * (n - len(missing)) / n
	c.Evidence = fmt.Sprintf("%d%% of %d running instances have an agent", pct, n)
	switch {
	case len(missing) == 0:
		c.Status = StatusOK
		return c
	case pct >= 90:
		c.Status = StatusWarn
	default:
		c.Status = StatusFail
	}
	sort.Strings(missing)
	c.Evidence += "; without: " + strings.Join(missing, "; ")
	c.Remediation = "install the agent on them with the SSM document deploy/ssm/install-agent.yaml " +
		"(aws ssm send-command --document-name FirebreakInstallAgent --targets Key=InstanceIds,Values=ID,…), with a join token from `firebreak token create --role host`"
	return c
}

func tagString(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// checkStaleAgents lists host agents whose instance no longer runs in an
// inventoried account.
func checkStaleAgents(running map[string][]instance, inventoried map[string]bool, agents []*store.Agent) Check {
	c := Check{ID: CheckStaleAgents, Status: StatusOK}
	live := map[string]bool{}
	for _, is := range running {
		for _, i := range is {
			live[i.ID] = true
		}
	}
	var stale []string
	for _, a := range hostAgents(agents) {
		id := a.Facts.GetInstanceId()
		if id != "" && inventoried[a.Facts.GetAccount()] && !live[id] {
			stale = append(stale, fmt.Sprintf("%s (%s, %s)", a.ID, a.Hostname, id))
		}
	}
	if len(stale) == 0 {
		c.Evidence = "every host agent's instance is running"
		return c
	}
	sort.Strings(stale)
	c.Status, c.Evidence = StatusWarn, "agents whose instance no longer runs: "+strings.Join(stale, "; ")
	c.Remediation = "revoke them: firebreak agents revoke AGENT_ID"
	return c
}

// checkHostIsolation lists host agents on which host isolation cannot
// work: simulated hosts, and agents without the host-isolate plugin.
func checkHostIsolation(agents []*store.Agent) Check {
	c := Check{ID: CheckHostIsolation, Status: StatusOK}
	hosts := hostAgents(agents)
	var cannot []string
	for _, a := range hosts {
		has := slices.ContainsFunc(a.Plugins, func(p *agentv1.PluginInfo) bool { return p.GetDescription().GetName() == HostIsolateAction })
		switch {
		case a.Facts.GetSimulated():
			cannot = append(cannot, a.ID+" ("+a.Hostname+"): a simulated host")
		case !has:
			cannot = append(cannot, a.ID+" ("+a.Hostname+"): no host-isolate plugin")
		}
	}
	if len(cannot) == 0 {
		c.Evidence = fmt.Sprintf("%d host agent(s) offer host-isolate", len(hosts))
		return c
	}
	sort.Strings(cannot)
	c.Status, c.Evidence = StatusFail, "isolation cannot work on: "+strings.Join(cannot, "; ")
	c.Remediation = "install the agent package with its plugins (deploy/ssm/install-agent.yaml) as root under deploy/systemd/firebreak-agent.service, which nftables needs"
	return c
}

// checkAgentVersions reports the share of agents on another version than
// the controller's.
func checkAgentVersions(agents []*store.Agent, controller string) Check {
	c := Check{ID: CheckAgentVersions, Status: StatusOK}
	var live, outdated []string
	for _, a := range agents {
		if a.Revoked || a.Terminated() {
			continue
		}
		live = append(live, a.ID)
		if v := a.Facts.GetAgentVersion(); controller != "" && v != controller {
			outdated = append(outdated, a.ID+"="+v)
		}
	}
	if len(live) == 0 {
		c.Evidence = "no agents enrolled"
		return c
	}
	c.Evidence = fmt.Sprintf("%d of %d agents (%d%%) are outdated (controller %s)", len(outdated), len(live), 100*len(outdated)/len(live), controller)
	if len(outdated) > 0 {
		sort.Strings(outdated)
		c.Status = StatusWarn
		c.Evidence += ": " + strings.Join(outdated, ", ")
		c.Remediation = "upgrade the agents to " + controller + " (aws ssm send-command --document-name FirebreakInstallAgent … as on install)"
	}
	return c
}

// checkApprovers wants at least two operators who may approve, so the
// two-person rule can be satisfied.
func checkApprovers(ops []*store.Operator) Check {
	c := Check{ID: CheckApprovers}
	var names []string
	for _, o := range ops {
		if !o.Revoked && o.Role >= operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER {
			names = append(names, o.Name)
		}
	}
	sort.Strings(names)
	c.Evidence = fmt.Sprintf("%d operator(s) may approve: %s", len(names), strings.Join(names, ", "))
	if len(names) >= 2 {
		c.Status = StatusOK
		return c
	}
	c.Status = StatusFail
	c.Remediation = "add a second approver: firebreak operator add NAME --role approver (a run above the approval threshold needs a second operator's approval)"
	return c
}

// adminIdle is how long an admin credential may go unused.
const adminIdle = 90 * 24 * time.Hour

// checkAdminCredentials wants no admin credential unused for over 90 days:
// used means an audited action by it.
func checkAdminCredentials(ops []*store.Operator, lastActive map[string]time.Time, now time.Time) Check {
	c := Check{ID: CheckAdminCredentials, Status: StatusOK}
	var idle []string
	admins := 0
	for _, o := range ops {
		if o.Revoked || o.Role != operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN {
			continue
		}
		admins++
		last := lastActive[o.Name]
		if last.IsZero() {
			last = o.CreatedAt
		}
		if now.Sub(last) > adminIdle {
			idle = append(idle, fmt.Sprintf("%s (last used %s)", o.Name, last.UTC().Format("2006-01-02")))
		}
	}
	if len(idle) == 0 {
		c.Evidence = fmt.Sprintf("%d admin credential(s), each used within 90 days", admins)
		return c
	}
	sort.Strings(idle)
	c.Status, c.Evidence = StatusWarn, "admin credentials unused for over 90 days: "+strings.Join(idle, ", ")
	c.Remediation = "revoke each: firebreak operator revoke NAME"
	return c
}

// pkiMargin is how far from expiry the CA must be.
const pkiMargin = 30 * 24 * time.Hour

// checkPKI wants the CA more than 30 days from expiry. The task-signing
// key is an ed25519 key without an expiry date.
func checkPKI(caNotAfter, now time.Time) Check {
	c := Check{ID: CheckPKI}
	if caNotAfter.IsZero() {
		c.Status, c.Evidence, c.Remediation = StatusUnknown, "the CA certificate was not available", "check the controller's --pki-dir"
		return c
	}
	left := caNotAfter.Sub(now)
	c.Evidence = fmt.Sprintf("the CA expires %s (%d days); the task-signing key has no expiry", caNotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24))
	if left > pkiMargin {
		c.Status = StatusOK
		return c
	}
	c.Status = StatusFail
	c.Remediation = "rotate the CA before it expires (docs/security.md): agents and operators need new certificates from the new CA"
	return c
}

// checkAuditChain wants the audit chain to verify.
func checkAuditChain(a *store.AuditCheck) Check {
	c := Check{ID: CheckAuditChain}
	switch {
	case a == nil:
		c.Status, c.Evidence, c.Remediation = StatusUnknown, "the audit chain was not verified", "run firebreak audit verify"
	case a.OK:
		c.Status, c.Evidence = StatusOK, fmt.Sprintf("the audit chain verifies (%d records)", a.Records)
	default:
		c.Status, c.Evidence = StatusFail, fmt.Sprintf("the audit chain is broken at record %d", a.FirstBadSeq)
		c.Remediation = "run firebreak audit verify, preserve the database as evidence and compare with the last exported checkpoint (docs/security.md)"
	}
	return c
}

// checkJoinTokens reports outstanding join tokens, and warns about ones
// that never expire.
func checkJoinTokens(tokens []*store.JoinToken, now time.Time) Check {
	c := Check{ID: CheckJoinTokens, Status: StatusOK}
	outstanding := 0
	var forever []string
	for _, t := range tokens {
		if t.Revoked || t.UsesLeft == 0 || (!t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now)) {
			continue
		}
		outstanding++
		if t.ExpiresAt.IsZero() {
			forever = append(forever, t.ID())
		}
	}
	c.Evidence = fmt.Sprintf("%d outstanding join token(s)", outstanding)
	if len(forever) > 0 {
		sort.Strings(forever)
		c.Status = StatusWarn
		c.Evidence += fmt.Sprintf(", %d without expiry: %s", len(forever), strings.Join(forever, ", "))
		c.Remediation = "revoke them (firebreak token revoke ID) and create tokens with an expiry (firebreak token create --ttl 1h)"
	}
	return c
}

// checkEvidenceBackend wants the controller's evidence store to answer and,
// in S3, to keep evidence provable: Object Lock with a default retention
// (or the controller's own --evidence-retention on each object) and
// versioning. A setting that could not be read is unknown, naming why.
func checkEvidenceBackend(p *evidence.Probe) Check {
	c := Check{ID: CheckEvidenceBackend}
	switch {
	case p == nil:
		c.Status, c.Evidence, c.Remediation = StatusUnknown, "the evidence store was not probed", "run the review in the controller, which holds the evidence store"
		return c
	case p.Err != "" && p.Kind == "s3":
		c.Status, c.Evidence = StatusFail, "the evidence store "+p.Location+" does not answer the controller: "+p.Err
		c.Remediation = "check the bucket name and region of --evidence, AWS_ENDPOINT_URL, and that the controller's role may s3:ListBucket, s3:GetObject and s3:PutObject on it " +
			"(deploy/cloudformation/security-account.yaml grants them)"
		return c
	case p.Err != "":
		c.Status, c.Evidence = StatusFail, "the evidence store "+p.Location+" does not answer the controller: "+p.Err
		c.Remediation = "make the directory writable by the controller's user (install -d -m 0700 -o firebreak " + p.Location + ") and check its file system has room"
		return c
	case p.Kind != "s3":
		c.Status = StatusOK
		c.Evidence = "the local evidence directory " + p.Location + " takes new files (one controller's disk, without Object Lock: a cluster keeps evidence in S3 with --evidence s3://BUCKET/PREFIX)"
		return c
	}
	var unknown []string
	for _, e := range []string{p.ObjectLockErr, p.VersioningErr} {
		if e != "" {
			unknown = append(unknown, e)
		}
	}
	if len(unknown) > 0 {
		c.Status, c.Evidence = StatusUnknown, "the evidence store "+p.Location+" answers, but its settings could not be read: "+strings.Join(unknown, "; ")
		c.Remediation = "allow s3:GetBucketObjectLockConfiguration and s3:GetBucketVersioning on the bucket to the controller's role"
		return c
	}
	bucket, _, _ := strings.Cut(strings.TrimPrefix(p.Location, "s3://"), "/")
	retention := "no retention of its own on new objects"
	if p.Retention > 0 {
		retention = fmt.Sprintf("%s compliance retention on each new object (--evidence-retention)", p.Retention)
	}
	lockFix := "aws s3api put-object-lock-configuration --bucket " + bucket +
		` --object-lock-configuration '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"COMPLIANCE","Days":365}}}'`
	c.Evidence = fmt.Sprintf("the evidence store %s answers: Object Lock %s, versioning %s, %s", p.Location, cmpOr(p.ObjectLock, "off"), cmpOr(p.Versioning, "never enabled"), retention)
	switch {
	case p.ObjectLock == "":
		// Security-critical: without Object Lock stored evidence can be
		// deleted or overwritten, and the custody record proves nothing.
		c.Status = StatusFail
		c.Remediation = "Object Lock can only be turned on for a versioned bucket: aws s3api put-bucket-versioning --bucket " + bucket +
			" --versioning-configuration Status=Enabled, then " + lockFix + " (or move the evidence to the bucket deploy/cloudformation/security-account.yaml creates)"
	case p.Versioning != "Enabled":
		c.Status, c.Remediation = StatusWarn, "aws s3api put-bucket-versioning --bucket "+bucket+" --versioning-configuration Status=Enabled"
	case p.ObjectLock == "enabled, no default retention" && p.Retention == 0:
		c.Status, c.Remediation = StatusWarn, lockFix+", or start the controller with --evidence-retention 8760h"
	default:
		c.Status = StatusOK
	}
	return c
}

// hostProtections are the sandbox settings of
// deploy/systemd/firebreak-agent.service a host agent reports in force.
var hostProtections = []string{"NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem"}

// checkHostCapability reports what the host agents claim of their ability
// to isolate their host: root, nftables usable, and the systemd unit with
// its sandbox. These are the agents' own claims, refreshed at connect, and
// the evidence says so: a claim of inability fails (a host that says it
// cannot isolate is believed), while a claim of ability alone only warns,
// unproven, since an attacker holding a host can make it claim anything.
// Only proof the controller holds makes it ok: a host-isolate task the
// controller sent that agent and stored as succeeded (proven: agent id →
// when). Simulated hosts are left to host.isolation.
func checkHostCapability(agents []*store.Agent, proven map[string]time.Time) Check {
	c := Check{ID: CheckHostCapability, Status: StatusOK}
	var cannot, weak, silent, unproven, shown []string
	real := 0
	for _, a := range hostAgents(agents) {
		if a.Facts.GetSimulated() {
			continue
		}
		real++
		name := a.ID + " (" + a.Hostname + ")"
		hc := a.Facts.GetHostCapability()
		if hc == nil {
			silent = append(silent, name)
			continue
		}
		var why []string
		if !hc.GetRoot() {
			why = append(why, "not root")
		}
		if !hc.GetNftables() {
			why = append(why, "nftables not usable: "+hc.GetNftablesDetail())
		}
		if len(why) > 0 {
			cannot = append(cannot, name+": "+strings.Join(why, ", "))
			continue
		}
		var missing []string
		for _, p := range hostProtections {
			if !slices.Contains(hc.GetProtections(), p) {
				missing = append(missing, p)
			}
		}
		switch {
		case hc.GetSystemdUnit() == "":
			weak = append(weak, name+": not under systemd")
		case len(missing) > 0:
			weak = append(weak, name+": "+hc.GetSystemdUnit()+" without "+strings.Join(missing, ", "))
		}
		// Security-critical: a claim of ability is never proof; only an
		// isolation the controller itself sent and recorded as done is.
		if at := proven[a.ID]; !at.IsZero() {
			shown = append(shown, name+" on "+at.UTC().Format("2006-01-02"))
		} else {
			unproven = append(unproven, name)
		}
	}
	const claims = "the host agents' own claims at connect, not verified by the controller"
	if real == 0 {
		c.Evidence = "no host agent on a real host (" + claims + ")"
		return c
	}
	sort.Strings(cannot)
	sort.Strings(weak)
	sort.Strings(silent)
	var parts []string
	if n := real - len(cannot) - len(weak) - len(silent); n > 0 && len(cannot)+len(weak)+len(silent) == 0 {
		parts = append(parts, fmt.Sprintf("%d host agent(s) claim root, usable nftables and the hardened systemd unit", n))
	}
	if len(cannot) > 0 {
		parts = append(parts, "isolation cannot work on: "+strings.Join(cannot, "; "))
	}
	if len(weak) > 0 {
		parts = append(parts, "outside the hardened unit: "+strings.Join(weak, "; "))
	}
	if len(silent) > 0 {
		parts = append(parts, "no capability reported (agents older than the controller): "+strings.Join(silent, "; "))
	}
	if len(unproven) > 0 {
		parts = append(parts, "isolation unproven until a drill or an isolation proves it (only the agent's own claim): "+strings.Join(unproven, "; "))
	}
	if len(shown) > 0 {
		sort.Strings(shown)
		parts = append(parts, "isolation proven by a host-isolate task the controller sent and recorded as succeeded: "+strings.Join(shown, "; "))
	}
	unit := "install deploy/systemd/firebreak-agent.service (root, CAP_NET_ADMIN, nf_tables loaded by its ExecStartPre) with deploy/ssm/install-agent.yaml"
	prove := "prove isolation on each host in a maintenance window: firebreak isolate --select id=AGENT_ID --wait, then firebreak unisolate --select id=AGENT_ID --wait (docs/isolation.md)"
	switch {
	case len(cannot) > 0:
		c.Status, c.Remediation = StatusFail, unit+"; on a host without nf_tables: modprobe nf_tables, or a kernel with CONFIG_NF_TABLES"
	case len(weak) > 0:
		c.Status, c.Remediation = StatusWarn, unit+", so the agent runs sandboxed (docs/deploy.md explains each setting)"
	case len(silent) > 0:
		c.Status, c.Remediation = StatusWarn, "upgrade the agents (aws ssm send-command --document-name FirebreakInstallAgent …), which then report their capability"
	case len(unproven) > 0:
		c.Status, c.Remediation = StatusWarn, prove
	}
	c.Evidence = strings.Join(parts, "; ") + " (" + claims + ")"
	return c
}

// checkPluginManifest wants every agent to offer each catalogue action
// that runs on its role, with the catalogue's exact description, and
// every agent offering an action to report the same plugin binary
// (SHA-256) as the rest of the fleet for it; simulated hosts are left to
// host.isolation. Agents check each plugin
// binary against their own manifest at every launch; what they report of
// it is their claim, and the evidence says so.
func checkPluginManifest(agents []*store.Agent, actions *actioncatalog.Catalogue) Check {
	c := Check{ID: CheckPluginManifest, Status: StatusOK}
	var missing, differ []string
	sums := map[string]map[string][]string{} // action → sha256 → agents
	live := 0
	for _, a := range agents {
		// Simulated hosts run without the isolation plugins on purpose;
		// host.isolation reports them.
		if a.Revoked || a.Terminated() || a.Facts.GetSimulated() {
			continue
		}
		live++
		accepted, refused := actions.Review(a.Role, a.Plugins)
		var lacks []string
		for _, e := range actions.Entries() {
			name := e.Description.GetName()
			if roles := e.Description.GetRoles(); len(roles) == 0 || !slices.Contains(roles, a.Role) || accepted[name] {
				continue
			}
			why := "missing"
			if i := slices.IndexFunc(refused, func(r actioncatalog.Refusal) bool { return r.Action == name }); i >= 0 {
				why = refused[i].Reason
				if len(refused[i].Differences) > 0 {
					why += " (" + strings.Join(refused[i].Differences, ", ") + ")"
				}
			}
			lacks = append(lacks, name+": "+why)
		}
		if len(lacks) > 0 {
			missing = append(missing, fmt.Sprintf("%s (%s, %s): %s", a.ID, a.Hostname, a.Role, strings.Join(lacks, "; ")))
		}
		for _, p := range a.Plugins {
			name := p.GetDescription().GetName()
			if accepted[name] && p.GetSha256() != "" {
				if sums[name] == nil {
					sums[name] = map[string][]string{}
				}
				sums[name][p.GetSha256()] = append(sums[name][p.GetSha256()], a.ID)
			}
		}
	}
	for name, bySum := range sums {
		if len(bySum) < 2 {
			continue
		}
		var parts []string
		for sum, ids := range bySum {
			sort.Strings(ids)
			parts = append(parts, fmt.Sprintf("%s… on %s", sum[:min(12, len(sum))], strings.Join(ids, ", ")))
		}
		sort.Strings(parts)
		differ = append(differ, name+": "+strings.Join(parts, " / "))
	}
	sort.Strings(missing)
	sort.Strings(differ)
	const claims = "the plugin sets the agents report at connect"
	if live == 0 {
		c.Evidence = "no agents enrolled but simulated hosts"
		return c
	}
	if len(missing) == 0 && len(differ) == 0 {
		c.Evidence = fmt.Sprintf("%d agent(s) offer every catalogue action of their role with the catalogue's description, each action from one binary (%s)", live, claims)
		return c
	}
	var parts []string
	if len(missing) > 0 {
		c.Status = StatusFail
		parts = append(parts, "actions the catalogue runs on their role that agents cannot be sent: "+strings.Join(missing, "; "))
	} else {
		c.Status = StatusWarn
	}
	if len(differ) > 0 {
		parts = append(parts, "agents run different binaries of one action: "+strings.Join(differ, "; "))
	}
	c.Evidence = strings.Join(parts, "; ") + " (" + claims + ")"
	c.Remediation = "install the agent package of the controller's version with all its plugins and their manifest.json (bin/plugins, deploy/ssm/install-agent.yaml), " +
		"then restart the agents; `firebreak actions list` shows which agents offer each action"
	return c
}
