package console_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/console"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fakeCases is a case service over cases in memory.
type fakeCases struct {
	operatorv1.UnimplementedCaseServiceServer
	mu       sync.Mutex
	cases    []*operatorv1.Case
	timeline map[string][]*operatorv1.TimelineEntry
	notes    []string
}

func newFakeCases() *fakeCases {
	f := &fakeCases{timeline: map[string][]*operatorv1.TimelineEntry{}}
	for i := range 60 {
		st := operatorv1.CaseStatus_CASE_STATUS_OPEN
		if i%3 == 0 {
			st = operatorv1.CaseStatus_CASE_STATUS_CLOSED
		}
		id := fmt.Sprintf("case-%03d", i)
		f.cases = append(f.cases, &operatorv1.Case{Id: id, Title: hostile, Status: st, Phase: operatorv1.IncidentPhase_INCIDENT_PHASE_CONTAIN,
			SeverityLabel: "HIGH", Severity: 8, CreatedBy: "intake", CreatedAt: timestamppb.Now(),
			Timings: &operatorv1.CaseTimings{DetectedAt: timestamppb.Now(), TimeToDetect: durationpb.New(90e9)}})
		f.timeline[id] = []*operatorv1.TimelineEntry{{Seq: 1, Kind: operatorv1.TimelineKind_TIMELINE_KIND_CASE, Status: "opened", Actor: "intake",
			Summary: hostile, At: timestamppb.Now()}}
	}
	return f
}

func (f *fakeCases) ListCases(_ context.Context, req *operatorv1.ListCasesRequest) (*operatorv1.ListCasesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &operatorv1.ListCasesResponse{}
	for _, c := range f.cases {
		if req.GetIncludeClosed() || c.GetStatus() == operatorv1.CaseStatus_CASE_STATUS_OPEN {
			out.Cases = append(out.Cases, c)
		}
	}
	return out, nil
}

func (f *fakeCases) GetCase(_ context.Context, req *operatorv1.GetCaseRequest) (*operatorv1.GetCaseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cases {
		if c.GetId() == req.GetCaseId() {
			return &operatorv1.GetCaseResponse{Case: c, Timeline: append([]*operatorv1.TimelineEntry(nil), f.timeline[c.GetId()]...),
				Findings: []*operatorv1.CaseFinding{{Id: "f1", Source: "guardduty", Title: hostile, SeverityLabel: "HIGH", ReceivedAt: timestamppb.Now()}}}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "case %q not found", req.GetCaseId())
}

func (f *fakeCases) addEntry(caseID, actor, summary string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tl := f.timeline[caseID]
	f.timeline[caseID] = append(tl, &operatorv1.TimelineEntry{Seq: uint64(len(tl) + 1), Kind: operatorv1.TimelineKind_TIMELINE_KIND_NOTE, Actor: actor,
		Summary: summary, At: timestamppb.Now()})
}

func (f *fakeCases) AddNote(ctx context.Context, req *operatorv1.AddNoteRequest) (*operatorv1.AddNoteResponse, error) {
	op, _ := auth.OperatorFrom(ctx)
	f.mu.Lock()
	f.notes = append(f.notes, req.GetCaseId()+" "+req.GetText()+" by "+op.Name)
	f.mu.Unlock()
	f.addEntry(req.GetCaseId(), op.Name, req.GetText())
	return &operatorv1.AddNoteResponse{}, nil
}

func (f *fakeCases) GetReport(_ context.Context, req *operatorv1.GetReportRequest) (*operatorv1.GetReportResponse, error) {
	switch req.GetFormat() {
	case operatorv1.ReportFormat_REPORT_FORMAT_HTML:
		return &operatorv1.GetReportResponse{Content: []byte("<!doctype html><title>r</title><style>p{}</style><p>report " + req.GetCaseId()), ContentType: "text/html; charset=utf-8"}, nil
	case operatorv1.ReportFormat_REPORT_FORMAT_JSON:
		return &operatorv1.GetReportResponse{Content: []byte(`{"case":"` + req.GetCaseId() + `"}`), ContentType: "application/json"}, nil
	}
	return &operatorv1.GetReportResponse{Content: []byte("# report " + req.GetCaseId()), ContentType: "text/markdown; charset=utf-8"}, nil
}

func (f *fakeCases) notesAdded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.notes...)
}

// fakePlaybooks is a playbook service with one playbook and one run.
type fakePlaybooks struct {
	operatorv1.UnimplementedPlaybookServiceServer
	mu      sync.Mutex
	started []string
}

