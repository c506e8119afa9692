package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// lbName is the load balancer's name in the cluster tests: never resolved,
// only verified in the controllers' serving certificates.
const lbName = "lb.firebreak.test"

// initJSON is the `controller init --json` output.
type initJSON struct {
	Dir              string   `json:"pki_dir"`
	Files            []string `json:"files"`
	CASHA256         string   `json:"ca_sha256"`
	SigningKeySHA256 string   `json:"signing_key_sha256"`
}

// firebreak runs the firebreak binary without credentials and returns its
// output and exit code.
func firebreak(t *testing.T, b *e2e.Bins, args ...string) e2e.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Firebreak, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := e2e.Result{Stdout: so.String(), Stderr: se.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("firebreak %v: %v", args, err)
	}
	return r
}

// initCluster runs `controller init` and returns its JSON output.
func initCluster(t *testing.T, b *e2e.Bins, dir string) initJSON {
	t.Helper()
	r := firebreak(t, b, "controller", "init", "--pki-dir", dir, "--advertise", lbName+":7443", "--server-name", lbName, "--json")
	if r.Exit != 0 {
		t.Fatalf("controller init: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	var out initJSON
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("controller init --json: %v\n%s", err, r.Stdout)
	}
	return out
}

// startClusterController starts a controller of a cluster: its own data dir
// (SQLite), the cluster's --pki-dir, and the admin credential from there.
func startClusterController(t *testing.T, b *e2e.Bins, name, dataDir, pkiDir string, extra ...string) *e2e.Controller {
	t.Helper()
	c := &e2e.Controller{Bins: b, DataDir: dataDir, Creds: filepath.Join(pkiDir, "admin.creds")}
	c.Proc = &e2e.Proc{Name: name, LogPath: filepath.Join(filepath.Dir(dataDir), name+".log"),
		Args: append([]string{b.Firebreak, "controller", "--data-dir", dataDir, "--pki-dir", pkiDir, "--listen", "127.0.0.1:0"}, extra...)}
	_ = os.Remove(filepath.Join(dataDir, "controller.addr"))
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
	return c
}

// verifyServingName checks that the controller at addr presents a
// certificate of the cluster's CA for name.
func verifyServingName(t *testing.T, addr, caFile, name string) {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem does not parse")
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("the controller at %s does not prove the name %s with the cluster's CA: %v", addr, name, err)
	}
	conn.Close()
}

