package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awsiam"
	"github.com/firebreak-ir/firebreak/plugins/awslambda"
	"github.com/firebreak-ir/firebreak/plugins/awsorg"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awss3"
	"github.com/firebreak-ir/firebreak/plugins/awsscope"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/awstrail"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

var subRef = regexp.MustCompile(`\$\{(!?)([^}]*)\}`)

// resolve evaluates the Ref and Fn::Sub of a policy document with vals.
func resolve(v any, vals map[string]string) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := resolve(e, vals)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		if ref, ok := x["Ref"].(string); ok && len(x) == 1 {
			val, known := vals[ref]
			if !known {
				return nil, fmt.Errorf("no value for Ref %s", ref)
			}
			return val, nil
		}
		if sub, ok := x["Fn::Sub"].(string); ok && len(x) == 1 {
			var err error
			out := subRef.ReplaceAllStringFunc(sub, func(m string) string {
				g := subRef.FindStringSubmatch(m)
				if g[1] == "!" {
					return "${" + g[2] + "}"
				}
				val, known := vals[g[2]]
				if !known {
					err = fmt.Errorf("no value for ${%s}", g[2])
				}
				return val
			})
			return out, err
		}
		out := map[string]any{}
		for k, e := range x {
			if strings.HasPrefix(k, "Fn::") {
				return nil, fmt.Errorf("%s in a policy is not resolved by this test", k)
			}
			r, err := resolve(e, vals)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

func policyText(t *testing.T, doc any, vals map[string]string) awsemu.PolicyText {
	t.Helper()
	r, err := resolve(doc, vals)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return awsemu.PolicyText(b)
}

// templateSeed is the lab organisation with every responder role's trust
// and permissions replaced by member-account.yaml's, as a StackSet (and the
// management account's own stack) would create them.
func templateSeed(t *testing.T) *awsemu.Seed {
	t.Helper()
	tpl := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	seed := awsemu.Lab{Accounts: 3, OrgTrail: true}.Seed()
	mgmt := seed.Organization.ManagementAccount
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		vals := map[string]string{
			"AWS::Partition": "aws", "AWS::AccountId": a.ID, "AWS::Region": awstest.Region,
			"SecurityAccountId": awstest.SecurityAccount(), "WorkerRoleName": awsemu.LabWorkerRole, "ExternalId": awsemu.LabExternalID,
			"ResponderRoleName": awsemu.LabResponderRole, "ManagementAccountId": mgmt, "InstanceRolePath": "/",
			"LogArchiveAccountId": awstest.SecurityAccount(), "OrgTrailBucket": awsemu.LabTrailBucket,
		}
		for j := range a.Roles {
			r := &a.Roles[j]
			if r.Name != awsemu.LabResponderRole {
				continue
			}
			props := tpl.Resources["ResponderRole"]["Properties"].(map[string]any)
			r.TrustPolicy = policyText(t, props["AssumeRolePolicyDocument"], vals)
			r.InlinePolicies = map[string]awsemu.PolicyText{}
			for _, p := range props["Policies"].([]any) {
				pm := p.(map[string]any)
				r.InlinePolicies[pm["PolicyName"].(string)] = policyText(t, pm["PolicyDocument"], vals)
			}
			if a.ID == mgmt {
				org := tpl.Resources["OrganizationRead"]["Properties"].(map[string]any)
				r.InlinePolicies[org["PolicyName"].(string)] = policyText(t, org["PolicyDocument"], vals)
			}
			if a.ID == awstest.SecurityAccount() {
				trail := tpl.Resources["OrganizationTrailRead"]["Properties"].(map[string]any)
				r.InlinePolicies[trail["PolicyName"].(string)] = policyText(t, trail["PolicyDocument"], vals)
			}
		}
	}
	return seed
}

