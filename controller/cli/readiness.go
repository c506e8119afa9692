package cli

import (
	"context"
	"fmt"
	"html"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// ExitBelowScore: `readiness --fail-under` found the score below the bar.
const ExitBelowScore = 7

// readinessJSON is the documented report schema (docs/readiness.md).
type readinessJSON struct {
	ID          string                 `json:"id,omitempty"`
	Score       int32                  `json:"score"`
	Accounts    []string               `json:"accounts"`
	Regions     []string               `json:"regions"`
	Checks      []readinessCheckJSON   `json:"checks"`
	GeneratedAt time.Time              `json:"generated_at"`
	RunID       string                 `json:"run_id,omitempty"`
	Summary     map[string]int         `json:"summary"`
	ByAccount   map[string]accountRoll `json:"by_account"`
}

type readinessCheckJSON struct {
	ID          string `json:"id"`
	Account     string `json:"account"`
	Region      string `json:"region"`
	Status      string `json:"status"`
	Evidence    string `json:"evidence"`
	Remediation string `json:"remediation"`
}

// accountRoll is one account's counts by status.
type accountRoll struct {
	OK      int `json:"ok"`
	Warn    int `json:"warn"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

func (r *accountRoll) add(status string) {
	switch status {
	case "ok":
		r.OK++
	case "warn":
		r.Warn++
	case "fail":
		r.Fail++
	default:
		r.Unknown++
	}
}

func toReadinessJSON(r *operatorv1.ReadinessReport) readinessJSON {
	out := readinessJSON{ID: r.GetId(), Score: r.GetScore(), Accounts: orEmpty(r.GetAccounts()), Regions: orEmpty(r.GetRegions()),
		Checks: []readinessCheckJSON{}, GeneratedAt: r.GetGeneratedAt().AsTime(), RunID: r.GetRunId(),
		Summary: map[string]int{"ok": 0, "warn": 0, "fail": 0, "unknown": 0}, ByAccount: map[string]accountRoll{}}
	for _, c := range r.GetChecks() {
		out.Checks = append(out.Checks, readinessCheckJSON{c.GetId(), c.GetAccount(), c.GetRegion(), c.GetStatus(), c.GetEvidence(), c.GetRemediation()})
		out.Summary[c.GetStatus()]++
		key := c.GetAccount()
		if key == "" {
			key = "controller"
		}
		roll := out.ByAccount[key]
		roll.add(c.GetStatus())
		out.ByAccount[key] = roll
	}
	return out
}

// NewReadinessCmd is `firebreak readiness`: the organisation's readiness
// score with the gaps that would hurt in an incident.
func NewReadinessCmd(g *Globals) *cobra.Command {
	var accounts, regions, format, sel, bucket, bucketAccount string
	var failUnder, perAccount int
	var save bool
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "readiness [--accounts all|IDs|ou=…] [--regions all|list] [--json|--format md|html] [--fail-under SCORE] [--save]",
		Short: "Score how ready the organisation is for an incident, with each gap's remediation",
		Long: `Run the read-only aws-readiness checks through the workers in every selected
account and region (run's fan-out, --max-per-account at once in an account), add
the controller's own checks (approvers, admin credentials, CA expiry, audit chain,
join tokens, agent coverage and host capability), and print a report grouped by
account with a weighted score out of 100. --fail-under exits 7 when the score is
below it, for cron and CI. docs/readiness.md describes every check and the JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "text", "md", "html":
			default:
				return fmt.Errorf("--format %q: want text, md or html", format)
			}
			if failUnder < 0 || failUnder > 100 {
				return fmt.Errorf("--fail-under %d: want a score from 0 to 100", failUnder)
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if deadline+10*time.Second > g.timeout {
				var cancel context.CancelFunc
				ctx, cancel = g.ctxWith(cmd.Context(), deadline+10*time.Second)
				defer cancel()
			}
			stop := g.readinessProgress(ctx, c)
			resp, err := c.op.Readiness(ctx, &operatorv1.ReadinessRequest{Accounts: accounts, Regions: regions, Save: save, Selector: sel,
				Deadline: durationpb.New(deadline), EvidenceBucket: bucket, EvidenceAccount: bucketAccount, MaxPerAccount: int32(perAccount)})
			stop(err == nil)
			if err != nil {
				return rpcError(err)
			}
			r := toReadinessJSON(resp.GetReport())
			switch {
			case g.json:
				err = g.PrintJSON(r)
			case format == "md":
				err = writeReadinessMarkdown(g.out, r)
			case format == "html":
				err = writeReadinessHTML(g.out, r)
			default:
				err = writeReadinessText(g.out, r)
			}
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("fail-under") && int(r.Score) < failUnder {
				return ExitWith(ExitBelowScore, fmt.Errorf("readiness score %d is below --fail-under %d", r.Score, failUnder))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&accounts, "accounts", "all", "the accounts to check: all, ID,ID or ou=NAME-OR-ID")
	cmd.Flags().StringVar(&regions, "regions", "", "the regions to check: all (each account's enabled regions) or a list; default each worker's own")
	cmd.Flags().StringVar(&format, "format", "text", "text, md or html (--json for JSON)")
	cmd.Flags().IntVar(&failUnder, "fail-under", 0, "exit 7 when the score is below this")
	cmd.Flags().BoolVar(&save, "save", false, "store the report for `readiness history`")
	cmd.Flags().StringVar(&sel, "select", "role=worker", "the workers that run the AWS-side checks")
	cmd.Flags().StringVar(&bucket, "evidence-bucket", "", "the S3 evidence bucket whose Object Lock, versioning and SSE-KMS to check")
	cmd.Flags().StringVar(&bucketAccount, "evidence-account", "", "the account that owns --evidence-bucket")
	cmd.Flags().IntVar(&perAccount, "max-per-account", 2, "checks running at once in one account")
	cmd.Flags().DurationVar(&deadline, "deadline", 5*time.Minute, "how long the AWS-side checks may take")
	history := &cobra.Command{
		Use:   "history [--limit N]",
		Short: "Show the stored readiness scores over time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			limit, _ := cmd.Flags().GetInt("limit")
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListReadinessReports(ctx, &operatorv1.ListReadinessReportsRequest{Limit: int32(limit)})
			if err != nil {
				return rpcError(err)
			}
			type entry struct {
				ID          string    `json:"id"`
				GeneratedAt time.Time `json:"generated_at"`
				Score       int32     `json:"score"`
				CreatedBy   string    `json:"created_by"`
			}
			out := []entry{}
			for _, r := range resp.GetReports() {
				out = append(out, entry{r.GetId(), r.GetGeneratedAt().AsTime(), r.GetScore(), r.GetCreatedBy()})
			}
			if g.json {
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "WHEN\tSCORE\t\tBY\tREPORT")
			for _, e := range out {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", e.GeneratedAt.UTC().Format(time.RFC3339), e.Score, strings.Repeat("█", int(e.Score)/5), e.CreatedBy, e.ID)
			}
			return tw.Flush()
		},
	}
	history.Flags().Int("limit", 50, "how many reports to show, newest first")
	cmd.AddCommand(history)
	return cmd
}

