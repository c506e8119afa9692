package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// controllerJSON is one live controller in `controllers list --json`.
type controllerJSON struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Agents      uint32    `json:"agents"`
	Leases      []string  `json:"leases"`
	Version     string    `json:"version"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

func toControllerJSON(cs []*operatorv1.ControllerInfo) []controllerJSON {
	out := []controllerJSON{}
	for _, c := range cs {
		out = append(out, controllerJSON{ID: c.GetId(), Address: c.GetAddress(), Agents: c.GetAgents(), Leases: orEmpty(c.GetLeases()),
			Version: c.GetVersion(), HeartbeatAt: c.GetHeartbeatAt().AsTime()})
	}
	return out
}

// NewControllersCmd is `firebreak controllers`: the controllers of the
// cluster.
func NewControllersCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "controllers", Short: "Show the controllers of the cluster"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the live controllers: address, agent streams held, leases held, version, last heartbeat",
		Long: `List every live controller that shares the store of the controller you reach:
its id (random for each process start), its --listen address, the agent
streams it holds, the cluster leases it holds (the singleton jobs: playbook-executor,
sqs-poller), its version and its last registry
heartbeat. A controller is live while its heartbeat (every 3 seconds) is
less than 15 seconds old.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListControllers(ctx, &operatorv1.ListControllersRequest{})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toControllerJSON(resp.GetControllers()))
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDRESS\tAGENTS\tLEASES\tVERSION\tHEARTBEAT")
			for _, c := range resp.GetControllers() {
				leases := strings.Join(c.GetLeases(), ",")
				if leases == "" {
					leases = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", c.GetId(), c.GetAddress(), c.GetAgents(), leases, c.GetVersion(),
					c.GetHeartbeatAt().AsTime().UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(list)
	return cmd
}
