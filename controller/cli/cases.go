package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// NewCaseCmd is `firebreak case`: incident cases and their reports.
func NewCaseCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "case",
		Short: "Incident cases: timeline, NIST phase, timings, notes and the post-incident report",
		Long: `A case gathers the findings, playbook runs and steps, runs, evidence,
approvals and notes of one incident on one timeline. It records the NIST
phase the incident is in (detect, analyze, contain, eradicate, recover,
post-incident) and derives time to detect, contain, eradicate and recover.
See docs/cases.md.`,
	}
	cmd.AddCommand(newCaseListCmd(g), newCaseShowCmd(g), newCaseCreateCmd(g), newCaseNoteCmd(g), newCasePhaseCmd(g), newCaseCloseCmd(g),
		newCaseReportCmd(g))
	return cmd
}

// caseJSON is the --json contract of the case commands.
type caseJSON struct {
	ID              string     `json:"case_id"`
	Title           string     `json:"title"`
	Status          string     `json:"status"`
	Phase           string     `json:"phase"`
	Severity        float64    `json:"severity"`
	SeverityLabel   string     `json:"severity_label"`
	Resource        string     `json:"resource,omitempty"`
	CreatedBy       string     `json:"created_by"`
	CreatedAt       time.Time  `json:"created_at"`
	ClosedAt        *time.Time `json:"closed_at,omitempty"`
	Findings        uint32     `json:"findings"`
	Contained       bool       `json:"contained"`
	TimeToDetectMS  *int64     `json:"time_to_detect_ms,omitempty"`
	TimeToContainMS *int64     `json:"time_to_contain_ms,omitempty"`
	TimeToEradicate *int64     `json:"time_to_eradicate_ms,omitempty"`
	TimeToRecoverMS *int64     `json:"time_to_recover_ms,omitempty"`
}

func msOf(d interface{ AsDuration() time.Duration }, ok bool) *int64 {
	if !ok {
		return nil
	}
	v := d.AsDuration().Milliseconds()
	return &v
}

func toCaseJSON(c *operatorv1.Case) caseJSON {
	t := c.GetTimings()
	out := caseJSON{ID: c.GetId(), Title: c.GetTitle(), Status: apiview.EnumName(c.GetStatus()),
		Phase: phaseName(c.GetPhase()), Severity: c.GetSeverity(), SeverityLabel: c.GetSeverityLabel(), Resource: c.GetResource(),
		CreatedBy: c.GetCreatedBy(), CreatedAt: c.GetCreatedAt().AsTime(), Findings: c.GetFindings(), Contained: c.GetContained(),
		TimeToDetectMS: msOf(t.GetTimeToDetect(), t.GetTimeToDetect() != nil), TimeToContainMS: msOf(t.GetTimeToContain(), t.GetTimeToContain() != nil),
		TimeToEradicate: msOf(t.GetTimeToEradicate(), t.GetTimeToEradicate() != nil), TimeToRecoverMS: msOf(t.GetTimeToRecover(), t.GetTimeToRecover() != nil)}
	out.ClosedAt = apiview.Time(c.GetClosedAt())
	return out
}

// phaseName is an incident phase as the CLI shows it, spelt as in
// playbooks (detect, …, post-incident); "" for none.
func phaseName(p operatorv1.IncidentPhase) string {
	for _, ph := range playbook.Phases {
		if phaseProto(ph) == p {
			return string(ph)
		}
	}
	return ""
}

// phaseProto is a playbook phase's wire value; UNSPECIFIED for a name that
// is not a phase.
func phaseProto(ph playbook.Phase) operatorv1.IncidentPhase {
	n, _ := apiview.ParseEnum(operatorv1.IncidentPhase(0).Descriptor(), strings.ReplaceAll(string(ph), "-", "_"))
	return operatorv1.IncidentPhase(n)
}

// kindName is a timeline entry's kind as the CLI shows it; "unknown" for
// none or one this CLI does not know.
func kindName(k operatorv1.TimelineKind) string {
	if k == operatorv1.TimelineKind_TIMELINE_KIND_UNSPECIFIED || k.Descriptor().Values().ByNumber(k.Number()) == nil {
		return "unknown"
	}
	return apiview.EnumName(k)
}

