package e2e_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// attestLab is the emulated organisation of the attestation tests: in the
// first member account web-1 started a minute ago and is tagged for
// Firebreak, web-2 is stopped, worker-1 lacks the tag; in the second,
// web-1 started two hours ago.
type attestLab struct {
	lab                        *awstest.Lab
	m0, m1                     string
	fresh, stopped, untagged   string
	stale                      string
	certFile, policyFile, mgmt string
}

func startAttestLab(t *testing.T) *attestLab {
	t.Helper()
	seed := awsemu.LabSeed(4)
	now := time.Now().UTC()
	l := &attestLab{m0: awstest.Member(0), m1: awstest.Member(1), mgmt: awsemu.LabAccountID(0)}
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		if a.ID != l.m0 && a.ID != l.m1 {
			continue
		}
		for j := range a.Resources[0].Instances {
			in := &a.Resources[0].Instances[j]
			in.LaunchTime = now.Add(-time.Minute)
			if in.Tags == nil {
				in.Tags = map[string]string{}
			}
			in.Tags["firebreak"] = "enabled"
			switch {
			case a.ID == l.m0 && in.Name == "web-1":
				l.fresh = in.ID
			case a.ID == l.m0 && in.Name == "web-2":
				in.State, l.stopped = "stopped", in.ID
			case a.ID == l.m0 && in.Name == "worker-1":
				delete(in.Tags, "firebreak")
				l.untagged = in.ID
			case a.ID == l.m1 && in.Name == "web-1":
				in.LaunchTime, l.stale = now.Add(-2*time.Hour), in.ID
			}
		}
	}
	if l.fresh == "" || l.stopped == "" || l.untagged == "" || l.stale == "" {
		t.Fatalf("the lab seed lacks the instances the test needs: %+v", l)
	}
	l.lab = awstest.StartWith(t, seed)
	dir := t.TempDir()
	certPEM, err := l.lab.Emu.IdentityCertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	l.certFile = filepath.Join(dir, "emulator-iid.pem")
	l.policyFile = filepath.Join(dir, "attest.yaml")
	if err := os.WriteFile(l.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`iid:
  accounts: [%s, %s]
  required_tags: {firebreak: enabled}
  max_age: 30m
  label_tags: [Service, Environment]
sts:
  - role_arn: "arn:aws:iam::%s:role/%s"
    accounts: [all]
`, l.m0, l.m1, awstest.SecurityAccount(), awsemu.LabWorkerRole)
	if err := os.WriteFile(l.policyFile, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// controllerArgs are the flags that turn attestation on against the lab.
func (l *attestLab) controllerArgs() []string {
	return []string{"--attest-policy", l.policyFile, "--iid-cert-file", l.certFile, "--attest-sts-endpoint", l.lab.Endpoint,
		"--iid-external-id", awsemu.LabExternalID}
}

// iidAgent starts a host agent that enrols by the identity document its
// IMDS (the emulator's, for that instance) serves.
func (l *attestLab) iidAgent(t *testing.T, c *e2e.Controller, name, account, instance string) *e2e.Agent {
	t.Helper()
	imdsURL, stop, err := l.lab.Emu.StartIMDS("127.0.0.1:0", account, instance)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	return c.StartAgent(t, e2e.AgentOptions{Name: name, Args: []string{"--join", "aws-iid", "--hostname", name},
		Env: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imdsURL, "AWS_EC2_METADATA_DISABLED=", "AWS_REGION=" + awstest.Region}})
}

// enrollIID sends an Enroll with an identity proof, as an agent would, and
// returns the controller's answer.
func enrollIID(t *testing.T, c *e2e.Controller, hostname string, proof *agentv1.AwsIidProof) error {
	t.Helper()
	return enrollWith(t, c, &agentv1.EnrollRequest{Facts: &agentv1.AgentFacts{Hostname: hostname, Os: "linux"}, AwsIid: proof})
}

// enrollWith sends an Enroll request with a fresh key's CSR.
func enrollWith(t *testing.T, c *e2e.Controller, req *agentv1.EnrollRequest) error {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, req.GetFacts().GetHostname())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req.CsrDer = csr
	_, err = agentv1.NewAgentServiceClient(conn).Enroll(context.Background(), req)
	return err
}

type auditRecordJSON struct {
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Subject string         `json:"subject"`
	Detail  map[string]any `json:"detail"`
}

