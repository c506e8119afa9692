package cases

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/internal/termsafe"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// Format is a report format.
type Format string

// The report formats.
const (
	FormatMarkdown Format = "md"
	FormatHTML     Format = "html"
	FormatJSON     Format = "json"
)

// ParseFormat parses md, markdown, html or json.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "md", "markdown":
		return FormatMarkdown, nil
	case "html":
		return FormatHTML, nil
	case "json":
		return FormatJSON, nil
	}
	return "", fmt.Errorf("report format %q: want md, html or json", s)
}

// ContentType is the format's media type.
func (f Format) ContentType() string {
	switch f {
	case FormatHTML:
		return "text/html; charset=utf-8"
	case FormatJSON:
		return "application/json"
	}
	return "text/markdown; charset=utf-8"
}

// Render writes the report in a format. Markdown and HTML leave no control
// character of the case's text (escape sequences, bells, bidi overrides)
// in the page; JSON keeps every value as it is, escaped by encoding/json.
func (r *Report) Render(w io.Writer, f Format) error {
	switch f {
	case FormatHTML:
		return r.HTML(w)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatMarkdown:
		return r.Markdown(w)
	}
	return fmt.Errorf("report format %q: want md, html or json", f)
}

// mdEscaper makes text from findings and outputs inert in Markdown: no
// markup, no links, no raw HTML, and nothing that breaks a table row.
var mdEscaper = strings.NewReplacer(
	"\\", "\\\\", "`", "\\`", "*", "\\*", "_", "\\_", "[", "\\[", "]", "\\]",
	"#", "\\#", "|", "\\|", "~", "\\~",
	"&", "&amp;", "<", "&lt;", ">", "&gt;",
	"\r\n", " ", "\n", " ", "\r", " ",
)

func md(s string) string {
	return mdEscaper.Replace(termsafe.Clean(s, 0))
}

// fence returns a code fence longer than any run of backticks in s, so the
// content cannot close the block.
func fence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func fmtDur(d time.Duration, ok bool) string {
	if !ok {
		return "not reached"
	}
	return d.Round(time.Millisecond).String()
}

func indentJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// Markdown writes the report as Markdown. Every value that came from a
// finding, an output or an operator is escaped or fenced.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	c := r.Case
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Incident report: %s\n\n", md(c.Title))
	p("| | |\n|---|---|\n")
	p("| Case | %s |\n| Status | %s |\n| Phase | %s |\n| Severity | %s (%.1f) |\n", md(c.ID), md(string(c.Status)), md(string(c.Phase)), md(r.SeverityLabel), c.Severity)
	if c.Resource != "" {
		p("| Resource | %s |\n", md(c.Resource))
	}
	p("| Opened | %s by %s |\n", fmtTime(c.CreatedAt), md(c.CreatedBy))
	if !c.ClosedAt.IsZero() {
		p("| Closed | %s by %s |\n", fmtTime(c.ClosedAt), md(c.ClosedBy))
	}
	p("| Contained | %v |\n| Report generated | %s |\n\n", r.Contained, fmtTime(r.GeneratedAt))

	p("## Summary\n\n%s\n\n", md(r.Summary))

	t := c.Timings
	p("## Timings\n\n| Metric | From | To | Duration |\n|---|---|---|---|\n")
	d, ok := t.TimeToDetect()
	p("| Time to detect | %s (first seen) | %s (received) | %s |\n", fmtTime(t.FirstSeen), fmtTime(t.DetectedAt), fmtDur(d, ok))
	d, ok = t.TimeToContain()
	p("| Time to contain | %s | %s | %s |\n", fmtTime(t.DetectedAt), fmtTime(t.ContainedAt), fmtDur(d, ok))
	d, ok = t.TimeToEradicate()
	p("| Time to eradicate | %s | %s | %s |\n", fmtTime(t.DetectedAt), fmtTime(t.EradicatedAt), fmtDur(d, ok))
	d, ok = t.TimeToRecover()
	p("| Time to recover | %s | %s | %s |\n\n", fmtTime(t.DetectedAt), fmtTime(t.RecoveredAt), fmtDur(d, ok))

	p("## Findings\n\n")
	if len(r.Findings) == 0 {
		p("None: the case was opened by hand.\n\n")
	} else {
		p("| Received | Source | Type | Severity | Account / region | Resource | First seen | Rule | Playbook run |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range r.Findings {
			ff := f.Finding
			p("| %s | %s | %s | %s %.1f | %s / %s | %s | %s | %s | %s |\n", fmtTime(f.ReceivedAt), md(string(ff.Source)), md(ff.Type),
				md(ff.SeverityLabel), ff.Severity, md(ff.Account), md(ff.Region), md(f.Resource), fmtTime(ff.FirstSeen), md(orDash(f.Rule)),
				md(orDash(f.PlaybookRunID)))
		}
		p("\n")
		for _, f := range r.Findings {
			p("- **%s**: %s\n", md(f.Finding.ID), md(f.Finding.Title))
		}
		p("\n")
	}

	p("## Timeline\n\n| Time | Kind | Phase | Status | Actor | Event |\n|---|---|---|---|---|---|\n")
	for _, e := range r.Timeline {
		p("| %s | %s | %s | %s | %s | %s |\n", fmtTime(e.At), md(string(e.Kind)), md(orDash(string(e.Phase))), md(orDash(e.Status)),
			md(e.Actor), md(e.Summary))
	}
	p("\n")

	if sc := r.Scope; sc != nil {
		p("## Scope\n\n")
		p("%d events of %s (%s) in %d account(s) and %d region(s), %s → %s; runs %s.\n\n", sc.Events, md(strings.Join(sc.Keys, ", ")),
			md(strings.Join(sc.Sources, ", ")), len(sc.Accounts), len(sc.Regions), fmtTime(sc.First), fmtTime(sc.Last), md(strings.Join(sc.Runs, ", ")))
		p("| Class | Events |\n|---|---|\n")
		for _, c := range trailscope.Classes {
			if n := sc.ByClass[c]; n > 0 {
				p("| %s | %d |\n", md(string(c)), n)
			}
		}
		p("\n| Key | Minted by | Via | Account | Identity |\n|---|---|---|---|---|\n")
		for _, c := range sc.Sessions {
			via := orDash(c.Via)
			if c.Inferred {
				via += " (inferred)"
			}
			p("| %s | %s | %s | %s | %s |\n", md(c.AccessKeyID), md(orDash(c.Parent)), md(via), md(orDash(c.Account)), md(orDash(c.ARN)))
		}
		p("\n| Account | Region | Events | First | Last | Source IPs |\n|---|---|---|---|---|---|\n")
		for _, pl := range sc.Places {
			p("| %s | %s | %d | %s | %s | %s |\n", md(pl.Account), md(pl.Region), pl.Events, fmtTime(pl.First), fmtTime(pl.Last), md(strings.Join(slices.Sorted(maps.Keys(pl.SourceIPs)), ", ")))
		}
		p("\n")
		if len(sc.Artifacts) == 0 {
			p("No artifact: no write of the credential succeeded.\n\n")
		} else {
			p("| Artifact | Account | Region | Id | Flags | Event |\n|---|---|---|---|---|---|\n")
			for _, a := range sc.Artifacts {
				p("| %s | %s | %s | %s | %s | %s |\n", md(a.Kind), md(a.Account), md(a.Region), md(a.ID), md(orDash(artifactFlags(a))), md(a.EventID))
			}
			p("\n")
		}
	}

	p("## Actions and results\n\n")
	if len(r.Actions) == 0 {
		p("No action was run for this case.\n\n")
	}
	for _, a := range r.Actions {
		what := a.Action
		if a.StepID != "" {
			what = fmt.Sprintf("%s (step %s of %s", a.Action, a.StepID, a.PlaybookRunID)
			if a.Rollback {
				what += ", rollback"
			}
			what += ")"
		}
		p("### %s: %s\n\n", md(a.RunID), md(what))
		p("%s · phase %s · by %s · %s → %s\n\n", md(a.Status), md(orDash(string(a.Phase))), md(a.CreatedBy), fmtTime(a.CreatedAt), fmtTime(a.FinishedAt))
		if len(a.Params) > 0 {
			params := indentJSON(a.Params)
			f := fence(params)
			p("Parameters:\n\n%sjson\n%s\n%s\n\n", f, params, f)
		}
		p("| Target | Status | Error | Evidence |\n|---|---|---|---|\n")
		for _, tr := range a.Targets {
			p("| %s | %s | %s | %s |\n", md(targetName(tr)), md(tr.Status), md(orDash(tr.Error)), md(orDash(strings.Join(tr.EvidenceIDs, ", "))))
		}
		p("\n")
		for _, tr := range a.Targets {
			if len(tr.Output) == 0 {
				continue
			}
			out := indentJSON(tr.Output)
			f := fence(out)
			p("Output from %s:\n\n%sjson\n%s\n%s\n\n", md(targetName(tr)), f, out, f)
		}
	}

	p("## Evidence\n\n")
	if len(r.Evidence) == 0 {
		p("No evidence was collected.\n\n")
	} else {
		p("| Evidence | Name | SHA-256 | Size | From | Collected | Custody |\n|---|---|---|---|---|---|---|\n")
		for _, e := range r.Evidence {
			custody := "not in the evidence store"
			if e.InStore {
				custody = fmt.Sprintf("%d entries, chain intact: %v", len(e.Custody), e.CustodyIntact)
			}
			p("| %s | %s | %s | %d | %s (task %s, run %s) | %s | %s |\n", md(e.ID), md(orDash(e.Name)), md(orDash(e.SHA256)), e.Size,
				md(cmpOr(e.Hostname, e.AgentID)), md(e.TaskID), md(e.RunID), fmtTime(e.CollectedAt), md(custody))
		}
		p("\n")
		for _, e := range r.Evidence {
			if len(e.Custody) == 0 {
				continue
			}
			p("Custody of %s:\n\n| Time | Actor | Action | Detail |\n|---|---|---|---|\n", md(e.ID))
			for _, ce := range e.Custody {
				p("| %s | %s | %s | %s |\n", fmtTime(ce.At), md(ce.Actor), md(ce.Action), md(orDash(ce.Detail)))
			}
			p("\n")
		}
	}

	p("## Approvals\n\n")
	if len(r.Approvals) == 0 {
		p("No approval was needed.\n\n")
	} else {
		p("| Time | Operator | Decision | On | Comment |\n|---|---|---|---|---|\n")
		for _, a := range r.Approvals {
			p("| %s | %s | %s | %s | %s |\n", fmtTime(a.At), md(a.Operator), decision(a.Approved), md(cmpOr(a.RunID, a.PlaybookRunID)), md(orDash(a.Comment)))
		}
		p("\n")
	}

	p("## Notes\n\n")
	if len(r.Notes) == 0 {
		p("No notes.\n\n")
	}
	for _, n := range r.Notes {
		p("- %s, %s: %s\n", fmtTime(n.At), md(n.Actor), md(n.Summary))
	}
	if len(r.Notes) > 0 {
		p("\n")
	}

	p("## Open items\n\n")
	if len(r.OpenItems) == 0 {
		p("None.\n\n")
	}
	for _, it := range r.OpenItems {
		p("- [ ] %s\n", md(it))
	}
	if len(r.OpenItems) > 0 {
		p("\n")
	}

	p("## Traces\n\n")
	if len(r.Traces) == 0 {
		p("No entry was recorded inside a trace.\n\n")
	} else {
		p("| Trace id | First entry | Started | Playbook runs | Runs | Entries |\n|---|---|---|---|---|---|\n")
		for _, t := range r.Traces {
			p("| %s | %s | %s | %s | %s | %d |\n", md(t.TraceID), fmtTime(t.At), md(t.Started), md(orDash(strings.Join(t.PlaybookRunIDs, ", "))),
				md(orDash(strings.Join(t.RunIDs, ", "))), t.Entries)
		}
		p("\n")
	}

	p("## Lessons learned\n\nTo be filled in at the lessons-learned meeting.\n\n")
	for _, q := range r.Lessons {
		p("### %s\n\n_Answer:_\n\n", md(q))
	}
	// Fenced outputs are shown verbatim; no control character in them
	// reaches the reader either.
	_, err := io.WriteString(w, termsafe.Text(b.String()))
	return err
}

