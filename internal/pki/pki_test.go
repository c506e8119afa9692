package pki_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/pki"
)

func TestCAPersistsAndIssues(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Fatal("the CA changed across starts")
	}
	if st, _ := os.Stat(filepath.Join(dir, pki.CAKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", st.Mode().Perm())
	}

	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "x")
	want := pki.Identity{Kind: pki.KindAgent, Name: "a-1", Role: "worker", Account: "111122223333", Region: "eu-west-1", InstanceID: "i-0abc"}
	cert, err := ca.IssueClient(csr, want, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}
	got, err := pki.IdentityFromCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != want.Kind || got.Name != want.Name || got.Role != want.Role || got.Account != want.Account ||
		got.Region != want.Region || got.InstanceID != want.InstanceID || len(got.Fingerprint) != 64 {
		t.Fatalf("identity %+v, want %+v", got, want)
	}
}

func TestIssueClientRefusesBadCSR(t *testing.T) {
	ca, _ := pki.LoadOrCreateCA(t.TempDir())
	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "x")
	csr[len(csr)-3] ^= 0xff // corrupt the signature
	_, err := ca.IssueClient(csr, pki.Identity{Kind: pki.KindAgent, Name: "a"}, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "certificate request") {
		t.Fatalf("err = %v, want a refusal of the request", err)
	}
}

func TestCredsRefuseLooseMode(t *testing.T) {
	ca, _ := pki.LoadOrCreateCA(t.TempDir())
	key, _ := pki.NewKey()
	cert, _ := ca.IssueClientForKey(key.Public(), pki.Identity{Kind: pki.KindOperator, Name: "alice"}, time.Hour)
	keyPEM, _ := pki.EncodeKeyPEM(key)
	c := &pki.Creds{Name: "alice", Role: "admin", CAPEM: string(pki.EncodeCertPEM(ca.Cert.Raw)), CertPEM: string(pki.EncodeCertPEM(cert.Raw)), KeyPEM: string(keyPEM)}
	path := filepath.Join(t.TempDir(), "alice.creds")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCreds(path); err != nil {
		t.Fatalf("LoadCreds: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCreds(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v, want a refusal naming chmod 600", err)
	}
}
