package awsiam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsiam"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// fixture is a lab organisation on a test clock with both actions served
// over go-plugin's gRPC transport.
type fixture struct {
	lab       *awstest.Lab
	clock     *awsresponsetest.Clock
	contain   *sdk.Client
	uncontain *sdk.Client
}

func newFixture(t *testing.T, seed *awsemu.Seed) *fixture {
	t.Helper()
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, seed, clock)
	cfg := awsiam.Config{Clock: clock.Now}
	c, err := awsiam.NewContain(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := awsiam.NewUncontain(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{lab: lab, clock: clock, contain: sdktest.Start(t, c), uncontain: sdktest.Start(t, u)}
}

func (f *fixture) runContain(t *testing.T, account string, params map[string]any) (*awsiam.ContainResult, *sdktest.Outcome) {
	t.Helper()
	o := sdktest.Execute(context.Background(), t, f.contain, f.lab.Request(t, account), params)
	if o.Result == nil {
		return nil, o
	}
	var res awsiam.ContainResult
	o.Output(t, &res)
	return &res, o
}

func (f *fixture) runUncontain(t *testing.T, account, record string) (*awsiam.UncontainResult, *sdktest.Outcome) {
	t.Helper()
	o := sdktest.Execute(context.Background(), t, f.uncontain, f.lab.Request(t, account), map[string]any{"rollback_record": record})
	if o.Result == nil {
		return nil, o
	}
	var res awsiam.UncontainResult
	o.Output(t, &res)
	return &res, o
}

func mustSucceed(t *testing.T, o *sdktest.Outcome) {
	t.Helper()
	if o.Err != nil {
		t.Fatalf("task failed: %v", o.Err)
	}
	if o.Result.GetError() != "" {
		t.Fatalf("task failed with output: %s\n%s", o.Result.GetError(), o.Result.GetOutputJson())
	}
}

func operations(calls []awsresponse.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Operation
	}
	return out
}