func durText(d interface{ AsDuration() time.Duration }, ok bool) string {
	if !ok {
		return "—"
	}
	return d.AsDuration().Round(time.Millisecond).String()
}

func newCaseListCmd(g *Globals) *cobra.Command {
	var all bool
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List open cases (--all: closed ones too), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().ListCases(ctx, &operatorv1.ListCasesRequest{IncludeClosed: all, Limit: limit})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				out := []caseJSON{}
				for _, cs := range resp.GetCases() {
					out = append(out, toCaseJSON(cs))
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tSTATUS\tPHASE\tSEVERITY\tFINDINGS\tCONTAINED IN\tOPENED\tTITLE")
			for _, cs := range resp.GetCases() {
				ttc := cs.GetTimings().GetTimeToContain()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", cs.GetId(), toCaseJSON(cs).Status, phaseName(cs.GetPhase()),
					cs.GetSeverityLabel(), cs.GetFindings(), durText(ttc, ttc != nil), cs.GetCreatedAt().AsTime().Local().Format(time.RFC3339),
					clipText(clean(cs.GetTitle()), 80))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include closed cases")
	cmd.Flags().Uint32Var(&limit, "limit", 100, "most cases to show")
	return cmd
}

func newCaseShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show CASE_ID",
		Short: "Show a case: its phase, timings, findings and timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().GetCase(ctx, &operatorv1.GetCaseRequest{CaseId: args[0]})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				type entryJSON struct {
					Seq           uint64          `json:"seq"`
					At            time.Time       `json:"at"`
					Kind          string          `json:"kind"`
					Phase         string          `json:"phase,omitempty"`
					Status        string          `json:"status,omitempty"`
					Actor         string          `json:"actor"`
					Summary       string          `json:"summary"`
					PlaybookRunID string          `json:"playbook_run_id,omitempty"`
					StepID        string          `json:"step_id,omitempty"`
					RunID         string          `json:"run_id,omitempty"`
					FindingID     string          `json:"finding_id,omitempty"`
					EvidenceIDs   []string        `json:"evidence_ids,omitempty"`
					Detail        json.RawMessage `json:"detail,omitempty"`
				}
				out := struct {
					caseJSON
					FindingsList []json.RawMessage `json:"finding_list"`
					Timeline     []entryJSON       `json:"timeline"`
				}{caseJSON: toCaseJSON(resp.GetCase()), FindingsList: []json.RawMessage{}, Timeline: []entryJSON{}}
				for _, f := range resp.GetFindings() {
					out.FindingsList = append(out.FindingsList, f.GetFindingJson())
				}
				for _, e := range resp.GetTimeline() {
					j := entryJSON{Seq: e.GetSeq(), At: e.GetAt().AsTime(), Kind: kindName(e.GetKind()), Phase: phaseName(e.GetPhase()),
						Status: e.GetStatus(), Actor: e.GetActor(), Summary: e.GetSummary(), PlaybookRunID: e.GetPlaybookRunId(), StepID: e.GetStepId(),
						RunID: e.GetRunId(), FindingID: e.GetFindingId(), EvidenceIDs: e.GetEvidenceIds()}
					if len(e.GetDetailJson()) > 0 {
						j.Detail = e.GetDetailJson()
					}
					out.Timeline = append(out.Timeline, j)
				}
				return g.PrintJSON(out)
			}
			cs := resp.GetCase()
			cj := toCaseJSON(cs)
			fmt.Fprintf(g.out, "case %s  %s  phase %s  severity %s (%.1f)\n", cs.GetId(), strings.ToUpper(cj.Status), cj.Phase, cs.GetSeverityLabel(), cs.GetSeverity())
			fmt.Fprintf(g.out, "title:     %s\n", clean(cs.GetTitle()))
			if cs.GetResource() != "" {
				fmt.Fprintf(g.out, "resource:  %s\n", clean(cs.GetResource()))
			}
			fmt.Fprintf(g.out, "opened:    %s by %s\n", cs.GetCreatedAt().AsTime().Local().Format(time.RFC3339), clean(cs.GetCreatedBy()))
			if cs.GetClosedAt() != nil {
				fmt.Fprintf(g.out, "closed:    %s by %s\n", cs.GetClosedAt().AsTime().Local().Format(time.RFC3339), clean(cs.GetClosedBy()))
			}
			t := cs.GetTimings()
			fmt.Fprintf(g.out, "timings:   detect %s · contain %s · eradicate %s · recover %s\n", durText(t.GetTimeToDetect(), t.GetTimeToDetect() != nil),
				durText(t.GetTimeToContain(), t.GetTimeToContain() != nil), durText(t.GetTimeToEradicate(), t.GetTimeToEradicate() != nil),
				durText(t.GetTimeToRecover(), t.GetTimeToRecover() != nil))
			fmt.Fprintf(g.out, "contained: %v\n\n", cs.GetContained())
			if len(resp.GetFindings()) > 0 {
				fmt.Fprintln(g.out, "FINDINGS")
				tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "RECEIVED\tSOURCE\tTYPE\tSEVERITY\tRULE\tPLAYBOOK RUN\tID")
				for _, f := range resp.GetFindings() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s %.1f\t%s\t%s\t%s\n", f.GetReceivedAt().AsTime().Local().Format(time.RFC3339), f.GetSource(),
						clean(f.GetType()), f.GetSeverityLabel(), f.GetSeverity(), orDash(f.GetRule()), orDash(f.GetPlaybookRunId()), clipText(clean(f.GetId()), 48))
				}
				_ = tw.Flush()
				fmt.Fprintln(g.out)
			}
			fmt.Fprintln(g.out, "TIMELINE")
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tPHASE\tSTATUS\tACTOR\tEVENT")
			for _, e := range resp.GetTimeline() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetAt().AsTime().Local().Format("2006-01-02 15:04:05.000"), kindName(e.GetKind()),
					orDash(phaseName(e.GetPhase())), orDash(e.GetStatus()), clean(e.GetActor()), clipText(clean(e.GetSummary()), 140))
			}
			return tw.Flush()
		},
	}
}

