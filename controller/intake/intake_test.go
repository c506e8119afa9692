package intake_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"

	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "finding", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const containPlaybook = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: contain-instance
  version: 2
inputs:
  - {name: instance_id, type: string, required: true}
steps:
  - id: isolate
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: isolate, value: "${{ inputs.instance_id }}"}
`

const testRules = `
- name: contain-ssh
  match: {types: ["UnauthorizedAccess:EC2/*"]}
  playbook: contain-instance
  mode: auto
- name: review-keys
  match: {types: ["*IAMUser*"]}
  playbook: contain-instance
  mode: approve
  inputs:
    instance_id: "key ${{ finding.access_key_id }}"
`

type env struct {
	c   *playbookruntest.Controller
	rec *playbookruntest.Recorder
}

func newEnv(t *testing.T, extra func(*controller.IncidentConfig)) *env {
	t.Helper()
	dir := t.TempDir()
	playbookruntest.WritePlaybook(t, dir, "contain-instance", containPlaybook)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(testRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := controller.IncidentConfig{PlaybookDir: dir, RulesFile: rules, NoDefaultRules: true}
	if extra != nil {
		extra(&cfg)
	}
	e := &env{rec: &playbookruntest.Recorder{Name: "record"}}
	e.c = playbookruntest.StartController(t, playbookruntest.Options{Incident: cfg})
	a := e.c.StartAgent(t, playbookruntest.AgentOptions{Name: "host-0", Actions: []sdk.Action{e.rec}})
	e.c.WaitConnected(t, a)
	return e
}

func (e *env) submit(t *testing.T, body []byte) []*intake.Outcome {
	t.Helper()
	out, err := e.c.Intake.Submit(context.Background(), "intake/test", body)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return out
}

func TestGuardDutyFindingStartsTheRulesPlaybook(t *testing.T) {
	e := newEnv(t, nil)
	out := e.submit(t, sample(t, "guardduty-ssh-bruteforce.json"))
	if len(out) != 1 {
		t.Fatalf("%d outcomes", len(out))
	}
	o := out[0]
	if !o.CaseCreated || o.Rule != "contain-ssh" || o.Mode != "auto" || o.PlaybookRunID == "" {
		t.Fatalf("outcome %+v: want a new case and the auto rule's playbook started", o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := e.c.Playbooks.Wait(ctx, o.PlaybookRunID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != playbookrun.StatusSucceeded || r.CaseID != o.CaseID || r.Rule != "contain-ssh" || r.Finding == nil {
		t.Fatalf("playbook run %+v", r)
	}
	// The default extraction gave the playbook the instance id.
	if got := r.Step("isolate").Outputs["value"]; got != "i-0a1b2c3d4e5f67890" {
		t.Errorf("the step got instance %v", got)
	}
	c, err := e.c.Cases.Get(ctx, o.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Contained() || c.Resource != "instance/111122223333/i-0a1b2c3d4e5f67890" {
		t.Errorf("case %+v", c)
	}
	if _, ok := c.Timings.TimeToDetect(); !ok {
		t.Error("no time to detect for a case opened by a finding")
	}
	fs, err := e.c.Cases.Findings(ctx, o.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Rule != "contain-ssh" || fs[0].PlaybookRunID != o.PlaybookRunID {
		t.Errorf("recorded finding %+v", fs[0])
	}
}

func TestDuplicateAndUpdatedFindings(t *testing.T) {
	e := newEnv(t, nil)
	body := sample(t, "guardduty-ssh-bruteforce.json")
	first := e.submit(t, body)[0]
	again := e.submit(t, body)[0]
	if !again.Duplicate || again.CaseID != first.CaseID || again.PlaybookRunID != first.PlaybookRunID {
		t.Fatalf("the same event again: %+v (first %+v)", again, first)
	}
	updated := bytes.Replace(body, []byte(`"updatedAt": "2026-11-20T09:14:40.120Z"`), []byte(`"updatedAt": "2026-11-20T15:14:40.120Z"`), 1)
	if bytes.Equal(updated, body) {
		t.Fatal("the sample's updatedAt was not found")
	}
	upd := e.submit(t, updated)[0]
	if upd.Duplicate || upd.CaseID != first.CaseID || upd.PlaybookRunID != first.PlaybookRunID || !strings.Contains(upd.Note, "already answers") {
		t.Fatalf("an updated finding: %+v: want the same case and no second playbook run", upd)
	}
	runs, err := e.c.Playbooks.List(context.Background(), playbookrun.ListOptions{CaseID: first.CaseID})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Fatalf("%d playbook runs for one finding", len(runs))
	}
	c, _ := e.c.Cases.Get(context.Background(), first.CaseID)
	if c.Findings != 2 {
		t.Errorf("the case holds %d finding versions, want 2", c.Findings)
	}
}

func TestSecurityHubFindingsAndUnmatchedOnes(t *testing.T) {
	e := newEnv(t, nil)
	out := e.submit(t, sample(t, "securityhub-imported.json"))
	if len(out) != 2 {
		t.Fatalf("%d outcomes, want one per ASFF finding", len(out))
	}
	backdoor, key := out[0], out[1]
	if backdoor.Rule != "" || backdoor.CaseID == "" || !backdoor.CaseCreated {
		t.Errorf("unmatched finding %+v: want it recorded on a new case all the same", backdoor)
	}
	if key.Rule != "review-keys" || key.Mode != "approve" || key.PlaybookRunID == "" || key.CaseID == backdoor.CaseID {
		t.Fatalf("key finding %+v", key)
	}
	ctx := context.Background()
	r, err := e.c.Playbooks.Get(ctx, key.PlaybookRunID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != playbookrun.StatusAwaitingApproval || r.CreatedBy != "rule:review-keys" || r.Inputs["instance_id"] != "key AKIAEXAMPLEKEY000002" {
		t.Fatalf("proposed run %+v inputs %v", r, r.Inputs)
	}
	if len(e.rec.Calls()) != 0 {
		t.Fatal("a proposed playbook ran before approval")
	}
	report, err := e.c.Cases.Report(ctx, backdoor.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(report.OpenItems, "\n"), "matched no rule") {
		t.Errorf("the unmatched finding is not an open item: %v", report.OpenItems)
	}
}

func TestRuleWhosePlaybookCannotStartIsRecorded(t *testing.T) {
	// A rule that names a playbook this controller does not have (a typo,
	// or a playbook directory not deployed yet).
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`- name: mining-typo
  match: {types: ["CryptoCurrency:EC2/*"]}
  playbook: cryptominig-instance
  mode: auto