// refusalAudited reports whether an attested refusal of hostname with
// reason is in the audit log, on its own or as the guard's first record.
func refusalAudited(t *testing.T, c *e2e.Controller, hostname, reason string) bool {
	t.Helper()
	var recs []auditRecordJSON
	c.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
	for _, r := range recs {
		if (r.Action == "agent.attest_refused" || r.Action == "agent.enroll_refused") && r.Subject == hostname && r.Detail["reason"] == reason {
			return true
		}
	}
	return false
}

// TestAttestedEnrollment enrols a worker by a signed GetCallerIdentity and
// a host by its instance identity document, with no join token, against
// the real controller and agent binaries and the emulator, and checks each
// refusal the issue lists with its audit record.
func TestAttestedEnrollment(t *testing.T) {
	l := startAttestLab(t)
	b := e2e.Build(t)
	// The controller reads instances through its own AWS path: the worker
	// role, then the responder role of the instance's account.
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: append(l.controllerArgs(), "--enroll-refusal-window", "1ms"),
		Env: awsec2test.WorkerEnv(t, l.lab)})

	w := c.StartAgent(t, e2e.AgentOptions{Name: "sts-worker", Role: "worker", Env: awsec2test.WorkerEnv(t, l.lab),
		Args: []string{"--join", "aws-sts", "--external-id", awsemu.LabExternalID}})
	wid := w.AgentID(t)
	c.WaitConnected(t, wid)
	c.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", l.mgmt)

	h := l.iidAgent(t, c, "iid-web-1", l.m0, l.fresh)
	hid := h.AgentID(t)
	c.WaitConnected(t, hid)
	byID := map[string]e2e.AgentJSON{}
	for _, a := range c.Agents(t) {
		byID[a.ID] = a
	}
	if got := byID[wid]; got.Attestation != "aws-sts" || got.Role != "worker" || got.Labels["serves"] != "all" || got.Labels["account"] != awstest.SecurityAccount() {
		t.Fatalf("STS worker %+v", got)
	}
	host := byID[hid]
	if host.Attestation != "aws-iid" || host.Role != "host" || host.Labels["account"] != l.m0 || host.Labels["instance_id"] != l.fresh ||
		host.Labels["region"] != awstest.Region || host.Labels["tag.Service"] == "" || !strings.HasPrefix(host.Labels["az"], awstest.Region) {
		t.Fatalf("IID host %+v", host)
	}
	var selected []e2e.AgentJSON
	c.MustJSON(t, &selected, 0, "agents", "list", "--select", "label.account="+l.m0)
	if len(selected) != 1 || selected[0].ID != hid {
		t.Fatalf("selecting label.account=%s gave %+v", l.m0, selected)
	}

	signed := func(account, instance string) *agentv1.AwsIidProof {
		s, err := l.lab.Emu.IdentityDocument(account, instance)
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.AwsIidProof{Document: s.Document, Rsa2048: []byte(s.RSA2048)}
	}
	broken := signed(l.m0, l.fresh)
	raw, err := iid.DecodeSignature(broken.Rsa2048)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-4] ^= 0x5a
	broken.Rsa2048 = raw
	other, err := iid.NewAuthority("not AWS", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := iid.ParseDocument(signed(l.m0, l.fresh).Document)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Sign(doc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	outside := *doc
	outside.AccountID = "999999999999"
	outsideSigned, err := l.lab.Emu.SignIdentityDocument(&outside)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		proof  *agentv1.AwsIidProof
		code   codes.Code
		reason string
		want   string
	}{
		{"broken signature", broken, codes.Unauthenticated, "invalid document signature", "does not verify"},
		{"signed by another key", &agentv1.AwsIidProof{Document: forged.Document, Rsa2048: []byte(forged.RSA2048)}, codes.Unauthenticated, "invalid document signature", "no trusted certificate"},
		{"account outside the organisation", &agentv1.AwsIidProof{Rsa2048: []byte(outsideSigned.RSA2048)}, codes.PermissionDenied, "account outside the organisation", "not in the organisation"},
		{"stopped instance", signed(l.m0, l.stopped), codes.PermissionDenied, "instance not running", "is stopped, not running"},
		{"instance without the required tag", signed(l.m0, l.untagged), codes.PermissionDenied, "instance lacks a required tag", "firebreak=enabled"},
		{"replayed document of an enrolled instance", signed(l.m0, l.fresh), codes.AlreadyExists, "instance already enrolled: possible stolen document", "already enrolled as agent " + hid},
		{"document older than the TTL", signed(l.m1, l.stale), codes.PermissionDenied, "identity document older than max_age", "max_age for first enrollment is 30m0s"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostname := fmt.Sprintf("refused-%d", i)
			err := enrollIID(t, c, hostname, tt.proof)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("enrollment: %v; want %v containing %q", err, tt.code, tt.want)
			}
			e2e.WaitFor(t, 10*time.Second, "the refusal's audit record", func() bool { return refusalAudited(t, c, hostname, tt.reason) })
		})
	}
	if got := len(c.Agents(t)); got != 2 {
		t.Fatalf("%d agents after the refusals, want 2", got)
	}
}

