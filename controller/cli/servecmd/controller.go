// Package servecmd holds the firebreak commands that link the controller's
// server packages or the agent's plugin host: `firebreak controller`, which
// runs the controller, and `firebreak plugins manifest`. The operator
// commands (package cli) link neither.
package servecmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/controller/cluster"
	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
)

// NewControllerCmd is `firebreak controller`: it runs the controller.
func NewControllerCmd(g *cli.Globals) *cobra.Command {
	var cfg controller.Config
	var logLevel string
	var enrollPerSource, enrollOverall, enrollRefusals float64
	var oidc oidcFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the controller",
		Long: `Run the controller. On the first start it creates in --data-dir a CA (ca.pem),
an ed25519 task-signing key, the SQLite database and the admin credential
admin.creds; later starts reuse them. It stops cleanly on SIGTERM.

With --pki-dir DIR (made once by 'firebreak controller init') the CA, the
task-signing key and the admin credential come from DIR, read only, so every
controller of a cluster shares one identity; --data-dir then holds the
database and evidence. A controller whose CA or task-signing key differs from
the one its store recorded refuses to start.

With --store postgres://USER@HOST/DB?sslmode=verify-full the state is in
PostgreSQL instead of SQLite, shared by every controller of a cluster (the
evidence must then be in S3: --evidence s3://BUCKET/PREFIX). The store is
opened and migrated before the controller listens; an unreachable
PostgreSQL is tried again for --store-connect-timeout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--log-level %q: %w", logLevel, err))
			}
			el := &cfg.EnrollLimits
			for name, v := range map[string]float64{"enroll-rate-per-source": enrollPerSource, "enroll-rate": enrollOverall,
				"enroll-refusal-rate-per-source": enrollRefusals, "enroll-burst-per-source": float64(el.PerSourceBurst),
				"enroll-burst": float64(el.OverallBurst), "enroll-refusal-burst-per-source": float64(el.RefusalBurst),
				"enroll-refusal-window": float64(el.RefusalWindow), "enroll-max-sources": float64(el.MaxSources)} {
				if !(v > 0) {
					return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--%s must be above zero", name))
				}
			}
			if cfg.MaxAgentHandshakes < 1 {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--max-agent-handshakes must be at least 1, not %d", cfg.MaxAgentHandshakes))
			}
			el.PerSource, el.Overall, el.Refusals = rate.Limit(enrollPerSource), rate.Limit(enrollOverall), rate.Limit(enrollRefusals)
			cfg.Logger = telemetry.NewLogger(os.Stderr, true, lvl)
			slog.SetDefault(cfg.Logger)
			if cfg.ReadinessEvery < 0 || (cfg.ReadinessEvery > 0 && cfg.ReadinessEvery < time.Minute) {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--readiness-every must be at least 1m (or 0, off), not %s", cfg.ReadinessEvery))
			}
			if cfg.TerminatedCheckEvery < 0 || (cfg.TerminatedCheckEvery > 0 && cfg.TerminatedCheckEvery < time.Second) {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--terminated-check-every must be at least 1s (or 0, off), not %s", cfg.TerminatedCheckEvery))
			}
			if cfg.ForgetTerminatedAfter < 0 {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--forget-terminated-after must not be negative, not %s", cfg.ForgetTerminatedAfter))
			}
			if cfg.ForgetTerminatedAfter > 0 && cfg.TerminatedCheckEvery == 0 {
				return cli.ExitWith(cli.ExitUsage, errors.New("--forget-terminated-after needs --terminated-check-every above 0: only the sweep marks agents terminated"))
			}
			if cfg.Profiling && cfg.MetricsListen == "" {
				return cli.ExitWith(cli.ExitUsage, errors.New("--pprof serves the profiles on the metrics listener: add --metrics-listen HOST:PORT"))
			}
			if cfg.LeaseTTL < time.Second {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--lease-ttl must be at least 1s, not %s", cfg.LeaseTTL))
			}
			cfg.Version = cli.Version
			if err := oidc.apply(&cfg.Console); err != nil {
				return cli.ExitWith(cli.ExitUsage, err)
			}
			c, err := controller.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the database and evidence, and without --pki-dir the CA, keys and admin credential (required)")
	f.StringVar(&cfg.PKIDir, "pki-dir", "", "directory holding the cluster's identity made by 'controller init' (CA, task-signing key, admin.creds), read only; shared by every controller of a cluster")
	f.StringVar(&cfg.Store, "store", "", "PostgreSQL store shared by the controllers of a cluster, postgres://USER@HOST/DB?sslmode=verify-full (password: PGPASSWORD or ~/.pgpass; default: SQLite in --data-dir)")
	f.DurationVar(&cfg.StoreConnectTimeout, "store-connect-timeout", 60*time.Second, "how long a start waits for an unreachable --store, trying again with backoff")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address to serve agents and operators on")
	f.StringVar(&cfg.Advertise, "advertise", "", "address written into new credentials (default: the listen address)")
	f.StringVar(&cfg.PeerAddress, "peer-address", "", "HOST:PORT the other controllers of a cluster dial to route tasks to the agents this one holds (default: the listen address; an unspecified host becomes this machine's first non-loopback address)")
	f.StringSliceVar(&cfg.ServerNames, "server-name", nil, "extra DNS name or IP for the serving certificate (repeatable)")
	f.IntVar(&cfg.ApprovalThreshold, "approval-threshold", 10, "a destructive run over more targets than this waits for a second operator's approval")
	f.IntVar(&cfg.MaxWatchesPerOperator, "max-watches-per-operator", watchcap.DefaultPerOperator, "live run and playbook run watches one operator may hold open; more are refused with RESOURCE_EXHAUSTED")
	f.IntVar(&cfg.MaxWatches, "max-watches", watchcap.DefaultTotal, "live run and playbook run watches the controller serves at once; more are refused with RESOURCE_EXHAUSTED")
	f.Float64Var(&enrollPerSource, "enroll-rate-per-source", float64(fleet.DefaultEnrollPerSource), "enrollments per second one source address may make; more are refused with RESOURCE_EXHAUSTED and a retry-after")
	f.IntVar(&cfg.EnrollLimits.PerSourceBurst, "enroll-burst-per-source", fleet.DefaultEnrollPerSourceBurst, "enrollments one source address may make at once before --enroll-rate-per-source applies")
	f.Float64Var(&enrollOverall, "enroll-rate", float64(fleet.DefaultEnrollOverall), "enrollments per second from all sources together")
	f.IntVar(&cfg.EnrollLimits.OverallBurst, "enroll-burst", fleet.DefaultEnrollOverallBurst, "enrollments from all sources at once before --enroll-rate applies")
	f.Float64Var(&enrollRefusals, "enroll-refusal-rate-per-source", float64(fleet.DefaultEnrollRefusals), "refused enrollments (bad tokens) per second one source address may make before all its enrollments wait")
	f.IntVar(&cfg.EnrollLimits.RefusalBurst, "enroll-refusal-burst-per-source", fleet.DefaultEnrollRefusalBurst, "refused enrollments one source address may make at once before --enroll-refusal-rate-per-source applies")
	f.DurationVar(&cfg.EnrollLimits.RefusalWindow, "enroll-refusal-window", fleet.DefaultEnrollRefusalWindow, "after the first refused enrollment of a source, the refusals of this window are written as one audit record")
	f.IntVar(&cfg.EnrollLimits.MaxSources, "enroll-max-sources", fleet.DefaultEnrollMaxSources, "source addresses the enrollment limits track; the least recently seen is forgotten first")
	f.IntVar(&cfg.MaxAgentHandshakes, "max-agent-handshakes", fleet.DefaultMaxHandshakes, "agent enrollments and connection handshakes (hello to welcome) served at once; as many more wait, and any beyond are refused with RESOURCE_EXHAUSTED and a retry-after, so a herd of agents is spread instead of overloading the controller")
	f.StringVar(&cfg.Attestation.PolicyFile, "attest-policy", "", "attestation policy (YAML) to store when the store holds none: lets agents enrol by EC2 instance identity or signed STS request instead of a join token. A stored policy (firebreak attest policy set) wins (docs/attestation.md)")
	f.StringArrayVar(&cfg.Attestation.CertFiles, "iid-cert-file", nil, "PEM certificate to trust for instance identity documents of every region, beside the embedded AWS ones (repeatable; the emulator's, a new region's)")
	f.StringVar(&cfg.Attestation.ServerID, "attest-server-id", "", "value workers must sign in X-Firebreak-Server-Id (default: the CA certificate's SHA-256 in hex, which agents compute from --ca-file)")
	f.StringVar(&cfg.Attestation.STSEndpoint, "attest-sts-endpoint", "", "the one STS endpoint signed requests may name, scheme://host[:port] (a VPC endpoint or an emulator; default: the partition's sts.amazonaws.com endpoints)")
	f.StringVar(&cfg.Attestation.Partition, "attest-partition", "aws", "AWS partition of the STS endpoints and role ARNs: aws, aws-cn or aws-us-gov")
	f.StringVar(&cfg.Attestation.InstanceRole, "iid-instance-role", "FirebreakResponder", "role the controller assumes in an account to read an enrolling instance's state and tags")
	f.StringVar(&cfg.Attestation.ExternalID, "iid-external-id", os.Getenv("FIREBREAK_EXTERNAL_ID"), "ExternalId for --iid-instance-role (env FIREBREAK_EXTERNAL_ID)")
	f.DurationVar(&cfg.AgentCertTTL, "agent-cert-ttl", 24*time.Hour, "lifetime of agent certificates (agents renew at half of it)")
	f.DurationVar(&cfg.AgentGoneAfter, "agent-gone-after", 7*24*time.Hour, "how long an agent must be unseen before `agents forget` takes it without a revoke")
	f.DurationVar(&cfg.TerminatedCheckEvery, "terminated-check-every", 5*time.Minute, "how often to ask AWS (ec2:DescribeInstances as --iid-instance-role in each agent's account) whether the instances of the agents' certificates are terminated, marking those agents terminated; once in a cluster (a leased singleton); 0 is off")
	f.DurationVar(&cfg.ForgetTerminatedAfter, "forget-terminated-after", 0, "forget an agent this long after AWS reported its instance terminated (its runs, evidence and audit records stay), e.g. 168h; 0 keeps it until `agents forget`")
	f.DurationVar(&cfg.OperatorCertTTL, "operator-cert-ttl", 90*24*time.Hour, "lifetime of operator credentials issued by operator add")
	f.StringVar(&cfg.Evidence, "evidence", "", "evidence store: local (the default: DATA_DIR/evidence), an absolute directory or file:///absolute/path, or s3://bucket/prefix (AWS SDK environment: AWS_REGION, AWS_ENDPOINT_URL, credentials)")
	f.DurationVar(&cfg.EvidenceRetention, "evidence-retention", 0, "S3 Object Lock retention in compliance mode for new evidence, e.g. 2160h (the bucket needs Object Lock)")
	f.StringVar(&cfg.EvidenceKMSKey, "evidence-kms-key", "", "KMS key ARN or id for SSE-KMS of S3 evidence (default: the bucket's encryption)")
	f.Int64Var(&cfg.EvidenceMaxBytes, "evidence-max-bytes", 0, "largest evidence item accepted, in bytes (default 64 GiB)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default; see docs/observability.md)")
	f.BoolVar(&cfg.Profiling, "pprof", false, "with --metrics-listen, also serve Go's runtime profiles at /debug/pprof/ there (off by default; see docs/observability.md)")
	f.DurationVar(&cfg.ReadinessEvery, "readiness-every", 0, "review readiness of every known account on this schedule (e.g. 24h) and store the report for `readiness history`; once in a cluster (a leased singleton); 0 is off")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", cluster.DefaultTTL, "TTL of the leases of the jobs that run once among controllers sharing a store (the playbook executor, the SQS poller); another controller takes a job over within it")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	registerIncidentFlags(f, &cfg.Incident)
	registerConsoleFlags(f, &cfg.Console, &oidc)
	_ = cmd.MarkFlagRequired("data-dir")
	cmd.AddCommand(newControllerInitCmd(g))
	cmd.AddCommand(newMigrateCmd(g))
	return cmd
}

// newControllerInitCmd is `firebreak controller init`: it creates a
// cluster's identity once.
func newControllerInitCmd(g *cli.Globals) *cobra.Command {
	var cfg controller.PKIInit
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a controller cluster's identity (CA, task-signing key, admin credential) once",
		Long: `Create, once, the identity every controller of a cluster shares, in --pki-dir
(created 0700; every file 0600):

  ca.pem, ca.key      the CA that issues agent, operator and serving certificates
  task-signing.key    the ed25519 key tasks are signed with
  admin.creds         the first admin credential (its address is --advertise)
  cluster.json        --advertise and the --server-name list, used by every
                      controller started with this --pki-dir

Start every controller with 'firebreak controller --pki-dir DIR'. It refuses a
directory that already holds any of these files (exit code 2). Keep DIR secret:
docs/deploy.md ("Cluster identity") shows how to hold it in AWS Secrets Manager.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sum, err := controller.InitPKIDir(cfg)
			if err != nil {
				if errors.Is(err, controller.ErrPKIDirInitialised) || errors.Is(err, controller.ErrInitUsage) {
					return cli.ExitWith(cli.ExitUsage, err)
				}
				return err
			}
			if g.JSON() {
				return g.PrintJSON(sum)
			}
			out := g.Out()
			fmt.Fprintf(out, "created the cluster identity in %s:\n", sum.Dir)
			for _, f := range sum.Files {
				fmt.Fprintf(out, "  %s\n", f)
			}
			fmt.Fprintf(out, "CA sha256:               %s\ntask-signing key sha256: %s\n", sum.CASHA256, sum.SigningKeySHA256)
			fmt.Fprintf(out, "start every controller with: firebreak controller --pki-dir %s --data-dir DIR\n", sum.Dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "pki-dir", "", "directory to create the cluster identity in (required; created 0700)")
	f.StringVar(&cfg.Names.Advertise, "advertise", "", "HOST:PORT clients reach the cluster at (the load balancer's): written into admin.creds and, by every controller, into new credentials")
	f.StringSliceVar(&cfg.Names.ServerNames, "server-name", nil, "DNS name or IP every controller's serving certificate carries, e.g. the load balancer's (repeatable)")
	f.DurationVar(&cfg.AdminCertTTL, "admin-cert-ttl", controller.DefaultAdminCertTTL, "lifetime of the admin credential")
	_ = cmd.MarkFlagRequired("pki-dir")
	return cmd
}

