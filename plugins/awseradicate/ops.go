package awseradicate

import (
	"context"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
)

// params are a call's request members by their API names.
type params map[string]string

func (p params) s(k string) *string {
	if v, ok := p[k]; ok {
		return aws.String(v)
	}
	return nil
}

func (p params) list(k string) []string {
	if v, ok := p[k]; ok {
		return []string{v}
	}
	return nil
}

func (p params) boolean(k string) *bool {
	v, err := strconv.ParseBool(p[k])
	if err != nil {
		return nil
	}
	return aws.Bool(v)
}

func (p params) int32(k string) *int32 {
	v, err := strconv.ParseInt(p[k], 10, 32)
	if err != nil {
		return nil
	}
	return aws.Int32(int32(v))
}

// op is one operation the action may call.
type op struct {
	call func(ctx context.Context, c *Clients, p params) (any, error)
	// items lists what an each-of read returns: the values each item
	// fills into the call that iterates over it.
	items func(out any) []string
}

// ops are the only operations aws-eradicate makes, by service:Operation:
// the reads that record before-state and list each-of items, and the
// changes eradplan plans.
var ops = map[string]op{
	// IAM reads.
	"iam:GetUser": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.GetUser(ctx, &iam.GetUserInput{UserName: p.s("UserName")})
	}},
	"iam:ListAccessKeys": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: p.s("UserName")})
	}, items: func(out any) (ids []string) {
		for _, k := range out.(*iam.ListAccessKeysOutput).AccessKeyMetadata {
			ids = append(ids, aws.ToString(k.AccessKeyId))
		}
		return ids
	}},
	"iam:ListAttachedUserPolicies": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListAttachedUserPolicies(ctx, &iam.ListAttachedUserPoliciesInput{UserName: p.s("UserName")})
	}, items: func(out any) (arns []string) {
		for _, a := range out.(*iam.ListAttachedUserPoliciesOutput).AttachedPolicies {
			arns = append(arns, aws.ToString(a.PolicyArn))
		}
		return arns
	}},
	"iam:ListUserPolicies": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: p.s("UserName")})
	}, items: func(out any) []string { return out.(*iam.ListUserPoliciesOutput).PolicyNames }},
	"iam:GetLoginProfile": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.GetLoginProfile(ctx, &iam.GetLoginProfileInput{UserName: p.s("UserName")})
	}},
	"iam:GetUserPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: p.s("UserName"), PolicyName: p.s("PolicyName")})
	}},
	"iam:ListGroupsForUser": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListGroupsForUser(ctx, &iam.ListGroupsForUserInput{UserName: p.s("UserName")})
	}},
	"iam:GetRole": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: p.s("RoleName")})
	}},
	"iam:ListAttachedRolePolicies": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: p.s("RoleName")})
	}, items: func(out any) (arns []string) {
		for _, a := range out.(*iam.ListAttachedRolePoliciesOutput).AttachedPolicies {
			arns = append(arns, aws.ToString(a.PolicyArn))
		}
		return arns
	}},
	"iam:ListRolePolicies": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: p.s("RoleName")})
	}, items: func(out any) []string { return out.(*iam.ListRolePoliciesOutput).PolicyNames }},
	"iam:ListInstanceProfilesForRole": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.ListInstanceProfilesForRole(ctx, &iam.ListInstanceProfilesForRoleInput{RoleName: p.s("RoleName")})
	}, items: func(out any) (names []string) {
		for _, ip := range out.(*iam.ListInstanceProfilesForRoleOutput).InstanceProfiles {
			names = append(names, aws.ToString(ip.InstanceProfileName))
		}
		return names
	}},
	"iam:GetRolePolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: p.s("RoleName"), PolicyName: p.s("PolicyName")})
	}},

	// IAM changes.
	"iam:AttachUserPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: p.s("UserName"), PolicyArn: p.s("PolicyArn")})
	}},
	"iam:DetachUserPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: p.s("UserName"), PolicyArn: p.s("PolicyArn")})
	}},
	"iam:DeleteUserPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: p.s("UserName"), PolicyName: p.s("PolicyName")})
	}},
	"iam:DeleteAccessKey": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: p.s("UserName"), AccessKeyId: p.s("AccessKeyId")})
	}},
	"iam:DeleteLoginProfile": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteLoginProfile(ctx, &iam.DeleteLoginProfileInput{UserName: p.s("UserName")})
	}},
	"iam:DeleteUser": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteUser(ctx, &iam.DeleteUserInput{UserName: p.s("UserName")})
	}},
	"iam:RemoveUserFromGroup": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: p.s("UserName"), GroupName: p.s("GroupName")})
	}},
	"iam:AttachRolePolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: p.s("RoleName"), PolicyArn: p.s("PolicyArn")})
	}},
	"iam:DetachRolePolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: p.s("RoleName"), PolicyArn: p.s("PolicyArn")})
	}},
	"iam:DeleteRolePolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: p.s("RoleName"), PolicyName: p.s("PolicyName")})
	}},
	"iam:UpdateAssumeRolePolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: p.s("RoleName"), PolicyDocument: p.s("PolicyDocument")})
	}},
	"iam:RemoveRoleFromInstanceProfile": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{RoleName: p.s("RoleName"), InstanceProfileName: p.s("InstanceProfileName")})
	}},
	"iam:DeleteRole": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.IAM.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: p.s("RoleName")})
	}},

	// Lambda.
	"lambda:GetFunction": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: p.s("FunctionName")})
	}},
	"lambda:GetPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: p.s("FunctionName")})
	}},
	"lambda:DeleteFunction": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: p.s("FunctionName")})
	}},
	"lambda:PutFunctionConcurrency": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: p.s("FunctionName"),
			ReservedConcurrentExecutions: p.int32("ReservedConcurrentExecutions")})
	}},
	"lambda:RemovePermission": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: p.s("FunctionName"), StatementId: p.s("StatementId")})
	}},

	// EC2.
	"ec2:DescribeInstances": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: p.list("InstanceId.1")})
	}},
	"ec2:DescribeKeyPairs": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{KeyNames: p.list("KeyName.1")})
	}},
	"ec2:DescribeSecurityGroups": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: p.list("GroupId.1"), GroupNames: p.list("GroupName.1")})
	}},
	"ec2:DescribeSnapshotAttribute": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: p.s("SnapshotId"),
			Attribute: ec2types.SnapshotAttributeName(p["Attribute"])})
	}},
	"ec2:DescribeImageAttribute": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: p.s("ImageId"), Attribute: ec2types.ImageAttributeName(p["Attribute"])})
	}},
	"ec2:CreateSnapshots": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{Description: p.s("Description"),
			InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: p.s("InstanceSpecification.InstanceId")}})
	}},
	"ec2:StopInstances": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: p.list("InstanceId.1")})
	}},
	"ec2:TerminateInstances": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: p.list("InstanceId.1")})
	}},
	"ec2:DeleteKeyPair": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyName: p.s("KeyName")})
	}},
	"ec2:RevokeSecurityGroupIngress": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		perm := ec2types.IpPermission{IpProtocol: p.s("IpPermissions.1.IpProtocol"), FromPort: p.int32("IpPermissions.1.FromPort"), ToPort: p.int32("IpPermissions.1.ToPort")}
		if v := p.s("IpPermissions.1.IpRanges.1.CidrIp"); v != nil {
			perm.IpRanges = []ec2types.IpRange{{CidrIp: v}}
		}
		if v := p.s("IpPermissions.1.Ipv6Ranges.1.CidrIpv6"); v != nil {
			perm.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: v}}
		}
		if v := p.s("IpPermissions.1.Groups.1.GroupId"); v != nil {
			perm.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: v}}
		}
		return c.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: p.s("GroupId"), GroupName: p.s("GroupName"),
			IpPermissions: []ec2types.IpPermission{perm}})
	}},
	"ec2:ModifySnapshotAttribute": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{SnapshotId: p.s("SnapshotId"),
			Attribute: ec2types.SnapshotAttributeName(p["Attribute"]), OperationType: ec2types.OperationType(p["OperationType"]),
			UserIds: p.list("UserId.1"), GroupNames: p.list("UserGroup.1")})
	}},
	"ec2:ModifyImageAttribute": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.EC2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: p.s("ImageId"), Attribute: p.s("Attribute"),
			OperationType: ec2types.OperationType(p["OperationType"]), UserIds: p.list("UserId.1"), UserGroups: p.list("UserGroup.1")})
	}},

	// EventBridge.
	"events:DescribeRule": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Events.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: p.s("Name")})
	}},
	"events:ListTargetsByRule": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: p.s("Rule")})
	}, items: func(out any) (ids []string) {
		for _, t := range out.(*eventbridge.ListTargetsByRuleOutput).Targets {
			ids = append(ids, aws.ToString(t.Id))
		}
		return ids
	}},
	"events:DisableRule": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Events.DisableRule(ctx, &eventbridge.DisableRuleInput{Name: p.s("Name")})
	}},
	"events:RemoveTargets": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Events.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: p.s("Rule"), Ids: p.list("Ids")})
	}},
	"events:DeleteRule": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.Events.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: p.s("Name")})
	}},

	// CloudTrail, GuardDuty, Security Hub.
	"cloudtrail:GetTrailStatus": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.CloudTrail.GetTrailStatus(ctx, &cloudtrail.GetTrailStatusInput{Name: p.s("Name")})
	}},
	"cloudtrail:StartLogging": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.CloudTrail.StartLogging(ctx, &cloudtrail.StartLoggingInput{Name: p.s("Name")})
	}},
	"guardduty:ListDetectors": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.GuardDuty.ListDetectors(ctx, &guardduty.ListDetectorsInput{})
	}},
	"guardduty:UpdateDetector": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.GuardDuty.UpdateDetector(ctx, &guardduty.UpdateDetectorInput{DetectorId: p.s("DetectorId"), Enable: p.boolean("Enable")})
	}},
	"guardduty:CreateDetector": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.GuardDuty.CreateDetector(ctx, &guardduty.CreateDetectorInput{Enable: p.boolean("Enable")})
	}},
	"securityhub:DescribeHub": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.SecurityHub.DescribeHub(ctx, &securityhub.DescribeHubInput{})
	}},
	"securityhub:EnableSecurityHub": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.SecurityHub.EnableSecurityHub(ctx, &securityhub.EnableSecurityHubInput{EnableDefaultStandards: p.boolean("EnableDefaultStandards")})
	}},

	// S3.
	"s3:GetBucketPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: p.s("Bucket")})
	}},
	"s3:GetBucketAcl": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.GetBucketAcl(ctx, &s3.GetBucketAclInput{Bucket: p.s("Bucket")})
	}},
	"s3:GetPublicAccessBlock": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: p.s("Bucket")})
	}},
	"s3:PutBucketPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: p.s("Bucket"), Policy: p.s("Policy")})
	}},
	"s3:DeleteBucketPolicy": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: p.s("Bucket")})
	}},
	"s3:PutBucketAcl": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.PutBucketAcl(ctx, &s3.PutBucketAclInput{Bucket: p.s("Bucket"), ACL: s3types.BucketCannedACL(p["ACL"])})
	}},
	"s3:PutPublicAccessBlock": {call: func(ctx context.Context, c *Clients, p params) (any, error) {
		return c.S3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: p.s("Bucket"), PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
			BlockPublicAcls: p.boolean("BlockPublicAcls"), IgnorePublicAcls: p.boolean("IgnorePublicAcls"),
			BlockPublicPolicy: p.boolean("BlockPublicPolicy"), RestrictPublicBuckets: p.boolean("RestrictPublicBuckets")}})
	}},
}
