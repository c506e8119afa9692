package awsemu

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
)

func TestGetCallerIdentity(t *testing.T) {
	l := newLab(t, 3)
	tests := []struct {
		name    string
		cfg     aws.Config
		account string
		arn     string
	}{
		{"iam user", l.controller(), LabAccountID(1), "arn:aws:iam::" + LabAccountID(1) + ":user/" + LabControllerUser},
		{"account root", l.root(), LabAccountID(0), "arn:aws:iam::" + LabAccountID(0) + ":root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := sts.NewFromConfig(tt.cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
			ok(t, err)
			if aws.ToString(out.Account) != tt.account || aws.ToString(out.Arn) != tt.arn {
				t.Fatalf("got %s %s, want %s %s", aws.ToString(out.Account), aws.ToString(out.Arn), tt.account, tt.arn)
			}
		})
	}
}

func TestSigV4Refusals(t *testing.T) {
	l := newLab(t, 3)
	good := labKey("controller/" + LabAccountID(1))
	tests := []struct {
		name string
		cfg  aws.Config
		code string
	}{
		{"unknown key", l.cfg("AKIAUNKNOWNKEY000000", good.Secret, ""), "InvalidClientTokenId"},
		{"wrong secret", l.cfg(good.ID, "not-the-secret-not-the-secret-not-the-se", ""), "SignatureDoesNotMatch"},
		{"session key without token", l.cfg("ASIA"+good.ID[4:], good.Secret, ""), "InvalidClientTokenId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sts.NewFromConfig(tt.cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
			wantCode(t, err, tt.code)
		})
	}
}

// assumeResponder assumes the responder role of a member account through
// the worker role, as a Firebreak worker does.
func (l *lab) assumeWorker(t testing.TB) aws.Config {
	t.Helper()
	out, err := sts.NewFromConfig(l.controller()).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + LabAccountID(1) + ":role/" + LabWorkerRole),
		RoleSessionName: aws.String("worker-1"),
	})
	ok(t, err)
	c := out.Credentials
	return l.cfg(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
}

func (l *lab) assumeResponder(t testing.TB, member int) aws.Config {
	t.Helper()
	out, err := sts.NewFromConfig(l.assumeWorker(t)).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + LabAccountID(member) + ":role/" + LabResponderRole),
		RoleSessionName: aws.String("firebreak-case-1"),
		ExternalId:      aws.String(LabExternalID),
	})
	ok(t, err)
	c := out.Credentials
	return l.cfg(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
}

func TestAssumeRole(t *testing.T) {
	l := newLab(t, 3)
	worker := l.assumeWorker(t)
	member := LabAccountID(2)
	responderARN := "arn:aws:iam::" + member + ":role/" + LabResponderRole
	tests := []struct {
		name string
		cfg  aws.Config
		in   sts.AssumeRoleInput
		code string
	}{
		{"worker assumes responder", worker, sts.AssumeRoleInput{RoleArn: aws.String(responderARN), ExternalId: aws.String(LabExternalID)}, ""},
		{"with source identity and tags", worker, sts.AssumeRoleInput{RoleArn: aws.String(responderARN), ExternalId: aws.String(LabExternalID),
			SourceIdentity: aws.String("alice@example.com"), Tags: []ststypes.Tag{{Key: aws.String("case"), Value: aws.String("42")}}}, ""},
		{"wrong external id", worker, sts.AssumeRoleInput{RoleArn: aws.String(responderARN), ExternalId: aws.String("guess")}, "AccessDenied"},
		{"no external id", worker, sts.AssumeRoleInput{RoleArn: aws.String(responderARN)}, "AccessDenied"},
		{"role missing", worker, sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + member + ":role/Nope"), ExternalId: aws.String(LabExternalID)}, "AccessDenied"},
		{"untrusted principal", l.compromised(2), sts.AssumeRoleInput{RoleArn: aws.String(responderARN), ExternalId: aws.String(LabExternalID)}, "AccessDenied"},
		{"chained session over one hour", worker, sts.AssumeRoleInput{RoleArn: aws.String(responderARN), ExternalId: aws.String(LabExternalID), DurationSeconds: aws.Int32(7200)}, "ValidationError"},
		{"over the role's maximum session", l.controller(), sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + LabAccountID(1) + ":role/" + LabWorkerRole), DurationSeconds: aws.Int32(7200)}, "ValidationError"},
		{"root may not assume roles", l.root(), sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + LabAccountID(0) + ":role/" + LabOrgReaderRole)}, "AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.RoleSessionName = aws.String("case-7")
			out, err := sts.NewFromConfig(tt.cfg).AssumeRole(ctx(t), &in)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil {
				t.Fatalf("AssumeRole: %v", err)
			}
			if got, want := aws.ToString(out.AssumedRoleUser.Arn), "arn:aws:sts::"+member+":assumed-role/"+LabResponderRole+"/case-7"; got != want {
				t.Fatalf("assumed role ARN %s, want %s", got, want)
			}
			if exp := aws.ToTime(out.Credentials.Expiration); !exp.Equal(l.clock.Now().Add(time.Hour)) {
				t.Fatalf("expiration %s, want one hour after %s", exp, l.clock.Now())
			}
			id, err := sts.NewFromConfig(l.cfg(aws.ToString(out.Credentials.AccessKeyId), aws.ToString(out.Credentials.SecretAccessKey),
				aws.ToString(out.Credentials.SessionToken))).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
			ok(t, err)
			if aws.ToString(id.Account) != member {
				t.Fatalf("session account %s, want %s", aws.ToString(id.Account), member)
			}
		})
	}
}