// TestAttestedWorkerRefusals sends the controller signed GetCallerIdentity
// requests a worker could not have made honestly, each refused with a
// precise error and an audit record.
func TestAttestedWorkerRefusals(t *testing.T) {
	l := startAttestLab(t)
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: append(l.controllerArgs(), "--enroll-refusal-window", "1ms"),
		Env: awsec2test.WorkerEnv(t, l.lab)})
	caPEM, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	serverID := stsproof.ServerIDFor(ca.Raw)
	ctx := context.Background()
	key := l.lab.ControllerKey(t)
	user := awscreds.NewStaticCredentialsProvider(key.ID, key.Secret, "")
	worker, err := l.lab.STS(key.ID, key.Secret, "").AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + awstest.SecurityAccount() + ":role/" + awsemu.LabWorkerRole), RoleSessionName: aws.String("worker")})
	if err != nil {
		t.Fatal(err)
	}
	workerCreds := awscreds.NewStaticCredentialsProvider(aws.ToString(worker.Credentials.AccessKeyId),
		aws.ToString(worker.Credentials.SecretAccessKey), aws.ToString(worker.Credentials.SessionToken))
	sign := func(creds aws.CredentialsProvider, endpoint, server string, at time.Time) *agentv1.AwsStsProof {
		r, err := stsproof.Sign(ctx, creds, endpoint, awstest.Region, server, at)
		if err != nil {
			t.Fatal(err)
		}
		p := &agentv1.AwsStsProof{Method: r.Method, Url: r.URL, Body: r.Body}
		for k, vs := range r.Headers {
			p.Headers = append(p.Headers, &agentv1.HttpHeader{Name: k, Value: vs[0]})
		}
		return p
	}
	endpoint := l.lab.Endpoint + "/"
	rewritten := sign(workerCreds, endpoint, serverID, time.Now())
	rewritten.Body = []byte("Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::" + l.m0 + ":role/" + awsemu.LabResponderRole + "&RoleSessionName=x")

	tests := []struct {
		name         string
		proof        *agentv1.AwsStsProof
		code         codes.Code
		reason, want string
	}{
		// The signing time is the clock the check reads: a request signed
		// six minutes ago is what a replay after five minutes presents.
		{"replay after 5 minutes", sign(workerCreds, endpoint, serverID, time.Now().Add(-6*time.Minute)), codes.PermissionDenied, "signed request refused", "the limit is 5m0s"},
		{"wrong server id", sign(workerCreds, endpoint, "another-controller", time.Now()), codes.PermissionDenied, "signed request refused", `names server "another-controller"`},
		{"request rewritten to another action", rewritten, codes.PermissionDenied, "signed request refused", "sts:AssumeRole, not sts:GetCallerIdentity"},
		{"non-STS URL", sign(workerCreds, "https://sts.attacker.example/", serverID, time.Now()), codes.PermissionDenied, "signed request refused", "not to the STS endpoint"},
		{"role outside the policy", sign(user, endpoint, serverID, time.Now()), codes.PermissionDenied, "role not allowed by the policy", "user/" + awsemu.LabControllerUser},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostname := fmt.Sprintf("sts-refused-%d", i)
			err := enrollWith(t, c, &agentv1.EnrollRequest{Facts: &agentv1.AgentFacts{Hostname: hostname, Os: "linux"}, AwsSts: tt.proof,
				Role: agentv1.AgentRole_AGENT_ROLE_WORKER})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("enrollment: %v; want %v containing %q", err, tt.code, tt.want)
			}
			e2e.WaitFor(t, 10*time.Second, "the refusal's audit record", func() bool { return refusalAudited(t, c, hostname, tt.reason) })
		})
	}
	// The honest request enrols.
	if err := enrollWith(t, c, &agentv1.EnrollRequest{Facts: &agentv1.AgentFacts{Hostname: "sts-ok", Os: "linux"},
		AwsSts: sign(workerCreds, endpoint, serverID, time.Now()), Role: agentv1.AgentRole_AGENT_ROLE_WORKER}); err != nil {
		t.Fatalf("an honest signed request was refused: %v", err)
	}
}
