package awsemu

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
)

// postureSeed is the lab organisation with a readiness posture: member 2
// has GuardDuty, Security Hub and a locked evidence bucket; member 3 has
// a suspended detector and a plain bucket; the management account has an
// organisation trail and a stopped trail of its own.
func postureSeed() *Seed {
	seed := LabSeed(4)
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		switch a.ID {
		case LabAccountID(0):
			a.Resources = append(a.Resources, RegionSeed{Region: "us-east-1", Trails: []TrailSeed{
				{Name: "org-trail", Bucket: "org-trail-logs", Organization: true},
				{Name: "local", Bucket: "local-logs", Stopped: true},
			}})
		case LabAccountID(2):
			a.Resources[0].GuardDuty = &GuardDutySeed{FindingPublishingFrequency: "FIFTEEN_MINUTES"}
			a.Resources[0].SecurityHub = &SecurityHubSeed{AutoEnableControls: true}
			a.Buckets = append(a.Buckets, BucketSeed{Name: "evidence-locked", ObjectLock: &ObjectLockSeed{Mode: "COMPLIANCE", Days: 365},
				Encryption: &EncryptionSeed{Algorithm: "aws:kms", KMSKeyID: "arn:aws:kms:us-east-1:" + a.ID + ":key/1"}})
		case LabAccountID(3):
			a.Resources[0].GuardDuty = &GuardDutySeed{Status: "DISABLED"}
			a.Buckets = append(a.Buckets, BucketSeed{Name: "evidence-plain"})
		}
	}
	return seed
}

func TestGuardDutyAndSecurityHub(t *testing.T) {
	l := newLabFrom(t, postureSeed(), false)
	tests := []struct {
		name       string
		member     int
		detector   string // "" none, else its status
		hubEnabled bool
	}{
		{"enabled", 2, "ENABLED", true},
		{"suspended detector, no hub", 3, "DISABLED", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := l.assumeResponder(t, tt.member)
			gd := guardduty.NewFromConfig(cfg)
			list, err := gd.ListDetectors(ctx(t), &guardduty.ListDetectorsInput{})
			ok(t, err)
			if len(list.DetectorIds) != 1 {
				t.Fatalf("detectors %v", list.DetectorIds)
			}
			d, err := gd.GetDetector(ctx(t), &guardduty.GetDetectorInput{DetectorId: aws.String(list.DetectorIds[0])})
			ok(t, err)
			if string(d.Status) != tt.detector || d.CreatedAt == nil {
				t.Fatalf("detector %+v", d)
			}
			_, err = gd.GetDetector(ctx(t), &guardduty.GetDetectorInput{DetectorId: aws.String("0123456789abcdef0123456789abcdef")})
			wantCode(t, err, "BadRequestException")

			hub, err := securityhub.NewFromConfig(cfg).DescribeHub(ctx(t), &securityhub.DescribeHubInput{})
			if !tt.hubEnabled {
				wantCode(t, err, "InvalidAccessException")
				return
			}
			ok(t, err)
			if aws.ToString(hub.HubArn) != "arn:aws:securityhub:us-east-1:"+LabAccountID(tt.member)+":hub/default" || !aws.ToBool(hub.AutoEnableControls) {
				t.Fatalf("hub %+v", hub)
			}
		})
	}
	// No detector at all in the security account.
	cfg := l.assumeResponder(t, 1)
	list, err := guardduty.NewFromConfig(cfg).ListDetectors(ctx(t), &guardduty.ListDetectorsInput{})
	ok(t, err)
	if len(list.DetectorIds) != 0 {
		t.Fatalf("detectors %v", list.DetectorIds)
	}
	// A role without the permission is refused with the action named.
	_, err = guardduty.NewFromConfig(l.compromised(2)).ListDetectors(ctx(t), &guardduty.ListDetectorsInput{})
	wantCode(t, err, "AccessDeniedException")
}

func TestDescribeTrailsAndStatus(t *testing.T) {
	l := newLabFrom(t, postureSeed(), false)
	// A member sees the management account's organisation trail, not its
	// other trails.
	ct := cloudtrail.NewFromConfig(l.assumeResponder(t, 2))
	trails, err := ct.DescribeTrails(ctx(t), &cloudtrail.DescribeTrailsInput{})
	ok(t, err)
	if len(trails.TrailList) != 1 || !aws.ToBool(trails.TrailList[0].IsOrganizationTrail) || !aws.ToBool(trails.TrailList[0].IsMultiRegionTrail) {
		t.Fatalf("member trails %+v", trails.TrailList)
	}
	st, err := ct.GetTrailStatus(ctx(t), &cloudtrail.GetTrailStatusInput{Name: trails.TrailList[0].TrailARN})
	ok(t, err)
	if !aws.ToBool(st.IsLogging) {
		t.Fatal("the organisation trail is not logging")
	}
	_, err = ct.GetTrailStatus(ctx(t), &cloudtrail.GetTrailStatusInput{Name: aws.String("local")})
	wantCode(t, err, "TrailNotFoundException")

	mgmt := cloudtrail.NewFromConfig(l.root())
	trails, err = mgmt.DescribeTrails(ctx(t), &cloudtrail.DescribeTrailsInput{})
	ok(t, err)
	if len(trails.TrailList) != 2 {
		t.Fatalf("management trails %+v", trails.TrailList)
	}
	st, err = mgmt.GetTrailStatus(ctx(t), &cloudtrail.GetTrailStatusInput{Name: aws.String("local")})
	ok(t, err)
	if aws.ToBool(st.IsLogging) {
		t.Fatal("the stopped trail is logging")
	}
}

