package awsemu

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// Names in the organisation LabSeed builds.
const (
	// LabResponderRole is the role in each member account that workers
	// assume to respond there.
	LabResponderRole = "FirebreakResponder"
	// LabWorkerRole is the security account's role that API workers run as.
	LabWorkerRole = "FirebreakWorker"
	// LabOrgReaderRole is the management account's role for reading the
	// organisation.
	LabOrgReaderRole = "FirebreakOrgReader"
	// LabControllerUser is the security account's IAM user whose key the
	// controller and workers start from.
	LabControllerUser = "firebreak-controller"
	// LabCompromisedUser is the IAM user in each member account whose key
	// plays the stolen key.
	LabCompromisedUser = "ci-deployer"
	// LabFindingsQueue is the security account's queue of EventBridge
	// findings.
	LabFindingsQueue = "firebreak-findings"
	// LabExternalID is the external id the responder roles demand.
	LabExternalID = "firebreak-lab"
	// LabTrailBucket is the bucket, in the security account, that the
	// organisation trail delivers its log files to when Lab.OrgTrail is set.
	LabTrailBucket = "firebreak-lab-org-trail"
)

// Lab shapes the organisation LabSeed builds.
type Lab struct {
	// Accounts is the number of accounts: a management account, a security
	// account and Accounts-2 member accounts. At least 3.
	Accounts int
	// InstancesPerAccount is the number of instances in each member
	// account, at least 3: two in an Auto Scaling group behind two target
	// groups, one in a group at its minimum size, the rest standalone.
	InstancesPerAccount int
	// Region is the accounts' home region; us-east-1 when empty.
	Region string
	// OrgTrail gives the organisation a trail that delivers every account's
	// events as log files into LabTrailBucket, in the security account
	// (which plays the log-archive account).
	OrgTrail bool
}

// LabSeed builds the lab organisation with the given number of accounts
// (at least 3) and three instances per member account. LabSeed(3) is the
// three-account organisation of `firebreak lab demo`.
func LabSeed(accounts int) *Seed {
	return Lab{Accounts: accounts}.Seed()
}

// LabAccountID is the id of the i-th account of a lab organisation: 0 is the
// management account, 1 the security account, 2 and up the members.
func LabAccountID(i int) string {
	return fmt.Sprintf("%012d", 210987654300+i)
}

// labDigest derives stable identifiers from a label.
func labDigest(label string) [32]byte {
	return sha256.Sum256([]byte("firebreak-lab/" + label))
}

func labEC2ID(prefix, label string) string {
	d := labDigest(prefix + "/" + label)
	return prefix + "-" + hex.EncodeToString(d[:9])[:17]
}

func labKey(label string) AccessKeySeed {
	d := labDigest("key/" + label)
	s := labDigest("secret/" + label)
	return AccessKeySeed{
		ID:     "AKIA" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(d[:10])[:16],
		Secret: base64.StdEncoding.EncodeToString(s[:30])[:40],
	}
}

func labKMSKey(account, region, label string) string {
	d := labDigest("kms/" + account + "/" + label)
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%x-%x-%x-%x-%x", region, account, d[0:4], d[4:6], d[6:8], d[8:10], d[10:16])
}

func policy(statements string) PolicyText {
	return PolicyText(`{"Version":"2012-10-17","Statement":[` + statements + `]}`)
}

