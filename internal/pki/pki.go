// Package pki holds Firebreak's certificate authority and the TLS settings of
// every connection: the controller serves TLS 1.3 and accepts client
// certificates that its own CA issued; agents and operators present those
// certificates, whose URI SAN binds the holder's identity.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ServerName is the DNS name in every controller certificate. Agents and
// operators verify it whatever address they dial, so a controller reached by
// IP, load balancer or tunnel still proves itself.
const ServerName = "firebreak-controller"

// Kind is the kind of certificate holder.
type Kind string

// Holder kinds.
const (
	KindAgent      Kind = "agent"
	KindOperator   Kind = "operator"
	KindController Kind = "controller"
)

// Identity is what a certificate says about its holder.
type Identity struct {
	// Kind is agent, operator or controller.
	Kind Kind
	// Name is the agent id or the operator name.
	Name string
	// Role is the agent role (host, worker); empty for operators.
	Role string
	// Account, Region and InstanceID bind an agent to where it runs.
	Account, Region, InstanceID string
	// Serial is the certificate's serial number in hex.
	Serial string
	// Fingerprint is the SHA-256 of the certificate, in hex.
	Fingerprint string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// URI returns the identity as the URI SAN Firebreak puts in certificates:
// firebreak://agent/ID?role=host&account=…, firebreak://operator/NAME.
func (id Identity) URI() *url.URL {
	u := &url.URL{Scheme: "firebreak", Host: string(id.Kind), Path: "/" + id.Name}
	q := url.Values{}
	for k, v := range map[string]string{"role": id.Role, "account": id.Account, "region": id.Region, "instance": id.InstanceID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u
}

// IdentityFromCert reads the holder's identity from a verified certificate.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme != "firebreak" {
			continue
		}
		id := Identity{
			Kind:       Kind(u.Host),
			Name:       strings.TrimPrefix(u.Path, "/"),
			Role:       u.Query().Get("role"),
			Account:    u.Query().Get("account"),
			Region:     u.Query().Get("region"),
			InstanceID: u.Query().Get("instance"),
			Serial:     c.SerialNumber.Text(16),
			NotAfter:   c.NotAfter,
		}
		sum := sha256.Sum256(c.Raw)
		id.Fingerprint = hex.EncodeToString(sum[:])
		switch id.Kind {
		case KindAgent, KindOperator, KindController:
		default:
			return Identity{}, fmt.Errorf("certificate names an unknown holder kind %q", id.Kind)
		}
		if id.Name == "" {
			return Identity{}, errors.New("certificate identity has no name")
		}
		return id, nil
	}
	return Identity{}, errors.New("certificate carries no Firebreak identity")
}

// CA is the controller's certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	key  crypto.Signer
	// Now is the clock; tests inject it.
	Now func() time.Time
}

// File names inside the controller's data directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// LoadOrCreateCA loads the CA from dir, creating it on first start.
func LoadOrCreateCA(dir string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return LoadCA(dir)
	}
	return createCA(dir, WriteFileAtomic)
}

// LoadCA loads the CA certificate and key from dir, never creating them. A
// missing file is an error wrapping fs.ErrNotExist.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	// Security-critical: a key that is not the certificate's would sign
	// certificates no one verifies; a mismatched pair is refused at once.
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of the CA certificate %s", keyPath, certPath)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	return &CA{Cert: cert, key: key, Now: time.Now}, nil
}

// CreateCA creates a new CA in dir, both files mode 0600. It refuses, with
// an error wrapping fs.ErrExist, to replace a CA file already there.
func CreateCA(dir string) (*CA, error) { return createCA(dir, WriteFileExclusive) }

// createCA generates the CA and writes it with write, the key first.
func createCA(dir string, write func(path string, data []byte, perm os.FileMode) error) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Firebreak controller CA", Organization: []string{"Firebreak"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	if err := write(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(dir, CACertFile), EncodeCertPEM(der), 0o600); err != nil {
		// A key without its certificate would make the next start load
		// nothing; it goes too.
		_ = os.Remove(keyPath)
		return nil, err
	}
	return &CA{Cert: cert, key: key, Now: time.Now}, nil
}