// iamState is the IAM part of an account's dump, with the keys' last-use
// fields cleared: using a key changes them, and containment is not about
// them.
func iamState(t *testing.T, lab *awstest.Lab, account string) string {
	t.Helper()
	for _, a := range lab.Emu.Dump().Accounts {
		if a.ID != account {
			continue
		}
		for i := range a.Users {
			for j := range a.Users[i].AccessKeys {
				a.Users[i].AccessKeys[j].LastUsed, a.Users[i].AccessKeys[j].LastService = time.Time{}, ""
			}
		}
		b, err := json.MarshalIndent(map[string]any{"users": a.Users, "roles": a.Roles}, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	t.Fatalf("no account %s in the dump", account)
	return ""
}

func apiCode(err error) string { return awsclient.ErrorCode(err) }

// TestContainLeakedKeyAcrossTheOrganisation follows the responder's
// promise at the plugin level, as an organisation-wide run's tasks would:
// every account is asked, the owning account disables the key and revokes
// the sessions minted from it, the others report not_found_in_account, the
// attacker is stopped, and rollback restores exactly the prior state.
func TestContainLeakedKeyAcrossTheOrganisation(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(4))
	owner, other := awstest.Member(0), awstest.Member(1)
	mgmt := awsemu.LabAccountID(0)
	key := awsresponsetest.LeakedKey(t, f.lab, owner)
	attacker := awsresponsetest.Attacker(t, f.lab, owner)
	ctx := context.Background()

	// The attacker uses the key, and mints a session to keep access.
	if _, err := lambda.NewFromConfig(attacker).ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatal(err)
	}
	minted, err := sts.NewFromConfig(attacker).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	mc := minted.Credentials
	session := awsresponsetest.StaticConfig(f.lab, aws.ToString(mc.AccessKeyId), aws.ToString(mc.SecretAccessKey), aws.ToString(mc.SessionToken))
	if _, err := lambda.NewFromConfig(session).ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatal(err)
	}
	before := iamState(t, f.lab, owner)
	f.clock.Advance(time.Second)

	params := map[string]any{"access_key_id": key.ID, "revoke_sessions": true, "deny_all": false}
	for _, acct := range []string{mgmt, other} {
		res, o := f.runContain(t, acct, params)
		mustSucceed(t, o)
		if res.Outcome != awsiam.OutcomeNotFound || res.OwnerAccount != owner {
			t.Fatalf("account %s: outcome %q owner %q, want %s and %s", acct, res.Outcome, res.OwnerAccount, awsiam.OutcomeNotFound, owner)
		}
		if got := operations(res.APICalls); !slices.Equal(got, []string{"sts:GetAccessKeyInfo"}) {
			t.Fatalf("account %s made calls %v, want only sts:GetAccessKeyInfo", acct, got)
		}
		// The not-found account's record undoes nothing.
		ur, uo := f.runUncontain(t, acct, res.RollbackRecord)
		mustSucceed(t, uo)
		if ur.Outcome != awsiam.OutcomeNothingToUndo {
			t.Fatalf("account %s: rollback outcome %q", acct, ur.Outcome)
		}
	}

	res, o := f.runContain(t, owner, params)
	mustSucceed(t, o)
	if res.Outcome != awsiam.OutcomeContained || res.User != awsemu.LabCompromisedUser {
		t.Fatalf("owner: outcome %q user %q", res.Outcome, res.User)
	}
	if len(res.Keys) != 1 || res.Keys[0].StatusBefore != "Active" || res.Keys[0].StatusAfter != "Inactive" || res.Keys[0].LastUsed == nil || res.Keys[0].LastUsed.Service != "sts" {
		t.Fatalf("keys: %+v", res.Keys)
	}
	if res.SessionsRevokedBefore == nil || len(res.Policies) != 1 || res.Policies[0].PolicyName != awsiam.RevokeSessionsPolicy || res.Policies[0].Change != "added" {
		t.Fatalf("revocation: %v %+v", res.SessionsRevokedBefore, res.Policies)
	}
	want := []string{"sts:GetAccessKeyInfo", "iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:UpdateAccessKey", "iam:GetUserPolicy", "iam:PutUserPolicy"}
	if got := operations(res.APICalls); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if n := f.lab.Emu.CallCount("iam", "UpdateAccessKey"); n != 1 {
		t.Fatalf("the emulator answered %d UpdateAccessKey calls, want 1", n)
	}

	// The attacker's next call with the key fails, and so does the session
	// minted from it before containment.
	_, err = lambda.NewFromConfig(attacker).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if code := apiCode(err); code != "UnrecognizedClientException" {
		t.Fatalf("attacker's key after containment: %v (code %q)", err, code)
	}
	_, err = lambda.NewFromConfig(session).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if code := apiCode(err); code != "AccessDeniedException" {
		t.Fatalf("attacker's session after containment: %v (code %q)", err, code)
	}

	// Running it again changes nothing and its record undoes nothing.
	again, o := f.runContain(t, owner, map[string]any{"access_key_id": key.ID})
	mustSucceed(t, o)
	if again.Outcome != awsiam.OutcomeAlreadyContained || slices.Contains(operations(again.APICalls), "iam:UpdateAccessKey") {
		t.Fatalf("second containment: %q, calls %v", again.Outcome, operations(again.APICalls))
	}
	ur, uo := f.runUncontain(t, owner, again.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeNothingToUndo {
		t.Fatalf("rollback of the second containment: %q", ur.Outcome)
	}

	// Rollback reactivates the key and removes exactly the added policy.
	ur, uo = f.runUncontain(t, owner, res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeRestored || len(ur.Keys) != 1 || ur.Keys[0].Result != "reactivated" || len(ur.Policies) != 1 || ur.Policies[0].Result != "removed" {
		t.Fatalf("rollback: %+v", ur)
	}
	if after := iamState(t, f.lab, owner); after != before {
		t.Fatalf("IAM state after rollback differs from before containment:\nbefore %s\nafter %s", before, after)
	}
	if _, err := lambda.NewFromConfig(attacker).ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("the key does not work after rollback: %v", err)
	}
}