func newCaseCreateCmd(g *Globals) *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   "create TITLE",
		Short: "Open a case by hand, for an incident that did not start with a finding",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().CreateCase(ctx, &operatorv1.CreateCaseRequest{Title: args[0], Note: note})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toCaseJSON(resp.GetCase()))
			}
			fmt.Fprintln(g.out, resp.GetCase().GetId())
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "first note on the timeline")
	return cmd
}

func newCaseNoteCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "note CASE_ID TEXT",
		Short: "Add a note to a case's timeline",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().AddNote(ctx, &operatorv1.AddNoteRequest{CaseId: args[0], Text: args[1]})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(map[string]any{"case_id": args[0], "seq": resp.GetEntry().GetSeq(), "at": resp.GetEntry().GetAt().AsTime()})
			}
			fmt.Fprintf(g.out, "note added to case %s\n", args[0])
			return nil
		},
	}
}

func newCasePhaseCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "phase CASE_ID PHASE",
		Short: "Move a case to a NIST phase: detect, analyze, contain, eradicate, recover or post-incident",
		Long: `Move a case to a phase, for work done outside Firebreak (a rebuilt instance,
rotated credentials). Playbook steps move a case forward on their own; this
command may also move it back.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			phase := operatorv1.IncidentPhase_INCIDENT_PHASE_UNSPECIFIED
			for _, p := range playbook.Phases {
				if string(p) == args[1] {
					phase = phaseProto(p)
				}
			}
			if phase == operatorv1.IncidentPhase_INCIDENT_PHASE_UNSPECIFIED {
				return ExitWith(ExitUsage, fmt.Errorf("phase %q: want detect, analyze, contain, eradicate, recover or post-incident", args[1]))
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().SetPhase(ctx, &operatorv1.SetPhaseRequest{CaseId: args[0], Phase: phase, Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toCaseJSON(resp.GetCase()))
			}
			fmt.Fprintf(g.out, "case %s is in the %s phase\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the timeline")
	return cmd
}

func newCaseCloseCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "close CASE_ID",
		Short: "Close a case: it moves to post-incident and takes no new findings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().CloseCase(ctx, &operatorv1.CloseCaseRequest{CaseId: args[0], Reason: reason})
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				return g.PrintJSON(toCaseJSON(resp.GetCase()))
			}
			fmt.Fprintf(g.out, "case %s closed; write the lessons learned: firebreak case report %s\n", args[0], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the timeline")
	return cmd
}

func newCaseReportCmd(g *Globals) *cobra.Command {
	var format, output string
	cmd := &cobra.Command{
		Use:   "report CASE_ID",
		Short: "Write a case's post-incident report (md, html or json)",
		Long: `Write the post-incident report: summary, timings, findings, the timeline, the