// registerIncidentFlags adds the controller's playbook, case and findings
// flags.
func registerIncidentFlags(f *pflag.FlagSet, cfg *controller.IncidentConfig) {
	f.StringVar(&cfg.PlaybookDir, "playbook-dir", "", "directory of playbook files (*.yaml) besides the built-in playbooks; a file replaces a built-in playbook of the same name")
	f.StringVar(&cfg.RulesFile, "rules", "", "rules file mapping findings to playbooks (YAML); its rules come before the built-in ones")
	f.BoolVar(&cfg.NoDefaultRules, "no-default-rules", false, "leave out the built-in finding rules")
	f.StringVar(&cfg.EventsListen, "events-listen", "", "HOST:PORT of the HTTPS endpoint POST /v1/events for EventBridge finding events (default: none)")
	f.StringVar(&cfg.EventsSecretFile, "events-secret-file", "", "file holding the shared secret an EventBridge API destination sends in the X-Firebreak-Secret header (mode 0600, at least 32 characters)")
	f.StringVar(&cfg.SQSQueue, "sqs-queue", "", "URL of an SQS queue to long-poll for finding events (AWS SDK environment: AWS_REGION, AWS_ENDPOINT_URL, credentials)")
}

// oidcFlags are the single sign-on flags of the console.
type oidcFlags struct {
	issuer, clientID, secretFile, groupsClaim string
	roles                                     []string
}

