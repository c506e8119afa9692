// Package benchcmd is `firebreak bench`: fleet-wide dispatch measured with
// the fleet bench assembly (internal/assembly/fleetbench), and a
// cluster's failover with internal/assembly/failoverbench. It links the
// whole system; the operator commands (package cli) do not.
package benchcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/failoverbench"
	"github.com/firebreak-ir/firebreak/internal/assembly/fleetbench"
)

// NewBenchCmd is `firebreak bench`: it measures fleet-wide dispatch with a
// controller and simulated agents in this process or a child.
func NewBenchCmd(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure Firebreak on this machine"}
	var o fleetbench.Options
	var inProcess bool
	var cpuProfile string
	var controllers int
	var storeURL string
	fleet := &cobra.Command{
		Use:   "fleet",
		Short: "Dispatch one run across N simulated agents over real mTLS gRPC streams and time it",
		Long: `Start a controller in this process and N simulated agents — the real agent
code with a built-in action, an in-memory journal and identity — each
enrolled with its own certificate and holding its own mTLS gRPC stream on
loopback. By default the agents live in a child process, so the reported
RSS is the controller's own. Then run one action across the fleet and time
it.

  noop              the agent answers at once: pure dispatch cost
  host-isolate-sim  the real host-isolate rule building and atomic batch,
                    against an in-memory netlink stand-in (SIMULATED: no
                    packet filter is touched)

With --controllers N (2 or more) or --store, the fleet is served by a
cluster instead: N controller processes of this binary on one PostgreSQL
(a throwaway server unless --store names an empty database), the agents
(in this process) spread over them. The noop run is created through the
first controller and timed through its WatchRun stream; the tasks for the
agents the others hold go through the routing between controllers.
controller_rss_bytes is then the sum over the controllers.`,
		Example: `  firebreak bench fleet --agents 1000 --action noop
  firebreak bench fleet --agents 10000 --action host-isolate-sim --json
  firebreak bench fleet --controllers 3 --agents 10000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !inProcess {
				o.Host = hostInChild
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				o.CPUProfile = f
			}
			var res *fleetbench.Result
			var err error
			if controllers > 1 || storeURL != "" {
				if o.Action != "noop" {
					return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--action %s: a cluster's fleet bench runs noop only (host-isolate-sim is catalogued by the embedded controller alone)", o.Action))
				}
				if controllers < 2 {
					return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--store: a cluster needs --controllers 2 or more"))
				}
				if cpuProfile != "" || inProcess {
					return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--cpuprofile and --agents-in-process are for the embedded controller; a cluster's controllers are processes of their own"))
				}
				fo := failoverbench.FleetOptions{Controllers: controllers, Agents: o.Agents, Store: storeURL}
				if !g.JSON() {
					fo.Progress = g.ErrOut()
				}
				res, err = failoverbench.Fleet(cmd.Context(), fo)
			} else {
				if !g.JSON() {
					fmt.Fprintf(g.ErrOut(), "starting a controller and %d simulated agents (%s)…\n", o.Agents, o.Action)
				}
				res, err = fleetbench.Run(cmd.Context(), o)
			}
			if err != nil {
				return err
			}
			if g.JSON() {
				return g.PrintJSON(res)
			}
			fmt.Fprintf(g.Out(), "agents %d (simulated) · action %s · %d controller(s) on %s\n", res.Agents, res.Action, res.Controllers, res.Store)
			fmt.Fprintf(g.Out(), "connect all:            %10.1f ms (enrollment, TLS 1.3 handshake, hello)\n", res.ConnectAllMS)
			fmt.Fprintf(g.Out(), "dispatch to all done:   %10.1f ms\n", res.DispatchToAllDoneMS)
			fmt.Fprintf(g.Out(), "per-target done p50:    %10.1f ms\n", res.P50MS)
			fmt.Fprintf(g.Out(), "per-target done p99:    %10.1f ms\n", res.P99MS)
			where := "controller only"
			switch {
			case res.Controllers > 1:
				where = fmt.Sprintf("sum of the %d controllers", res.Controllers)
			case res.AgentsInProcess:
				where = "controller and agents in one process"
			}
			fmt.Fprintf(g.Out(), "controller RSS:         %10.1f MiB (%s)\n", float64(res.ControllerRSSBytes)/(1<<20), where)
			fmt.Fprintf(g.Out(), "controller RSS idle:    %10.1f MiB (no agent connected)\n", float64(res.ControllerRSSIdleBytes)/(1<<20))
			fmt.Fprintf(g.Out(), "RSS per agent:          %10.1f KiB ((RSS - idle) / agents)\n", res.ControllerRSSPerAgentBytes/1024)
			fmt.Fprintf(g.Out(), "errors:                 %10d\n", res.Errors)
			if res.Errors > 0 {
				return cli.ExitWith(cli.ExitRunFailed, fmt.Errorf("%d targets did not succeed", res.Errors))
			}
			return nil
		},
	}
	fleet.Flags().IntVar(&o.Agents, "agents", 100, "number of simulated agents")
	fleet.Flags().StringVar(&o.Action, "action", "noop", "noop or host-isolate-sim")
	fleet.Flags().BoolVar(&inProcess, "agents-in-process", false, "host the agents in this process (the RSS then includes them)")
	fleet.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the controller during the dispatch phase to this file")
	fleet.Flags().IntVar(&controllers, "controllers", 1, "controller processes; 2 or more run a cluster on PostgreSQL")
	fleet.Flags().StringVar(&storeURL, "store", "", "postgres:// URL of an empty database for the cluster (default: a throwaway PostgreSQL started here)")

	var addr, caFile, action string
	var count int
	agents := &cobra.Command{
		Use:    "agents",
		Short:  "Host simulated agents for `bench fleet` (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			stop, err := fleetbench.Host(cmd.Context(), addr, ca, os.Getenv("FIREBREAK_JOIN_TOKEN"), count, action, nil)
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			stop()
			return nil
		},
	}
	agents.Flags().StringVar(&addr, "controller", "", "controller address")
	agents.Flags().StringVar(&caFile, "ca-file", "", "controller CA")
	agents.Flags().IntVar(&count, "count", 1, "agents to host")
	agents.Flags().StringVar(&action, "action", "noop", "built-in action")
	cmd.AddCommand(fleet, agents, newFailoverCmd(g), newEnrollCmd(g), newReconnectCmd(g))
	return cmd
}

// newFailoverCmd is `firebreak bench failover`.
func newFailoverCmd(g *cli.Globals) *cobra.Command {
	var o failoverbench.Options
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Kill -9 controllers of a cluster during runs and time the agents' reconnection and the runs' completion",
		Long: `Start --controllers controller processes of this binary on one PostgreSQL
store (a throwaway server, initdb in a temporary directory, unless --store
names an empty database) with S3 evidence (an S3 server in this process),
and --agents simulated agents in this process given every controller's
address. The simulated agents are the real agent code (enrollment, the mTLS
gRPC stream, signature, target and replay checks, the noop action through
the plugin protocol served in memory); they run no plugin process and keep
their journal in memory.

Each round creates a noop run with --delay over every agent through one
controller (the owner; the rounds rotate it), waits a second, kills another
controller (--kill holder: the one holding the most agents; --kill owner:
the owner) with SIGKILL, and measures from the kill to the last of its
agents connected to another controller, and to the run's end as
'runs show --wait' through a surviving controller sees it. The killed
controller is restarted before the next round. At the end every task of
every run must have succeeded and run exactly once: 'lost' and
'duplicated' count the ones that did not.`,
		Example: `  firebreak bench failover --controllers 3 --agents 3000
  firebreak bench failover --agents 300 --rounds 20 --json
  firebreak bench failover --kill owner --store postgres://bench@db/bench_empty?sslmode=disable`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := report(g, &o.Progress, func() (*failoverbench.Result, error) { return failoverbench.Run(cmd.Context(), o) },
				func(out io.Writer, res *failoverbench.Result) {
					fmt.Fprintf(out, "controllers %d · agents %d (simulated) · noop delay %s · kill %s\n", res.Controllers, res.Agents, o.Delay, res.Kill)
					fmt.Fprintf(out, "%-6s %-22s %8s %14s %14s\n", "round", "killed", "agents", "reconnect ms", "run done ms")
					for i, r := range res.Rounds {
						fmt.Fprintf(out, "%-6d %-22s %8d %14.0f %14.0f\n", i+1, r.Killed, r.AgentsMoved, r.ReconnectMS, r.RunDoneMS)
					}
					fmt.Fprintf(out, "lost %d · duplicated %d · controller RSS per agent %.0f bytes\n", res.Lost, res.Duplicated, res.ControllerRSSBytesPerAgent)
				})
			if err != nil {
				return err
			}
			if res.Lost > 0 || res.Duplicated > 0 {
				return cli.ExitWith(cli.ExitRunFailed, fmt.Errorf("%d tasks lost and %d run twice", res.Lost, res.Duplicated))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Controllers, "controllers", 3, "controller processes in the cluster (at least 2)")
	f.IntVar(&o.Agents, "agents", 3000, "simulated agents")
	f.IntVar(&o.Rounds, "rounds", 1, "kill -9 rounds")
	f.DurationVar(&o.Delay, "delay", 5*time.Second, "how long each noop task takes")
	f.StringVar(&o.Kill, "kill", failoverbench.KillHolder, "which controller a round kills: holder (another than the run's owner, holding the most agents) or owner")
	f.StringVar(&o.Store, "store", "", "postgres:// URL of an empty database (default: a throwaway PostgreSQL started here)")
	f.BoolVar(&o.KeepLogs, "keep-logs", false, "keep the working directory with the controllers' JSON logs and say where (it is kept after a failure anyway)")
	return cmd
}

// report runs a benchmark with its progress lines on stderr (none with
// --json), then prints its result: as JSON with --json, else as text.
func report[R any](g *cli.Globals, progress *io.Writer, run func() (R, error), text func(io.Writer, R)) (R, error) {
	if !g.JSON() {
		*progress = g.ErrOut()
	}
	res, err := run()
	if err != nil {
		return res, err
	}
	if g.JSON() {
		return res, g.PrintJSON(res)
	}
	text(g.Out(), res)
	return res, nil
}

// hostInChild runs the simulated agents in a child process of this binary.
func hostInChild(ctx context.Context, addr string, caPEM []byte, token string, n int, action string) (func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "firebreak-bench-")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, err
	}
	child := exec.Command(self, "bench", "agents", "--controller", addr, "--ca-file", caFile, "--count", fmt.Sprint(n), "--action", action)
	child.Env = append(os.Environ(), "FIREBREAK_JOIN_TOKEN="+token)
	var stderr strings.Builder
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = child.Wait()
		close(exited)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = child.Process.Signal(syscall.SIGTERM)
		case <-exited:
		}
	}()
	return func() {
		_ = child.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = child.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}, nil
}
