package iid

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// awsCerts holds AWS's published public certificates for identity
// documents, one PEM file per region named REGION.pem (docs/attestation.md
// says where they come from and how to update them).
//
//go:embed awscerts
var awsCerts embed.FS

// Certificates are the certificates documents are verified against: AWS's
// per region, and extra ones (--iid-cert-file, the emulator's) that any
// region may use.
type Certificates struct {
	byRegion map[string][]*x509.Certificate
	extra    []*x509.Certificate
}

// AWSCertificates returns the embedded AWS certificates.
func AWSCertificates() (*Certificates, error) {
	c := &Certificates{byRegion: map[string][]*x509.Certificate{}}
	entries, err := fs.ReadDir(awsCerts, "awscerts")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".pem") {
			continue
		}
		b, err := awsCerts.ReadFile(path.Join("awscerts", name))
		if err != nil {
			return nil, err
		}
		certs, err := ParseCertificatesPEM(b)
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", name, err)
		}
		region := strings.TrimSuffix(name, ".pem")
		c.byRegion[region] = append(c.byRegion[region], certs...)
	}
	return c, nil
}

// Add trusts certs for every region.
func (c *Certificates) Add(certs ...*x509.Certificate) { c.extra = append(c.extra, certs...) }

// Regions returns how many regions have an embedded certificate.
func (c *Certificates) Regions() int { return len(c.byRegion) }

// forRegion returns the certificates a document of region may be signed by.
func (c *Certificates) forRegion(region string) []*x509.Certificate {
	return append(append([]*x509.Certificate{}, c.byRegion[region]...), c.extra...)
}

// ParseCertificatesPEM parses every CERTIFICATE block of a PEM file.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate does not parse: %w", err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}