`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *controller.IncidentConfig) { c.RulesFile = rules })
	o := e.submit(t, sample(t, "guardduty-bitcointool-dns.json"))[0]
	if o.Rule != "mining-typo" || o.PlaybookRunID != "" || !strings.Contains(o.Note, "cryptominig-instance") {
		t.Fatalf("outcome %+v", o)
	}
	tl, err := e.c.Cases.Timeline(context.Background(), o.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range tl {
		found = found || (en.Kind == cases.KindPlaybook && en.Status == "not_started")
	}
	if !found {
		t.Error("the timeline does not say the playbook did not start")
	}
}

func TestEventsEndpointRefusals(t *testing.T) {
	e := newEnv(t, nil)
	secret := strings.Repeat("s", intake.MinSecretLength)
	srv := httptest.NewServer(e.c.Intake.Handler(intake.HandlerConfig{Operators: e.c.Store, Secret: []byte(secret)}))
	t.Cleanup(srv.Close)
	good := sample(t, "guardduty-ssh-bruteforce.json")
	reason := func(body []byte) string {
		_, err := finding.ParseEvent(body)
		if err == nil {
			t.Fatalf("%s parses", body)
		}
		return err.Error()
	}
	wrongKind := bytes.Replace(good, []byte(`"GuardDuty Finding"`), []byte(`"EC2 Instance State-change Notification"`), 1)
	dupKey := bytes.Replace(good, []byte(`"version": "0",`), []byte(`"version": "0", "version": "1",`), 1)
	badType := bytes.Replace(good, []byte(`"severity": 2`), []byte(`"severity": "high"`), 1)
	tests := []struct {
		name       string
		method     string
		secret     string
		body       []byte
		wantCode   int
		wantReason string
	}{
		{"not json", http.MethodPost, secret, []byte("{nope"), 400, reason([]byte("{nope"))},
		{"not a finding event", http.MethodPost, secret, wrongKind, 400, reason(wrongKind)},
		{"duplicate key", http.MethodPost, secret, dupKey, 400, reason(dupKey)},
		{"wrong type", http.MethodPost, secret, badType, 400, reason(badType)},
		{"empty", http.MethodPost, secret, nil, 400, reason(nil)},
		{"too large", http.MethodPost, secret, bytes.Repeat([]byte(" "), finding.MaxEventSize+1), 413, "larger than"},
		{"no credential", http.MethodPost, "", good, 401, "X-Firebreak-Secret"},
		{"wrong secret", http.MethodPost, strings.Repeat("x", intake.MinSecretLength), good, 401, "does not match"},
		{"get", http.MethodGet, secret, nil, 405, "POST"},
		{"accepted", http.MethodPost, secret, good, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+intake.EventsPath, bytes.NewReader(tt.body))
			if tt.secret != "" {
				req.Header.Set(intake.SecretHeader, tt.secret)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error    string            `json:"error"`
				Outcomes []json.RawMessage `json:"outcomes"`
			}
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("the answer %q is not JSON: %v", raw, err)
			}
			if resp.StatusCode != tt.wantCode || !strings.Contains(body.Error, tt.wantReason) {
				t.Fatalf("%d %q, want %d and %q", resp.StatusCode, body.Error, tt.wantCode, tt.wantReason)
			}
			if tt.wantCode == 200 && len(body.Outcomes) != 1 {
				t.Fatalf("outcomes %s", raw)
			}
		})
	}
	// Nothing refused reached a case.
	cs, err := e.c.Cases.List(context.Background(), cases.ListOptions{})
	if err != nil || len(cs) != 1 {
		t.Fatalf("%d cases (%v), want only the accepted event's", len(cs), err)
	}
}

// credsClient is an HTTPS client presenting an operator credential.
func credsClient(t *testing.T, credsJSON []byte) *http.Client {
	t.Helper()
	var c pki.Creds
	if err := json.Unmarshal(credsJSON, &c); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.TLS()
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = nil
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func TestEventsEndpointOverTLSWithOperatorCertificates(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	secret := strings.Repeat("k", 40)
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *controller.IncidentConfig) {
		c.EventsListen = "127.0.0.1:0"
		c.EventsSecretFile = secretFile
	})
	url := "https://" + e.c.EventsAddr() + intake.EventsPath
	admin, err := os.ReadFile(filepath.Join(e.c.DataDir, controller.AdminCredsFile))
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := e.c.Operator.AddOperator(playbookruntest.Admin(context.Background()),
		&operatorv1.AddOperatorRequest{Name: "val", Role: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	post := func(c *http.Client, header string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(sample(t, "guardduty-ssh-bruteforce.json")))
		if header != "" {
			req.Header.Set(intake.SecretHeader, header)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(credsClient(t, admin), ""); code != 200 || !strings.Contains(body, `"case_created":true`) {
		t.Fatalf("admin certificate: %d %s", code, body)
	}
	if code, body := post(credsClient(t, viewer.GetCredsJson()), ""); code != 403 || !strings.Contains(body, "responder") {
		t.Fatalf("viewer certificate: %d %s", code, body)
	}
	// An EventBridge API destination presents no certificate, only the
	// secret.
	var ca pki.Creds
	_ = json.Unmarshal(admin, &ca)
	noCert, err := ca.TLS()
	if err != nil {
		t.Fatal(err)
	}
	noCert.GetClientCertificate, noCert.NextProtos = nil, nil
	anon := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: noCert}}
	if code, body := post(anon, secret); code != 200 || !strings.Contains(body, `"duplicate":true`) {
		t.Fatalf("secret header: %d %s", code, body)
	}
	if code, _ := post(anon, ""); code != 401 {
		t.Fatalf("no certificate and no secret: %d", code)
	}
	// TLS 1.2 is accepted: EventBridge API destinations speak it.
	old := noCert.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if code, _ := post(&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: old}}, secret); code != 200 {
		t.Fatalf("TLS 1.2: %d", code)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("a", intake.MinSecretLength)
	tests := []struct {
		name, path, wantErr string
	}{
		{"ok", write("ok", long+"\n", 0o600), ""},
		{"short", write("short", "abc", 0o600), "at least"},
		{"readable by others", write("open", long, 0o644), "readable by other users"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := intake.ReadSecretFile(tt.path)
			if tt.wantErr == "" {
				if err != nil || string(b) != long {
					t.Fatalf("%q %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSendEventRefusesWithInvalidArgument(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.c.Intake.SendEvent(context.Background(), "operator:admin", []byte(`{"version":"0"}`))
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "id: missing") {
		t.Fatalf("error %v", err)
	}
	var ee *intake.EventError
	if _, err := e.c.Intake.Submit(context.Background(), "x", []byte("[]")); !errors.As(err, &ee) {
		t.Fatalf("submit of a JSON array: %v", err)
	}
}

// FuzzSubmit checks that any body is either refused with a reason or
// recorded on a case, and never crashes the intake. Its seeds are small:
// the finding package fuzzes ParseEvent from full samples, and an event
// that parses costs this target database writes.
func FuzzSubmit(f *testing.F) {
	f.Add([]byte(`{"version":"0","id":"x"}`))
	f.Add([]byte(`{"Type":"Notification","Message":"{}"}`))
	dir := f.TempDir()
	playbookruntest.WritePlaybook(f, dir, "contain-instance", containPlaybook)
	rules := filepath.Join(f.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(testRules), 0o600); err != nil {
		f.Fatal(err)
	}
	c := playbookruntest.StartController(f, playbookruntest.Options{Incident: controller.IncidentConfig{PlaybookDir: dir, RulesFile: rules}})
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := c.Intake.Submit(context.Background(), "fuzz", body)
		var ee *intake.EventError
		switch {
		case errors.As(err, &ee):
			if ee.Error() == "" {
				t.Fatal("a refusal without a reason")
			}
		case err != nil:
			t.Fatalf("not a refusal, not a success: %v", err)
		default:
			for _, o := range out {
				if o.CaseID == "" {
					t.Fatalf("a finding on no case: %+v", o)
				}
			}
		}
	})
}
