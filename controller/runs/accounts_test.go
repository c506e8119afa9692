package runs

import (
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
)

func TestSelectAccountsAndRegions(t *testing.T) {
	known := []*store.Account{
		{ID: "111111111111", OUPath: "r-root/ou-sec/Security", Regions: []string{"us-east-1"}},
		{ID: "222222222222", OUPath: "r-root/ou-wl/Workloads", Regions: []string{"us-east-1", "eu-west-1"}},
		{ID: "333333333333", OUPath: "r-root/ou-wl/Workloads", Regions: []string{"us-east-1"}},
	}
	tests := []struct {
		expr    string
		want    string
		wantErr string
	}{
		{expr: "all", want: "111111111111,222222222222,333333333333"},
		{expr: "222222222222, 333333333333,222222222222", want: "222222222222,333333333333"},
		{expr: "ou=Workloads", want: "222222222222,333333333333"},
		{expr: "ou=ou-sec", want: "111111111111"},
		{expr: "ou=Nowhere", wantErr: "no known account is in OU"},
		{expr: "444444444444", wantErr: "not active members"},
		{expr: "12345", wantErr: "not a 12-digit account id"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := SelectAccounts(known, tt.expr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			var ids []string
			for _, a := range got {
				ids = append(ids, a.ID)
			}
			if strings.Join(ids, ",") != tt.want {
				t.Fatalf("got %v, want %s", ids, tt.want)
			}
		})
	}
	unread := &store.Account{ID: "444444444444", Regions: []string{}, Unknown: []store.AccountUnknown{{Field: "regions",
		Reason: "account:ListRegions: AccessDeniedException", Remediation: "aws organizations enable-aws-service-access --service-principal account.amazonaws.com"}}}
	regionTests := []struct {
		expr string
		acct *store.Account
		want string
		err  string
	}{
		{"", known[1], "", ""},
		{"all", known[1], "us-east-1,eu-west-1", ""},
		{"eu-west-1,us-east-1", known[2], "us-east-1", ""},
		{"mars-1", known[1], "", "not a region name"},
		// An account whose regions discovery could not read: runs in the
		// workers' own region, or in named regions, go on; "all" says why
		// it cannot and what to do.
		{"", unread, "", ""},
		{"us-west-2", unread, "us-west-2", ""},
		{"all", unread, "", "enable-aws-service-access"},
	}
	for _, tt := range regionTests {
		got, err := selectRegions(tt.acct, tt.expr)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("regions %q: err %v", tt.expr, err)
			}
			continue
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("regions %q for %s: %v, want %s", tt.expr, tt.acct.ID, got, tt.want)
		}
	}
}
