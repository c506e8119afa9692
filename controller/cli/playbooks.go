package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func (c *client) playbooks() operatorv1.PlaybookServiceClient {
	return operatorv1.NewPlaybookServiceClient(c.conn)
}

func (c *client) cases() operatorv1.CaseServiceClient { return operatorv1.NewCaseServiceClient(c.conn) }

// NewPlaybookCmd is `firebreak playbook`: validate, list and run playbooks.
func NewPlaybookCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "playbook",
		Short: "Validate, list and run playbooks",
		Long: `Playbooks are versioned YAML graphs of steps, each step one run of a response
action, with targets, parameters, conditions, approvals, timeouts, failure
policies and rollbacks (see docs/playbooks.md). The controller knows the
built-in playbooks and the files of its --playbook-dir.

Exit codes: 0 ok · 1 error · 2 usage or invalid playbook · 3 the playbook run
failed or was rolled back · 4 it awaits approval · 5 it was rejected or
cancelled.`,
	}
	cmd.AddCommand(newPlaybookValidateCmd(g), newPlaybookListCmd(g), newPlaybookRunCmd(g), newPlaybookRunsCmd(g), newPlaybookShowCmd(g),
		newPlaybookDecideCmd(g, true), newPlaybookDecideCmd(g, false), newPlaybookCancelCmd(g))
	return cmd
}

type problemJSON struct {
	File    string `json:"file"`
	Line    uint32 `json:"line"`
	Column  uint32 `json:"column"`
	Message string `json:"message"`
}

func problemText(p *operatorv1.PlaybookProblem) string {
	if p.GetLine() == 0 {
		return fmt.Sprintf("%s: %s", p.GetFile(), p.GetMessage())
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.GetFile(), p.GetLine(), p.GetColumn(), p.GetMessage())
}

