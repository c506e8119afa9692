package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// scopeAction is the action `firebreak scope key` runs.
const scopeAction = "aws-credential-scope"

// maxScopeRounds bounds how many times the lookup source follows sessions
// into further accounts.
const maxScopeRounds = 5

var (
	scopeKeyRE     = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{12,124}$`)
	scopeAccountRE = regexp.MustCompile(`^\d{12}$`)
)

// scopeTaskResult is the part of an aws-credential-scope result the CLI
// reads.
type scopeTaskResult struct {
	Account  string            `json:"account"`
	Source   string            `json:"source"`
	Key      string            `json:"access_key_id"`
	Scope    *trailscope.Scope `json:"scope"`
	NextKeys []struct {
		AccessKeyID string `json:"access_key_id"`
		Account     string `json:"account"`
	} `json:"next_keys"`
	Read struct {
		Files     int   `json:"files"`
		Bytes     int64 `json:"bytes"`
		Pages     int   `json:"pages"`
		Records   int   `json:"records"`
		ElapsedMS int64 `json:"elapsed_ms"`
	} `json:"read"`
}

// scopeJSON is `firebreak scope key --json`.
type scopeJSON struct {
	Key       string                   `json:"access_key_id"`
	Source    string                   `json:"source"`
	Runs      []string                 `json:"runs"`
	Events    int                      `json:"events"`
	Accounts  []string                 `json:"accounts"`
	Sessions  []*trailscope.Credential `json:"sessions"`
	ByClass   map[trailscope.Class]int `json:"by_class"`
	Artifacts []trailscope.Artifact    `json:"artifacts"`
	Places    []*trailscope.Place      `json:"places"`
	Failed    []string                 `json:"failed_targets"`
	Read      map[string]int64         `json:"read"`
}

func (s *scopeJSON) add(r *scopeTaskResult) {
	sc := r.Scope
	s.Events += sc.EventCount
	s.Read["files"] += int64(r.Read.Files)
	s.Read["bytes"] += r.Read.Bytes
	s.Read["pages"] += int64(r.Read.Pages)
	s.Read["records"] += int64(r.Read.Records)
	s.Read["elapsed_ms"] = max(s.Read["elapsed_ms"], r.Read.ElapsedMS)
	if sc.Chain != nil {
		for _, c := range sc.Chain.Credentials {
			if c != nil && !slices.ContainsFunc(s.Sessions, func(o *trailscope.Credential) bool { return o.AccessKeyID == c.AccessKeyID }) {
				s.Sessions = append(s.Sessions, c)
			}
		}
	}
	for k, v := range sc.ByClass {
		s.ByClass[k] += v
	}
	s.Artifacts = append(s.Artifacts, sc.Artifacts...)
	for _, p := range sc.Places {
		if p != nil {
			s.Places = append(s.Places, p)
			if !slices.Contains(s.Accounts, p.Account) {
				s.Accounts = append(s.Accounts, p.Account)
			}
		}
	}
}

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
			k := strings.TrimSpace(args[0])
			if !scopeKeyRE.MatchString(k) {
				return ExitWith(ExitUsage, fmt.Errorf("%q is not an AWS access key id (AKIA… or ASIA…)", k))
			}
			if (trailBucket == "") != (logArchive == "") {
				return ExitWith(ExitUsage, errors.New("--trail-bucket and --log-archive go together: the bucket is read in the account that holds it"))
			}
			if logArchive != "" && !scopeAccountRE.MatchString(logArchive) {
				return ExitWith(ExitUsage, fmt.Errorf("--log-archive %q is not a 12-digit account id", logArchive))
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return g.scopeKey(cmd.Context(), c, scopeOptions{key: k, since: since, caseID: caseID, bucket: trailBucket, logArchive: logArchive,
				prefix: trailPrefix, orgID: orgID, accounts: accounts, regions: regions, deadline: deadline})
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

type scopeOptions struct {
	key, since, caseID, bucket, prefix, logArchive, orgID, accounts, regions string
	deadline                                                                 time.Duration
}

// scopeKey runs the scope, round by round for LookupEvents, and prints
// what it found.
func (g *Globals) scopeKey(ctx context.Context, c *client, o scopeOptions) error {
	out, err := g.runScope(ctx, c, o)
	if err != nil {
		return err
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

// runScope runs the scope, round by round for LookupEvents, adds a note of
// what it found to the case, and returns it; the tasks that did not succeed
// are in its Failed.
func (g *Globals) runScope(ctx context.Context, c *client, o scopeOptions) (*scopeJSON, error) {
	out := &scopeJSON{Key: o.key, Source: "lookup", ByClass: map[trailscope.Class]int{}, Read: map[string]int64{},
		Sessions: []*trailscope.Credential{}, Artifacts: []trailscope.Artifact{}, Places: []*trailscope.Place{}, Runs: []string{}, Failed: []string{}, Accounts: []string{}}
	base := map[string]any{"start": o.since}
	if o.regions != "" {
		base["regions"] = strings.Split(o.regions, ",")
	}
	// The organisation's accounts let the classifier flag trust and
	// shares that leave it; without a sync the flag is off.
	lctx, cancel := g.ctx(ctx)
	if resp, err := c.op.ListAccounts(lctx, &operatorv1.ListAccountsRequest{}); err == nil && len(resp.GetAccounts()) > 0 {
		var ids []string
		for _, a := range resp.GetAccounts() {
			ids = append(ids, a.GetId())
		}
		base["org_accounts"] = ids
	}
	cancel()
	type round struct{ key, accounts string }
	var queue []round
	if o.bucket != "" {
		out.Source = "trail"
		base["source"], base["trail_bucket"] = "trail", o.bucket
		if o.orgID != "" {
			base["org_id"] = o.orgID
		}
		if o.prefix != "" {
			base["trail_prefix"] = o.prefix
		}
		queue = []round{{o.key, o.logArchive}}
	} else {
		queue = []round{{o.key, o.accounts}}
	}
	scoped := map[string]bool{}
	for r := 0; len(queue) > 0; r++ {
		if r == maxScopeRounds {
			fmt.Fprintf(g.errOut, "stopped after %d rounds; not scoped: %v\n", maxScopeRounds, queue)
			break
		}
		var next []round
		for _, q := range queue {
			scoped[q.key+"@"+q.accounts] = true
			params := map[string]any{"access_key_id": q.key}
			for k, v := range base {
				params[k] = v
			}
			results, err := g.scopeRun(ctx, c, q.accounts, params, o, out)
			if err != nil {
				return nil, err
			}
			for _, res := range results {
				out.add(res)
				for _, nk := range res.NextKeys {
					if !scoped[nk.AccessKeyID+"@"+nk.Account] && scopeAccountRE.MatchString(nk.Account) {
						scoped[nk.AccessKeyID+"@"+nk.Account] = true
						next = append(next, round{nk.AccessKeyID, nk.Account})
					}
				}
			}
		}
		queue = next
	}
	slices.Sort(out.Accounts)
	if o.caseID != "" && len(out.Artifacts) > 0 {
		nctx, cancel := g.ctx(ctx)
		_, err := c.cases().AddNote(nctx, &operatorv1.AddNoteRequest{CaseId: o.caseID, Text: scopeNote(out)})
		cancel()
		if err != nil {
			return nil, rpcError(err)
		}
	}
	return out, nil
}

// scopeRun runs one aws-credential-scope run and returns its tasks'
// results.
func (g *Globals) scopeRun(ctx context.Context, c *client, accounts string, params map[string]any, o scopeOptions, out *scopeJSON) ([]*scopeTaskResult, error) {
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	req := &operatorv1.CreateRunRequest{Action: scopeAction, Accounts: accounts, ParamsJson: pj, CaseId: o.caseID,
		Deadline: durationpb.New(o.deadline), Reason: "scope of " + fmt.Sprint(params["access_key_id"])}
	rctx, cancel := g.ctx(ctx)
	resp, err := c.op.CreateRun(rctx, req)
	cancel()
	if err != nil {
		return nil, rpcError(err)
	}
	run := resp.GetRun()
	out.Runs = append(out.Runs, run.GetId())
	if !g.json {
		fmt.Fprintf(g.errOut, "run %s: %s of %s in %s (%d task(s))\n", run.GetId(), scopeAction, params["access_key_id"], accounts, len(run.GetTasks()))
	}
	final, err := g.follow(ctx, c, run.GetId())
	if err != nil {
		return nil, err
	}
	var results []*scopeTaskResult
	for _, t := range final.GetTasks() {
		var res scopeTaskResult
		if json.Unmarshal(t.GetOutputJson(), &res) == nil && res.Scope != nil {
			results = append(results, &res)
		}
		if t.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			out.Failed = append(out.Failed, fmt.Sprintf("%s %s: %s", t.GetAccount(), t.GetRegion(), orDash(t.GetError())))
		}
	}
	return results, nil
}

// scopeNote is the case note listing what the scope found.
func scopeNote(s *scopeJSON) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Scope of %s (%s, runs %s): %d events in %d account(s), %d session(s).", s.Key, s.Source, strings.Join(s.Runs, ", "),
		s.Events, len(s.Accounts), max(0, len(s.Sessions)-1))
	for _, a := range s.Artifacts {
		fmt.Fprintf(&b, "\n- %s %s in %s/%s", a.Kind, a.ID, a.Account, a.Region)
		if a.Public {
			b.WriteString(" (public)")
		}
		if a.Outside {
			b.WriteString(" (outside the organisation)")
		}
		if b.Len() > 15<<10 {
			b.WriteString("\n- … (the case report's Scope section has the rest)")
			break
		}
	}
	return b.String()
}

func (g *Globals) printScope(s *scopeJSON) {
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
