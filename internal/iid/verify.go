package iid

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Variant names a signature IMDS serves beside the document.
type Variant string

// The variants, named as IMDS's paths under /latest/dynamic/instance-identity/.
const (
	// RSA2048 is PKCS#7 signed data (SHA-256, RSA-2048) carrying the
	// document; enrollment uses it.
	RSA2048 Variant = "rsa2048"
	// PKCS7 is PKCS#7 signed data carrying the document, signed by AWS
	// with DSA (SHA-1).
	PKCS7 Variant = "pkcs7"
	// Signature is a bare RSA signature over the document.
	Signature Variant = "signature"
)

// ParseVariant checks a variant name.
func ParseVariant(s string) (Variant, error) {
	switch v := Variant(s); v {
	case RSA2048, PKCS7, Signature:
		return v, nil
	}
	return "", fmt.Errorf("signature variant %q is not one of rsa2048, pkcs7, signature", s)
}

// ErrSignature marks a refusal because the signature does not verify, as
// against a malformed input.
var ErrSignature = errors.New("the identity document's signature is not valid")

// Verify checks the signature over a document and returns the parsed
// document. document may be nil for the PKCS#7 variants, which carry it;
// when given, it must be byte-identical to the signed one. Only the
// certificates in certs are trusted, never one a signature carries. It
// checks neither freshness nor reuse: enrollment does that.
func Verify(certs *Certificates, variant Variant, document, signature []byte) (*Document, error) {
	raw, err := DecodeSignature(signature)
	if err != nil {
		return nil, err
	}
	switch variant {
	case RSA2048, PKCS7:
		sd, err := ParsePKCS7(raw)
		if err != nil {
			return nil, err
		}
		signed := sd.Content
		switch {
		case signed == nil && document == nil:
			return nil, errors.New("the signature is detached and no document was given")
		case signed == nil:
			signed = document
		case document != nil && !bytes.Equal(document, signed):
			// Security-critical: what is checked must be what was signed.
			return nil, errors.New("the given document is not byte-identical to the one the signature carries")
		}
		doc, err := ParseDocument(signed)
		if err != nil {
			return nil, err
		}
		var lastErr error
		for _, cert := range certs.forRegion(doc.Region) {
			if !sd.SignedBy(cert) {
				continue
			}
			if lastErr = sd.Verify(signed, cert); lastErr == nil {
				return doc, nil
			}
		}
		if lastErr != nil {
			return nil, fmt.Errorf("%w: %v", ErrSignature, lastErr)
		}
		return nil, fmt.Errorf("%w: no trusted certificate for %s matches its signer (another key signed it, or the region's certificate is missing)", ErrSignature, doc.Region)
	case Signature:
		if document == nil {
			return nil, errors.New("the signature variant needs the document")
		}
		doc, err := ParseDocument(document)
		if err != nil {
			return nil, err
		}
		for _, cert := range certs.forRegion(doc.Region) {
			if verifyBare(cert, document, raw) == nil {
				return doc, nil
			}
		}
		return nil, fmt.Errorf("%w: no trusted certificate for %s verifies it", ErrSignature, doc.Region)
	}
	return nil, fmt.Errorf("signature variant %q is not supported", variant)
}

// verifyBare checks a bare RSA signature: SHA-256, or SHA-1 as AWS's older
// certificates sign.
func verifyBare(cert *x509.Certificate, document, sig []byte) error {
	if err := cert.CheckSignature(x509.SHA256WithRSA, document, sig); err == nil {
		return nil
	}
	return cert.CheckSignature(x509.SHA1WithRSA, document, sig) //nolint:staticcheck // AWS's older variant
}

// DecodeSignature accepts a signature as IMDS serves it (base64 with line
// breaks), as a PEM block (openssl's "-----BEGIN PKCS7-----" form) or as
// raw DER.
func DecodeSignature(b []byte) ([]byte, error) {
	if len(b) > 2*maxSignatureBytes {
		return nil, fmt.Errorf("the signature is %d bytes; the limit is %d", len(b), 2*maxSignatureBytes)
	}
	if len(b) > 0 && b[0] == 0x30 {
		return b, nil
	}
	trimmed := bytes.TrimSpace(b)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, errors.New("the signature's PEM block does not parse")
		}
		return block.Bytes, nil
	}
	clean := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, string(trimmed))
	raw, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("the signature is neither base64, PEM nor DER: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("the signature is empty")
	}
	return raw, nil
}