func newPlaybookValidateCmd(g *Globals) *cobra.Command {
	var offline bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a playbook file; print each problem as file:line:column; exit 2 when invalid",
		Long: `Check a playbook file: its structure, inputs, the needs graph (cycles, unknown
steps), phases, every CEL expression (typed against the inputs, the finding
and earlier steps' outputs), and each step's action and parameters against
the controller's action catalogue (never an agent's description). With --offline (or without an
operator credential) the file is checked without a controller: actions and
their parameters are not checked.`,
		Example: `  firebreak playbook validate my-playbook.yaml
  firebreak playbook validate --offline my-playbook.yaml --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readLimited(args[0], playbook.MaxFileSize)
			if err != nil {
				return err
			}
			var probs []*operatorv1.PlaybookProblem
			checked := "the fleet's actions"
			if offline || g.creds == "" {
				checked = "no action catalogue (offline: actions and parameters not checked)"
				_, errs := playbook.Load(args[0], data, nil)
				for _, e := range errs {
					probs = append(probs, &operatorv1.PlaybookProblem{File: e.File, Line: uint32(max(e.Pos.Line, 0)),
						Column: uint32(max(e.Pos.Column, 0)), Message: e.Msg})
				}
			} else {
				c, ctx, done, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer done()
				resp, err := c.playbooks().ValidatePlaybook(ctx, &operatorv1.ValidatePlaybookRequest{Filename: args[0], Content: data})
				if err != nil {
					return rpcError(err)
				}
				probs = resp.GetProblems()
			}
			if g.json {
				out := []problemJSON{}
				for _, p := range probs {
					out = append(out, problemJSON{p.GetFile(), p.GetLine(), p.GetColumn(), p.GetMessage()})
				}
				if err := g.PrintJSON(map[string]any{"file": args[0], "valid": len(probs) == 0, "checked_against": checked, "problems": out}); err != nil {
					return err
				}
			} else {
				for _, p := range probs {
					fmt.Fprintln(g.out, problemText(p))
				}
				if len(probs) == 0 {
					fmt.Fprintf(g.out, "%s: valid (checked against %s)\n", args[0], checked)
				}
			}
			if len(probs) > 0 {
				return ExitWith(ExitUsage, fmt.Errorf("%s: %d problem(s)", args[0], len(probs)))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "check without a controller (actions and parameters are not checked)")
	return cmd
}

// readLimited reads a file ("-" for standard input) of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, ExitWith(ExitUsage, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ExitWith(ExitUsage, fmt.Errorf("%s is larger than %d bytes", path, limit))
	}
	return data, nil
}

func newPlaybookListCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the playbooks the controller knows, and whether the fleet can run them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.playbooks().ListPlaybooks(ctx, &operatorv1.ListPlaybooksRequest{})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type input struct {
					Name     string          `json:"name"`
					Type     string          `json:"type"`
					Required bool            `json:"required"`
					Default  json.RawMessage `json:"default,omitempty"`
				}
				type pbJSON struct {
					Name        string        `json:"name"`
					Version     uint32        `json:"version"`
					Description string        `json:"description"`
					Source      string        `json:"source"`
					Steps       []string      `json:"steps"`
					Inputs      []input       `json:"inputs"`
					Runnable    bool          `json:"runnable"`
					Problems    []problemJSON `json:"problems"`
				}
				out := []pbJSON{}
				for _, p := range resp.GetPlaybooks() {
					j := pbJSON{Name: p.GetName(), Version: p.GetVersion(), Description: p.GetDescription(), Source: p.GetSource(),
						Steps: []string{}, Inputs: []input{}, Runnable: len(p.GetProblems()) == 0, Problems: []problemJSON{}}
					for _, s := range p.GetSteps() {
						j.Steps = append(j.Steps, s.GetId())
					}
					for _, in := range p.GetInputs() {
						j.Inputs = append(j.Inputs, input{in.GetName(), in.GetType(), in.GetRequired(), in.GetDefaultJson()})
					}
					for _, pr := range p.GetProblems() {
						j.Problems = append(j.Problems, problemJSON{pr.GetFile(), pr.GetLine(), pr.GetColumn(), pr.GetMessage()})
					}
					out = append(out, j)
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTEPS\tINPUTS\tSOURCE\tRUNNABLE")
			for _, p := range resp.GetPlaybooks() {
				var ins []string
				for _, in := range p.GetInputs() {
					n := in.GetName()
					if in.GetRequired() {
						n += "*"
					}
					ins = append(ins, n)
				}
				runnable := "yes"
				if len(p.GetProblems()) > 0 {
					runnable = "no: " + clipText(p.GetProblems()[0].GetMessage(), 80)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", p.GetName(), p.GetVersion(), len(p.GetSteps()), strings.Join(ins, ","), p.GetSource(), runnable)
			}
			return tw.Flush()
		},
	}
}

func newPlaybookRunCmd(g *Globals) *cobra.Command {
	var inputs []string
	var caseID, reason string
	var dryRun, wait bool
	cmd := &cobra.Command{
		Use:   "run NAME --input k=v...",
		Short: "Run a playbook for a case (a new one unless --case is given)",
		Long: `Start a playbook. Without --case a new case is opened for it. With --dry-run
the resolved plan is printed (steps in order, targets, parameters, and the
fields that wait for earlier steps' outputs) and nothing changes. With --wait
the command follows the playbook run to its end, showing each step as it
starts, waits for approval and ends; the exit code then says how it ended.`,
		Example: `  firebreak playbook run ec2-instance-compromise --input instance_id=i-0a1b2c3d4e5f67890 --input account=111122223333 --dry-run
  firebreak playbook run ec2-instance-compromise --input instance_id=i-0a1b2c3d4e5f67890 --case case-… --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := parseKV("input", inputs)
			if err != nil {
				return err
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.ctx(cmd.Context())
			resp, err := c.playbooks().StartPlaybookRun(ctx, &operatorv1.StartPlaybookRunRequest{Playbook: args[0], Inputs: in, CaseId: caseID,
				DryRun: dryRun, Reason: reason})
			cancel()
			if err != nil {
				return rpcError(err)
			}
			if dryRun {
				return g.printPlaybookPlan(resp.GetPlanJson())
			}
			r := resp.GetRun()
			if !wait {
				if g.json {
					return g.PrintJSON(toPlaybookRunJSON(r))
				}
				fmt.Fprintln(g.out, r.GetId())
				if r.GetStatus() == operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_AWAITING_APPROVAL {
					return ExitWith(ExitAwaitingApproval, fmt.Errorf("playbook run %s awaits approval: firebreak playbook approve %s", r.GetId(), r.GetId()))
				}
				fmt.Fprintf(g.errOut, "playbook run %s of %s started for case %s; follow it with: firebreak playbook show %s --wait\n",
					r.GetId(), r.GetPlaybook(), r.GetCaseId(), r.GetId())
				return nil
			}
			if !g.json {
				fmt.Fprintf(g.errOut, "playbook run %s: %s v%d for case %s\n", r.GetId(), r.GetPlaybook(), r.GetVersion(), r.GetCaseId())
			}
			final, err := g.followPlaybook(cmd.Context(), c, r.GetId())
			if err != nil {
				return err
			}
			return g.reportPlaybook(final)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&inputs, "input", nil, "playbook input name=value (repeatable; a list input takes comma-separated values or several --input)")
	f.StringVar(&caseID, "case", "", "case to run the playbook for (default: open a new case)")
	f.StringVar(&reason, "reason", "", "why, for the case timeline and the audit log")
	f.BoolVar(&dryRun, "dry-run", false, "print the resolved plan and change nothing")
	f.BoolVar(&wait, "wait", false, "follow the playbook run to its end with live step progress")
	return cmd
}

func (g *Globals) printPlaybookPlan(b []byte) error {
	if g.json {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		return g.PrintJSON(map[string]any{"dry_run": true, "plan": v})
	}
	var plan playbook.Plan
	if err := json.Unmarshal(b, &plan); err != nil {
		return err
	}
	fmt.Fprintf(g.out, "DRY RUN: playbook %s v%d, %d steps (nothing was changed)\n\n", plan.Playbook, plan.Version, len(plan.Steps))
	tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tSTEP\tPHASE\tACTION\tTARGETS\tPARAMS\tNOTES")
	for _, s := range plan.Steps {
		target := s.Selector
		if s.Accounts != "" {
			target = "accounts=" + s.Accounts
			if len(s.Regions) > 0 {
				target += " regions=" + strings.Join(s.Regions, ",")
			}
		}
		params := []byte("-")
		if len(s.Params) > 0 {
			params, _ = json.Marshal(s.Params)
		}
		var notes []string
		if s.Skip {
			notes = append(notes, "skipped (when is false)")
		}
		if s.ApprovalRequired {
			notes = append(notes, "approval required")
		}
		if s.Destructive {
			notes = append(notes, "destructive")
		}
		notes = append(notes, "on_failure "+string(s.OnFailure))
		if s.Rollback != nil {
			notes = append(notes, "rollback "+s.Rollback.Action)
		}
		if len(s.Pending) > 0 {
			notes = append(notes, "pending: "+strings.Join(s.Pending, ","))
		}
		if s.Error != "" {
			notes = append(notes, "ERROR: "+s.Error)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Layer, s.ID, s.Phase, s.Action, clean(target), clean(string(params)), clean(strings.Join(notes, "; ")))
	}
	return tw.Flush()
}

// followPlaybook watches a playbook run to its end. On a terminal (and
// without --json) it prints each step change as it happens. A dropped
// watch is resumed with a fresh snapshot.
func (g *Globals) followPlaybook(ctx context.Context, c *client, id string) (*operatorv1.PlaybookRun, error) {
	live := !g.json && isTerminal(g.progressOut())
	seen := map[string]string{}
	step := func(s *operatorv1.PlaybookStep) {
		if !live {
			return
		}
		phase := phaseName(s.GetPhase())
		now := time.Now().Format("15:04:05")
		// A step whose run is still being created shows once it has one.
		key := apiview.EnumName(s.GetStatus()) + "/" + s.GetRunId()
		if seen[s.GetId()] != key && !(s.GetStatus() == operatorv1.StepStatus_STEP_STATUS_RUNNING && s.GetRunId() == "") {
			seen[s.GetId()] = key
			switch s.GetStatus() {
			case operatorv1.StepStatus_STEP_STATUS_RUNNING:
				fmt.Fprintf(g.errOut, "%s  ▶ %s (%s) %s running: run %s\n", now, s.GetId(), phase, s.GetAction(), s.GetRunId())
			case operatorv1.StepStatus_STEP_STATUS_AWAITING_APPROVAL:
				fmt.Fprintf(g.errOut, "%s  ⏸ %s (%s) awaits approval: firebreak approve %s\n", now, s.GetId(), phase, s.GetRunId())
			case operatorv1.StepStatus_STEP_STATUS_SUCCEEDED:
				fmt.Fprintf(g.errOut, "%s  ✔ %s (%s) succeeded on %d/%d targets\n", now, s.GetId(), phase, s.GetCounts().GetSucceeded(), s.GetCounts().GetTargets())
			case operatorv1.StepStatus_STEP_STATUS_FAILED:
				fmt.Fprintf(g.errOut, "%s  ✖ %s (%s) failed: %s\n", now, s.GetId(), phase, clean(s.GetError()))
			case operatorv1.StepStatus_STEP_STATUS_SKIPPED:
				fmt.Fprintf(g.errOut, "%s  · %s (%s) skipped: %s\n", now, s.GetId(), phase, clean(s.GetError()))
			case operatorv1.StepStatus_STEP_STATUS_CANCELLED:
				fmt.Fprintf(g.errOut, "%s  ∅ %s (%s) cancelled: %s\n", now, s.GetId(), phase, clean(s.GetError()))
			}
		}
		rb := s.GetRollback()
		if rb == nil {
			return
		}
		rbKey := apiview.EnumName(rb.GetStatus())
		if seen[s.GetId()+"/rollback"] == rbKey {
			return
		}
		seen[s.GetId()+"/rollback"] = rbKey
		if rb.GetStatus() == operatorv1.StepStatus_STEP_STATUS_RUNNING {
			fmt.Fprintf(g.errOut, "%s  ↶ %s rolling back\n", now, s.GetId())
			return
		}
		fmt.Fprintf(g.errOut, "%s  ↶ %s rollback (%s) %s %s\n", now, s.GetId(), rb.GetAction(), rbKey, clean(rb.GetError()))
	}
	for attempt := 0; ; attempt++ {
		stream, err := c.playbooks().WatchPlaybookRun(ctx, &operatorv1.WatchPlaybookRunRequest{PlaybookRunId: id})
		if err != nil {
			return nil, rpcError(err)
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the controller closed the watch before the playbook run ended")
			}
			if err != nil {
				if st, ok := status.FromError(err); ok && (st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) && attempt < 30 && ctx.Err() == nil {
					time.Sleep(time.Second)
					break
				}
				return nil, rpcError(err)
			}
			switch e := m.GetEvent().(type) {
			case *operatorv1.WatchPlaybookRunResponse_Snapshot:
				if live && e.Snapshot.GetStatus() == operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_AWAITING_APPROVAL {
					fmt.Fprintf(g.errOut, "the playbook run awaits approval: firebreak playbook approve %s\n", id)
				}
				for _, s := range e.Snapshot.GetSteps() {
					step(s)
				}
			case *operatorv1.WatchPlaybookRunResponse_Step:
				step(e.Step)
			case *operatorv1.WatchPlaybookRunResponse_Run:
				// Step failures are shown with their step; a cancellation is
				// news of its own.
				if live && strings.HasPrefix(e.Run.GetError(), "cancelled by") {
					fmt.Fprintf(g.errOut, "%s  ! %s\n", time.Now().Format("15:04:05"), clean(e.Run.GetError()))
				}
			case *operatorv1.WatchPlaybookRunResponse_Done:
				// The controller ends the stream after Done; reading to its end
				// closes the call (and its span, the parent of the controller's)
				// with OK, instead of leaving it unended and unexported.
				_, _ = stream.Recv()
				return e.Done, nil
			}
		}
	}
}

