package attest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

type accounts []*store.Account

func (a accounts) ListAccounts(context.Context) ([]*store.Account, error) { return a, nil }

// env is an emulated organisation, a verifier trusting its identity key and
// reading its instances through the real SDK, and a clock tests move.
type env struct {
	emu      *awsemu.Emulator
	endpoint string
	v        *attest.Verifier
	now      time.Time
	worker   aws.Config
	members  []string
}

const serverID = "ctl-test"

// The instances of the first member account newEnv prepares.
var goodID, stoppedID, untaggedID string

func newEnv(t *testing.T) *env {
	t.Helper()
	seed := awsemu.LabSeed(4)
	// In the first member account, the second instance is stopped and the
	// third lacks the tag the policy requires.
	for i := range seed.Accounts {
		if seed.Accounts[i].ID == awsemu.LabAccountID(2) {
			ins := seed.Accounts[i].Resources[0].Instances
			ins[1].State = "stopped"
			delete(ins[2].Tags, "Environment")
			goodID, stoppedID, untaggedID = ins[0].ID, ins[1].ID, ins[2].ID
		}
	}
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	e := &env{emu: emu, endpoint: endpoint, now: time.Now()}
	pemCert, err := emu.IdentityCertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := iid.AWSCertificates()
	if err != nil {
		t.Fatal(err)
	}
	extra, err := iid.ParseCertificatesPEM(pemCert)
	if err != nil {
		t.Fatal(err)
	}
	certs.Add(extra...)
	var known accounts
	for i := range 4 {
		known = append(known, &store.Account{ID: awsemu.LabAccountID(i), OUPath: "Workloads"})
	}
	e.members = []string{awsemu.LabAccountID(2), awsemu.LabAccountID(3)}
	// The controller's AWS path: its key, the worker role, then the
	// responder role in each account.
	var key awsemu.AccessKeySeed
	for _, a := range awsemu.LabSeed(4).Accounts {
		for _, u := range a.Users {
			if u.Name == awsemu.LabControllerUser {
				key = u.AccessKeys[0]
			}
		}
	}
	base := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")}
	workerRole := "arn:aws:iam::" + awsemu.LabAccountID(1) + ":role/" + awsemu.LabWorkerRole
	base.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), workerRole))
	e.worker = base
	pol, err := attest.ParsePolicy("policy.yaml", []byte(`
iid:
  accounts: [`+e.members[0]+`, `+e.members[1]+`]
  required_tags: {Environment: production}
  max_age: 10m
  label_tags: [Service, Missing]
sts:
  - role_arn: "arn:aws:iam::*:role/`+awsemu.LabWorkerRole+`"
    accounts: [all]
`))
	if err != nil {
		t.Fatal(err)
	}
	e.v, err = attest.New(attest.Config{Accounts: known, Certs: certs, Policy: pol, ServerID: serverID, STSEndpoint: endpoint,
		Instances: &attest.AWSInstances{Base: base, RoleName: awsemu.LabResponderRole, ExternalID: awsemu.LabExternalID},
		Clock:     func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// instances returns the running instances of an account.
func (e *env) instances(t *testing.T, account string) []awsemu.InstanceState {
	t.Helper()
	for _, a := range e.emu.Dump().Accounts {
		if a.ID == account {
			for _, r := range a.Resources {
				return r.Instances
			}
		}
	}
	t.Fatalf("account %s has no instances", account)
	return nil
}

func (e *env) proof(t *testing.T, account, instance string) *agentv1.AwsIidProof {
	t.Helper()
	s, err := e.emu.IdentityDocument(account, instance)
	if err != nil {
		t.Fatal(err)
	}
	return &agentv1.AwsIidProof{Document: s.Document, Rsa2048: []byte(s.RSA2048)}
}

func TestVerifyIID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acct := e.members[0]
	var good, stopped, untagged awsemu.InstanceState
	for _, in := range e.instances(t, acct) {
		switch in.ID {
		case goodID:
			good = in
		case stoppedID:
			stopped = in
		case untaggedID:
			untagged = in
		}
	}
	first, err := iid.ParseDocument(e.proof(t, acct, good.ID).Document)
	if err != nil {
		t.Fatal(err)
	}
	// The lab's instances started long ago: the clock stands a minute
	// after they did.
	e.now = first.PendingTime.Add(time.Minute)

	t.Run("valid document gives the policy's labels", func(t *testing.T) {
		who, ref := e.v.VerifyIID(ctx, e.proof(t, acct, good.ID))
		if ref != nil {
			t.Fatalf("refused: %v", ref)
		}
		want := map[string]string{"account": acct, "region": "us-east-1", "instance_id": good.ID, "tag.Service": good.Tags["Service"]}
		for k, v := range want {
			if who.Labels[k] != v {
				t.Fatalf("label %s=%q, want %q (labels %v)", k, who.Labels[k], v, who.Labels)
			}
		}
		if !strings.HasPrefix(who.Labels["az"], "us-east-1") || who.Role != "host" || who.Method != store.AttestAWSIID {
			t.Fatalf("identity %+v", who)
		}
	})

	broken := e.proof(t, acct, good.ID)
	raw, _ := iid.DecodeSignature(broken.Rsa2048)
	raw[len(raw)-3] ^= 0x55
	broken.Rsa2048 = raw
	otherKey, err := iid.NewAuthority("someone else", e.now)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := iid.ParseDocument(e.proof(t, acct, good.ID).Document)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := otherKey.Sign(doc, e.now)
	if err != nil {
		t.Fatal(err)
	}
	outsider := *doc
	outsider.AccountID = "999999999999"
	outsiderSigned, err := e.emu.SignIdentityDocument(&outsider)
	if err != nil {
		t.Fatal(err)
	}
	unlisted := *doc
	unlisted.AccountID = awsemu.LabAccountID(1)
	unlistedSigned, err := e.emu.SignIdentityDocument(&unlisted)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		proof  *agentv1.AwsIidProof
		later  time.Duration
		reason string
		code   codes.Code
	}{
		{"broken signature", broken, 0, attest.ReasonSignature, codes.Unauthenticated},
		{"signed by another key", &agentv1.AwsIidProof{Document: forged.Document, Rsa2048: []byte(forged.RSA2048)}, 0, attest.ReasonSignature, codes.Unauthenticated},
		{"account outside the organisation", &agentv1.AwsIidProof{Rsa2048: []byte(outsiderSigned.RSA2048)}, 0, attest.ReasonOutsideOrg, codes.PermissionDenied},
		{"account the policy does not list", &agentv1.AwsIidProof{Rsa2048: []byte(unlistedSigned.RSA2048)}, 0, attest.ReasonAccountDenied, codes.PermissionDenied},
		{"stopped instance", e.proof(t, acct, stopped.ID), 0, attest.ReasonNotRunning, codes.PermissionDenied},
		{"instance without the required tag", e.proof(t, acct, untagged.ID), 0, attest.ReasonMissingTag, codes.PermissionDenied},
		{"document older than max_age", e.proof(t, acct, good.ID), time.Hour, attest.ReasonTooOld, codes.PermissionDenied},
		{"garbage", &agentv1.AwsIidProof{Document: []byte("{}"), Rsa2048: []byte("AAAA")}, 0, attest.ReasonMalformed, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := e.now
			e.now = e.now.Add(tt.later)
			defer func() { e.now = saved }()
			who, ref := e.v.VerifyIID(ctx, tt.proof)
			if ref == nil {
				t.Fatalf("accepted: %+v", who)
			}
			if ref.Reason != tt.reason || ref.Code != tt.code {
				t.Fatalf("refusal %q (%v): %v; want %q (%v)", ref.Reason, ref.Code, ref.Err, tt.reason, tt.code)
			}
		})
	}
}