actions with their per-target results, the evidence with hashes and custody,
approvals, notes, open items and a lessons-learned section to fill in. The
HTML report is one self-contained page; every value that came from a finding
or an action's output is escaped. -o writes the report to a file (mode 0600).`,
		Example: `  firebreak case report case-… --format html -o report.html`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, err := parseReportFormat(format)
			if err != nil {
				return ExitWith(ExitUsage, err)
			}
			if g.json {
				pf = operatorv1.ReportFormat_REPORT_FORMAT_JSON
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.cases().GetReport(ctx, &operatorv1.GetReportRequest{CaseId: args[0], Format: pf})
			if err != nil {
				return rpcError(err)
			}
			if output == "" || output == "-" {
				w := g.out
				if pf == operatorv1.ReportFormat_REPORT_FORMAT_JSON {
					// JSON is escaped by the controller's encoder: kept lossless.
					w = g.rawOut()
				}
				_, err := w.Write(resp.GetContent())
				return err
			}
			if err := pki.WriteFileAtomic(output, resp.GetContent(), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "report of case %s written to %s (%d bytes)\n", args[0], output, len(resp.GetContent()))
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "md", "md, html or json")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (default: standard output)")
	return cmd
}

// parseReportFormat parses --format: md (or markdown, or empty), html or
// json.
func parseReportFormat(s string) (operatorv1.ReportFormat, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "md", "markdown":
		return operatorv1.ReportFormat_REPORT_FORMAT_MARKDOWN, nil
	case "html":
		return operatorv1.ReportFormat_REPORT_FORMAT_HTML, nil
	case "json":
		return operatorv1.ReportFormat_REPORT_FORMAT_JSON, nil
	}
	return operatorv1.ReportFormat_REPORT_FORMAT_UNSPECIFIED, fmt.Errorf("report format %q: want md, html or json", s)
}

// NewFindingsCmd is `firebreak findings`: send finding events.
func NewFindingsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "Send finding events to the controller (drills, tests)",
	}
	var url string
	send := &cobra.Command{
		Use:   "send FILE",
		Short: "Send an EventBridge finding event (GuardDuty or Security Hub) as if it had arrived from AWS",
		Long: `Send one EventBridge event — a "GuardDuty Finding" or "Security Hub Findings -
Imported" event, as JSON — through the controller's intake: it is
deduplicated, recorded on a case and matched against the rules, which may
start or propose a playbook. FILE may be - for standard input.

By default the event goes over the operator API. With --url it is posted to
the HTTPS events endpoint (controller --events-listen) with the operator's
client certificate, exactly as EventBridge would post it.`,
		Example: `  firebreak findings send guardduty-finding.json
  firebreak findings send guardduty-finding.json --url https://10.0.0.5:7444/v1/events`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readLimited(args[0], finding.MaxEventSize)
			if err != nil {
				return err
			}
			var outcomes []*operatorv1.FindingOutcome
			if url != "" {
				if outcomes, err = g.postEvent(cmd.Context(), url, data); err != nil {
					return err
				}
			} else {
				c, ctx, done, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer done()
				resp, err := c.cases().SendEvent(ctx, &operatorv1.SendEventRequest{EventJson: data})
				if err != nil {
					return rpcError(err)
				}
				outcomes = resp.GetOutcomes()
			}
			return g.printOutcomes(outcomes)
		},
	}
	send.Flags().StringVar(&url, "url", "", "post to the HTTPS events endpoint, e.g. https://HOST:PORT/v1/events (default: the operator API)")
	cmd.AddCommand(send)
	return cmd
}