// playbookStepJSON is one step in the --json output.
type playbookStepJSON struct {
	ID          string          `json:"id"`
	Phase       string          `json:"phase"`
	Action      string          `json:"action"`
	Status      string          `json:"status"`
	RunID       string          `json:"run_id,omitempty"`
	Error       string          `json:"error,omitempty"`
	Targets     uint32          `json:"targets"`
	Succeeded   uint32          `json:"succeeded"`
	Outputs     json.RawMessage `json:"outputs,omitempty"`
	EvidenceIDs []string        `json:"evidence_ids,omitempty"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	Rollback    *rollbackJSON   `json:"rollback,omitempty"`
}

type rollbackJSON struct {
	Status string   `json:"status"`
	Action string   `json:"action"`
	RunIDs []string `json:"run_ids"`
	Error  string   `json:"error,omitempty"`
}

// playbookRunJSON is the --json contract of the playbook run commands.
type playbookRunJSON struct {
	ID         string             `json:"playbook_run_id"`
	Playbook   string             `json:"playbook"`
	Version    uint32             `json:"version"`
	CaseID     string             `json:"case_id"`
	Status     string             `json:"status"`
	Error      string             `json:"error,omitempty"`
	CreatedBy  string             `json:"created_by"`
	ApprovedBy string             `json:"approved_by,omitempty"`
	Rule       string             `json:"rule,omitempty"`
	FindingID  string             `json:"finding_id,omitempty"`
	CreatedAt  *time.Time         `json:"created_at,omitempty"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
	Steps      []playbookStepJSON `json:"steps"`
}

