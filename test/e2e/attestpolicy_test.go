package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// attestPolicyJSON is `attest policy show --json`.
type attestPolicyJSON struct {
	Version   int64  `json:"version"`
	Source    string `json:"source"`
	SetBy     string `json:"set_by"`
	AllowsIID bool   `json:"allows_iid"`
	STSRules  uint32 `json:"sts_rules"`
	Policy    string `json:"policy"`
}

// startAttestController starts a controller of a cluster on the shared
// store with the lab's attestation flags (extra adds more) and the AWS
// environment it reads instances with.
func startAttestController(t *testing.T, b *e2e.Bins, l *attestLab, name, root, pkiDir, dsn, evidence, s3URL string, extra ...string) *e2e.Controller {
	t.Helper()
	dataDir := filepath.Join(root, name)
	c := &e2e.Controller{Bins: b, DataDir: dataDir, Creds: filepath.Join(pkiDir, "admin.creds")}
	args := []string{b.Firebreak, "controller", "--data-dir", dataDir, "--pki-dir", pkiDir, "--listen", "127.0.0.1:0", "--store", dsn, "--evidence", evidence,
		"--iid-cert-file", l.certFile, "--attest-sts-endpoint", l.lab.Endpoint, "--iid-external-id", awsemu.LabExternalID, "--enroll-refusal-window", "1ms"}
	c.Proc = &e2e.Proc{Name: name, LogPath: filepath.Join(root, name+".log"), Env: append(awsec2test.WorkerEnv(t, l.lab), "AWS_ENDPOINT_URL_S3="+s3URL), Args: append(args, extra...)}
	c.Start(t)
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, c.Log())
		}
	})
	e2e.WaitFor(t, 30*time.Second, name+" to serve", func() bool {
		bs, err := os.ReadFile(filepath.Join(dataDir, "controller.addr"))
		c.Addr = strings.TrimSpace(string(bs))
		return err == nil && c.Addr != ""
	})
	// enrollWith pins the CA it finds in the data dir; a cluster's is in
	// the pki dir.
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAttestPolicyAcrossControllers: the attestation policy is stored, so
// a policy set through one controller is enforced by another of the
// cluster without a restart; an invalid one is refused with
// file:line:column; each change is audited; a controller restarted with
// its old --attest-policy file does not undo a set.
func TestAttestPolicyAcrossControllers(t *testing.T) {
	dsn := pgtest.New(t)
	// The cluster's evidence bucket is on its own S3 server; the lab
	// serves everything else.
	evidence := s3Evidence(t)
	s3URL := os.Getenv("AWS_ENDPOINT_URL")
	l := startAttestLab(t)
	b := e2e.Build(t)
	root := t.TempDir()
	pkiDir := filepath.Join(root, "pki")
	initCluster(t, b, pkiDir)
	// The seed allows only STS workers.
	seed := filepath.Join(root, "seed.yaml")
	if err := os.WriteFile(seed, []byte("sts:\n  - role_arn: \"arn:aws:iam::*:role/FirebreakWorker\"\n    accounts: [all]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAttestController(t, b, l, "controller-a", root, pkiDir, dsn, evidence, s3URL, "--attest-policy", seed)
	bc := startAttestController(t, b, l, "controller-b", root, pkiDir, dsn, evidence, s3URL)
	var shown attestPolicyJSON
	bc.MustJSON(t, &shown, 0, "attest", "policy", "show")
	if shown.Version != 1 || shown.Source != seed || shown.AllowsIID || shown.STSRules != 1 || !strings.HasPrefix(shown.SetBy, "controller:") {
		t.Fatalf("the seeded policy through the other controller: %+v", shown)
	}
	w := a.StartAgent(t, e2e.AgentOptions{Name: "worker", Token: a.Token(t, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(t, l.lab),
		CAFile: filepath.Join(pkiDir, "ca.pem"), Args: []string{"--external-id", awsemu.LabExternalID}})
	a.WaitConnected(t, w.AgentID(t))
	a.MustJSON(t, nil, 0, "accounts", "sync", "--management-account", l.mgmt)
	proof := func() *agentv1.AwsIidProof {
		s, err := l.lab.Emu.IdentityDocument(l.m0, l.fresh)
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.AwsIidProof{Document: s.Document, Rsa2048: []byte(s.RSA2048)}
	}
	if err := enrollIID(t, bc, "before-set", proof()); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "allows no instance identity enrollment") {
		t.Fatalf("IID enrollment under an STS-only policy: %v", err)
	}

	bad := filepath.Join(root, "bad.yaml")
	if err := os.WriteFile(bad, []byte("iid:\n  accounts: [all]\n  max_age: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := a.CLI(t, "attest", "policy", "set", bad)
	if r.Exit != 2 || !strings.Contains(r.Stderr, bad+":3:12: max_age \"soon\"") {
		t.Fatalf("an invalid policy: exit %d, want 2 naming %s:3:12\n%s%s", r.Exit, bad, r.Stdout, r.Stderr)
	}
	good := filepath.Join(root, "good.yaml")
	if err := os.WriteFile(good, []byte("iid:\n  accounts: ["+l.m0+"]\n  required_tags: {firebreak: enabled}\n  max_age: 30m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var set attestPolicyJSON
	a.MustJSON(t, &set, 0, "attest", "policy", "set", good)
	if set.Version != 2 || !set.AllowsIID || !strings.HasPrefix(set.SetBy, "operator:") {
		t.Fatalf("policy set: %+v", set)
	}
	// Controller B reads the new version on its own.
	e2e.WaitFor(t, 30*time.Second, "controller-b to enforce version 2", func() bool {
		return enrollIID(t, bc, "after-set", proof()) == nil
	})
	var recs []auditRecordJSON
	a.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
	var versions []float64
	for _, rec := range recs {
		if rec.Action == "attest.policy.set" {
			versions = append(versions, rec.Detail["version"].(float64))
		}
	}
	if len(versions) != 2 {
		t.Fatalf("attest.policy.set audit records for versions %v, want the seed and the set", versions)
	}

	// A restart with the old seed file keeps the stored version 2.
	a.Kill()
	_ = os.Remove(filepath.Join(a.DataDir, "controller.addr"))
	a.Start(t)
	e2e.WaitFor(t, 30*time.Second, "controller-a to serve again", func() bool {
		bs, err := os.ReadFile(filepath.Join(a.DataDir, "controller.addr"))
		a.Addr = strings.TrimSpace(string(bs))
		return err == nil && a.Addr != ""
	})
	a.MustJSON(t, &shown, 0, "attest", "policy", "show")
	if shown.Version != 2 || shown.Source != good {
		t.Fatalf("after a restart with the seed file: %+v", shown)
	}
}
