package awsemu

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// revokeOlderSessions is the policy Firebreak's aws-iam-contain puts on a
// role to cut off every session issued before a time.
func revokeOlderSessions(at time.Time) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":%q}}}]}`,
		at.UTC().Format(time.RFC3339))
}

func TestRevokeOlderSessions(t *testing.T) {
	l := newLab(t, 3)
	old := l.assumeResponder(t, 2)
	ec2Old := ec2.NewFromConfig(old)
	if _, err := ec2Old.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatalf("old session before revocation: %v", err)
	}

	l.clock.Advance(time.Minute)
	_, err := iam.NewFromConfig(old).PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{
		RoleName:       aws.String(LabResponderRole),
		PolicyName:     aws.String("AWSRevokeOlderSessions"),
		PolicyDocument: aws.String(revokeOlderSessions(l.clock.Now())),
	})
	ok(t, err)
	l.clock.Advance(time.Minute)

	_, err = ec2Old.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "UnauthorizedOperation")
	_, err = iam.NewFromConfig(old).ListRoles(ctx(t), &iam.ListRolesInput{})
	wantCode(t, err, "AccessDenied")
	// GetCallerIdentity needs no permission, so even a revoked session may call it.
	_, err = sts.NewFromConfig(old).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)

	fresh := l.assumeResponder(t, 2)
	_, err = ec2.NewFromConfig(fresh).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
}

func TestInactiveAccessKey(t *testing.T) {
	l := newLab(t, 3)
	responder := iam.NewFromConfig(l.assumeResponder(t, 2))
	key := labKey("ci/" + LabAccountID(2))
	_, err := sts.NewFromConfig(l.compromised(2)).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	_, err = responder.UpdateAccessKey(ctx(t), &iam.UpdateAccessKeyInput{
		UserName: aws.String(LabCompromisedUser), AccessKeyId: aws.String(key.ID), Status: iamtypes.StatusTypeInactive,
	})
	ok(t, err)
	_, err = sts.NewFromConfig(l.compromised(2)).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	wantCode(t, err, "InvalidClientTokenId")
	_, err = ec2.NewFromConfig(l.compromised(2)).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "AuthFailure")

	keys, err := responder.ListAccessKeys(ctx(t), &iam.ListAccessKeysInput{UserName: aws.String(LabCompromisedUser)})
	ok(t, err)
	if len(keys.AccessKeyMetadata) != 1 || keys.AccessKeyMetadata[0].Status != iamtypes.StatusTypeInactive {
		t.Fatalf("keys after deactivation: %+v", keys.AccessKeyMetadata)
	}
}

func TestExplicitDenyOnUser(t *testing.T) {
	l := newLab(t, 3)
	responder := iam.NewFromConfig(l.assumeResponder(t, 2))
	attacker := ec2.NewFromConfig(l.compromised(2))
	_, err := attacker.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
	_, err = responder.AttachUserPolicy(ctx(t), &iam.AttachUserPolicyInput{
		UserName: aws.String(LabCompromisedUser), PolicyArn: aws.String("arn:aws:iam::aws:policy/AWSDenyAll"),
	})
	ok(t, err)
	_, err = attacker.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "UnauthorizedOperation")

	attached, err := responder.ListAttachedUserPolicies(ctx(t), &iam.ListAttachedUserPoliciesInput{UserName: aws.String(LabCompromisedUser)})
	ok(t, err)
	if len(attached.AttachedPolicies) != 1 || aws.ToString(attached.AttachedPolicies[0].PolicyName) != "AWSDenyAll" {
		t.Fatalf("attached: %+v", attached.AttachedPolicies)
	}
	_, err = responder.DetachUserPolicy(ctx(t), &iam.DetachUserPolicyInput{
		UserName: aws.String(LabCompromisedUser), PolicyArn: aws.String("arn:aws:iam::aws:policy/AWSDenyAll"),
	})
	ok(t, err)
	_, err = attacker.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
}