func TestVerifySTS(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sign := func(t *testing.T, creds aws.CredentialsProvider, endpoint, server string, at time.Time) *agentv1.AwsStsProof {
		t.Helper()
		r, err := stsproof.Sign(ctx, creds, endpoint, "us-east-1", server, at)
		if err != nil {
			t.Fatal(err)
		}
		p := &agentv1.AwsStsProof{Method: r.Method, Url: r.URL, Body: r.Body}
		for k, vs := range r.Headers {
			p.Headers = append(p.Headers, &agentv1.HttpHeader{Name: k, Value: vs[0]})
		}
		return p
	}
	good := sign(t, e.worker.Credentials, e.endpoint+"/", serverID, time.Now())
	who, ref := e.v.VerifySTS(ctx, good)
	if ref != nil {
		t.Fatalf("refused: %v", ref)
	}
	if who.Role != "worker" || who.Account != awsemu.LabAccountID(1) || who.Labels["serves"] != "all" || !strings.Contains(who.Subject, "assumed-role/"+awsemu.LabWorkerRole) {
		t.Fatalf("identity %+v", who)
	}

	smuggled := sign(t, e.worker.Credentials, e.endpoint+"/", serverID, time.Now())
	smuggled.Body = []byte("Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::" + awsemu.LabAccountID(2) + ":role/x&RoleSessionName=x")
	var key awsemu.AccessKeySeed
	for _, a := range awsemu.LabSeed(4).Accounts {
		for _, u := range a.Users {
			if u.Name == awsemu.LabControllerUser {
				key = u.AccessKeys[0]
			}
		}
	}
	userCreds := credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")

	tests := []struct {
		name   string
		proof  *agentv1.AwsStsProof
		later  time.Duration
		reason string
		want   string
	}{
		{"replay after 5 minutes", good, 6 * time.Minute, attest.ReasonSTSRequest, "old; the limit is 5m0s"},
		{"another server id", sign(t, e.worker.Credentials, e.endpoint+"/", "ctl-other", time.Now()), 0, attest.ReasonSTSRequest, `names server "ctl-other"`},
		{"another action in the body", smuggled, 0, attest.ReasonSTSRequest, "sts:AssumeRole, not sts:GetCallerIdentity"},
		{"not an STS URL", sign(t, e.worker.Credentials, "https://attacker.example/", serverID, time.Now()), 0, attest.ReasonSTSRequest, "not to the STS endpoint"},
		{"a role outside the policy", sign(t, userCreds, e.endpoint+"/", serverID, time.Now()), 0, attest.ReasonRoleDenied, "user/" + awsemu.LabControllerUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := e.now
			e.now = e.now.Add(tt.later)
			defer func() { e.now = saved }()
			who, ref := e.v.VerifySTS(ctx, tt.proof)
			if ref == nil {
				t.Fatalf("accepted: %+v", who)
			}
			if ref.Reason != tt.reason || !strings.Contains(ref.Err.Error(), tt.want) {
				t.Fatalf("refusal %q: %v; want %q containing %q", ref.Reason, ref.Err, tt.reason, tt.want)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{"valid", "iid:\n  accounts: [all]\n  max_age: 1h\nsts:\n  - role_arn: arn:aws:iam::*:role/W\n    accounts: [ou=Workloads]\n", ""},
		{"unknown key", "iid:\n  accounts: [all]\n  max_ag: 1h\n", "p.yaml:3:3: unknown key \"max_ag\""},
		{"bad account", "iid:\n  accounts: [all, 1234]\n", "p.yaml:2:19: account \"1234\""},
		{"bad duration", "iid:\n  accounts: [all]\n  max_age: soon\n", "p.yaml:3:12: max_age \"soon\""},
		{"bad arn", "sts:\n  - role_arn: role/W\n    accounts: [all]\n", "p.yaml:2:15: role_arn \"role/W\""},
		{"rule without accounts", "sts:\n  - role_arn: arn:aws:iam::*:role/W\n", "p.yaml:2:5: an sts rule needs"},
		{"nothing allowed", "{}\n", "allows nothing"},
		{"duplicate key", "iid:\n  accounts: [all]\n  accounts: [all]\n", "p.yaml:3:3: key \"accounts\" appears twice"},
		{"not YAML", "iid: [\n", "p.yaml: yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := attest.ParsePolicy("p.yaml", []byte(tt.text))
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestSetPolicy: a new policy version is enforced from the next
// enrollment on, nil refuses every attested enrollment, and a verifier
// without an instance reader refuses a policy that allows iid.
func TestSetPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acct := e.members[0]
	first, err := iid.ParseDocument(e.proof(t, acct, goodID).Document)
	if err != nil {
		t.Fatal(err)
	}
	e.now = first.PendingTime.Add(time.Minute)
	otherAccount, err := attest.ParsePolicy("v2.yaml", []byte("iid:\n  accounts: ["+e.members[1]+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		version int64
		policy  *attest.Policy
		reason  string
	}{
		{"a policy naming another account", 2, otherAccount, attest.ReasonAccountDenied},
		{"no policy", 3, nil, attest.ReasonNoPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.v.SetPolicy(tt.version, tt.policy); err != nil {
				t.Fatal(err)
			}
			if p, v := e.v.Policy(); p != tt.policy || v != tt.version {
				t.Fatalf("policy in force %p version %d, want %p %d", p, v, tt.policy, tt.version)
			}
			if _, ref := e.v.VerifyIID(ctx, e.proof(t, acct, goodID)); ref == nil || ref.Reason != tt.reason {
				t.Fatalf("refusal %+v, want %q", ref, tt.reason)
			}
		})
	}
	bare, err := attest.New(attest.Config{Accounts: accounts{}, Certs: &iid.Certificates{}, ServerID: serverID})
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.SetPolicy(1, otherAccount); err == nil || !strings.Contains(err.Error(), "no instance reader") {
		t.Fatalf("an iid policy without an instance reader: %v", err)
	}
}
