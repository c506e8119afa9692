// Package eradflow is the order of runs behind scoping a stolen credential
// and eradicating what it left: the scope's rounds of aws-credential-scope
// runs (sessions followed into further accounts), an eradication plan's
// aws-eradicate runs, one per account, and the verification that scopes
// the plan's keys again, reads every step's resource live and has the
// controller judge those runs from its own store.
//
// It is written once and driven two ways, through a Backend: the operator
// CLI (`firebreak scope key`, `firebreak eradicate run|verify`) reaches
// the controller through the operator RPCs, and the playbook executor runs
// the same flows in process for a playbook's operation steps
// (credential-scope, eradicate, eradication-verify). Either way every run
// is an ordinary run of the controller: planned, signed, approved under the
// two-person rule when it changes things, audited, and stored with its
// case.
package eradflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The actions the flows run.
const (
	// ScopeAction scopes a credential through CloudTrail.
	ScopeAction = "aws-credential-scope"
	// EradicateAction executes or verifies one account's plan steps.
	EradicateAction = "aws-eradicate"
)

// MaxScopeRounds bounds how many times the lookup source follows sessions
// into further accounts.
const MaxScopeRounds = 5

var (
	// KeyPattern is an AWS access key id, long-term (AKIA) or temporary
	// (ASIA).
	KeyPattern = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{12,124}$`)
	// AccountPattern is a 12-digit AWS account id.
	AccountPattern = regexp.MustCompile(`^\d{12}$`)
)

// RunRequest is one run a flow asks for.
type RunRequest struct {
	// Key names the run within its flow ("scope/0/1", "run/ACCOUNT"): the
	// same flow asks for the same runs under the same keys, so a backend
	// that keys idempotency on it creates each run once however often a
	// flow is resumed.
	Key             string
	Action          string
	Accounts        string
	CaseID          string
	Params          map[string]any
	Reason          string
	Deadline        time.Duration
	RequireApproval bool
}

// Runs creates and follows a flow's runs.
type Runs interface {
	// CreateRun creates a run, or returns the one created earlier under
	// the same key, and returns its id.
	CreateRun(ctx context.Context, r RunRequest) (string, error)
	// FollowRun waits for a run's end and returns it with its tasks.
	FollowRun(ctx context.Context, runID string) (*operatorv1.Run, error)
}

// Backend is how a flow reaches the controller.
type Backend interface {
	Runs
	// OrgAccounts lists the organisation's account ids; none when they
	// were never synced.
	OrgAccounts(ctx context.Context) ([]string, error)
	// AddNote adds a note to a case's timeline.
	AddNote(ctx context.Context, caseID, text string) error
	// RecordVerification has the controller judge a plan's verify runs
	// from its own store, and returns its verdict as JSON.
	RecordVerification(ctx context.Context, planID string, runIDs []string) ([]byte, error)
}

// Flow drives the scope, eradication and verification runs through a
// Backend.
type Flow struct {
	// Backend creates and follows the runs.
	Backend Backend
	// Progress, when set, gets one line per run created and per notable
	// event (for a terminal's standard error, or a log).
	Progress func(line string)
}

func (f *Flow) say(format string, args ...any) {
	if f.Progress != nil {
		f.Progress(fmt.Sprintf(format, args...))
	}
}

// ScopeRequest is one scope of a key, as `firebreak scope key` asks it.
type ScopeRequest struct {
	// Key is the access key id to scope.
	Key string
	// Since is the window's start: RFC 3339 or a duration ago.
	Since  string
	CaseID string
	// Accounts is the lookup source's account selector.
	Accounts string
	Regions  []string
	// TrailBucket and LogArchive, together, read the organisation trail's
	// log files in S3 instead of LookupEvents.
	TrailBucket, TrailPrefix, LogArchive, OrgID string
	// Deadline is each scope run's.
	Deadline time.Duration
	// KeyPrefix is prepended to every run's key (a verification's
	// re-scopes are told apart from the scope's own).
	KeyPrefix string
}

// Check says what is wrong with a request, precisely.
func (r *ScopeRequest) Check() error {
	if !KeyPattern.MatchString(r.Key) {
		return fmt.Errorf("%q is not an AWS access key id (AKIA… or ASIA…)", r.Key)
	}
	if (r.TrailBucket == "") != (r.LogArchive == "") {
		return errors.New("the trail bucket and the log-archive account go together: the bucket is read in the account that holds it")
	}
	if r.LogArchive != "" && !AccountPattern.MatchString(r.LogArchive) {
		return fmt.Errorf("log-archive account %q is not a 12-digit account id", r.LogArchive)
	}
	return nil
}

// scopeTaskResult is the part of an aws-credential-scope result a scope
// reads.
type scopeTaskResult struct {
	Account  string            `json:"account"`
	Source   string            `json:"source"`
	Key      string            `json:"access_key_id"`
	Scope    *trailscope.Scope `json:"scope"`
	NextKeys []struct {
		AccessKeyID string `json:"access_key_id"`
		Account     string `json:"account"`
	} `json:"next_keys"`
	Read struct {
		Files     int   `json:"files"`
		Bytes     int64 `json:"bytes"`
		Pages     int   `json:"pages"`
		Records   int   `json:"records"`
		ElapsedMS int64 `json:"elapsed_ms"`
	} `json:"read"`
}

// ScopeResult is what a scope found: `firebreak scope key --json`.
type ScopeResult struct {
	Key       string                   `json:"access_key_id"`
	Source    string                   `json:"source"`
	Runs      []string                 `json:"runs"`
	Events    int                      `json:"events"`
	Accounts  []string                 `json:"accounts"`
	Sessions  []*trailscope.Credential `json:"sessions"`
	ByClass   map[trailscope.Class]int `json:"by_class"`
	Artifacts []trailscope.Artifact    `json:"artifacts"`
	Places    []*trailscope.Place      `json:"places"`
	// Failed names the scope tasks that did not succeed: what they would
	// have read is unknown.
	Failed []string         `json:"failed_targets"`
	Read   map[string]int64 `json:"read"`
}

func (s *ScopeResult) add(r *scopeTaskResult) {
	sc := r.Scope
	s.Events += sc.EventCount
	s.Read["files"] += int64(r.Read.Files)
	s.Read["bytes"] += r.Read.Bytes
	s.Read["pages"] += int64(r.Read.Pages)
	s.Read["records"] += int64(r.Read.Records)
	s.Read["elapsed_ms"] = max(s.Read["elapsed_ms"], r.Read.ElapsedMS)
	if sc.Chain != nil {
		for _, c := range sc.Chain.Credentials {
			if c != nil && !slices.ContainsFunc(s.Sessions, func(o *trailscope.Credential) bool { return o.AccessKeyID == c.AccessKeyID }) {
				s.Sessions = append(s.Sessions, c)
			}
		}
	}
	for k, v := range sc.ByClass {
		s.ByClass[k] += v
	}
	s.Artifacts = append(s.Artifacts, sc.Artifacts...)
	for _, p := range sc.Places {
		if p != nil {
			s.Places = append(s.Places, p)
			if !slices.Contains(s.Accounts, p.Account) {
				s.Accounts = append(s.Accounts, p.Account)
			}
		}
	}
}

// Scope runs the scope, round by round for LookupEvents (the sessions
// that entered other accounts are scoped there, up to MaxScopeRounds),
// adds a note of what it found to the case, and returns it; the tasks that
// did not succeed are in its Failed.
func (f *Flow) Scope(ctx context.Context, o ScopeRequest) (*ScopeResult, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	out := &ScopeResult{Key: o.Key, Source: "lookup", ByClass: map[trailscope.Class]int{}, Read: map[string]int64{},
		Sessions: []*trailscope.Credential{}, Artifacts: []trailscope.Artifact{}, Places: []*trailscope.Place{}, Runs: []string{}, Failed: []string{}, Accounts: []string{}}
	base := map[string]any{"start": o.Since}
	if len(o.Regions) > 0 {
		base["regions"] = o.Regions
	}
	// The organisation's accounts let the classifier flag trust and
	// shares that leave it; without a sync the flag is off.
	if ids, err := f.Backend.OrgAccounts(ctx); err == nil && len(ids) > 0 {
		base["org_accounts"] = ids
	}
	type round struct{ key, accounts string }
	var queue []round
	if o.TrailBucket != "" {
		out.Source = "trail"
		base["source"], base["trail_bucket"] = "trail", o.TrailBucket
		if o.OrgID != "" {
			base["org_id"] = o.OrgID
		}
		if o.TrailPrefix != "" {
			base["trail_prefix"] = o.TrailPrefix
		}
		queue = []round{{o.Key, o.LogArchive}}
	} else {
		queue = []round{{o.Key, cmpOr(o.Accounts, "all")}}
	}
	scoped := map[string]bool{}
	for r := 0; len(queue) > 0; r++ {
		if r == MaxScopeRounds {
			f.say("stopped after %d rounds; not scoped: %v", MaxScopeRounds, queue)
			break
		}
		var next []round
		for i, q := range queue {
			scoped[q.key+"@"+q.accounts] = true
			params := map[string]any{"access_key_id": q.key}
			for k, v := range base {
				params[k] = v
			}
			results, err := f.scopeRun(ctx, RunRequest{Key: fmt.Sprintf("%sscope/%d/%d", o.KeyPrefix, r, i), Action: ScopeAction, Accounts: q.accounts,
				CaseID: o.CaseID, Params: params, Deadline: o.Deadline, Reason: "scope of " + q.key}, out)
			if err != nil {
				return nil, err
			}
			for _, res := range results {
				out.add(res)
				for _, nk := range res.NextKeys {
					if !scoped[nk.AccessKeyID+"@"+nk.Account] && AccountPattern.MatchString(nk.Account) && KeyPattern.MatchString(nk.AccessKeyID) {
						scoped[nk.AccessKeyID+"@"+nk.Account] = true
						next = append(next, round{nk.AccessKeyID, nk.Account})
					}
				}
			}
		}
		queue = next
	}
	slices.Sort(out.Accounts)
	if o.CaseID != "" && len(out.Artifacts) > 0 {
		if err := f.Backend.AddNote(ctx, o.CaseID, ScopeNote(out)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// scopeRun runs one aws-credential-scope run and returns its tasks'
// results.
func (f *Flow) scopeRun(ctx context.Context, req RunRequest, out *ScopeResult) ([]*scopeTaskResult, error) {
	id, err := f.Backend.CreateRun(ctx, req)
	if err != nil {
		return nil, err
	}
	out.Runs = append(out.Runs, id)
	f.say("run %s: %s of %s in %s", id, ScopeAction, req.Params["access_key_id"], req.Accounts)
	final, err := f.Backend.FollowRun(ctx, id)
	if err != nil {
		return nil, err
	}
	var results []*scopeTaskResult
	for _, t := range final.GetTasks() {
		var res scopeTaskResult
		if json.Unmarshal(t.GetOutputJson(), &res) == nil && res.Scope != nil {
			results = append(results, &res)
		}
		if t.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			out.Failed = append(out.Failed, fmt.Sprintf("%s %s: %s", t.GetAccount(), t.GetRegion(), orDash(t.GetError())))
		}
	}
	return results, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ScopeNote is the case note listing what a scope found.
func ScopeNote(s *ScopeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Scope of %s (%s, runs %s): %d events in %d account(s), %d session(s).", s.Key, s.Source, strings.Join(s.Runs, ", "),
		s.Events, len(s.Accounts), max(0, len(s.Sessions)-1))
	for _, a := range s.Artifacts {
		fmt.Fprintf(&b, "\n- %s %s in %s/%s", a.Kind, a.ID, a.Account, a.Region)
		if a.Public {
			b.WriteString(" (public)")
		}
		if a.Outside {
			b.WriteString(" (outside the organisation)")
		}
		if b.Len() > 15<<10 {
			b.WriteString("\n- … (the case report's Scope section has the rest)")
			break
		}
	}
	return b.String()
}

// RunOptions says how to run a plan.
type RunOptions struct {
	// DryRun reads every step's before-state and lists its calls; it
	// changes nothing and needs no approval.
	DryRun bool
	// ConfirmDeletes also deletes the users and roles the attacker created
	// (they are quarantined either way).
	ConfirmDeletes bool
	// Deadline is each account's run's, approval included.
	Deadline time.Duration
}

// AccountRun is one account's aws-eradicate result.
type AccountRun struct {
	Account string `json:"account"`
	Steps   []struct {
		ID       string `json:"id"`
		Action   string `json:"action"`
		Resource string `json:"resource"`
		Outcome  string `json:"outcome"`
		Deleted  bool   `json:"deleted"`
		Pending  string `json:"pending"`
		Error    string `json:"error"`
	} `json:"steps"`
	Outcomes map[string]int `json:"outcomes"`
}

// RunResult is what running a plan did: `firebreak eradicate run --json`.
type RunResult struct {
	PlanID   string         `json:"plan_id"`
	CaseID   string         `json:"case_id"`
	DryRun   bool           `json:"dry_run"`
	Runs     []string       `json:"runs"`
	Accounts []*AccountRun  `json:"accounts"`
	Outcomes map[string]int `json:"outcomes"`
	// Failed names the accounts whose run did not finish.
	Failed []string `json:"failed_accounts"`
}

// Run executes a plan: one aws-eradicate run per account of the plan, in
// the plan's case, each waiting for a second operator's approval unless it
// is a dry run. A denied call is reported for its account while the other
// accounts go on.
func (f *Flow) Run(ctx context.Context, p *eradplan.Plan, o RunOptions) (*RunResult, error) {
	out := &RunResult{PlanID: p.ID, CaseID: p.CaseID, DryRun: o.DryRun, Runs: []string{}, Accounts: []*AccountRun{}, Outcomes: map[string]int{}, Failed: []string{}}
	key := "run/"
	if o.DryRun {
		key = "dry-run/"
	}
	for _, account := range p.Accounts() {
		steps, err := json.Marshal(p.StepsIn(account))
		if err != nil {
			return nil, err
		}
		id, err := f.Backend.CreateRun(ctx, RunRequest{Key: key + account, Action: EradicateAction, Accounts: account, CaseID: p.CaseID,
			Params:   map[string]any{"plan_id": p.ID, "steps": string(steps), "dry_run": o.DryRun, "confirm_deletes": o.ConfirmDeletes, "account": account},
			Deadline: o.Deadline, RequireApproval: !o.DryRun, Reason: "eradication plan " + p.ID})
		if err != nil {
			return nil, err
		}
		out.Runs = append(out.Runs, id)
		f.say("run %s: %s of %s in %s", id, EradicateAction, p.ID, account)
		final, err := f.Backend.FollowRun(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, t := range final.GetTasks() {
			var res AccountRun
			if json.Unmarshal(t.GetOutputJson(), &res) == nil && res.Account != "" {
				out.Accounts = append(out.Accounts, &res)
				for k, v := range res.Outcomes {
					out.Outcomes[k] += v
				}
			}
			if t.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				out.Failed = append(out.Failed, fmt.Sprintf("%s: %s", account, orDash(t.GetError())))
			}
		}
		if len(final.GetTasks()) == 0 {
			out.Failed = append(out.Failed, fmt.Sprintf("%s: run %s ended %s with no task", account, id, final.GetStatus()))
		}
	}
	return out, nil
}

// Rescoped is what a verification's re-scope read.
type Rescoped struct {
	Keys      []string `json:"keys"`
	Runs      []string `json:"runs"`
	Events    int      `json:"events"`
	Artifacts int      `json:"artifacts"`
}

// VerifiedStep is one step's state after eradication, as its account's
// verify run read it.
type VerifiedStep struct {
	Account  string `json:"account"`
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Resource string `json:"resource"`
	Manual   bool   `json:"manual,omitempty"`
	// Outcome is one of eradplan's Verify… outcomes.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// Verification is the controller's verdict on a plan's verify runs.
type Verification struct {
	PlanID string   `json:"plan_id"`
	CaseID string   `json:"case_id"`
	Runs   []string `json:"runs"`
	// Eradicated is set when every account of the plan was verified and no
	// step is live or unverified (a manual step aside).
	Eradicated bool `json:"eradicated"`
	// Steps are every step of the plan with its state.
	Steps []VerifiedStep `json:"steps"`
	// Outcomes counts the steps by outcome.
	Outcomes map[string]int `json:"outcomes"`
	// Live and Unverified name the steps that keep the case from its
	// eradication ("ACCOUNT STEP KIND RESOURCE: reason"); Problems the runs
	// or accounts that could not be judged, and the keys not scoped again
	// since the plan and its last eradication run.
	Live       []string `json:"live"`
	Unverified []string `json:"unverified"`
	Problems   []string `json:"problems"`
	// Unplanned are the artifacts the case's scope holds now that the plan
	// has no step for (a re-scope found what the attacker made after the
	// plan): "ACCOUNT KIND RESOURCE (event ID)". Build a new plan for them.
	Unplanned []string `json:"unplanned"`
	// EradicatedAt and TimeToEradicateMS are the case's, once recorded.
	EradicatedAt      *time.Time `json:"eradicated_at,omitempty"`
	TimeToEradicateMS int64      `json:"time_to_eradicate_ms,omitempty"`
}

// Verdict is the controller's verdict on a plan's verification, with the
// re-scope that preceded it: `firebreak eradicate verify --json`.
type Verdict struct {
	Verification
	// Rescope is the re-scope the verification ran first.
	Rescope *Rescoped `json:"rescope"`
}

// ErrRescopeUnfinished is returned when a verification's re-scope did not
// finish: what it would have read is unknown, so nothing is recorded.
var ErrRescopeUnfinished = errors.New("the re-scope did not finish")

// Rescope scopes the plan's keys again, in its case, as they were first
// scoped (source, window start, accounts, regions). A scope task that did
// not succeed stops the verification (ErrRescopeUnfinished).
func (f *Flow) Rescope(ctx context.Context, p *eradplan.Plan, deadline time.Duration) (*Rescoped, error) {
	out := &Rescoped{Keys: []string{}, Runs: []string{}}
	if len(p.Rescope) == 0 {
		f.say("plan %s records no scope to repeat (it was built before plans did): re-scope with "+
			"`firebreak scope key KEY --since … --case %s` first, or the controller records nothing", p.ID, p.CaseID)
		return out, nil
	}
	for i, r := range p.Rescope {
		if !KeyPattern.MatchString(r.Key) {
			return nil, fmt.Errorf("plan %s names %q to re-scope, which is not an AWS access key id", p.ID, r.Key)
		}
		o := ScopeRequest{Key: r.Key, Since: "7d", CaseID: p.CaseID, Accounts: cmpOr(r.Accounts, "all"), Regions: r.Regions, Deadline: deadline,
			KeyPrefix: fmt.Sprintf("verify/rescope/%d/", i)}
		if !r.Start.IsZero() {
			o.Since = r.Start.UTC().Format(time.RFC3339)
		}
		if r.Source == "trail" {
			o.TrailBucket, o.LogArchive, o.TrailPrefix, o.OrgID = r.TrailBucket, r.Accounts, r.TrailPrefix, r.OrgID
		}
		f.say("re-scope of %s since %s (%s)", o.Key, o.Since, r.Source)
		res, err := f.Scope(ctx, o)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, r.Key)
		out.Runs = append(out.Runs, res.Runs...)
		out.Events += res.Events
		out.Artifacts += len(res.Artifacts)
		if len(res.Failed) > 0 {
			return nil, fmt.Errorf("not verified: %w: of %s (%d task(s): %s); nothing is recorded",
				ErrRescopeUnfinished, r.Key, len(res.Failed), strings.Join(res.Failed, "; "))
		}
	}
	return out, nil
}

// Verify verifies a plan's eradication: it scopes the plan's keys again
// (what the attacker made since the plan joins the case's scope and shows
// as unplanned), runs aws-eradicate in verify mode in every account of the
// plan (it changes nothing and needs no approval), and has the controller
// judge those runs from its own store; the controller records the case's
// eradication when nothing is left.
func (f *Flow) Verify(ctx context.Context, p *eradplan.Plan, deadline time.Duration) (*Verdict, error) {
	rescoped, err := f.Rescope(ctx, p, deadline)
	if err != nil {
		return nil, err
	}
	var runs []string
	for _, account := range p.Accounts() {
		steps, err := json.Marshal(p.StepsIn(account))
		if err != nil {
			return nil, err
		}
		id, err := f.Backend.CreateRun(ctx, RunRequest{Key: "verify/" + account, Action: EradicateAction, Accounts: account, CaseID: p.CaseID,
			Params: map[string]any{"plan_id": p.ID, "steps": string(steps), "verify": true, "account": account}, Deadline: deadline,
			Reason: "verification of eradication plan " + p.ID})
		if err != nil {
			return nil, err
		}
		runs = append(runs, id)
		f.say("run %s: verify %s in %s", id, p.ID, account)
		if _, err := f.Backend.FollowRun(ctx, id); err != nil {
			return nil, err
		}
	}
	doc, err := f.Backend.RecordVerification(ctx, p.ID, runs)
	if err != nil {
		return nil, err
	}
	var v Verdict
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("the controller's verdict is unreadable: %w", err)
	}
	v.Rescope = rescoped
	return &v, nil
}

// Clean reports whether nothing keeps the verdict from an eradication.
func (v *Verdict) Clean() bool {
	return v.Eradicated && len(v.Problems) == 0 && len(v.Live) == 0 && len(v.Unverified) == 0 && len(v.Unplanned) == 0
}
