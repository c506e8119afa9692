package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func newControllerCmd(g *globals) *cobra.Command { //nolint:unparam // every command constructor takes the globals
	var cfg controller.Config
	var logLevel string
	var enrollPerSource, enrollOverall, enrollRefusals float64
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the controller",
		Long: `Run the controller. On the first start it creates in --data-dir a CA (ca.pem),
an ed25519 task-signing key, the SQLite database and the admin credential
admin.creds; later starts reuse them. It stops cleanly on SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return exitWith(ExitUsage, fmt.Errorf("--log-level %q: %w", logLevel, err))
			}
			el := &cfg.EnrollLimits
			for name, v := range map[string]float64{"enroll-rate-per-source": enrollPerSource, "enroll-rate": enrollOverall,
				"enroll-refusal-rate-per-source": enrollRefusals, "enroll-burst-per-source": float64(el.PerSourceBurst),
				"enroll-burst": float64(el.OverallBurst), "enroll-refusal-burst-per-source": float64(el.RefusalBurst),
				"enroll-refusal-window": float64(el.RefusalWindow), "enroll-max-sources": float64(el.MaxSources)} {
				if !(v > 0) {
					return exitWith(ExitUsage, fmt.Errorf("--%s must be above zero", name))
				}
			}
			el.PerSource, el.Overall, el.Refusals = rate.Limit(enrollPerSource), rate.Limit(enrollOverall), rate.Limit(enrollRefusals)
			cfg.Logger = telemetry.NewLogger(os.Stderr, true, lvl)
			slog.SetDefault(cfg.Logger)
			c, err := controller.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the CA, keys, database and evidence (required)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address to serve agents and operators on")
	f.StringVar(&cfg.Advertise, "advertise", "", "address written into new credentials (default: the listen address)")
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
	f.DurationVar(&cfg.AgentCertTTL, "agent-cert-ttl", 24*time.Hour, "lifetime of agent certificates (agents renew at half of it)")
	f.DurationVar(&cfg.OperatorCertTTL, "operator-cert-ttl", 90*24*time.Hour, "lifetime of operator credentials issued by operator add")
	f.StringVar(&cfg.Evidence, "evidence", "", "evidence store: a directory (default DATA_DIR/evidence) or s3://bucket/prefix (AWS SDK environment: AWS_REGION, AWS_ENDPOINT_URL, credentials)")
	f.DurationVar(&cfg.EvidenceRetention, "evidence-retention", 0, "S3 Object Lock retention in compliance mode for new evidence, e.g. 2160h (the bucket needs Object Lock)")
	f.StringVar(&cfg.EvidenceKMSKey, "evidence-kms-key", "", "KMS key ARN or id for SSE-KMS of S3 evidence (default: the bucket's encryption)")
	f.Int64Var(&cfg.EvidenceMaxBytes, "evidence-max-bytes", 0, "largest evidence item accepted, in bytes (default 64 GiB)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default; see docs/observability.md)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	registerIncidentFlags(f, &cfg.Incident)
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens for enrolling agents"}
	var role string
	var uses uint32
	var ttl time.Duration
	var labels []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, ok := agentv1.AgentRole_value["AGENT_ROLE_"+strings.ToUpper(role)]
			if !ok || r == 0 {
				return exitWith(ExitUsage, fmt.Errorf("--role %q: want host or worker", role))
			}
			lm, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.CreateJoinToken(ctx, &operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole(r), Uses: uses, Ttl: durationpb.New(ttl), Labels: lm})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.printJSON(map[string]any{"token": resp.GetToken(), "expires_at": resp.GetExpiresAt().AsTime(), "uses": resp.GetUses()})
			}
			fmt.Fprintln(g.out, resp.GetToken())
			fmt.Fprintf(g.errOut, "join token for %s agents: %d use(s), expires %s\n", role, resp.GetUses(), resp.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "host", "agent role the token enrolls: host or worker")
	create.Flags().Uint32Var(&uses, "uses", 1, "how many agents may enroll with it")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	create.Flags().StringArrayVar(&labels, "label", nil, "label k=v added to every agent enrolled with it (repeatable)")
	cmd.AddCommand(create, newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newOperatorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Manage operators"}
	var role, out string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Issue a credential for a new operator",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, ok := auth.ParseRole(role)
			if !ok {
				return exitWith(ExitUsage, fmt.Errorf("--role %q: want viewer, responder, approver or admin", role))
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.AddOperator(ctx, &operatorv1.AddOperatorRequest{Name: args[0], Role: r})
			if err != nil {
				return rpcError(err)
			}
			if out == "" {
				out = args[0] + ".creds"
			}
			var creds pki.Creds
			if err := json.Unmarshal(resp.GetCredsJson(), &creds); err != nil {
				return err
			}
			if err := creds.Save(out); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"name": args[0], "role": role, "creds_file": out})
			}
			fmt.Fprintf(g.out, "operator %s (%s): credential written to %s (mode 0600); hand it over securely\n", args[0], role, out)
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "viewer", "viewer, responder, approver or admin (default the least, viewer)")
	add.Flags().StringVarP(&out, "output", "o", "", "credential file to write (default NAME.creds)")
	cmd.AddCommand(add, newOperatorRevokeCmd(g), newOperatorRotateCmd(g))
	return cmd
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the operator the credential belongs to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.Whoami(ctx, &operatorv1.WhoamiRequest{})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.printJSON(map[string]string{"name": resp.GetName(), "role": auth.RoleName(resp.GetRole())})
			}
			fmt.Fprintf(g.out, "%s (%s)\n", resp.GetName(), auth.RoleName(resp.GetRole()))
			return nil
		},
	}
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the hash-chained audit log"}
	var after uint64
	var limit uint32
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListAudit(ctx, &operatorv1.ListAuditRequest{AfterSeq: after, Limit: limit})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type rec struct {
					Seq      uint64          `json:"seq"`
					At       time.Time       `json:"at"`
					Actor    string          `json:"actor"`
					Action   string          `json:"action"`
					Subject  string          `json:"subject"`
					Detail   json.RawMessage `json:"detail"`
					PrevHash string          `json:"prev_hash"`
					Hash     string          `json:"hash"`
				}
				out := []rec{}
				for _, r := range resp.GetRecords() {
					out = append(out, rec{r.GetSeq(), r.GetAt().AsTime(), r.GetActor(), r.GetAction(), r.GetSubject(), r.GetDetailJson(), r.GetPrevHash(), r.GetHash()})
				}
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tSUBJECT\tDETAIL")
			for _, r := range resp.GetRecords() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.GetSeq(), r.GetAt().AsTime().Local().Format(time.RFC3339), clean(r.GetActor()), r.GetAction(), clean(r.GetSubject()), clean(string(r.GetDetailJson())))
			}
			return tw.Flush()
		},
	}
	list.Flags().Uint64Var(&after, "after", 0, "show records after this sequence number")
	list.Flags().Uint32Var(&limit, "limit", 100, "most records to show")
	cmd.AddCommand(list, newAuditVerifyCmd(g), newAuditHeadCmd(g))
	return cmd
}
