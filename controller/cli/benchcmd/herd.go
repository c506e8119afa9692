package benchcmd

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/internal/assembly/failoverbench"
)

// herdFlags adds the flags `bench enroll` and `bench reconnect` share.
func herdFlags(cmd *cobra.Command, o *failoverbench.HerdOptions) {
	f := cmd.Flags()
	f.IntVar(&o.Agents, "agents", 1000, "simulated agents, all started at the same moment")
	f.IntVar(&o.MaxHandshakes, "max-agent-handshakes", 0, "the controller's --max-agent-handshakes (default: the controller's own default)")
	f.DurationVar(&o.Wait, "wait", 10*time.Minute, "how long the herd may take before the agents not done count as errors")
}

// newEnrollCmd is `firebreak bench enroll`.
func newEnrollCmd(g *cli.Globals) *cobra.Command {
	var o failoverbench.HerdOptions
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Start N fresh agents at once against a new controller and time their enrollment (token, certificate, stream)",
		Long: `Start a controller process of this binary on SQLite (its RSS and log are its
own), make a join token for --agents uses, and start every simulated agent in
this process at the same moment. Each one does what a new agent does: a fresh
ECDSA key and certificate request, Enroll with the join token over TLS
pinning the controller's CA, then its mTLS Connect stream with hello and
welcome. A controller at its limit of handshakes (--max-agent-handshakes)
sheds the excess with RESOURCE_EXHAUSTED and a retry-after, which the agents
wait out with jitter; a shed enrollment spends no join token.

The per-source enrollment rate is lifted, as every simulated agent comes from
127.0.0.1; the overall enrollment rate and the handshake admission keep the
controller's defaults. Exit code 1 when not every agent enrolled and
connected within --wait.

With --join aws-iid there is no join token: the bench starts the AWS
emulator with a member account holding one running instance per agent,
launched now and tagged firebreak=enabled, and the controller trusting the
emulator's identity CA (--iid-cert-file). It sets an attestation policy
(firebreak attest policy set), starts an API worker (firebreak-agent of
--bin-dir, enrolled by aws-sts) and registers the organisation's accounts
through it, as 'firebreak lab' does. Then every agent reads its own
instance's signed identity document over IMDSv2 from the emulator and
enrols with it; the controller checks the signature, the account, the
policy, the document's age, reuse, and the instance's state and tags
(ec2:DescribeInstances against the emulator). The output adds join and
attested_aws_iid: the agents 'agents list --json' shows connected with
attestation aws-iid and their own instance id.`,
		Example: `  firebreak bench enroll --agents 10000
  firebreak bench enroll --agents 10000 --json
  firebreak bench enroll --agents 10000 --join aws-iid --wait 5m --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Join != "token" && o.Join != "aws-iid" {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--join %q: want token or aws-iid", o.Join))
			}
			res, err := report(g, &o.Progress, func() (*failoverbench.EnrollResult, error) { return failoverbench.Enroll(cmd.Context(), o) },
				func(out io.Writer, res *failoverbench.EnrollResult) {
					fmt.Fprintf(out, "agents %d (simulated) · enrolled and connected %d\n", res.Agents, res.Enrolled)
					if res.AttestedAWSIID != nil {
						fmt.Fprintf(out, "enrolled by aws-iid:    %10d (as agents list shows them)\n", *res.AttestedAWSIID)
					}
					fmt.Fprintf(out, "time to 99%%:            %10.1f ms\n", res.TimeTo99MS)
					fmt.Fprintf(out, "time to all:            %10.1f ms\n", res.TimeToAllMS)
					fmt.Fprintf(out, "shed attempts:          %10d\n", res.ShedAttempts)
					fmt.Fprintf(out, "agent restarts:         %10d\n", res.AgentRestarts)
					fmt.Fprintf(out, "controller RSS:         %10.1f MiB\n", float64(res.ControllerRSSBytes)/(1<<20))
					fmt.Fprintf(out, "controller ERROR/WARN:  %10d lines\n", res.ControllerLogErrors)
					fmt.Fprintf(out, "errors:                 %10d\n", res.Errors)
				})
			if err != nil {
				return err
			}
			if res.Enrolled < res.Agents {
				return cli.ExitWith(cli.ExitRunFailed, fmt.Errorf("%d of %d agents did not enroll and connect", res.Agents-res.Enrolled, res.Agents))
			}
			if res.AttestedAWSIID != nil && *res.AttestedAWSIID < res.Agents {
				return cli.ExitWith(cli.ExitRunFailed, fmt.Errorf("%d of %d agents are not listed as enrolled by aws-iid", res.Agents-*res.AttestedAWSIID, res.Agents))
			}
			return nil
		},
	}
	herdFlags(cmd, &o)
	cmd.Flags().StringVar(&o.Join, "join", "token", "how the agents enrol: token (one join token of --agents uses) or aws-iid (each its own instance identity document, signed by the AWS emulator)")
	cmd.Flags().StringVar(&o.BinDir, "bin-dir", "", "with --join aws-iid: directory of firebreak-agent and plugins/ for the API worker (default: next to this binary)")
	return cmd
}

// newReconnectCmd is `firebreak bench reconnect`.
func newReconnectCmd(g *cli.Globals) *cobra.Command {
	var o failoverbench.HerdOptions
	cmd := &cobra.Command{
		Use:   "reconnect",
		Short: "Kill -9 a controller holding N agents, restart it, and time the herd's reconnection",
		Long: `Start a controller process of this binary on SQLite and enroll and connect
--agents simulated agents in this process (as 'bench enroll' does), keep them
connected until their backoff counts the connection as stable, then kill the
controller with SIGKILL and restart it at once on the same data directory and
address. It measures from the kill to every agent holding a stream to the
restarted controller, and counts the ERROR and WARN lines the restarted
controller logged meanwhile (controller_log_errors: no error storm).

The agents come back with full-jitter exponential backoff; a controller at its
limit of handshakes sheds the excess with RESOURCE_EXHAUSTED and a
retry-after, which they wait out with jitter. Exit code 1 when not every
agent reconnected within --wait.`,
		Example: `  firebreak bench reconnect --agents 10000
  firebreak bench reconnect --agents 10000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := report(g, &o.Progress, func() (*failoverbench.ReconnectResult, error) { return failoverbench.Reconnect(cmd.Context(), o) },
				func(out io.Writer, res *failoverbench.ReconnectResult) {
					fmt.Fprintf(out, "agents %d (simulated) · connected before the kill %d · reconnected %d\n", res.Agents, res.ConnectedBeforeKill, res.Reconnected)
					fmt.Fprintf(out, "first enrollment:       %10.1f ms to 99%%, %.1f ms to the last (%d agent restarts)\n", res.EnrollTo99MS, res.EnrollMS, res.AgentRestarts)
					fmt.Fprintf(out, "controller restarted:   %10.1f ms after the kill\n", res.RestartMS)
					fmt.Fprintf(out, "time to 99%%:            %10.1f ms after the kill\n", res.TimeTo99MS)
					fmt.Fprintf(out, "time to all:            %10.1f ms after the kill\n", res.TimeToAllMS)
					fmt.Fprintf(out, "shed attempts:          %10d\n", res.ShedAttempts)
					fmt.Fprintf(out, "controller ERROR/WARN:  %10d of %d lines\n", res.ControllerLogErrors, res.ControllerLogLines)
					fmt.Fprintf(out, "errors:                 %10d\n", res.Errors)
				})
			if err != nil {
				return err
			}
			if res.Reconnected < res.Agents {
				return cli.ExitWith(cli.ExitRunFailed, fmt.Errorf("%d of %d agents did not reconnect", res.Agents-res.Reconnected, res.Agents))
			}
			return nil
		},
	}
	herdFlags(cmd, &o)
	return cmd
}
