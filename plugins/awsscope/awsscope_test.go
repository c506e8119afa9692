package awsscope_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awsscope"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// seed is a lab with an organisation trail whose member 0 key may create
// keys and attach policies on itself, and assume a role in member 1.
func seed() *awsemu.Seed {
	s := awsemu.Lab{Accounts: 4, OrgTrail: true}.Seed()
	a := awstest.Member(0)
	s.Accounts[2].Users[0].InlinePolicies["escalate"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:CreateAccessKey","iam:AttachUserPolicy","sts:AssumeRole"],"Resource":"*"}]}`)
	s.Accounts[3].Roles = append(s.Accounts[3].Roles, awsemu.RoleSeed{
		Name:           "ops-cross",
		TrustPolicy:    awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + a + `:user/` + awsemu.LabCompromisedUser + `"},"Action":"sts:AssumeRole"}]}`),
		InlinePolicies: map[string]awsemu.PolicyText{"ops": awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}`)},
	})
	return s
}

type fixture struct {
	lab    *awstest.Lab
	clock  *awsresponsetest.Clock
	client *sdk.Client
	// hopKey is the session the attacker took in member 1; backdoor is the
	// key it made for itself; group the group it opened.
	hopKey, backdoor, group string
}

// newFixture runs the attack: a new key and AdministratorAccess for the
// leaked user, then a role session in member 1 that opens port 22 to the
// world and looks around.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, seed(), clock)
	a, err := awsscope.New(awsscope.Config{Clock: clock.Now, Sleep: clock.Sleep, Readers: 4})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{lab: lab, clock: clock, client: sdktest.Start(t, a)}
	attacker := awsresponsetest.Attacker(t, lab, awstest.Member(0))
	step := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	key, err := iam.NewFromConfig(attacker).CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(awsemu.LabCompromisedUser)})
	step(err)
	f.backdoor = aws.ToString(key.AccessKey.AccessKeyId)
	_, err = iam.NewFromConfig(attacker).AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(awsemu.LabCompromisedUser),
		PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")})
	step(err)
	hop, err := sts.NewFromConfig(attacker).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + awstest.Member(1) + ":role/ops-cross"), RoleSessionName: aws.String("maintenance")})
	step(err)
	f.hopKey = aws.ToString(hop.Credentials.AccessKeyId)
	inB := ec2.NewFromConfig(awsresponsetest.StaticConfig(lab, f.hopKey, aws.ToString(hop.Credentials.SecretAccessKey), aws.ToString(hop.Credentials.SessionToken)))
	groups, err := inB.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	step(err)
	f.group = aws.ToString(groups.SecurityGroups[0].GroupId)
	_, err = inB.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(f.group),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
	step(err)
	for range 5 {
		_, err = inB.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
		step(err)
	}
	lab.Emu.DeliverTrailLogs()
	return f
}

func (f *fixture) run(t *testing.T, account string, params map[string]any) (*awsscope.Result, *sdktest.Outcome) {
	t.Helper()
	f.clock.Advance(time.Second)
	o := sdktest.Execute(context.Background(), t, f.client, f.lab.Request(t, account), params)
	if o.Result == nil {
		return nil, o
	}
	var res awsscope.Result
	o.Output(t, &res)
	return &res, o
}

// artifactsOf returns the kinds of the scope's artifacts.
func kinds(s *trailscope.Scope) []string {
	var out []string
	for _, a := range s.Artifacts {
		out = append(out, a.Kind)
	}
	return out
}

func TestScopeFromTheOrganisationTrail(t *testing.T) {
	f := newFixture(t)
	leaked := awsresponsetest.LeakedKey(t, f.lab, awstest.Member(0)).ID
	res, o := f.run(t, awstest.SecurityAccount(), map[string]any{"access_key_id": leaked, "source": "trail",
		"trail_bucket": awsemu.LabTrailBucket, "start": "1h"})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("scope: %v %s", o.Err, o.Result.GetError())
	}
	s := res.Scope
	hop := s.Chain.Credential(res.Scope.Chain.Credentials[len(s.Chain.Credentials)-1].AccessKeyID)
	if len(s.Chain.Credentials) != 2 || hop.AccessKeyID != f.hopKey || hop.Account != awstest.Member(1) || !hop.CrossAccount || hop.TargetEventID == "" {
		t.Fatalf("chain %+v", s.Chain.Credentials)
	}
	if got := s.Accounts(); !slices.Equal(got, []string{awstest.Member(0), awstest.Member(1)}) {
		t.Fatalf("accounts %v", got)
	}
	if want := []string{trailscope.KindAccessKey, trailscope.KindUserPolicy, trailscope.KindIngressRule}; !slices.Equal(kinds(s), want) {
		t.Fatalf("artifacts %v, want %v", kinds(s), want)
	}
	if a := s.Artifacts[0]; a.ID != f.backdoor {
		t.Fatalf("backdoor key %+v, want %s", a, f.backdoor)
	}
	if a := s.Artifacts[2]; a.ID != f.group || !a.Public || a.Account != awstest.Member(1) || a.Detail["fromPort"] != "22" {
		t.Fatalf("ingress %+v", a)
	}
	if s.ReconByName["DescribeInstances"] != 5 || s.ByClass[trailscope.Reconnaissance] != 6 {
		t.Fatalf("reconnaissance %v, by class %v", s.ReconByName, s.ByClass)
	}
	if res.Read.Files == 0 || res.Read.Bytes == 0 || !slices.Equal(res.Read.Accounts, []string{awstest.Member(0), awstest.Member(1)}) {
		t.Fatalf("read %+v", res.Read)
	}
	if res.APICalls["s3:GetObject"] != res.Read.Files {
		t.Fatalf("GetObject calls %d, files %d", res.APICalls["s3:GetObject"], res.Read.Files)
	}
	// The evidence is every matched record, as CloudTrail wrote it.
	art := o.Artifacts[res.Artifact.Name]
	sum := sha256.Sum256(art)
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(art))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if _, err := trailscope.ParseRecord(sc.Bytes()); err != nil {
			t.Fatalf("evidence line %d: %v", lines, err)
		}
		lines++
	}
	if lines != s.EventCount || res.Artifact.Events != lines || hex.EncodeToString(sum[:]) != res.Artifact.SHA256 {
		t.Fatalf("artifact: %d lines, %d events, result %+v", lines, s.EventCount, res.Artifact)
	}
}

func TestScopeThroughLookupEventsAccountByAccount(t *testing.T) {
	f := newFixture(t)
	leaked := awsresponsetest.LeakedKey(t, f.lab, awstest.Member(0)).ID
	res, o := f.run(t, awstest.Member(0), map[string]any{"access_key_id": leaked, "start": "1h"})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("scope: %v %s", o.Err, o.Result.GetError())
	}
	if want := []string{trailscope.KindAccessKey, trailscope.KindUserPolicy}; !slices.Equal(kinds(res.Scope), want) {
		t.Fatalf("member 0 artifacts %v, want %v", kinds(res.Scope), want)
	}
	if len(res.NextKeys) != 1 || res.NextKeys[0].AccessKeyID != f.hopKey || res.NextKeys[0].Account != awstest.Member(1) {
		t.Fatalf("next keys %+v", res.NextKeys)
	}
	if res.Read.Pages == 0 || res.APICalls["cloudtrail:LookupEvents"] != res.Read.Pages {
		t.Fatalf("pages %d, calls %v", res.Read.Pages, res.APICalls)
	}
	// The session is scoped where it acted.
	next, o := f.run(t, awstest.Member(1), map[string]any{"access_key_id": f.hopKey, "start": "1h"})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("scope of the hop: %v %s", o.Err, o.Result.GetError())
	}
	if want := []string{trailscope.KindIngressRule}; !slices.Equal(kinds(next.Scope), want) {
		t.Fatalf("member 1 artifacts %v, want %v", kinds(next.Scope), want)
	}
}

func TestParamsAreChecked(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name   string
		params map[string]any
	}{
		{"no key", map[string]any{}},
		{"not a key", map[string]any{"access_key_id": "AKIA'; DROP"}},
		{"unknown source", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "source": "athena"}},
		{"trail without a bucket", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "source": "trail"}},
		{"bucket for lookup", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "trail_bucket": "x-bucket"}},
		{"bad org id", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "source": "trail", "trail_bucket": "x-bucket", "org_id": "o-../../"}},
		{"bad account", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "org_accounts": []string{"12"}}},
		{"window backwards", map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "start": "1h", "end": "2h"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, o := f.run(t, awstest.Member(0), tt.params)
			if status.Code(o.Err) != codes.InvalidArgument {
				t.Fatalf("err %v, want InvalidArgument", o.Err)
			}
		})
	}
}