// TestMemberPoliciesLetThePluginsRun runs every plugin's main paths in the
// emulator (which enforces IAM policies, their resources and conditions)
// with the responder roles' trust and permissions exactly as
// member-account.yaml writes them: what the least-privilege test counts is
// also enough in practice.
func TestMemberPoliciesLetThePluginsRun(t *testing.T) {
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, templateSeed(t), clock)
	mgmt, member := awsemu.LabAccountID(0), awstest.Member(0)
	ctx := context.Background()
	key := awsresponsetest.LeakedKey(t, lab, member)
	if _, err := lambda.NewFromConfig(awsresponsetest.Attacker(t, lab, member)).ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatal(err)
	}
	instance := lab.Emu.Dump().Accounts[2].Resources[0].Instances[0].ID
	bucket := "lab-public-assets-" + member

	run := func(t *testing.T, a sdk.Action, account string, params map[string]any) map[string]any {
		t.Helper()
		clock.Advance(1e9)
		o := sdktest.Execute(ctx, t, sdktest.Start(t, a), lab.Request(t, account), params)
		if o.Err != nil {
			t.Fatalf("%v", o.Err)
		}
		if o.Result.GetError() != "" {
			t.Fatalf("%s\n%s", o.Result.GetError(), o.Result.GetOutputJson())
		}
		var out map[string]any
		if err := json.Unmarshal(o.Result.GetOutputJson(), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	iamCfg := awsiam.Config{Clock: clock.Now}
	contain, _ := awsiam.NewContain(iamCfg)
	uncontain, _ := awsiam.NewUncontain(iamCfg)
	s3Contain, _ := awss3.NewContain(awss3.Config{})
	s3Uncontain, _ := awss3.NewUncontain(awss3.Config{})
	lambdaContain, _ := awslambda.NewContain(awslambda.Config{})
	lambdaUncontain, _ := awslambda.NewUncontain(awslambda.Config{})
	lookup, _ := awstrail.New(awstrail.Config{Clock: clock.Now, Sleep: clock.Sleep})
	discover, _ := awsorg.New(awsorg.Config{})
	scope, _ := awsscope.New(awsscope.Config{Clock: clock.Now, Sleep: clock.Sleep})

	t.Run("aws-iam-contain and -uncontain, key", func(t *testing.T) {
		p := map[string]any{"access_key_id": key.ID, "deny_all": true, "revoke_sessions": true, "delete_login_profile": true}
		if out := run(t, contain, mgmt, p); out["outcome"] != awsiam.OutcomeNotFound {
			t.Fatalf("management account: %v", out["outcome"])
		}
		out := run(t, contain, member, p)
		if out["outcome"] != awsiam.OutcomeContained {
			t.Fatalf("owner: %v", out["outcome"])
		}
		run(t, uncontain, member, map[string]any{"rollback_record": out["rollback_record"]})
	})
	t.Run("aws-iam-contain and -uncontain, role", func(t *testing.T) {
		out := run(t, contain, member, map[string]any{"role": "AppInstanceRole", "deny_all": true})
		run(t, uncontain, member, map[string]any{"rollback_record": out["rollback_record"]})
	})
	t.Run("aws-s3-contain and -uncontain", func(t *testing.T) {
		out := run(t, s3Contain, member, map[string]any{"bucket": bucket, "allowed_principals": []string{"arn:aws:iam::" + member + ":role/AppInstanceRole"}})
		run(t, s3Uncontain, member, map[string]any{"bucket": bucket, "rollback_record": out["rollback_record"]})
	})
	t.Run("aws-lambda-contain and -uncontain", func(t *testing.T) {
		out := run(t, lambdaContain, member, map[string]any{"function_name": "order-processor"})
		run(t, lambdaUncontain, member, map[string]any{"function_name": "order-processor", "rollback_record": out["rollback_record"]})
	})
	t.Run("aws-cloudtrail-lookup", func(t *testing.T) {
		out := run(t, lookup, member, map[string]any{"access_key_id": key.ID})
		if n := out["summary"].(map[string]any)["events"].(float64); n < 1 {
			t.Fatalf("%v events", n)
		}
	})
	t.Run("aws-credential-scope, event history and organisation trail", func(t *testing.T) {
		out := run(t, scope, member, map[string]any{"access_key_id": key.ID, "start": "1h"})
		if n := out["scope"].(map[string]any)["events"].(float64); n < 1 {
			t.Fatalf("lookup: %v events", n)
		}
		lab.Emu.DeliverTrailLogs()
		out = run(t, scope, awstest.SecurityAccount(), map[string]any{"access_key_id": key.ID, "start": "1h", "source": "trail", "trail_bucket": awsemu.LabTrailBucket})
		if n := out["scope"].(map[string]any)["events"].(float64); n < 1 {
			t.Fatalf("trail: %v events", n)
		}
	})
	t.Run("aws-org-discover in the management account", func(t *testing.T) {
		out := run(t, discover, mgmt, map[string]any{"account": mgmt})
		if n := len(out["accounts"].([]any)); n != 3 {
			t.Fatalf("%d accounts", n)
		}
	})
	t.Run("aws-ec2 isolate, unisolate, snapshot and capture", func(t *testing.T) {
		run(t, awsec2.NewIsolate(awsec2.Config{}), member, map[string]any{"instance_id": instance, "revoke_instance_profile": true})
		run(t, awsec2.NewUnisolate(awsec2.Config{}), member, map[string]any{"instance_id": instance})
		run(t, awsec2.NewSnapshot(awsec2.Config{}), member, map[string]any{"instance_id": instance})
		run(t, awsec2.NewCapture(awsec2.Config{}), member, map[string]any{"instance_id": instance})
	})
	t.Run("the role attaches AWSDenyAll and no other managed policy", func(t *testing.T) {
		client := iam.NewFromConfig(awsresponsetest.Responder(t, lab, member))
		for _, tt := range []struct {
			policy string
			ok     bool
		}{
			{"arn:aws:iam::aws:policy/AWSDenyAll", true},
			{"arn:aws:iam::aws:policy/AdministratorAccess", false},
		} {
			_, err := client.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(awsemu.LabCompromisedUser), PolicyArn: aws.String(tt.policy)})
			if tt.ok && err != nil {
				t.Errorf("attaching %s: %v", tt.policy, err)
			}
			if code := awsclient.ErrorCode(err); !tt.ok && code != "AccessDenied" {
				t.Errorf("attaching %s: err %v, want AccessDenied", tt.policy, err)
			}
		}
		_, err := client.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("AppInstanceRole"), PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")})
		if code := awsclient.ErrorCode(err); code != "AccessDenied" {
			t.Errorf("attaching AdministratorAccess to a role: err %v, want AccessDenied", err)
		}
	})
	t.Run("the role cannot change itself", func(t *testing.T) {
		client := iam.NewFromConfig(awsresponsetest.Responder(t, lab, member))
		_, err := client.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(awsemu.LabResponderRole), PolicyName: aws.String("escalate"),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}`)})
		if code := awsclient.ErrorCode(err); code != "AccessDenied" {
			t.Fatalf("the responder role put a policy on itself: %v", err)
		}
	})
	t.Run("only the worker role, with the ExternalId and Firebreak's session tags", func(t *testing.T) {
		ck := lab.ControllerKey(t)
		w, err := lab.STS(ck.ID, ck.Secret, "").AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String("arn:aws:iam::" + awstest.SecurityAccount() + ":role/" + awsemu.LabWorkerRole), RoleSessionName: aws.String("worker")})
		if err != nil {
			t.Fatal(err)
		}
		wc := w.Credentials
		worker := lab.STS(aws.ToString(wc.AccessKeyId), aws.ToString(wc.SecretAccessKey), aws.ToString(wc.SessionToken))
		role := aws.String("arn:aws:iam::" + member + ":role/" + awsemu.LabResponderRole)
		tag := func(k string) ststypes.Tag { return ststypes.Tag{Key: aws.String(k), Value: aws.String("x")} }
		for _, tt := range []struct {
			name       string
			in         sts.AssumeRoleInput
			controller bool
			ok         bool
		}{
			{"as the worker does", sts.AssumeRoleInput{ExternalId: aws.String(awsemu.LabExternalID), SourceIdentity: aws.String("alice"),
				Tags: []ststypes.Tag{tag("firebreak:run"), tag("firebreak:case")}}, false, true},
			{"without the ExternalId", sts.AssumeRoleInput{}, false, false},
			{"with a wrong ExternalId", sts.AssumeRoleInput{ExternalId: aws.String("guess")}, false, false},
			{"with another session tag", sts.AssumeRoleInput{ExternalId: aws.String(awsemu.LabExternalID), Tags: []ststypes.Tag{tag("team")}}, false, false},
			{"as the controller user", sts.AssumeRoleInput{ExternalId: aws.String(awsemu.LabExternalID)}, true, false},
		} {
			in := tt.in
			in.RoleArn, in.RoleSessionName = role, aws.String("firebreak-run-x")
			client := worker
			if tt.controller {
				client = lab.STS(ck.ID, ck.Secret, "")
			}
			_, err := client.AssumeRole(ctx, &in)
			if (err == nil) != tt.ok {
				t.Errorf("%s: err = %v, want success %v", tt.name, err, tt.ok)
			}
		}
	})
}
