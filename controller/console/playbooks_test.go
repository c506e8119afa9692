package console_test

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/auth"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func (f *fakePlaybooks) ListPlaybooks(context.Context, *operatorv1.ListPlaybooksRequest) (*operatorv1.ListPlaybooksResponse, error) {
	return &operatorv1.ListPlaybooksResponse{Playbooks: []*operatorv1.PlaybookInfo{{Name: "ec2-compromise", Version: 2, Description: hostile, Source: "built-in",
		Inputs: []*operatorv1.PlaybookInput{{Name: "instance", Type: "string", Required: true}, {Name: "collect", Type: "bool", DefaultJson: []byte("true")}},
		Steps: []*operatorv1.PlaybookStepInfo{{Id: "isolate", Phase: operatorv1.IncidentPhase_INCIDENT_PHASE_CONTAIN, Action: "host-isolate"},
			{Id: "collect", Phase: operatorv1.IncidentPhase_INCIDENT_PHASE_ANALYZE, Action: "collect", Needs: []string{"isolate"}}}}}}, nil
}

func (f *fakePlaybooks) StartPlaybookRun(ctx context.Context, req *operatorv1.StartPlaybookRunRequest) (*operatorv1.StartPlaybookRunResponse, error) {
	op, _ := auth.OperatorFrom(ctx)
	var kv []string
	for k, v := range req.GetInputs() {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	f.mu.Lock()
	f.started = append(f.started, req.GetPlaybook()+" "+strings.Join(kv, ",")+" case="+req.GetCaseId()+" by "+op.Name)
	f.mu.Unlock()
	if req.GetInputs()["instance"] == "" {
		return nil, status.Error(codes.InvalidArgument, "input instance is required")
	}
	caseID := req.GetCaseId()
	if caseID == "" {
		caseID = "case-new"
	}
	return &operatorv1.StartPlaybookRunResponse{Result: &operatorv1.StartPlaybookRunResponse_Run{Run: &operatorv1.PlaybookRun{Id: "pbr-2", CaseId: caseID}}}, nil
}

func (f *fakePlaybooks) startedRuns() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.started...)
}

func TestPlaybookPages(t *testing.T) {
	tc := newTestConsole(t)
	for _, tt := range []struct {
		operator  string
		wantStart bool
	}{{"vic", false}, {"alice", true}} {
		t.Run(tt.operator, func(t *testing.T) {
			c := tc.signIn(t, tt.operator)
			_, list := get(t, c, tc.srv.URL+"/playbooks?case=case-001")
			if !strings.Contains(list, `<a href="/playbooks/ec2-compromise?case=case-001">`) || !strings.Contains(list, `of <span class="total">1</span>`) {
				t.Fatalf("the list lacks the playbook: %s", list)
			}
			resp, body := get(t, c, tc.srv.URL+"/playbooks/ec2-compromise?case=case-001")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			for _, want := range []string{`<tr id="step-collect"><td>collect</td><td>analyze</td><td>collect</td><td>isolate </td>`, `name="input.instance" required`} {
				if tt.wantStart && !strings.Contains(body, want) || !tt.wantStart && strings.Contains(body, "input.instance") {
					t.Errorf("the playbook page lacks %q (or shows the form to a viewer)", want)
				}
			}
			if got := strings.Contains(body, `id="start"`); got != tt.wantStart {
				t.Errorf("start shown = %v, want %v", got, tt.wantStart)
			}
			if strings.Contains(body+list, "<script>document") {
				t.Fatalf("hostile text reached the page as markup")
			}
			for _, p := range domProblems(t, body) {
				t.Error(p)
			}
		})
	}
	if resp, _ := get(t, tc.signIn(t, "vic"), tc.srv.URL+"/playbooks/nope"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown playbook: %d", resp.StatusCode)
	}
}

func TestStartPlaybook(t *testing.T) {
	tc := newTestConsole(t)
	alice, vic := tc.signIn(t, "alice"), tc.signIn(t, "vic")
	aliceToken, vicToken := tc.csrf(t, alice), tc.csrf(t, vic)
	tests := []struct {
		name      string
		client    *http.Client
		form      url.Values
		wantCode  int
		wantStart string
		wantTo    string
	}{
		{"without the token", alice, url.Values{"reason": {"x"}, "input.instance": {"i-1"}}, http.StatusForbidden, "", ""},
		{"a viewer's forged start", vic, url.Values{"reason": {"x"}, "input.instance": {"i-1"}, "csrf": {vicToken}}, http.StatusForbidden, "", ""},
		{"without a reason", alice, url.Values{"input.instance": {"i-1"}, "csrf": {aliceToken}}, http.StatusBadRequest, "", ""},
		{"a refused input shows the service's reason", alice, url.Values{"reason": {"x"}, "csrf": {aliceToken}}, http.StatusBadRequest,
			"ec2-compromise  case= by alice", ""},
		{"a responder starts it for a case", alice, url.Values{"reason": {"gd"}, "input.instance": {"i-1"}, "input.bogus": {"x"}, "case": {"case-001"},
			"csrf": {aliceToken}}, http.StatusSeeOther, "ec2-compromise instance=i-1 case=case-001 by alice", "/cases/case-001"},
		{"without a case it opens one", alice, url.Values{"reason": {"gd"}, "input.instance": {"i-2"}, "input.collect": {"false"}, "csrf": {aliceToken}},
			http.StatusSeeOther, "ec2-compromise collect=false,instance=i-2 case= by alice", "/cases/case-new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tc.pb.startedRuns())
			resp, body := post(t, tt.client, tc.srv.URL+"/playbooks/ec2-compromise/start", tt.form)
			if resp.StatusCode != tt.wantCode || resp.Header.Get("Location") != tt.wantTo {
				t.Fatalf("%d to %q %s, want %d to %q", resp.StatusCode, resp.Header.Get("Location"), body, tt.wantCode, tt.wantTo)
			}
			started := tc.pb.startedRuns()[before:]
			if tt.wantStart == "" && len(started) > 0 || tt.wantStart != "" && (len(started) != 1 || started[0] != tt.wantStart) {
				t.Fatalf("started = %v, want %q", started, tt.wantStart)
			}
		})
	}
}
