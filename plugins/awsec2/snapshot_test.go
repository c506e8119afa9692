package awsec2_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

func mustSnapshot(t testing.TB, req *pluginv1.ExecuteRequest, params map[string]any) *awsec2.SnapshotResult {
	t.Helper()
	o := run(t, awsec2.NewSnapshot(awsec2.Config{}), req, params)
	var res awsec2.SnapshotResult
	o.Output(t, &res)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("snapshot failed: %v %s", o.Err, o.Result.GetError())
	}
	return &res
}

// securityEC2 is an EC2 client of the security account's worker role.
func securityEC2(t testing.TB, lab *awstest.Lab) *ec2.Client {
	t.Helper()
	k := lab.ControllerKey(t)
	out, err := lab.STS(k.ID, k.Secret, "").AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + awstest.SecurityAccount() + ":role/" + awsemu.LabWorkerRole), RoleSessionName: aws.String("test")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	creds := &pluginv1.AWSCredentials{AccessKeyId: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken), Account: awstest.SecurityAccount(), Region: awstest.Region, EndpointUrl: lab.Endpoint}
	clients, err := awsec2.NewClients(creds)
	if err != nil {
		t.Fatal(err)
	}
	return clients.EC2.(*ec2.Client)
}

func TestSnapshotTakesCrashConsistentSnapshotsOncePerRun(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	req := lab.Request(t, member)
	lab.Emu.ThrottleNext("ec2", "CreateSnapshots", 1)
	res := mustSnapshot(t, req, map[string]any{"instance_id": id, "case_id": "case-42"})
	if res.Reused || len(res.Snapshots) != 2 || res.Changes != 1 {
		t.Fatalf("result %+v", res)
	}
	// One throttled attempt, retried: still one set of snapshots.
	if got := lab.Emu.CallCount("ec2", "CreateSnapshots"); got != 2 || len(region(t, lab.Emu.Dump(), member).Snapshots) != 2 {
		t.Fatalf("%d CreateSnapshots attempts, want 2 (one throttled) for all volumes at one point in time", got)
	}
	r := region(t, lab.Emu.Dump(), member)
	for _, v := range res.Snapshots {
		i := slices.IndexFunc(r.Snapshots, func(s awsemu.SnapshotState) bool { return s.ID == v.SnapshotID })
		if i < 0 {
			t.Fatalf("snapshot %s not in the dump", v.SnapshotID)
		}
		s := r.Snapshots[i]
		if s.Volume != v.VolumeID || s.Tags[awsec2.TagCase] != "case-42" || s.Tags[awsec2.TagRun] != "run-test" || s.Tags[awsec2.TagInstance] != id ||
			!strings.Contains(s.Description, id) || v.Device == "" {
			t.Errorf("snapshot %+v for %+v", s, v)
		}
	}
	if res.Snapshots[0].StartTime != res.Snapshots[1].StartTime {
		t.Errorf("snapshots not taken at one point in time: %v and %v", res.Snapshots[0].StartTime, res.Snapshots[1].StartTime)
	}

	// The same run again finds its snapshots.
	again := mustSnapshot(t, lab.Request(t, member), map[string]any{"instance_id": id, "case_id": "case-42"})
	if !again.Reused || again.Changes != 0 || lab.Emu.CallCount("ec2", "CreateSnapshots") != 2 {
		t.Fatalf("second snapshot of the run: %+v", again)
	}
	for i := range again.Snapshots {
		if again.Snapshots[i].SnapshotID != res.Snapshots[i].SnapshotID {
			t.Fatalf("second run reports %+v, first %+v", again.Snapshots, res.Snapshots)
		}
	}
	// Another run takes its own.
	other := lab.Request(t, member)
	other.Task.RunId = "run-other"
	if third := mustSnapshot(t, other, map[string]any{"instance_id": id}); third.Reused || lab.Emu.CallCount("ec2", "CreateSnapshots") != 3 {
		t.Fatalf("another run: %+v", third)
	}
}

func TestSnapshotCopiesUnderAKeyAndShares(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	key := "arn:aws:kms:us-east-1:" + member + ":key/11111111-2222-3333-4444-555555555555"
	params := map[string]any{"instance_id": id, "kms_key_id": key, "wait_for_completion": true}
	res := mustSnapshot(t, lab.Request(t, member), params)
	for _, v := range res.Snapshots {
		c := v.Copy
		if c == nil || c.KMSKeyID != key || !slices.Equal(c.SharedWith, []string{awstest.SecurityAccount()}) || c.State != "completed" || v.State != "completed" {
			t.Fatalf("snapshot %+v copy %+v", v, c)
		}
	}
	// The security account sees the copies, encrypted under the key.
	out, err := securityEC2(t, lab).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{RestorableByUserIds: []string{"self"}, OwnerIds: []string{member}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, s := range out.Snapshots {
		if aws.ToString(s.KmsKeyId) != key {
			t.Errorf("shared snapshot %s under key %s", aws.ToString(s.SnapshotId), aws.ToString(s.KmsKeyId))
		}
		seen = append(seen, aws.ToString(s.SnapshotId))
	}
	for _, v := range res.Snapshots {
		if !slices.Contains(seen, v.Copy.SnapshotID) {
			t.Errorf("copy %s not visible to the security account (sees %v)", v.Copy.SnapshotID, seen)
		}
	}
	// A rerun of the run copies and shares nothing more.
	calls := lab.Emu.CallCounts()
	again := mustSnapshot(t, lab.Request(t, member), params)
	if !again.Reused || again.Changes != 0 || mutatingCalls(lab.Emu.CallCounts()) != mutatingCalls(calls) {
		t.Fatalf("rerun: %+v", again)
	}
}

func TestSnapshotExplainsTheDefaultKeyCannotBeShared(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	// web-1's root volume is encrypted with the account's aws/ebs key.
	id := labInstance(t, lab, member, "web-1")
	o := run(t, awsec2.NewSnapshot(awsec2.Config{}), lab.Request(t, member), map[string]any{"instance_id": id, "share_with_account": awstest.SecurityAccount()})
	var res awsec2.SnapshotResult
	o.Output(t, &res)
	msg := o.Result.GetError()
	if !strings.Contains(msg, "default aws/ebs key") || !strings.Contains(msg, "kms_key_id") || len(res.Snapshots) != 2 {
		t.Fatalf("error %q, result %+v", msg, res)
	}
}
