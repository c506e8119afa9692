package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// NewTokenCmd is `firebreak token`: create, list and revoke join tokens.
func NewTokenCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens for enrolling agents"}
	var role string
	var uses uint32
	var ttl time.Duration
	var labels []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, ok := apiview.ParseEnum(agentv1.AgentRole(0).Descriptor(), role)
			if !ok {
				return ExitWith(ExitUsage, fmt.Errorf("--role %q: want host or worker", role))
			}
			lm, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.CreateJoinToken(ctx, &operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole(r), Uses: uses, Ttl: durationpb.New(ttl), Labels: lm})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"token": resp.GetToken(), "expires_at": resp.GetExpiresAt().AsTime(), "uses": resp.GetUses()})
			}
			fmt.Fprintln(g.out, resp.GetToken())
			fmt.Fprintf(g.errOut, "join token for %s agents: %d use(s), expires %s\n", role, resp.GetUses(), resp.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "host", "agent role the token enrolls: host or worker")
	create.Flags().Uint32Var(&uses, "uses", 1, "how many agents may enroll with it")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	create.Flags().StringArrayVar(&labels, "label", nil, "label k=v added to every agent enrolled with it (repeatable)")
	cmd.AddCommand(create, newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

// NewOperatorCmd is `firebreak operator`: add, revoke and rotate operators.
func NewOperatorCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Manage operators"}
	var role, out string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Issue a credential for a new operator",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, ok := apiview.ParseEnum(operatorv1.OperatorRole(0).Descriptor(), role)
			if !ok {
				return ExitWith(ExitUsage, fmt.Errorf("--role %q: want viewer, responder, approver or admin", role))
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.AddOperator(ctx, &operatorv1.AddOperatorRequest{Name: args[0], Role: operatorv1.OperatorRole(r)})
			if err != nil {
				return rpcError(err)
			}
			if out == "" {
				out = args[0] + ".creds"
			}
			var creds pki.Creds
			if err := json.Unmarshal(resp.GetCredsJson(), &creds); err != nil {
				return err
			}
			if err := creds.Save(out); err != nil {
				return err
			}
			if g.json {
				return g.PrintJSON(map[string]string{"name": args[0], "role": role, "creds_file": out})
			}
			fmt.Fprintf(g.out, "operator %s (%s): credential written to %s (mode 0600); hand it over securely\n", args[0], role, out)
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "viewer", "viewer, responder, approver or admin (default the least, viewer)")
	add.Flags().StringVarP(&out, "output", "o", "", "credential file to write (default NAME.creds)")
	cmd.AddCommand(add, newOperatorRevokeCmd(g), newOperatorRotateCmd(g))
	return cmd
}

// NewWhoamiCmd is `firebreak whoami`.
func NewWhoamiCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the operator the credential belongs to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.Whoami(ctx, &operatorv1.WhoamiRequest{})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]string{"name": resp.GetName(), "role": apiview.EnumName(resp.GetRole())})
			}
			fmt.Fprintf(g.out, "%s (%s)\n", resp.GetName(), apiview.EnumName(resp.GetRole()))
			return nil
		},
	}
}

// NewAuditCmd is `firebreak audit`: list, verify and export the head of the
// audit log.
func NewAuditCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the hash-chained audit log"}
	var after uint64
	var limit uint32
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListAudit(ctx, &operatorv1.ListAuditRequest{AfterSeq: after, Limit: limit})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type rec struct {
					Seq      uint64          `json:"seq"`
					At       time.Time       `json:"at"`
					Actor    string          `json:"actor"`
					Action   string          `json:"action"`
					Subject  string          `json:"subject"`
					Detail   json.RawMessage `json:"detail"`
					PrevHash string          `json:"prev_hash"`
					Hash     string          `json:"hash"`
				}
				out := []rec{}
				for _, r := range resp.GetRecords() {
					out = append(out, rec{r.GetSeq(), r.GetAt().AsTime(), r.GetActor(), r.GetAction(), r.GetSubject(), r.GetDetailJson(), r.GetPrevHash(), r.GetHash()})
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tSUBJECT\tDETAIL")
			for _, r := range resp.GetRecords() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.GetSeq(), r.GetAt().AsTime().Local().Format(time.RFC3339), clean(r.GetActor()), r.GetAction(), clean(r.GetSubject()), clean(string(r.GetDetailJson())))
			}
			return tw.Flush()
		},
	}
	list.Flags().Uint64Var(&after, "after", 0, "show records after this sequence number")
	list.Flags().Uint32Var(&limit, "limit", 100, "most records to show")
	cmd.AddCommand(list, newAuditVerifyCmd(g), newAuditHeadCmd(g))
	return cmd
}
