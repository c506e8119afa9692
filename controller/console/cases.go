package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Caps on what the case pages read.
const (
	// caseListCap is how many of the newest cases the case list reads.
	caseListCap = 1000
	// casePlaybookRuns is how many of a case's newest playbook runs its
	// page shows with their steps.
	casePlaybookRuns = 10
	// casePollEvery is how often a case page's live stream reads the case
	// for new timeline entries when no CaseChanges tells it of them.
	casePollEvery = time.Second
)

// DefaultCaseFallbackEvery is Config.CaseFallbackEvery's default: how
// late a live case page may show a change another controller of a cluster
// wrote.
const DefaultCaseFallbackEvery = 10 * time.Second

// CaseChanges tells of changes to cases (the case service's
// cases.Changes): Subscribe returns a channel that receives a value after
// each change of caseID, and a function that ends the subscription.
type CaseChanges interface {
	Subscribe(caseID string) (changed <-chan struct{}, stop func())
}

// errNoCases is the refusal when the controller has no case service.
var errNoCases = status.Error(codes.Unavailable, "this controller serves no cases")

// caseList lists the cases, newest first, open ones or all, paged.
func (c *Console) caseList(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("CaseService/ListCases"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Cases == nil {
		c.serviceError(w, r, errNoCases)
		return
	}
	all := r.URL.Query().Get("closed") != ""
	resp, err := c.cfg.Cases.ListCases(ctx, &operatorv1.ListCasesRequest{IncludeClosed: all, Limit: caseListCap})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	p := paginate(resp.GetCases(), (*operatorv1.Case).GetId, nil, r.URL.Query().Get("after"), c.cfg.PageSize)
	p.Filtered = !all
	p.link(r, "")
	if len(resp.GetCases()) >= caseListCap {
		p.Capped = fmt.Sprintf("only the newest %d cases are listed", caseListCap)
	}
	c.render(w, r, http.StatusOK, "cases", map[string]any{"Page": p, "All": all})
}

// playbookRunView is a playbook run of a case with its steps.
type playbookRunView struct {
	Run *operatorv1.PlaybookRun
}

// casePage shows one case: its phase and timings, the timeline (live
// over SSE on its last page), findings, playbook runs with their steps,
// evidence, and the form to add a note.
func (c *Console) casePage(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("CaseService/GetCase"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Cases == nil {
		c.serviceError(w, r, errNoCases)
		return
	}
	resp, err := c.cfg.Cases.GetCase(ctx, &operatorv1.GetCaseRequest{CaseId: r.PathValue("id")})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	id := resp.GetCase().GetId()
	q := r.URL.Query()
	timeline := paginate(resp.GetTimeline(), entryKey, nil, q.Get("after"), c.cfg.PageSize)
	timeline.link(r, "")
	findings := paginate(resp.GetFindings(), findingKey, nil, q.Get("findings_after"), c.cfg.PageSize)
	findings.linkParam(r, "", "findings_after")
	data := map[string]any{"Case": resp.GetCase(), "Timeline": timeline, "Findings": findings, "Live": timeline.Next == ""}
	if n := len(timeline.Rows); n > 0 {
		data["LastSeq"] = timeline.Rows[n-1].GetSeq()
	} else {
		data["LastSeq"] = uint64(0)
	}
	if c.cfg.Playbooks != nil {
		if pctx, err := c.authorize(r, method("PlaybookService/ListPlaybookRuns")); err == nil {
			runs, err := c.cfg.Playbooks.ListPlaybookRuns(pctx, &operatorv1.ListPlaybookRunsRequest{CaseId: id, Limit: casePlaybookRuns + 1})
			if err != nil {
				c.serviceError(w, r, err)
				return
			}
			var views []playbookRunView
			for i, pr := range runs.GetRuns() {
				if i == casePlaybookRuns {
					data["PlaybookRunsCapped"] = true
					break
				}
				full, err := c.cfg.Playbooks.GetPlaybookRun(pctx, &operatorv1.GetPlaybookRunRequest{PlaybookRunId: pr.GetId()})
				if err != nil {
					c.serviceError(w, r, err)
					return
				}
				views = append(views, playbookRunView{Run: full.GetRun()})
			}
			data["PlaybookRuns"] = views
		}
	}
	if c.cfg.Evidence != nil {
		if ectx, err := c.authorize(r, method("EvidenceService/ListEvidence")); err == nil {
			ev, err := c.cfg.Evidence.ListEvidence(ectx, &operatorv1.ListEvidenceRequest{CaseId: id, Limit: evidenceListCap})
			if err != nil {
				c.serviceError(w, r, err)
				return
			}
			p := paginate(ev.GetItems(), (*operatorv1.EvidenceItem).GetId, nil, "", c.cfg.PageSize)
			if p.Next != "" {
				p.NextURL = "/evidence?case=" + url.QueryEscape(id)
			}
			data["Evidence"] = p
		}
	}
	c.render(w, r, http.StatusOK, "case", data)
}

func entryKey(e *operatorv1.TimelineEntry) string { return strconv.FormatUint(e.GetSeq(), 10) }

func findingKey(f *operatorv1.CaseFinding) string {
	return f.GetSource() + "/" + f.GetId() + "@" + f.GetReceivedAt().AsTime().Format(time.RFC3339Nano)
}

// caseEvents streams a case's new timeline entries and its changed
// header (phase, status, timings) as Server-Sent Events: event "timeline"
// carries table rows to append, event "case" the header. The stream
// reads the case through GetCase, as the operator, when CaseChanges tells
// it the case changed in this controller, and every CaseFallbackEvery for
// changes written by another controller of a cluster (every second
// without CaseChanges); it sends what is new since the entry ?after_seq=
// names.
func (c *Console) caseEvents(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("CaseService/GetCase"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Cases == nil {
		c.serviceError(w, r, errNoCases)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after_seq"), 10, 64)
	id := r.PathValue("id")
	every := casePollEvery
	var changed <-chan struct{}
	if c.cfg.CaseChanges != nil {
		// Subscribed before the first read (and before the response's
		// headers), so no change falls between.
		var stop func()
		changed, stop = c.cfg.CaseChanges.Subscribe(id)
		defer stop()
		every = c.cfg.CaseFallbackEvery
	}
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	poll := time.NewTicker(every)
	defer poll.Stop()
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	var header []byte
	for {
		resp, err := c.cfg.Cases.GetCase(ctx, &operatorv1.GetCaseRequest{CaseId: id})
		if err != nil {
			_ = sse.send("done", []byte(status.Convert(err).Message()))
			return
		}
		var fresh []*operatorv1.TimelineEntry
		for _, e := range resp.GetTimeline() {
			if e.GetSeq() > after {
				fresh = append(fresh, e)
			}
		}
		if len(fresh) > 0 {
			b, err := c.renderFragment("case", "timeline-rows", fresh)
			if err != nil {
				c.cfg.Logger.Error("console: rendering timeline rows", "error", err)
				return
			}
			if sse.send("timeline", b) != nil {
				return
			}
			after = fresh[len(fresh)-1].GetSeq()
		}
		h, err := c.renderFragment("case", "case-header", resp.GetCase())
		if err != nil {
			c.cfg.Logger.Error("console: rendering the case header", "error", err)
			return
		}
		if string(h) != string(header) {
			if header != nil && sse.send("case", h) != nil {
				return
			}
			header = h
		}
		select {
		case <-ctx.Done():
			return
		case <-keepAlive.C:
			if sse.keepAlive() != nil {
				return
			}
		case <-poll.C:
		case <-changed:
		}
	}
}

// addNote adds a note to the case's timeline through the case service's
// AddNote, as the operator, and shows the case again.
func (c *Console) addNote(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("CaseService/AddNote"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Cases == nil {
		c.serviceError(w, r, errNoCases)
		return
	}
	id := r.PathValue("id")
	text := strings.TrimSpace(r.PostFormValue("text"))
	if text == "" {
		c.renderError(w, r, http.StatusBadRequest, "the note is empty")
		return
	}
	if _, err := c.cfg.Cases.AddNote(ctx, &operatorv1.AddNoteRequest{CaseId: id, Text: text}); err != nil {
		c.serviceError(w, r, err)
		return
	}
	http.Redirect(w, r, "/cases/"+url.PathEscape(id), http.StatusSeeOther)
}

// reportFormats are the report formats by the name in the URL.
var reportFormats = map[string]operatorv1.ReportFormat{
	"md":   operatorv1.ReportFormat_REPORT_FORMAT_MARKDOWN,
	"html": operatorv1.ReportFormat_REPORT_FORMAT_HTML,
	"json": operatorv1.ReportFormat_REPORT_FORMAT_JSON,
}

// reportCSP is the Content-Security-Policy of a report shown in the
// browser: the case report renderer's page carries its own inline style,
// and nothing else may load or run.
const reportCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"

// caseReport returns the case report from the case report renderer
// (GetReport): ?format=html shows it in the browser, and with
// ?download=1, or in md or json, it is a file to save.
func (c *Console) caseReport(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("CaseService/GetReport"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Cases == nil {
		c.serviceError(w, r, errNoCases)
		return
	}
	name := r.URL.Query().Get("format")
	if name == "" {
		name = "html"
	}
	f, ok := reportFormats[name]
	if !ok {
		c.renderError(w, r, http.StatusBadRequest, fmt.Sprintf("no report format %q: use md, html or json", name))
		return
	}
	id := r.PathValue("id")
	resp, err := c.cfg.Cases.GetReport(ctx, &operatorv1.GetReportRequest{CaseId: id, Format: f})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", resp.GetContentType())
	h.Set("Content-Length", strconv.Itoa(len(resp.GetContent())))
	if name == "html" && r.URL.Query().Get("download") == "" {
		// Security-critical: the report holds findings and outputs, which
		// are hostile; the renderer escapes them, and this policy lets
		// the page run nothing and load nothing even so.
		h.Set("Content-Security-Policy", reportCSP)
	} else {
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-report.%s"`, safeFileName(id), name))
	}
	_, _ = w.Write(resp.GetContent())
}

// safeFileName reduces s to characters safe in a file name.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, s)
}
