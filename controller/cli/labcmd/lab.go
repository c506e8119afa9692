// Package labcmd is `firebreak lab`: the local incident lab (the AWS
// emulator, a controller, agents and the drills), built by the lab assembly
// (internal/assembly/lab). It links the whole system; the operator commands
// (package cli) do not.
package labcmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
)

// NewLabCmd is `firebreak lab`: the AWS emulator, the demo and the drills.
func NewLabCmd(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "lab", Short: "Run the local incident lab: AWS emulator, controller, agents and drills"}
	var listen, seedFile, dir string
	var accounts int
	aws := &cobra.Command{
		Use:   "aws",
		Short: "Serve the AWS emulator with a seeded organisation (real wire protocols for the real SDK)",
		Long: `Serve the in-process AWS emulator on --listen. It speaks the real EC2, IAM,
STS, Auto Scaling, ELBv2, Organizations, Account, S3, Lambda, CloudTrail and
SQS protocols, so any aws-sdk-go-v2 (or AWS CLI) client reaches it through
AWS_ENDPOINT_URL. Without --seed it holds the lab organisation: a
management account, a security account and member accounts with instances,
Auto Scaling groups, target groups, IAM users and a public bucket.

It prints the environment a worker needs and serves until interrupted.
Everything it holds is emulated: nothing reaches AWS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			seed := awsemu.LabSeed(accounts)
			if seedFile != "" {
				f, err := os.Open(seedFile)
				if err != nil {
					return err
				}
				seed, err = awsemu.ParseSeedYAML(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", seedFile, err)
				}
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "firebreak-lab-aws-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			a, err := lab.StartAWS(listen, dir, seed)
			if err != nil {
				return err
			}
			defer a.Stop()
			env := a.WorkerEnv()
			if g.JSON() {
				if err := g.PrintJSON(map[string]any{"endpoint": a.Endpoint, "worker_env": env, "accounts": len(seed.Accounts)}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.Out(), "AWS emulator (EMULATED, nothing reaches AWS) serving %d accounts at %s\n", len(seed.Accounts), a.Endpoint)
				fmt.Fprintf(g.Out(), "worker environment:\n  export %s\n", strings.Join(env, " \\\n    "))
				fmt.Fprintln(g.Out(), "interrupt to stop")
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	aws.Flags().StringVar(&listen, "listen", "127.0.0.1:4566", "address to serve on")
	aws.Flags().IntVar(&accounts, "accounts", 3, "accounts in the lab organisation (management, security and members)")
	aws.Flags().StringVar(&seedFile, "seed", "", "YAML seed instead of the lab organisation (see internal/awsemu's package doc)")
	aws.Flags().StringVar(&dir, "dir", "", "directory for the worker's AWS config file (default: a temporary one)")
	cmd.AddCommand(aws, newLabDemoCmd(g), newLabDrillCmd(g), newLabReadinessCmd(g))
	return cmd
}