func TestAssumeRoleAccessDeniedMessage(t *testing.T) {
	l := newLab(t, 3)
	arn := "arn:aws:iam::" + LabAccountID(2) + ":role/" + LabResponderRole
	_, err := sts.NewFromConfig(l.compromised(2)).AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: aws.String(arn), RoleSessionName: aws.String("x1")})
	want := "User: arn:aws:iam::" + LabAccountID(2) + ":user/" + LabCompromisedUser + " is not authorized to perform: sts:AssumeRole on resource: " + arn
	var msg string
	if err != nil {
		msg = err.Error()
	}
	if apiCode(err) != "AccessDenied" || !strings.Contains(msg, want) {
		t.Fatalf("got %v, want AccessDenied with %q", err, want)
	}
}

func TestExpiredSession(t *testing.T) {
	l := newLab(t, 3)
	responder := l.assumeResponder(t, 2)
	_, err := sts.NewFromConfig(responder).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	l.clock.Advance(time.Hour + time.Second)
	_, err = sts.NewFromConfig(responder).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	wantCode(t, err, "ExpiredToken")
}

func TestInstanceCredentials(t *testing.T) {
	l := newLab(t, 3)
	member := LabAccountID(2)
	web1 := instanceID(2, "web-1")
	creds, err := l.emu.IssueInstanceCredentials(member, "us-east-1", web1)
	ok(t, err)
	cfg := l.cfg(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	if want := "arn:aws:sts::" + member + ":assumed-role/AppInstanceRole/" + web1; aws.ToString(id.Arn) != want {
		t.Fatalf("instance identity %s, want %s", aws.ToString(id.Arn), want)
	}
	// The role allows sqs:*; a missing queue proves the call was authorised.
	_, err = sqs.NewFromConfig(cfg).GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	wantCode(t, err, "AWS.SimpleQueueService.NonExistentQueue")

	// Deny the credentials of this one instance, as instance-profile
	// revocation does.
	deny := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnEquals":{"ec2:SourceInstanceARN":"arn:aws:ec2:us-east-1:%s:instance/%s"}}}]}`, member, web1)
	_, err = iam.NewFromConfig(l.assumeResponder(t, 2)).PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("AppInstanceRole"),
		PolicyName: aws.String("FirebreakRevokeInstance"), PolicyDocument: aws.String(deny)})
	ok(t, err)
	_, err = sqs.NewFromConfig(cfg).GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	wantCode(t, err, "AccessDenied")
	other, err := l.emu.IssueInstanceCredentials(member, "us-east-1", instanceID(2, "web-2"))
	ok(t, err)
	_, err = sqs.NewFromConfig(l.cfg(other.AccessKeyID, other.SecretAccessKey, other.SessionToken)).GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	wantCode(t, err, "AWS.SimpleQueueService.NonExistentQueue")

	if _, err := l.emu.IssueInstanceCredentials(member, "us-east-1", "i-0123456789abcdef0"); err == nil {
		t.Fatal("credentials for a missing instance")
	}
}