// registerConsoleFlags adds the web console's flags.
func registerConsoleFlags(f *pflag.FlagSet, cfg *controller.ConsoleConfig, o *oidcFlags) {
	f.StringVar(&cfg.Listen, "console-listen", "", "HOST:PORT to serve the web console on over HTTPS (default: none; see docs/console.md)")
	f.StringVar(&cfg.CertFile, "console-cert", "", "PEM certificate (chain) for the console, e.g. a public one behind a load balancer (default: the controller's CA-issued serving certificate)")
	f.StringVar(&cfg.KeyFile, "console-key", "", "PEM private key of --console-cert")
	f.StringVar(&cfg.URL, "console-url", "", "https://HOST[:PORT] browsers reach the console at, named in login links (default: https:// and the --console-listen address)")
	f.StringVar(&o.issuer, "oidc-issuer", "", "OpenID Connect issuer URL for console single sign-on (with --oidc-client-id, --oidc-client-secret-file and --oidc-role)")
	f.StringVar(&o.clientID, "oidc-client-id", "", "the console's OIDC client id; register CONSOLE_URL/oidc/callback as its redirect URI")
	f.StringVar(&o.secretFile, "oidc-client-secret-file", "", "file holding the console's OIDC client secret")
	f.StringVar(&o.groupsClaim, "oidc-groups-claim", "groups", "ID token claim listing the user's groups")
	f.StringArrayVar(&o.roles, "oidc-role", nil, "GROUP=ROLE: members of GROUP get ROLE (viewer, responder, approver, admin; the highest of a user's groups); users in no mapped group are refused (repeatable)")
}

// apply sets cfg.OIDC from the flags, when single sign-on is asked for.
func (o *oidcFlags) apply(cfg *controller.ConsoleConfig) error {
	if o.issuer == "" && o.clientID == "" && o.secretFile == "" && len(o.roles) == 0 {
		return nil
	}
	if cfg.Listen == "" {
		return fmt.Errorf("--oidc-* configure the console's sign-in: add --console-listen HOST:PORT")
	}
	roles, err := console.ParseRoleMapping(o.roles)
	if err != nil {
		return err
	}
	cfg.OIDC = &console.OIDCConfig{Issuer: o.issuer, ClientID: o.clientID, ClientSecretFile: o.secretFile, GroupsClaim: o.groupsClaim, Roles: roles}
	return nil
}
