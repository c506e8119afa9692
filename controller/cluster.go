package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/statedir"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// ClusterFile, in a --pki-dir, holds the cluster's public names: the
// address written into new credentials (the load balancer's) and the extra
// names of every controller's serving certificate. It is not secret.
const ClusterFile = "cluster.json"

// Keys of the store's meta table recording the identity of the cluster that
// owns the store: the SHA-256 of the CA certificate and of the task-signing
// public key, in hex.
const (
	MetaCASHA256         = "cluster.ca_sha256"
	MetaSigningKeySHA256 = "cluster.signing_key_sha256"
)

// DefaultAdminCertTTL is the lifetime of the admin credential that
// `controller init` writes.
const DefaultAdminCertTTL = 90 * 24 * time.Hour

// ErrPKIDirInitialised is returned by InitPKIDir for a directory that
// already holds a cluster identity (or part of one).
var ErrPKIDirInitialised = errors.New("the pki dir already holds a cluster identity")

// ErrInitUsage matches (errors.Is) InitPKIDir's refusal of its
// configuration: a bad --advertise, --server-name or lifetime, or no
// directory.
var ErrInitUsage = errors.New("invalid controller init configuration")

// usageError is a configuration refusal: its text is the cause's, and it
// matches ErrInitUsage.
type usageError struct{ err error }

func (e usageError) Error() string        { return e.err.Error() }
func (e usageError) Unwrap() error        { return e.err }
func (e usageError) Is(target error) bool { return target == ErrInitUsage }

// ClusterNames are the public names of a cluster, shared by its
// controllers through DIR/cluster.json.
type ClusterNames struct {
	// Advertise is the HOST:PORT written into new credentials: the load
	// balancer's address. Empty: each controller's own --advertise or
	// listen address.
	Advertise string `json:"advertise,omitempty"`
	// ServerNames are DNS names or IPs every controller's serving
	// certificate carries besides its own.
	ServerNames []string `json:"server_names,omitempty"`
}