func TestIAMOperations(t *testing.T) {
	l := newLab(t, 3)
	c := iam.NewFromConfig(l.assumeResponder(t, 2))
	user := aws.String(LabCompromisedUser)
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`
	steps := []struct {
		name string
		run  func() error
		code string
	}{
		{"GetUser", func() error {
			out, err := c.GetUser(ctx(t), &iam.GetUserInput{UserName: user})
			if err == nil && aws.ToString(out.User.Arn) != "arn:aws:iam::"+LabAccountID(2)+":user/"+LabCompromisedUser {
				return fmt.Errorf("arn %s", aws.ToString(out.User.Arn))
			}
			return err
		}, ""},
		{"GetUser missing", func() error {
			_, err := c.GetUser(ctx(t), &iam.GetUserInput{UserName: aws.String("nobody")})
			return err
		}, "NoSuchEntity"},
		{"GetUser without name as a role", func() error { _, err := c.GetUser(ctx(t), &iam.GetUserInput{}); return err }, "ValidationError"},
		{"GetRole decodes trust policy", func() error {
			out, err := c.GetRole(ctx(t), &iam.GetRoleInput{RoleName: aws.String(LabResponderRole)})
			if err != nil {
				return err
			}
			trust, err := url.QueryUnescape(aws.ToString(out.Role.AssumeRolePolicyDocument))
			if err != nil || !strings.Contains(trust, "sts:ExternalId") {
				return fmt.Errorf("trust policy %q", trust)
			}
			if out.Role.RoleLastUsed == nil || out.Role.RoleLastUsed.LastUsedDate == nil {
				return fmt.Errorf("role last used not reported")
			}
			return nil
		}, ""},
		{"GetRole missing", func() error { _, err := c.GetRole(ctx(t), &iam.GetRoleInput{RoleName: aws.String("Nope")}); return err }, "NoSuchEntity"},
		{"PutUserPolicy", func() error {
			_, err := c.PutUserPolicy(ctx(t), &iam.PutUserPolicyInput{UserName: user, PolicyName: aws.String("deny"), PolicyDocument: aws.String(doc)})
			return err
		}, ""},
		{"PutUserPolicy malformed", func() error {
			_, err := c.PutUserPolicy(ctx(t), &iam.PutUserPolicyInput{UserName: user, PolicyName: aws.String("bad"), PolicyDocument: aws.String(`{"Statement":[{"Effect":"Maybe"}]}`)})
			return err
		}, "MalformedPolicyDocument"},
		{"GetUserPolicy", func() error {
			out, err := c.GetUserPolicy(ctx(t), &iam.GetUserPolicyInput{UserName: user, PolicyName: aws.String("deny")})
			if err != nil {
				return err
			}
			if got, _ := url.QueryUnescape(aws.ToString(out.PolicyDocument)); got != doc {
				return fmt.Errorf("document %q", got)
			}
			return nil
		}, ""},
		{"ListUserPolicies", func() error {
			out, err := c.ListUserPolicies(ctx(t), &iam.ListUserPoliciesInput{UserName: user})
			if err == nil && len(out.PolicyNames) != 2 {
				return fmt.Errorf("policies %v", out.PolicyNames)
			}
			return err
		}, ""},
		{"DeleteUserPolicy", func() error {
			_, err := c.DeleteUserPolicy(ctx(t), &iam.DeleteUserPolicyInput{UserName: user, PolicyName: aws.String("deny")})
			return err
		}, ""},
		{"DeleteUserPolicy again", func() error {
			_, err := c.DeleteUserPolicy(ctx(t), &iam.DeleteUserPolicyInput{UserName: user, PolicyName: aws.String("deny")})
			return err
		}, "NoSuchEntity"},
		{"GetLoginProfile", func() error {
			_, err := c.GetLoginProfile(ctx(t), &iam.GetLoginProfileInput{UserName: user})
			return err
		}, ""},
		{"DeleteLoginProfile", func() error {
			_, err := c.DeleteLoginProfile(ctx(t), &iam.DeleteLoginProfileInput{UserName: user})
			return err
		}, ""},
		{"GetLoginProfile after delete", func() error {
			_, err := c.GetLoginProfile(ctx(t), &iam.GetLoginProfileInput{UserName: user})
			return err
		}, "NoSuchEntity"},
		{"CreateLoginProfile", func() error {
			_, err := c.CreateLoginProfile(ctx(t), &iam.CreateLoginProfileInput{UserName: user, Password: aws.String("Correct-Horse-9"), PasswordResetRequired: true})
			return err
		}, ""},
		{"CreateLoginProfile twice", func() error {
			_, err := c.CreateLoginProfile(ctx(t), &iam.CreateLoginProfileInput{UserName: user, Password: aws.String("Correct-Horse-9")})
			return err
		}, "EntityAlreadyExists"},
		{"PutRolePolicy on service-linked role", func() error {
			_, err := c.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("AWSServiceRoleForAutoScaling"), PolicyName: aws.String("x"), PolicyDocument: aws.String(doc)})
			return err
		}, "UnmodifiableEntity"},
		{"GetInstanceProfile", func() error {
			out, err := c.GetInstanceProfile(ctx(t), &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("AppInstanceRole")})
			if err == nil && (len(out.InstanceProfile.Roles) != 1 || aws.ToString(out.InstanceProfile.Roles[0].RoleName) != "AppInstanceRole") {
				return fmt.Errorf("roles %+v", out.InstanceProfile.Roles)
			}
			return err
		}, ""},
		{"GetInstanceProfile missing", func() error {
			_, err := c.GetInstanceProfile(ctx(t), &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("nope")})
			return err
		}, "NoSuchEntity"},
		{"ListInstanceProfilesForRole", func() error {
			out, err := c.ListInstanceProfilesForRole(ctx(t), &iam.ListInstanceProfilesForRoleInput{RoleName: aws.String("AppInstanceRole")})
			if err == nil && len(out.InstanceProfiles) != 1 {
				return fmt.Errorf("profiles %+v", out.InstanceProfiles)
			}
			return err
		}, ""},
		{"AttachUserPolicy missing policy", func() error {
			_, err := c.AttachUserPolicy(ctx(t), &iam.AttachUserPolicyInput{UserName: user, PolicyArn: aws.String("arn:aws:iam::aws:policy/Nope")})
			return err
		}, "NoSuchEntity"},
		{"UpdateAccessKey missing key", func() error {
			_, err := c.UpdateAccessKey(ctx(t), &iam.UpdateAccessKeyInput{UserName: user, AccessKeyId: aws.String("AKIANOTAKEY000000000"), Status: iamtypes.StatusTypeInactive})
			return err
		}, "NoSuchEntity"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := s.run()
			if s.code == "" {
				ok(t, err)
				return
			}
			wantCode(t, err, s.code)
		})
	}
}

func TestGetAccessKeyLastUsed(t *testing.T) {
	l := newLab(t, 4)
	key := labKey("ci/" + LabAccountID(2))
	_, err := ec2.NewFromConfig(l.compromised(2)).DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	ok(t, err)
	tests := []struct {
		name   string
		member int
		code   string
	}{
		{"owning account", 2, ""},
		{"another account", 3, "NoSuchEntity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := iam.NewFromConfig(l.assumeResponder(t, tt.member)).GetAccessKeyLastUsed(ctx(t), &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(key.ID)})
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			ok(t, err)
			if aws.ToString(out.UserName) != LabCompromisedUser || aws.ToString(out.AccessKeyLastUsed.ServiceName) != "ec2" ||
				aws.ToString(out.AccessKeyLastUsed.Region) != "us-east-1" || !aws.ToTime(out.AccessKeyLastUsed.LastUsedDate).Equal(l.clock.Now()) {
				t.Fatalf("last used: user %s %+v", aws.ToString(out.UserName), out.AccessKeyLastUsed)
			}
		})
	}
}

func TestIAMPagination(t *testing.T) {
	seed := LabSeed(3)
	member := &seed.Accounts[2]
	for i := range 7 {
		member.Users = append(member.Users, UserSeed{Name: fmt.Sprintf("user-%02d", i), Path: "/staff/"})
	}
	l := newLabFrom(t, seed, false)
	c := iam.NewFromConfig(l.assumeResponder(t, 2))
	var names []string
	pages := 0
	p := iam.NewListUsersPaginator(c, &iam.ListUsersInput{PathPrefix: aws.String("/staff/"), MaxItems: aws.Int32(3)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		ok(t, err)
		pages++
		for _, u := range out.Users {
			names = append(names, aws.ToString(u.UserName))
		}
	}
	if pages != 3 || len(names) != 7 || names[0] != "user-00" || names[6] != "user-06" {
		t.Fatalf("pages %d, users %v", pages, names)
	}
	roles, err := c.ListRoles(ctx(t), &iam.ListRolesInput{MaxItems: aws.Int32(2)})
	ok(t, err)
	if !roles.IsTruncated || roles.Marker == nil || len(roles.Roles) != 2 {
		t.Fatalf("roles page: truncated %v marker %v count %d", roles.IsTruncated, roles.Marker, len(roles.Roles))
	}
}
