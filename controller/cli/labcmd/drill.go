package labcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

type labFlags struct {
	simulated bool
	keep      bool
	binDir    string
	// console serves the web console and keeps the lab up after the
	// drill until Ctrl-C; consoleListen is where.
	console       bool
	consoleListen string
	// record sends the drill's outcome to the operator credential's
	// controller.
	record bool
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.simulated, "simulated", false, "use simulated hosts even as root (no network namespaces, no nftables)")
	cmd.Flags().BoolVar(&f.keep, "keep", false, "keep the lab's directory (logs, database, evidence) and print where")
	cmd.Flags().StringVar(&f.binDir, "bin-dir", "", "directory of firebreak-agent and plugins/ (default: next to this binary)")
}

// registerConsole adds --console and --console-listen.
func (f *labFlags) registerConsole(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.console, "console", false, "serve the web console, print a login link after the drill, and keep the lab up until Ctrl-C")
	cmd.Flags().StringVar(&f.consoleListen, "console-listen", "127.0.0.1:8443", "where the web console listens with --console (HOST:PORT; port 0 picks one)")
}

// drill runs a scenario and exits ExitRunFailed unless it was contained.
// With --console the lab stays up after the drill, serving the web
// console, until the command's context ends (Ctrl-C).
func drill(g *cli.Globals, cmd *cobra.Command, name string, f *labFlags, report bool) error {
	o := lab.Options{BinDir: f.binDir, Simulated: f.simulated, KeepDir: f.keep}
	if f.console {
		o.Console = f.consoleListen
	}
	if !g.JSON() {
		o.Progress = g.ErrOut()
	}
	var rep io.Writer
	if report && !g.JSON() {
		rep = g.Out()
		fmt.Fprintln(g.ErrOut())
	}
	if !f.console {
		res, err := lab.Drill(cmd.Context(), name, o, rep)
		if err != nil {
			return err
		}
		extra, err := recordDrill(g, cmd, res, f.record)
		if err != nil {
			return err
		}
		return drillOutcome(g, res, extra)
	}
	sc := lab.Scenarios[name]
	if sc == nil {
		return fmt.Errorf("unknown drill %q (drills: %s)", name, strings.Join(lab.ScenarioNames(), ", "))
	}
	ctx := cmd.Context()
	start := time.Now()
	e, err := lab.Start(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(g.ErrOut(), "tearing the lab down")
		e.Close()
	}()
	res, err := e.Run(ctx, sc, rep)
	if err != nil {
		return fmt.Errorf("%w (lab files: %s)", err, e.Dir)
	}
	res.WallMS = time.Since(start).Milliseconds()
	extra, err := recordDrill(g, cmd, res, f.record)
	if err != nil {
		return err
	}
	link, creds, err := e.ConsoleLogin(ctx)
	if err != nil {
		return err
	}
	if extra == nil {
		extra = map[string]any{}
	}
	extra["console_url"], extra["creds"], extra["ca_file"] = link, creds, e.CAFile()
	outcome := drillOutcome(g, res, extra)
	if !g.JSON() {
		base := strings.SplitN(link, "/login/", 2)[0]
		fmt.Fprintf(g.ErrOut(), "\nThe web console: open this link within 60 s; it signs in once, as %s:\n", lab.ConsoleCommander)
		fmt.Fprintln(g.Out(), link)
		fmt.Fprintf(g.ErrOut(), "The drill's case: %s/cases/%s\nAnother link: firebreak --creds %s console login\n"+
			"The console's certificate is issued by the lab's CA (%s): trust it, or tell the browser to go on.\nCtrl-C tears the lab down.\n",
			base, res.CaseID, creds, e.CAFile())
	}
	<-ctx.Done()
	return outcome
}

// recordDrill sends a drill's outcome to the controller of the operator
// credential when asked (--record), and returns the record's fields for
// the JSON output.
func recordDrill(g *cli.Globals, cmd *cobra.Command, res *lab.Result, record bool) (map[string]any, error) {
	if !record {
		return nil, nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	resp, err := g.RecordDrill(cmd.Context(), &operatorv1.RecordDrillRequest{Scenario: res.Scenario, Playbook: res.Playbook, Contained: res.Contained,
		Score: int32(res.Score), SimulatedHosts: res.SimulatedHosts, TimeToContainMs: res.TimeToContainMS, ResultJson: string(b)})
	if err != nil {
		return nil, err
	}
	if !g.JSON() {
		fmt.Fprintf(g.ErrOut(), "drill recorded with the controller as %s (firebreak readiness reports it)\n", resp.GetId())
	}
	return map[string]any{"drill_record": resp.GetId()}, nil
}

// drillOutcome prints a drill's result (as JSON with extra's fields
// added) and returns ExitRunFailed unless it was contained.
func drillOutcome(g *cli.Globals, res *lab.Result, extra map[string]any) error {
	if g.JSON() {
		var v any = res
		if extra != nil {
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			m := map[string]any{}
			if err := json.Unmarshal(b, &m); err != nil {
				return err
			}
			for k, x := range extra {
				m[k] = x
			}
			v = m
		}
		if err := g.PrintJSON(v); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.ErrOut(), "\n%s: contained=%v time-to-contain=%.1fs evidence=%d steps-failed=%d score=%d/100 (wall %.1fs)\n",
			res.Scenario, res.Contained, float64(res.TimeToContainMS)/1000, len(res.Evidence), res.StepsFailed, res.Score, float64(res.WallMS)/1000)
		if er := res.Eradication; er != nil {
			fmt.Fprintf(g.ErrOut(), "eradication: planted=%d found=%d eradicated=%d time-to-eradicate=%.1fs\n", er.Planted, er.Found, er.Eradicated,
				float64(er.TimeToEradicateMS)/1000)
			for _, a := range er.Artifacts {
				fmt.Fprintf(g.ErrOut(), "  %s %s %s: found=%v eradicated=%v (%s)\n", a.Account, a.Kind, a.ID, a.Found, a.Eradicated, a.State)
			}
		}
		for _, a := range res.Agents {
			fmt.Fprintf(g.ErrOut(), "agent %s (%s) enrolled by %s\n", a.Hostname, a.Role, a.Attestation)
		}
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
responder's channel is not).

With --console the controller also serves the web console (on
--console-listen, 127.0.0.1:8443 by default); after the drill the lab stays
up and prints a one-time login link for its incident commander, where the
drill's case, runs and evidence can be explored. Ctrl-C tears the lab down.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return drill(g, cmd, "ec2-compromise", &f, true) },
	}
	f.register(cmd)
	f.registerConsole(cmd)
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
	f.registerConsole(cmd)
	cmd.Flags().BoolVar(&report, "report", false, "print the case report")
	cmd.Flags().BoolVar(&f.record, "record", false, "record the drill's outcome with the controller of the operator credential (--creds), for the readiness review's drill recency check")
	return cmd
}