// outcomeJSON is the --json contract of `findings send`.
type outcomeJSON struct {
	FindingID     string    `json:"finding_id"`
	UpdatedAt     time.Time `json:"updated_at"`
	Duplicate     bool      `json:"duplicate"`
	CaseID        string    `json:"case_id"`
	CaseCreated   bool      `json:"case_created"`
	Rule          string    `json:"rule,omitempty"`
	Playbook      string    `json:"playbook,omitempty"`
	Mode          string    `json:"mode,omitempty"`
	PlaybookRunID string    `json:"playbook_run_id,omitempty"`
	Note          string    `json:"note,omitempty"`
}

func (g *Globals) printOutcomes(outcomes []*operatorv1.FindingOutcome) error {
	if g.json {
		out := []outcomeJSON{}
		for _, o := range outcomes {
			out = append(out, outcomeJSON{o.GetFindingId(), o.GetUpdatedAt().AsTime(), o.GetDuplicate(), o.GetCaseId(), o.GetCaseCreated(),
				o.GetRule(), o.GetPlaybook(), o.GetMode(), o.GetPlaybookRunId(), o.GetNote()})
		}
		return g.PrintJSON(out)
	}
	for _, o := range outcomes {
		line := fmt.Sprintf("finding %s → case %s", clean(o.GetFindingId()), o.GetCaseId())
		switch {
		case o.GetDuplicate():
			line += " (duplicate: already received)"
		case o.GetCaseCreated():
			line += " (new case)"
		}
		switch {
		case o.GetRule() == "" && !o.GetDuplicate():
			line += "; no rule matched"
		case o.GetPlaybookRunId() != "" && o.GetMode() == "approve" && o.GetNote() == "":
			line += fmt.Sprintf("; rule %s proposed playbook %s: firebreak playbook approve %s", o.GetRule(), o.GetPlaybook(), o.GetPlaybookRunId())
		case o.GetPlaybookRunId() != "" && o.GetNote() == "":
			line += fmt.Sprintf("; rule %s started playbook %s: run %s", o.GetRule(), o.GetPlaybook(), o.GetPlaybookRunId())
		}
		if o.GetNote() != "" {
			line += "; " + clean(o.GetNote())
		}
		fmt.Fprintln(g.out, line)
	}
	return nil
}

// postEvent posts an event to the HTTPS events endpoint with the operator's
// client certificate.
func (g *Globals) postEvent(ctx context.Context, url string, data []byte) ([]*operatorv1.FindingOutcome, error) {
	if g.creds == "" {
		return nil, ExitWith(ExitUsage, errors.New("no operator credential: pass --creds FILE or set FIREBREAK_CREDS"))
	}
	creds, err := pki.LoadCreds(g.creds)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		return nil, err
	}
	tlsCfg.MinVersion = tls.VersionTLS12
	tlsCfg.NextProtos = nil
	client := &http.Client{Timeout: g.timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, ExitWith(ExitUsage, fmt.Errorf("--url %q: %w", url, err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting the event: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		code := ExitError
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge {
			code = ExitUsage
		}
		return nil, ExitWith(code, fmt.Errorf("the events endpoint answered %s: %s", resp.Status, clean(e.Error)))
	}
	var out struct {
		Outcomes []struct {
			FindingID     string    `json:"finding_id"`
			UpdatedAt     time.Time `json:"updated_at"`
			Duplicate     bool      `json:"duplicate"`
			CaseID        string    `json:"case_id"`
			CaseCreated   bool      `json:"case_created"`
			Rule          string    `json:"rule"`
			Playbook      string    `json:"playbook"`
			Mode          string    `json:"mode"`
			PlaybookRunID string    `json:"playbook_run_id"`
			Note          string    `json:"note"`
		} `json:"outcomes"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("the events endpoint's answer is not JSON: %w", err)
	}
	var res []*operatorv1.FindingOutcome
	for _, o := range out.Outcomes {
		res = append(res, &operatorv1.FindingOutcome{FindingId: o.FindingID, Duplicate: o.Duplicate, CaseId: o.CaseID, CaseCreated: o.CaseCreated,
			Rule: o.Rule, Playbook: o.Playbook, Mode: o.Mode, PlaybookRunId: o.PlaybookRunID, Note: o.Note, UpdatedAt: timestamppb.New(o.UpdatedAt)})
	}
	return res, nil
}
