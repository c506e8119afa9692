package e2e_test

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestEradicateEndToEnd plans and runs the eradication of what the scope
// found, through the real binaries: `firebreak eradicate plan --case`, a
// dry run that changes nothing, then the run, one aws-eradicate run per
// account, each approved by a second operator; afterwards the backdoor key
// is refused, the administrator policy is detached and port 22 is closed.
func TestEradicateEndToEnd(t *testing.T) {
	seed := awsemu.Lab{Accounts: 4}.Seed()
	victim, pivot := awstest.Member(0), awstest.Member(1)
	seed.Accounts[2].Users[0].InlinePolicies["escalate"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:CreateAccessKey","iam:AttachUserPolicy","sts:AssumeRole"],"Resource":"*"}]}`)
	seed.Accounts[3].Roles = append(seed.Accounts[3].Roles, awsemu.RoleSeed{Name: "ops-cross",
		TrustPolicy:    awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + victim + `:user/` + awsemu.LabCompromisedUser + `"},"Action":"sts:AssumeRole"}]}`),
		InlinePolicies: map[string]awsemu.PolicyText{"ops": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}`}})
	// An administrator of the victim account, who made the deploy role
	// (in CloudTrail) before the attack.
	admin := awsemu.AccessKeySeed{ID: "AKIAE2EADMINALICE001", Secret: "e2e-admin-secret-0000000000000000000000001"}
	seed.Accounts[2].Users = append(seed.Accounts[2].Users, awsemu.UserSeed{Name: "alice", AccessKeys: []awsemu.AccessKeySeed{admin},
		InlinePolicies: map[string]awsemu.PolicyText{"admin": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`}})
	lab := awstest.StartWith(t, seed)
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	w := c.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: c.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, lab),
		Args: []string{"--external-id", awsemu.LabExternalID}})
	c.WaitConnected(t, w.AgentID(t))
	c.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", awsemu.LabAccountID(0))
	bob := filepath.Join(t.TempDir(), "bob.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)

	ctx := context.Background()
	deployTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	adminIAM := iam.NewFromConfig(aws.Config{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(admin.ID, admin.Secret, "")})
	if _, err := adminIAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("deploy"), AssumeRolePolicyDocument: aws.String(deployTrust)}); err != nil {
		t.Fatal(err)
	}
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
	// With AdministratorAccess, the key lets an outside account into the
	// deploy role.
	if _, err := iam.NewFromConfig(cfg).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("deploy"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
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
	open22 := []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}
	if _, err := inPivot.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(group), IpPermissions: open22}); err != nil {
		t.Fatal(err)
	}

	var kase struct {
		ID string `json:"case_id"`
	}
	c.MustJSON(t, &kase, 0, "case", "create", "leaked CI key")
	c.MustJSON(t, nil, 0, "scope", "key", key.ID, "--since", "1h", "--case", kase.ID)

	var plan struct {
		ID    string `json:"id"`
		Steps []struct {
			Account, Action, Resource string
			Calls                     []struct {
				Operation string            `json:"operation"`
				Params    map[string]string `json:"params"`
			} `json:"calls"`
		} `json:"steps"`
	}
	c.MustJSON(t, &plan, 0, "eradicate", "plan", "--case", kase.ID)
	var actions []string
	for _, s := range plan.Steps {
		actions = append(actions, s.Action+" "+s.Account)
		// The trust goes back to the administrator's document, which
		// CloudTrail recorded in the CreateRole's requestParameters.
		if s.Action == "restore-trust-policy" && (len(s.Calls) != 1 || s.Calls[0].Params["PolicyDocument"] != deployTrust) {
			t.Fatalf("trust step %+v, want UpdateAssumeRolePolicy with %s", s, deployTrust)
		}
	}
	slices.Sort(actions)
	if want := []string{"delete-access-key " + victim, "detach-user-policy " + victim, "restore-trust-policy " + victim, "revoke-ingress " + pivot}; !slices.Equal(actions, want) {
		t.Fatalf("plan %s steps %v, want %v", plan.ID, actions, want)
	}

	// After the plan, the attacker opens another port: nobody scopes the
	// key again by hand.
	open3389 := []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(3389), ToPort: aws.Int32(3389), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}
	if _, err := inPivot.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(group), IpPermissions: open3389}); err != nil {
		t.Fatal(err)
	}

	// Verification before eradication: verify re-scopes the key first, so
	// the late rule is seen, unplanned; the attacker's artifacts are live,
	// and the case is not eradicated.
	type verdict struct {
		Eradicated        bool           `json:"eradicated"`
		Outcomes          map[string]int `json:"outcomes"`
		Live              []string       `json:"live"`
		Unplanned         []string       `json:"unplanned"`
		Problems          []string       `json:"problems"`
		TimeToEradicateMS int64          `json:"time_to_eradicate_ms"`
		Rescope           struct {
			Keys []string `json:"keys"`
			Runs []string `json:"runs"`
		} `json:"rescope"`
	}
	var early verdict
	c.MustJSON(t, &early, 6, "eradicate", "verify", "--plan", plan.ID)
	if early.Eradicated || early.Outcomes["live"] != 4 || len(early.Live) != 4 {
		t.Fatalf("verify before eradication %+v", early)
	}
	lateRule := func(v verdict) bool {
		return len(v.Unplanned) == 1 && strings.HasPrefix(v.Unplanned[0], pivot+" ec2-ingress-rule "+group)
	}
	if !lateRule(early) || !slices.Equal(early.Rescope.Keys, []string{key.ID}) || len(early.Rescope.Runs) != 2 {
		t.Fatalf("verify before eradication: unplanned %v, re-scope %+v; want the port 3389 rule in %s found by a re-scope of %s and its session",
			early.Unplanned, early.Rescope, pivot, key.ID)
	}

	type ran struct {
		Runs     []string       `json:"runs"`
		Outcomes map[string]int `json:"outcomes"`
	}
	var dry ran
	c.MustJSON(t, &dry, 0, "eradicate", "run", "--plan", plan.ID, "--dry-run")
	if dry.Outcomes["dry_run"] != 4 || len(dry.Runs) != 2 {
		t.Fatalf("dry run %+v", dry)
	}
	if _, err := sts.NewFromConfig(aws.Config{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(backdoor.AccessKey.AccessKeyId), aws.ToString(backdoor.AccessKey.SecretAccessKey), "")}).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("the dry run changed something: the backdoor key is refused: %v", err)
	}

	// The run waits for bob's approval of each account's run.
	approved := map[string]bool{}
	runApproved := func(planID string) ran {
		t.Helper()
		done := make(chan e2e.Result, 1)
		go func() { done <- c.CLI(t, "eradicate", "run", "--plan", planID, "--json") }()
		var res e2e.Result
		e2e.WaitFor(t, 3*time.Minute, "the eradication runs approved and finished", func() bool {
			select {
			case res = <-done:
				return true
			default:
			}
			var runs []struct {
				RunID  string `json:"run_id"`
				Action string `json:"action"`
				Status string `json:"status"`
			}
			c.MustJSON(t, &runs, 0, "runs", "list")
			for _, r := range runs {
				if r.Action == "aws-eradicate" && r.Status == "awaiting_approval" && !approved[r.RunID] {
					if a := c.CLIAs(t, bob, "approve", r.RunID); a.Exit != 0 {
						t.Fatalf("bob approves %s: exit %d: %s", r.RunID, a.Exit, a.Stderr)
					}
					approved[r.RunID] = true
				}
			}
			return false
		})
		if res.Exit != 0 {
			t.Fatalf("eradicate run %s: exit %d: %s %s", planID, res.Exit, res.Stdout, res.Stderr)
		}
		var got ran
		if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil {
			t.Fatalf("eradicate run %s: %v\n%s", planID, err, res.Stdout)
		}
		return got
	}
	if got := runApproved(plan.ID); got.Outcomes["done"] != 4 || len(approved) != 2 {
		t.Fatalf("eradicate run %+v, approved %v", got, approved)
	}
	_, err = sts.NewFromConfig(aws.Config{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(backdoor.AccessKey.AccessKeyId), aws.ToString(backdoor.AccessKey.SecretAccessKey), "")}).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err == nil || !strings.Contains(err.Error(), "InvalidClientTokenId") {
		t.Fatalf("the backdoor key after eradication: %v", err)
	}
	sg, err := inPivot.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sg.SecurityGroups[0].IpPermissions {
		for _, r := range p.IpRanges {
			if aws.ToInt32(p.FromPort) == 22 && aws.ToString(r.CidrIp) == "0.0.0.0/0" {
				t.Fatal("port 22 is still open to the world")
			}
		}
	}
	role, err := adminIAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("deploy")})
	if err != nil {
		t.Fatal(err)
	}
	if doc, _ := url.QueryUnescape(aws.ToString(role.Role.AssumeRolePolicyDocument)); !sameJSON(doc, deployTrust) {
		t.Fatalf("the deploy role trusts %s after eradication, want the administrator's %s", doc, deployTrust)
	}

	// Verification after eradication: nothing of the plan is live, but the
	// late rule (seen by verify's own re-scope) keeps the case from its
	// eradication.
	var after verdict
	c.MustJSON(t, &after, 6, "eradicate", "verify", "--plan", plan.ID)
	if after.Eradicated || after.Outcomes["live"] != 0 || !lateRule(after) || after.Outcomes["gone"]+after.Outcomes["neutralised"] != 4 || after.TimeToEradicateMS != 0 {
		t.Fatalf("verify after eradication of the first plan %+v", after)
	}
	var shown struct {
		Phase             string `json:"phase"`
		TimeToEradicateMS *int64 `json:"time_to_eradicate_ms"`
	}
	c.MustJSON(t, &shown, 0, "case", "show", kase.ID)
	if shown.Phase == "eradicate" || shown.TimeToEradicateMS != nil {
		t.Fatalf("case with an unplanned artifact %+v, want it not eradicated", shown)
	}

	// A new plan takes the late rule in; once it ran, verification finds
	// nothing live and nothing the plan lacks: the case enters its
	// eradicate phase with a time to eradicate, and the report says so.
	var plan2 struct {
		ID    string `json:"id"`
		Steps []struct {
			Account, Action string
		} `json:"steps"`
	}
	c.MustJSON(t, &plan2, 0, "eradicate", "plan", "--case", kase.ID)
	if len(plan2.Steps) != 5 {
		t.Fatalf("plan %s after the re-scope %+v, want the 4 steps and the late rule's", plan2.ID, plan2.Steps)
	}
	if got := runApproved(plan2.ID); got.Outcomes["done"]+got.Outcomes["already_gone"] != 5 || len(approved) != 4 {
		t.Fatalf("eradicate run of %s %+v, approved %v", plan2.ID, got, approved)
	}
	sg, err = inPivot.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sg.SecurityGroups[0].IpPermissions {
		if aws.ToInt32(p.FromPort) == 3389 {
			t.Fatal("port 3389 is still open after the second plan")
		}
	}
	var final verdict
	c.MustJSON(t, &final, 0, "eradicate", "verify", "--plan", plan2.ID)
	if !final.Eradicated || final.Outcomes["live"] != 0 || len(final.Unplanned) != 0 || final.Outcomes["gone"]+final.Outcomes["neutralised"] != 5 || final.TimeToEradicateMS <= 0 {
		t.Fatalf("verify after eradication %+v", final)
	}
	c.MustJSON(t, &shown, 0, "case", "show", kase.ID)
	if shown.Phase != "eradicate" || shown.TimeToEradicateMS == nil || *shown.TimeToEradicateMS != final.TimeToEradicateMS {
		t.Fatalf("case after verification %+v, want phase eradicate and time to eradicate %d ms", shown, final.TimeToEradicateMS)
	}
	report := c.CLI(t, "case", "report", kase.ID, "--format", "md")
	row := ""
	for _, l := range strings.Split(report.Stdout, "\n") {
		if strings.HasPrefix(l, "| Time to eradicate |") {
			row = l
		}
	}
	if report.Exit != 0 || row == "" || strings.Contains(row, "not reached") {
		t.Fatalf("case report: exit %d, time to eradicate row %q", report.Exit, row)
	}
}

// sameJSON reports whether two JSON documents are equal as values.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
