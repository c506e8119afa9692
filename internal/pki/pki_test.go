package pki_test

import (
	"crypto/x509"
	"errors"
	"io/fs"
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

// TestCreateAndLoadCA checks CreateCA's modes and its refusal to replace a
// CA, and LoadCA's errors for missing or mismatched files.
func TestCreateAndLoadCA(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
		notExit bool
	}{
		{name: "created CA loads", setup: func(t *testing.T, dir string) {
			if _, err := pki.CreateCA(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "missing directory", setup: func(t *testing.T, dir string) {}, wantErr: "reading the CA certificate", notExit: true},
		{name: "missing key", setup: func(t *testing.T, dir string) {
			if _, err := pki.CreateCA(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, pki.CAKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "reading the CA key", notExit: true},
		{name: "key of another CA", setup: func(t *testing.T, dir string) {
			if _, err := pki.CreateCA(dir); err != nil {
				t.Fatal(err)
			}
			other := t.TempDir()
			if _, err := pki.CreateCA(other); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, pki.CAKeyFile))
			if err := os.WriteFile(filepath.Join(dir, pki.CAKeyFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "is not the key of the CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if tt.name != "missing directory" {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			tt.setup(t, dir)
			ca, err := pki.LoadCA(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.notExit != errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tt.notExit, tt.notExit)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ca.Fingerprint()) != 64 {
				t.Fatalf("fingerprint %q is not a hex SHA-256", ca.Fingerprint())
			}
			for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
				if st, _ := os.Stat(filepath.Join(dir, f)); st.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
				}
			}
			if _, err := pki.CreateCA(dir); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("a second CreateCA: err = %v, want fs.ErrExist", err)
			}
			again, err := pki.LoadCA(dir)
			if err != nil || again.Fingerprint() != ca.Fingerprint() {
				t.Fatalf("the CA changed after a refused CreateCA (err %v)", err)
			}
		})
	}
}

// TestWriteFileExclusive checks that the file is written with its mode and
// never replaced.
func TestWriteFileExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := pki.WriteFileExclusive(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileExclusive(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: err = %v, want fs.ErrExist", err)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != "one" || st.Mode().Perm() != 0o600 {
		t.Fatalf("file %q mode %v, want \"one\" 0600", b, st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("the directory holds %d entries, want the file alone (no temporary left)", len(entries))
	}
}
