package awsemu

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// trailFileRecord is what the test reads of a log file's record.
type trailFileRecord struct {
	EventName    string `json:"eventName"`
	AWSRegion    string `json:"awsRegion"`
	EventID      string `json:"eventID"`
	SharedID     string `json:"sharedEventID"`
	Recipient    string `json:"recipientAccountId"`
	UserIdentity struct {
		Type        string `json:"type"`
		AccessKeyID string `json:"accessKeyId"`
		AccountID   string `json:"accountId"`
	} `json:"userIdentity"`
	RequestParameters map[string]any `json:"requestParameters"`
	ResponseElements  struct {
		Credentials struct {
			AccessKeyID string `json:"accessKeyId"`
		} `json:"credentials"`
	} `json:"responseElements"`
	Resources []struct {
		ARN       string `json:"ARN"`
		AccountID string `json:"accountId"`
	} `json:"resources"`
}

var trailKeyPattern = regexp.MustCompile(`^AWSLogs/o-[a-z0-9]{10}/(\d{12})/CloudTrail/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/(\d{12})_CloudTrail_([a-z0-9-]+)_(\d{8}T\d{4}Z)_[A-Z0-9]{16}\.json\.gz$`)

// crossAccountSeed is a lab whose account 3 has a role that account 2's
// compromised user may assume.
func crossAccountSeed() *Seed {
	seed := Lab{Accounts: 4, OrgTrail: true}.Seed()
	a2 := LabAccountID(2)
	seed.Accounts[2].Users[0].InlinePolicies["hop"] = policy(`{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}`)
	seed.Accounts[3].Roles = append(seed.Accounts[3].Roles, RoleSeed{
		Name:           "ops-cross",
		TrustPolicy:    policy(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + a2 + `:user/` + LabCompromisedUser + `"},"Action":"sts:AssumeRole"}`),
		InlinePolicies: map[string]PolicyText{"ops": policy(`{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}`)},
	})
	return seed
}