var testPlaybookRun = &operatorv1.PlaybookRun{Id: "pbr-1", Playbook: "ec2-compromise", Version: 1, CaseId: "case-001", CreatedBy: "rule:gd",
	Status: operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_RUNNING, Steps: []*operatorv1.PlaybookStep{
		{Id: "isolate", Phase: operatorv1.IncidentPhase_INCIDENT_PHASE_CONTAIN, Action: "host-isolate", Status: operatorv1.StepStatus_STEP_STATUS_SUCCEEDED, RunId: "iso"},
		{Id: "collect", Phase: operatorv1.IncidentPhase_INCIDENT_PHASE_ANALYZE, Action: "collect", Needs: []string{"isolate"},
			Status: operatorv1.StepStatus_STEP_STATUS_RUNNING, Error: hostile}}}

func (f *fakePlaybooks) ListPlaybookRuns(_ context.Context, req *operatorv1.ListPlaybookRunsRequest) (*operatorv1.ListPlaybookRunsResponse, error) {
	if req.GetCaseId() != "case-001" {
		return &operatorv1.ListPlaybookRunsResponse{}, nil
	}
	return &operatorv1.ListPlaybookRunsResponse{Runs: []*operatorv1.PlaybookRun{{Id: "pbr-1"}}}, nil
}

func (f *fakePlaybooks) GetPlaybookRun(_ context.Context, req *operatorv1.GetPlaybookRunRequest) (*operatorv1.GetPlaybookRunResponse, error) {
	if req.GetPlaybookRunId() != "pbr-1" {
		return nil, status.Errorf(codes.NotFound, "playbook run %q not found", req.GetPlaybookRunId())
	}
	return &operatorv1.GetPlaybookRunResponse{Run: testPlaybookRun}, nil
}

func TestCaseListIsPagedAndSaysWhenFiltered(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	tests := []struct {
		path, wantTotal string
		wantFiltered    bool
	}{
		{"/cases", "40", true},
		{"/cases?closed=1", "60", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, body := get(t, vic, tc.srv.URL+tt.path)
			if m := totalRE.FindStringSubmatch(body); m == nil || m[1] != tt.wantTotal {
				t.Fatalf("total = %v, want %s", m, tt.wantTotal)
			}
			if got := strings.Contains(body, "(filtered)"); got != tt.wantFiltered {
				t.Fatalf("says filtered = %v, want %v", got, tt.wantFiltered)
			}
			if strings.Contains(body, "<script>document") {
				t.Fatalf("hostile text reached the page as markup")
			}
		})
	}
}

func TestCasePageShowsTimelineFindingsStepsAndEvidence(t *testing.T) {
	tc := newTestConsole(t)
	for _, tt := range []struct {
		operator string
		wantNote bool
	}{{"vic", false}, {"alice", true}} {
		t.Run(tt.operator, func(t *testing.T) {
			resp, body := get(t, tc.signIn(t, tt.operator), tc.srv.URL+"/cases/case-001")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			for _, want := range []string{`id="case-phase">contain`, "time to detect 1m30s", `id="entry-1"`, `class="finding-title">&lt;script&gt;`,
				`id="step-isolate"`, `<td class="step-state">running</td>`, `sse-connect="/cases/case-001/events?after_seq=1"`, "/cases/case-001/report?format=md"} {
				if !strings.Contains(body, want) {
					t.Errorf("the case page lacks %q", want)
				}
			}
			if got := strings.Contains(body, `id="add-note"`); got != tt.wantNote {
				t.Errorf("add a note shown = %v, want %v", got, tt.wantNote)
			}
			if strings.Contains(body, "<script>document") {
				t.Fatalf("hostile text reached the page as markup")
			}
			for _, p := range domProblems(t, body) {
				t.Error(p)
			}
		})
	}
}

func TestAddNote(t *testing.T) {
	tc := newTestConsole(t)
	alice, vic := tc.signIn(t, "alice"), tc.signIn(t, "vic")
	aliceToken, vicToken := tc.csrf(t, alice), tc.csrf(t, vic)
	tests := []struct {
		name     string
		client   *http.Client
		form     url.Values
		wantCode int
		wantNote string
	}{
		{"without the token", alice, url.Values{"text": {"x"}}, http.StatusForbidden, ""},
		{"a viewer's forged note", vic, url.Values{"text": {"x"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"an empty note", alice, url.Values{"text": {"  "}, "csrf": {aliceToken}}, http.StatusBadRequest, ""},
		{"a responder's note", alice, url.Values{"text": {hostile}, "csrf": {aliceToken}}, http.StatusSeeOther, "case-002 " + hostile + " by alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tc.cases.notesAdded())
			resp, body := post(t, tt.client, tc.srv.URL+"/cases/case-002/notes", tt.form)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tt.wantCode)
			}
			added := tc.cases.notesAdded()[before:]
			if tt.wantNote == "" && len(added) > 0 || tt.wantNote != "" && (len(added) != 1 || added[0] != tt.wantNote) {
				t.Fatalf("notes added = %v, want %q", added, tt.wantNote)
			}
		})
	}
	_, page := get(t, vic, tc.srv.URL+"/cases/case-002")
	if !strings.Contains(page, `<td class="entry-summary">&lt;script&gt;document.title=`) || strings.Contains(page, "<script>document") {
		t.Fatalf("the note is not on the timeline as text")
	}
}

