package awseradicate

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
)

// Verification outcomes (eradplan's): what a step's resource is now, read
// live from its account after eradication.
const (
	OutcomeGone        = eradplan.VerifyGone
	OutcomeNeutralised = eradplan.VerifyNeutralised
	OutcomeLive        = eradplan.VerifyLive
	OutcomeUnverified  = eradplan.VerifyUnverified
)

// verifyStep reads the step's resource through its before-state reads and
// says whether the attacker's artifact is gone, neutralised or still live.
// It changes nothing.
func verifyStep(ctx context.Context, c *Clients, s eradplan.Step) StepResult {
	sr := StepResult{ID: s.ID, Action: s.Action, Kind: s.Kind, Resource: s.Resource, Region: s.Region, Calls: []CallResult{}, Before: map[string]any{}}
	if s.Manual || len(s.Before) == 0 {
		sr.Outcome, sr.Error = OutcomeUnverified, "no live check: "+s.Summary
		return sr
	}
	outs := make([]any, len(s.Before))
	codes := make([]string, len(s.Before))
	for i, b := range s.Before {
		out, err := ops[b.Service+":"+b.Operation].call(ctx, c, b.Params)
		if err != nil {
			codes[i] = awsclient.ErrorCode(err)
			if codes[i] == "" {
				codes[i] = "Error"
			}
			sr.Before[b.String()] = map[string]string{"error": codes[i]}
			continue
		}
		outs[i] = out
		sr.Before[b.String()] = outputJSON(out)
	}
	sr.Outcome, sr.Error = judge(s, outs, codes)
	return sr
}

