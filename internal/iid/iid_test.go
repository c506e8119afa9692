package iid

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testAuthOnce    sync.Once
	testAuth, other *Authority
	testAuthErr     error
	testNow         = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	testDocument    = &Document{AccountID: "210987654301", AvailabilityZone: "eu-west-1a", InstanceID: "i-0abc123def4567890",
		InstanceType: "t3.micro", PendingTime: testNow.Add(-time.Minute), Region: "eu-west-1", Version: "2017-09-30"}
)

func authorities(t testing.TB) (*Authority, *Authority) {
	t.Helper()
	testAuthOnce.Do(func() {
		if testAuth, testAuthErr = NewAuthority("test-a", testNow); testAuthErr == nil {
			other, testAuthErr = NewAuthority("test-b", testNow)
		}
	})
	if testAuthErr != nil {
		t.Fatal(testAuthErr)
	}
	return testAuth, other
}

func trusting(a *Authority) *Certificates {
	c := &Certificates{byRegion: map[string][]*x509.Certificate{}}
	c.Add(a.Cert)
	return c
}

// toBER re-encodes DER the way AWS serves it: every constructed value with
// an indefinite length, and OCTET STRINGs as constructed chunks.
func toBER(t *testing.T, der []byte) []byte {
	t.Helper()
	header, content := splitTLV(der)
	tag := header[0]
	switch {
	case tag == 0x04 && len(content) > 16:
		out := []byte{0x24, 0x80}
		for len(content) > 0 {
			n := min(16, len(content))
			out = append(out, encodeTLV([]byte{0x04}, content[:n])...)
			content = content[n:]
		}
		return append(out, 0, 0)
	case tag&0x20 == 0:
		return der
	}
	out := []byte{tag, 0x80}
	for len(content) > 0 {
		n := childLen(content)
		out = append(out, toBER(t, content[:n])...)
		content = content[n:]
	}
	return append(out, 0, 0)
}

func childLen(b []byte) int {
	h, _ := splitTLV(b)
	l := int(b[1])
	if l >= 0x80 {
		l = 0
		for _, c := range b[2:len(h)] {
			l = l<<8 | int(c)
		}
	}
	return len(h) + l
}

func TestVerify(t *testing.T) {
	a, b := authorities(t)
	signed, err := a.Sign(testDocument, testNow)
	if err != nil {
		t.Fatal(err)
	}
	otherSigned, err := b.Sign(testDocument, testNow)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := DecodeSignature([]byte(signed.RSA2048))
	if err != nil {
		t.Fatal(err)
	}
	tamperedDoc := bytes.Replace(signed.Document, []byte("210987654301"), []byte("210987654302"), 1)
	ber := toBER(t, raw)
	brokenSig := bytes.Clone(raw)
	brokenSig[len(brokenSig)-5] ^= 0xff

	tests := []struct {
		name      string
		variant   Variant
		document  []byte
		signature []byte
		wantErr   string
		sigErr    bool
	}{
		{name: "rsa2048 as IMDS serves it", variant: RSA2048, signature: []byte(signed.RSA2048)},
		{name: "rsa2048 with the same document", variant: RSA2048, document: signed.Document, signature: []byte(signed.RSA2048)},
		{name: "rsa2048 in BER with indefinite lengths", variant: RSA2048, signature: ber},
		{name: "rsa2048 as PEM", variant: RSA2048, signature: []byte("-----BEGIN PKCS7-----\n" + signed.RSA2048 + "\n-----END PKCS7-----\n")},
		{name: "pkcs7 variant", variant: PKCS7, signature: []byte(signed.PKCS7)},
		{name: "signature variant", variant: Signature, document: signed.Document, signature: []byte(signed.Signature)},
		{name: "another document than the signed one", variant: RSA2048, document: tamperedDoc, signature: []byte(signed.RSA2048), wantErr: "not byte-identical"},
		{name: "broken signature", variant: RSA2048, signature: brokenSig, wantErr: "does not verify", sigErr: true},
		{name: "signed by another key", variant: RSA2048, signature: []byte(otherSigned.RSA2048), wantErr: "no trusted certificate", sigErr: true},
		{name: "bare signature over another document", variant: Signature, document: tamperedDoc, signature: []byte(signed.Signature), wantErr: "no trusted certificate", sigErr: true},
		{name: "bare signature without document", variant: Signature, signature: []byte(signed.Signature), wantErr: "needs the document"},
		{name: "not base64", variant: RSA2048, signature: []byte("!!!"), wantErr: "neither base64"},
		{name: "not PKCS#7", variant: RSA2048, signature: []byte(base64.StdEncoding.EncodeToString([]byte{0x30, 0x03, 0x02, 0x01, 0x01})), wantErr: "ContentInfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := Verify(trusting(a), tt.variant, tt.document, tt.signature)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if doc.AccountID != testDocument.AccountID || doc.InstanceID != testDocument.InstanceID || doc.Region != "eu-west-1" {
					t.Fatalf("document %+v", doc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			if got := errors.Is(err, ErrSignature); got != tt.sigErr {
				t.Fatalf("errors.Is(ErrSignature) = %v for %v", got, err)
			}
		})
	}
}

