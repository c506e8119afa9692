package awsemu

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// TestGetSessionTokenOutlivesTheKey checks the user-session behaviour the
// IAM containment relies on: a session minted from a key acts as the user,
// survives the key's deactivation, and stops at a deny on the user
// conditioned on aws:TokenIssueTime, while a session issued later works.
func TestGetSessionTokenOutlivesTheKey(t *testing.T) {
	l := newLab(t, 3)
	member := LabAccountID(2)
	key := l.compromised(2)
	minted, err := sts.NewFromConfig(key).GetSessionToken(ctx(t), &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(3600)})
	ok(t, err)
	c := minted.Credentials
	session := l.cfg(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))

	who, err := sts.NewFromConfig(session).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	if want := "arn:aws:iam::" + member + ":user/" + LabCompromisedUser; aws.ToString(who.Arn) != want {
		t.Fatalf("session acts as %s, want %s", aws.ToString(who.Arn), want)
	}
	_, err = lambda.NewFromConfig(session).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	ok(t, err)

	t.Run("no IAM without MFA", func(t *testing.T) {
		_, err := iam.NewFromConfig(session).GetUser(ctx(t), &iam.GetUserInput{})
		wantCode(t, err, "AccessDenied")
	})
	t.Run("no session from a session", func(t *testing.T) {
		_, err := sts.NewFromConfig(session).GetSessionToken(ctx(t), &sts.GetSessionTokenInput{})
		wantCode(t, err, "AccessDenied")
	})
	t.Run("last use of a session key is not a key's", func(t *testing.T) {
		_, err := iam.NewFromConfig(l.assumeResponder(t, 2)).GetAccessKeyLastUsed(ctx(t), &iam.GetAccessKeyLastUsedInput{AccessKeyId: c.AccessKeyId})
		wantCode(t, err, "NoSuchEntity")
	})

	responder := iam.NewFromConfig(l.assumeResponder(t, 2))
	_, err = responder.UpdateAccessKey(ctx(t), &iam.UpdateAccessKeyInput{UserName: aws.String(LabCompromisedUser),
		AccessKeyId: aws.String(labKey("ci/" + member).ID), Status: "Inactive"})
	ok(t, err)
	_, err = lambda.NewFromConfig(key).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	wantCode(t, err, "UnrecognizedClientException")
	_, err = lambda.NewFromConfig(session).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	ok(t, err) // deactivating the key does not end its sessions

	// Mint a second session before the revocation, from a fresh key state.
	_, err = responder.UpdateAccessKey(ctx(t), &iam.UpdateAccessKeyInput{UserName: aws.String(LabCompromisedUser),
		AccessKeyId: aws.String(labKey("ci/" + member).ID), Status: "Active"})
	ok(t, err)
	l.clock.Advance(2 * time.Second)
	revokeAt := l.clock.Now()
	_, err = responder.PutUserPolicy(ctx(t), &iam.PutUserPolicyInput{UserName: aws.String(LabCompromisedUser), PolicyName: aws.String("AWSRevokeOlderSessions"),
		PolicyDocument: aws.String(fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":%q}}}]}`,
			revokeAt.Format(time.RFC3339)))})
	ok(t, err)
	_, err = lambda.NewFromConfig(session).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	wantCode(t, err, "AccessDeniedException")
	_, err = lambda.NewFromConfig(key).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	ok(t, err) // a long-term key has no token issue time

	l.clock.Advance(time.Second)
	fresh, err := sts.NewFromConfig(key).GetSessionToken(ctx(t), &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(900)})
	ok(t, err)
	fc := fresh.Credentials
	freshCfg := l.cfg(aws.ToString(fc.AccessKeyId), aws.ToString(fc.SecretAccessKey), aws.ToString(fc.SessionToken))
	_, err = lambda.NewFromConfig(freshCfg).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	ok(t, err)

	l.clock.Advance(901 * time.Second)
	_, err = lambda.NewFromConfig(freshCfg).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	if err == nil {
		t.Fatal("an expired session token still works")
	}
}

func TestLabManagementAccountHasTheResponderRole(t *testing.T) {
	l := newLab(t, 3)
	out, err := sts.NewFromConfig(l.assumeWorker(t)).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + LabAccountID(0) + ":role/" + LabResponderRole),
		RoleSessionName: aws.String("discover"),
		ExternalId:      aws.String(LabExternalID),
	})
	ok(t, err)
	c := out.Credentials
	cfg := l.cfg(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	_, err = iam.NewFromConfig(cfg).ListUsers(ctx(t), &iam.ListUsersInput{})
	ok(t, err)
}
