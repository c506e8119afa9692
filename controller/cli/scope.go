package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// NewScopeCmd is `firebreak scope`: what a credential did across the
// organisation.
func NewScopeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "scope", Short: "Scope a credential across the organisation through CloudTrail"}
	var since, caseID, trailBucket, trailPrefix, logArchive, orgID, accounts, regions string
	var deadline time.Duration
	key := &cobra.Command{ //nolint:gosec // G101: the usage text names the key prefixes AKIA and ASIA, not a key
		Use:   "key AKIA…|ASIA…",
		Short: "Follow a key and the sessions it minted through CloudTrail, and list what it did and left",
		Long: `Run aws-credential-scope to find what a key did: its own events and those of
every session minted from it (GetSessionToken, AssumeRole, GetFederationToken),
followed transitively, into other accounts too; each event classified as
persistence, defence evasion, exposure, data access or reconnaissance, and
the artifacts its writes left.

With --trail-bucket and --log-archive, one task in the log-archive account
reads the organisation trail's log files in S3 for the window, every account
and region at once: the path that scales. Without, every account's worker
reads its CloudTrail event history (LookupEvents, 90 days, 2 requests per
second per region), and the sessions that entered other accounts are then
scoped there, up to 5 rounds.

With --case the runs join the case: the matched events are evidence with
custody, the case report gains a Scope section, and a note on the timeline
lists the artifacts found.`,
		Example: `  firebreak scope key AKIAIOSFODNN7EXAMPLE --since 30d --case case-123
  firebreak scope key AKIAIOSFODNN7EXAMPLE --trail-bucket org-trail-logs --log-archive 111122223333 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := eradflow.ScopeRequest{Key: strings.TrimSpace(args[0]), Since: since, CaseID: caseID, TrailBucket: trailBucket, LogArchive: logArchive,
				TrailPrefix: trailPrefix, OrgID: orgID, Accounts: accounts, Deadline: deadline}
			if regions != "" {
				o.Regions = strings.Split(regions, ",")
			}
			if (trailBucket == "") != (logArchive == "") {
				return ExitWith(ExitUsage, errors.New("--trail-bucket and --log-archive go together: the bucket is read in the account that holds it"))
			}
			if err := o.Check(); err != nil {
				return ExitWith(ExitUsage, err)
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return g.scopeKey(cmd.Context(), c, o)
		},
	}
	fl := key.Flags()
	fl.StringVar(&since, "since", "7d", "start of the window: RFC 3339 time or a duration ago (24h, 30d); LookupEvents keeps 90 days")
	fl.StringVar(&caseID, "case", "", "incident case to attach the runs, evidence and findings to")
	fl.StringVar(&trailBucket, "trail-bucket", "", "read the organisation trail's log files in this S3 bucket instead of LookupEvents")
	fl.StringVar(&trailPrefix, "trail-prefix", "", "the trail's S3 key prefix before AWSLogs/, if it has one")
	fl.StringVar(&logArchive, "log-archive", "", "the account holding --trail-bucket, where the reading task runs")
	fl.StringVar(&orgID, "org-id", "", "the organisation id (o-…) in the trail bucket's layout (default: the only one there)")
	fl.StringVar(&accounts, "accounts", "all", `accounts whose event history to read (LookupEvents): "all", "ID,ID" or "ou=NAME"`)
	fl.StringVar(&regions, "regions", "", "regions to read, r1,r2 (default: LookupEvents the worker's region and us-east-1; trail every region)")
	fl.DurationVar(&deadline, "deadline", 30*time.Minute, "how long each scope run may take")
	cmd.AddCommand(key)
	return cmd
}

// scopeKey runs the scope, round by round for LookupEvents, and prints
// what it found.
func (g *Globals) scopeKey(ctx context.Context, c *client, o eradflow.ScopeRequest) error {
	out, err := g.flow(c).Scope(ctx, o)
	if err != nil {
		return rpcError(err)
	}
	if g.json {
		if err := g.PrintJSON(out); err != nil {
			return err
		}
	} else {
		g.printScope(out)
	}
	if len(out.Failed) > 0 {
		return ExitWith(ExitRunFailed, fmt.Errorf("%d scope task(s) did not succeed: %s", len(out.Failed), strings.Join(out.Failed, "; ")))
	}
	return nil
}

func (g *Globals) printScope(s *eradflow.ScopeResult) {
	fmt.Fprintf(g.out, "%s: %d events in %d account(s) through %d session(s) (%s)\n\n", s.Key, s.Events, len(s.Accounts), max(0, len(s.Sessions)-1), s.Source)
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMINTED BY\tVIA\tACCOUNT\tIDENTITY")
	for _, c := range s.Sessions {
		via := orDash(c.Via)
		if c.Inferred {
			via += " (inferred)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.AccessKeyID, orDash(c.Parent), via, orDash(c.Account), orDash(c.ARN))
	}
	tw.Flush()
	fmt.Fprintln(g.out)
	tw = tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tEVENTS")
	for _, c := range trailscope.Classes {
		if n := s.ByClass[c]; n > 0 {
			fmt.Fprintf(tw, "%s\t%d\n", c, n)
		}
	}
	tw.Flush()
	fmt.Fprintln(g.out)
	if len(s.Artifacts) == 0 {
		fmt.Fprintln(g.out, "No artifact: no write of the key or its sessions succeeded.")
		return
	}
	tw = tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARTIFACT\tACCOUNT\tREGION\tID\tFLAGS")
	for _, a := range s.Artifacts {
		var flags []string
		if a.Public {
			flags = append(flags, "public")
		}
		if a.Outside {
			flags = append(flags, "outside-org")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Kind, a.Account, a.Region, a.ID, orDash(strings.Join(flags, ",")))
	}
	tw.Flush()
}