func TestVerifyTrustsOnlyTheRegionsCertificates(t *testing.T) {
	a, _ := authorities(t)
	signed, err := a.Sign(testDocument, testNow)
	if err != nil {
		t.Fatal(err)
	}
	c := &Certificates{byRegion: map[string][]*x509.Certificate{"us-east-1": {a.Cert}}}
	if _, err := Verify(c, RSA2048, nil, []byte(signed.RSA2048)); !errors.Is(err, ErrSignature) {
		t.Fatalf("a certificate of us-east-1 verified a document of eu-west-1: %v", err)
	}
	c.byRegion["eu-west-1"] = []*x509.Certificate{a.Cert}
	if _, err := Verify(c, RSA2048, nil, []byte(signed.RSA2048)); err != nil {
		t.Fatal(err)
	}
}

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"valid", `{"accountId":"123456789012","availabilityZone":"us-east-1b","instanceId":"i-0123456789abcdef0","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"}`, ""},
		{"zone of another region", `{"accountId":"123456789012","availabilityZone":"us-west-2b","instanceId":"i-0123456789abcdef0","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"}`, "not a zone of us-east-1"},
		{"short account", `{"accountId":"12345","availabilityZone":"us-east-1b","instanceId":"i-0123456789abcdef0","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"}`, "12-digit"},
		{"bad instance id", `{"accountId":"123456789012","availabilityZone":"us-east-1b","instanceId":"i-x;rm","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"}`, "instanceId"},
		{"no pending time", `{"accountId":"123456789012","availabilityZone":"us-east-1b","instanceId":"i-0123456789abcdef0","region":"us-east-1"}`, "pendingTime"},
		{"trailing data", `{"accountId":"123456789012","availabilityZone":"us-east-1b","instanceId":"i-0123456789abcdef0","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"} {}`, "after its JSON"},
		{"not JSON", `nope`, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDocument([]byte(tt.doc))
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestAWSCertificatesParse checks every embedded AWS certificate: it
// parses, is AWS's (subject and issuer Amazon Web Services LLC, self-signed
// with a signature that verifies, so a byte changed in copying fails), holds
// an RSA-2048 key, and its file names a region, which AWSCertificates
// trusts it for.
func TestAWSCertificatesParse(t *testing.T) {
	certs, err := AWSCertificates()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(awsCerts, "awscerts")
	if err != nil {
		t.Fatal(err)
	}
	regionRE := regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]$`)
	n := 0
	for _, e := range entries {
		region, ok := strings.CutSuffix(e.Name(), ".pem")
		if !ok {
			continue
		}
		n++
		t.Run(region, func(t *testing.T) {
			if !regionRE.MatchString(region) {
				t.Fatalf("%s does not name a region (REGION.pem)", e.Name())
			}
			b, err := awsCerts.ReadFile("awscerts/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseCertificatesPEM(b)
			if err != nil || len(parsed) != 1 {
				t.Fatalf("want one certificate: %d, %v", len(parsed), err)
			}
			c := parsed[0]
			const aws = "Amazon Web Services LLC"
			if !slices.Equal(c.Subject.Organization, []string{aws}) || !slices.Equal(c.Issuer.Organization, []string{aws}) {
				t.Fatalf("subject %s, issuer %s: not AWS's", c.Subject, c.Issuer)
			}
			if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
				t.Fatalf("the self-signature does not verify (a copying error?): %v", err)
			}
			if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
				t.Fatalf("public key %T, want RSA-2048", c.PublicKey)
			}
			if got := certs.forRegion(region); len(got) != 1 || !got[0].Equal(c) {
				t.Fatalf("region %s is trusted with %d certificates, want this one", region, len(got))
			}
		})
	}
	if n == 0 || certs.Regions() != n {
		t.Fatalf("%d PEM files, %d regions", n, certs.Regions())
	}
	// A region without a file trusts nothing embedded.
	if got := certs.forRegion("xx-nowhere-1"); len(got) != 0 {
		t.Fatalf("an unknown region trusts %d certificates", len(got))
	}
}
