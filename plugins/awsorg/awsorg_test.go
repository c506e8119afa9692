package awsorg_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsorg"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

var mgmt = awsemu.LabAccountID(0)

func run(t *testing.T, lab *awstest.Lab, account string, params map[string]any) (*awsorg.Result, *sdktest.Outcome) {
	t.Helper()
	a, err := awsorg.New(awsorg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := sdktest.Execute(context.Background(), t, sdktest.Start(t, a), lab.Request(t, account), params)
	if o.Result == nil {
		return nil, o
	}
	var res awsorg.Result
	o.Output(t, &res)
	return &res, o
}

// labWithClosedAccount is the lab organisation with a nested OU and a
// suspended account in it.
func labWithClosedAccount(t *testing.T, accounts int) *awstest.Lab {
	t.Helper()
	seed := awsemu.LabSeed(accounts)
	closed := awsemu.LabAccountID(accounts)
	seed.Accounts = append(seed.Accounts, awsemu.AccountSeed{ID: closed, Name: "retired-01", Email: "aws+retired@firebreak.example", Status: "SUSPENDED"})
	for i := range seed.Organization.Units {
		if u := &seed.Organization.Units[i]; u.Name == "Workloads" {
			u.Units = append(u.Units, awsemu.OrganizationalUnitSeed{Name: "Retired", Accounts: []string{closed}})
		}
	}
	return awsresponsetest.StartLab(t, seed, awsresponsetest.NewClock())
}

// TestDiscoverTheOrganisation runs in the management account, as `firebreak
// accounts sync` does (--param account=MANAGEMENT), and checks what the
// controller stores: active accounts with their OU paths and regions, the
// suspended one skipped.
func TestDiscoverTheOrganisation(t *testing.T) {
	lab := labWithClosedAccount(t, 4)
	res, o := run(t, lab, mgmt, map[string]any{"account": mgmt})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("discovery failed: %v %s", o.Err, o.Result.GetError())
	}
	if res.ManagementAccount != mgmt || !strings.HasPrefix(res.Organization, "o-") {
		t.Fatalf("management %s, organisation %s", res.ManagementAccount, res.Organization)
	}
	var ids []string
	for _, a := range res.Accounts {
		ids = append(ids, a.ID)
		if a.Status != "ACTIVE" || a.Name == "" || a.Email == "" || len(a.Regions) == 0 {
			t.Fatalf("account %+v", a)
		}
	}
	want := []string{mgmt, awsemu.LabAccountID(1), awstest.Member(0), awstest.Member(1)}
	if !slices.Equal(ids, want) {
		t.Fatalf("accounts %v, want %v", ids, want)
	}
	byID := map[string]awsorg.Account{}
	for _, a := range res.Accounts {
		byID[a.ID] = a
	}
	m := byID[awstest.Member(0)]
	parts := strings.Split(m.OUPath, "/")
	if m.OUNames != "Root/Workloads" || !slices.Equal(m.Regions, []string{"us-east-1", "us-west-2"}) || len(parts) != 4 ||
		!strings.HasPrefix(parts[0], "r-") || parts[1] != "Root" || !strings.HasPrefix(parts[2], "ou-") || parts[3] != "Workloads" ||
		m.OrgPath != res.Organization+"/"+parts[0]+"/"+parts[2]+"/" {
		t.Fatalf("member: %+v", m)
	}
	if m := byID[mgmt]; m.OUNames != "Root" || strings.Contains(m.OUPath, "ou-") || !slices.Equal(m.Regions, []string{"us-east-1"}) {
		t.Fatalf("management account: %+v", m)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "retired-01") || !strings.Contains(res.Skipped[0], "SUSPENDED") {
		t.Fatalf("skipped %v", res.Skipped)
	}

	// The output decodes into the fields the controller reads.
	var controllerView struct {
		ManagementAccount string `json:"management_account"`
		Accounts          []struct {
			ID, Name, Email, Status string
			OUPath                  string   `json:"ou_path"`
			Regions                 []string `json:"regions"`
		} `json:"accounts"`
		Skipped []json.RawMessage `json:"skipped"`
	}
	if err := json.Unmarshal(o.Result.GetOutputJson(), &controllerView); err != nil || len(controllerView.Accounts) != 4 || controllerView.Accounts[2].OUPath == "" {
		t.Fatalf("controller view: %v %+v", err, controllerView)
	}

	calls := map[string]int{}
	for _, c := range res.APICalls {
		calls[c.Operation]++
	}
	if calls["account:ListRegions"] != 4 || calls["organizations:ListAccounts"] != 1 || calls["organizations:ListRoots"] != 1 {
		t.Fatalf("calls %v", calls)
	}
}

