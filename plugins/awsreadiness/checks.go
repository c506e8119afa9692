package awsreadiness

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
)

// Status is a check's outcome.
type Status string

// The statuses, from best to worst; unknown is never counted as ok.
const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"
	StatusFail    Status = "fail"
	StatusUnknown Status = "unknown"
)

// The checks' ids.
const (
	CheckPermissions           = "reach.permissions"
	CheckGuardDuty             = "detection.guardduty"
	CheckSecurityHub           = "detection.securityhub"
	CheckCloudTrail            = "detection.cloudtrail"
	CheckIsolationGroup        = "containment.isolation_group"
	CheckTerminationProtection = "containment.termination_protection"
	CheckAutoScaling           = "containment.autoscaling"
	CheckEvidenceBucket        = "evidence.bucket"
)

// Check is one check's outcome.
type Check struct {
	// ID names the check, e.g. detection.guardduty.
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Evidence is what the check saw.
	Evidence string `json:"evidence"`
	// Remediation is the exact command, template or console step that
	// fixes a gap; empty when the check is ok.
	Remediation string `json:"remediation,omitempty"`
}

// RequiredActions are the IAM actions the plugins in the catalogue call
// in a member account, which the responder role must allow: the list
// deploy/cloudformation/member-account.yaml grants outside the management
// account. test/deploy holds it against the plugins' source.
var RequiredActions = []string{
	"autoscaling:AttachInstances", "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
	"autoscaling:DetachInstances", "autoscaling:EnterStandby", "autoscaling:ExitStandby", "autoscaling:ResumeProcesses",
	"autoscaling:SuspendProcesses", "cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:LookupEvents",
	"cloudtrail:StartLogging", "ec2:AssociateIamInstanceProfile", "ec2:AuthorizeSecurityGroupEgress",
	"ec2:AuthorizeSecurityGroupIngress", "ec2:CopySnapshot", "ec2:CreateSecurityGroup", "ec2:CreateSnapshots", "ec2:CreateTags",
	"ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup", "ec2:DeleteTags", "ec2:DescribeIamInstanceProfileAssociations",
	"ec2:DescribeImageAttribute", "ec2:DescribeInstanceAttribute", "ec2:DescribeInstances", "ec2:DescribeKeyPairs",
	"ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshotAttribute", "ec2:DescribeSnapshots",
	"ec2:DescribeVolumes", "ec2:DescribeVpcs", "ec2:DisassociateIamInstanceProfile", "ec2:GetConsoleOutput",
	"ec2:GetConsoleScreenshot", "ec2:ModifyImageAttribute", "ec2:ModifyInstanceAttribute", "ec2:ModifyNetworkInterfaceAttribute",
	"ec2:ModifySnapshotAttribute", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:StopInstances",
	"ec2:TerminateInstances", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:DescribeTargetGroups",
	"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:RegisterTargets", "events:DeleteRule",
	"events:DescribeApiDestination", "events:DescribeRule", "events:DisableRule", "events:ListRules", "events:ListTargetsByRule",
	"events:RemoveTargets", "guardduty:CreateDetector", "guardduty:GetAdministratorAccount", "guardduty:GetDetector",
	"guardduty:ListDetectors", "guardduty:UpdateDetector", "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:DeleteAccessKey",
	"iam:DeleteLoginProfile", "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DeleteUser", "iam:DeleteUserPolicy",
	"iam:DetachRolePolicy", "iam:DetachUserPolicy", "iam:GetAccessKeyLastUsed", "iam:GetInstanceProfile", "iam:GetLoginProfile",
	"iam:GetRole", "iam:GetRolePolicy", "iam:GetUser", "iam:GetUserPolicy", "iam:ListAccessKeys", "iam:ListAttachedRolePolicies",
	"iam:ListAttachedUserPolicies", "iam:ListGroupsForUser", "iam:ListInstanceProfilesForRole", "iam:ListRolePolicies",
	"iam:ListUserPolicies", "iam:ListUsers", "iam:PassRole", "iam:PutRolePolicy", "iam:PutUserPolicy",
	"iam:RemoveRoleFromInstanceProfile", "iam:RemoveUserFromGroup", "iam:SimulatePrincipalPolicy", "iam:UpdateAccessKey",
	"iam:UpdateAssumeRolePolicy", "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
	"kms:ReEncryptFrom", "kms:ReEncryptTo", "lambda:DeleteFunction", "lambda:DeleteFunctionConcurrency", "lambda:GetFunction",
	"lambda:GetFunctionConcurrency", "lambda:GetPolicy", "lambda:PutFunctionConcurrency", "lambda:RemovePermission",
	"s3:DeleteBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketPolicy",
	"s3:GetBucketPublicAccessBlock", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:PutBucketAcl",
	"s3:PutBucketPolicy", "s3:PutBucketPublicAccessBlock", "securityhub:DescribeHub", "securityhub:EnableSecurityHub",
	"sts:GetAccessKeyInfo",
}

