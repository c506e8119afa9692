// Package eradplan turns what a credential's scope found the attacker left
// (trailscope artifacts) into an eradication plan: one step per artifact,
// each naming the exact AWS calls it would make, the read calls that record
// the resource's state before it, and the calls that wait for an operator's
// confirmation (deleting a quarantined user or role).
//
// The plan is data: the controller stores it with its case, and the
// aws-eradicate action executes one account's steps from it.
package eradplan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// DenyAllPolicyARN is the AWS managed policy a quarantine attaches.
const DenyAllPolicyARN = "arn:aws:iam::aws:policy/AWSDenyAll"

// DenyAllTrustPolicy is the trust policy a changed role gets when the
// document before the change cannot be known: it lets no one assume it.
const DenyAllTrustPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}`

// Verification outcomes: what a step's resource is when it is read live
// after eradication (the aws-eradicate action's verify mode).
const (
	// VerifyGone means the artifact no longer exists.
	VerifyGone = "gone"
	// VerifyNeutralised means it exists but can do nothing for the
	// attacker: a key inactive, a principal under AWSDenyAll, a trust put
	// back, logging on, an instance stopped.
	VerifyNeutralised = "neutralised"
	// VerifyLive means the attacker's artifact is still in effect.
	VerifyLive = "live"
	// VerifyUnverified means its state could not be read, or the kind has
	// no live check (a manual step): a responder looks by hand.
	VerifyUnverified = "unverified"
)

// Call is one AWS API call. Params are the operation's request members by
// their API names (UserName, GroupId…); EachOf, when set, says the call is
// made once per item the named read call lists at run time, with Each
// naming the parameter each item fills.
type Call struct {
	Service   string            `json:"service"`
	Operation string            `json:"operation"`
	Params    map[string]string `json:"params,omitempty"`
	EachOf    string            `json:"each_of,omitempty"`
	Each      string            `json:"each,omitempty"`
}

// String renders the call as the plan shows it: iam:DeleteAccessKey
// AccessKeyId=… UserName=….
func (c Call) String() string {
	var b strings.Builder
	b.WriteString(c.Service + ":" + c.Operation)
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		fmt.Fprintf(&b, " %s=%s", k, c.Params[k])
	}
	if c.EachOf != "" {
		fmt.Fprintf(&b, " (%s: each of %s)", c.Each, c.EachOf)
	}
	return b.String()
}

// Phase orders the steps: quarantine first, so the attacker's principals
// can do nothing while the rest is removed, then removals, then what
// restores the account's defences. Every step's OnConfirm calls come after
// all steps' Calls.
type Phase int

// The phases, in order.
const (
	PhaseQuarantine Phase = iota + 1
	PhaseRemove
	PhaseRestore
)

// String names the phase.
func (p Phase) String() string {
	switch p {
	case PhaseQuarantine:
		return "quarantine"
	case PhaseRemove:
		return "remove"
	case PhaseRestore:
		return "restore"
	}
	return "unknown"
}

// MarshalText writes the phase's name in JSON.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a phase's name.
func (p *Phase) UnmarshalText(b []byte) error {
	for _, q := range []Phase{PhaseQuarantine, PhaseRemove, PhaseRestore} {
		if q.String() == string(b) {
			*p = q
			return nil
		}
	}
	return fmt.Errorf("unknown phase %q", b)
}

// Step is what eradication does about one artifact.
type Step struct {
	// ID is the step's number in the plan, s01, s02….
	ID string `json:"id"`
	// Account and Region are where the calls go (IAM: us-east-1).
	Account string `json:"account"`
	Region  string `json:"region"`
	// Kind and Resource are the artifact's (trailscope.Kind…, its ID).
	Kind     string `json:"kind"`
	Resource string `json:"resource"`
	// Action names what the step does (delete-access-key, quarantine-user…).
	Action string `json:"action"`
	Phase  Phase  `json:"phase"`
	// Summary says it in a sentence for the operator.
	Summary string `json:"summary"`
	// Before are the read calls whose answers record the resource's state
	// before the step changes it.
	Before []Call `json:"before,omitempty"`
	// Calls are made in order when the plan runs.
	Calls []Call `json:"calls,omitempty"`
	// OnConfirm are made after Calls only when the run confirms deletions.
	OnConfirm []Call `json:"on_confirm,omitempty"`
	// Manual is set when no API call can undo the artifact safely; Summary
	// says what to do by hand.
	Manual bool `json:"manual,omitempty"`
	// EventID is the CloudTrail event that left the artifact.
	EventID string `json:"event_id,omitempty"`
	// Detail is the artifact's detail (policy ARN, CIDR, account shared
	// with…).
	Detail map[string]string `json:"detail,omitempty"`
}

// Plan is an eradication plan for a case.
type Plan struct {
	ID        string    `json:"id"`
	CaseID    string    `json:"case_id"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// TerminateInstances is set when the plan terminates the instances
	// the attacker launched instead of only stopping them.
	TerminateInstances bool   `json:"terminate_instances,omitempty"`
	Steps              []Step `json:"steps"`
	// Rescope are the scopes the plan was built from, as a responder asked
	// them: its verification runs them again first, so that what the key
	// and its sessions did since (an artifact made after the plan) is
	// judged too.
	Rescope []Rescope `json:"rescope,omitempty"`
}

