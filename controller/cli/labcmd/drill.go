package labcmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
)

type labFlags struct {
	simulated bool
	keep      bool
	binDir    string
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.simulated, "simulated", false, "use simulated hosts even as root (no network namespaces, no nftables)")
	cmd.Flags().BoolVar(&f.keep, "keep", false, "keep the lab's directory (logs, database, evidence) and print where")
	cmd.Flags().StringVar(&f.binDir, "bin-dir", "", "directory of firebreak-agent and plugins/ (default: next to this binary)")
}

// drill runs a scenario and exits ExitRunFailed unless it was contained.
func drill(g *cli.Globals, cmd *cobra.Command, name string, f *labFlags, report bool) error {
	o := lab.Options{BinDir: f.binDir, Simulated: f.simulated, KeepDir: f.keep}
	if !g.JSON() {
		o.Progress = g.ErrOut()
	}
	var rep io.Writer
	if report && !g.JSON() {
		rep = g.Out()
		fmt.Fprintln(g.ErrOut())
	}
	res, err := lab.Drill(cmd.Context(), name, o, rep)
	if err != nil {
		return err
	}
	if g.JSON() {
		if err := g.PrintJSON(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.ErrOut(), "\n%s: contained=%v time-to-contain=%.1fs evidence=%d steps-failed=%d score=%d/100 (wall %.1fs)\n",
			res.Scenario, res.Contained, float64(res.TimeToContainMS)/1000, len(res.Evidence), res.StepsFailed, res.Score, float64(res.WallMS)/1000)
		if res.SimulatedHosts {
			fmt.Fprintln(g.ErrOut(), "hosts were SIMULATED: run as root for real network namespaces, nftables and traffic checks")
		}
	}
	if !res.Contained {
		var failed []string
		for _, c := range res.Checks {
			if !c.OK {
				failed = append(failed, c.Name)
			}
		}
		return cli.ExitWith(cli.ExitRunFailed, errors.New("the threat was NOT contained: "+strings.Join(failed, "; ")))
	}
	return nil
}

func newLabDemoCmd(g *cli.Globals) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole loop on one machine: a GuardDuty finding, the playbook, containment, the case report",
		Long: `Run Firebreak's main job on one machine with nothing installed but Go, in a
temporary directory it removes:

 1. a controller on the embedded default (SQLite, local evidence) and the AWS
    emulator with a three-account organisation seeded with instances;
 2. an API worker and one host agent per instance: as root each host is its
    own network namespace with real nftables; otherwise the hosts are
    clearly labelled SIMULATED;
 3. a GuardDuty UnauthorizedAccess:EC2/SSHBruteForce finding for web-1, posted
    to the controller's HTTPS events endpoint;
 4. the auto rule runs ec2-instance-compromise with live progress: capture,
    snapshot, isolate at the AWS layer and in the guest, collect triage;
 5. the case report.

It exits 0 only if containment really happened: it checks the emulator's
state and, as root, real traffic (the attacker's session is cut, the
responder's channel is not).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return drill(g, cmd, "ec2-compromise", &f, true) },
	}
	f.register(cmd)
	return cmd
}

func newLabDrillCmd(g *cli.Globals) *cobra.Command {
	var f labFlags
	var report bool
	cmd := &cobra.Command{
		Use:   "drill SCENARIO",
		Short: "Rehearse a game-day scenario and score the response",
		Long: `Run a named game-day scenario against the lab and score the response:
contained or not, time to contain, evidence captured, steps failed.

  ec2-compromise      SSH brute force against an instance in an Auto Scaling group
  leaked-key-orgwide  a CI deployer's key used from outside AWS; found in whichever account holds it
  public-bucket       a bucket opened to anonymous readers`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return drill(g, cmd, args[0], &f, report) },
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&report, "report", false, "print the case report")
	return cmd
}
