package awseradicate_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	"github.com/firebreak-ir/firebreak/plugins/awseradicate"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// seed is the lab with a stopped trail in member 1, whose responder role
// may not delete Lambda functions.
func seed() *awsemu.Seed {
	s := awsemu.LabSeed(4)
	for i := range s.Accounts {
		a := &s.Accounts[i]
		if a.ID != awstest.Member(1) {
			continue
		}
		a.Resources[0].Trails = append(a.Resources[0].Trails, awsemu.TrailSeed{Name: "member-trail", Bucket: "member-trail-logs", Stopped: true})
		for j := range a.Roles {
			if a.Roles[j].Name == awsemu.LabResponderRole {
				a.Roles[j].InlinePolicies["no-lambda-delete"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"lambda:DeleteFunction","Resource":"*"}]}`)
			}
		}
	}
	return s
}

// planted is what the "attacker" (here the responder role, which may do
// it all) leaves in one account, as the scope would name it.
type planted struct {
	backdoorKey, backdoorSecret string
	artifacts                   []trailscope.Artifact
}

func plant(t *testing.T, lab *awstest.Lab, account string) *planted {
	t.Helper()
	ctx := context.Background()
	cfg := awsresponsetest.Responder(t, lab, account)
	art := func(kind, region, id string, detail ...string) trailscope.Artifact {
		a := trailscope.Artifact{Kind: kind, Account: account, Region: region, ID: id, Detail: map[string]string{}}
		for i := 0; i+1 < len(detail); i += 2 {
			a.Detail[detail[i]] = detail[i+1]
		}
		return a
	}
	p := &planted{}
	im := iam.NewFromConfig(cfg)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(im.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("backdoor")}))
	key, err := im.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("backdoor")})
	must(key, err)
	p.backdoorKey, p.backdoorSecret = aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)
	must(im.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String("backdoor"), PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")}))
	must(lambda.NewFromConfig(cfg).CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("exfil"), Role: aws.String("arn:aws:iam::" + account + ":role/AppInstanceRole"),
		Runtime: lambdatypes.RuntimePython312, Handler: aws.String("index.handler"), Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK\x03\x04")}}))
	must(eventbridge.NewFromConfig(cfg).PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("beacon"), ScheduleExpression: aws.String("rate(5 minutes)")}))
	groups, err := ec2.NewFromConfig(cfg).DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	must(groups, err)
	group := aws.ToString(groups.SecurityGroups[0].GroupId)
	must(ec2.NewFromConfig(cfg).AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(group),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}))
	p.artifacts = []trailscope.Artifact{
		art(trailscope.KindUser, "us-east-1", "backdoor"),
		art(trailscope.KindAccessKey, "us-east-1", p.backdoorKey, "userName", "backdoor"),
		art(trailscope.KindUserPolicy, "us-east-1", "backdoor", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
		art(trailscope.KindFunction, "us-east-1", "exfil"),
		art(trailscope.KindEventRule, "us-east-1", "beacon"),
		art(trailscope.KindIngressRule, "us-east-1", group, "ipProtocol", "tcp", "fromPort", "22", "toPort", "22", "cidrIp", "0.0.0.0/0"),
		// The attacker deleted its key pair itself.
		art(trailscope.KindKeyPair, "us-east-1", "gone-already"),
	}
	return p
}

func stepsJSON(t *testing.T, steps []eradplan.Step) string {
	t.Helper()
	b, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func outcomes(res *awseradicate.Result) map[string]string {
	out := map[string]string{}
	for _, s := range res.Steps {
		out[s.Action+" "+s.Resource] = s.Outcome
	}
	return out
}

func TestEradicateAnAccount(t *testing.T) {
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, seed(), clock)
	a, err := awseradicate.New(awseradicate.Config{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	client := sdktest.Start(t, a)
	member := awstest.Member(0)
	p := plant(t, lab, member)
	steps := eradplan.Build(p.artifacts, eradplan.Options{})
	run := func(params map[string]any) (*awseradicate.Result, *sdktest.Outcome) {
		t.Helper()
		params["plan_id"], params["steps"] = "erp-test", stepsJSON(t, steps)
		o := sdktest.Execute(context.Background(), t, client, lab.Request(t, member), params)
		var res awseradicate.Result
		o.Output(t, &res)
		return &res, o
	}

	// A dry run reads every before-state, lists the calls, changes nothing.
	dry, o := run(map[string]any{"dry_run": true, "confirm_deletes": true})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("dry run: %v %s", o.Err, o.Result.GetError())
	}
	user := dry.Steps[0]
	if user.Outcome != awseradicate.OutcomeDryRun || !slices.ContainsFunc(user.Calls, func(c awseradicate.CallResult) bool {
		return c.Call == "iam:DeleteAccessKey AccessKeyId="+p.backdoorKey+" UserName=backdoor"
	}) {
		t.Fatalf("dry run of the user step %+v", user)
	}
	if got := dry.APICalls["iam:AttachUserPolicy"] + dry.APICalls["iam:DeleteUser"] + dry.APICalls["lambda:DeleteFunction"]; got != 0 {
		t.Fatalf("a dry run changed something: %v", dry.APICalls)
	}

	// Verification before eradication: every planted artifact is live
	// (the key pair the attacker removed is gone), and the task fails.
	early, o := run(map[string]any{"verify": true})
	if o.Result.GetError() == "" || !strings.Contains(o.Result.GetError(), "still live") {
		t.Fatalf("verify before eradication did not fail: %v %s", o.Err, o.Result.GetError())
	}
	wantEarly := map[string]string{
		"quarantine-delete-user backdoor": awseradicate.OutcomeLive, "delete-access-key " + p.backdoorKey: awseradicate.OutcomeLive,
		"detach-user-policy backdoor": awseradicate.OutcomeLive, "delete-function exfil": awseradicate.OutcomeLive,
		"delete-event-rule beacon": awseradicate.OutcomeLive, "revoke-ingress " + p.artifacts[5].ID: awseradicate.OutcomeLive,
		"delete-key-pair gone-already": awseradicate.OutcomeGone,
	}
	if got := outcomes(early); !mapsEqual(got, wantEarly) || early.APICalls["iam:AttachUserPolicy"] != 0 {
		t.Fatalf("verify before eradication %v (calls %v), want %v", got, early.APICalls, wantEarly)
	}

	res, o := run(map[string]any{"confirm_deletes": true})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("run: %v %s", o.Err, o.Result.GetError())
	}
	// Verification after: nothing the attacker planted is live.
	after, o := run(map[string]any{"verify": true})
	if o.Err != nil || o.Result.GetError() != "" || after.Outcomes[awseradicate.OutcomeLive] != 0 ||
		after.Outcomes[awseradicate.OutcomeGone] != len(after.Steps) {
		t.Fatalf("verify after eradication: %v %s %v", o.Err, o.Result.GetError(), outcomes(after))
	}
	want := map[string]string{
		"quarantine-delete-user backdoor": awseradicate.OutcomeDone, "delete-access-key " + p.backdoorKey: awseradicate.OutcomeDone,
		"detach-user-policy backdoor": awseradicate.OutcomeDone, "delete-function exfil": awseradicate.OutcomeDone,
		"delete-event-rule beacon": awseradicate.OutcomeDone, "revoke-ingress " + p.artifacts[5].ID: awseradicate.OutcomeDone,
		"delete-key-pair gone-already": awseradicate.OutcomeAlreadyGone,
	}
	if got := outcomes(res); !mapsEqual(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	// Each step recorded its resource's state before changing it.
	before := res.Steps[0].Before["iam:GetUser UserName=backdoor"].(map[string]any)
	if before["User"].(map[string]any)["UserName"] != "backdoor" || !res.Steps[0].Deleted {
		t.Fatalf("user step %+v", res.Steps[0])
	}
	for _, s := range res.Steps {
		if s.Outcome == awseradicate.OutcomeDone && len(s.Before) == 0 {
			t.Errorf("step %s %s recorded no before-state", s.ID, s.Action)
		}
	}
	if keys := res.Steps[1].Before["iam:ListAccessKeys UserName=backdoor"].(map[string]any)["AccessKeyMetadata"].([]any); len(keys) != 1 {
		t.Fatalf("key step before-state %+v", res.Steps[1].Before)
	}

	// What was planted is gone, and the backdoor key is refused.
	ctx := context.Background()
	cfg := awsresponsetest.Responder(t, lab, member)
	if _, err := iam.NewFromConfig(cfg).GetUser(ctx, &iam.GetUserInput{UserName: aws.String("backdoor")}); err == nil {
		t.Fatal("the backdoor user is still there")
	}
	if _, err := lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("exfil")}); err == nil {
		t.Fatal("the function is still there")
	}
	if _, err := eventbridge.NewFromConfig(cfg).DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String("beacon")}); err == nil {
		t.Fatal("the rule is still there")
	}
	_, err = sts.NewFromConfig(awsresponsetest.StaticConfig(lab, p.backdoorKey, p.backdoorSecret, "")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err == nil || !strings.Contains(err.Error(), "InvalidClientTokenId") {
		t.Fatalf("the backdoor key after eradication: %v", err)
	}

	// Run again: everything is already gone, nothing fails.
	again, o := run(map[string]any{"confirm_deletes": true})
	if o.Err != nil || o.Result.GetError() != "" || again.Outcomes[awseradicate.OutcomeAlreadyGone] != len(again.Steps) {
		t.Fatalf("second run: %v %s %v", o.Err, o.Result.GetError(), outcomes(again))
	}
}

func TestDeniedCallIsReportedAndTheRestGoesOn(t *testing.T) {
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, seed(), clock)
	a, err := awseradicate.New(awseradicate.Config{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	client := sdktest.Start(t, a)
	member := awstest.Member(1)
	p := plant(t, lab, member)
	arts := append(p.artifacts, trailscope.Artifact{Kind: trailscope.KindTrailLogging, Account: member, Region: "us-east-1", ID: "member-trail"})
	steps := eradplan.Build(arts, eradplan.Options{})
	o := sdktest.Execute(context.Background(), t, client, lab.Request(t, member), map[string]any{"plan_id": "erp-test", "steps": stepsJSON(t, steps)})
	var res awseradicate.Result
	o.Output(t, &res)
	if o.Result.GetError() == "" || !strings.Contains(o.Result.GetError(), "denied") {
		t.Fatalf("the task does not report the denied step: %q", o.Result.GetError())
	}
	got := outcomes(&res)
	if got["delete-function exfil"] != awseradicate.OutcomeDenied || got["start-logging member-trail"] != awseradicate.OutcomeDone ||
		got["delete-access-key "+p.backdoorKey] != awseradicate.OutcomeDone || res.Outcomes[awseradicate.OutcomeDenied] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	// Without confirmation the user stays, quarantined.
	if res.Steps[0].Pending == "" || res.Steps[0].Deleted {
		t.Fatalf("user step %+v", res.Steps[0])
	}
	st, err := cloudtrail.NewFromConfig(awsresponsetest.Responder(t, lab, member)).GetTrailStatus(context.Background(), &cloudtrail.GetTrailStatusInput{Name: aws.String("member-trail")})
	if err != nil || !aws.ToBool(st.IsLogging) {
		t.Fatalf("the trail is not logging again: %v", err)
	}
}

func TestStepsAreChecked(t *testing.T) {
	lab := awstest.Start(t, 4)
	a, err := awseradicate.New(awseradicate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client := sdktest.Start(t, a)
	member := awstest.Member(0)
	good := eradplan.Build([]trailscope.Artifact{{Kind: trailscope.KindKeyPair, Account: member, Region: "us-east-1", ID: "k"}}, eradplan.Options{})
	other := eradplan.Build([]trailscope.Artifact{{Kind: trailscope.KindKeyPair, Account: awstest.Member(1), Region: "us-east-1", ID: "k"}}, eradplan.Options{})
	odd := eradplan.Build([]trailscope.Artifact{{Kind: trailscope.KindKeyPair, Account: member, Region: "us-east-1", ID: "k"}}, eradplan.Options{})
	odd[0].Calls[0].Operation = "RunInstances"
	for _, tt := range []struct {
		name   string
		params map[string]any
		code   codes.Code
	}{
		{"plan id", map[string]any{"plan_id": "run-1", "steps": stepsJSON(t, good)}, codes.InvalidArgument},
		{"steps not JSON", map[string]any{"plan_id": "erp-1", "steps": "[{"}, codes.InvalidArgument},
		{"no steps", map[string]any{"plan_id": "erp-1", "steps": "[]"}, codes.InvalidArgument},
		{"another account's step", map[string]any{"plan_id": "erp-1", "steps": stepsJSON(t, other)}, codes.PermissionDenied},
		{"a call the action does not make", map[string]any{"plan_id": "erp-1", "steps": stepsJSON(t, odd)}, codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := sdktest.Execute(context.Background(), t, client, lab.Request(t, member), tt.params)
			if status.Code(o.Err) != tt.code {
				t.Fatalf("error %v, want %v", o.Err, tt.code)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