// memberTemplate is where the responder role's permissions come from.
const memberTemplate = "deploy/cloudformation/member-account.yaml"

var accountRE = regexp.MustCompile(`^\d{12}$`)

// inputs is what every check of a task reads.
type inputs struct {
	c               Clients
	account, region string
	roleARN         string
	required        []string
	instances       []Instance
	inventoryErr    error
	// intake is where the controller takes findings in.
	intake Intake
	// detectorID is the region's GuardDuty detector, once checkGuardDuty
	// found one.
	detectorID string
}

// responderRoleARN is the role the worker assumed for the task: the
// permission check simulates its policies.
func responderRoleARN(arn string) string {
	if strings.Contains(arn, ":role/") {
		return arn
	}
	return ""
}

// denied turns an error into an unknown check when it is an access
// denial, naming the action; other errors are unknown too, with the
// error. A refused read never passes for ok.
func denied(id, action string, err error) Check {
	code := awsclient.ErrorCode(err)
	if strings.Contains(code, "AccessDenied") || code == "UnauthorizedOperation" || code == "AuthorizationError" {
		return Check{ID: id, Status: StatusUnknown, Evidence: action + " was denied (" + code + ")",
			Remediation: "allow " + action + " to the responder role: redeploy " + memberTemplate + " (aws cloudformation update-stack-set --stack-set-name FirebreakResponder …)"}
	}
	return Check{ID: id, Status: StatusUnknown, Evidence: awsclient.APIError(action, err).Error(), Remediation: "run `firebreak readiness` again; if it persists, check the AWS error above"}
}

