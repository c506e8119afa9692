package awseradicate

import (
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// TestJudge holds each kind's verdict to the live state its reads return.
func TestJudge(t *testing.T) {
	const acct = "111111111111"
	before := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	attacker := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}`
	step := func(kind, id string, detail ...string) eradplan.Step {
		a := trailscope.Artifact{Kind: kind, Account: acct, Region: "us-east-1", ID: id, Detail: map[string]string{}, EventID: "e"}
		for i := 0; i+1 < len(detail); i += 2 {
			a.Detail[detail[i]] = detail[i+1]
		}
		return eradplan.Build([]trailscope.Artifact{a}, eradplan.Options{})[0]
	}
	role := func(doc string) *iam.GetRoleOutput {
		// GetRole answers with the document URL-encoded, as IAM does.
		return &iam.GetRoleOutput{Role: &iamtypes.Role{RoleName: aws.String("ops"), AssumeRolePolicyDocument: aws.String(url.QueryEscape(doc))}}
	}
	attached := func(arns ...string) *iam.ListAttachedUserPoliciesOutput {
		out := &iam.ListAttachedUserPoliciesOutput{}
		for _, a := range arns {
			out.AttachedPolicies = append(out.AttachedPolicies, iamtypes.AttachedPolicy{PolicyArn: aws.String(a)})
		}
		return out
	}
	keys := func(status iamtypes.StatusType) *iam.ListAccessKeysOutput {
		return &iam.ListAccessKeysOutput{AccessKeyMetadata: []iamtypes.AccessKeyMetadata{{AccessKeyId: aws.String("AKIABACKDOOR"), Status: status}}}
	}
	sg := func(cidr string) *ec2.DescribeSecurityGroupsOutput {
		return &ec2.DescribeSecurityGroupsOutput{SecurityGroups: []ec2types.SecurityGroup{{GroupId: aws.String("sg-1"), IpPermissions: []ec2types.IpPermission{{
			IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []ec2types.IpRange{{CidrIp: aws.String(cidr)}}}}}}}
	}
	trustStep := step(trailscope.KindRoleTrust, "ops", "policyDocument", attacker, trailscope.DetailPriorTrust, before)
	ingress := step(trailscope.KindIngressRule, "sg-1", "ipProtocol", "tcp", "fromPort", "22", "toPort", "22", "cidrIp", "0.0.0.0/0")
	tests := []struct {
		name  string
		step  eradplan.Step
		outs  []any
		codes []string
		want  string
	}{
		{"key deleted", step(trailscope.KindAccessKey, "AKIABACKDOOR", "userName", "bob"), []any{&iam.ListAccessKeysOutput{}}, nil, OutcomeGone},
		{"key inactive", step(trailscope.KindAccessKey, "AKIABACKDOOR", "userName", "bob"), []any{keys(iamtypes.StatusTypeInactive)}, nil, OutcomeNeutralised},
		{"key active", step(trailscope.KindAccessKey, "AKIABACKDOOR", "userName", "bob"), []any{keys(iamtypes.StatusTypeActive)}, nil, OutcomeLive},
		{"key's user deleted", step(trailscope.KindAccessKey, "AKIABACKDOOR", "userName", "bob"), []any{nil}, []string{"NoSuchEntity"}, OutcomeGone},
		{"user quarantined", step(trailscope.KindUser, "bob"), []any{&iam.GetUserOutput{}, &iam.ListAccessKeysOutput{}, attached(eradplan.DenyAllPolicyARN), &iam.ListUserPoliciesOutput{}, nil},
			[]string{"", "", "", "", "NoSuchEntity"}, OutcomeNeutralised},
		{"user not quarantined", step(trailscope.KindUser, "bob"), []any{&iam.GetUserOutput{}, &iam.ListAccessKeysOutput{}, attached("arn:aws:iam::aws:policy/AdministratorAccess"), &iam.ListUserPoliciesOutput{}, nil},
			[]string{"", "", "", "", "NoSuchEntity"}, OutcomeLive},
		{"user's policies unreadable", step(trailscope.KindUser, "bob"), []any{&iam.GetUserOutput{}, nil, nil, nil, nil},
			[]string{"", "AccessDenied", "AccessDenied", "AccessDenied", "AccessDenied"}, OutcomeUnverified},
		{"policy still attached", step(trailscope.KindUserPolicy, "bob", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
			[]any{attached("arn:aws:iam::aws:policy/AdministratorAccess")}, nil, OutcomeLive},
		{"policy detached", step(trailscope.KindUserPolicy, "bob", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
			[]any{attached(eradplan.DenyAllPolicyARN)}, nil, OutcomeGone},
		{"trust put back", trustStep, []any{role(before)}, nil, OutcomeNeutralised},
		{"trust still the attacker's", trustStep, []any{role(attacker)}, nil, OutcomeLive},
		{"trust admits no one", step(trailscope.KindRoleTrust, "ops", "policyDocument", attacker), []any{role(eradplan.DenyAllTrustPolicy)}, nil, OutcomeNeutralised},
		{"ingress still open", ingress, []any{sg("0.0.0.0/0")}, nil, OutcomeLive},
		{"ingress revoked, another rule stays", ingress, []any{sg("10.0.0.0/8")}, nil, OutcomeGone},
		{"logging back on", step(trailscope.KindTrailLogging, "t"), []any{&cloudtrail.GetTrailStatusOutput{IsLogging: aws.Bool(true)}}, nil, OutcomeNeutralised},
		{"logging still off", step(trailscope.KindTrailLogging, "t"), []any{&cloudtrail.GetTrailStatusOutput{IsLogging: aws.Bool(false)}}, nil, OutcomeLive},
		{"trail deleted", step(trailscope.KindTrailLogging, "t"), []any{nil}, []string{"TrailNotFoundException"}, OutcomeLive},
		{"function deleted", step(trailscope.KindFunction, "exfil"), []any{nil}, []string{"ResourceNotFoundException"}, OutcomeGone},
		{"function still there", step(trailscope.KindFunction, "exfil"), []any{&lambda.GetFunctionOutput{}}, nil, OutcomeLive},
		{"replaced code cannot run", step(trailscope.KindFunctionCode, "orders"),
			[]any{&lambda.GetFunctionOutput{Concurrency: &lambdatypes.Concurrency{ReservedConcurrentExecutions: aws.Int32(0)}}}, nil, OutcomeNeutralised},
		{"snapshot still shared", step(trailscope.KindSnapshotShare, "snap-1", "userId", "999988887777"),
			[]any{&ec2.DescribeSnapshotAttributeOutput{CreateVolumePermissions: []ec2types.CreateVolumePermission{{UserId: aws.String("999988887777")}}}}, nil, OutcomeLive},
		{"snapshot unshared", step(trailscope.KindSnapshotShare, "snap-1", "userId", "999988887777"), []any{&ec2.DescribeSnapshotAttributeOutput{}}, nil, OutcomeGone},
		{"read refused", step(trailscope.KindFunction, "exfil"), []any{nil}, []string{"AccessDeniedException"}, OutcomeUnverified},
		{"a read of the wrong shape", step(trailscope.KindAccessKey, "AKIABACKDOOR", "userName", "bob"), []any{&iam.GetUserOutput{}}, nil, OutcomeUnverified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			codes := tt.codes
			if codes == nil {
				codes = make([]string, len(tt.outs))
			}
			got, why := judge(tt.step, tt.outs, codes)
			if got != tt.want {
				t.Fatalf("%s: %s (%s), want %s", tt.step.Kind, got, why, tt.want)
			}
			if got != OutcomeGone && why == "" {
				t.Fatalf("%s: %s without a reason", tt.step.Kind, got)
			}
		})
	}
}