func TestBucketLockVersioningEncryption(t *testing.T) {
	l := newLabFrom(t, postureSeed(), false)
	tests := []struct {
		name, bucket     string
		member           int
		lockMode         string // "" not found
		lockDays         int32
		versioning       string
		algorithm, kmsID string
	}{
		{"locked, kms", "evidence-locked", 2, "COMPLIANCE", 365, "Enabled", "aws:kms", "arn:aws:kms:us-east-1:" + LabAccountID(2) + ":key/1"},
		{"plain", "evidence-plain", 3, "", 0, "", "AES256", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := l.assumeResponder(t, tt.member)
			c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
			lock, err := c.GetObjectLockConfiguration(ctx(t), &s3.GetObjectLockConfigurationInput{Bucket: aws.String(tt.bucket)})
			if tt.lockMode == "" {
				wantCode(t, err, "ObjectLockConfigurationNotFoundError")
			} else {
				ok(t, err)
				r := lock.ObjectLockConfiguration.Rule.DefaultRetention
				if string(lock.ObjectLockConfiguration.ObjectLockEnabled) != "Enabled" || string(r.Mode) != tt.lockMode || aws.ToInt32(r.Days) != tt.lockDays {
					t.Fatalf("object lock %+v %+v", lock.ObjectLockConfiguration, r)
				}
			}
			v, err := c.GetBucketVersioning(ctx(t), &s3.GetBucketVersioningInput{Bucket: aws.String(tt.bucket)})
			ok(t, err)
			if string(v.Status) != tt.versioning {
				t.Fatalf("versioning %q", v.Status)
			}
			enc, err := c.GetBucketEncryption(ctx(t), &s3.GetBucketEncryptionInput{Bucket: aws.String(tt.bucket)})
			ok(t, err)
			d := enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault
			if string(d.SSEAlgorithm) != tt.algorithm || aws.ToString(d.KMSMasterKeyID) != tt.kmsID {
				t.Fatalf("encryption %+v", d)
			}
		})
	}
}

func TestSimulatePrincipalPolicy(t *testing.T) {
	seed := postureSeed()
	for i := range seed.Accounts {
		if seed.Accounts[i].ID != LabAccountID(2) {
			continue
		}
		for j := range seed.Accounts[i].Roles {
			if r := &seed.Accounts[i].Roles[j]; r.Name == LabResponderRole {
				r.InlinePolicies["NoTermination"] = PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:TerminateInstances","Resource":"*"}]}`)
			}
		}
	}
	l := newLabFrom(t, seed, false)
	c := iam.NewFromConfig(l.assumeResponder(t, 2))
	role := "arn:aws:iam::" + LabAccountID(2) + ":role/" + LabResponderRole
	out, err := c.SimulatePrincipalPolicy(ctx(t), &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String(role),
		ActionNames: []string{"ec2:ModifyInstanceAttribute", "ec2:TerminateInstances", "kms:ScheduleKeyDeletion"}})
	ok(t, err)
	got := map[string]string{}
	for _, r := range out.EvaluationResults {
		got[aws.ToString(r.EvalActionName)] = string(r.EvalDecision)
	}
	want := map[string]string{"ec2:ModifyInstanceAttribute": "allowed", "ec2:TerminateInstances": "explicitDeny", "kms:ScheduleKeyDeletion": "implicitDeny"}
	if !jsonEqual(t, got, want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
	_, err = c.SimulatePrincipalPolicy(ctx(t), &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String("arn:aws:iam::" + LabAccountID(2) + ":role/Nobody"),
		ActionNames: []string{"ec2:DescribeInstances"}})
	wantCode(t, err, "NoSuchEntity")
	_, err = iam.NewFromConfig(l.compromised(2)).SimulatePrincipalPolicy(ctx(t), &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String(role),
		ActionNames: []string{"ec2:DescribeInstances"}})
	wantCode(t, err, "AccessDenied")
}

func TestDryRunContainmentCalls(t *testing.T) {
	l := newLab(t, 3)
	c := ec2.NewFromConfig(l.assumeResponder(t, 2))
	vpcs, err := c.DescribeVpcs(ctx(t), &ec2.DescribeVpcsInput{})
	ok(t, err)
	_, err = c.CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{DryRun: aws.Bool(true), GroupName: aws.String("firebreak-isolation"),
		Description: aws.String("isolation"), VpcId: vpcs.Vpcs[0].VpcId})
	wantCode(t, err, "DryRunOperation")
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{DryRun: aws.Bool(true), InstanceId: aws.String(instanceID(2, "web-1")),
		DisableApiTermination: nil})
	wantCode(t, err, "DryRunOperation")
	// A caller without the permission hears UnauthorizedOperation, not
	// DryRunOperation.
	_, err = ec2.NewFromConfig(l.compromised(2)).CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{DryRun: aws.Bool(true),
		GroupName: aws.String("x"), Description: aws.String("x"), VpcId: vpcs.Vpcs[0].VpcId})
	wantCode(t, err, "UnauthorizedOperation")
}
