// Package awstest gives service-action tests the lab's AWS organisation in
// the in-process emulator, and credentials for one account exactly as an API
// worker would hand them to a plugin: a session of the account's
// FirebreakResponder role, assumed from the security account's worker role
// with the lab's ExternalId, through the real SDK.
package awstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Region is the lab's home region.
const Region = "us-east-1"

// Lab is a running emulator with the lab organisation.
type Lab struct {
	// Emu is the emulator, for dumps, call counts and faults.
	Emu *awsemu.Emulator
	// Endpoint is its URL.
	Endpoint string
	// Seed is the organisation it was seeded with.
	Seed *awsemu.Seed
}

// Start runs the emulator with LabSeed(accounts) until the test ends.
func Start(t testing.TB, accounts int) *Lab {
	t.Helper()
	return StartWith(t, awsemu.LabSeed(accounts))
}

// StartWith runs the emulator with a given seed until the test ends.
func StartWith(t testing.TB, seed *awsemu.Seed) *Lab {
	t.Helper()
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	return &Lab{Emu: emu, Endpoint: endpoint, Seed: seed}
}

// Member returns the id of the i-th member account (0-based).
func Member(i int) string { return awsemu.LabAccountID(2 + i) }

// SecurityAccount is the lab's security account.
func SecurityAccount() string { return awsemu.LabAccountID(1) }

// ControllerKey is the security account's controller user key, the root of
// the lab's credential chain.
func (l *Lab) ControllerKey(t testing.TB) awsemu.AccessKeySeed {
	t.Helper()
	for _, a := range l.Seed.Accounts {
		if a.ID != SecurityAccount() {
			continue
		}
		for _, u := range a.Users {
			if u.Name == awsemu.LabControllerUser && len(u.AccessKeys) > 0 {
				return u.AccessKeys[0]
			}
		}
	}
	t.Fatal("the seed has no controller user key")
	return awsemu.AccessKeySeed{}
}

// STS returns an STS client signed with static credentials.
func (l *Lab) STS(id, secret, token string) *sts.Client {
	return sts.New(sts.Options{Region: Region, BaseEndpoint: aws.String(l.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token)})
}

// Credentials assumes the worker role, then the responder role in account,
// and returns the plugin's view of the result.
func (l *Lab) Credentials(t testing.TB, account string) *pluginv1.AWSCredentials {
	t.Helper()
	ctx := context.Background()
	k := l.ControllerKey(t)
	worker, err := l.STS(k.ID, k.Secret, "").AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + SecurityAccount() + ":role/" + awsemu.LabWorkerRole),
		RoleSessionName: aws.String("firebreak-worker"),
	})
	if err != nil {
		t.Fatalf("assuming the worker role: %v", err)
	}
	w := worker.Credentials
	roleARN := "arn:aws:iam::" + account + ":role/" + awsemu.LabResponderRole
	out, err := l.STS(aws.ToString(w.AccessKeyId), aws.ToString(w.SecretAccessKey), aws.ToString(w.SessionToken)).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN),
		RoleSessionName: aws.String("firebreak-run-test"),
		ExternalId:      aws.String(awsemu.LabExternalID),
		DurationSeconds: aws.Int32(3600),
		SourceIdentity:  aws.String("tester"),
	})
	if err != nil {
		t.Fatalf("assuming %s: %v", roleARN, err)
	}
	c := out.Credentials
	return &pluginv1.AWSCredentials{
		AccessKeyId: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey), SessionToken: aws.ToString(c.SessionToken),
		Expiration: timestamppb.New(aws.ToTime(c.Expiration)), Account: account, Region: Region, EndpointUrl: l.Endpoint,
		SecurityAccount: SecurityAccount(), RoleArn: roleARN,
	}
}

// Request builds an ExecuteRequest for a service action in account.
func (l *Lab) Request(t testing.TB, account string) *pluginv1.ExecuteRequest {
	t.Helper()
	return &pluginv1.ExecuteRequest{
		Task: &pluginv1.TaskContext{TaskId: "tsk-test", RunId: "run-test", CaseId: "case-test", Operator: "tester", AgentId: "agt-worker",
			Deadline: timestamppb.New(time.Now().Add(10 * time.Minute))},
		Aws: l.Credentials(t, account),
	}
}
