package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// auditRecords is the fake's audit log: more than two ListAudit pages.
const auditRecords = 25000

func (f *fakeOperator) ListAudit(ctx context.Context, req *operatorv1.ListAuditRequest) (*operatorv1.ListAuditResponse, error) {
	f.record(ctx, "ListAudit")
	out := &operatorv1.ListAuditResponse{}
	for seq := req.GetAfterSeq() + 1; seq <= auditRecords && len(out.Records) < int(req.GetLimit()); seq++ {
		r := &operatorv1.AuditRecord{Seq: seq, At: timestamppb.Now(), Actor: "operator:alice", Action: "run.create", Subject: fmt.Sprintf("run-%d", seq)}
		switch {
		case seq%10 == 0:
			r.Actor, r.Action = "operator:bob", "console.login"
		case seq == 777:
			r.DetailJson = []byte(fmt.Sprintf(`{"reason":%q}`, hostile))
		}
		out.Records = append(out.Records, r)
	}
	return out, nil
}

func (f *fakeOperator) VerifyAudit(ctx context.Context, _ *operatorv1.VerifyAuditRequest) (*operatorv1.VerifyAuditResponse, error) {
	f.record(ctx, "VerifyAudit")
	return &operatorv1.VerifyAuditResponse{Ok: true, Records: auditRecords, HeadHash: "abc123"}, nil
}

var seqRE = `<tr><td>%d</td>`

func TestAuditLogIsFilteredAndPaged(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	tests := []struct {
		query, wantTotal string
		wantFirst        uint64
		wantFiltered     bool
	}{
		{"", "25000", 25000, false},
		{"?actor=operator:bob", "2500", 25000, true},
		{"?action=console.*", "2500", 25000, true},
		{"?action=run.create&subject=run-777", "1", 777, true},
		{"?q=document.title", "1", 777, true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := get(t, vic, tc.srv.URL+"/audit"+tt.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if m := totalRE.FindStringSubmatch(body); m == nil || m[1] != tt.wantTotal {
				t.Fatalf("total = %v, want %s", m, tt.wantTotal)
			}
			if !strings.Contains(body, fmt.Sprintf(seqRE, tt.wantFirst)) {
				t.Fatalf("the newest matching record %d is not shown", tt.wantFirst)
			}
			if got := strings.Contains(body, "(filtered)"); got != tt.wantFiltered {
				t.Fatalf("says filtered = %v, want %v", got, tt.wantFiltered)
			}
			if strings.Count(body, "<tr><td>") > 50 || strings.Contains(body, "<script>document") {
				t.Fatalf("more than a page, or hostile text as markup")
			}
		})
	}
	_, first := get(t, vic, tc.srv.URL+"/audit?actor=operator:bob")
	next := strings.ReplaceAll(nextRE.FindStringSubmatch(first)[1], "&amp;", "&")
	_, second := get(t, vic, tc.srv.URL+next)
	if !strings.Contains(second, fmt.Sprintf(seqRE, 25000-500)) || !strings.Contains(second, "Showing 51–100 of") {
		t.Fatalf("the second page of bob's records does not follow the first")
	}
}

func TestAuditVerify(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	if resp, _ := post(t, vic, tc.srv.URL+"/audit/verify", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a verify without the token: %d", resp.StatusCode)
	}
	resp, body := post(t, vic, tc.srv.URL+"/audit/verify", url.Values{"csrf": {tc.csrf(t, vic)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "The chain verifies: 25000 records, head abc123") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !contains(tc.op.called(), "VerifyAudit by vic") {
		t.Fatalf("the check did not go through the operator service as vic: %v", tc.op.called())
	}
}