// check validates the names, so no controller starts on a name its
// certificate cannot carry or a credential address no client can dial.
func (n ClusterNames) check() error {
	if n.Advertise != "" {
		host, port, err := net.SplitHostPort(n.Advertise)
		if err != nil {
			return fmt.Errorf("--advertise %q is not HOST:PORT: %w", n.Advertise, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("--advertise %q: the port must be a number from 1 to 65535", n.Advertise)
		}
		if err := checkServerName(host); err != nil {
			return fmt.Errorf("--advertise %q: %w", n.Advertise, err)
		}
	}
	for _, name := range n.ServerNames {
		if err := checkServerName(name); err != nil {
			return fmt.Errorf("--server-name %q: %w", name, err)
		}
	}
	return nil
}

// dnsName is a DNS name a certificate may carry: dot-separated labels of
// letters, digits and inner hyphens.
var dnsName = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func checkServerName(name string) error {
	if net.ParseIP(name) != nil {
		return nil
	}
	if len(name) > 253 || !dnsName.MatchString(name) {
		return errors.New("not a DNS name or IP address")
	}
	return nil
}

// PKIInit configures InitPKIDir.
type PKIInit struct {
	// Dir is the directory to create the cluster identity in; it is
	// created 0700 when absent.
	Dir string
	// Names are the cluster's public names, written to DIR/cluster.json;
	// Names.Advertise is also the admin credential's controller address.
	Names ClusterNames
	// AdminCertTTL is the admin credential's lifetime
	// (DefaultAdminCertTTL when zero).
	AdminCertTTL time.Duration
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults checks the configuration and sets defaults.
func (c *PKIInit) CheckAndSetDefaults() error {
	if c.Dir == "" {
		return errors.New("controller init: --pki-dir is required")
	}
	if c.AdminCertTTL == 0 {
		c.AdminCertTTL = DefaultAdminCertTTL
	}
	if c.AdminCertTTL < 0 {
		return fmt.Errorf("controller init: the admin credential's lifetime %v is negative", c.AdminCertTTL)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c.Names.check()
}

// PKIDirSummary is what InitPKIDir created.
type PKIDirSummary struct {
	// Dir is the pki dir, absolute.
	Dir string `json:"pki_dir"`
	// Files are the files created, absolute.
	Files []string `json:"files"`
	// CASHA256 is the SHA-256 of the CA certificate's DER, in hex.
	CASHA256 string `json:"ca_sha256"`
	// SigningKeySHA256 is the SHA-256 of the task-signing public key.
	SigningKeySHA256 string `json:"signing_key_sha256"`
	// Names are the cluster's public names.
	Names ClusterNames `json:"names"`
}

// pkiDirFiles are the files of a cluster identity, in creation order.
var pkiDirFiles = []string{pki.CAKeyFile, pki.CACertFile, SigningKeyFile, AdminCredsFile, ClusterFile}

// InitPKIDir creates a cluster's identity in cfg.Dir, once: the CA
// (ca.pem beside ca.key), the task-signing key, the first admin credential
// (admin.creds) and the cluster's names (cluster.json), each 0600 in a
// 0700 directory. It refuses, with ErrPKIDirInitialised, a directory that
// holds any of them, and on failure removes what it created.
func InitPKIDir(cfg PKIInit) (_ *PKIDirSummary, err error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, usageError{err}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("--pki-dir %s: %w", cfg.Dir, err)
	}
	// Security-critical: the directory holds the CA and task-signing keys;
	// it is created 0700, or an existing one tightened to it.
	if err := statedir.Prepare(dir); err != nil {
		return nil, err
	}
	var present []string
	for _, f := range pkiDirFiles {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			present = append(present, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("--pki-dir %s: %w", dir, err)
		}
	}
	if len(present) > 0 {
		return nil, fmt.Errorf("%w: %s holds %s. controller init creates a cluster's identity once: start the controllers with --pki-dir %s, or choose an empty directory for a new cluster",
			ErrPKIDirInitialised, dir, strings.Join(present, ", "), dir)
	}
	sum := &PKIDirSummary{Dir: dir, Names: cfg.Names}
	// Nothing half-made stays behind: a failure removes every file this
	// call created, so the directory can be initialised again.
	defer func() {
		if err != nil {
			for _, f := range sum.Files {
				_ = os.Remove(f)
			}
		}
	}()
	created := func(name string, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s appeared in %s while controller init ran (another init?)", ErrPKIDirInitialised, name, dir)
			}
			return fmt.Errorf("creating %s: %w", filepath.Join(dir, name), err)
		}
		sum.Files = append(sum.Files, filepath.Join(dir, name))
		return nil
	}
	ca, err := pki.CreateCA(dir)
	if err := created(pki.CAKeyFile, err); err != nil {
		return nil, err
	}
	sum.Files = append(sum.Files, filepath.Join(dir, pki.CACertFile))
	ca.Now = cfg.Clock
	signer, err := tasksign.CreateKey(filepath.Join(dir, SigningKeyFile))
	if err := created(SigningKeyFile, err); err != nil {
		return nil, err
	}
	creds, _, err := operator.IssueCreds(ca, "admin", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, cfg.AdminCertTTL, cfg.Names.Advertise)
	if err != nil {
		return nil, fmt.Errorf("issuing the admin credential: %w", err)
	}
	if err := created(AdminCredsFile, creds.SaveNew(filepath.Join(dir, AdminCredsFile))); err != nil {
		return nil, err
	}
	names, err := json.MarshalIndent(cfg.Names, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := created(ClusterFile, pki.WriteFileExclusive(filepath.Join(dir, ClusterFile), append(names, '\n'), 0o600)); err != nil {
		return nil, err
	}
	sum.CASHA256, sum.SigningKeySHA256 = ca.Fingerprint(), signer.Fingerprint()
	return sum, nil
}

// clusterPKI is a cluster identity loaded from a --pki-dir.
type clusterPKI struct {
	ca     *pki.CA
	signer *tasksign.Signer
	names  ClusterNames
}

// loadPKIDir loads the CA, the task-signing key and the cluster's names
// from a --pki-dir, read-only: nothing there is created or changed.
func loadPKIDir(dir string) (*clusterPKI, error) {
	notInit := func(what string) error {
		return fmt.Errorf("--pki-dir %s holds no %s: run `firebreak controller init --pki-dir DIR` once for the cluster and start every controller with that directory (or mount the cluster's identity at %s)",
			dir, what, dir)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, notInit("directory")
	}
	// Security-critical: the CA and task-signing keys are used only from
	// a directory and files no other user can read or replace.
	for _, p := range []string{dir, filepath.Join(dir, pki.CAKeyFile), filepath.Join(dir, SigningKeyFile)} {
		if err := statedir.CheckPrivate(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, notInit(filepath.Base(p))
			}
			return nil, fmt.Errorf("--pki-dir: %w", err)
		}
	}
	ca, err := pki.LoadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notInit(pki.CACertFile)
	}
	if err != nil {
		return nil, fmt.Errorf("--pki-dir: loading the CA: %w", err)
	}
	signer, err := tasksign.LoadKey(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return nil, fmt.Errorf("--pki-dir: %w", err)
	}
	cp := &clusterPKI{ca: ca, signer: signer}
	// cluster.json is optional: a pki dir assembled by hand from a
	// single-node data dir has none.
	b, err := os.ReadFile(filepath.Join(dir, ClusterFile)) //nolint:gosec // G304: a file of the operator's --pki-dir
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("--pki-dir: %w", err)
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cp.names); err != nil {
			return nil, fmt.Errorf("--pki-dir: %s is not valid: %w", filepath.Join(dir, ClusterFile), err)
		}
		if err := cp.names.check(); err != nil {
			return nil, fmt.Errorf("--pki-dir: %s: %w", filepath.Join(dir, ClusterFile), err)
		}
	}
	return cp, nil
}

