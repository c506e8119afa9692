package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// NewConsoleCmd is `firebreak console`: the web console.
func NewConsoleCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "Sign in to the controller's web console"}
	login := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time login link to the web console",
		Long: `Print a one-time login link to the web console, made from your operator
credential. The link signs in once, within 60 seconds, as you and with your
role; open it in a browser. With --json it prints {"url": …, "expires_at": …,
"operator": …}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := operatorv1.NewConsoleServiceClient(c.conn).CreateConsoleLogin(ctx, &operatorv1.CreateConsoleLoginRequest{})
			if err != nil {
				return rpcError(err)
			}
			expires := apiview.Time(resp.GetExpiresAt())
			if g.json {
				return g.PrintJSON(map[string]any{"url": resp.GetUrl(), "expires_at": expires, "operator": resp.GetOperator()})
			}
			fmt.Fprintf(g.out, "%s\n", resp.GetUrl())
			fmt.Fprintf(g.errOut, "signs in %s once, until %s\n", resp.GetOperator(), expires.UTC().Format("15:04:05Z"))
			return nil
		},
	}
	cmd.AddCommand(login)
	return cmd
}