// caseChangeNotices is a console.CaseChanges the test tells of changes.
type caseChangeNotices struct {
	mu   sync.Mutex
	subs map[string]chan struct{}
}

func (n *caseChangeNotices) Subscribe(caseID string) (<-chan struct{}, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs[caseID] == nil {
		n.subs[caseID] = make(chan struct{}, 1)
	}
	return n.subs[caseID], func() {}
}

func (n *caseChangeNotices) changed(caseID string) {
	n.mu.Lock()
	ch := n.subs[caseID]
	n.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (n *caseChangeNotices) subscribed(caseID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.subs[caseID] != nil
}

// TestCaseEventsStreamNewTimelineEntries: a live case stream sends the
// entries added after the page's last one, once each: read every second
// without change notices; with them, read when a notice comes (the
// fallback re-read is set to an hour, so only the notice can bring the
// entry within the test).
func TestCaseEventsStreamNewTimelineEntries(t *testing.T) {
	notices := &caseChangeNotices{subs: map[string]chan struct{}{}}
	tests := []struct {
		name    string
		notices *caseChangeNotices
	}{
		{"polling", nil},
		{"change notices", notices},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConsoleWith(t, func(cfg *console.Config) {
				if tt.notices != nil {
					cfg.CaseChanges, cfg.CaseFallbackEvery = tt.notices, time.Hour
				}
			})
			caseEventsStreamNewEntries(t, tc, tt.notices)
		})
	}
}

func caseEventsStreamNewEntries(t *testing.T, tc *testConsole, notices *caseChangeNotices) {
	alice := tc.signIn(t, "alice")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.srv.URL+"/cases/case-004/events?after_seq=1", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	if notices != nil {
		// The response's headers are sent after the subscription.
		if !notices.subscribed("case-004") {
			t.Fatal("the stream did not subscribe to the case's changes")
		}
	}
	tc.cases.addEntry("case-004", "playbook:ec2-compromise", "step isolate succeeded")
	if notices != nil {
		notices.changed("case-004")
	}
	// The stream never ends by itself; the deadline only keeps a broken
	// stream from hanging the suite.
	stop := time.AfterFunc(time.Minute, cancel)
	defer stop.Stop()
	sc := bufio.NewScanner(resp.Body)
	var event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
			data.Reset()
		case strings.HasPrefix(line, "data: "):
			data.WriteString(strings.TrimPrefix(line, "data: "))
		case line == "" && event == "timeline":
			got := data.String()
			if strings.Contains(got, `id="entry-1"`) {
				t.Fatalf("the stream sent an entry the page has: %s", got)
			}
			if strings.Contains(got, "step isolate succeeded") && strings.Contains(got, `id="entry-2"`) {
				return
			}
		}
	}
	t.Fatalf("the stream ended without the new entry: %v", sc.Err())
}

func TestCaseReport(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	tests := []struct {
		query, wantType, wantDisposition, wantCSP string
		wantCode                                  int
	}{
		{"?format=html", "text/html; charset=utf-8", "", "sandbox", http.StatusOK},
		{"", "text/html; charset=utf-8", "", "sandbox", http.StatusOK},
		{"?format=html&download=1", "text/html; charset=utf-8", `attachment; filename="case-001-report.html"`, "script-src 'self'", http.StatusOK},
		{"?format=md", "text/markdown; charset=utf-8", `attachment; filename="case-001-report.md"`, "script-src 'self'", http.StatusOK},
		{"?format=json", "application/json", `attachment; filename="case-001-report.json"`, "script-src 'self'", http.StatusOK},
		{"?format=pdf", "text/html; charset=utf-8", "", "script-src 'self'", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, _ := get(t, vic, tc.srv.URL+"/cases/case-001/report"+tt.query)
			if resp.StatusCode != tt.wantCode || resp.Header.Get("Content-Type") != tt.wantType || resp.Header.Get("Content-Disposition") != tt.wantDisposition ||
				!strings.Contains(resp.Header.Get("Content-Security-Policy"), tt.wantCSP) {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
			if strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'unsafe") {
				t.Fatalf("the report may run script: %s", resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
}