// TestDiscoverFiftyAccounts pages through ListAccounts (20 a page in the
// emulator, as in AWS) and survives throttling.
func TestDiscoverFiftyAccounts(t *testing.T) {
	lab := awsresponsetest.StartLab(t, awsemu.LabSeed(50), awsresponsetest.NewClock())
	lab.Emu.ThrottleNext("organizations", "ListAccounts", 1)
	res, o := run(t, lab, mgmt, nil)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("discovery failed: %v %s", o.Err, o.Result.GetError())
	}
	if len(res.Accounts) != 50 || len(res.Skipped) != 0 {
		t.Fatalf("%d accounts, %d skipped", len(res.Accounts), len(res.Skipped))
	}
	pages := 0
	for _, c := range res.APICalls {
		if c.Operation == "organizations:ListAccounts" {
			pages++
		}
	}
	if pages != 3 {
		t.Fatalf("%d ListAccounts pages, want 3", pages)
	}
}

func TestDiscoverRefusals(t *testing.T) {
	lab := awsresponsetest.StartLab(t, awsemu.LabSeed(3), awsresponsetest.NewClock())
	_, o := run(t, lab, awstest.Member(0), nil)
	if st, _ := status.FromError(o.Err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "run aws-org-discover in the management account") {
		t.Fatalf("discovery from a member account: %v", o.Err)
	}
	_, o = run(t, lab, mgmt, map[string]any{"account": awstest.Member(0)})
	if st, _ := status.FromError(o.Err); st.Code() != codes.PermissionDenied {
		t.Fatalf("account parameter that does not match the credentials: %v", o.Err)
	}
	a, _ := awsorg.New(awsorg.Config{})
	d, err := a.Describe(context.Background())
	if err != nil || sdk.CheckDescription(d) != nil || d.GetDestructive() {
		t.Fatalf("description: %v", err)
	}
}

// TestDiscoverSurvivesOneAccountsRegionsDenied denies account:ListRegions on
// one member (an explicit deny on the management account's responder role,
// evaluated by the emulator's IAM over the real SDK, as a missing trusted
// access for account.amazonaws.com refuses it in AWS): every listed account
// is kept, the task succeeds, and the denied account says what it lacks,
// why and what to do.
func TestDiscoverSurvivesOneAccountsRegionsDenied(t *testing.T) {
	seed := awsemu.LabSeed(4)
	denied := awstest.Member(1)
	for i := range seed.Accounts {
		if seed.Accounts[i].ID != mgmt {
			continue
		}
		for j := range seed.Accounts[i].Roles {
			if r := &seed.Accounts[i].Roles[j]; r.Name == awsemu.LabResponderRole {
				r.InlinePolicies["DenyOneMember"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"account:ListRegions","Resource":"arn:aws:account::` +
					mgmt + `:account/*/` + denied + `"}]}`)
			}
		}
	}
	lab := awsresponsetest.StartLab(t, seed, awsresponsetest.NewClock())
	res, o := run(t, lab, mgmt, map[string]any{"account": mgmt})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("discovery failed: %v %s", o.Err, o.Result.GetError())
	}
	if len(res.Accounts) != 4 {
		t.Fatalf("%d accounts kept, want 4", len(res.Accounts))
	}
	for _, a := range res.Accounts {
		switch {
		case a.ID == denied:
			if len(a.Regions) != 0 || len(a.Unknown) != 1 || a.Unknown[0].Field != "regions" ||
				!strings.Contains(a.Unknown[0].Reason, "account:ListRegions") || !strings.Contains(a.Unknown[0].Reason, "AccessDenied") ||
				!strings.Contains(a.Unknown[0].Remediation, "enable-aws-service-access --service-principal account.amazonaws.com") {
				t.Fatalf("denied account: %+v", a)
			}
		case len(a.Regions) == 0 || len(a.Unknown) != 0:
			t.Fatalf("account %s: %+v", a.ID, a)
		}
	}
}
