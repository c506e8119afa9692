package awss3_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awss3"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

type fixture struct {
	lab       *awstest.Lab
	contain   *sdk.Client
	uncontain *sdk.Client
}

func newFixture(t *testing.T, accounts int) *fixture {
	t.Helper()
	lab := awsresponsetest.StartLab(t, awsemu.LabSeed(accounts), awsresponsetest.NewClock())
	c, err := awss3.NewContain(awss3.Config{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := awss3.NewUncontain(awss3.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{lab: lab, contain: sdktest.Start(t, c), uncontain: sdktest.Start(t, u)}
}

func bucketOf(account string) string { return "lab-public-assets-" + account }

func (f *fixture) runContain(t *testing.T, account, region string, params map[string]any) (*awss3.ContainResult, *sdktest.Outcome) {
	t.Helper()
	o := sdktest.Execute(context.Background(), t, f.contain, awsresponsetest.Request(t, f.lab, account, region), params)
	if o.Result == nil {
		return nil, o
	}
	var res awss3.ContainResult
	o.Output(t, &res)
	return &res, o
}

func (f *fixture) runUncontain(t *testing.T, account, bucket, record string) (*awss3.UncontainResult, *sdktest.Outcome) {
	t.Helper()
	o := sdktest.Execute(context.Background(), t, f.uncontain, f.lab.Request(t, account), map[string]any{"bucket": bucket, "rollback_record": record})
	if o.Result == nil {
		return nil, o
	}
	var res awss3.UncontainResult
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

// bucketState is the bucket's access configuration from the emulator's
// dump.
func bucketState(t *testing.T, lab *awstest.Lab, account, bucket string) awsemu.BucketState {
	t.Helper()
	for _, a := range lab.Emu.Dump().Accounts {
		if a.ID != account {
			continue
		}
		for _, b := range a.Buckets {
			if b.Name == bucket {
				return b
			}
		}
	}
	t.Fatalf("no bucket %s in account %s", bucket, account)
	return awsemu.BucketState{}
}

func operations(calls []awsresponse.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Operation
	}
	return out
}

// TestContainPublicBucketRoundTrip contains the lab's public bucket with a
// deny for everyone but listed principals, from a task in another region,
// and rolls back to exactly the prior state.
func TestContainPublicBucketRoundTrip(t *testing.T) {
	f := newFixture(t, 3)
	acct := awstest.Member(0)
	bucket := bucketOf(acct)
	before := bucketState(t, f.lab, acct, bucket)
	if before.PublicAccessBlock != nil || !before.PublicACL || before.Policy == "" {
		t.Fatalf("the lab bucket is not public as expected: %+v", before)
	}
	app := "arn:aws:iam::" + acct + ":role/AppInstanceRole"
	res, o := f.runContain(t, acct, "us-west-2", map[string]any{"bucket": bucket, "allowed_principals": []string{app, "111122223333"}})
	mustSucceed(t, o)
	if res.Outcome != awss3.OutcomeContained || res.Region != "us-east-1" || !res.PolicyChanged || !res.Before.PublicACL || res.Before.PublicAccessBlock != nil {
		t.Fatalf("containment: %+v", res)
	}
	responder := "arn:aws:iam::" + acct + ":role/" + awsemu.LabResponderRole
	if !slices.Contains(res.AllowedPrincipals, responder) || !slices.Contains(res.AllowedPrincipals, app) {
		t.Fatalf("allowed principals %v lack the responder role or the asked-for role", res.AllowedPrincipals)
	}
	want := []string{"s3:GetBucketLocation", "s3:GetBucketPolicy", "s3:GetBucketAcl", "s3:GetPublicAccessBlock", "s3:PutBucketPolicy", "s3:PutPublicAccessBlock"}
	if got := operations(res.APICalls); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}

	during := bucketState(t, f.lab, acct, bucket)
	if during.PublicAccessBlock == nil || !during.PublicAccessBlock.BlockPublicAcls || !during.PublicAccessBlock.IgnorePublicAcls ||
		!during.PublicAccessBlock.BlockPublicPolicy || !during.PublicAccessBlock.RestrictPublicBuckets {
		t.Fatalf("public access block after containment: %+v", during.PublicAccessBlock)
	}
	var doc struct {
		Statement []struct {
			Sid       string
			Effect    string
			Condition map[string]map[string][]string
		}
	}
	if err := json.Unmarshal([]byte(during.Policy), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 2 || doc.Statement[0].Sid != "PublicRead" || doc.Statement[1].Sid != awss3.ContainSid || doc.Statement[1].Effect != "Deny" ||
		!slices.Contains(doc.Statement[1].Condition["StringNotLike"]["aws:PrincipalArn"], responder) ||
		!slices.Equal(doc.Statement[1].Condition["StringNotEquals"]["aws:PrincipalAccount"], []string{"111122223333"}) {
		t.Fatalf("merged policy: %s", during.Policy)
	}

	ur, uo := f.runUncontain(t, acct, bucket, res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awss3.OutcomeRestored || ur.PublicAccessBlock != awss3.Deleted || ur.Policy != awss3.Restored || ur.ACLChangedSince {
		t.Fatalf("rollback: %+v", ur)
	}
	if after := bucketState(t, f.lab, acct, bucket); !jsonEqual(t, after, before) {
		t.Fatalf("bucket after rollback %+v, before containment %+v", after, before)
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

// TestContainTwiceAndRollBackInOrder contains without a policy change,
// contains again (nothing to do), and checks each record undoes only its
// own changes, restoring a prior partial public access block exactly.
func TestContainTwiceAndRollBackInOrder(t *testing.T) {
	f := newFixture(t, 3)
	acct := awstest.Member(0)
	bucket := bucketOf(acct)
	client := s3.NewFromConfig(awsresponsetest.Responder(t, f.lab, acct), func(o *s3.Options) { o.UsePathStyle = true })
	prior := &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(false), BlockPublicPolicy: aws.Bool(false), RestrictPublicBuckets: aws.Bool(false)}
	if _, err := client.PutPublicAccessBlock(context.Background(), &s3.PutPublicAccessBlockInput{Bucket: aws.String(bucket), PublicAccessBlockConfiguration: prior}); err != nil {
		t.Fatal(err)
	}
	before := bucketState(t, f.lab, acct, bucket)

	first, o := f.runContain(t, acct, "", map[string]any{"bucket": bucket})
	mustSucceed(t, o)
	if first.Outcome != awss3.OutcomeContained || first.PolicyChanged || first.Before.PublicAccessBlock == nil || !first.Before.PublicAccessBlock.BlockPublicAcls {
		t.Fatalf("first containment: %+v", first)
	}
	second, o := f.runContain(t, acct, "", map[string]any{"bucket": bucket})
	mustSucceed(t, o)
	if second.Outcome != awss3.OutcomeAlreadyContained || slices.Contains(operations(second.APICalls), "s3:PutPublicAccessBlock") {
		t.Fatalf("second containment: %s, calls %v", second.Outcome, operations(second.APICalls))
	}
	ur, uo := f.runUncontain(t, acct, bucket, second.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awss3.OutcomeNothingToUndo || len(ur.APICalls) != 0 {
		t.Fatalf("rollback of the second containment: %+v", ur)
	}
	ur, uo = f.runUncontain(t, acct, bucket, first.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awss3.OutcomeRestored || ur.PublicAccessBlock != awss3.Restored || ur.Policy != awss3.Untouched {
		t.Fatalf("rollback: %+v", ur)
	}
	if after := bucketState(t, f.lab, acct, bucket); !jsonEqual(t, after, before) {
		t.Fatalf("bucket after rollback %+v, before %+v", after, before)
	}
}

// TestRollbackLeavesWhatChangedSince restores the policy but not Block
// Public Access settings someone changed during containment.
func TestRollbackLeavesWhatChangedSince(t *testing.T) {
	f := newFixture(t, 3)
	acct := awstest.Member(0)
	bucket := bucketOf(acct)
	res, o := f.runContain(t, acct, "", map[string]any{"bucket": bucket, "allowed_principals": []string{"arn:aws:iam::" + acct + ":role/AppInstanceRole"}})
	mustSucceed(t, o)
	client := s3.NewFromConfig(awsresponsetest.Responder(t, f.lab, acct), func(o *s3.Options) { o.UsePathStyle = true })
	changed := &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(false), RestrictPublicBuckets: aws.Bool(true)}
	if _, err := client.PutPublicAccessBlock(context.Background(), &s3.PutPublicAccessBlockInput{Bucket: aws.String(bucket), PublicAccessBlockConfiguration: changed}); err != nil {
		t.Fatal(err)
	}
	ur, uo := f.runUncontain(t, acct, bucket, res.RollbackRecord)
	if uo.Result == nil || !strings.Contains(uo.Result.GetError(), "changed after containment") {
		t.Fatalf("rollback: %v / %v", uo.Err, uo.Result.GetError())
	}
	if ur.Outcome != awss3.OutcomePartial || ur.PublicAccessBlock != awss3.ChangedSince || ur.Policy != awss3.Restored {
		t.Fatalf("rollback: %+v", ur)
	}
	if st := bucketState(t, f.lab, acct, bucket); st.PublicAccessBlock == nil || st.PublicAccessBlock.BlockPublicPolicy {
		t.Fatalf("the changed settings were not left alone: %+v", st.PublicAccessBlock)
	}
}

func TestS3Refusals(t *testing.T) {
	f := newFixture(t, 4)
	acct := awstest.Member(0)
	tests := []struct {
		name   string
		params map[string]any
		code   codes.Code
		want   string
	}{
		{"bad bucket name", map[string]any{"bucket": "Not_A_Bucket"}, codes.InvalidArgument, "not an S3 bucket name"},
		{"another account's bucket", map[string]any{"bucket": bucketOf(awstest.Member(1))}, codes.NotFound, "is not account " + acct + "'s"},
		{"bad principal", map[string]any{"bucket": bucketOf(acct), "allowed_principals": []string{"everyone"}}, codes.InvalidArgument, "neither an IAM principal ARN"},
		{"no bucket", map[string]any{}, codes.InvalidArgument, "not an S3 bucket name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, o := f.runContain(t, acct, "", tt.params)
			st, _ := status.FromError(o.Err)
			if o.Err == nil || st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("error %v, want %s containing %q", o.Err, tt.code, tt.want)
			}
		})
	}
	res, o := f.runContain(t, acct, "", map[string]any{"bucket": bucketOf(acct)})
	mustSucceed(t, o)
	_, uo := f.runUncontain(t, acct, "some-other-bucket", res.RollbackRecord)
	if uo.Err == nil || !strings.Contains(uo.Err.Error(), "is for bucket") {
		t.Fatalf("rollback of another bucket: %v", uo.Err)
	}
	ur, uo := f.runUncontain(t, awstest.Member(1), bucketOf(acct), res.RollbackRecord)
	mustSucceed(t, uo)
	if ur.Outcome != awss3.OutcomeOtherAccount {
		t.Fatalf("rollback in another account: %+v", ur)
	}
	if n := f.lab.Emu.CallCount("s3", "PutBucketPolicy"); n != 0 {
		t.Fatalf("refused tasks put %d bucket policies", n)
	}
}

func TestS3ThrottlingIsRetried(t *testing.T) {
	f := newFixture(t, 3)
	acct := awstest.Member(0)
	f.lab.Emu.ThrottleNext("s3", "PutPublicAccessBlock", 1)
	res, o := f.runContain(t, acct, "", map[string]any{"bucket": bucketOf(acct)})
	mustSucceed(t, o)
	// The result must record the call, with both attempts; a result that
	// left the call out would otherwise pass.
	found := 0
	for _, c := range res.APICalls {
		if c.Operation != "s3:PutPublicAccessBlock" {
			continue
		}
		found++
		if c.Attempts != 2 {
			t.Fatalf("PutPublicAccessBlock made %d attempts, want 2", c.Attempts)
		}
	}
	if found != 1 {
		t.Fatalf("the result records PutPublicAccessBlock %d times, want once: %+v", found, res.APICalls)
	}
	// And the emulator saw the throttled attempt and the retried one.
	if n := f.lab.Emu.CallCount("s3", "PutPublicAccessBlock"); n != 2 {
		t.Fatalf("the emulator saw %d PutPublicAccessBlock calls, want 2 (throttled, then retried)", n)
	}
}

func TestS3Descriptions(t *testing.T) {
	c, _ := awss3.NewContain(awss3.Config{})
	u, _ := awss3.NewUncontain(awss3.Config{})
	for _, a := range []sdk.Action{c, u} {
		d, err := a.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := sdk.CheckDescription(d); err != nil {
			t.Fatal(err)
		}
		if !d.GetDestructive() || d.GetRollbackAction() == "" {
			t.Fatalf("%s is not a destructive action with a rollback", d.GetName())
		}
	}
}
