package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
)

// Main runs the firebreak-agent command line and returns the exit code.
func Main(args []string) int {
	// The join token leaves the environment and the command line the
	// kernel shows (/proc/PID/environ, /proc/PID/cmdline) before anything
	// else runs, so no plugin, child or collection of this host sees it.
	envToken, scrubEnvErr := takeJoinTokenEnv()
	args = cloneArgs(args)
	scrubArgErr := scrubJoinTokenArg()
	var cfg Config
	var labels []string
	var logLevel, bw string
	cmd := &cobra.Command{
		Use:   "firebreak-agent",
		Short: "The Firebreak agent: runs response actions pushed by the controller",
		Long: `The Firebreak agent dials out to the controller over mTLS and holds one
stream on which the controller pushes signed tasks. The first start enrolls
with a join token (--join-token-file, FIREBREAK_JOIN_TOKEN_FILE, or
FIREBREAK_JOIN_TOKEN) and pins --ca-file; later starts reuse the identity in
--data-dir and read no token. Exit codes: 0 stopped cleanly, 1 error, 2 usage.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: %w", logLevel, err)
			}
			cfg.Logger = telemetry.NewLogger(os.Stderr, true, lvl)
			slog.SetDefault(cfg.Logger)
			cfg.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				cfg.Labels[k] = v
			}
			var err error
			if cfg.Bandwidth, err = bandwidth.Parse(bw); err != nil {
				return fmt.Errorf("--bandwidth: %w", err)
			}
			if scrubEnvErr != nil {
				cfg.Logger.Warn("the join token could not be erased from /proc/self/environ; it is out of the agent's environment, and collections redact it", "error", scrubEnvErr)
			}
			if scrubArgErr != nil && cfg.JoinToken != "" {
				cfg.Logger.Warn("the join token could not be erased from /proc/self/cmdline: prefer --join-token-file", "error", scrubArgErr)
			}
			if cfg.JoinToken == "" {
				cfg.JoinToken = envToken
			}
			envToken = ""
			if cfg.JoinToken != "" && cfg.JoinTokenFile != "" {
				return fmt.Errorf("--join-token-file (or %s) and a join token (--join-token or %s) are both given: give one", JoinTokenFileEnv, JoinTokenEnv)
			}
			if err := CheckJoin(cfg.Join, cfg.Role); err != nil {
				return err
			}
			if cfg.Join != JoinToken && (cfg.JoinToken != "" || cfg.JoinTokenFile != "") {
				return fmt.Errorf("--join %s proves the agent by AWS identity: give no join token as well", cfg.Join)
			}
			a, err := New(cmd.Context(), cfg)
			// The token is not kept past enrollment.
			cfg.JoinToken = ""
			if err != nil {
				return err
			}
			// Telemetry starts once the agent knows who it is, so every span
			// can be tied to its host; it flushes after Run with a fresh context.
			tel, err := telemetry.Setup(cmd.Context(), telemetry.Config{Service: "firebreak-agent", Version: Version, DetectEC2: true,
				Attributes: []attribute.KeyValue{telemetry.AttrAgentID.String(a.ID()), attribute.String("firebreak.agent.role", cfg.Role)}})
			if err != nil {
				return err
			}
			defer tel.Shutdown()
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Controller, "controller", os.Getenv("FIREBREAK_CONTROLLER"), "controller HOST:PORT, or several comma-separated (a:7443,b:7443), or a DNS name with several records; the agent picks one at random and moves to another on failure (env FIREBREAK_CONTROLLER)")
	f.StringVar(&cfg.CAFile, "ca-file", "", "controller CA certificate to pin at enrollment (the controller's DATA_DIR/ca.pem)")
	f.StringVar(&cfg.JoinTokenFile, "join-token-file", os.Getenv(JoinTokenFileEnv), "file holding the join token for the first enrollment, read only when the agent must enroll (env "+JoinTokenFileEnv+"; the preferred form)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "join token for the first enrollment (env "+JoinTokenEnv+"; prefer --join-token-file: flags show in ps)")
	f.StringVar(&cfg.Join, "join", "token", "how the agent proves itself at its first enrollment: token (a join token), aws-iid (a host's EC2 instance identity document, read from IMDSv2) or aws-sts (a worker's signed sts:GetCallerIdentity); see docs/attestation.md")
	f.StringVar(&cfg.ServerID, "server-id", "", "with --join aws-sts: the controller's server id to sign (default: the SHA-256 of --ca-file's certificate, the controller's default)")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/firebreak-agent", "directory for the agent's key, certificate, journal and state")
	f.StringVar(&cfg.Role, "role", "host", "host (in-guest actions) or worker (AWS API actions)")
	f.StringArrayVar(&labels, "label", nil, "label k=v (repeatable)")
	f.StringVar(&cfg.PluginDir, "plugin-dir", "/usr/lib/firebreak/plugins", "directory of plugin binaries and manifest.json (root-owned)")
	f.IntVar(&cfg.MaxConcurrentTasks, "max-tasks", 8, "most tasks running at once")
	f.StringVar(&cfg.Worker.ResponderRole, "responder-role", "FirebreakResponder", "worker: the role assumed in each account (arn:aws:iam::ACCOUNT:role/NAME)")
	f.StringVar(&cfg.Worker.ExternalID, "external-id", os.Getenv("FIREBREAK_EXTERNAL_ID"), "worker: the ExternalId the responder roles demand (env FIREBREAK_EXTERNAL_ID)")
	f.StringVar(&cfg.Worker.SecurityAccount, "security-account", "", "worker: the security account's id (default: the worker's own account)")
	f.StringVar(&bw, "bandwidth", "", "cap on evidence uploads, all together, e.g. 10MiB/s, 50MB or 100Mbit (default: no cap; a run's own cap applies too)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.Hostname, "hostname", "", "host name to report (default: the system's)")
	f.BoolVar(&cfg.Simulated, "simulated-host", false, "report this agent as a simulated host: it does not run on the machine it stands for (lab without root)")
	_ = f.MarkHidden("simulated-host")
	cmd.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "firebreak-agent:", err)
		if strings.Contains(err.Error(), "flag") || strings.Contains(err.Error(), "--") {
			return 2
		}
		return 1
	}
	return 0
}
