package awsreadiness_test

import (
	"context"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// member is the account every case checks.
var member = awstest.Member(0)

// ready is a member account with every AWS-side check passing: GuardDuty
// and Security Hub on, an organisation trail logging, and a locked,
// versioned, KMS-encrypted evidence bucket.
func ready() *awsemu.Seed {
	seed := awsemu.LabSeed(3)
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		switch a.ID {
		case awsemu.LabAccountID(0):
			a.Resources = append(a.Resources, awsemu.RegionSeed{Region: awstest.Region, Trails: []awsemu.TrailSeed{{Name: "org-trail", Bucket: "org-trail-logs", Organization: true}}})
		case member:
			// Room below each group's size, so isolation can use Standby.
			for j := range a.Resources[0].AutoScalingGroups {
				g := &a.Resources[0].AutoScalingGroups[j]
				g.Min = 0
			}
			a.Resources[0].GuardDuty = &awsemu.GuardDutySeed{}
			a.Resources[0].SecurityHub = &awsemu.SecurityHubSeed{}
			a.Buckets = append(a.Buckets, awsemu.BucketSeed{Name: "firebreak-evidence", ObjectLock: &awsemu.ObjectLockSeed{Mode: "COMPLIANCE", Days: 365},
				Encryption: &awsemu.EncryptionSeed{Algorithm: "aws:kms", KMSKeyID: "arn:aws:kms:us-east-1:" + member + ":key/evidence"}})
		}
	}
	return seed
}

// mutate changes the member account (or the management account) of a
// ready seed.
func mutate(f func(mgmt, m *awsemu.AccountSeed)) *awsemu.Seed {
	seed := ready()
	var mgmt, m *awsemu.AccountSeed
	for i := range seed.Accounts {
		switch seed.Accounts[i].ID {
		case awsemu.LabAccountID(0):
			mgmt = &seed.Accounts[i]
		case member:
			m = &seed.Accounts[i]
		}
	}
	f(mgmt, m)
	return seed
}

