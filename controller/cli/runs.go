package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// runFlags are the flags shared by `run` and its shortcuts (isolate,
// collect, …).
type runFlags struct {
	selector       string
	params         []string
	maxConcurrency uint32
	maxErrors      string
	deadline       time.Duration
	dryRun         bool
	wait           bool
	reason         string
	caseID         string
	accounts       string
	regions        string
	maxPerAccount  uint32
	accountFlags   bool
}

func (f *runFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.selector, "select", "", `target agents: "all" or terms such as role=host,label.env=prod,hostname=web-*`)
	fl.StringArrayVar(&f.params, "param", nil, "action parameter k=v (repeatable)")
	fl.Uint32Var(&f.maxConcurrency, "max-concurrency", 0, "most tasks in flight at once (0: no limit)")
	fl.StringVar(&f.maxErrors, "max-errors", "", `once more targets than this fail ("5" or "10%"), tasks not yet started are cancelled (default: no limit)`)
	fl.DurationVar(&f.deadline, "deadline", time.Hour, "how long tasks may wait for offline agents and run")
	fl.BoolVar(&f.dryRun, "dry-run", false, "list the targets and change nothing")
	fl.BoolVar(&f.wait, "wait", false, "follow the run to its end, then print the per-target table")
	fl.StringVar(&f.reason, "reason", "", "why, for the audit log and the case")
	fl.StringVar(&f.caseID, "case", "", "incident case to attach the run to")
}

// registerAccounts adds the flags of account-targeted runs.
func (f *runFlags) registerAccounts(cmd *cobra.Command) {
	f.accountFlags = true
	fl := cmd.Flags()
	fl.StringVar(&f.accounts, "accounts", "", `target AWS accounts instead of agents: "all", "ID,ID" or "ou=NAME|ID" (one task per account and region, sent to a worker; needs 'firebreak accounts sync')`)
	fl.StringVar(&f.regions, "regions", "", `regions of an account-targeted run: "all" (each account's enabled regions) or "r1,r2" (default: the worker's region)`)
	fl.Uint32Var(&f.maxPerAccount, "max-per-account", 0, "most tasks in flight per account in an account-targeted run (0: no limit)")
}

func (f *runFlags) request(action string, extra map[string]string, typed map[string]any) (*operatorv1.CreateRunRequest, error) {
	params, err := parseKV("param", f.params)
	if err != nil {
		return nil, err
	}
	for k, v := range extra {
		params[k] = v
	}
	if err := apiview.ParseMaxErrors(f.maxErrors); err != nil {
		return nil, ExitWith(ExitUsage, err)
	}
	if f.selector == "" && f.accounts == "" {
		if f.accountFlags {
			return nil, ExitWith(ExitUsage, errors.New(`say what to target: --select SELECTOR (agents) or --accounts all|ID,ID|ou=NAME (AWS accounts)`))
		}
		return nil, ExitWith(ExitUsage, errors.New(`say what to target: --select SELECTOR, e.g. --select hostname=web-3`))
	}
	req := &operatorv1.CreateRunRequest{Action: action, Selector: f.selector, Params: params, MaxConcurrency: f.maxConcurrency,
		MaxErrors: f.maxErrors, Deadline: durationpb.New(f.deadline), DryRun: f.dryRun, Reason: f.reason, CaseId: f.caseID,
		Accounts: f.accounts, Regions: f.regions, MaxPerAccount: f.maxPerAccount}
	if len(typed) > 0 {
		b, err := json.Marshal(typed)
		if err != nil {
			return nil, err
		}
		req.ParamsJson = b
	}
	return req, nil
}

