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

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

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

// getPlan reads a stored plan.
func (g *Globals) getPlan(ctx context.Context, c *client, planID string) (*eradplan.Plan, error) {
	gctx, cancel := g.ctx(ctx)
	resp, err := c.eradication().GetPlan(gctx, &operatorv1.GetPlanRequest{PlanId: planID})
	cancel()
	if err != nil {
		return nil, rpcError(err)
	}
	var p eradplan.Plan
	if err := json.Unmarshal(resp.GetPlanJson(), &p); err != nil {
		return nil, fmt.Errorf("the controller sent an unreadable plan: %w", err)
	}
	return &p, nil
}

func (g *Globals) eradicateVerify(ctx context.Context, c *client, planID string, deadline time.Duration) error {
	p, err := g.getPlan(ctx, c, planID)
	if err != nil {
		return err
	}
	v, err := g.flow(c).Verify(ctx, p, deadline)
	if errors.Is(err, eradflow.ErrRescopeUnfinished) {
		return ExitWith(ExitRunFailed, err)
	}
	if err != nil {
		return err
	}
	if g.json {
		if err := g.PrintJSON(v); err != nil {
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

func (g *Globals) eradicateRun(ctx context.Context, c *client, planID string, dryRun, confirm bool, deadline time.Duration) error {
	p, err := g.getPlan(ctx, c, planID)
	if err != nil {
		return err
	}
	out, err := g.flow(c).Run(ctx, p, eradflow.RunOptions{DryRun: dryRun, ConfirmDeletes: confirm, Deadline: deadline})
	if err != nil {
		return err
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