// TestRevokeRoleSessions shows an instance role's stolen session stop while
// a session issued after the revocation works, and rollback remove only
// the policy it added, putting back a replaced one.
func TestRevokeRoleSessions(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(3))
	acct := awstest.Member(0)
	ctx := context.Background()
	instance := f.lab.Emu.Dump().Accounts[2].Resources[0].Instances[0].ID
	queueCall := func(c awsemu.Credentials) error {
		cfg := awsresponsetest.StaticConfig(f.lab, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
		_, err := sqs.NewFromConfig(cfg).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("orders")})
		return err
	}
	stolen, err := f.lab.Emu.IssueInstanceCredentials(acct, awstest.Region, instance)
	if err != nil {
		t.Fatal(err)
	}
	if code := apiCode(queueCall(stolen)); code == "AccessDenied" {
		t.Fatal("the instance role may not call SQS before containment")
	}
	// An earlier revocation is in place; containment replaces it.
	responder := iam.NewFromConfig(awsresponsetest.Responder(t, f.lab, acct))
	older := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["*"],"Resource":["*"],"Condition":{"DateLessThan":{"aws:TokenIssueTime":"2024-01-01T00:00:00Z"}}}]}`
	if _, err := responder.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("AppInstanceRole"), PolicyName: aws.String(awsiam.RevokeSessionsPolicy), PolicyDocument: aws.String(older)}); err != nil {
		t.Fatal(err)
	}
	before := iamState(t, f.lab, acct)
	f.clock.Advance(1500 * time.Millisecond)

	res, o := f.runContain(t, acct, map[string]any{"role": "arn:aws:iam::" + acct + ":role/AppInstanceRole", "deny_all": false})
	mustSucceed(t, o)
	if res.Outcome != awsiam.OutcomeContained || res.Role != "AppInstanceRole" || len(res.Policies) != 1 || res.Policies[0].Change != "replaced" {
		t.Fatalf("containment: %+v", res)
	}
	if want := f.clock.Now().Truncate(time.Second).Add(time.Second); !res.SessionsRevokedBefore.Equal(want) {
		t.Fatalf("cut-off %v, want the next whole second %v", res.SessionsRevokedBefore, want)
	}
	if code := apiCode(queueCall(stolen)); code != "AccessDenied" {
		t.Fatalf("stolen session after revocation: code %q, want AccessDenied", code)
	}
	f.clock.Advance(2 * time.Second)
	fresh, err := f.lab.Emu.IssueInstanceCredentials(acct, awstest.Region, instance)
	if err != nil {
		t.Fatal(err)
	}
	if code := apiCode(queueCall(fresh)); code == "AccessDenied" {
		t.Fatal("a session issued after the revocation is denied")
	}

	ur, uo := f.runUncontain(t, acct, res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeRestored || len(ur.Policies) != 1 || ur.Policies[0].Result != "restored_previous" {
		t.Fatalf("rollback: %+v", ur)
	}
	if after := iamState(t, f.lab, acct); after != before {
		t.Fatalf("IAM state after rollback differs:\nbefore %s\nafter %s", before, after)
	}
}

// TestRevokeUserSessionsKeepingTheKey revokes a user's GetSessionToken
// sessions without touching its keys: the old session stops, a fresh one
// works.
func TestRevokeUserSessionsKeepingTheKey(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(3))
	acct := awstest.Member(0)
	ctx := context.Background()
	attacker := awsresponsetest.Attacker(t, f.lab, acct)
	mint := func() *lambda.Client {
		out, err := sts.NewFromConfig(attacker).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		return lambda.NewFromConfig(awsresponsetest.StaticConfig(f.lab, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)))
	}
	old := mint()
	res, o := f.runContain(t, acct, map[string]any{"user": awsemu.LabCompromisedUser, "deactivate_keys": false, "revoke_sessions": true,
		"delete_login_profile": true, "deny_all": false})
	mustSucceed(t, o)
	if res.Outcome != awsiam.OutcomeContained || len(res.Keys) != 0 || res.LoginProfile == nil || !res.LoginProfile.Deleted {
		t.Fatalf("containment: %+v", res)
	}
	if _, err := old.ListFunctions(ctx, &lambda.ListFunctionsInput{}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("old session: %v", err)
	}
	f.clock.Advance(2 * time.Second)
	if _, err := mint().ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	ur, uo := f.runUncontain(t, acct, res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeRestored || len(ur.Notes) == 0 || !strings.Contains(ur.Notes[0], "cannot be restored") {
		t.Fatalf("rollback: %+v", ur)
	}
}

// TestContainUserDenyAllAndRollbackLeavesChangedPolicies contains a whole
// user with AWSDenyAll attached (not an inline policy) and its sessions
// revoked, then shows that rollback leaves an inline policy someone changed
// since and says so, while undoing the rest: the key reactivated and
// AWSDenyAll detached.
func TestContainUserDenyAllAndRollbackLeavesChangedPolicies(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(3))
	acct := awstest.Member(0)
	ctx := context.Background()
	user := aws.String(awsemu.LabCompromisedUser)
	responder := iam.NewFromConfig(awsresponsetest.Responder(t, f.lab, acct))
	attached := func() []string {
		t.Helper()
		out, err := responder.ListAttachedUserPolicies(ctx, &iam.ListAttachedUserPoliciesInput{UserName: user})
		if err != nil {
			t.Fatal(err)
		}
		var arns []string
		for _, p := range out.AttachedPolicies {
			arns = append(arns, aws.ToString(p.PolicyArn))
		}
		return arns
	}
	before := attached()
	res, o := f.runContain(t, acct, map[string]any{"user": "arn:aws:iam::" + acct + ":user/" + awsemu.LabCompromisedUser, "deny_all": true, "revoke_sessions": true})
	mustSucceed(t, o)
	denyAll := "arn:aws:iam::aws:policy/AWSDenyAll"
	if res.Outcome != awsiam.OutcomeContained || len(res.Keys) != 1 || res.Keys[0].StatusAfter != "Inactive" ||
		len(res.AttachedPolicies) != 1 || res.AttachedPolicies[0].PolicyARN != denyAll || res.AttachedPolicies[0].Change != "attached" ||
		len(res.Policies) != 1 || res.Policies[0].PolicyName != awsiam.RevokeSessionsPolicy {
		t.Fatalf("containment: %+v", res)
	}
	if got := attached(); !slices.Contains(got, denyAll) || len(got) != len(before)+1 {
		t.Fatalf("attached after containment: %v (before %v)", got, before)
	}
	for _, op := range operations(res.APICalls) {
		if op == "iam:PutUserPolicy "+awsiam.LegacyDenyAllPolicy || strings.Contains(op, awsiam.LegacyDenyAllPolicy) {
			t.Fatalf("deny_all still puts an inline policy: %v", operations(res.APICalls))
		}
	}
	// Containing again changes nothing, and its record undoes nothing.
	again, o := f.runContain(t, acct, map[string]any{"user": awsemu.LabCompromisedUser, "deny_all": true})
	mustSucceed(t, o)
	if again.Outcome != awsiam.OutcomeAlreadyContained || len(again.AttachedPolicies) != 1 || again.AttachedPolicies[0].Change != "unchanged" {
		t.Fatalf("second containment: %+v", again)
	}
	changed := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*"}]}`
	if _, err := responder.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: user, PolicyName: aws.String(awsiam.RevokeSessionsPolicy), PolicyDocument: aws.String(changed)}); err != nil {
		t.Fatal(err)
	}
	ur, uo := f.runUncontain(t, acct, res.RollbackRecord)
	if uo.Result == nil || !strings.Contains(uo.Result.GetError(), "changed after the containment") {
		t.Fatalf("rollback error %v / %v, want a changed-policy failure", uo.Err, uo.Result.GetError())
	}
	if ur.Outcome != awsiam.OutcomePartial || ur.Keys[0].Result != "reactivated" || ur.Policies[0].Result != "changed_since" ||
		len(ur.AttachedPolicies) != 1 || ur.AttachedPolicies[0].Result != "detached" {
		t.Fatalf("rollback: %+v", ur)
	}
	if got := attached(); slices.Contains(got, denyAll) || len(got) != len(before) {
		t.Fatalf("attached after rollback: %v, want %v", got, before)
	}
	doc, err := responder.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: user, PolicyName: aws.String(awsiam.RevokeSessionsPolicy)})
	if err != nil || !strings.Contains(aws.ToString(doc.PolicyDocument), "s3") {
		t.Fatalf("the changed policy was not left alone: %v", err)
	}
	// Once the responder removes the changed policy by hand, undoing again
	// finds everything already undone, AWSDenyAll included.
	if _, err := responder.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: user, PolicyName: aws.String(awsiam.RevokeSessionsPolicy)}); err != nil {
		t.Fatal(err)
	}
	ur, uo = f.runUncontain(t, acct, res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeNothingToUndo || len(ur.AttachedPolicies) != 1 || ur.AttachedPolicies[0].Result != "already_gone" {
		t.Fatalf("second rollback: %+v", ur)
	}
}

