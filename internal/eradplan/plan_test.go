package eradplan

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

const (
	acctA = "111111111111"
	acctB = "222222222222"
)

func art(kind, account, region, id string, detail ...string) trailscope.Artifact {
	a := trailscope.Artifact{Kind: kind, Account: account, Region: region, ID: id, Detail: map[string]string{}, EventID: "ev-" + id}
	for i := 0; i+1 < len(detail); i += 2 {
		a.Detail[detail[i]] = detail[i+1]
	}
	return a
}

func rendered(calls []Call) []string {
	out := []string{}
	for _, c := range calls {
		out = append(out, c.String())
	}
	return out
}

// TestStepCalls holds each artifact kind to the exact calls its step makes,
// the reads that record its before-state and the calls that wait for
// confirmation.
func TestStepCalls(t *testing.T) {
	trustBefore := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	tests := []struct {
		name      string
		artifact  trailscope.Artifact
		opt       Options
		action    string
		phase     Phase
		before    []string
		calls     []string
		onConfirm []string
		manual    bool
		// summary, when set, is part of what the step's summary says.
		summary string
	}{
		{name: "user the attacker created", artifact: art(trailscope.KindUser, acctA, "us-east-1", "backdoor"),
			action: "quarantine-delete-user", phase: PhaseQuarantine,
			before: []string{"iam:GetUser UserName=backdoor", "iam:ListAccessKeys UserName=backdoor", "iam:ListAttachedUserPolicies UserName=backdoor",
				"iam:ListUserPolicies UserName=backdoor", "iam:GetLoginProfile UserName=backdoor"},
			calls: []string{"iam:AttachUserPolicy PolicyArn=arn:aws:iam::aws:policy/AWSDenyAll UserName=backdoor"},
			onConfirm: []string{"iam:DeleteLoginProfile UserName=backdoor",
				"iam:DeleteAccessKey UserName=backdoor (AccessKeyId: each of iam:ListAccessKeys)",
				"iam:DeleteUserPolicy UserName=backdoor (PolicyName: each of iam:ListUserPolicies)",
				"iam:DetachUserPolicy UserName=backdoor (PolicyArn: each of iam:ListAttachedUserPolicies)",
				"iam:DeleteUser UserName=backdoor"}},
		{name: "role the attacker created", artifact: art(trailscope.KindRole, acctB, "us-east-1", "ext-audit"),
			action: "quarantine-delete-role", phase: PhaseQuarantine,
			before: []string{"iam:GetRole RoleName=ext-audit", "iam:ListAttachedRolePolicies RoleName=ext-audit", "iam:ListRolePolicies RoleName=ext-audit",
				"iam:ListInstanceProfilesForRole RoleName=ext-audit"},
			calls: []string{"iam:AttachRolePolicy PolicyArn=arn:aws:iam::aws:policy/AWSDenyAll RoleName=ext-audit",
				"iam:UpdateAssumeRolePolicy PolicyDocument=" + DenyAllTrustPolicy + " RoleName=ext-audit"},
			onConfirm: []string{"iam:DeleteRolePolicy RoleName=ext-audit (PolicyName: each of iam:ListRolePolicies)",
				"iam:DetachRolePolicy RoleName=ext-audit (PolicyArn: each of iam:ListAttachedRolePolicies)",
				"iam:RemoveRoleFromInstanceProfile RoleName=ext-audit (InstanceProfileName: each of iam:ListInstanceProfilesForRole)",
				"iam:DeleteRole RoleName=ext-audit"}},
		{name: "access key", artifact: art(trailscope.KindAccessKey, acctA, "us-east-1", "AKIAEXAMPLEBACKDOOR1", "userName", "backdoor"),
			action: "delete-access-key", phase: PhaseRemove, before: []string{"iam:ListAccessKeys UserName=backdoor"},
			calls: []string{"iam:DeleteAccessKey AccessKeyId=AKIAEXAMPLEBACKDOOR1 UserName=backdoor"}},
		{name: "login profile", artifact: art(trailscope.KindLoginProfile, acctA, "us-east-1", "admin"),
			action: "delete-login-profile", phase: PhaseRemove, before: []string{"iam:GetLoginProfile UserName=admin"},
			calls: []string{"iam:DeleteLoginProfile UserName=admin"}},
		{name: "managed policy attached to a user", artifact: art(trailscope.KindUserPolicy, acctA, "us-east-1", "backdoor", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
			action: "detach-user-policy", phase: PhaseRemove, before: []string{"iam:ListAttachedUserPolicies UserName=backdoor"},
			calls: []string{"iam:DetachUserPolicy PolicyArn=arn:aws:iam::aws:policy/AdministratorAccess UserName=backdoor"}},
		{name: "inline user policy", artifact: art(trailscope.KindUserInlinePolicy, acctA, "us-east-1", "ci-deployer", "policyName", "escalate"),
			action: "delete-user-policy", phase: PhaseRemove, before: []string{"iam:GetUserPolicy PolicyName=escalate UserName=ci-deployer"},
			calls: []string{"iam:DeleteUserPolicy PolicyName=escalate UserName=ci-deployer"}},
		{name: "managed policy attached to a role", artifact: art(trailscope.KindRolePolicy, acctB, "us-east-1", "app", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
			action: "detach-role-policy", phase: PhaseRemove, before: []string{"iam:ListAttachedRolePolicies RoleName=app"},
			calls: []string{"iam:DetachRolePolicy PolicyArn=arn:aws:iam::aws:policy/AdministratorAccess RoleName=app"}},
		{name: "inline role policy", artifact: art(trailscope.KindRoleInlinePolicy, acctB, "us-east-1", "app", "policyName", "x"),
			action: "delete-role-policy", phase: PhaseRemove, before: []string{"iam:GetRolePolicy PolicyName=x RoleName=app"},
			calls: []string{"iam:DeleteRolePolicy PolicyName=x RoleName=app"}},
		{name: "trust policy changed, earlier document known", artifact: art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops"),
			opt: Options{PriorTrust: map[string]string{Key(acctB, "ops"): trustBefore}}, action: "restore-trust-policy", phase: PhaseRestore,
			before: []string{"iam:GetRole RoleName=ops"}, calls: []string{"iam:UpdateAssumeRolePolicy PolicyDocument=" + trustBefore + " RoleName=ops"}},
		{name: "trust policy changed, earlier document unknown", artifact: art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops"),
			opt: Options{PriorTrust: map[string]string{Key(acctA, "ops"): trustBefore}}, action: "restore-trust-policy", phase: PhaseRestore,
			before: []string{"iam:GetRole RoleName=ops"}, calls: []string{"iam:UpdateAssumeRolePolicy PolicyDocument=" + DenyAllTrustPolicy + " RoleName=ops"}},
		{name: "trust policy changed, earlier document resolved from CloudTrail", artifact: art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops",
			trailscope.DetailPriorTrust, trustBefore, trailscope.DetailPriorEventID, "e-create", trailscope.DetailPriorEventName, "CreateRole"),
			// The scope's resolution comes before a document given with the plan.
			opt:    Options{PriorTrust: map[string]string{Key(acctB, "ops"): DenyAllTrustPolicy}},
			action: "restore-trust-policy", phase: PhaseRestore, summary: "CloudTrail CreateRole event e-create",
			before: []string{"iam:GetRole RoleName=ops"}, calls: []string{"iam:UpdateAssumeRolePolicy PolicyDocument=" + trustBefore + " RoleName=ops"}},
		{name: "trust policy changed, earlier document trusts an outside account", artifact: art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops",
			trailscope.DetailPriorTrust, trustBefore, trailscope.DetailPriorEventID, "e-create", trailscope.DetailPriorOutside, "true"),
			action: "restore-trust-policy", phase: PhaseRestore, summary: "check it before approving",
			before: []string{"iam:GetRole RoleName=ops"}, calls: []string{"iam:UpdateAssumeRolePolicy PolicyDocument=" + trustBefore + " RoleName=ops"}},
		{name: "trust policy changed, the scope says why the earlier document is unknown", artifact: art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops",
			trailscope.DetailPriorUnknown, "the role was created by the followed credential (e-1)"),
			action: "restore-trust-policy", phase: PhaseRestore, summary: "(the role was created by the followed credential (e-1))",
			before: []string{"iam:GetRole RoleName=ops"}, calls: []string{"iam:UpdateAssumeRolePolicy PolicyDocument=" + DenyAllTrustPolicy + " RoleName=ops"}},
		{name: "group membership", artifact: art(trailscope.KindGroupMembership, acctA, "us-east-1", "backdoor", "groupName", "admins"),
			action: "remove-from-group", phase: PhaseRemove, before: []string{"iam:ListGroupsForUser UserName=backdoor"},
			calls: []string{"iam:RemoveUserFromGroup GroupName=admins UserName=backdoor"}},
		{name: "Lambda function", artifact: art(trailscope.KindFunction, acctB, "eu-west-1", "exfil"),
			action: "delete-function", phase: PhaseRemove, before: []string{"lambda:GetFunction FunctionName=exfil"},
			calls: []string{"lambda:DeleteFunction FunctionName=exfil"}},
		{name: "Lambda code replaced", artifact: art(trailscope.KindFunctionCode, acctB, "eu-west-1", "orders"),
			action: "disable-function", phase: PhaseRemove, before: []string{"lambda:GetFunction FunctionName=orders"},
			calls: []string{"lambda:PutFunctionConcurrency FunctionName=orders ReservedConcurrentExecutions=0"}},
		{name: "Lambda permission", artifact: art(trailscope.KindFunctionAccess, acctB, "eu-west-1", "orders", "statementId", "open"),
			action: "remove-function-permission", phase: PhaseRemove, before: []string{"lambda:GetPolicy FunctionName=orders"},
			calls: []string{"lambda:RemovePermission FunctionName=orders StatementId=open"}},
		{name: "instance launched", artifact: art(trailscope.KindInstance, acctB, "us-west-2", "i-0abc"),
			action: "snapshot-stop-instance", phase: PhaseRemove, before: []string{"ec2:DescribeInstances InstanceId.1=i-0abc"},
			calls: []string{"ec2:CreateSnapshots Description=firebreak eradication: instance i-0abc before it is stopped InstanceSpecification.InstanceId=i-0abc",
				"ec2:StopInstances InstanceId.1=i-0abc"}},
		{name: "instance launched, terminate asked", artifact: art(trailscope.KindInstance, acctB, "us-west-2", "i-0abc"), opt: Options{TerminateInstances: true},
			action: "snapshot-terminate-instance", phase: PhaseRemove, before: []string{"ec2:DescribeInstances InstanceId.1=i-0abc"},
			calls: []string{"ec2:CreateSnapshots Description=firebreak eradication: instance i-0abc before it is stopped InstanceSpecification.InstanceId=i-0abc",
				"ec2:TerminateInstances InstanceId.1=i-0abc"}},
		{name: "key pair imported", artifact: art(trailscope.KindKeyPair, acctB, "us-east-1", "ops-backdoor"),
			action: "delete-key-pair", phase: PhaseRemove, before: []string{"ec2:DescribeKeyPairs KeyName.1=ops-backdoor"},
			calls: []string{"ec2:DeleteKeyPair KeyName=ops-backdoor"}},
		{name: "EventBridge rule", artifact: art(trailscope.KindEventRule, acctB, "us-east-1", "beacon"),
			action: "delete-event-rule", phase: PhaseRemove, before: []string{"events:DescribeRule Name=beacon", "events:ListTargetsByRule Rule=beacon"},
			calls: []string{"events:DisableRule Name=beacon", "events:RemoveTargets Rule=beacon (Ids: each of events:ListTargetsByRule)", "events:DeleteRule Name=beacon"}},
		{name: "trail stopped", artifact: art(trailscope.KindTrailLogging, acctB, "us-east-1", "member-trail"),
			action: "start-logging", phase: PhaseRestore, before: []string{"cloudtrail:GetTrailStatus Name=member-trail"},
			calls: []string{"cloudtrail:StartLogging Name=member-trail"}},
		{name: "detector disabled", artifact: art(trailscope.KindDetector, acctB, "us-east-1", "d-1", "disabled", "true"),
			action: "enable-detector", phase: PhaseRestore, before: []string{"guardduty:ListDetectors"},
			calls: []string{"guardduty:UpdateDetector DetectorId=d-1 Enable=true"}},
		{name: "detector deleted", artifact: art(trailscope.KindDetector, acctB, "us-east-1", "d-1"),
			action: "recreate-detector", phase: PhaseRestore, before: []string{"guardduty:ListDetectors"},
			calls: []string{"guardduty:CreateDetector Enable=true"}},
		{name: "Security Hub disabled", artifact: art(trailscope.KindSecurityHub, acctB, "us-east-1", "hub"),
			action: "enable-security-hub", phase: PhaseRestore, before: []string{"securityhub:DescribeHub"},
			calls: []string{"securityhub:EnableSecurityHub EnableDefaultStandards=true"}},
		{name: "Config recorder stopped", artifact: art(trailscope.KindConfigRecorder, acctB, "us-east-1", "default"),
			action: "start-config-recorder", phase: PhaseRestore, manual: true},
		{name: "ingress opened to the world", artifact: art(trailscope.KindIngressRule, acctB, "us-east-1", "sg-0web", "ipProtocol", "tcp", "fromPort", "22", "toPort", "22", "cidrIp", "0.0.0.0/0"),
			action: "revoke-ingress", phase: PhaseRemove, before: []string{"ec2:DescribeSecurityGroups GroupId.1=sg-0web"},
			calls: []string{"ec2:RevokeSecurityGroupIngress GroupId=sg-0web IpPermissions.1.FromPort=22 IpPermissions.1.IpProtocol=tcp IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0 IpPermissions.1.ToPort=22"}},
		{name: "ingress from a group, all protocols, by group name", artifact: art(trailscope.KindIngressRule, acctB, "us-east-1", "default", "ipProtocol", "-1", "sourceGroupId", "sg-0evil"),
			action: "revoke-ingress", phase: PhaseRemove, before: []string{"ec2:DescribeSecurityGroups GroupName.1=default"},
			calls: []string{"ec2:RevokeSecurityGroupIngress GroupName=default IpPermissions.1.Groups.1.GroupId=sg-0evil IpPermissions.1.IpProtocol=-1"}},
		{name: "bucket policy, none before", artifact: art(trailscope.KindBucketPolicy, acctB, "us-east-1", "data"),
			action: "restore-bucket-policy", phase: PhaseRestore, before: []string{"s3:GetBucketPolicy Bucket=data"},
			calls: []string{"s3:DeleteBucketPolicy Bucket=data"}},
		{name: "bucket policy, earlier known", artifact: art(trailscope.KindBucketPolicy, acctB, "us-east-1", "data"),
			opt: Options{PriorBucketPolicy: map[string]string{Key(acctB, "data"): `{"Statement":[]}`}}, action: "restore-bucket-policy", phase: PhaseRestore,
			before: []string{"s3:GetBucketPolicy Bucket=data"}, calls: []string{`s3:PutBucketPolicy Bucket=data Policy={"Statement":[]}`}},
		{name: "bucket ACL", artifact: art(trailscope.KindBucketACL, acctB, "us-east-1", "data"),
			action: "restore-bucket-acl", phase: PhaseRestore, before: []string{"s3:GetBucketAcl Bucket=data"},
			calls: []string{"s3:PutBucketAcl ACL=private Bucket=data"}},
		{name: "public access block removed", artifact: art(trailscope.KindPublicAccess, acctB, "us-east-1", "data"),
			action: "restore-public-access-block", phase: PhaseRestore, before: []string{"s3:GetPublicAccessBlock Bucket=data"},
			calls: []string{"s3:PutPublicAccessBlock BlockPublicAcls=true BlockPublicPolicy=true Bucket=data IgnorePublicAcls=true RestrictPublicBuckets=true"}},
		{name: "snapshot shared with an outside account", artifact: art(trailscope.KindSnapshotShare, acctB, "us-east-1", "snap-0db", "userId", "999988887777"),
			action: "unshare-snapshot", phase: PhaseRemove, before: []string{"ec2:DescribeSnapshotAttribute Attribute=createVolumePermission SnapshotId=snap-0db"},
			calls: []string{"ec2:ModifySnapshotAttribute Attribute=createVolumePermission OperationType=remove SnapshotId=snap-0db UserId.1=999988887777"}},
		{name: "snapshot made public", artifact: art(trailscope.KindSnapshotShare, acctB, "us-east-1", "snap-0db", "group", "all"),
			action: "unshare-snapshot", phase: PhaseRemove, before: []string{"ec2:DescribeSnapshotAttribute Attribute=createVolumePermission SnapshotId=snap-0db"},
			calls: []string{"ec2:ModifySnapshotAttribute Attribute=createVolumePermission OperationType=remove SnapshotId=snap-0db UserGroup.1=all"}},
		{name: "image shared", artifact: art(trailscope.KindImageShare, acctB, "us-east-1", "ami-0abc", "userId", "999988887777"),
			action: "unshare-image", phase: PhaseRemove, before: []string{"ec2:DescribeImageAttribute Attribute=launchPermission ImageId=ami-0abc"},
			calls: []string{"ec2:ModifyImageAttribute Attribute=launchPermission ImageId=ami-0abc OperationType=remove UserId.1=999988887777"}},
		{name: "managed policy: by hand", artifact: art(trailscope.KindManagedPolicy, acctA, "us-east-1", "arn:aws:iam::111111111111:policy/x"),
			action: "delete-managed-policy", phase: PhaseRemove, manual: true},
		{name: "trail deleted: by hand", artifact: art(trailscope.KindTrail, acctA, "us-east-1", "t"),
			action: "recreate-trail", phase: PhaseRestore, manual: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := Build([]trailscope.Artifact{tt.artifact}, tt.opt)
			if len(steps) != 1 {
				t.Fatalf("%d steps, want 1", len(steps))
			}
			s := steps[0]
			if s.Action != tt.action || s.Phase != tt.phase || s.Manual != tt.manual || s.Account != tt.artifact.Account || s.Region != tt.artifact.Region ||
				s.EventID != tt.artifact.EventID || s.Summary == "" || s.ID != "s01" {
				t.Fatalf("step %+v", s)
			}
			if !strings.Contains(s.Summary, tt.summary) {
				t.Errorf("summary %q does not say %q", s.Summary, tt.summary)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"before", rendered(s.Before), tt.before}, {"calls", rendered(s.Calls), tt.calls}, {"on confirm", rendered(s.OnConfirm), tt.onConfirm}} {
				if c.want == nil {
					c.want = []string{}
				}
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s:\n got  %q\n want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

// TestBuildOrdersAndMerges checks that quarantines come first and
// restorations last, that a repeated artifact makes one step, and that the
// plan survives JSON.
func TestBuildOrdersAndMerges(t *testing.T) {
	in := []trailscope.Artifact{
		art(trailscope.KindTrailLogging, acctB, "us-east-1", "member-trail"),
		art(trailscope.KindAccessKey, acctA, "us-east-1", "AKIAEXAMPLEBACKDOOR1", "userName", "backdoor"),
		art(trailscope.KindUser, acctA, "us-east-1", "backdoor"),
		art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops", "policyDocument", "first"),
		art(trailscope.KindRoleTrust, acctB, "us-east-1", "ops", "policyDocument", "second"),
		art(trailscope.KindUser, acctA, "us-east-1", "backdoor"),
	}
	steps := Build(in, Options{})
	var got []string
	for _, s := range steps {
		got = append(got, s.ID+" "+s.Action+" "+s.Resource)
	}
	want := []string{"s01 quarantine-delete-user backdoor", "s02 delete-access-key AKIAEXAMPLEBACKDOOR1", "s03 start-logging member-trail", "s04 restore-trust-policy ops"}
	if !slices.Equal(got, want) {
		t.Fatalf("steps\n got  %q\n want %q", got, want)
	}
	p := &Plan{ID: "erp-1", CaseID: "case-1", Steps: steps}
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), `"phase":"quarantine"`) {
		t.Fatalf("phase not written by name: %s", doc)
	}
	var back Plan
	if err := json.Unmarshal(doc, &back); err != nil || back.Steps[0].Phase != PhaseQuarantine || len(back.StepsIn(acctA)) != 2 || !slices.Equal(back.Accounts(), []string{acctA, acctB}) {
		t.Fatalf("round trip %+v %v", back, err)
	}
}