// PrintReadiness prints a report as `firebreak readiness` does: JSON with
// --json, else in format (text, md or html).
func (g *Globals) PrintReadiness(r *operatorv1.ReadinessReport, format string) error {
	j := toReadinessJSON(r)
	switch {
	case g.json:
		return g.PrintJSON(j)
	case format == "md":
		return writeReadinessMarkdown(g.out, j)
	case format == "html":
		return writeReadinessHTML(g.out, j)
	}
	return writeReadinessText(g.out, j)
}

// readinessAction is the action a review's AWS-side checks run as.
const readinessAction = "aws-readiness"

// readinessRunOf picks, among the newest runs, the aws-readiness run a
// review started at or after start (less a little clock skew): the oldest
// such, the first this review can have made.
func readinessRunOf(runs []*operatorv1.Run, start time.Time) string {
	id := ""
	for _, r := range runs { // newest first
		if r.GetAction() == readinessAction && !r.GetCreatedAt().AsTime().Before(start.Add(-2*time.Second)) {
			id = r.GetId()
		}
	}
	return id
}

// readinessProgress shows, on a terminal and without --json, the review's
// live per-target progress bar: a line saying the review is under way
// until the controller has made its aws-readiness run, then that run's
// bar as `run --wait` draws it. The review call itself is unary, so the
// run is found among the newest runs (another operator's review started
// in the same seconds could be shown instead; the report is unaffected).
//
// stop is called when the review has returned. A review that succeeded has
// ended its run, so the bar is drawn to its end (once, from the run's
// final counts, for a review quicker than the first poll) before stop
// returns, within readinessBarGrace; a failed review ends the bar at once.
func (g *Globals) readinessProgress(parent context.Context, c *client) (stop func(reviewed bool)) {
	w := g.progressOut()
	if g.json || !isTerminal(w) {
		return func(bool) {}
	}
	ctx, cancel := context.WithCancel(parent)
	reviewed := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		start := time.Now()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		frames := []string{"▏", "▎", "▍", "▌", "▋", "▊", "▉", "█"}
		runID := ""
		for i := 0; ; i++ {
			if resp, err := c.op.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: 10}); err == nil {
				runID = readinessRunOf(resp.GetRuns(), start)
			}
			if runID != "" || ctx.Err() != nil {
				break
			}
			fmt.Fprintf(w, "\r\033[Kreadiness: checking the accounts through the workers %s %s", frames[i%len(frames)], time.Since(start).Round(time.Second))
			select {
			case <-ctx.Done():
			case <-t.C:
			case <-reviewed:
				// The review is back: one last look for its run.
				if resp, err := c.op.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: 10}); err == nil {
					runID = readinessRunOf(resp.GetRuns(), start)
				}
				if runID == "" {
					cancel()
				}
			}
			if runID != "" || ctx.Err() != nil {
				break
			}
		}
		fmt.Fprint(w, "\r\033[K")
		if runID != "" && ctx.Err() == nil {
			g.watchTaskBar(ctx, c, runID)
			fmt.Fprint(w, "\r\033[K")
		}
	}()
	return func(ok bool) {
		close(reviewed)
		if !ok {
			cancel()
		}
		select {
		case <-finished:
		case <-time.After(readinessBarGrace):
			cancel()
			<-finished
		}
		cancel()
	}
}