// TestRefusals covers what the action refuses before changing anything.
func TestRefusals(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(3))
	acct := awstest.Member(0)
	tests := []struct {
		name   string
		params map[string]any
		code   codes.Code
		want   string
	}{
		{"service-linked role", map[string]any{"role": "AWSServiceRoleForAutoScaling"}, codes.FailedPrecondition, "service-linked role"},
		{"the responder role itself", map[string]any{"role": awsemu.LabResponderRole}, codes.PermissionDenied, "acts through"},
		{"nothing named", map[string]any{}, codes.InvalidArgument, "name what to contain"},
		{"role with a key", map[string]any{"role": "AppInstanceRole", "access_key_id": "AKIAIOSFODNN7EXAMPLE"}, codes.InvalidArgument, "give role alone"},
		{"malformed key", map[string]any{"access_key_id": "akia-nope"}, codes.InvalidArgument, "not an AWS access key id"},
		{"password of a role", map[string]any{"role": "AppInstanceRole", "delete_login_profile": true}, codes.InvalidArgument, "apply to users"},
		{"nothing to do for a role", map[string]any{"role": "AppInstanceRole", "revoke_sessions": false}, codes.InvalidArgument, "nothing to do"},
		{"another account", map[string]any{"user": "ci-deployer", "account": awstest.Member(1)}, codes.PermissionDenied, "refusing to act"},
		{"unknown parameter", map[string]any{"user": "ci-deployer", "revoke": true}, codes.InvalidArgument, "unknown field"},
		{"wrong owner named", map[string]any{"access_key_id": awsresponsetest.LeakedKey(t, f.lab, acct).ID, "user": "someone-else"}, codes.FailedPrecondition, "belongs to user ci-deployer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, o := f.runContain(t, acct, tt.params)
			st, _ := status.FromError(o.Err)
			if o.Err == nil || st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("error %v, want %s containing %q", o.Err, tt.code, tt.want)
			}
		})
	}
	for _, op := range []string{"PutRolePolicy", "PutUserPolicy", "UpdateAccessKey"} {
		if n := f.lab.Emu.CallCount("iam", op); n != 0 {
			t.Fatalf("a refused task called iam:%s %d times", op, n)
		}
	}
}

