package iid

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Authority is a signing key and its self-signed certificate: the
// emulator's stand-in for AWS's regional identity-document key.
type Authority struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// NewAuthority makes an RSA-2048 key and a self-signed certificate named cn.
func NewAuthority(cn string, now time.Time) (*Authority, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Firebreak AWS emulator"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// CertificatePEM returns the certificate as PEM, for --iid-cert-file.
func (a *Authority) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw})
}

// Signed is a document with its signatures in the forms IMDS serves.
type Signed struct {
	Document []byte
	// RSA2048 and PKCS7 are base64 PKCS#7 signed data with 64-column lines,
	// as IMDS serves them; Signature is base64 of the bare signature.
	RSA2048, PKCS7, Signature string
}

// Sign encodes d as IMDS does and signs it in every variant. The pkcs7
// variant is signed with the same RSA key as rsa2048: AWS uses DSA there,
// which Go can verify but no longer generates keys for.
func (a *Authority) Sign(d *Document, now time.Time) (*Signed, error) {
	doc, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	p7, err := SignPKCS7(doc, a.Cert, a.Key, now)
	if err != nil {
		return nil, fmt.Errorf("sign the identity document: %w", err)
	}
	bare, err := SignDocument(doc, a.Key)
	if err != nil {
		return nil, err
	}
	wrapped := wrap64(p7)
	return &Signed{Document: doc, RSA2048: wrapped, PKCS7: wrapped, Signature: wrap64(bare)}, nil
}

// wrap64 is base64 in 64-column lines, without PEM armour.
func wrap64(b []byte) string {
	block := pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: b})
	s := string(block)
	start := len("-----BEGIN X-----\n")
	end := len(s) - len("-----END X-----\n")
	return s[start : end-1]
}