// runningInstances lists the region's running instances with their tags.
func runningInstances(ctx context.Context, c EC2) ([]Instance, error) {
	out := []Instance{}
	pages := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, awsclient.APIError("ec2:DescribeInstances", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				tags := map[string]string{}
				for _, t := range i.Tags {
					tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				out = append(out, Instance{ID: aws.ToString(i.InstanceId), Tags: tags})
			}
		}
	}
	slices.SortFunc(out, func(x, y Instance) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// checkPermissions simulates the responder role's policies for every
// action the catalogue's plugins call.
func checkPermissions(ctx context.Context, in *inputs) Check {
	const id = CheckPermissions
	if in.roleARN == "" {
		return Check{ID: id, Status: StatusUnknown, Evidence: "the task ran without an assumed responder role (a worker in the account itself), so there is no role to simulate",
			Remediation: "run readiness from the central workers, which assume the responder role of " + memberTemplate}
	}
	var refused []string
	// SimulatePrincipalPolicy takes a bounded list of actions per call.
	for batch := range slices.Chunk(in.required, 50) {
		out, err := in.c.IAM.SimulatePrincipalPolicy(ctx, &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String(in.roleARN), ActionNames: batch,
			ContextEntries: simulationContext(in.region, in.roleARN)})
		if err != nil {
			return denied(id, "iam:SimulatePrincipalPolicy", err)
		}
		for _, r := range out.EvaluationResults {
			if r.EvalDecision != "allowed" {
				refused = append(refused, fmt.Sprintf("%s (%s)", aws.ToString(r.EvalActionName), r.EvalDecision))
			}
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return Check{ID: id, Status: StatusFail, Evidence: fmt.Sprintf("%s may not %s", in.roleARN, strings.Join(refused, ", ")),
			Remediation: "redeploy the responder role from " + memberTemplate + " (aws cloudformation update-stack-set --stack-set-name FirebreakResponder --use-previous-template …) and remove any policy that denies these actions"}
	}
	return Check{ID: id, Status: StatusOK, Evidence: fmt.Sprintf("%s is allowed all %d actions the plugins call (IAM policy simulation)", in.roleARN, len(in.required))}
}

// simulationContext is the context the plugins' calls carry for the
// grants that are conditioned: EBS uses KMS on the role's behalf when it
// copies a snapshot, an instance profile's role is passed to EC2 for one
// of the account's instances, and quarantine attaches AWSDenyAll.
func simulationContext(region, roleARN string) []iamtypes.ContextEntry {
	entry := func(key, value string, typ iamtypes.ContextKeyTypeEnum) iamtypes.ContextEntry {
		return iamtypes.ContextEntry{ContextKeyName: aws.String(key), ContextKeyValues: []string{value}, ContextKeyType: typ}
	}
	// arn:PARTITION:iam::ACCOUNT:role/NAME
	partition, account := "aws", ""
	if f := strings.Split(roleARN, ":"); len(f) >= 5 {
		partition, account = f[1], f[4]
	}
	return []iamtypes.ContextEntry{
		entry("kms:ViaService", "ec2."+region+".amazonaws.com", iamtypes.ContextKeyTypeEnumString),
		entry("kms:GrantIsForAWSResource", "true", iamtypes.ContextKeyTypeEnumBoolean),
		entry("iam:PassedToService", "ec2.amazonaws.com", iamtypes.ContextKeyTypeEnumString),
		entry("iam:AssociatedResourceArn", "arn:"+partition+":ec2:"+region+":"+account+":instance/*", iamtypes.ContextKeyTypeEnumString),
		entry("iam:PolicyARN", "arn:"+partition+":iam::aws:policy/AWSDenyAll", iamtypes.ContextKeyTypeEnumString),
	}
}

// checkGuardDuty wants an enabled detector in the region.
func checkGuardDuty(ctx context.Context, in *inputs) Check {
	const id = CheckGuardDuty
	fix := fmt.Sprintf("enable GuardDuty in %s: aws guardduty create-detector --enable --region %s (or from the GuardDuty delegated administrator: aws guardduty update-organization-configuration --auto-enable-organization-members ALL)", in.region, in.region)
	list, err := in.c.GuardDuty.ListDetectors(ctx, &guardduty.ListDetectorsInput{})
	if err != nil {
		return denied(id, "guardduty:ListDetectors", err)
	}
	if len(list.DetectorIds) == 0 {
		return Check{ID: id, Status: StatusFail, Evidence: "no GuardDuty detector in " + in.region, Remediation: fix}
	}
	in.detectorID = list.DetectorIds[0]
	d, err := in.c.GuardDuty.GetDetector(ctx, &guardduty.GetDetectorInput{DetectorId: aws.String(list.DetectorIds[0])})
	if err != nil {
		return denied(id, "guardduty:GetDetector", err)
	}
	if d.Status != "ENABLED" {
		return Check{ID: id, Status: StatusFail, Evidence: fmt.Sprintf("detector %s is %s", list.DetectorIds[0], d.Status),
			Remediation: fmt.Sprintf("aws guardduty update-detector --detector-id %s --enable --region %s", list.DetectorIds[0], in.region)}
	}
	return Check{ID: id, Status: StatusOK, Evidence: fmt.Sprintf("detector %s is ENABLED, findings every %s", list.DetectorIds[0], d.FindingPublishingFrequency)}
}

// checkSecurityHub wants Security Hub enabled in the region.
func checkSecurityHub(ctx context.Context, in *inputs) Check {
	const id = CheckSecurityHub
	hub, err := in.c.SecurityHub.DescribeHub(ctx, &securityhub.DescribeHubInput{})
	if err != nil {
		if code := awsclient.ErrorCode(err); code == "InvalidAccessException" || code == "ResourceNotFoundException" {
			return Check{ID: id, Status: StatusFail, Evidence: "Security Hub is not enabled in " + in.region,
				Remediation: fmt.Sprintf("aws securityhub enable-security-hub --region %s (or auto-enable from the Security Hub delegated administrator)", in.region)}
		}
		return denied(id, "securityhub:DescribeHub", err)
	}
	return Check{ID: id, Status: StatusOK, Evidence: "Security Hub is enabled: " + aws.ToString(hub.HubArn)}
}

// checkCloudTrail wants a logging trail that covers the region: an
// organisation trail is best, a multi-region trail of the account's own
// is ok, a trail of this region only is a warning.
func checkCloudTrail(ctx context.Context, in *inputs) Check {
	const id = CheckCloudTrail
	fix := "create an organisation trail from the management account: aws cloudtrail create-trail --name org-trail --s3-bucket-name BUCKET --is-organization-trail --is-multi-region-trail, then aws cloudtrail start-logging --name org-trail"
	trails, err := in.c.CloudTrail.DescribeTrails(ctx, &cloudtrail.DescribeTrailsInput{IncludeShadowTrails: aws.Bool(true)})
	if err != nil {
		return denied(id, "cloudtrail:DescribeTrails", err)
	}
	var best Check
	rank := -1
	var stopped []string
	for _, t := range trails.TrailList {
		st, err := in.c.CloudTrail.GetTrailStatus(ctx, &cloudtrail.GetTrailStatusInput{Name: t.TrailARN})
		if err != nil {
			return denied(id, "cloudtrail:GetTrailStatus", err)
		}
		if !aws.ToBool(st.IsLogging) {
			stopped = append(stopped, aws.ToString(t.Name))
			continue
		}
		switch {
		case aws.ToBool(t.IsOrganizationTrail) && rank < 2:
			rank, best = 2, Check{ID: id, Status: StatusOK, Evidence: "organisation trail " + aws.ToString(t.TrailARN) + " is logging"}
		case aws.ToBool(t.IsMultiRegionTrail) && rank < 1:
			rank, best = 1, Check{ID: id, Status: StatusOK, Evidence: "multi-region trail " + aws.ToString(t.TrailARN) + " is logging (not an organisation trail)"}
		case rank < 0:
			rank, best = 0, Check{ID: id, Status: StatusWarn, Evidence: "only the single-region trail " + aws.ToString(t.TrailARN) + " is logging", Remediation: fix}
		}
	}
	if rank >= 0 {
		return best
	}
	evidence := "no trail covers " + in.region
	if len(stopped) > 0 {
		evidence = "trails " + strings.Join(stopped, ", ") + " exist but are not logging"
		fix = "aws cloudtrail start-logging --name " + stopped[0] + " (in the trail's home region and account)"
	}
	return Check{ID: id, Status: StatusFail, Evidence: evidence, Remediation: fix}
}

// checkIsolationGroup makes sure the isolation security group can be
// created in each VPC, by DryRun.
func checkIsolationGroup(ctx context.Context, in *inputs) Check {
	const id = CheckIsolationGroup
	vpcs, err := in.c.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		return denied(id, "ec2:DescribeVpcs", err)
	}
	if len(vpcs.Vpcs) == 0 {
		return Check{ID: id, Status: StatusOK, Evidence: "no VPC in " + in.region + ": nothing to isolate"}
	}
	var ok []string
	for _, v := range vpcs.Vpcs {
		_, err := in.c.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{DryRun: aws.Bool(true), GroupName: aws.String(awsec2.IsolationGroupName),
			Description: aws.String("Firebreak isolation (readiness dry run)"), VpcId: v.VpcId})
		switch code := awsclient.ErrorCode(err); code {
		case "DryRunOperation":
			ok = append(ok, aws.ToString(v.VpcId))
		case "UnauthorizedOperation":
			return Check{ID: id, Status: StatusFail, Evidence: "ec2:CreateSecurityGroup was denied (dry run) in " + aws.ToString(v.VpcId) + ": host isolation by security group cannot work",
				Remediation: "allow ec2:CreateSecurityGroup to the responder role: redeploy " + memberTemplate + ", and check SCPs that deny it"}
		default:
			return denied(id, "ec2:CreateSecurityGroup", err)
		}
	}
	return Check{ID: id, Status: StatusOK, Evidence: fmt.Sprintf("the isolation group can be created in %d VPC(s) (DryRun): %s", len(ok), strings.Join(ok, ", "))}
}

