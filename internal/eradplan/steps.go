package eradplan

import (
	"maps"
	"strings"

	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// stepFor is the step one artifact needs.
func stepFor(a trailscope.Artifact, opt Options) Step {
	s := Step{Account: a.Account, Region: a.Region, Kind: a.Kind, Resource: a.ID, EventID: a.EventID, Phase: PhaseRemove}
	if len(a.Detail) > 0 {
		s.Detail = maps.Clone(a.Detail)
	}
	d := func(k string) string { return a.Detail[k] }
	id := a.ID
	switch a.Kind {
	case trailscope.KindUser:
		s.Action, s.Phase = "quarantine-delete-user", PhaseQuarantine
		s.Summary = "attach AWSDenyAll to user " + id + " now; on confirmation remove its password, keys and policies and delete it"
		s.Before = []Call{call("iam", "GetUser", "UserName", id), call("iam", "ListAccessKeys", "UserName", id),
			call("iam", "ListAttachedUserPolicies", "UserName", id), call("iam", "ListUserPolicies", "UserName", id),
			call("iam", "GetLoginProfile", "UserName", id)}
		s.Calls = []Call{call("iam", "AttachUserPolicy", "UserName", id, "PolicyArn", DenyAllPolicyARN)}
		s.OnConfirm = []Call{
			call("iam", "DeleteLoginProfile", "UserName", id),
			each(call("iam", "DeleteAccessKey", "UserName", id), "iam:ListAccessKeys", "AccessKeyId"),
			each(call("iam", "DeleteUserPolicy", "UserName", id), "iam:ListUserPolicies", "PolicyName"),
			each(call("iam", "DetachUserPolicy", "UserName", id), "iam:ListAttachedUserPolicies", "PolicyArn"),
			call("iam", "DeleteUser", "UserName", id),
		}
	case trailscope.KindRole:
		s.Action, s.Phase = "quarantine-delete-role", PhaseQuarantine
		s.Summary = "attach AWSDenyAll to role " + id + " and let no one assume it now; on confirmation remove its policies and delete it"
		s.Before = []Call{call("iam", "GetRole", "RoleName", id), call("iam", "ListAttachedRolePolicies", "RoleName", id),
			call("iam", "ListRolePolicies", "RoleName", id), call("iam", "ListInstanceProfilesForRole", "RoleName", id)}
		s.Calls = []Call{call("iam", "AttachRolePolicy", "RoleName", id, "PolicyArn", DenyAllPolicyARN),
			call("iam", "UpdateAssumeRolePolicy", "RoleName", id, "PolicyDocument", DenyAllTrustPolicy)}
		s.OnConfirm = []Call{
			each(call("iam", "DeleteRolePolicy", "RoleName", id), "iam:ListRolePolicies", "PolicyName"),
			each(call("iam", "DetachRolePolicy", "RoleName", id), "iam:ListAttachedRolePolicies", "PolicyArn"),
			each(call("iam", "RemoveRoleFromInstanceProfile", "RoleName", id), "iam:ListInstanceProfilesForRole", "InstanceProfileName"),
			call("iam", "DeleteRole", "RoleName", id),
		}
	case trailscope.KindAccessKey:
		user := d("userName")
		s.Action, s.Summary = "delete-access-key", "delete access key "+id+" of user "+user
		s.Before = []Call{call("iam", "ListAccessKeys", "UserName", user)}
		s.Calls = []Call{call("iam", "DeleteAccessKey", "UserName", user, "AccessKeyId", id)}
	case trailscope.KindLoginProfile:
		s.Action, s.Summary = "delete-login-profile", "delete the console password of user "+id
		s.Before = []Call{call("iam", "GetLoginProfile", "UserName", id)}
		s.Calls = []Call{call("iam", "DeleteLoginProfile", "UserName", id)}
	case trailscope.KindUserPolicy:
		s.Action, s.Summary = "detach-user-policy", "detach "+d("policyArn")+" from user "+id
		s.Before = []Call{call("iam", "ListAttachedUserPolicies", "UserName", id)}
		s.Calls = []Call{call("iam", "DetachUserPolicy", "UserName", id, "PolicyArn", d("policyArn"))}
	case trailscope.KindUserInlinePolicy:
		s.Action, s.Summary = "delete-user-policy", "delete inline policy "+d("policyName")+" of user "+id
		s.Before = []Call{call("iam", "GetUserPolicy", "UserName", id, "PolicyName", d("policyName"))}
		s.Calls = []Call{call("iam", "DeleteUserPolicy", "UserName", id, "PolicyName", d("policyName"))}
	case trailscope.KindRolePolicy:
		s.Action, s.Summary = "detach-role-policy", "detach "+d("policyArn")+" from role "+id
		s.Before = []Call{call("iam", "ListAttachedRolePolicies", "RoleName", id)}
		s.Calls = []Call{call("iam", "DetachRolePolicy", "RoleName", id, "PolicyArn", d("policyArn"))}
	case trailscope.KindRoleInlinePolicy:
		s.Action, s.Summary = "delete-role-policy", "delete inline policy "+d("policyName")+" of role "+id
		s.Before = []Call{call("iam", "GetRolePolicy", "RoleName", id, "PolicyName", d("policyName"))}
		s.Calls = []Call{call("iam", "DeleteRolePolicy", "RoleName", id, "PolicyName", d("policyName"))}
	case trailscope.KindRoleTrust:
		s.Action, s.Phase = "restore-trust-policy", PhaseRestore
		doc, from := priorTrust(a, opt)
		switch {
		case doc == "":
			doc = DenyAllTrustPolicy
			s.Summary = "the trust policy of role " + id + " before the change is not known"
			if why := d(trailscope.DetailPriorUnknown); why != "" {
				s.Summary += " (" + why + ")"
			}
			s.Summary += ": replace it with one that lets no one assume it, and put the right document back by hand"
		default:
			s.Summary = "restore the trust policy of role " + id + " to the document before the change (" + from + ")"
			if d(trailscope.DetailPriorOutside) == "true" {
				s.Summary += "; that document itself trusts an account outside the organisation: check it before approving"
			}
		}
		s.Before = []Call{call("iam", "GetRole", "RoleName", id)}
		s.Calls = []Call{call("iam", "UpdateAssumeRolePolicy", "RoleName", id, "PolicyDocument", doc)}
	case trailscope.KindGroupMembership:
		s.Action, s.Summary = "remove-from-group", "remove user "+id+" from group "+d("groupName")
		s.Before = []Call{call("iam", "ListGroupsForUser", "UserName", id)}
		s.Calls = []Call{call("iam", "RemoveUserFromGroup", "UserName", id, "GroupName", d("groupName"))}
	case trailscope.KindFunction:
		s.Action, s.Summary = "delete-function", "delete Lambda function "+id
		s.Before = []Call{call("lambda", "GetFunction", "FunctionName", id)}
		s.Calls = []Call{call("lambda", "DeleteFunction", "FunctionName", id)}
	case trailscope.KindFunctionCode:
		s.Action = "disable-function"
		s.Summary = "the code of Lambda function " + id + " was replaced and its earlier code is not known: reserve no concurrency so it cannot run, and redeploy it by hand"
		s.Before = []Call{call("lambda", "GetFunction", "FunctionName", id)}
		s.Calls = []Call{call("lambda", "PutFunctionConcurrency", "FunctionName", id, "ReservedConcurrentExecutions", "0")}
	case trailscope.KindFunctionAccess:
		s.Action, s.Summary = "remove-function-permission", "remove statement "+d("statementId")+" from the resource policy of Lambda function "+id
		s.Before = []Call{call("lambda", "GetPolicy", "FunctionName", id)}
		s.Calls = []Call{call("lambda", "RemovePermission", "FunctionName", id, "StatementId", d("statementId"))}
	case trailscope.KindInstance:
		s.Before = []Call{call("ec2", "DescribeInstances", "InstanceId.1", id)}
		snap := call("ec2", "CreateSnapshots", "InstanceSpecification.InstanceId", id, "Description", "firebreak eradication: instance "+id+" before it is stopped")
		if opt.TerminateInstances {
			s.Action, s.Summary = "snapshot-terminate-instance", "snapshot the volumes of instance "+id+", then terminate it"
			s.Calls = []Call{snap, call("ec2", "TerminateInstances", "InstanceId.1", id)}
		} else {
			s.Action, s.Summary = "snapshot-stop-instance", "snapshot the volumes of instance "+id+", then stop it (terminate only with --terminate-instances)"
			s.Calls = []Call{snap, call("ec2", "StopInstances", "InstanceId.1", id)}
		}
	case trailscope.KindKeyPair:
		s.Action, s.Summary = "delete-key-pair", "delete key pair "+id
		s.Before = []Call{call("ec2", "DescribeKeyPairs", "KeyName.1", id)}
		s.Calls = []Call{call("ec2", "DeleteKeyPair", "KeyName", id)}
	case trailscope.KindEventRule:
		s.Action, s.Summary = "delete-event-rule", "disable EventBridge rule "+id+", remove its targets and delete it"
		s.Before = []Call{call("events", "DescribeRule", "Name", id), call("events", "ListTargetsByRule", "Rule", id)}
		s.Calls = []Call{call("events", "DisableRule", "Name", id),
			each(call("events", "RemoveTargets", "Rule", id), "events:ListTargetsByRule", "Ids"),
			call("events", "DeleteRule", "Name", id)}
	case trailscope.KindTrailLogging:
		s.Action, s.Phase, s.Summary = "start-logging", PhaseRestore, "turn logging of trail "+id+" back on"
		s.Before = []Call{call("cloudtrail", "GetTrailStatus", "Name", id)}
		s.Calls = []Call{call("cloudtrail", "StartLogging", "Name", id)}
	case trailscope.KindDetector:
		s.Phase = PhaseRestore
		s.Before = []Call{call("guardduty", "ListDetectors")}
		if d("disabled") == "true" {
			s.Action, s.Summary = "enable-detector", "enable GuardDuty detector "+id+" again"
			s.Calls = []Call{call("guardduty", "UpdateDetector", "DetectorId", id, "Enable", "true")}
		} else {
			s.Action, s.Summary = "recreate-detector", "GuardDuty detector "+id+" was deleted: create a new one, enabled"
			s.Calls = []Call{call("guardduty", "CreateDetector", "Enable", "true")}
		}
	case trailscope.KindSecurityHub:
		s.Action, s.Phase, s.Summary = "enable-security-hub", PhaseRestore, "enable Security Hub again, with its default standards"
		s.Before = []Call{call("securityhub", "DescribeHub")}
		s.Calls = []Call{call("securityhub", "EnableSecurityHub", "EnableDefaultStandards", "true")}
	case trailscope.KindConfigRecorder:
		// aws-eradicate does not reach AWS Config; the step says what to run.
		s.Action, s.Phase, s.Manual = "start-config-recorder", PhaseRestore, true
		s.Summary = "start AWS Config recorder " + id + " again: aws configservice start-configuration-recorder --configuration-recorder-name " + id
	case trailscope.KindIngressRule:
		s.Action = "revoke-ingress"
		c := call("ec2", "RevokeSecurityGroupIngress", "IpPermissions.1.IpProtocol", d("ipProtocol"))
		if strings.HasPrefix(id, "sg-") {
			c.Params["GroupId"] = id
			s.Before = []Call{call("ec2", "DescribeSecurityGroups", "GroupId.1", id)}
		} else {
			c.Params["GroupName"] = id
			s.Before = []Call{call("ec2", "DescribeSecurityGroups", "GroupName.1", id)}
		}
		if d("ipProtocol") != "-1" {
			c.Params["IpPermissions.1.FromPort"], c.Params["IpPermissions.1.ToPort"] = d("fromPort"), d("toPort")
		}
		peer := ""
		switch {
		case d("cidrIp") != "":
			c.Params["IpPermissions.1.IpRanges.1.CidrIp"], peer = d("cidrIp"), d("cidrIp")
		case d("cidrIpv6") != "":
			c.Params["IpPermissions.1.Ipv6Ranges.1.CidrIpv6"], peer = d("cidrIpv6"), d("cidrIpv6")
		case d("sourceGroupId") != "":
			c.Params["IpPermissions.1.Groups.1.GroupId"], peer = d("sourceGroupId"), d("sourceGroupId")
		}
		s.Summary = "revoke the ingress the attacker added to " + id + ": " + d("ipProtocol") + " " + d("fromPort") + "-" + d("toPort") + " from " + peer
		s.Calls = []Call{c}
	case trailscope.KindBucketPolicy:
		s.Action, s.Phase = "restore-bucket-policy", PhaseRestore
		s.Before = []Call{call("s3", "GetBucketPolicy", "Bucket", id)}
		if doc, known := opt.PriorBucketPolicy[Key(a.Account, id)]; known && doc != "" {
			s.Summary = "put back the policy bucket " + id + " had before the change"
			s.Calls = []Call{call("s3", "PutBucketPolicy", "Bucket", id, "Policy", doc)}
		} else {
			s.Summary = "bucket " + id + " had no policy before the change (or it is not known): delete the attacker's"
			s.Calls = []Call{call("s3", "DeleteBucketPolicy", "Bucket", id)}
		}
	case trailscope.KindBucketACL:
		s.Action, s.Phase, s.Summary = "restore-bucket-acl", PhaseRestore, "set the ACL of bucket "+id+" back to private"
		s.Before = []Call{call("s3", "GetBucketAcl", "Bucket", id)}
		s.Calls = []Call{call("s3", "PutBucketAcl", "Bucket", id, "ACL", "private")}
	case trailscope.KindPublicAccess:
		s.Action, s.Phase, s.Summary = "restore-public-access-block", PhaseRestore, "block public access to bucket "+id+" again"
		s.Before = []Call{call("s3", "GetPublicAccessBlock", "Bucket", id)}
		s.Calls = []Call{call("s3", "PutPublicAccessBlock", "Bucket", id, "BlockPublicAcls", "true", "IgnorePublicAcls", "true",
			"BlockPublicPolicy", "true", "RestrictPublicBuckets", "true")}
	case trailscope.KindSnapshotShare:
		s.Action = "unshare-snapshot"
		c := call("ec2", "ModifySnapshotAttribute", "SnapshotId", id, "Attribute", "createVolumePermission", "OperationType", "remove")
		who := shareTarget(a, c)
		s.Summary = "stop sharing snapshot " + id + " with " + who
		s.Before = []Call{call("ec2", "DescribeSnapshotAttribute", "SnapshotId", id, "Attribute", "createVolumePermission")}
		s.Calls = []Call{c}
	case trailscope.KindImageShare:
		s.Action = "unshare-image"
		c := call("ec2", "ModifyImageAttribute", "ImageId", id, "Attribute", "launchPermission", "OperationType", "remove")
		who := shareTarget(a, c)
		s.Summary = "stop sharing image " + id + " with " + who
		s.Before = []Call{call("ec2", "DescribeImageAttribute", "ImageId", id, "Attribute", "launchPermission")}
		s.Calls = []Call{c}
	case trailscope.KindManagedPolicy:
		s.Action, s.Manual = "delete-managed-policy", true
		s.Summary = "managed policy " + id + " was created or changed: detach it from every user, group and role (iam:ListEntitiesForPolicy) and delete it, or set its earlier default version, by hand"
	case trailscope.KindTrail:
		s.Action, s.Phase, s.Manual = "recreate-trail", PhaseRestore, true
		s.Summary = "trail " + id + " was deleted: create it again with the organisation's settings (bucket, multi-region, log file validation)"
	case trailscope.KindTrailSelectors:
		s.Action, s.Phase, s.Manual = "restore-event-selectors", PhaseRestore, true
		s.Summary = "the event selectors of trail " + id + " were changed: put back the organisation's selectors"
	default:
		s.Action, s.Manual = "review", true
		s.Summary = "no automatic eradication for a " + a.Kind + " artifact: review " + id + " by hand"
	}
	return s
}

// shareTarget fills the account or group a share is removed from and names
// it.
func shareTarget(a trailscope.Artifact, c Call) string {
	if a.Detail["group"] == "all" {
		c.Params["UserGroup.1"] = "all"
		return "everyone"
	}
	c.Params["UserId.1"] = a.Detail["userId"]
	return "account " + a.Detail["userId"]
}

// priorTrust is the document a changed role's trust goes back to and where
// it was read: the scope's resolution from CloudTrail first, then
// Options.PriorTrust; "" when neither knows it.
func priorTrust(a trailscope.Artifact, opt Options) (doc, from string) {
	if doc := a.Detail[trailscope.DetailPriorTrust]; doc != "" {
		return doc, "CloudTrail " + a.Detail[trailscope.DetailPriorEventName] + " event " + a.Detail[trailscope.DetailPriorEventID] +
			" of " + a.Detail[trailscope.DetailPriorEventTime]
	}
	if doc, ok := opt.PriorTrust[Key(a.Account, a.ID)]; ok && doc != "" {
		return doc, "given with the plan"
	}
	return "", ""
}