func TestOrgTrailLogFiles(t *testing.T) {
	l := newLabFrom(t, crossAccountSeed(), false)
	a2, a3 := LabAccountID(2), LabAccountID(3)
	out, err := sts.NewFromConfig(l.compromised(2)).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + a3 + ":role/ops-cross"), RoleSessionName: aws.String("maintenance")})
	ok(t, err)
	sessionKey := aws.ToString(out.Credentials.AccessKeyId)
	hop := l.cfg(sessionKey, aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken))
	_, err = ec2.NewFromConfig(hop).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
	l.clock.Advance(time.Minute)
	_, err = ec2.NewFromConfig(hop, func(o *ec2.Options) { o.Region = "us-west-2" }).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
	if n := l.emu.DeliverTrailLogs(); n == 0 {
		t.Fatal("DeliverTrailLogs wrote no file")
	}

	reader := s3.NewFromConfig(l.assumeResponder(t, 1), pathStyle)
	var keys []string
	pages := s3.NewListObjectsV2Paginator(reader, &s3.ListObjectsV2Input{Bucket: aws.String(LabTrailBucket), Prefix: aws.String("AWSLogs/"), MaxKeys: aws.Int32(2)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx(t))
		ok(t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	var records []trailFileRecord
	regions := map[string]bool{}
	for _, k := range keys {
		m := trailKeyPattern.FindStringSubmatch(k)
		if m == nil {
			t.Fatalf("log file key %q is not in the organisation trail's layout", k)
		}
		if m[1] != m[6] || m[2] != m[7] {
			t.Fatalf("log file key %q names two accounts or regions", k)
		}
		regions[m[1]+"/"+m[2]] = true
		obj, err := reader.GetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String(LabTrailBucket), Key: aws.String(k)})
		ok(t, err)
		body, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		ok(t, err)
		if bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			ok(t, err)
			body, err = io.ReadAll(zr)
			ok(t, err)
		}
		var file struct {
			Records []trailFileRecord `json:"Records"`
		}
		if err := json.Unmarshal(body, &file); err != nil || len(file.Records) == 0 {
			t.Fatalf("log file %s: %v, %d records", k, err, len(file.Records))
		}
		for _, r := range file.Records {
			if r.Recipient != m[1] || r.AWSRegion != m[2] {
				t.Fatalf("record of %s/%s in the file of %s/%s", r.Recipient, r.AWSRegion, m[1], m[2])
			}
		}
		records = append(records, file.Records...)
	}
	if !regions[a3+"/us-west-2"] || !regions[a3+"/us-east-1"] || !regions[a2+"/us-east-1"] {
		t.Fatalf("log files cover %v", regions)
	}

	var caller, owner *trailFileRecord
	describes := 0
	for i := range records {
		r := &records[i]
		switch {
		case r.EventName == "AssumeRole" && r.Recipient == a2 && r.UserIdentity.AccountID == a2:
			caller = r
		case r.EventName == "AssumeRole" && r.Recipient == a3 && r.UserIdentity.AccountID == a2:
			owner = r
		case r.EventName == "DescribeInstances" && r.UserIdentity.AccessKeyID == sessionKey:
			describes++
		}
	}
	if caller == nil || owner == nil {
		t.Fatalf("AssumeRole is not recorded on both sides: caller %v, owner %v", caller, owner)
	}
	if caller.SharedID == "" || caller.SharedID != owner.SharedID || caller.EventID == owner.EventID {
		t.Fatalf("sharedEventID %q / %q, eventID %q / %q", caller.SharedID, owner.SharedID, caller.EventID, owner.EventID)
	}
	if owner.UserIdentity.Type != "AWSAccount" || caller.UserIdentity.Type != "IAMUser" {
		t.Fatalf("userIdentity types %q (caller), %q (owner)", caller.UserIdentity.Type, owner.UserIdentity.Type)
	}
	for _, r := range []*trailFileRecord{caller, owner} {
		if r.ResponseElements.Credentials.AccessKeyID != sessionKey {
			t.Fatalf("responseElements carry key %q, want %q", r.ResponseElements.Credentials.AccessKeyID, sessionKey)
		}
		if r.RequestParameters["roleSessionName"] != "maintenance" || r.RequestParameters["roleArn"] != "arn:aws:iam::"+a3+":role/ops-cross" {
			t.Fatalf("requestParameters %v", r.RequestParameters)
		}
		if len(r.Resources) != 1 || r.Resources[0].AccountID != a3 || r.Resources[0].ARN == "" {
			t.Fatalf("resources %+v", r.Resources)
		}
	}
	if describes != 2 {
		t.Fatalf("the session's DescribeInstances calls in the log files: %d, want 2", describes)
	}
}

func TestOrgTrailDeliversOnItsOwn(t *testing.T) {
	l := newLabFrom(t, Lab{Accounts: 3, OrgTrail: true}.Seed(), false)
	client := ec2.NewFromConfig(l.compromised(2))
	_, err := client.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	ok(t, err)
	reader := s3.NewFromConfig(l.assumeResponder(t, 1), pathStyle)
	list := func() int {
		out, err := reader.ListObjectsV2(ctx(t), &s3.ListObjectsV2Input{Bucket: aws.String(LabTrailBucket),
			Prefix: aws.String("AWSLogs/"), Delimiter: aws.String("/")})
		ok(t, err)
		return len(out.CommonPrefixes)
	}
	if n := list(); n != 0 {
		t.Fatalf("a log file was written before its five minutes were up: %d", n)
	}
	// The next event five minutes later closes the first file.
	l.clock.Advance(trailFileWindow)
	_, err = client.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	ok(t, err)
	if n := list(); n != 1 {
		t.Fatalf("organisation prefixes after the window closed: %d, want 1", n)
	}
	_, err = reader.GetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String(LabTrailBucket), Key: aws.String("AWSLogs/missing.json.gz")})
	wantCode(t, err, "NoSuchKey")
}