func toPlaybookRunJSON(r *operatorv1.PlaybookRun) playbookRunJSON {
	out := playbookRunJSON{ID: r.GetId(), Playbook: r.GetPlaybook(), Version: r.GetVersion(), CaseID: r.GetCaseId(),
		Status: apiview.EnumName(r.GetStatus()), Error: r.GetError(), CreatedBy: r.GetCreatedBy(), ApprovedBy: r.GetApprovedBy(),
		Rule: r.GetRule(), FindingID: r.GetFindingId(), CreatedAt: apiview.Time(r.GetCreatedAt()),
		FinishedAt: apiview.Time(r.GetFinishedAt()), Steps: []playbookStepJSON{}}
	for _, s := range r.GetSteps() {
		j := playbookStepJSON{ID: s.GetId(), Phase: phaseName(s.GetPhase()), Action: s.GetAction(), Status: apiview.EnumName(s.GetStatus()),
			RunID: s.GetRunId(), Error: s.GetError(), Targets: s.GetCounts().GetTargets(), Succeeded: s.GetCounts().GetSucceeded(),
			Outputs: s.GetOutputsJson(), EvidenceIDs: s.GetEvidenceIds(), StartedAt: apiview.Time(s.GetStartedAt()),
			FinishedAt: apiview.Time(s.GetFinishedAt())}
		if len(j.Outputs) == 0 {
			j.Outputs = nil
		}
		if rb := s.GetRollback(); rb != nil {
			j.Rollback = &rollbackJSON{Status: apiview.EnumName(rb.GetStatus()), Action: rb.GetAction(), RunIDs: rb.GetRunIds(), Error: rb.GetError()}
			if j.Rollback.RunIDs == nil {
				j.Rollback.RunIDs = []string{}
			}
		}
		out.Steps = append(out.Steps, j)
	}
	return out
}

