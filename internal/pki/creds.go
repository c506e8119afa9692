package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Creds is an operator's credential file: a client certificate, its key and
// the controller CA. It is written with mode 0600 and must be kept secret.
type Creds struct {
	// Name is the operator's name.
	Name string `json:"name"`
	// Role is the operator's role when the credential was issued.
	Role string `json:"role"`
	// Controller is the controller address the credential was issued by,
	// used when --controller is not given.
	Controller string `json:"controller,omitempty"`
	// CAPEM is the controller CA certificate.
	CAPEM string `json:"ca_pem"`
	// CertPEM is the operator's certificate.
	CertPEM string `json:"cert_pem"`
	// KeyPEM is the operator's private key.
	KeyPEM string `json:"key_pem"`
}

// LoadCreds reads a credential file, refusing one readable by others.
func LoadCreds(path string) (*Creds, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading credentials: %w", err)
	}
	// Security-critical: a credential readable by other users is a leaked
	// credential; refuse it rather than use it.
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credentials file %s is readable by other users (mode %v): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading credentials: %w", err)
	}
	var c Creds
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("credentials file %s is not valid JSON: %w", path, err)
	}
	if c.CAPEM == "" || c.CertPEM == "" || c.KeyPEM == "" {
		return nil, fmt.Errorf("credentials file %s lacks the CA, certificate or key", path)
	}
	return &c, nil
}

// Save writes the credential file with mode 0600.
func (c *Creds) Save(path string) error { return c.save(path, WriteFileAtomic) }

// SaveNew writes the credential file with mode 0600, refusing (with an
// error wrapping fs.ErrExist) to replace a file already at path.
func (c *Creds) SaveNew(path string) error { return c.save(path, WriteFileExclusive) }

func (c *Creds) save(path string, write func(path string, data []byte, perm os.FileMode) error) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return write(path, append(b, '\n'), 0o600)
}

// TLS returns the client TLS configuration for these credentials.
func (c *Creds) TLS() (*tls.Config, error) {
	pair, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CAPEM)) {
		return nil, errors.New("credentials: the CA certificate does not parse")
	}
	return ClientTLS(pool, func() (*tls.Certificate, error) { return &pair, nil }), nil
}