// TestThrottlingIsRetried throttles the calls that matter and expects the
// containment to finish, with the retries in its call list.
func TestThrottlingIsRetried(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(3))
	acct := awstest.Member(0)
	f.lab.Emu.ThrottleNext("iam", "UpdateAccessKey", 1)
	f.lab.Emu.ThrottleNext("sts", "GetAccessKeyInfo", 1)
	res, o := f.runContain(t, acct, map[string]any{"access_key_id": awsresponsetest.LeakedKey(t, f.lab, acct).ID})
	mustSucceed(t, o)
	if res.Outcome != awsiam.OutcomeContained {
		t.Fatalf("outcome %q", res.Outcome)
	}
	attempts := map[string]int{}
	for _, c := range res.APICalls {
		attempts[c.Operation] = c.Attempts
	}
	if attempts["iam:UpdateAccessKey"] != 2 || attempts["sts:GetAccessKeyInfo"] != 2 {
		t.Fatalf("attempts %v, want 2 for UpdateAccessKey and GetAccessKeyInfo", attempts)
	}
}

// TestKeySearchWhenLookupsAreDenied finds the key's owner by listing the
// users when STS and GetAccessKeyLastUsed are denied (as an SCP might).
func TestKeySearchWhenLookupsAreDenied(t *testing.T) {
	seed := awsemu.LabSeed(3)
	acct := awstest.Member(0)
	for i := range seed.Accounts {
		if seed.Accounts[i].ID != acct {
			continue
		}
		seed.Accounts[i].Users = append(seed.Accounts[i].Users, awsemu.UserSeed{Name: "another-user"})
		for j := range seed.Accounts[i].Roles {
			if r := &seed.Accounts[i].Roles[j]; r.Name == awsemu.LabResponderRole {
				r.InlinePolicies["DenyLookups"] = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["sts:GetAccessKeyInfo","iam:GetAccessKeyLastUsed"],"Resource":"*"}]}`
			}
		}
	}
	f := newFixture(t, seed)
	res, o := f.runContain(t, acct, map[string]any{"access_key_id": awsresponsetest.LeakedKey(t, f.lab, acct).ID})
	mustSucceed(t, o)
	if res.Outcome != awsiam.OutcomeContained || res.User != awsemu.LabCompromisedUser || len(res.Notes) < 2 {
		t.Fatalf("containment: %+v", res)
	}
	if got := operations(res.APICalls); !slices.Contains(got, "iam:ListUsers") {
		t.Fatalf("calls %v do not include the search", got)
	}
}

// TestRecordOfAnotherAccountDoesNothing hands an account another account's
// record, as an organisation-wide rollback does.
func TestRecordOfAnotherAccountDoesNothing(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(4))
	res, o := f.runContain(t, awstest.Member(0), map[string]any{"user": awsemu.LabCompromisedUser})
	mustSucceed(t, o)
	calls := f.lab.Emu.CallCounts()
	ur, uo := f.runUncontain(t, awstest.Member(1), res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeOtherAccount || ur.RecordAccount != awstest.Member(0) || len(ur.APICalls) != 0 {
		t.Fatalf("rollback elsewhere: %+v", ur)
	}
	after := f.lab.Emu.CallCounts()
	for op, n := range after {
		if strings.HasPrefix(op, "iam:") && n != calls[op] {
			t.Fatalf("the other account's rollback called %s", op)
		}
	}
}

// TestForgedRecordsAreRefused: a rollback record is a parameter, so one
// that would make rollback remove another policy, or detach anything but
// AWSDenyAll (AdministratorAccess from a role that needs it, say), is
// refused before any call.
func TestForgedRecordsAreRefused(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(4))
	acct := awstest.Member(0)
	head := `{"v":1,"action":"aws-iam-contain","account":"` + acct + `",`
	for _, tc := range []struct{ name, record, want string }{
		{"another inline policy", head + `"user":"ci-deployer","policies":[{"name":"SomethingElse","document":"{}"}]}`, "never puts"},
		{"another managed policy", head + `"role":"AppInstanceRole","attached_policies":["arn:aws:iam::aws:policy/AdministratorAccess"]}`, "attaches only AWSDenyAll"},
		{"a customer policy named like it", head + `"user":"ci-deployer","attached_policies":["arn:aws:iam::` + acct + `:policy/AWSDenyAll"]}`, "attaches only AWSDenyAll"},
		{"attachments without a principal", head + `"attached_policies":["arn:aws:iam::aws:policy/AWSDenyAll"]}`, "no user or role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := f.lab.Emu.CallCounts()
			_, uo := f.runUncontain(t, acct, tc.record)
			if uo.Err == nil || !strings.Contains(uo.Err.Error(), tc.want) {
				t.Fatalf("forged record: %v, want %q", uo.Err, tc.want)
			}
			for op, n := range f.lab.Emu.CallCounts() {
				if strings.HasPrefix(op, "iam:") && n != calls[op] {
					t.Fatalf("a refused record called %s", op)
				}
			}
		})
	}
}

func TestDescriptions(t *testing.T) {
	for _, a := range []sdk.Action{must(awsiam.NewContain(awsiam.Config{})), must(awsiam.NewUncontain(awsiam.Config{}))} {
		d, err := a.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := sdk.CheckDescription(d); err != nil {
			t.Fatal(err)
		}
		if !d.GetDestructive() || d.GetRollbackAction() == "" || !slices.Equal(d.GetRoles(), []string{"worker"}) {
			t.Fatalf("%s: destructive %v rollback %q roles %v", d.GetName(), d.GetDestructive(), d.GetRollbackAction(), d.GetRoles())
		}
		for _, p := range d.GetParams() {
			if p.GetDescription() == "" {
				t.Fatalf("%s: parameter %s has no description", d.GetName(), p.GetName())
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}

// TestLegacyDenyAllRecordIsUndone: a containment by an earlier version put
// the inline policy FirebreakDenyAll for deny_all; its rollback record is
// still undone after the upgrade.
func TestLegacyDenyAllRecordIsUndone(t *testing.T) {
	f := newFixture(t, awsemu.LabSeed(4))
	acct := awstest.Member(0)
	ctx := context.Background()
	responder := iam.NewFromConfig(awsresponsetest.Responder(t, f.lab, acct))
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"FirebreakDenyAll","Effect":"Deny","Action":"*","Resource":"*"}]}`
	if _, err := responder.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("AppInstanceRole"), PolicyName: aws.String(awsiam.LegacyDenyAllPolicy), PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	docJSON, _ := json.Marshal(doc)
	record := `{"v":1,"action":"aws-iam-contain","account":"` + acct + `","role":"AppInstanceRole","policies":[{"name":"FirebreakDenyAll","document":` + string(docJSON) + `}]}`
	ur, uo := f.runUncontain(t, acct, record)
	mustSucceed(t, uo)
	if ur.Outcome != awsiam.OutcomeRestored || len(ur.Policies) != 1 || ur.Policies[0].Result != "removed" {
		t.Fatalf("legacy rollback: %+v", ur)
	}
	if _, err := responder.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("AppInstanceRole"), PolicyName: aws.String(awsiam.LegacyDenyAllPolicy)}); apiCode(err) != "NoSuchEntity" {
		t.Fatalf("FirebreakDenyAll is still on the role: %v", err)
	}
}
