package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestAccountsSyncSurvivesOneAccountsRegionsDenied is issue 17's
// "discovery that survives one bad account" through the real binaries:
// account:ListRegions is denied for one member (as AWS refuses it when
// trusted access for account.amazonaws.com is missing), and still every
// listed account is stored, the denied one with what could not be learned,
// why and the fix; a run that names no regions goes on in that account,
// and --regions all says what to do.
func TestAccountsSyncSurvivesOneAccountsRegionsDenied(t *testing.T) {
	seed := awsemu.LabSeed(4)
	mgmt, denied := awsemu.LabAccountID(0), awstest.Member(1)
	for i := range seed.Accounts {
		if seed.Accounts[i].ID != mgmt {
			continue
		}
		for j := range seed.Accounts[i].Roles {
			if r := &seed.Accounts[i].Roles[j]; r.Name == awsemu.LabResponderRole {
				r.InlinePolicies["DenyOneMember"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"account:ListRegions",` +
					`"Resource":"arn:aws:account::` + mgmt + `:account/*/` + denied + `"}]}`)
			}
		}
	}
	lab := awstest.StartWith(t, seed)
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))

	type account struct {
		ID      string   `json:"id"`
		Regions []string `json:"regions"`
		Unknown []struct {
			Field       string `json:"field"`
			Reason      string `json:"reason"`
			Remediation string `json:"remediation"`
		} `json:"unknown"`
	}
	var synced struct {
		Accounts []account `json:"accounts"`
	}
	c.MustJSON(t, &synced, 0, "accounts", "sync", "--management-account", mgmt)
	var listed []account
	c.MustJSON(t, &listed, 0, "accounts", "list")
	for name, got := range map[string][]account{"sync": synced.Accounts, "list": listed} {
		if len(got) != 4 {
			t.Fatalf("%s: %d accounts, want all 4: %+v", name, len(got), got)
		}
		for _, a := range got {
			switch {
			case a.ID == denied:
				if len(a.Regions) != 0 || len(a.Unknown) != 1 || a.Unknown[0].Field != "regions" || !strings.Contains(a.Unknown[0].Reason, "AccessDenied") ||
					!strings.Contains(a.Unknown[0].Remediation, "--service-principal account.amazonaws.com") {
					t.Errorf("%s: denied account %+v", name, a)
				}
			case len(a.Regions) == 0 || len(a.Unknown) != 0:
				t.Errorf("%s: account %+v", name, a)
			}
		}
	}
	// The table shows the gap too, on stderr with the fix.
	if r := c.CLI(t, "accounts", "list"); r.Exit != 0 || !strings.Contains(r.Stdout, "unknown") || !strings.Contains(r.Stderr, "account "+denied+": regions unknown") {
		t.Errorf("accounts list: exit %d\n%s\n%s", r.Exit, r.Stdout, r.Stderr)
	}

	// A run without --regions acts in the account all the same.
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "aws-cloudtrail-lookup", "--accounts", denied, "--param", "user=nobody", "--param", "start=1h", "--wait")
	if run.Targets != 1 || run.Succeeded != 1 {
		out, _ := json.Marshal(run)
		t.Fatalf("run in the account with unknown regions: %s", out)
	}
	// --regions all cannot be planned there, and says why and what to do.
	if r := c.CLI(t, "run", "aws-cloudtrail-lookup", "--accounts", denied, "--regions", "all", "--param", "user=nobody", "--wait"); r.Exit == 0 ||
		!strings.Contains(r.Stderr, "enabled regions are unknown") || !strings.Contains(r.Stderr, "enable-aws-service-access") {
		t.Errorf("--regions all: exit %d: %s", r.Exit, r.Stderr)
	}
}
