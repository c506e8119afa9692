package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func newAgentsRevokeCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke agents at once: certificate denied, live stream closed, never targeted again (admin)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.RevokeAgents(ctx, &operatorv1.RevokeAgentsRequest{Ids: args, Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type revoked struct {
					ID           string `json:"id"`
					Hostname     string `json:"hostname"`
					CertSerial   string `json:"cert_serial"`
					StreamClosed bool   `json:"stream_closed"`
				}
				out := []revoked{}
				for _, a := range resp.GetAgents() {
					out = append(out, revoked{a.GetId(), a.GetHostname(), a.GetCertSerial(), a.GetStreamClosed()})
				}
				return g.PrintJSON(out)
			}
			for _, a := range resp.GetAgents() {
				stream := "was not connected"
				if a.GetStreamClosed() {
					stream = "live stream closed"
				}
				fmt.Fprintf(g.out, "agent %s (%s) revoked: certificate %s denied, %s; its instance cannot enroll again until it is forgotten\n",
					a.GetId(), clean(a.GetHostname()), a.GetCertSerial(), stream)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log")
	return cmd
}

func newAgentsForgetCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "forget ID...",
		Short: "Remove revoked or long-gone agents; their runs and evidence keep naming them (admin)",
		Long: `Remove agents from the fleet. Each must be revoked, or offline and unseen
for longer than the controller's --agent-gone-after; a connected agent is
refused. Nothing is forgotten unless
every named agent may be. The runs, tasks and evidence of a forgotten agent
keep its id and hostname; its certificate is refused like an unknown one; its
instance may enroll again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ForgetAgents(ctx, &operatorv1.ForgetAgentsRequest{Ids: args, Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type forgotten struct {
					ID       string `json:"id"`
					Hostname string `json:"hostname"`
					Why      string `json:"why"`
				}
				out := []forgotten{}
				for _, a := range resp.GetAgents() {
					out = append(out, forgotten{a.GetId(), a.GetHostname(), a.GetWhy()})
				}
				return g.PrintJSON(out)
			}
			for _, a := range resp.GetAgents() {
				fmt.Fprintf(g.out, "agent %s (%s) forgotten (%s); its runs and evidence keep naming it\n", a.GetId(), clean(a.GetHostname()), a.GetWhy())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log")
	return cmd
}

// tokenJSON is the `token list --json` contract: never the secret.
type tokenJSON struct {
	ID        string            `json:"id"`
	Role      string            `json:"role"`
	Labels    map[string]string `json:"labels"`
	Uses      uint32            `json:"uses"`
	UsesLeft  uint32            `json:"uses_left"`
	ExpiresAt time.Time         `json:"expires_at"`
	CreatedBy string            `json:"created_by"`
	CreatedAt time.Time         `json:"created_at"`
	Revoked   bool              `json:"revoked"`
}

func toTokenJSON(t *operatorv1.JoinTokenInfo) tokenJSON {
	j := tokenJSON{ID: t.GetId(), Role: apiview.EnumName(t.GetRole()), Labels: t.GetLabels(), Uses: t.GetUses(), UsesLeft: t.GetUsesLeft(),
		ExpiresAt: t.GetExpiresAt().AsTime(), CreatedBy: t.GetCreatedBy(), CreatedAt: t.GetCreatedAt().AsTime(), Revoked: t.GetRevoked()}
	if j.Labels == nil {
		j.Labels = map[string]string{}
	}
	return j
}

func newTokenListCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List join tokens by id, with role, labels, uses left and expiry; never the secret (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListJoinTokens(ctx, &operatorv1.ListJoinTokensRequest{})
			if err != nil {
				return rpcError(err)
			}
			out := []tokenJSON{}
			for _, t := range resp.GetTokens() {
				out = append(out, toTokenJSON(t))
			}
			if g.json {
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tUSES LEFT\tEXPIRES\tSTATE\tLABELS\tCREATED BY")
			now := time.Now()
			for _, t := range out {
				state := "valid"
				switch {
				case t.Revoked:
					state = "revoked"
				case !now.Before(t.ExpiresAt):
					state = "expired"
				case t.UsesLeft == 0:
					state = "used up"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", t.ID, t.Role, t.UsesLeft, t.Uses, t.ExpiresAt.Local().Format(time.RFC3339), state,
					labelString(t.Labels), t.CreatedBy)
			}
			return tw.Flush()
		},
	}
}

func newTokenRevokeCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token so it enrolls nothing more (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.RevokeJoinToken(ctx, &operatorv1.RevokeJoinTokenRequest{Id: args[0]})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toTokenJSON(resp.GetToken()))
			}
			fmt.Fprintf(g.out, "join token %s revoked (%d use(s) were left)\n", resp.GetToken().GetId(), resp.GetToken().GetUsesLeft())
			return nil
		},
	}
}

func newOperatorRevokeCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an operator's credential at once, closing its open streams (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.RevokeOperator(ctx, &operatorv1.RevokeOperatorRequest{Name: args[0]})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"name": resp.GetName(), "revoked": true, "closed_streams": resp.GetClosedStreams()})
			}
			fmt.Fprintf(g.out, "operator %s revoked; %d open stream(s) closed\n", resp.GetName(), resp.GetClosedStreams())
			return nil
		},
	}
}

func newOperatorRotateCmd(g *Globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Issue a new credential for an operator and deny the old one at once (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.RotateOperator(ctx, &operatorv1.RotateOperatorRequest{Name: args[0]})
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
				return g.PrintJSON(map[string]any{"name": args[0], "cert_serial": resp.GetCertSerial(), "creds_file": out, "closed_streams": resp.GetClosedStreams()})
			}
			fmt.Fprintf(g.out, "operator %s: new credential written to %s (mode 0600); the old one is denied and %d open stream(s) were closed\n",
				args[0], out, resp.GetClosedStreams())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "credential file to write (default NAME.creds)")
	return cmd
}