// checkDataDirCA refuses a data dir that a single-node controller made with
// its own CA when the controller now starts with a --pki-dir holding
// another: that data dir's agents and operators trust the old CA only.
func checkDataDirCA(dataDir string, ca *pki.CA) error {
	b, err := os.ReadFile(filepath.Join(dataDir, pki.CACertFile)) //nolint:gosec // G304: a file of the operator's --data-dir
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the data dir: %w", err)
	}
	old, err := pki.ParseCertPEM(b)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dataDir, pki.CACertFile), err)
	}
	if old.Equal(ca.Cert) {
		return nil
	}
	oldCA := &pki.CA{Cert: old}
	// Security-critical: serving this data dir with another CA would strand
	// its agents and make its records a different cluster's.
	return fmt.Errorf("the data dir %s holds its own CA (sha256 %s), not the --pki-dir's (sha256 %s): to move a single-node controller into a cluster, copy its %s, %s, %s and %s into the pki dir instead of running controller init",
		dataDir, oldCA.Fingerprint(), ca.Fingerprint(), pki.CACertFile, pki.CAKeyFile, SigningKeyFile, AdminCredsFile)
}

// clusterMeta is the part of the store the identity check reads and
// writes.
type clusterMeta interface {
	GetMeta(ctx context.Context, key string) (string, error)
	SetMetaIfAbsent(ctx context.Context, key, value string) (string, error)
}

// IdentityMismatchError is why a controller refuses to start: its CA or
// task-signing key is not the one the store's cluster recorded.
type IdentityMismatchError struct {
	// Mismatches are the differing parts: what, this controller's
	// fingerprint and the recorded one.
	Mismatches []IdentityMismatch
}

// IdentityMismatch is one differing part of a cluster identity.
type IdentityMismatch struct {
	// What is "CA" or "task-signing key".
	What string
	// Local is this controller's SHA-256, in hex.
	Local string
	// Recorded is the SHA-256 the store recorded, in hex.
	Recorded string
}

func (e *IdentityMismatchError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = fmt.Sprintf("its %s has sha256 %s, the cluster's recorded in the store has sha256 %s", m.What, m.Local, m.Recorded)
	}
	return "this controller's identity is not the cluster's: " + strings.Join(parts, "; ") +
		". Its --pki-dir (or, without one, its --data-dir) most likely belongs to another cluster: start every controller of a cluster with the same --pki-dir, the one whose `controller init` printed the recorded ca_sha256"
}