// readinessBarGrace bounds how long a finished review waits for its bar to
// draw the run's end.
const readinessBarGrace = 2 * time.Second

// watchTaskBar draws a run's per-target progress bar until the run ends or
// ctx does; a watch that fails ends the bar, not the review.
func (g *Globals) watchTaskBar(ctx context.Context, c *client, runID string) {
	stream, err := c.op.WatchRun(ctx, &operatorv1.WatchRunRequest{RunId: runID})
	if err != nil {
		return
	}
	tasks := map[string]*operatorv1.Task{}
	bar := g.newTaskBar()
	defer bar.end()
	for {
		m, err := stream.Recv()
		if err != nil {
			return
		}
		switch e := m.GetEvent().(type) {
		case *operatorv1.WatchRunResponse_Snapshot:
			for _, t := range e.Snapshot.GetTasks() {
				tasks[t.GetId()] = t
			}
		case *operatorv1.WatchRunResponse_Task:
			tasks[e.Task.GetId()] = e.Task
		case *operatorv1.WatchRunResponse_Done:
			return
		}
		cnt := &operatorv1.RunCounts{Targets: uint32(len(tasks))}
		for _, t := range tasks {
			apiview.CountTask(cnt, t.GetStatus())
		}
		bar.draw(cnt)
	}
}

