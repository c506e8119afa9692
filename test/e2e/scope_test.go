package e2e_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestScopeKeyEndToEnd drives `firebreak scope key` through the real
// binaries: a controller, a worker reaching the emulated organisation (with
// an organisation trail), account discovery, a leaked key that makes itself
// a second key, takes AdministratorAccess and assumes a role in another
// account where it opens port 22 to the world; then the scope through
// every account's event history (following the session into the account
// it entered) and through the trail's log files, into a case whose report
// gains a Scope section and whose evidence holds the matched events.
func TestScopeKeyEndToEnd(t *testing.T) {
	seed := awsemu.Lab{Accounts: 4, OrgTrail: true}.Seed()
	victim, pivot := awstest.Member(0), awstest.Member(1)
	seed.Accounts[2].Users[0].InlinePolicies["escalate"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:CreateAccessKey","iam:AttachUserPolicy","sts:AssumeRole"],"Resource":"*"}]}`)
	seed.Accounts[3].Roles = append(seed.Accounts[3].Roles, awsemu.RoleSeed{Name: "ops-cross",
		TrustPolicy:    awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + victim + `:user/` + awsemu.LabCompromisedUser + `"},"Action":"sts:AssumeRole"}]}`),
		InlinePolicies: map[string]awsemu.PolicyText{"ops": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}`}})
	lab := awstest.StartWith(t, seed)
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))
	c.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", awsemu.LabAccountID(0))

	// The attack.
	ctx := context.Background()
	key := stolenKey(t, lab, victim)
	cfg := aws.Config{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint), Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")}
	backdoor, err := iam.NewFromConfig(cfg).CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(awsemu.LabCompromisedUser)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iam.NewFromConfig(cfg).AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(awsemu.LabCompromisedUser),
		PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")}); err != nil {
		t.Fatal(err)
	}
	hop, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + pivot + ":role/ops-cross"), RoleSessionName: aws.String("maintenance")})
	if err != nil {
		t.Fatal(err)
	}
	hc := hop.Credentials
	inPivot := ec2.NewFromConfig(aws.Config{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(hc.AccessKeyId), aws.ToString(hc.SecretAccessKey), aws.ToString(hc.SessionToken))})
	groups, err := inPivot.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	group := aws.ToString(groups.SecurityGroups[0].GroupId)
	if _, err := inPivot.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(group),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}); err != nil {
		t.Fatal(err)
	}
	lab.Emu.DeliverTrailLogs()

	var kase struct {
		ID string `json:"case_id"`
	}
	c.MustJSON(t, &kase, 0, "case", "create", "leaked CI key")
	if kase.ID == "" {
		t.Fatal("case create gave no case id")
	}

	type artifact struct {
		Kind, Account, ID string
		Public            bool
	}
	var scoped struct {
		Runs      []string   `json:"runs"`
		Accounts  []string   `json:"accounts"`
		Artifacts []artifact `json:"artifacts"`
		Sessions  []struct {
			AccessKeyID string `json:"access_key_id"`
		} `json:"sessions"`
	}
	check := func(source string) {
		t.Helper()
		want := []artifact{{"iam-access-key", victim, aws.ToString(backdoor.AccessKey.AccessKeyId), false},
			{"iam-user-policy", victim, awsemu.LabCompromisedUser, false}, {"ec2-ingress-rule", pivot, group, true}}
		// Events within one second may come in either order.
		byKind := func(a, b artifact) int { return strings.Compare(a.Kind, b.Kind) }
		slices.SortFunc(want, byKind)
		slices.SortFunc(scoped.Artifacts, byKind)
		if !slices.Equal(scoped.Artifacts, want) {
			t.Fatalf("%s: artifacts %+v, want %+v", source, scoped.Artifacts, want)
		}
		if !slices.Contains(scoped.Accounts, pivot) || !slices.ContainsFunc(scoped.Sessions, func(s struct {
			AccessKeyID string `json:"access_key_id"`
		}) bool {
			return s.AccessKeyID == aws.ToString(hc.AccessKeyId)
		}) {
			t.Fatalf("%s: the session in %s was not followed: %+v", source, pivot, scoped)
		}
	}
	// Every account's event history, then the account the session entered.
	c.MustJSON(t, &scoped, 0, "scope", "key", key.ID, "--since", "1h", "--case", kase.ID)
	if len(scoped.Runs) != 2 {
		t.Fatalf("lookup runs %v, want the org-wide one and the one in %s", scoped.Runs, pivot)
	}
	check("lookup")
	// The organisation trail's log files, in the account holding them
	// (decoded afresh: json.Unmarshal keeps fields a reused element lacks).
	scoped.Artifacts, scoped.Sessions, scoped.Accounts, scoped.Runs = nil, nil, nil, nil
	c.MustJSON(t, &scoped, 0, "scope", "key", key.ID, "--since", "1h", "--case", kase.ID,
		"--trail-bucket", awsemu.LabTrailBucket, "--log-archive", awstest.SecurityAccount())
	check("trail")

	r := c.CLI(t, "case", "report", kase.ID, "--format", "md")
	if r.Exit != 0 {
		t.Fatalf("case report: exit %d: %s", r.Exit, r.Stderr)
	}
	for _, want := range []string{"## Scope", "| ec2-ingress-rule | " + pivot, "credential-scope-" + key.ID} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("the report lacks %q:\n%s", want, r.Stdout)
		}
	}
}