// Rescope is one scope to run again before a verification: `firebreak scope
// key KEY --since START --case ID` with the same source, accounts and
// regions.
type Rescope struct {
	// Key is the key a responder scoped (not a session it minted: the
	// scope follows those again).
	Key string `json:"access_key_id"`
	// Source is lookup or trail.
	Source string `json:"source"`
	// Start is the window's start: the earliest of the scopes of the key.
	Start time.Time `json:"start"`
	// Accounts is the account selector: the accounts whose event history
	// to read (lookup), or the log-archive account (trail).
	Accounts    string   `json:"accounts"`
	Regions     []string `json:"regions,omitempty"`
	TrailBucket string   `json:"trail_bucket,omitempty"`
	TrailPrefix string   `json:"trail_prefix,omitempty"`
	OrgID       string   `json:"org_id,omitempty"`
}

// Accounts lists the accounts the plan's steps act in.
func (p *Plan) Accounts() []string {
	seen := map[string]bool{}
	for _, s := range p.Steps {
		seen[s.Account] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// StepsIn returns the steps of one account, in plan order.
func (p *Plan) StepsIn(account string) []Step {
	var out []Step
	for _, s := range p.Steps {
		if s.Account == account {
			out = append(out, s)
		}
	}
	return out
}

// Options changes how a plan is built.
type Options struct {
	// TerminateInstances terminates launched instances after their
	// snapshot instead of stopping them.
	TerminateInstances bool
	// PriorTrust holds the trust policy each changed role had before the
	// attacker's change, keyed by account/role, for a role whose artifact
	// does not carry it already: the scope resolves it from CloudTrail's
	// requestParameters (the role's CreateRole or last
	// UpdateAssumeRolePolicy before the change) into the artifact's
	// trailscope.DetailPriorTrust, which comes first. A role known to
	// neither gets DenyAllTrustPolicy.
	PriorTrust map[string]string
	// PriorBucketPolicy holds each changed bucket's policy before the
	// change, keyed by account/bucket; a bucket missing from it has the
	// attacker's policy deleted.
	PriorBucketPolicy map[string]string
}

// Key is the PriorTrust and PriorBucketPolicy key of a resource.
func Key(account, name string) string { return account + "/" + name }

// Build proposes one step per distinct artifact, quarantines first, then
// removals, then restorations. Artifacts that
// repeat (the same role's trust changed twice) make one step; a later
// trust change keeps the document before the first.
func Build(artifacts []trailscope.Artifact, opt Options) []Step {
	type key struct{ kind, account, region, id, detail string }
	seen := map[key]bool{}
	var steps []Step
	for _, a := range artifacts {
		k := key{a.Kind, a.Account, a.Region, a.ID, detailKey(a)}
		if seen[k] {
			continue
		}
		seen[k] = true
		steps = append(steps, stepFor(a, opt))
	}
	slices.SortStableFunc(steps, func(x, y Step) int { return cmp.Compare(x.Phase, y.Phase) })
	for i := range steps {
		steps[i].ID = fmt.Sprintf("s%02d", i+1)
	}
	return steps
}

// detailKey identifies an artifact's detail for de-duplication; a role's
// trust changes are one artifact whatever the documents.
func detailKey(a trailscope.Artifact) string {
	if a.Kind == trailscope.KindRoleTrust {
		return ""
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a.Detail)) {
		b.WriteString(k + "=" + a.Detail[k] + ";")
	}
	return b.String()
}

func call(service, op string, params ...string) Call {
	c := Call{Service: service, Operation: op, Params: map[string]string{}}
	for i := 0; i+1 < len(params); i += 2 {
		c.Params[params[i]] = params[i+1]
	}
	return c
}

// each is a call made once per item a read call lists.
func each(c Call, of, param string) Call {
	c.EachOf, c.Each = of, param
	return c
}