// groups returns the report's checks by account, controller first.
func (r readinessJSON) groups() ([]string, map[string][]readinessCheckJSON) {
	var order []string
	by := map[string][]readinessCheckJSON{}
	for _, c := range r.Checks {
		key := c.Account
		if key == "" {
			key = "controller"
		}
		if _, ok := by[key]; !ok {
			order = append(order, key)
		}
		by[key] = append(by[key], c)
	}
	return order, by
}

func place(c readinessCheckJSON) string {
	if c.Region != "" {
		return c.Region
	}
	return "-"
}

func writeReadinessText(w io.Writer, r readinessJSON) error {
	fmt.Fprintf(w, "Readiness score: %d/100  (%d ok, %d warn, %d fail, %d unknown; %d accounts, regions %s)\n", r.Score,
		r.Summary["ok"], r.Summary["warn"], r.Summary["fail"], r.Summary["unknown"], len(r.Accounts), strings.Join(r.Regions, ","))
	order, by := r.groups()
	for _, key := range order {
		roll := r.ByAccount[key]
		fmt.Fprintf(w, "\n%s  (%d ok, %d warn, %d fail, %d unknown)\n", key, roll.OK, roll.Warn, roll.Fail, roll.Unknown)
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		for _, c := range by[key] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", strings.ToUpper(c.Status), c.ID, place(c), c.Evidence)
			if c.Remediation != "" && c.Status != "ok" {
				fmt.Fprintf(tw, "  \t\t\tfix: %s\n", c.Remediation)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func writeReadinessMarkdown(w io.Writer, r readinessJSON) error {
	cell := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }
	fmt.Fprintf(w, "# Readiness: %d/100\n\n%d ok · %d warn · %d fail · %d unknown — generated %s\n", r.Score,
		r.Summary["ok"], r.Summary["warn"], r.Summary["fail"], r.Summary["unknown"], r.GeneratedAt.UTC().Format(time.RFC3339))
	order, by := r.groups()
	for _, key := range order {
		fmt.Fprintf(w, "\n## %s\n\n| status | check | region | evidence | remediation |\n|---|---|---|---|---|\n", key)
		for _, c := range by[key] {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c.Status, c.ID, place(c), cell(c.Evidence), cell(c.Remediation))
		}
	}
	return nil
}

func writeReadinessHTML(w io.Writer, r readinessJSON) error {
	e := html.EscapeString
	fmt.Fprintf(w, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Firebreak readiness %d/100</title>"+
		"<style>body{font-family:sans-serif}td{padding:2px 8px;vertical-align:top}.fail{color:#b00}.warn{color:#a60}.unknown{color:#555}.ok{color:#070}</style></head><body>\n", r.Score)
	fmt.Fprintf(w, "<h1>Readiness: %d/100</h1>\n<p>%d ok · %d warn · %d fail · %d unknown — generated %s</p>\n", r.Score,
		r.Summary["ok"], r.Summary["warn"], r.Summary["fail"], r.Summary["unknown"], e(r.GeneratedAt.UTC().Format(time.RFC3339)))
	order, by := r.groups()
	for _, key := range order {
		fmt.Fprintf(w, "<h2>%s</h2>\n<table><tr><th>status</th><th>check</th><th>region</th><th>evidence</th><th>remediation</th></tr>\n", e(key))
		for _, c := range by[key] {
			fmt.Fprintf(w, "<tr class=\"%s\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", e(c.Status), e(c.Status), e(c.ID), e(place(c)), e(c.Evidence), e(c.Remediation))
		}
		fmt.Fprintln(w, "</table>")
	}
	_, err := fmt.Fprintln(w, "</body></html>")
	return err
}

// RecordDrill sends a drill's outcome to the controller of the operator
// credential, for the readiness review's drill recency check (`firebreak
// lab drill --record`).
func (g *Globals) RecordDrill(parent context.Context, req *operatorv1.RecordDrillRequest) (*operatorv1.RecordDrillResponse, error) {
	c, ctx, done, err := g.open(parent)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := c.op.RecordDrill(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("recording the drill with the controller: %w", err)
	}
	return resp, nil
}