// TestClusterIdentity: `controller init` creates one identity, once; two
// controllers with their own data dirs started on it both accept its
// admin credential and serve certificates for the load balancer's name and
// their own; a controller restarted on another cluster's pki dir is
// refused, naming both CA fingerprints, and starts again on its own.
func TestClusterIdentity(t *testing.T) {
	b := e2e.Build(t)
	root := t.TempDir()
	pkiDir := filepath.Join(root, "pki")
	cluster := initCluster(t, b, pkiDir)

	t.Run("init wrote the identity privately and printed the CA's fingerprint", func(t *testing.T) {
		for _, f := range []string{"ca.pem", "ca.key", "task-signing.key", "admin.creds", "cluster.json"} {
			st, err := os.Stat(filepath.Join(pkiDir, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
		}
		if st, _ := os.Stat(pkiDir); st.Mode().Perm() != 0o700 {
			t.Errorf("the pki dir has mode %v, want 0700", st.Mode().Perm())
		}
		if len(cluster.Files) != 5 {
			t.Errorf("init listed %v, want the five files", cluster.Files)
		}
		caPEM, _ := os.ReadFile(filepath.Join(pkiDir, "ca.pem"))
		cert, err := pki.ParseCertPEM(caPEM)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.Raw)
		if got := hex.EncodeToString(sum[:]); cluster.CASHA256 != got {
			t.Errorf("init printed ca_sha256 %s; the certificate's is %s", cluster.CASHA256, got)
		}
	})

	t.Run("a second init is refused and changes nothing", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(pkiDir, "ca.key"))
		r := firebreak(t, b, "controller", "init", "--pki-dir", pkiDir)
		if r.Exit != 2 || !strings.Contains(r.Stderr, "already holds a cluster identity") {
			t.Fatalf("second init: exit %d, stderr %q; want exit 2 and the refusal", r.Exit, r.Stderr)
		}
		if after, _ := os.ReadFile(filepath.Join(pkiDir, "ca.key")); !bytes.Equal(before, after) {
			t.Fatal("the refused init changed ca.key")
		}
	})

	t.Run("a controller on a pki dir without an identity is refused", func(t *testing.T) {
		empty := filepath.Join(root, "empty-pki")
		if err := os.Mkdir(empty, 0o700); err != nil {
			t.Fatal(err)
		}
		r := firebreak(t, b, "controller", "--data-dir", filepath.Join(root, "data-x"), "--pki-dir", empty, "--listen", "127.0.0.1:0")
		if r.Exit == 0 || !strings.Contains(r.Stderr, "holds no ca.key: run `firebreak controller init --pki-dir DIR`") {
			t.Fatalf("exit %d, stderr %q; want the refusal saying to run controller init", r.Exit, r.Stderr)
		}
	})

	dataA, dataB := filepath.Join(root, "data-a"), filepath.Join(root, "data-b")
	a := startClusterController(t, b, "controller-a", dataA, pkiDir, "--server-name", "controller-a.firebreak.test")
	ctlB := startClusterController(t, b, "controller-b", dataB, pkiDir, "--server-name", "controller-b.firebreak.test")
	caFile := filepath.Join(pkiDir, "ca.pem")

	t.Run("the admin credential works against both controllers", func(t *testing.T) {
		for _, c := range []*e2e.Controller{a, ctlB} {
			var who struct {
				Name string `json:"name"`
				Role string `json:"role"`
			}
			c.MustJSON(t, &who, 0, "whoami")
			if who.Name != "admin" || who.Role != "admin" {
				t.Errorf("%s: whoami says %+v, want admin", c.Name, who)
			}
			c.MustJSON(t, nil, 0, "agents", "list")
		}
	})

	t.Run("the serving certificates verify for the load balancer's and their own names", func(t *testing.T) {
		verifyServingName(t, a.Addr, caFile, lbName)
		verifyServingName(t, ctlB.Addr, caFile, lbName)
		verifyServingName(t, a.Addr, caFile, "controller-a.firebreak.test")
		verifyServingName(t, ctlB.Addr, caFile, "controller-b.firebreak.test")
	})

	t.Run("credentials issued by any controller name the load balancer", func(t *testing.T) {
		out := filepath.Join(root, "bob.creds")
		if r := ctlB.CLI(t, "operator", "add", "bob", "--role", "viewer", "-o", out); r.Exit != 0 {
			t.Fatalf("operator add: exit %d: %s", r.Exit, r.Stderr)
		}
		creds, err := pki.LoadCreds(out)
		if err != nil {
			t.Fatal(err)
		}
		if creds.Controller != lbName+":7443" {
			t.Fatalf("bob's credential names %q, want the load balancer %s:7443", creds.Controller, lbName)
		}
	})

	t.Run("a restart on another cluster's pki dir is refused", func(t *testing.T) {
		if err := a.Stop(); err != nil {
			t.Logf("controller-a exit: %v", err)
		}
		other := initCluster(t, b, filepath.Join(root, "other-pki"))
		r := firebreak(t, b, "controller", "--data-dir", dataA, "--pki-dir", other.Dir, "--listen", "127.0.0.1:0")
		if r.Exit == 0 {
			t.Fatal("the controller started on another cluster's pki dir")
		}
		for _, want := range []string{"this controller's identity is not the cluster's",
			"its CA has sha256 " + other.CASHA256 + ", the cluster's recorded in the store has sha256 " + cluster.CASHA256,
			"its task-signing key has sha256 " + other.SigningKeySHA256, "belongs to another cluster"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr %q does not say %q", r.Stderr, want)
			}
		}
		// The refusal recorded nothing: the controller starts again on its
		// own cluster's identity.
		again := startClusterController(t, b, "controller-a-again", dataA, pkiDir)
		again.MustJSON(t, nil, 0, "agents", "list")
	})
}
