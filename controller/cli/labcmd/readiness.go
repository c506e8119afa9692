package labcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
)

func newLabReadinessCmd(g *cli.Globals) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "readiness [--json]",
		Short: "Review the readiness of a lab organisation seeded with deliberate gaps",
		Long: `Start the lab on a five-account organisation that is ready in every way but
these deliberate gaps, review its readiness as ` + "`firebreak readiness --regions all`" + ` does,
and print the report:

  - an account without the responder role;
  - GuardDuty off in one region;
  - three running instances without agents;
  - an evidence bucket without Object Lock;
  - one approver.

Without root the lab's hosts are simulated, so host.isolation fails too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := lab.Options{BinDir: f.binDir, Simulated: f.simulated, KeepDir: f.keep}
			if !g.JSON() {
				o.Progress = g.ErrOut()
			}
			r, err := lab.Readiness(cmd.Context(), o)
			if err != nil {
				return err
			}
			if !g.JSON() {
				fmt.Fprintln(g.ErrOut())
			}
			return g.PrintReadiness(lab.ReadinessProto(r), "text")
		},
	}
	f.register(cmd)
	return cmd
}
