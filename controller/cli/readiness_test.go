package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// readinessOperator answers Readiness with a fixed report.
type readinessOperator struct {
	operatorv1.UnimplementedOperatorServiceServer
	report *operatorv1.ReadinessReport
	got    *operatorv1.ReadinessRequest
}

func (f *readinessOperator) Readiness(_ context.Context, req *operatorv1.ReadinessRequest) (*operatorv1.ReadinessResponse, error) {
	f.got = req
	return &operatorv1.ReadinessResponse{Report: f.report}, nil
}

func (f *readinessOperator) ListReadinessReports(context.Context, *operatorv1.ListReadinessReportsRequest) (*operatorv1.ListReadinessReportsResponse, error) {
	return &operatorv1.ListReadinessReportsResponse{Reports: []*operatorv1.ReadinessReport{
		{Id: "rdy-2", Score: 81, GeneratedAt: timestamppb.New(t1), CreatedBy: "controller:readiness"},
		{Id: "rdy-1", Score: 64, GeneratedAt: timestamppb.New(t0), CreatedBy: "operator:root"}}}, nil
}

func TestReadinessOutputAndFailUnder(t *testing.T) {
	op := &readinessOperator{report: &operatorv1.ReadinessReport{Score: 64, Accounts: []string{"210987654302"}, Regions: []string{"us-east-1"},
		GeneratedAt: timestamppb.New(t0), Checks: []*operatorv1.ReadinessCheck{
			{Id: "people.approvers", Status: "fail", Evidence: "1 operator(s) may approve: root", Remediation: "firebreak operator add NAME --role approver"},
			{Id: "detection.guardduty", Account: "210987654302", Region: "us-east-1", Status: "ok", Evidence: "detector is ENABLED"},
		}}}
	dial := serve(t, op)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"text", []string{"readiness"}, ExitOK, "Readiness score: 64/100"},
		{"above the bar", []string{"readiness", "--fail-under", "60"}, ExitOK, "fix: firebreak operator add NAME --role approver"},
		{"below the bar", []string{"readiness", "--fail-under", "65"}, ExitBelowScore, "Readiness score: 64/100"},
		{"markdown", []string{"readiness", "--format", "md"}, ExitOK, "| fail | people.approvers | - | 1 operator(s) may approve: root |"},
		{"html", []string{"readiness", "--format", "html"}, ExitOK, "<tr class=\"fail\"><td>fail</td><td>people.approvers</td>"},
		{"bad format", []string{"readiness", "--format", "pdf"}, ExitError, ""},
		{"history", []string{"readiness", "history"}, ExitOK, "controller:readiness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, dial, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.out) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", r.code, tt.code, r.stdout, r.stderr)
			}
		})
	}
	r := run(t, dial, "readiness", "--json", "--accounts", "ou=Workloads", "--regions", "all", "--save", "--fail-under", "90")
	var got struct {
		Score    int      `json:"score"`
		Accounts []string `json:"accounts"`
		Regions  []string `json:"regions"`
		Checks   []struct {
			ID, Account, Region, Status, Evidence, Remediation string
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitBelowScore {
		t.Fatalf("exit %d: %v\n%s", r.code, err, r.stdout)
	}
	if got.Score != 64 || len(got.Checks) != 2 || got.Checks[1].Account != "210987654302" || got.Checks[1].Region != "us-east-1" || got.Checks[0].Remediation == "" {
		t.Fatalf("JSON %+v", got)
	}
	if op.got.GetAccounts() != "ou=Workloads" || op.got.GetRegions() != "all" || !op.got.GetSave() {
		t.Fatalf("request %+v", op.got)
	}
}