// NewRunCmd is `firebreak run`: one action on every matching target.
func NewRunCmd(g *Globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run ACTION (--select SELECTOR | --accounts ACCOUNTS)",
		Short: "Run one action on every matching agent",
		Long: `Run one action on every agent the selector matches that offers the action.

The controller pushes the signed task to each connected agent at once;
agents that are offline get it when they return, until --deadline. Rate
control follows SSM: at most --max-concurrency tasks in flight, and once
more than --max-errors targets fail, the tasks not yet started are
cancelled. A destructive action over more targets than the controller's
approval threshold waits for 'firebreak approve RUN_ID' by another operator.`,
		Example: `  firebreak run sysinfo --select all --wait
  firebreak run noop --select role=host,label.env=prod --max-concurrency 50 --max-errors 5% --wait --json
  firebreak run aws-iam-contain --accounts all --param access_key_id=AKIA… --max-per-account 1 --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(args[0], nil, nil)
			if err != nil {
				return err
			}
			return g.createRun(cmd.Context(), req, f.wait)
		},
	}
	f.register(cmd)
	f.registerAccounts(cmd)
	return cmd
}

// createRun creates a run and, with wait, follows it to its end. It is the
// one code path behind run, isolate, unisolate and collect.
func (g *Globals) createRun(ctx context.Context, req *operatorv1.CreateRunRequest, wait bool) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := g.ctx(ctx)
	resp, err := c.op.CreateRun(rctx, req)
	cancel()
	if err != nil {
		return rpcError(err)
	}
	r := resp.GetRun()
	if req.GetDryRun() {
		return g.printPlan(r)
	}
	if !wait {
		if g.json {
			return g.PrintJSON(map[string]any{"run_id": r.GetId(), "action": r.GetAction(), "status": apiview.EnumName(r.GetStatus()), "targets": len(r.GetTasks())})
		}
		fmt.Fprintln(g.out, r.GetId())
		if r.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
			fmt.Fprintf(g.errOut, "run %s of %s over %d targets awaits approval by another operator: firebreak approve %s\n", r.GetId(), r.GetAction(), len(r.GetTasks()), r.GetId())
			return ExitWith(ExitAwaitingApproval, nil)
		}
		fmt.Fprintf(g.errOut, "run %s of %s started on %d targets; follow it with: firebreak runs show %s --wait\n", r.GetId(), r.GetAction(), len(r.GetTasks()), r.GetId())
		return nil
	}
	if !g.json {
		fmt.Fprintf(g.errOut, "run %s: %s on %d targets\n", r.GetId(), r.GetAction(), len(r.GetTasks()))
	}
	final, err := g.follow(ctx, c, r.GetId())
	if err != nil {
		return err
	}
	return g.report(final)
}

// follow watches a run until it ends, drawing a progress bar on a terminal.
// A dropped watch is resumed with a fresh snapshot.
func (g *Globals) follow(ctx context.Context, c *client, runID string) (*operatorv1.Run, error) {
	bar := g.newTaskBar()
	showBar := !g.json && isTerminal(g.progressOut())
	tasks := map[string]*operatorv1.Task{}
	var hdr *operatorv1.Run
	announcedApproval := false
	draw := func() {
		cnt := &operatorv1.RunCounts{Targets: uint32(len(tasks))}
		for _, t := range tasks {
			apiview.CountTask(cnt, t.GetStatus())
		}
		if hdr != nil && hdr.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL && !announcedApproval {
			announcedApproval = true
			fmt.Fprintf(g.errOut, "awaiting approval by another operator: firebreak approve %s\n", runID)
		}
		if !showBar {
			return
		}
		bar.draw(cnt)
	}
	// A watch the controller sheds, or that ends while the run changes
	// owner (its owner died and another adopts it), is opened again, up
	// to 20 times a second apart.
	again := func(attempt int, err error) bool {
		st, ok := status.FromError(err)
		if ok && (st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) && attempt < 20 && ctx.Err() == nil {
			time.Sleep(time.Second)
			return true
		}
		return false
	}
	for attempt := 0; ; attempt++ {
		stream, err := c.op.WatchRun(ctx, &operatorv1.WatchRunRequest{RunId: runID})
		if err != nil {
			if again(attempt, err) {
				continue
			}
			return nil, rpcError(err)
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the controller closed the watch before the run ended")
			}
			if err != nil {
				if again(attempt, err) {
					break
				}
				return nil, rpcError(err)
			}
			switch e := m.GetEvent().(type) {
			case *operatorv1.WatchRunResponse_Snapshot:
				hdr = e.Snapshot
				for _, t := range e.Snapshot.GetTasks() {
					tasks[t.GetId()] = t
				}
			case *operatorv1.WatchRunResponse_Task:
				tasks[e.Task.GetId()] = e.Task
			case *operatorv1.WatchRunResponse_Run:
				hdr = e.Run
			case *operatorv1.WatchRunResponse_Done:
				bar.end()
				// The controller ends the stream after Done; reading to its end
				// closes the call (and its span) with OK, not cancelled.
				_, _ = stream.Recv()
				return e.Done, nil
			}
			draw()
		}
	}
}

// taskBar draws a run's per-target progress on a terminal: targets done
// out of all, and the count in each state. `run --wait` and `readiness`
// share it. It throttles itself, so that every frame it draws shows the
// count and the text of the same moment (the bar's own throttle could drop
// the count's update right after the text's), and the last frame, every
// target done, is always drawn before end clears the line.
type taskBar struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	shown time.Time
}

// taskBarEvery is the least time between two frames.
const taskBarEvery = 100 * time.Millisecond

func (g *Globals) newTaskBar() *taskBar { return &taskBar{w: g.progressOut()} }

// draw shows cnt, unless a frame was drawn less than taskBarEvery ago and
// the run is not done.
func (t *taskBar) draw(cnt *operatorv1.RunCounts) {
	done := cnt.GetSucceeded() + cnt.GetFailed() + cnt.GetCancelled() + cnt.GetOffline()
	if t.bar == nil {
		t.bar = progressbar.NewOptions(int(cnt.GetTargets()), progressbar.OptionSetWriter(t.w), progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(0), progressbar.OptionSetPredictTime(false))
	} else if time.Since(t.shown) < taskBarEvery && done < cnt.GetTargets() {
		return
	}
	t.shown = time.Now()
	// The new count first, drawn with the old text; then the new text,
	// drawn with the new count: the frame left on the terminal is whole.
	_ = t.bar.Set(int(done))
	t.bar.Describe(fmt.Sprintf("pending %d · running %d · succeeded %d · failed %d · cancelled %d · offline %d",
		cnt.GetPending(), cnt.GetRunning(), cnt.GetSucceeded(), cnt.GetFailed(), cnt.GetCancelled(), cnt.GetOffline()))
}

// end clears the bar's line, when one was drawn.
func (t *taskBar) end() {
	if t.bar != nil {
		fmt.Fprint(t.w, "\r\033[K")
	}
}

// resultJSON is one target in the `--wait --json` output.
type resultJSON struct {
	AgentID  string          `json:"agent_id"`
	Hostname string          `json:"hostname"`
	Account  string          `json:"account,omitempty"`
	Region   string          `json:"region,omitempty"`
	Status   string          `json:"status"`
	Error    string          `json:"error"`
	Output   json.RawMessage `json:"output"`
	Evidence []string        `json:"evidence_ids,omitempty"`
	Duration string          `json:"duration,omitempty"`
}

// runJSON is the `--wait --json` contract.
type runJSON struct {
	RunID      string       `json:"run_id"`
	Action     string       `json:"action"`
	Status     string       `json:"status"`
	Targets    int          `json:"targets"`
	Succeeded  int          `json:"succeeded"`
	Failed     int          `json:"failed"`
	Cancelled  int          `json:"cancelled"`
	Offline    int          `json:"offline"`
	Results    []resultJSON `json:"results"`
	CreatedBy  string       `json:"created_by"`
	OnBehalfOf string       `json:"on_behalf_of,omitempty"`
	StartedAt  *time.Time   `json:"created_at,omitempty"`
	FinishedAt *time.Time   `json:"finished_at,omitempty"`
}

func toRunJSON(r *operatorv1.Run) runJSON {
	c := r.GetCounts()
	out := runJSON{RunID: r.GetId(), Action: r.GetAction(), Status: apiview.EnumName(r.GetStatus()), Targets: int(c.GetTargets()),
		Succeeded: int(c.GetSucceeded()), Failed: int(c.GetFailed()), Cancelled: int(c.GetCancelled()), Offline: int(c.GetOffline()),
		Results: []resultJSON{}, CreatedBy: r.GetCreatedBy(), OnBehalfOf: r.GetOnBehalfOf(), StartedAt: apiview.Time(r.GetCreatedAt()),
		FinishedAt: apiview.Time(r.GetFinishedAt())}
	for _, t := range r.GetTasks() {
		res := resultJSON{AgentID: t.GetAgentId(), Hostname: t.GetHostname(), Account: t.GetAccount(), Region: t.GetRegion(),
			Status: apiview.EnumName(t.GetStatus()), Error: t.GetError(), Output: t.GetOutputJson(), Evidence: t.GetEvidenceIds()}
		if len(res.Output) == 0 {
			res.Output = json.RawMessage("null")
		}
		if t.GetStartedAt() != nil && t.GetFinishedAt() != nil {
			res.Duration = t.GetFinishedAt().AsTime().Sub(t.GetStartedAt().AsTime()).Round(time.Millisecond).String()
		}
		out.Results = append(out.Results, res)
	}
	return out
}

// report prints a finished run and returns the exit code it means.
func (g *Globals) report(r *operatorv1.Run) error {
	j := toRunJSON(r)
	if g.json {
		if err := g.PrintJSON(j); err != nil {
			return err
		}
	} else {
		g.printRunTable(r)
	}
	switch r.GetStatus() {
	case operatorv1.RunStatus_RUN_STATUS_SUCCEEDED:
		return nil
	case operatorv1.RunStatus_RUN_STATUS_REJECTED, operatorv1.RunStatus_RUN_STATUS_CANCELLED:
		return ExitWith(ExitRejected, fmt.Errorf("run %s was %s", r.GetId(), apiview.EnumName(r.GetStatus())))
	case operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL:
		return ExitWith(ExitAwaitingApproval, nil)
	case operatorv1.RunStatus_RUN_STATUS_RUNNING:
		return nil
	}
	return ExitWith(ExitRunFailed, fmt.Errorf("run %s: %d of %d targets did not succeed", r.GetId(), j.Targets-j.Succeeded, j.Targets))
}

func (g *Globals) printRunTable(r *operatorv1.Run) {
	c := r.GetCounts()
	by := r.GetCreatedBy()
	if r.GetOnBehalfOf() != "" {
		by += " for " + r.GetOnBehalfOf()
	}
	fmt.Fprintf(g.out, "run %s  %s  %s  by %s\n", r.GetId(), r.GetAction(), strings.ToUpper(apiview.EnumName(r.GetStatus())), by)
	fmt.Fprintf(g.out, "targets %d · succeeded %d · failed %d · cancelled %d · offline %d · pending %d · running %d\n\n",
		c.GetTargets(), c.GetSucceeded(), c.GetFailed(), c.GetCancelled(), c.GetOffline(), c.GetPending(), c.GetRunning())
	tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tAGENT\tSTATUS\tTIME\tRESULT")
	for _, t := range r.GetTasks() {
		d := "-"
		if t.GetStartedAt() != nil && t.GetFinishedAt() != nil {
			d = t.GetFinishedAt().AsTime().Sub(t.GetStartedAt().AsTime()).Round(time.Millisecond).String()
		}
		result := t.GetError()
		if result == "" {
			result = summarise(t.GetOutputJson())
		}
		host := t.GetHostname()
		if t.GetAccount() != "" {
			host += " (" + t.GetAccount() + "/" + t.GetRegion() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(host), clean(t.GetAgentId()), apiview.EnumName(t.GetStatus()), d, clean(result))
	}
	_ = tw.Flush()
	for _, a := range r.GetApprovals() {
		verb := "approved"
		if !a.GetApproved() {
			verb = "rejected"
		}
		fmt.Fprintf(g.out, "%s by %s at %s %s\n", verb, clean(a.GetOperator()), a.GetAt().AsTime().Local().Format(time.RFC3339), clean(a.GetComment()))
	}
}

// summarise renders a JSON result on one line for the table.
func summarise(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return clipText(string(b), 100)
	}
	s := string(b)
	return clipText(s, 100)
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func (g *Globals) printPlan(r *operatorv1.Run) error {
	approval := r.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
	if g.json {
		type target struct {
			AgentID  string `json:"agent_id"`
			Hostname string `json:"hostname"`
			Account  string `json:"account,omitempty"`
			Region   string `json:"region,omitempty"`
		}
		ts := []target{}
		for _, t := range r.GetTasks() {
			ts = append(ts, target{t.GetAgentId(), t.GetHostname(), t.GetAccount(), t.GetRegion()})
		}
		return g.PrintJSON(map[string]any{"dry_run": true, "action": r.GetAction(), "params": json.RawMessage(orNull(r.GetParamsJson())),
			"targets": ts, "destructive": r.GetDestructive(), "approval_required": approval})
	}
	fmt.Fprintf(g.out, "DRY RUN: %s would run on %d targets with %s (nothing was changed)\n", r.GetAction(), len(r.GetTasks()), orNull(r.GetParamsJson()))
	if approval {
		fmt.Fprintln(g.out, "it is destructive and over the approval threshold: a second operator would have to approve it")
	}
	tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tAGENT")
	for _, t := range r.GetTasks() {
		fmt.Fprintf(tw, "%s\t%s\n", clean(t.GetHostname()), clean(t.GetAgentId()))
	}
	return tw.Flush()
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// NewRunsCmd is `firebreak runs`: list and show runs.
func NewRunsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "List and inspect runs"}
	var limit uint32
	list := &cobra.Command{
		Use:   "list",
		Short: "List recent runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: limit})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				out := []runJSON{}
				for _, r := range resp.GetRuns() {
					j := toRunJSON(r)
					j.Results = nil
					out = append(out, j)
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tACTION\tSTATUS\tTARGETS\tOK\tFAILED\tBY\tCREATED")
			for _, r := range resp.GetRuns() {
				c := r.GetCounts()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.GetId(), r.GetAction(), apiview.EnumName(r.GetStatus()), c.GetTargets(), c.GetSucceeded(),
					c.GetFailed(), r.GetCreatedBy(), r.GetCreatedAt().AsTime().Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().Uint32Var(&limit, "limit", 50, "most runs to show")
	var wait bool
	show := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show a run and its per-target results",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			if wait {
				r, err := g.follow(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				return g.report(r)
			}
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			resp, err := c.op.GetRun(ctx, &operatorv1.GetRunRequest{RunId: args[0]})
			if err != nil {
				return rpcError(err)
			}
			return g.report(resp.GetRun())
		},
	}
	show.Flags().BoolVar(&wait, "wait", false, "follow the run to its end")
	cmd.AddCommand(list, show)
	return cmd
}

// NewApproveCmd is `firebreak approve`: the second operator's approval.
func NewApproveCmd(g *Globals) *cobra.Command { return newDecideCmd(g, true) }

// NewRejectCmd is `firebreak reject`: a run awaiting approval is cancelled.
func NewRejectCmd(g *Globals) *cobra.Command { return newDecideCmd(g, false) }

// newDecideCmd builds approve or reject.
func newDecideCmd(g *Globals, approve bool) *cobra.Command {
	use, short := "approve RUN_ID", "Approve a run that awaits a second operator"
	if !approve {
		use, short = "reject RUN_ID", "Reject a run that awaits approval; it is cancelled"
	}
	var comment string
	var wait bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var r *operatorv1.Run
			if approve {
				resp, err := c.op.ApproveRun(ctx, &operatorv1.ApproveRunRequest{RunId: args[0], Comment: comment})
				if err != nil {
					return rpcError(err)
				}
				r = resp.GetRun()
			} else {
				resp, err := c.op.RejectRun(ctx, &operatorv1.RejectRunRequest{RunId: args[0], Comment: comment})
				if err != nil {
					return rpcError(err)
				}
				r = resp.GetRun()
			}
			if approve && wait {
				final, err := g.follow(cmd.Context(), c, r.GetId())
				if err != nil {
					return err
				}
				return g.report(final)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"run_id": r.GetId(), "status": apiview.EnumName(r.GetStatus())})
			}
			fmt.Fprintf(g.out, "run %s is now %s\n", r.GetId(), apiview.EnumName(r.GetStatus()))
			return nil
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "comment recorded with the decision")
	if approve {
		cmd.Flags().BoolVar(&wait, "wait", false, "follow the approved run to its end")
	}
	return cmd
}

// NewCancelCmd is `firebreak cancel`.
func NewCancelCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a run: tasks not started are cancelled, running ones are asked to stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.CancelRun(ctx, &operatorv1.CancelRunRequest{RunId: args[0], Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"run_id": resp.GetRun().GetId(), "status": apiview.EnumName(resp.GetRun().GetStatus())})
			}
			fmt.Fprintf(g.out, "run %s cancelled\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	return cmd
}