// checkTerminationProtection makes sure termination protection can be
// set, by DryRun on the first running instance.
func checkTerminationProtection(ctx context.Context, in *inputs) Check {
	const id = CheckTerminationProtection
	if in.inventoryErr != nil {
		return Check{ID: id, Status: StatusUnknown, Evidence: "the instances could not be listed: " + in.inventoryErr.Error(),
			Remediation: "allow ec2:DescribeInstances to the responder role: redeploy " + memberTemplate}
	}
	if len(in.instances) == 0 {
		return Check{ID: id, Status: StatusOK, Evidence: "no running instance in " + in.region}
	}
	target := in.instances[0].ID
	_, err := in.c.EC2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{DryRun: aws.Bool(true), InstanceId: aws.String(target),
		DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
	switch code := awsclient.ErrorCode(err); code {
	case "DryRunOperation":
		return Check{ID: id, Status: StatusOK, Evidence: "termination protection can be set (DryRun on " + target + ")"}
	case "UnauthorizedOperation":
		return Check{ID: id, Status: StatusFail, Evidence: "ec2:ModifyInstanceAttribute was denied (dry run on " + target + "): an isolated instance could be terminated with its evidence",
			Remediation: "allow ec2:ModifyInstanceAttribute to the responder role: redeploy " + memberTemplate}
	}
	return denied(id, "ec2:ModifyInstanceAttribute", err)
}

// checkAutoScaling lists the Auto Scaling groups whose lifecycle would
// replace an isolated instance: at their minimum size, aws-ec2-isolate
// must detach the instance rather than put it in Standby, and the group
// launches a replacement.
func checkAutoScaling(ctx context.Context, in *inputs) Check {
	const id = CheckAutoScaling
	var atMin, others []string
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(in.c.AutoScaling, &autoscaling.DescribeAutoScalingGroupsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return denied(id, "autoscaling:DescribeAutoScalingGroups", err)
		}
		for _, g := range page.AutoScalingGroups {
			if len(g.Instances) == 0 {
				continue
			}
			var ids []string
			for _, i := range g.Instances {
				ids = append(ids, aws.ToString(i.InstanceId))
			}
			desc := fmt.Sprintf("%s (desired %d, min %d: %s)", aws.ToString(g.AutoScalingGroupName), aws.ToInt32(g.DesiredCapacity), aws.ToInt32(g.MinSize), strings.Join(ids, ", "))
			if aws.ToInt32(g.DesiredCapacity) <= aws.ToInt32(g.MinSize) {
				atMin = append(atMin, desc)
			} else {
				others = append(others, desc)
			}
		}
	}
	if len(atMin) > 0 {
		slices.Sort(atMin)
		return Check{ID: id, Status: StatusWarn, Evidence: "at their minimum size, these groups would replace an isolated instance (aws-ec2-isolate detaches it): " + strings.Join(atMin, "; "),
			Remediation: "lower each group's minimum by one (aws autoscaling update-auto-scaling-group --auto-scaling-group-name NAME --min-size N) so isolation can use Standby, or accept the replacement"}
	}
	if len(others) > 0 {
		slices.Sort(others)
		return Check{ID: id, Status: StatusOK, Evidence: "isolated instances would go to Standby in: " + strings.Join(others, "; ")}
	}
	return Check{ID: id, Status: StatusOK, Evidence: "no Auto Scaling group with instances in " + in.region}
}

