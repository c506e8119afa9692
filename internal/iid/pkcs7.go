package iid

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // AWS signs the pkcs7 variant with DSA; verifying it needs this package
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the pkcs7 and signature variants use SHA-1; AWS chose it, not Firebreak
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Object identifiers of the PKCS#7 (RFC 2315) structures and algorithms used.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSASHA1       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidRSASHA256     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidDSA           = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidDSASHA1       = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 3}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	ContentInfo      contentInfo
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type signerInfo struct {
	Version                   int
	IssuerAndSerial           issuerAndSerial
	DigestAlgorithm           pkix.AlgorithmIdentifier
	AuthenticatedAttributes   asn1.RawValue `asn1:"optional,tag:0"`
	DigestEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedDigest           []byte
	UnauthenticatedAttributes asn1.RawValue `asn1:"optional,tag:1"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

// SignedData is a parsed PKCS#7 signature: its content, when it carries
// one, and its one signer. Certificates the signature itself carries are
// never trusted and are not kept.
type SignedData struct {
	// Content is the signed content (the identity document), or nil for a
	// detached signature.
	Content []byte
	signer  signerInfo
}

// maxSignatureBytes bounds a PKCS#7 signature; AWS's are about 1.5 KiB.
const maxSignatureBytes = 64 << 10

// ParsePKCS7 parses a PKCS#7 SignedData value in BER or DER. It accepts
// exactly one signer, which is what AWS produces.
func ParsePKCS7(ber []byte) (*SignedData, error) {
	if len(ber) > maxSignatureBytes {
		return nil, fmt.Errorf("the signature is %d bytes; the limit is %d", len(ber), maxSignatureBytes)
	}
	der, err := berToDER(ber)
	if err != nil {
		return nil, fmt.Errorf("the signature is not valid ASN.1: %w", err)
	}
	var ci contentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, fmt.Errorf("the signature is not a PKCS#7 ContentInfo: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("the signature has trailing data after its ContentInfo")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("the signature's content type is %v, not PKCS#7 signed data", ci.ContentType)
	}
	var sd signedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("the signature's SignedData is malformed: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("the signature has trailing data after its SignedData")
	}
	if len(sd.SignerInfos) != 1 {
		return nil, fmt.Errorf("the signature has %d signers; exactly one is accepted", len(sd.SignerInfos))
	}
	if !sd.ContentInfo.ContentType.Equal(oidData) {
		return nil, fmt.Errorf("the signed content type is %v, not data", sd.ContentInfo.ContentType)
	}
	out := &SignedData{signer: sd.SignerInfos[0]}
	if len(sd.ContentInfo.Content.Bytes) > 0 {
		var content []byte
		if rest, err := asn1.Unmarshal(sd.ContentInfo.Content.Bytes, &content); err != nil {
			return nil, fmt.Errorf("the signed content is not an OCTET STRING: %w", err)
		} else if len(rest) > 0 {
			return nil, errors.New("the signed content has trailing data")
		}
		out.Content = content
	}
	return out, nil
}

// SignedBy reports whether the signer names cert (issuer and serial).
func (s *SignedData) SignedBy(cert *x509.Certificate) bool {
	return bytes.Equal(s.signer.IssuerAndSerial.Issuer.FullBytes, cert.RawIssuer) &&
		s.signer.IssuerAndSerial.Serial != nil && s.signer.IssuerAndSerial.Serial.Cmp(cert.SerialNumber) == 0
}

// Verify checks that cert signed content. content is s.Content for an
// attached signature, or the document for a detached one.
func (s *SignedData) Verify(content []byte, cert *x509.Certificate) error {
	si := s.signer
	h, err := hashOf(si.DigestAlgorithm.Algorithm)
	if err != nil {
		return err
	}
	digest := digestOf(h, content)
	signed := digest
	if len(si.AuthenticatedAttributes.FullBytes) > 0 {
		// With authenticated attributes the signature covers them, and
		// they carry the content's digest (RFC 2315 9.3).
		got, err := attributeDigest(si.AuthenticatedAttributes.Bytes)
		if err != nil {
			return err
		}
		// Security-critical: the signed digest must be the document's,
		// or any signed attributes would vouch for any content.
		if !bytes.Equal(got, digest) {
			return errors.New("the signature's message digest does not match the document")
		}
		attrs := slices.Clone(si.AuthenticatedAttributes.FullBytes)
		// The signature covers the attributes as a DER SET OF, not with
		// their IMPLICIT [0] tag.
		attrs[0] = 0x31
		signed = digestOf(h, attrs)
	}
	return verifyDigest(cert.PublicKey, si.DigestEncryptionAlgorithm.Algorithm, h, signed, si.EncryptedDigest)
}

// attributeDigest returns the messageDigest attribute's value.
func attributeDigest(set []byte) ([]byte, error) {
	var digest []byte
	for len(set) > 0 {
		var a attribute
		var err error
		if set, err = asn1.Unmarshal(set, &a); err != nil {
			return nil, fmt.Errorf("the signature's signed attributes are malformed: %w", err)
		}
		if !a.Type.Equal(oidMessageDigest) {
			continue
		}
		if digest != nil {
			return nil, errors.New("the signature has two message digest attributes")
		}
		if rest, err := asn1.Unmarshal(a.Values.Bytes, &digest); err != nil || len(rest) > 0 {
			return nil, errors.New("the signature's message digest attribute is malformed")
		}
	}
	if digest == nil {
		return nil, errors.New("the signature's signed attributes have no message digest")
	}
	return digest, nil
}

func hashOf(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA1):
		return crypto.SHA1, nil
	}
	return 0, fmt.Errorf("the signature's digest algorithm %v is not supported (SHA-256 and SHA-1 are)", oid)
}

func digestOf(h crypto.Hash, b []byte) []byte {
	if h == crypto.SHA1 {
		sum := sha1.Sum(b) //nolint:gosec // see the import
		return sum[:]
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// verifyDigest checks a raw signature over a digest with an RSA or DSA key.
func verifyDigest(pub any, alg asn1.ObjectIdentifier, h crypto.Hash, digest, sig []byte) error {
	switch key := pub.(type) {
	case *rsa.PublicKey:
		if !alg.Equal(oidRSA) && !alg.Equal(oidRSASHA256) && !alg.Equal(oidRSASHA1) {
			return fmt.Errorf("the signature algorithm %v does not match the certificate's RSA key", alg)
		}
		if err := rsa.VerifyPKCS1v15(key, h, digest, sig); err != nil {
			return errors.New("the signature does not verify against the certificate")
		}
		return nil
	case *dsa.PublicKey:
		if !alg.Equal(oidDSA) && !alg.Equal(oidDSASHA1) {
			return fmt.Errorf("the signature algorithm %v does not match the certificate's DSA key", alg)
		}
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil {
			return errors.New("the DSA signature value is malformed")
		}
		if !dsa.Verify(key, digest, rs.R, rs.S) {
			return errors.New("the signature does not verify against the certificate")
		}
		return nil
	}
	return fmt.Errorf("the certificate's %T key is not supported (RSA and DSA are)", pub)
}

// SignPKCS7 signs content with key as AWS signs identity documents: PKCS#7
// signed data with the content attached, SHA-256, signed attributes
// (content type, signing time, message digest) and no certificates. The
// emulator uses it; cert must hold key's public half.
func SignPKCS7(content []byte, cert *x509.Certificate, key *rsa.PrivateKey, now time.Time) ([]byte, error) {
	digest := sha256.Sum256(content)
	var encoded [][]byte
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		val any
	}{{oidContentType, oidData}, {oidSigningTime, now.UTC()}, {oidMessageDigest, digest[:]}} {
		v, err := asn1.Marshal(a.val)
		if err != nil {
			return nil, err
		}
		b, err := asn1.Marshal(struct {
			Type   asn1.ObjectIdentifier
			Values asn1.RawValue
		}{a.oid, asn1.RawValue{FullBytes: encodeTLV([]byte{0x31}, v)}})
		if err != nil {
			return nil, err
		}
		encoded = append(encoded, b)
	}
	// DER orders a SET OF by encoding.
	slices.SortFunc(encoded, bytes.Compare)
	attrs := encodeTLV([]byte{0x31}, bytes.Join(encoded, nil))
	attrDigest := sha256.Sum256(attrs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, attrDigest[:])
	if err != nil {
		return nil, err
	}
	implicitAttrs := slices.Clone(attrs)
	implicitAttrs[0] = 0xa0
	octets, err := asn1.Marshal(content)
	if err != nil {
		return nil, err
	}
	sha := pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}
	sd := signedData{
		Version:          1,
		DigestAlgorithms: []pkix.AlgorithmIdentifier{sha},
		ContentInfo:      contentInfo{ContentType: oidData, Content: asn1.RawValue{FullBytes: encodeTLV([]byte{0xa0}, octets)}},
		SignerInfos: []signerInfo{{
			Version:                   1,
			IssuerAndSerial:           issuerAndSerial{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Serial: cert.SerialNumber},
			DigestAlgorithm:           sha,
			AuthenticatedAttributes:   asn1.RawValue{FullBytes: implicitAttrs},
			DigestEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSA, Parameters: asn1.NullRawValue},
			EncryptedDigest:           sig,
		}},
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{ContentType: oidSignedData, Content: asn1.RawValue{FullBytes: encodeTLV([]byte{0xa0}, inner)}})
}

// SignDocument makes the `signature` variant: a PKCS#1 v1.5 RSA signature
// over the document's SHA-256 digest, as the emulator serves it.
func SignDocument(content []byte, key *rsa.PrivateKey) ([]byte, error) {
	digest := sha256.Sum256(content)
	return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
}