// denyResponder adds an explicit deny of actions to the member's
// responder role.
func denyResponder(m *awsemu.AccountSeed, actions string) {
	for j := range m.Roles {
		if r := &m.Roles[j]; r.Name == awsemu.LabResponderRole {
			r.InlinePolicies["ReadinessDeny"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":[` + actions + `],"Resource":"*"}]}`)
		}
	}
}

func run(t *testing.T, seed *awsemu.Seed, params map[string]any) *awsreadiness.Result {
	t.Helper()
	lab := awsresponsetest.StartLab(t, seed, awsresponsetest.NewClock())
	a, err := awsreadiness.New(awsreadiness.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := sdktest.Execute(context.Background(), t, sdktest.Start(t, a), lab.Request(t, member), params)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("aws-readiness failed: %v %s", o.Err, o.Result.GetError())
	}
	var res awsreadiness.Result
	o.Output(t, &res)
	return &res
}

func find(res *awsreadiness.Result, id string) *awsreadiness.Check {
	for i := range res.Checks {
		if res.Checks[i].ID == id {
			return &res.Checks[i]
		}
	}
	return nil
}

// TestChecks runs each check against emulator states for ok, warn, fail
// and unknown. An access denial is unknown, with the denied action named.
func TestChecks(t *testing.T) {
	evidence := map[string]any{"evidence_bucket": "firebreak-evidence", "evidence_account": member}
	tests := []struct {
		name     string
		seed     *awsemu.Seed
		check    string
		status   awsreadiness.Status
		evidence string // in the evidence
		fix      string // in the remediation
	}{
		{"permissions ok", ready(), awsreadiness.CheckPermissions, awsreadiness.StatusOK, "is allowed all", ""},
		{"permissions fail", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"ec2:CreateSnapshots"`) }),
			awsreadiness.CheckPermissions, awsreadiness.StatusFail, "ec2:CreateSnapshots (explicitDeny)", "member-account.yaml"},
		{"permissions unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"iam:SimulatePrincipalPolicy"`) }),
			awsreadiness.CheckPermissions, awsreadiness.StatusUnknown, "iam:SimulatePrincipalPolicy was denied", "allow iam:SimulatePrincipalPolicy"},

		{"guardduty ok", ready(), awsreadiness.CheckGuardDuty, awsreadiness.StatusOK, "ENABLED", ""},
		{"guardduty off", mutate(func(_, m *awsemu.AccountSeed) { m.Resources[0].GuardDuty = nil }),
			awsreadiness.CheckGuardDuty, awsreadiness.StatusFail, "no GuardDuty detector in us-east-1", "aws guardduty create-detector --enable --region us-east-1"},
		{"guardduty suspended", mutate(func(_, m *awsemu.AccountSeed) { m.Resources[0].GuardDuty = &awsemu.GuardDutySeed{Status: "DISABLED"} }),
			awsreadiness.CheckGuardDuty, awsreadiness.StatusFail, "is DISABLED", "aws guardduty update-detector"},
		{"guardduty unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"guardduty:ListDetectors"`) }),
			awsreadiness.CheckGuardDuty, awsreadiness.StatusUnknown, "guardduty:ListDetectors was denied", "allow guardduty:ListDetectors"},

		{"security hub ok", ready(), awsreadiness.CheckSecurityHub, awsreadiness.StatusOK, "hub/default", ""},
		{"security hub off", mutate(func(_, m *awsemu.AccountSeed) { m.Resources[0].SecurityHub = nil }),
			awsreadiness.CheckSecurityHub, awsreadiness.StatusFail, "not enabled", "aws securityhub enable-security-hub --region us-east-1"},
		{"security hub unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"securityhub:DescribeHub"`) }),
			awsreadiness.CheckSecurityHub, awsreadiness.StatusUnknown, "securityhub:DescribeHub was denied", ""},

		{"cloudtrail organisation trail", ready(), awsreadiness.CheckCloudTrail, awsreadiness.StatusOK, "organisation trail", ""},
		{"cloudtrail single region only", mutate(func(mgmt, m *awsemu.AccountSeed) {
			mgmt.Resources = mgmt.Resources[:len(mgmt.Resources)-1]
			m.Resources[0].Trails = []awsemu.TrailSeed{{Name: "local", Bucket: "local-logs"}}
		}), awsreadiness.CheckCloudTrail, awsreadiness.StatusWarn, "single-region trail", "--is-organization-trail"},
		{"cloudtrail stopped", mutate(func(mgmt, _ *awsemu.AccountSeed) {
			mgmt.Resources[len(mgmt.Resources)-1].Trails[0].Stopped = true
		}), awsreadiness.CheckCloudTrail, awsreadiness.StatusFail, "not logging", "aws cloudtrail start-logging --name org-trail"},
		{"cloudtrail none", mutate(func(mgmt, _ *awsemu.AccountSeed) { mgmt.Resources = mgmt.Resources[:len(mgmt.Resources)-1] }),
			awsreadiness.CheckCloudTrail, awsreadiness.StatusFail, "no trail covers us-east-1", "aws cloudtrail create-trail"},
		{"cloudtrail unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"cloudtrail:DescribeTrails"`) }),
			awsreadiness.CheckCloudTrail, awsreadiness.StatusUnknown, "cloudtrail:DescribeTrails was denied", ""},

		{"isolation group ok", ready(), awsreadiness.CheckIsolationGroup, awsreadiness.StatusOK, "DryRun", ""},
		{"isolation group denied", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"ec2:CreateSecurityGroup"`) }),
			awsreadiness.CheckIsolationGroup, awsreadiness.StatusFail, "ec2:CreateSecurityGroup was denied", "allow ec2:CreateSecurityGroup"},
		{"isolation group unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"ec2:DescribeVpcs"`) }),
			awsreadiness.CheckIsolationGroup, awsreadiness.StatusUnknown, "ec2:DescribeVpcs was denied", ""},

		{"termination protection ok", ready(), awsreadiness.CheckTerminationProtection, awsreadiness.StatusOK, "DryRun on i-", ""},
		{"termination protection denied", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"ec2:ModifyInstanceAttribute"`) }),
			awsreadiness.CheckTerminationProtection, awsreadiness.StatusFail, "ec2:ModifyInstanceAttribute was denied", "allow ec2:ModifyInstanceAttribute"},
		{"termination protection unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"ec2:DescribeInstances"`) }),
			awsreadiness.CheckTerminationProtection, awsreadiness.StatusUnknown, "could not be listed", "allow ec2:DescribeInstances"},

		{"autoscaling standby possible", ready(), awsreadiness.CheckAutoScaling, awsreadiness.StatusOK, "web-asg", ""},
		{"autoscaling at minimum", mutate(func(_, m *awsemu.AccountSeed) {
			g := &m.Resources[0].AutoScalingGroups[0]
			g.Min = int32(len(g.Instances))
		}), awsreadiness.CheckAutoScaling, awsreadiness.StatusWarn, "would replace an isolated instance", "aws autoscaling update-auto-scaling-group"},
		{"autoscaling unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"autoscaling:DescribeAutoScalingGroups"`) }),
			awsreadiness.CheckAutoScaling, awsreadiness.StatusUnknown, "autoscaling:DescribeAutoScalingGroups was denied", ""},

		{"evidence bucket ok", ready(), awsreadiness.CheckEvidenceBucket, awsreadiness.StatusOK, "Object Lock COMPLIANCE 365 days, versioning Enabled, SSE-KMS", ""},
		{"evidence bucket without object lock", mutate(func(_, m *awsemu.AccountSeed) {
			m.Buckets[len(m.Buckets)-1] = awsemu.BucketSeed{Name: "firebreak-evidence", Versioning: "Enabled"}
		}), awsreadiness.CheckEvidenceBucket, awsreadiness.StatusFail, "no Object Lock", "put-object-lock-configuration"},
		{"evidence bucket without kms", mutate(func(_, m *awsemu.AccountSeed) { m.Buckets[len(m.Buckets)-1].Encryption = nil }),
			awsreadiness.CheckEvidenceBucket, awsreadiness.StatusWarn, "no SSE-KMS", "put-bucket-encryption"},
		{"evidence bucket unknown", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"s3:GetBucketObjectLockConfiguration"`) }),
			awsreadiness.CheckEvidenceBucket, awsreadiness.StatusUnknown, "s3:GetBucketObjectLockConfiguration was denied", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.seed, evidence)
			c := find(res, tt.check)
			if c == nil {
				t.Fatalf("no %s check in %+v", tt.check, res.Checks)
			}
			if c.Status != tt.status || !strings.Contains(c.Evidence, tt.evidence) || !strings.Contains(c.Remediation, tt.fix) {
				t.Fatalf("%s: %s %q, fix %q; want %s with %q and fix %q", c.ID, c.Status, c.Evidence, c.Remediation, tt.status, tt.evidence, tt.fix)
			}
			if c.Status != awsreadiness.StatusOK && c.Remediation == "" {
				t.Fatalf("%s is %s without a remediation", c.ID, c.Status)
			}
		})
	}
}

// TestInventoryAndScope lists the running instances with their tags for
// the coverage check, checks the evidence bucket only in its own account,
// and makes no change.
func TestInventoryAndScope(t *testing.T) {
	res := run(t, ready(), map[string]any{"evidence_bucket": "firebreak-evidence", "evidence_account": awsemu.LabAccountID(1)})
	if res.Account != member || res.Region != awstest.Region || len(res.Instances) != 3 || res.Instances[0].Tags["Environment"] != "production" {
		t.Fatalf("result %+v", res)
	}
	if find(res, awsreadiness.CheckEvidenceBucket) != nil {
		t.Fatal("the evidence bucket was checked in an account that does not own it")
	}
	for _, c := range res.APICalls {
		op := c.Operation[strings.Index(c.Operation, ":")+1:]
		if !strings.HasPrefix(op, "Describe") && !strings.HasPrefix(op, "Get") && !strings.HasPrefix(op, "List") && op != "SimulatePrincipalPolicy" &&
			c.Error != "DryRunOperation" {
			t.Errorf("%s changed something (%s)", c.Operation, c.Error)
		}
	}
	a, _ := awsreadiness.New(awsreadiness.Config{})
	d, err := a.Describe(context.Background())
	if err != nil || sdk.CheckDescription(d) != nil || d.GetDestructive() {
		t.Fatalf("description: %v", err)
	}
}