// judge tells a step's state from its reads' answers (outs) or error codes.
func judge(s eradplan.Step, outs []any, codes []string) (outcome, why string) {
	if codes[0] != "" {
		if notFound(codes[0]) {
			if s.Kind == trailscope.KindTrailLogging {
				return OutcomeLive, "the trail does not exist: logging is not back on"
			}
			return OutcomeGone, ""
		}
		return OutcomeUnverified, s.Before[0].String() + ": " + codes[0]
	}
	d := func(k string) string { return s.Detail[k] }
	switch s.Kind {
	case trailscope.KindAccessKey:
		out, _ := outs[0].(*iam.ListAccessKeysOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, k := range out.AccessKeyMetadata {
			if aws.ToString(k.AccessKeyId) == s.Resource {
				if k.Status == "Inactive" {
					return OutcomeNeutralised, "the key is inactive"
				}
				return OutcomeLive, "the key is active"
			}
		}
		return OutcomeGone, ""
	case trailscope.KindUser, trailscope.KindRole:
		// Before[2] of a user, Before[1] of a role, lists its attached
		// policies.
		i := 2
		if s.Kind == trailscope.KindRole {
			i = 1
		}
		if i >= len(outs) || codes[i] != "" {
			return OutcomeUnverified, "its attached policies could not be read"
		}
		var arns []string
		switch out := outs[i].(type) {
		case *iam.ListAttachedUserPoliciesOutput:
			for _, p := range out.AttachedPolicies {
				arns = append(arns, aws.ToString(p.PolicyArn))
			}
		case *iam.ListAttachedRolePoliciesOutput:
			for _, p := range out.AttachedPolicies {
				arns = append(arns, aws.ToString(p.PolicyArn))
			}
		}
		for _, a := range arns {
			if a == eradplan.DenyAllPolicyARN {
				return OutcomeNeutralised, "quarantined under AWSDenyAll; deleting it waits for --confirm-deletes"
			}
		}
		return OutcomeLive, "it exists without AWSDenyAll"
	case trailscope.KindUserPolicy:
		out, _ := outs[0].(*iam.ListAttachedUserPoliciesOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, p := range out.AttachedPolicies {
			if aws.ToString(p.PolicyArn) == d("policyArn") {
				return OutcomeLive, d("policyArn") + " is still attached"
			}
		}
		return OutcomeGone, ""
	case trailscope.KindRolePolicy:
		out, _ := outs[0].(*iam.ListAttachedRolePoliciesOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, p := range out.AttachedPolicies {
			if aws.ToString(p.PolicyArn) == d("policyArn") {
				return OutcomeLive, d("policyArn") + " is still attached"
			}
		}
		return OutcomeGone, ""
	case trailscope.KindLoginProfile, trailscope.KindUserInlinePolicy, trailscope.KindRoleInlinePolicy,
		trailscope.KindFunction, trailscope.KindKeyPair, trailscope.KindEventRule:
		// The read answered: the thing is there.
		if out, ok := outs[0].(*ec2.DescribeKeyPairsOutput); ok && len(out.KeyPairs) == 0 {
			return OutcomeGone, ""
		}
		return OutcomeLive, "it still exists"
	case trailscope.KindRoleTrust:
		out, _ := outs[0].(*iam.GetRoleOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		want := ""
		for _, c := range s.Calls {
			if c.Operation == "UpdateAssumeRolePolicy" {
				want = c.Params["PolicyDocument"]
			}
		}
		have := aws.ToString(out.Role.AssumeRolePolicyDocument)
		if u, err := url.QueryUnescape(have); err == nil {
			have = u
		}
		if sameJSON(have, want) {
			if want == eradplan.DenyAllTrustPolicy {
				return OutcomeNeutralised, "the trust admits no one (the earlier document was not known)"
			}
			return OutcomeNeutralised, "the trust is the document before the change"
		}
		if sameJSON(have, d("policyDocument")) {
			return OutcomeLive, "the trust is still the attacker's document"
		}
		return OutcomeLive, "the trust is neither the planned document nor one that admits no one"
	case trailscope.KindIngressRule:
		out, _ := outs[0].(*ec2.DescribeSecurityGroupsOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, g := range out.SecurityGroups {
			for _, p := range g.IpPermissions {
				if ingressMatches(p, s.Detail) {
					return OutcomeLive, "the rule is still in the group"
				}
			}
		}
		return OutcomeGone, ""
	case trailscope.KindTrailLogging:
		if out, _ := outs[0].(*cloudtrail.GetTrailStatusOutput); out != nil && aws.ToBool(out.IsLogging) {
			return OutcomeNeutralised, "the trail is logging"
		}
		return OutcomeLive, "the trail is not logging"
	case trailscope.KindFunctionCode:
		if out, _ := outs[0].(*lambda.GetFunctionOutput); out != nil && out.Concurrency != nil &&
			aws.ToInt32(out.Concurrency.ReservedConcurrentExecutions) == 0 {
			return OutcomeNeutralised, "its reserved concurrency is 0: it cannot run"
		}
		return OutcomeLive, "it can still run"
	case trailscope.KindSnapshotShare:
		out, _ := outs[0].(*ec2.DescribeSnapshotAttributeOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, p := range out.CreateVolumePermissions {
			if (d("userId") != "" && aws.ToString(p.UserId) == d("userId")) || (d("group") != "" && string(p.Group) == d("group")) {
				return OutcomeLive, "the snapshot is still shared"
			}
		}
		return OutcomeGone, ""
	case trailscope.KindInstance:
		out, _ := outs[0].(*ec2.DescribeInstancesOutput)
		if out == nil {
			return unexpectedRead(s)
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if in.State != nil {
					switch in.State.Name {
					case ec2types.InstanceStateNameTerminated:
						return OutcomeGone, ""
					case ec2types.InstanceStateNameStopped, ec2types.InstanceStateNameStopping:
						return OutcomeNeutralised, "the instance is stopped"
					}
					return OutcomeLive, "the instance is " + string(in.State.Name)
				}
			}
		}
		return OutcomeGone, ""
	}
	return OutcomeUnverified, "no live check for " + s.Kind + " yet: look by hand"
}

// ingressMatches reports whether p holds the rule an ingress artifact
// names (protocol, ports, and its CIDR or source group).
func ingressMatches(p ec2types.IpPermission, d map[string]string) bool {
	if aws.ToString(p.IpProtocol) != d["ipProtocol"] {
		return false
	}
	port := func(v *int32, s string) bool { return s == "" || (v != nil && strconv.Itoa(int(*v)) == s) }
	if !port(p.FromPort, d["fromPort"]) || !port(p.ToPort, d["toPort"]) {
		return false
	}
	for _, r := range p.IpRanges {
		if d["cidrIp"] != "" && aws.ToString(r.CidrIp) == d["cidrIp"] {
			return true
		}
	}
	for _, r := range p.Ipv6Ranges {
		if d["cidrIpv6"] != "" && aws.ToString(r.CidrIpv6) == d["cidrIpv6"] {
			return true
		}
	}
	for _, g := range p.UserIdGroupPairs {
		if d["sourceGroupId"] != "" && aws.ToString(g.GroupId) == d["sourceGroupId"] {
			return true
		}
	}
	return false
}

// sameJSON reports whether two JSON documents are equal as values.
func sameJSON(a, b string) bool {
	if strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
		return false
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// unexpectedRead is the verdict on a step whose first read is not the one
// its kind plans (a step crafted or planned by another version).
func unexpectedRead(s eradplan.Step) (string, string) {
	return OutcomeUnverified, s.Before[0].String() + " is not the read a " + s.Kind + " step is checked with"
}
