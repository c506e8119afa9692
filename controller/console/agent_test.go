package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// postCase is a state-changing request and what must come of it: the
// status, and the one state-changing service call it makes (none when
// wantCall is empty).
type postCase struct {
	name     string
	client   *http.Client
	path     string
	form     url.Values
	wantCode int
	wantCall string
}

// runPostCases runs each case and checks that a refused request never
// reached the service.
func runPostCases(t *testing.T, tc *testConsole, tests []postCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tc.op.called())
			resp, body := post(t, tt.client, tc.srv.URL+tt.path, tt.form)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("POST %s: %d %s, want %d", tt.path, resp.StatusCode, body, tt.wantCode)
			}
			var calls []string
			for _, c := range tc.op.called()[before:] {
				if !strings.HasPrefix(c, "List") && !strings.HasPrefix(c, "Get") {
					calls = append(calls, c)
				}
			}
			if tt.wantCall == "" && len(calls) > 0 {
				t.Fatalf("a refused request reached the service: %v", calls)
			}
			if tt.wantCall != "" && (len(calls) != 1 || calls[0] != tt.wantCall) {
				t.Fatalf("service calls = %v, want %q", calls, tt.wantCall)
			}
		})
	}
}

func TestAgentPageShowsFactsTasksAndTheButtonsOfTheRole(t *testing.T) {
	tc := newTestConsole(t)
	tests := []struct {
		operator string
		want     map[string]bool
	}{
		{"vic", map[string]bool{`id="isolate"`: false, `id="unisolate"`: false, `id="revoke"`: false}},
		{"alice", map[string]bool{`id="isolate"`: true, `id="unisolate"`: true, `id="revoke"`: false}},
		{"ada", map[string]bool{`id="isolate"`: true, `id="unisolate"`: true, `id="revoke"`: true}},
	}
	for _, tt := range tests {
		t.Run(tt.operator, func(t *testing.T) {
			resp, body := get(t, tc.signIn(t, tt.operator), tc.srv.URL+"/agents/agent-001")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("agent page: %d %s", resp.StatusCode, body)
			}
			for el, want := range tt.want {
				if got := strings.Contains(body, el); got != want {
					t.Errorf("%s shown = %v, want %v", el, got, want)
				}
			}
			for _, want := range []string{"web-001", "i-001", `<a href="/runs/iso">iso</a>`, "&lt;script&gt;document.title="} {
				if !strings.Contains(body, want) {
					t.Errorf("the agent page lacks %q", want)
				}
			}
			for _, p := range domProblems(t, body) {
				t.Error(p)
			}
			if strings.Contains(body, "<script>document") {
				t.Fatalf("hostile text reached the page as markup")
			}
		})
	}
	vic := tc.signIn(t, "vic")
	for path, want := range map[string]int{"/agents/nope": http.StatusNotFound, "/agents/a,role=host": http.StatusBadRequest} {
		if resp, _ := get(t, vic, tc.srv.URL+path); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestAgentActionsGoThroughTheOperatorService(t *testing.T) {
	tc := newTestConsole(t)
	alice, vic, ada := tc.signIn(t, "alice"), tc.signIn(t, "vic"), tc.signIn(t, "ada")
	aliceToken, vicToken, adaToken := tc.csrf(t, alice), tc.csrf(t, vic), tc.csrf(t, ada)
	runPostCases(t, tc, []postCase{
		{"isolate without the token", alice, "/agents/agent-001/isolate", url.Values{"reason": {"ssh brute force"}}, http.StatusForbidden, ""},
		{"a viewer's forged isolate", vic, "/agents/agent-001/isolate", url.Values{"reason": {"x"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"a viewer's forged revoke", vic, "/agents/agent-001/revoke", url.Values{"reason": {"x"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"a responder's revoke", alice, "/agents/agent-001/revoke", url.Values{"reason": {"x"}, "csrf": {aliceToken}}, http.StatusForbidden, ""},
		{"isolate without a reason", alice, "/agents/agent-001/isolate", url.Values{"csrf": {aliceToken}}, http.StatusBadRequest, ""},
		{"isolate of an unknown agent", alice, "/agents/nope/isolate", url.Values{"reason": {"x"}, "csrf": {aliceToken}}, http.StatusNotFound, ""},
		{"a responder isolates", alice, "/agents/agent-001/isolate", url.Values{"reason": {"ssh brute force"}, "csrf": {aliceToken}}, http.StatusSeeOther,
			"CreateRun host-isolate id=agent-001 ssh brute force by alice"},
		{"a responder unisolates", alice, "/agents/agent-001/unisolate", url.Values{"reason": {"cleaned"}, "csrf": {aliceToken}}, http.StatusSeeOther,
			"CreateRun host-unisolate id=agent-001 cleaned by alice"},
		{"an admin revokes", ada, "/agents/agent-001/revoke", url.Values{"reason": {"stolen key"}, "csrf": {adaToken}}, http.StatusSeeOther,
			"RevokeAgents agent-001 stolen key by ada"},
	})
	resp, _ := post(t, alice, tc.srv.URL+"/agents/agent-001/isolate", url.Values{"reason": {"again"}, "csrf": {aliceToken}})
	if loc := resp.Header.Get("Location"); loc != "/runs/new-run" {
		t.Fatalf("after isolating, the console goes to %q, want the run's page", loc)
	}
}
