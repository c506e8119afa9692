package playbook

import (
	"fmt"
	"slices"
	"strings"

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The operations a step may run instead of an action. An operation runs on
// the controller and orders several runs of first-party actions itself:
// the runs pick their own accounts, so an operation step has no targets.
const (
	// OpCredentialScope scopes a key through CloudTrail across the
	// organisation, following the sessions it minted into other accounts
	// (aws-credential-scope runs, round by round), into the case.
	OpCredentialScope = "credential-scope" //nolint:gosec // G101: an operation's name, not a credential
	// OpEradicationPlan builds an eradication plan from the case's scope.
	OpEradicationPlan = "eradication-plan"
	// OpEradicate runs a plan of the case: a dry run in every account of
	// the plan first, then one aws-eradicate run per account, each waiting
	// for a second operator's approval.
	OpEradicate = "eradicate"
	// OpEradicationVerify scopes the plan's keys again, reads every step's
	// resource live, and has the controller judge those runs; when nothing
	// is left, the case enters its eradicate phase.
	OpEradicationVerify = "eradication-verify"
)

// operationPrefix marks an operation where an action name would be: no
// action's name has a colon.
const operationPrefix = "operation:"

// IsOperation reports whether an action name is an operation's key.
func IsOperation(action string) bool { return strings.HasPrefix(action, operationPrefix) }

// OperationKey is the name an operation step's runs and records carry in
// place of an action: "operation:NAME".
func OperationKey(name string) string { return operationPrefix + name }

func str(name, desc string, required bool) *pluginv1.ParamSpec {
	return &pluginv1.ParamSpec{Name: name, Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: desc, Required: required}
}

// Operations describes each operation's parameters, as the catalogue
// describes an action's.
var Operations = map[string]*pluginv1.ActionDescription{
	OpCredentialScope: {Name: OpCredentialScope, Description: "scope an access key across the organisation through CloudTrail into the case",
		Params: []*pluginv1.ParamSpec{
			str("access_key_id", "the key to scope: AKIA… or ASIA…", true),
			str("since", "the window's start: RFC 3339 or a duration ago (24h, 30d); default 7d", false),
			str("accounts", `accounts whose event history to read: "all", "ID,ID" or "ou=NAME"; default all`, false),
			{Name: "regions", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, Description: "regions to read"},
			str("trail_bucket", "read the organisation trail's log files in this bucket instead of LookupEvents (with log_archive)", false),
			str("trail_prefix", "the trail's S3 key prefix before AWSLogs/", false),
			str("log_archive", "the 12-digit account holding trail_bucket", false),
			str("org_id", "the organisation id (o-…) in the trail bucket's layout", false),
		}},
	OpEradicationPlan: {Name: OpEradicationPlan, Description: "build an eradication plan from the case's scope",
		Params: []*pluginv1.ParamSpec{
			{Name: "terminate_instances", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, Description: "terminate (after a snapshot) the instances the attacker launched instead of stopping them", DefaultJson: "false"},
		}},
	OpEradicate: {Name: OpEradicate, Description: "dry-run, then run, an eradication plan of the case under approval", Destructive: true,
		Params: []*pluginv1.ParamSpec{
			str("plan_id", "the eradication plan (erp-…), of the playbook run's case", true),
			{Name: "confirm_deletes", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, Description: "also delete the users and roles the attacker created (they are quarantined either way)", DefaultJson: "false"},
		}},
	OpEradicationVerify: {Name: OpEradicationVerify, Description: "verify an eradication plan of the case and record the case's eradication",
		Params: []*pluginv1.ParamSpec{
			str("plan_id", "the eradication plan (erp-…), of the playbook run's case", true),
		}},
}

// OperationActions are the actions each operation's runs run: the workers
// must offer them for the operation to work.
var OperationActions = map[string][]string{
	OpCredentialScope:   {eradflow.ScopeAction},
	OpEradicationPlan:   nil,
	OpEradicate:         {eradflow.EradicateAction},
	OpEradicationVerify: {eradflow.ScopeAction, eradflow.EradicateAction},
}

// OperationNames lists the operations, sorted.
func OperationNames() []string {
	var out []string
	for n := range Operations {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// checkOperation checks an operation step: the operation exists, it has
// no targets or rollback (its runs choose their accounts, and eradication
// is undone from each step's recorded before-state, by hand), and an
// operation that changes accounts waits for an approver. It returns the
// operation's description, or nil.
func (c *compiler) checkOperation(s *Step) *pluginv1.ActionDescription {
	op, ok := Operations[s.Operation]
	if !ok {
		c.errorAt(s.operationPos, "step %q: unknown operation %q (operations: %s)", s.ID, s.Operation, strings.Join(OperationNames(), ", "))
		return nil
	}
	if s.Targets.set {
		c.errorAt(or(s.Targets.pos, s.Pos), "step %q: operation %s runs on the controller and takes no targets: its runs pick their own accounts", s.ID, s.Operation)
	}
	if s.Rollback != nil {
		c.errorAt(s.Rollback.Pos, "step %q: operation %s has no rollback; each eradication step's before-state is recorded for undoing it by hand", s.ID, s.Operation)
	}
	// Security-critical: an operation that changes the accounts runs only
	// after a second operator approves it (the two-person rule); a
	// playbook cannot opt out.
	if op.GetDestructive() && s.Approval != ApprovalRequired {
		c.errorAt(or(s.approvalPos, s.Pos), "step %q: operation %s changes the accounts and must wait for a second operator: add approval: required", s.ID, s.Operation)
	}
	for _, p := range s.Params {
		lit, ok := p.Value.Literal.(string)
		if p.Value.Kind != ValueLiteral || !ok {
			continue
		}
		if msg := checkOperationLiteral(p.Name, lit); msg != "" {
			c.errorAt(p.Value.Pos, "step %q: param %q: %s", s.ID, p.Name, msg)
		}
	}
	has := func(name string) bool {
		return slices.ContainsFunc(s.Params, func(p *Param) bool { return p.Name == name })
	}
	if has("trail_bucket") != has("log_archive") {
		c.errorAt(or(s.paramsPos, s.Pos), "step %q: params trail_bucket and log_archive go together: the bucket is read in the account that holds it", s.ID)
	}
	return op
}

// checkOperationLiteral checks the literal value of an operation's
// parameter whose form is known; values from expressions are checked when
// the step runs.
func checkOperationLiteral(name, v string) string {
	switch name {
	case "access_key_id":
		if !eradflow.KeyPattern.MatchString(v) {
			return fmt.Sprintf("%q is not an AWS access key id (AKIA… or ASIA…)", v)
		}
	case "plan_id":
		if !strings.HasPrefix(v, "erp-") {
			return fmt.Sprintf("%q is not an eradication plan id (erp-…)", v)
		}
	case "log_archive":
		if !eradflow.AccountPattern.MatchString(v) {
			return fmt.Sprintf("%q is not a 12-digit account id", v)
		}
	}
	return ""
}