// artifactFlags says how far an artifact reaches.
func artifactFlags(a trailscope.Artifact) string {
	var f []string
	if a.Public {
		f = append(f, "public")
	}
	if a.Outside {
		f = append(f, "outside the organisation")
	}
	return strings.Join(f, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func decision(approved bool) string {
	if approved {
		return "approved"
	}
	return "rejected"
}

// htmlReport is the HTML template. html/template escapes every value by
// its context, and the page's Content-Security-Policy forbids scripts and
// remote content, so hostile text from a finding or an output stays text.
var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"time": fmtTime, "dash": orDash, "json": indentJSON, "target": targetName, "decision": decision, "or": cmpOr,
	"join": strings.Join, "flags": artifactFlags,
	"metric": metric,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>Incident report: {{.Case.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#111;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f3f3f3}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.5em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.answer{border:1px dashed #999;min-height:3em;margin-bottom:1em}
</style>
</head>
<body>
<h1>Incident report: {{.Case.Title}}</h1>
<table>
<tr><th>Case</th><td>{{.Case.ID}}</td></tr>
<tr><th>Status</th><td>{{.Case.Status}}</td></tr>
<tr><th>Phase</th><td>{{.Case.Phase}}</td></tr>
<tr><th>Severity</th><td>{{.SeverityLabel}} ({{printf "%.1f" .Case.Severity}})</td></tr>
{{if .Case.Resource}}<tr><th>Resource</th><td>{{.Case.Resource}}</td></tr>{{end}}
<tr><th>Opened</th><td>{{time .Case.CreatedAt}} by {{.Case.CreatedBy}}</td></tr>
{{if not .Case.ClosedAt.IsZero}}<tr><th>Closed</th><td>{{time .Case.ClosedAt}} by {{.Case.ClosedBy}}</td></tr>{{end}}
<tr><th>Contained</th><td>{{.Contained}}</td></tr>
<tr><th>Report generated</th><td>{{time .GeneratedAt}}</td></tr>
</table>

<h2>Summary</h2>
<p>{{.Summary}}</p>

<h2>Timings</h2>
{{with .Case.Timings}}
<table>
<tr><th>Metric</th><th>From</th><th>To</th><th>Duration</th></tr>
<tr><td>Time to detect</td><td>{{time .FirstSeen}} (first seen)</td><td>{{time .DetectedAt}} (received)</td><td>{{metric . "detect"}}</td></tr>
<tr><td>Time to contain</td><td>{{time .DetectedAt}}</td><td>{{time .ContainedAt}}</td><td>{{metric . "contain"}}</td></tr>
<tr><td>Time to eradicate</td><td>{{time .DetectedAt}}</td><td>{{time .EradicatedAt}}</td><td>{{metric . "eradicate"}}</td></tr>
<tr><td>Time to recover</td><td>{{time .DetectedAt}}</td><td>{{time .RecoveredAt}}</td><td>{{metric . "recover"}}</td></tr>
</table>
{{end}}

<h2>Findings</h2>
{{if .Findings}}
<table>
<tr><th>Received</th><th>Source</th><th>Type</th><th>Title</th><th>Severity</th><th>Account / region</th><th>Resource</th><th>First seen</th><th>Rule</th><th>Playbook run</th></tr>
{{range .Findings}}<tr><td>{{time .ReceivedAt}}</td><td>{{.Finding.Source}}</td><td>{{.Finding.Type}}</td><td>{{.Finding.Title}}</td><td>{{.Finding.SeverityLabel}} {{printf "%.1f" .Finding.Severity}}</td><td>{{.Finding.Account}} / {{.Finding.Region}}</td><td>{{.Resource}}</td><td>{{time .Finding.FirstSeen}}</td><td>{{dash .Rule}}</td><td>{{dash .PlaybookRunID}}</td></tr>
{{end}}</table>
{{else}}<p>None: the case was opened by hand.</p>{{end}}

<h2>Timeline</h2>
<table>
<tr><th>Time</th><th>Kind</th><th>Phase</th><th>Status</th><th>Actor</th><th>Event</th></tr>
{{range .Timeline}}<tr><td>{{time .At}}</td><td>{{.Kind}}</td><td>{{dash (printf "%s" .Phase)}}</td><td>{{dash .Status}}</td><td>{{.Actor}}</td><td>{{.Summary}}</td></tr>
{{end}}</table>

{{with .Scope}}<h2>Scope</h2>
<p>{{.Events}} events of {{join .Keys ", "}} ({{join .Sources ", "}}) in {{len .Accounts}} account(s) and {{len .Regions}} region(s), {{time .First}} → {{time .Last}}; runs {{join .Runs ", "}}.</p>
<table><tr><th>Class</th><th>Events</th></tr>
{{range $c, $n := .ByClass}}<tr><td>{{$c}}</td><td>{{$n}}</td></tr>
{{end}}</table>
<table><tr><th>Key</th><th>Minted by</th><th>Via</th><th>Account</th><th>Identity</th></tr>
{{range .Sessions}}<tr><td>{{.AccessKeyID}}</td><td>{{dash .Parent}}</td><td>{{dash .Via}}{{if .Inferred}} (inferred){{end}}</td><td>{{dash .Account}}</td><td>{{dash .ARN}}</td></tr>
{{end}}</table>
<table><tr><th>Account</th><th>Region</th><th>Events</th><th>First</th><th>Last</th></tr>
{{range .Places}}<tr><td>{{.Account}}</td><td>{{.Region}}</td><td>{{.Events}}</td><td>{{time .First}}</td><td>{{time .Last}}</td></tr>
{{end}}</table>
{{if .Artifacts}}<table><tr><th>Artifact</th><th>Account</th><th>Region</th><th>Id</th><th>Flags</th><th>Event</th></tr>
{{range .Artifacts}}<tr><td>{{.Kind}}</td><td>{{.Account}}</td><td>{{.Region}}</td><td>{{.ID}}</td><td>{{dash (flags .)}}</td><td>{{.EventID}}</td></tr>
{{end}}</table>{{else}}<p>No artifact: no write of the credential succeeded.</p>{{end}}
{{end}}
<h2>Actions and results</h2>
{{range .Actions}}
<h3>{{.RunID}}: {{.Action}}{{if .StepID}} (step {{.StepID}} of {{.PlaybookRunID}}{{if .Rollback}}, rollback{{end}}){{end}}</h3>
<p>{{.Status}} · phase {{dash (printf "%s" .Phase)}} · by {{.CreatedBy}} · {{time .CreatedAt}} → {{time .FinishedAt}}</p>
{{if .Params}}<p>Parameters:</p><pre>{{json .Params}}</pre>{{end}}
<table>
<tr><th>Target</th><th>Status</th><th>Error</th><th>Evidence</th><th>Output</th></tr>
{{range .Targets}}<tr><td>{{target .}}</td><td>{{.Status}}</td><td>{{dash .Error}}</td><td>{{dash (join .EvidenceIDs ", ")}}</td><td>{{if .Output}}<pre>{{json .Output}}</pre>{{end}}</td></tr>
{{end}}</table>
{{else}}<p>No action was run for this case.</p>{{end}}

<h2>Evidence</h2>
{{if .Evidence}}
<table>
<tr><th>Evidence</th><th>Name</th><th>SHA-256</th><th>Size</th><th>From</th><th>Collected</th><th>Custody</th></tr>
{{range .Evidence}}<tr><td>{{.ID}}</td><td>{{dash .Name}}</td><td><code>{{dash .SHA256}}</code></td><td>{{.Size}}</td><td>{{or .Hostname .AgentID}} (task {{.TaskID}}, run {{.RunID}})</td><td>{{time .CollectedAt}}</td><td>{{if .InStore}}{{len .Custody}} entries, chain intact: {{.CustodyIntact}}{{else}}not in the evidence store{{end}}</td></tr>
{{end}}</table>
{{range .Evidence}}{{if .Custody}}<p>Custody of {{.ID}}:</p>
<table><tr><th>Time</th><th>Actor</th><th>Action</th><th>Detail</th></tr>
{{range .Custody}}<tr><td>{{time .At}}</td><td>{{.Actor}}</td><td>{{.Action}}</td><td>{{dash .Detail}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{else}}<p>No evidence was collected.</p>{{end}}

<h2>Approvals</h2>
{{if .Approvals}}
<table>
<tr><th>Time</th><th>Operator</th><th>Decision</th><th>On</th><th>Comment</th></tr>
{{range .Approvals}}<tr><td>{{time .At}}</td><td>{{.Operator}}</td><td>{{decision .Approved}}</td><td>{{or .RunID .PlaybookRunID}}</td><td>{{dash .Comment}}</td></tr>
{{end}}</table>
{{else}}<p>No approval was needed.</p>{{end}}

<h2>Notes</h2>
{{if .Notes}}<ul>{{range .Notes}}<li>{{time .At}}, {{.Actor}}: {{.Summary}}</li>{{end}}</ul>{{else}}<p>No notes.</p>{{end}}

<h2>Open items</h2>
{{if .OpenItems}}<ul>{{range .OpenItems}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>None.</p>{{end}}

<h2>Traces</h2>
{{if .Traces}}
<table>
<tr><th>Trace id</th><th>First entry</th><th>Started</th><th>Playbook runs</th><th>Runs</th><th>Entries</th></tr>
{{range .Traces}}<tr><td><code>{{.TraceID}}</code></td><td>{{time .At}}</td><td>{{.Started}}</td><td>{{dash (join .PlaybookRunIDs ", ")}}</td><td>{{dash (join .RunIDs ", ")}}</td><td>{{.Entries}}</td></tr>
{{end}}</table>
{{else}}<p>No entry was recorded inside a trace.</p>{{end}}

<h2>Lessons learned</h2>
<p>To be filled in at the lessons-learned meeting.</p>
{{range .Lessons}}<h3>{{.}}</h3><div class="answer"></div>
{{end}}
</body>
</html>
`))

// metric renders one of a timings' durations by name.
func metric(t Timings, name string) string {
	switch name {
	case "detect":
		return fmtDur(t.TimeToDetect())
	case "contain":
		return fmtDur(t.TimeToContain())
	case "eradicate":
		return fmtDur(t.TimeToEradicate())
	case "recover":
		return fmtDur(t.TimeToRecover())
	}
	return ""
}

// HTML writes the report as a self-contained HTML page.
func (r *Report) HTML(w io.Writer) error {
	tw := termsafe.NewWriter(w)
	if err := htmlReport.Execute(tw, r); err != nil {
		return err
	}
	return tw.Flush()
}
