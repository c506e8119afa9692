package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

type accountJSON struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Email    string    `json:"email"`
	Status   string    `json:"status"`
	OUPath   string    `json:"ou_path"`
	Regions  []string  `json:"regions"`
	SyncedAt time.Time `json:"synced_at"`
	// Unknown is what the last sync could not learn about the account.
	Unknown []accountUnknownJSON `json:"unknown"`
}

type accountUnknownJSON struct {
	Field       string `json:"field"`
	Reason      string `json:"reason"`
	Remediation string `json:"remediation"`
}

func toAccountJSON(as []*operatorv1.AWSAccount) []accountJSON {
	out := []accountJSON{}
	for _, a := range as {
		regions := a.GetRegions()
		if regions == nil {
			regions = []string{}
		}
		unknown := []accountUnknownJSON{}
		for _, u := range a.GetUnknown() {
			unknown = append(unknown, accountUnknownJSON{u.GetField(), u.GetReason(), u.GetRemediation()})
		}
		out = append(out, accountJSON{a.GetId(), a.GetName(), a.GetEmail(), a.GetStatus(), a.GetOuPath(), regions, a.GetSyncedAt().AsTime(), unknown})
	}
	return out
}

func (g *Globals) printAccounts(as []*operatorv1.AWSAccount) error {
	tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tOU\tREGIONS")
	var notes []string
	for _, a := range as {
		regions := strings.Join(a.GetRegions(), ",")
		for _, u := range a.GetUnknown() {
			if u.GetField() == "regions" {
				regions = "unknown"
			}
			notes = append(notes, fmt.Sprintf("account %s: %s unknown: %s; fix: %s", a.GetId(), u.GetField(), u.GetReason(), u.GetRemediation()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.GetId(), a.GetName(), a.GetOuPath(), regions)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(g.errOut, n)
	}
	return nil
}

// NewAccountsCmd is `firebreak accounts`: the AWS Organization's accounts.
func NewAccountsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Discover and list the AWS Organization's accounts"}
	var mgmt, sel string
	var deadline time.Duration
	sync := &cobra.Command{
		Use:   "sync --management-account ID",
		Short: "Discover the organisation's active accounts, OUs and enabled regions through a worker",
		Long: `Run aws-org-discover on a worker in the organisation's management account:
Organizations ListAccounts (paginated; only ACTIVE accounts are kept), each
account's OU path, and its enabled regions. Account-targeted runs
(--accounts all|ID,ID|ou=NAME) use what this stores.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if deadline > g.timeout {
				var cancel context.CancelFunc
				ctx, cancel = g.ctxWith(cmd.Context(), deadline+10*time.Second)
				defer cancel()
			}
			resp, err := c.op.SyncAccounts(ctx, &operatorv1.SyncAccountsRequest{ManagementAccount: mgmt, Selector: sel, Deadline: durationpb.New(deadline)})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"run_id": resp.GetRunId(), "accounts": toAccountJSON(resp.GetAccounts()), "skipped": orEmpty(resp.GetSkipped())})
			}
			if err := g.printAccounts(resp.GetAccounts()); err != nil {
				return err
			}
			for _, s := range resp.GetSkipped() {
				fmt.Fprintln(g.errOut, "skipped:", s)
			}
			fmt.Fprintf(g.errOut, "%d active accounts stored (run %s)\n", len(resp.GetAccounts()), resp.GetRunId())
			return nil
		},
	}
	sync.Flags().StringVar(&mgmt, "management-account", "", "the organisation's management account id (required)")
	sync.Flags().StringVar(&sel, "select", "role=worker", "the workers that may run the discovery")
	sync.Flags().DurationVar(&deadline, "deadline", 5*time.Minute, "how long the discovery may take")
	_ = sync.MarkFlagRequired("management-account")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the accounts known from the last sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListAccounts(ctx, &operatorv1.ListAccountsRequest{})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toAccountJSON(resp.GetAccounts()))
			}
			return g.printAccounts(resp.GetAccounts())
		},
	}
	cmd.AddCommand(sync, list)
	return cmd
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