// checkEvidenceBucket wants the evidence bucket to have Object Lock with a
// default retention, versioning and SSE-KMS.
func checkEvidenceBucket(ctx context.Context, in *inputs, bucket string) Check {
	const id = CheckEvidenceBucket
	var gaps, fixes, seen []string
	lock, err := in.c.S3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(bucket)})
	switch {
	case awsclient.ErrorCode(err) == "ObjectLockConfigurationNotFoundError":
		gaps = append(gaps, "no Object Lock")
		fixes = append(fixes, "Object Lock can only be turned on for a bucket with versioning: aws s3api put-object-lock-configuration --bucket "+bucket+
			" --object-lock-configuration '{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{\"DefaultRetention\":{\"Mode\":\"COMPLIANCE\",\"Days\":365}}}' "+
			"(or create the bucket with deploy/cloudformation/security-account.yaml, which enables it)")
	case err != nil:
		return denied(id, "s3:GetBucketObjectLockConfiguration", err)
	case lock.ObjectLockConfiguration.Rule == nil || lock.ObjectLockConfiguration.Rule.DefaultRetention == nil:
		gaps = append(gaps, "Object Lock without a default retention")
		fixes = append(fixes, "aws s3api put-object-lock-configuration --bucket "+bucket+" --object-lock-configuration '{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{\"DefaultRetention\":{\"Mode\":\"COMPLIANCE\",\"Days\":365}}}'")
	default:
		r := lock.ObjectLockConfiguration.Rule.DefaultRetention
		seen = append(seen, fmt.Sprintf("Object Lock %s %d days", r.Mode, aws.ToInt32(r.Days)+365*aws.ToInt32(r.Years)))
	}
	v, err := in.c.S3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)})
	if err != nil {
		return denied(id, "s3:GetBucketVersioning", err)
	}
	if v.Status != "Enabled" {
		gaps = append(gaps, "versioning not enabled")
		fixes = append(fixes, "aws s3api put-bucket-versioning --bucket "+bucket+" --versioning-configuration Status=Enabled")
	} else {
		seen = append(seen, "versioning Enabled")
	}
	enc, err := in.c.S3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(bucket)})
	if err != nil {
		return denied(id, "s3:GetEncryptionConfiguration", err)
	}
	kms := ""
	if enc.ServerSideEncryptionConfiguration != nil {
		for _, r := range enc.ServerSideEncryptionConfiguration.Rules {
			if d := r.ApplyServerSideEncryptionByDefault; d != nil && strings.HasPrefix(string(d.SSEAlgorithm), "aws:kms") {
				kms = aws.ToString(d.KMSMasterKeyID)
			}
		}
	}
	if kms == "" {
		gaps = append(gaps, "no SSE-KMS default encryption")
		fixes = append(fixes, "aws s3api put-bucket-encryption --bucket "+bucket+" --server-side-encryption-configuration "+
			"'{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\",\"KMSMasterKeyID\":\"KEY_ARN\"},\"BucketKeyEnabled\":true}]}'")
	} else {
		seen = append(seen, "SSE-KMS "+kms)
	}
	if len(gaps) > 0 {
		status := StatusWarn
		if slices.Contains(gaps, "no Object Lock") {
			// Without Object Lock, evidence can be deleted: the custody
			// record proves nothing.
			status = StatusFail
		}
		return Check{ID: id, Status: status, Evidence: "evidence bucket " + bucket + ": " + strings.Join(gaps, ", "), Remediation: strings.Join(fixes, "; ")}
	}
	return Check{ID: id, Status: StatusOK, Evidence: "evidence bucket " + bucket + ": " + strings.Join(seen, ", ")}
}
