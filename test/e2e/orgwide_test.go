package e2e_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// stolenKey is a lab member account's ci-deployer key, the one an attacker
// holds.
func stolenKey(t *testing.T, lab *awstest.Lab, account string) awsemu.AccessKeySeed {
	t.Helper()
	for _, a := range lab.Seed.Accounts {
		if a.ID != account {
			continue
		}
		for _, u := range a.Users {
			if u.Name == awsemu.LabCompromisedUser && len(u.AccessKeys) > 0 {
				return u.AccessKeys[0]
			}
		}
	}
	t.Fatalf("no %s key in %s", awsemu.LabCompromisedUser, account)
	return awsemu.AccessKeySeed{}
}

// TestOrgWideKeyContainment is issue 6's flow through the real binaries:
// a controller, a worker whose profile reaches the emulated organisation,
// account discovery, an org-wide containment of a leaked key that only one
// account holds, the attacker's key and minted session cut off, the
// CloudTrail lookup of what it did, and the rollback.
func TestOrgWideKeyContainment(t *testing.T) {
	// Management, security and three members; the third member never got
	// the responder role (a StackSet that failed there), so it is
	// unreachable.
	seed := awsemu.LabSeed(5)
	mgmt, holder, missing := awsemu.LabAccountID(0), awstest.Member(1), awstest.Member(2)
	for i := range seed.Accounts {
		if seed.Accounts[i].ID == missing {
			seed.Accounts[i].Roles = slices.DeleteFunc(seed.Accounts[i].Roles, func(r awsemu.RoleSeed) bool { return r.Name == awsemu.LabResponderRole })
		}
	}
	lab := awstest.StartWith(t, seed)
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))

	// Preparation: the organisation's accounts.
	var synced struct {
		Accounts []struct {
			ID      string   `json:"id"`
			OUPath  string   `json:"ou_path"`
			Regions []string `json:"regions"`
		} `json:"accounts"`
	}
	c.MustJSON(t, &synced, 0, "accounts", "sync", "--management-account", mgmt)
	if len(synced.Accounts) != 5 {
		t.Fatalf("synced %d accounts, want 5: %+v", len(synced.Accounts), synced)
	}

	// The attacker uses the key and mints a session from it.
	ctx := context.Background()
	key := stolenKey(t, lab, holder)
	attacker := lab.STS(key.ID, key.Secret, "")
	if _, err := attacker.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatal(err)
	}
	minted, err := attacker.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(3600)})
	if err != nil {
		t.Fatal(err)
	}
	s3As := func(id, secret, token string) *s3.Client {
		return s3.New(s3.Options{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, token)})
	}
	mc := minted.Credentials
	session := s3As(aws.ToString(mc.AccessKeyId), aws.ToString(mc.SecretAccessKey), aws.ToString(mc.SessionToken))
	if _, err := session.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		t.Fatalf("the minted session does not work before containment: %v", err)
	}
	// Throttling on the way is waited out, not failed.
	lab.Emu.ThrottleNext("iam", "UpdateAccessKey", 2)

	// One command, every account, in parallel.
	r := c.CLI(t, "run", "aws-iam-contain", "--accounts", "all", "--param", "access_key_id="+key.ID, "--param", "revoke_sessions=true",
		"--max-per-account", "1", "--reason", "leaked CI key", "--wait", "--json")
	var run e2e.RunJSON
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil {
		t.Fatalf("exit %d: %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	// The account without the role is unreachable, with the reason, while
	// the rest go on (exit 3: not every target succeeded).
	if r.Exit != 3 || run.Targets != 5 {
		t.Fatalf("exit %d, run %+v", r.Exit, run)
	}
	var rollback string
	for _, res := range run.Results {
		var out struct {
			Outcome        string `json:"outcome"`
			RollbackRecord string `json:"rollback_record"`
			Keys           []struct {
				StatusAfter string `json:"status_after"`
			} `json:"keys"`
		}
		_ = json.Unmarshal(res.Output, &out)
		switch res.Account {
		case missing:
			if res.Status != "unreachable" || !strings.Contains(res.Error, "role is missing") {
				t.Errorf("account without the role: %s %q", res.Status, res.Error)
			}
		case holder:
			if res.Status != "succeeded" || out.Outcome != "contained" || len(out.Keys) != 1 || out.Keys[0].StatusAfter != "Inactive" {
				t.Errorf("holder account: %s %s", res.Status, res.Output)
			}
			rollback = out.RollbackRecord
		default:
			if res.Status != "succeeded" || out.Outcome != "not_found_in_account" {
				t.Errorf("account %s: %s %s", res.Account, res.Status, res.Output)
			}
		}
	}
	// The throttle was hit and waited out: the holder account's worker saw
	// both throttled answers and then got through.
	var throttled, updated int
	for _, call := range lab.Emu.Calls() {
		if call.Service != "iam" || call.Operation != "UpdateAccessKey" {
			continue
		}
		switch call.ErrorCode {
		case "":
			updated++
		case "Throttling":
			throttled++
		default:
			t.Errorf("UpdateAccessKey failed with %s", call.ErrorCode)
		}
	}
	if throttled != 2 || updated == 0 {
		t.Errorf("UpdateAccessKey: %d throttled and %d succeeded, want 2 throttled and then success", throttled, updated)
	}
	if f := lab.Emu.Faults(); len(f) != 0 {
		t.Errorf("the injected throttle was not used up: %+v", f)
	}
	if _, err := attacker.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err == nil {
		t.Fatal("the leaked key still works")
	}
	if _, err := session.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Fatal("the session minted from the leaked key still works")
	}

	// What did the key do? CloudTrail, as evidence.
	var trail e2e.RunJSON
	c.MustJSON(t, &trail, 0, "run", "aws-cloudtrail-lookup", "--accounts", holder, "--param", "access_key_id="+key.ID, "--param", "start=1h", "--wait")
	var lookup struct {
		Summary struct {
			ByEventName map[string]int `json:"by_event_name"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(trail.Results[0].Output, &lookup); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"GetCallerIdentity", "GetSessionToken"} {
		if lookup.Summary.ByEventName[ev] == 0 {
			t.Errorf("CloudTrail lookup misses the attacker's %s: %v", ev, lookup.Summary.ByEventName)
		}
	}
	if len(trail.Results[0].Evidence) != 1 {
		t.Errorf("the events did not become evidence: %+v", trail.Results[0])
	}

	// Rollback restores the key.
	var undo e2e.RunJSON
	c.MustJSON(t, &undo, 0, "run", "aws-iam-uncontain", "--accounts", holder, "--param", "rollback_record="+rollback, "--wait")
	if undo.Succeeded != 1 {
		t.Fatalf("rollback %+v", undo)
	}
	if _, err := attacker.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("the key does not work after the rollback: %v", err)
	}
	var accounts []struct {
		ID string `json:"id"`
	}
	c.MustJSON(t, &accounts, 0, "accounts", "list")
	if !slices.ContainsFunc(accounts, func(a struct {
		ID string `json:"id"`
	}) bool {
		return a.ID == holder
	}) {
		t.Fatalf("accounts list %+v", accounts)
	}
}