// Seed builds the lab organisation.
func (l Lab) Seed() *Seed {
	n := max(l.Accounts, 3)
	perAccount := max(l.InstancesPerAccount, 3)
	region := orDefault(l.Region, "us-east-1")
	mgmt, sec := LabAccountID(0), LabAccountID(1)
	workerARN := "arn:aws:iam::" + sec + ":role/" + LabWorkerRole
	trustWorker := policy(fmt.Sprintf(`{"Effect":"Allow","Principal":{"AWS":%q},"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Condition":{"StringEquals":{"sts:ExternalId":%q}}}`, workerARN, LabExternalID))

	s := &Seed{Organization: &OrganizationSeed{ManagementAccount: mgmt}}
	readOrganization := policy(`{"Effect":"Allow","Action":["organizations:Describe*","organizations:List*","account:ListRegions","account:GetRegionOptStatus"],"Resource":"*"}`)
	s.Accounts = append(s.Accounts, AccountSeed{
		ID: mgmt, Name: "management", Email: "aws+management@firebreak.example", Regions: []string{region},
		Root: ptr(labKey("root/" + mgmt)),
		Roles: []RoleSeed{
			{
				Name: LabOrgReaderRole, Description: "Lets Firebreak workers read the organisation.", TrustPolicy: trustWorker,
				InlinePolicies: map[string]PolicyText{"ReadOrganization": readOrganization},
			},
			// StackSets skip the management account, so deploy/ covers it
			// with a stack of its own: the same responder role as every
			// member, plus reading the organisation for aws-org-discover.
			{
				Name: LabResponderRole, Description: "Lets Firebreak workers respond in this account and read the organisation.", TrustPolicy: trustWorker,
				InlinePolicies: map[string]PolicyText{"FirebreakResponse": labResponsePolicy, "ReadOrganization": readOrganization},
			},
		},
	})
	s.Accounts = append(s.Accounts, AccountSeed{
		ID: sec, Name: "security", Email: "aws+security@firebreak.example", Regions: []string{region},
		Users: []UserSeed{{
			Name: LabControllerUser, AccessKeys: []AccessKeySeed{labKey("controller/" + sec)},
			InlinePolicies: map[string]PolicyText{"AssumeWorker": policy(fmt.Sprintf(`{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":%q}`, workerARN))},
		}},
		Roles: []RoleSeed{{
			// The member StackSet reaches the security account too (it is a
			// member of the organisation): responding there works as anywhere.
			Name: LabResponderRole, Description: "Lets Firebreak workers respond in this account.", TrustPolicy: trustWorker,
			InlinePolicies: map[string]PolicyText{"FirebreakResponse": labResponsePolicy},
		}, {
			Name: LabWorkerRole, Description: "Firebreak API workers.",
			TrustPolicy: policy(fmt.Sprintf(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"]}`, sec)),
			InlinePolicies: map[string]PolicyText{"FirebreakWorker": policy(fmt.Sprintf(
				`{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":["arn:aws:iam::*:role/%s","arn:aws:iam::%s:role/%s"]},`+
					`{"Effect":"Allow","Action":["sqs:*","cloudtrail:LookupEvents","ec2:Describe*","ec2:CopySnapshot","ec2:CreateTags"],"Resource":"*"}`,
				LabResponderRole, mgmt, LabOrgReaderRole))},
		}},
		Resources: []RegionSeed{{Region: region, Queues: []QueueSeed{{Name: LabFindingsQueue, VisibilityTimeout: 60}}}},
	})
	if l.OrgTrail {
		s.Accounts[1].Buckets = append(s.Accounts[1].Buckets, BucketSeed{Name: LabTrailBucket})
		s.Organization.Trail = &OrganizationTrailSeed{Bucket: LabTrailBucket}
	}
	var members []string
	for i := 2; i < n; i++ {
		id := LabAccountID(i)
		members = append(members, id)
		s.Accounts = append(s.Accounts, l.member(id, i-1, region, perAccount, trustWorker))
	}
	s.Organization.Units = []OrganizationalUnitSeed{
		{Name: "Security", Accounts: []string{sec}},
		{Name: "Workloads", Accounts: members},
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// labResponsePolicy is the lab responder roles' permissions: broader than
// deploy/cloudformation/member-account.yaml, whose exact list the deploy
// tests hold against the plugins' code.
var labResponsePolicy = policy(`{"Effect":"Allow","Action":["ec2:*","autoscaling:*","elasticloadbalancing:*","iam:*","s3:*","lambda:*","cloudtrail:LookupEvents","account:ListRegions","sts:GetCallerIdentity","sts:GetAccessKeyInfo",` +
	`"guardduty:ListDetectors","guardduty:GetDetector","guardduty:GetAdministratorAccount","events:ListRules","events:ListTargetsByRule","events:DescribeApiDestination","securityhub:DescribeHub","cloudtrail:DescribeTrails","cloudtrail:GetTrailStatus",` +
	`"events:*","cloudtrail:StartLogging","guardduty:UpdateDetector","guardduty:CreateDetector","securityhub:EnableSecurityHub",` +
	`"kms:CreateGrant","kms:Decrypt","kms:DescribeKey","kms:GenerateDataKeyWithoutPlaintext","kms:ReEncryptFrom","kms:ReEncryptTo"],"Resource":"*"}`)

// member builds one workload account.
func (l Lab) member(id string, ordinal int, region string, perAccount int, trustWorker PolicyText) AccountSeed {
	label := func(s string) string { return id + "/" + s }
	customerKey := labKMSKey(id, region, "data")
	volumes := func(name string, encryptedRoot bool) []VolumeSeed {
		return []VolumeSeed{
			{ID: labEC2ID("vol", label(name+"/root")), Size: 8, Encrypted: encryptedRoot},
			{ID: labEC2ID("vol", label(name+"/data")), Size: 20, Encrypted: true, KMSKeyID: customerKey, Tags: map[string]string{"Name": name + "-data"}},
		}
	}
	launched := time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)
	instance := func(name, subnet, sg string, encryptedRoot bool) InstanceSeed {
		return InstanceSeed{
			ID: labEC2ID("i", label(name)), Name: name, Type: "t3.small", Subnet: subnet, SecurityGroups: []string{sg},
			InstanceProfile: "AppInstanceRole", Volumes: volumes(name, encryptedRoot), LaunchTime: launched,
			Tags: map[string]string{"Environment": "production", "Service": sg},
		}
	}
	rs := RegionSeed{
		Region: region,
		VPCs:   []VPCSeed{{ID: labEC2ID("vpc", label("prod")), Name: "prod", CIDR: "10.0.0.0/16"}},
		Subnets: []SubnetSeed{
			{ID: labEC2ID("subnet", label("prod-a")), Name: "prod-a", VPC: "prod", CIDR: "10.0.1.0/24", AvailabilityZone: region + "a"},
			{ID: labEC2ID("subnet", label("prod-b")), Name: "prod-b", VPC: "prod", CIDR: "10.0.2.0/24", AvailabilityZone: region + "b"},
		},
		SecurityGroups: []SecurityGroupSeed{
			{ID: labEC2ID("sg", label("web")), Name: "web", Description: "web tier", VPC: "prod", Ingress: []RuleSeed{
				{Protocol: "tcp", FromPort: 443, ToPort: 443, CIDR: "0.0.0.0/0"},
				{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: "0.0.0.0/0"},
				{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "10.0.0.0/8", Description: "bastion"},
			}},
			{ID: labEC2ID("sg", label("worker")), Name: "worker", Description: "queue workers", VPC: "prod", Ingress: []RuleSeed{
				{Protocol: "tcp", FromPort: 8080, ToPort: 8080, Group: "web"},
			}},
		},
		Instances: []InstanceSeed{
			instance("web-1", "prod-a", "web", true),
			instance("web-2", "prod-b", "web", true),
			instance("worker-1", "prod-a", "worker", true),
		},
		TargetGroups: []TargetGroupSeed{
			{Name: "web-http", Port: 80, VPC: "prod", Targets: []string{"web-1", "web-2"}},
			{Name: "web-https", Protocol: "HTTPS", Port: 443, VPC: "prod", Targets: []string{"web-1", "web-2"}},
		},
		AutoScalingGroups: []AutoScalingGroupSeed{
			{Name: "web-asg", Min: 1, Max: 4, Desired: 2, Instances: []string{"web-1", "web-2"}, TargetGroups: []string{"web-http", "web-https"}},
			{Name: "worker-asg", Min: 1, Max: 2, Desired: 1, Instances: []string{"worker-1"}},
		},
		Functions: []FunctionSeed{{Name: "order-processor", Runtime: "python3.12", Role: "order-processor-role", MemorySize: 256, Timeout: 30, ReservedConcurrency: ptr(int32(20))}},
	}
	for i := 3; i < perAccount; i++ {
		name := fmt.Sprintf("app-%d", i-2)
		subnet := []string{"prod-a", "prod-b"}[i%2]
		rs.Instances = append(rs.Instances, instance(name, subnet, "web", false))
	}
	appTrust := policy(`{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}`)
	return AccountSeed{
		ID: id, Name: fmt.Sprintf("workload-%02d", ordinal), Email: fmt.Sprintf("aws+workload-%02d@firebreak.example", ordinal),
		Regions: []string{region, "us-west-2"},
		Users: []UserSeed{{
			Name: LabCompromisedUser, AccessKeys: []AccessKeySeed{labKey("ci/" + id)}, LoginProfile: &LoginProfileSeed{},
			Tags:           map[string]string{"team": "platform"},
			InlinePolicies: map[string]PolicyText{"deploy": policy(`{"Effect":"Allow","Action":["s3:*","ec2:Describe*","lambda:*","sts:GetCallerIdentity","iam:GetUser","iam:ListUsers"],"Resource":"*"}`)},
		}},
		Roles: []RoleSeed{
			{
				Name: LabResponderRole, Description: "Lets Firebreak workers respond in this account.", TrustPolicy: trustWorker,
				InlinePolicies: map[string]PolicyText{"FirebreakResponse": labResponsePolicy},
			},
			{Name: "AppInstanceRole", TrustPolicy: appTrust, InstanceProfile: true,
				InlinePolicies: map[string]PolicyText{"app": policy(`{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket","sqs:*"],"Resource":"*"}`)}},
			{Name: "order-processor-role", TrustPolicy: policy(`{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}`)},
			{Name: "AWSServiceRoleForAutoScaling", Path: "/aws-service-role/autoscaling.amazonaws.com/",
				TrustPolicy: policy(`{"Effect":"Allow","Principal":{"Service":"autoscaling.amazonaws.com"},"Action":"sts:AssumeRole"}`)},
		},
		Buckets: []BucketSeed{{
			Name: "lab-public-assets-" + id, ACL: "public-read",
			Policy: policy(fmt.Sprintf(`{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::lab-public-assets-%s/*"}`, id)),
		}},
		Resources: []RegionSeed{rs},
	}
}