// reportPlaybook prints a playbook run and returns the exit code its
// status means.
func (g *Globals) reportPlaybook(r *operatorv1.PlaybookRun) error {
	if g.json {
		if err := g.PrintJSON(toPlaybookRunJSON(r)); err != nil {
			return err
		}
	} else {
		g.printPlaybookRun(r)
	}
	switch r.GetStatus() {
	case operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_SUCCEEDED, operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_RUNNING:
		return nil
	case operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_AWAITING_APPROVAL:
		return ExitWith(ExitAwaitingApproval, nil)
	case operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_REJECTED, operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_CANCELLED:
		return ExitWith(ExitRejected, fmt.Errorf("playbook run %s was %s", r.GetId(), apiview.EnumName(r.GetStatus())))
	}
	return ExitWith(ExitRunFailed, fmt.Errorf("playbook run %s %s: %s", r.GetId(), strings.ReplaceAll(apiview.EnumName(r.GetStatus()), "_", " "), clean(r.GetError())))
}

func (g *Globals) printPlaybookRun(r *operatorv1.PlaybookRun) {
	fmt.Fprintf(g.out, "playbook run %s  %s v%d  %s  case %s  by %s\n", r.GetId(), r.GetPlaybook(), r.GetVersion(),
		strings.ToUpper(apiview.EnumName(r.GetStatus())), r.GetCaseId(), r.GetCreatedBy())
	if r.GetError() != "" {
		fmt.Fprintf(g.out, "%s\n", clean(r.GetError()))
	}
	fmt.Fprintln(g.out)
	tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tPHASE\tACTION\tSTATUS\tRUN\tTARGETS\tTIME\tRESULT")
	for _, s := range r.GetSteps() {
		d := "-"
		if s.GetStartedAt() != nil && s.GetFinishedAt() != nil {
			d = s.GetFinishedAt().AsTime().Sub(s.GetStartedAt().AsTime()).Round(time.Millisecond).String()
		}
		targets := "-"
		if c := s.GetCounts(); c != nil {
			targets = fmt.Sprintf("%d/%d", c.GetSucceeded(), c.GetTargets())
		}
		result := s.GetError()
		if result == "" {
			result = summarise(s.GetOutputsJson())
		}
		if rb := s.GetRollback(); rb != nil {
			result = fmt.Sprintf("rolled back (%s, %s) %s", rb.GetAction(), apiview.EnumName(rb.GetStatus()), result)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.GetId(), phaseName(s.GetPhase()), s.GetAction(),
			apiview.EnumName(s.GetStatus()), orDash(s.GetRunId()), targets, d, clipText(clean(result), 100))
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newPlaybookRunsCmd(g *Globals) *cobra.Command {
	var caseID string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List playbook runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.playbooks().ListPlaybookRuns(ctx, &operatorv1.ListPlaybookRunsRequest{CaseId: caseID, Limit: limit})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				out := []playbookRunJSON{}
				for _, r := range resp.GetRuns() {
					j := toPlaybookRunJSON(r)
					j.Steps = nil
					out = append(out, j)
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "PLAYBOOK RUN\tPLAYBOOK\tSTATUS\tCASE\tBY\tCREATED")
			for _, r := range resp.GetRuns() {
				fmt.Fprintf(tw, "%s\t%s v%d\t%s\t%s\t%s\t%s\n", r.GetId(), r.GetPlaybook(), r.GetVersion(), apiview.EnumName(r.GetStatus()),
					r.GetCaseId(), r.GetCreatedBy(), r.GetCreatedAt().AsTime().Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&caseID, "case", "", "only the playbook runs of this case")
	cmd.Flags().Uint32Var(&limit, "limit", 50, "most playbook runs to show")
	return cmd
}

func newPlaybookShowCmd(g *Globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "show PLAYBOOK_RUN_ID",
		Short: "Show a playbook run and its steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			if wait {
				r, err := g.followPlaybook(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				return g.reportPlaybook(r)
			}
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			resp, err := c.playbooks().GetPlaybookRun(ctx, &operatorv1.GetPlaybookRunRequest{PlaybookRunId: args[0]})
			if err != nil {
				return rpcError(err)
			}
			return g.reportPlaybook(resp.GetRun())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the playbook run to its end")
	return cmd
}

func newPlaybookDecideCmd(g *Globals, approve bool) *cobra.Command {
	use, short := "approve PLAYBOOK_RUN_ID", "Approve a playbook run a rule proposed; it starts"
	if !approve {
		use, short = "reject PLAYBOOK_RUN_ID", "Reject a playbook run a rule proposed"
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
			var r *operatorv1.PlaybookRun
			if approve {
				resp, err := c.playbooks().ApprovePlaybookRun(ctx, &operatorv1.ApprovePlaybookRunRequest{PlaybookRunId: args[0], Comment: comment})
				if err != nil {
					return rpcError(err)
				}
				r = resp.GetRun()
			} else {
				resp, err := c.playbooks().RejectPlaybookRun(ctx, &operatorv1.RejectPlaybookRunRequest{PlaybookRunId: args[0], Comment: comment})
				if err != nil {
					return rpcError(err)
				}
				r = resp.GetRun()
			}
			if approve && wait {
				final, err := g.followPlaybook(cmd.Context(), c, r.GetId())
				if err != nil {
					return err
				}
				return g.reportPlaybook(final)
			}
			if g.json {
				return g.PrintJSON(map[string]string{"playbook_run_id": r.GetId(), "status": apiview.EnumName(r.GetStatus())})
			}
			fmt.Fprintf(g.out, "playbook run %s is now %s\n", r.GetId(), apiview.EnumName(r.GetStatus()))
			return nil
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "comment recorded on the case timeline")
	if approve {
		cmd.Flags().BoolVar(&wait, "wait", false, "follow the approved playbook run to its end")
	}
	return cmd
}

func newPlaybookCancelCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel PLAYBOOK_RUN_ID",
		Short: "Cancel a playbook run: no further step starts and the steps' runs in flight are cancelled",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.playbooks().CancelPlaybookRun(ctx, &operatorv1.CancelPlaybookRunRequest{PlaybookRunId: args[0], Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]string{"playbook_run_id": resp.GetRun().GetId(), "status": apiview.EnumName(resp.GetRun().GetStatus())})
			}
			fmt.Fprintf(g.out, "playbook run %s is being cancelled\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the case timeline and the audit log")
	return cmd
}