// checkClusterIdentity compares this controller's CA and task-signing key
// fingerprints with those the store recorded, and records them on the
// store's first start (or on the first start of a version that records
// them). A mismatch is an *IdentityMismatchError and records nothing.
func checkClusterIdentity(ctx context.Context, st clusterMeta, caSHA, keySHA string) error {
	want := []struct{ key, what, local string }{
		{MetaCASHA256, "CA", caSHA},
		{MetaSigningKeySHA256, "task-signing key", keySHA},
	}
	var mismatch IdentityMismatchError
	var unrecorded []int
	for i, w := range want {
		v, err := st.GetMeta(ctx, w.key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			unrecorded = append(unrecorded, i)
		case err != nil:
			return fmt.Errorf("reading the cluster's identity from the store: %w", err)
		case v != w.local:
			mismatch.Mismatches = append(mismatch.Mismatches, IdentityMismatch{What: w.what, Local: w.local, Recorded: v})
		}
	}
	// Security-critical: a controller with another CA or task-signing key
	// would accept agents and operators no other controller of the
	// cluster accepts, and sign tasks its agents refuse.
	if len(mismatch.Mismatches) > 0 {
		return &mismatch
	}
	if len(unrecorded) == 0 {
		return nil
	}
	// Each part is recorded only where none is: of two first starts racing
	// with different identities on one store, the second learns the
	// first's record here and is refused.
	for _, i := range unrecorded {
		w := want[i]
		v, err := st.SetMetaIfAbsent(ctx, w.key, w.local)
		if err != nil {
			return fmt.Errorf("recording the cluster's identity in the store: %w", err)
		}
		if v != w.local {
			mismatch.Mismatches = append(mismatch.Mismatches, IdentityMismatch{What: w.what, Local: w.local, Recorded: v})
		}
	}
	if len(mismatch.Mismatches) > 0 {
		return &mismatch
	}
	return nil
}

// registerClusterAdmin creates the admin operator from the --pki-dir's
// admin.creds, so the one admin credential works against every controller
// of the cluster.
func (c *Controller) registerClusterAdmin(ctx context.Context) error {
	path := filepath.Join(c.cfg.PKIDir, AdminCredsFile)
	creds, err := pki.LoadCreds(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the store has no admin operator and --pki-dir %s holds no %s: mount the cluster's whole identity (controller init wrote it)", c.cfg.PKIDir, AdminCredsFile)
	}
	if err != nil {
		return fmt.Errorf("--pki-dir: %w", err)
	}
	cert, err := pki.ParseCertPEM([]byte(creds.CertPEM))
	if err != nil {
		return fmt.Errorf("--pki-dir: %s: %w", path, err)
	}
	// Security-critical: only a credential this cluster's CA issued, to an
	// operator named admin, becomes the admin operator.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.CA.Pool(), CurrentTime: c.cfg.Clock(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("--pki-dir: %s was not issued by the pki dir's CA or has expired: %w", path, err)
	}
	id, err := pki.IdentityFromCert(cert)
	if err != nil {
		return fmt.Errorf("--pki-dir: %s: %w", path, err)
	}
	if id.Kind != pki.KindOperator || id.Name != "admin" {
		return fmt.Errorf("--pki-dir: %s is a credential for %s %q, not for the operator admin", path, id.Kind, id.Name)
	}
	if err := c.Store.PutOperator(ctx, &store.Operator{Name: "admin", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, CertSerial: id.Serial,
		CreatedBy: "system", CreatedAt: c.cfg.Clock()}); err != nil {
		return err
	}
	c.Audit(ctx, "system", "operator.add", "admin", map[string]string{"role": "admin", "cert_serial": id.Serial, "file": path})
	c.cfg.Logger.Info("registered the cluster's admin credential", "file", path, "cert_serial", id.Serial)
	return nil
}
