package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// eradicateAction is the action `firebreak eradicate run` runs.
const eradicateAction = "aws-eradicate"

func (c *client) eradication() operatorv1.EradicationServiceClient {
	return operatorv1.NewEradicationServiceClient(c.conn)
}

// NewEradicateCmd is `firebreak eradicate`: plan and run the removal of
// what an attacker left, from a case's scope.
func NewEradicateCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "eradicate", Short: "Plan and run the removal of what the attacker left, from a case's scope"}
	var caseID string
	var terminate bool
	plan := &cobra.Command{
		Use:   "plan --case ID",
		Short: "Build and store an eradication plan from the case's scope: one step per artifact, with its exact AWS calls",
		Long: `Build an eradication plan from what the case's scope (firebreak scope key … --case ID)
found the attacker left: one step per artifact, each with the exact AWS calls it
would make, the reads that record the resource's state first, and, for the
users and roles the attacker created, the deletions that wait for
confirmation. The plan is stored with the case; run it with
firebreak eradicate run --plan ID.`,
		Example: `  firebreak eradicate plan --case case-123
  firebreak eradicate plan --case case-123 --terminate-instances --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(caseID) == "" {
				return ExitWith(ExitUsage, errors.New("--case is required"))
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			resp, err := c.eradication().CreatePlan(ctx, &operatorv1.CreatePlanRequest{CaseId: caseID, TerminateInstances: terminate})
			if err != nil {
				return rpcError(err)
			}
			var p eradplan.Plan
			if err := json.Unmarshal(resp.GetPlanJson(), &p); err != nil {
				return fmt.Errorf("the controller sent an unreadable plan: %w", err)
			}
			if g.json {
				return g.PrintJSON(&p)
			}
			g.printEradicationPlan(&p)
			return nil
		},
	}
	plan.Flags().StringVar(&caseID, "case", "", "the case whose scope to eradicate")
	plan.Flags().BoolVar(&terminate, "terminate-instances", false, "terminate the instances the attacker launched (after a snapshot) instead of stopping them")

	var planID string
	var dryRun, confirm bool
	var deadline time.Duration
	run := &cobra.Command{
		Use:   "run --plan ID",
		Short: "Run an eradication plan: one aws-eradicate run per account, under approval",
		Long: `Run a stored eradication plan: one aws-eradicate run per account of the plan, in
the plan's case, through the workers of each account. Each run needs a second
operator's approval (firebreak approve RUN_ID) unless --dry-run, which reads
every step's before-state and lists its calls without changing anything.
--confirm-deletes also deletes the users and roles the attacker created (they
are quarantined with AWSDenyAll either way). A denied call is reported for its
account while the other accounts go on.`,
		Example: `  firebreak eradicate run --plan erp-… --dry-run
  firebreak eradicate run --plan erp-… --confirm-deletes --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(planID, "erp-") {
				return ExitWith(ExitUsage, fmt.Errorf("--plan %q is not an eradication plan id (erp-…)", planID))
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return g.eradicateRun(cmd.Context(), c, planID, dryRun, confirm, deadline)
		},
	}
	run.Flags().StringVar(&planID, "plan", "", "the eradication plan to run (erp-…)")
	run.Flags().BoolVar(&dryRun, "dry-run", false, "read every step's before-state and list its calls; change nothing (needs no approval)")
	run.Flags().BoolVar(&confirm, "confirm-deletes", false, "also delete the users and roles the attacker created, after every other step")
	run.Flags().DurationVar(&deadline, "deadline", 30*time.Minute, "how long each account's run may take, approval included")

	var verifyPlan string
	var verifyDeadline time.Duration
	verify := &cobra.Command{
		Use:   "verify --plan ID",
		Short: "Verify an eradication: read every artifact of the plan live, and record the case's eradication when none is left",
		Long: `Verify a plan's eradication. First it scopes the plan's keys again, in the
case, as they were scoped when the plan was built (source, window start,
accounts, regions: firebreak scope key KEY --since START --case ID), so that
what the attacker made after the plan joins the case's scope; an artifact the
plan has no step for is listed as unplanned. Then one aws-eradicate run per
account of the plan with verify set, which changes nothing (no approval) and reads each step's resource
live in its account: gone, neutralised (a key inactive, a principal under
AWSDenyAll, a trust put back, logging on, an instance stopped), live, or
unverified (unreadable, or a manual step). The controller then judges the runs
from its own store; when no artifact is live or unverified in any account of
the plan (manual steps aside), none is unplanned, and each key was scoped again
since the plan and its last eradication run, it records the case's
eradication: the case enters its eradicate phase and its time to eradicate is
set.

Exit codes: 0 eradicated; 6 an artifact is live, unverified or not in the plan;
3 an account could not be verified (its run did not finish) or the re-scope
did not finish.`,
		Example: `  firebreak eradicate verify --plan erp-…
  firebreak eradicate verify --plan erp-… --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(verifyPlan, "erp-") {
				return ExitWith(ExitUsage, fmt.Errorf("--plan %q is not an eradication plan id (erp-…)", verifyPlan))
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return g.eradicateVerify(cmd.Context(), c, verifyPlan, verifyDeadline)
		},
	}
	verify.Flags().StringVar(&verifyPlan, "plan", "", "the eradication plan to verify (erp-…)")
	verify.Flags().DurationVar(&verifyDeadline, "deadline", 10*time.Minute, "how long each re-scope run and each account's verify run may take")
	cmd.AddCommand(plan, run, verify)
	return cmd
}

// eradicationVerdict is the controller's verdict, as
// `firebreak eradicate verify --json` prints it.
type eradicationVerdict struct {
	PlanID     string         `json:"plan_id"`
	CaseID     string         `json:"case_id"`
	Runs       []string       `json:"runs"`
	Eradicated bool           `json:"eradicated"`
	Outcomes   map[string]int `json:"outcomes"`
	Steps      []struct {
		Account  string `json:"account"`
		ID       string `json:"id"`
		Kind     string `json:"kind"`
		Resource string `json:"resource"`
		Manual   bool   `json:"manual,omitempty"`
		Outcome  string `json:"outcome"`
		Reason   string `json:"reason,omitempty"`
	} `json:"steps"`
	Live              []string   `json:"live"`
	Unverified        []string   `json:"unverified"`
	Problems          []string   `json:"problems"`
	Unplanned         []string   `json:"unplanned"`
	EradicatedAt      *time.Time `json:"eradicated_at,omitempty"`
	TimeToEradicateMS int64      `json:"time_to_eradicate_ms,omitempty"`
	// Rescope is the re-scope verify ran first.
	Rescope *rescopeJSON `json:"rescope"`
}

// rescopeJSON is what the re-scope of `eradicate verify` read.
type rescopeJSON struct {
	Keys      []string `json:"keys"`
	Runs      []string `json:"runs"`
	Events    int      `json:"events"`
	Artifacts int      `json:"artifacts"`
}

// rescope scopes the plan's keys again, in its case, as they were first
// scoped (source, window start, accounts, regions). A scope task that did
// not succeed stops the verification: what it would have read is unknown.
func (g *Globals) rescope(ctx context.Context, c *client, p *eradplan.Plan, deadline time.Duration) (*rescopeJSON, error) {
	out := &rescopeJSON{Keys: []string{}, Runs: []string{}}
	if len(p.Rescope) == 0 {
		fmt.Fprintf(g.errOut, "plan %s records no scope to repeat (it was built before plans did): re-scope with "+
			"`firebreak scope key KEY --since … --case %s` first, or the controller records nothing\n", p.ID, p.CaseID)
		return out, nil
	}
	for _, r := range p.Rescope {
		if !scopeKeyRE.MatchString(r.Key) {
			return nil, fmt.Errorf("plan %s names %q to re-scope, which is not an AWS access key id", p.ID, r.Key)
		}
		o := scopeOptions{key: r.Key, since: "7d", caseID: p.CaseID, accounts: r.Accounts, regions: strings.Join(r.Regions, ","), deadline: deadline}
		if !r.Start.IsZero() {
			o.since = r.Start.UTC().Format(time.RFC3339)
		}
		if o.accounts == "" {
			o.accounts = "all"
		}
		if r.Source == "trail" {
			o.bucket, o.logArchive, o.prefix, o.orgID = r.TrailBucket, r.Accounts, r.TrailPrefix, r.OrgID
		}
		if !g.json {
			fmt.Fprintf(g.errOut, "re-scope of %s since %s (%s)\n", o.key, o.since, r.Source)
		}
		res, err := g.runScope(ctx, c, o)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, r.Key)
		out.Runs = append(out.Runs, res.Runs...)
		out.Events += res.Events
		out.Artifacts += len(res.Artifacts)
		if len(res.Failed) > 0 {
			return nil, ExitWith(ExitRunFailed, fmt.Errorf("not verified: the re-scope of %s did not finish (%d task(s): %s); nothing is recorded",
				r.Key, len(res.Failed), strings.Join(res.Failed, "; ")))
		}
	}
	return out, nil
}

func (g *Globals) eradicateVerify(ctx context.Context, c *client, planID string, deadline time.Duration) error {
	gctx, cancel := g.ctx(ctx)
	resp, err := c.eradication().GetPlan(gctx, &operatorv1.GetPlanRequest{PlanId: planID})
	cancel()
	if err != nil {
		return rpcError(err)
	}
	var p eradplan.Plan
	if err := json.Unmarshal(resp.GetPlanJson(), &p); err != nil {
		return fmt.Errorf("the controller sent an unreadable plan: %w", err)
	}
	// Re-scope first, as the plan's scopes were asked: what the key and its
	// sessions did since the plan (an artifact made after it) joins the
	// case's scope, and the controller lists it as unplanned.
	rescoped, err := g.rescope(ctx, c, &p, deadline)
	if err != nil {
		return err
	}
	var runs []string
	for _, account := range p.Accounts() {
		steps, err := json.Marshal(p.StepsIn(account))
		if err != nil {
			return err
		}
		pj, err := json.Marshal(map[string]any{"plan_id": p.ID, "steps": string(steps), "verify": true, "account": account})
		if err != nil {
			return err
		}
		rctx, cancel := g.ctx(ctx)
		created, err := c.op.CreateRun(rctx, &operatorv1.CreateRunRequest{Action: eradicateAction, Accounts: account, ParamsJson: pj, CaseId: p.CaseID,
			Deadline: durationpb.New(deadline), Reason: "verification of eradication plan " + p.ID})
		cancel()
		if err != nil {
			return rpcError(err)
		}
		id := created.GetRun().GetId()
		runs = append(runs, id)
		if !g.json {
			fmt.Fprintf(g.errOut, "run %s: verify %s in %s\n", id, p.ID, account)
		}
		if _, err := g.follow(ctx, c, id); err != nil {
			return err
		}
	}
	rctx, cancel := g.ctx(ctx)
	vr, err := c.eradication().RecordVerification(rctx, &operatorv1.RecordVerificationRequest{PlanId: p.ID, RunIds: runs})
	cancel()
	if err != nil {
		return rpcError(err)
	}
	var v eradicationVerdict
	if err := json.Unmarshal(vr.GetVerificationJson(), &v); err != nil {
		return fmt.Errorf("the controller sent an unreadable verdict: %w", err)
	}
	v.Rescope = rescoped
	if g.json {
		if err := g.PrintJSON(&v); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ACCOUNT\tSTEP\tKIND\tRESOURCE\tSTATE\tWHY")
		for _, s := range v.Steps {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Account, s.ID, s.Kind, s.Resource, s.Outcome, orDash(s.Reason))
		}
		_ = w.Flush()
		for _, pr := range v.Problems {
			fmt.Fprintf(g.out, "not verified: %s\n", pr)
		}
		if r := v.Rescope; r != nil && len(r.Keys) > 0 {
			fmt.Fprintf(g.out, "re-scoped %s: %d event(s), %d artifact(s) (runs %s)\n", strings.Join(r.Keys, ", "), r.Events, r.Artifacts, strings.Join(r.Runs, ", "))
		}
		for _, u := range v.Unplanned {
			fmt.Fprintf(g.out, "not in the plan (found by a later scope): %s\n", u)
		}
		if v.Eradicated {
			fmt.Fprintf(g.out, "\ncase %s eradicated", v.CaseID)
			if v.TimeToEradicateMS > 0 {
				fmt.Fprintf(g.out, ": time to eradicate %s", (time.Duration(v.TimeToEradicateMS) * time.Millisecond).Round(time.Second))
			}
			fmt.Fprintln(g.out)
		}
	}
	switch {
	case len(v.Problems) > 0:
		return ExitWith(ExitRunFailed, fmt.Errorf("%d account(s) or run(s) could not be verified: %s", len(v.Problems), strings.Join(v.Problems, "; ")))
	case len(v.Live) > 0 || len(v.Unverified) > 0 || len(v.Unplanned) > 0:
		return ExitWith(ExitVerifyFailed, fmt.Errorf("not eradicated: %d artifact(s) live, %d unverified, %d not in the plan (firebreak eradicate plan --case %s)",
			len(v.Live), len(v.Unverified), len(v.Unplanned), v.CaseID))
	}
	return nil
}

func (g *Globals) printEradicationPlan(p *eradplan.Plan) {
	fmt.Fprintf(g.out, "plan %s for case %s: %d step(s) in %d account(s)\n\n", p.ID, p.CaseID, len(p.Steps), len(p.Accounts()))
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STEP\tPHASE\tACCOUNT\tREGION\tACTION\tRESOURCE")
	for _, s := range p.Steps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Phase, s.Account, s.Region, s.Action, s.Resource)
	}
	_ = w.Flush()
	for _, r := range p.Rescope {
		fmt.Fprintf(g.out, "\neradicate verify re-scopes %s (%s, accounts %s) since %s", r.Key, r.Source, orDash(r.Accounts), r.Start.UTC().Format(time.RFC3339))
	}
	if len(p.Rescope) > 0 {
		fmt.Fprintln(g.out)
	}
	for _, s := range p.Steps {
		fmt.Fprintf(g.out, "\n%s %s\n", s.ID, s.Summary)
		for _, c := range s.Calls {
			fmt.Fprintf(g.out, "  %s\n", c)
		}
		for _, c := range s.OnConfirm {
			fmt.Fprintf(g.out, "  on confirmation: %s\n", c)
		}
	}
}

// eradicateTaskResult is the part of an aws-eradicate result the CLI
// reads.
type eradicateTaskResult struct {
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

// eradicateJSON is `firebreak eradicate run --json`.
type eradicateJSON struct {
	PlanID   string                 `json:"plan_id"`
	CaseID   string                 `json:"case_id"`
	DryRun   bool                   `json:"dry_run"`
	Runs     []string               `json:"runs"`
	Accounts []*eradicateTaskResult `json:"accounts"`
	Outcomes map[string]int         `json:"outcomes"`
	Failed   []string               `json:"failed_accounts"`
}

func (g *Globals) eradicateRun(ctx context.Context, c *client, planID string, dryRun, confirm bool, deadline time.Duration) error {
	gctx, cancel := g.ctx(ctx)
	resp, err := c.eradication().GetPlan(gctx, &operatorv1.GetPlanRequest{PlanId: planID})
	cancel()
	if err != nil {
		return rpcError(err)
	}
	var p eradplan.Plan
	if err := json.Unmarshal(resp.GetPlanJson(), &p); err != nil {
		return fmt.Errorf("the controller sent an unreadable plan: %w", err)
	}
	out := &eradicateJSON{PlanID: p.ID, CaseID: p.CaseID, DryRun: dryRun, Runs: []string{}, Accounts: []*eradicateTaskResult{}, Outcomes: map[string]int{}, Failed: []string{}}
	for _, account := range p.Accounts() {
		steps, err := json.Marshal(p.StepsIn(account))
		if err != nil {
			return err
		}
		pj, err := json.Marshal(map[string]any{"plan_id": p.ID, "steps": string(steps), "dry_run": dryRun, "confirm_deletes": confirm, "account": account})
		if err != nil {
			return err
		}
		req := &operatorv1.CreateRunRequest{Action: eradicateAction, Accounts: account, ParamsJson: pj, CaseId: p.CaseID,
			Deadline: durationpb.New(deadline), RequireApproval: !dryRun, Reason: "eradication plan " + p.ID}
		rctx, cancel := g.ctx(ctx)
		created, err := c.op.CreateRun(rctx, req)
		cancel()
		if err != nil {
			return rpcError(err)
		}
		run := created.GetRun()
		out.Runs = append(out.Runs, run.GetId())
		if !g.json {
			fmt.Fprintf(g.errOut, "run %s: %s of %s in %s\n", run.GetId(), eradicateAction, p.ID, account)
		}
		final, err := g.follow(ctx, c, run.GetId())
		if err != nil {
			return err
		}
		for _, t := range final.GetTasks() {
			var res eradicateTaskResult
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
	}
	if g.json {
		if err := g.PrintJSON(out); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ACCOUNT\tSTEP\tACTION\tRESOURCE\tOUTCOME")
		for _, a := range out.Accounts {
			for _, s := range a.Steps {
				outcome := s.Outcome
				if s.Deleted {
					outcome += ", deleted"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Account, s.ID, s.Action, s.Resource, outcome)
			}
		}
		_ = w.Flush()
	}
	if len(out.Failed) > 0 {
		return ExitWith(ExitRunFailed, fmt.Errorf("%d account(s) did not finish: %s", len(out.Failed), strings.Join(out.Failed, "; ")))
	}
	return nil
}