// Fingerprint is the SHA-256 of the CA certificate's DER, in hex: what
// operators compare and what a cluster's store records.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueClient signs a client certificate for id over the public key of a
// verified CSR, valid for ttl.
func (ca *CA) IssueClient(csrDER []byte, id Identity, ttl time.Duration) (*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate request: %w", err)
	}
	// Security-critical: the CSR must be signed by the key it carries, so a
	// caller cannot get a certificate for a key it does not hold.
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate request's signature does not verify: %w", err)
	}
	return ca.issue(csr.PublicKey, id, ttl, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
}

// IssueClientForKey signs a client certificate for a public key the
// controller itself generated (operator credentials).
func (ca *CA) IssueClientForKey(pub crypto.PublicKey, id Identity, ttl time.Duration) (*x509.Certificate, error) {
	return ca.issue(pub, id, ttl, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
}

// IssueServer signs the controller's serving certificate.
func (ca *CA) IssueServer(pub crypto.PublicKey, hosts []string, ttl time.Duration) (*x509.Certificate, error) {
	dns := []string{ServerName, "localhost"}
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	return ca.issue(pub, Identity{Kind: KindController, Name: "controller"}, ttl,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, dns, ips)
}

func (ca *CA) issue(pub crypto.PublicKey, id Identity, ttl time.Duration, eku []x509.ExtKeyUsage, dns []string, ips []net.IP) (*x509.Certificate, error) {
	now := ca.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: id.Name, OrganizationalUnit: []string{string(id.Kind)}, Organization: []string{"Firebreak"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		URIs:         []*url.URL{id.URI()},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// NewKey generates a P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// NewCSR makes a certificate request for key.
func NewCSR(key crypto.Signer, commonName string) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
}

// EncodeCertPEM encodes a DER certificate as PEM.
func EncodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// EncodeKeyPEM encodes a private key as PKCS#8 PEM.
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertPEM parses the first certificate in PEM data.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ParseKeyPEM parses a PKCS#8 PEM private key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key found")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// WriteFileAtomic writes data to path through a temporary file and rename,
// so a crash never leaves a half-written key or certificate.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return withTempFile(path, data, perm, func(tmp string) error { return os.Rename(tmp, path) })
}

// withTempFile writes data, synced and with mode perm, to a temporary file
// beside path, hands its name to place (which moves it into place), and
// removes whatever is left of it.
func withTempFile(path string, data []byte, perm os.FileMode, place func(tmp string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return place(tmp.Name())
}

// WriteFileExclusive writes data to path, refusing (with an error wrapping
// fs.ErrExist) when path already exists. It writes a temporary file and
// links it into place, so the file appears whole or not at all, and two
// writers racing for one path cannot both win.
func WriteFileExclusive(path string, data []byte, perm os.FileMode) error {
	return withTempFile(path, data, perm, func(tmp string) error { return linkExclusive(tmp, path) })
}

// linkExclusive links tmp to path, refusing an existing path.
func linkExclusive(tmp, path string) error {
	if err := os.Link(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) && errors.Is(le.Err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: %w", path, fs.ErrExist)
		}
		return err
	}
	return nil
}

// ServerTLS is the controller's TLS configuration: TLS 1.3 only, client
// certificates verified against the CA when given. Enroll is the only RPC
// that accepts a connection without one; every other RPC checks the peer's
// identity itself.
func ServerTLS(ca *CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2"},
	}
}

// ClientTLS is the TLS configuration of agents and operators: TLS 1.3, the
// controller verified against the pinned CA by ServerName, and the holder's
// certificate, fetched per handshake so renewals take effect.
func ClientTLS(caPool *x509.CertPool, getCert func() (*tls.Certificate, error)) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    caPool,
		ServerName: ServerName,
		NextProtos: []string{"h2"},
	}
	if getCert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return getCert() }
	}
	return cfg
}
