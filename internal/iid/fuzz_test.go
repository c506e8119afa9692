package iid

import (
	"testing"
)

// FuzzParsePKCS7 feeds arbitrary bytes to the BER and PKCS#7 parsers, which
// read what an unauthenticated caller sends.
func FuzzParsePKCS7(f *testing.F) {
	a, _ := authorities(f)
	signed, err := a.Sign(testDocument, testNow)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := DecodeSignature([]byte(signed.RSA2048))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x24, 0x80, 0x04, 0x01, 0x41, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := ParsePKCS7(b)
		if err != nil {
			return
		}
		// A parsed signature must verify or refuse, never panic.
		_ = sd.Verify(sd.Content, a.Cert)
		_ = sd.SignedBy(a.Cert)
	})
}

// FuzzVerify feeds arbitrary documents and signatures to the whole check.
func FuzzVerify(f *testing.F) {
	a, _ := authorities(f)
	signed, err := a.Sign(testDocument, testNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed.Document, []byte(signed.RSA2048), "rsa2048")
	f.Add(signed.Document, []byte(signed.Signature), "signature")
	f.Add([]byte(`{"accountId":"123456789012"}`), []byte("MA=="), "pkcs7")
	certs := trusting(a)
	f.Fuzz(func(t *testing.T, doc, sig []byte, variant string) {
		d, err := Verify(certs, Variant(variant), doc, sig)
		if err == nil && d == nil {
			t.Fatal("Verify returned neither a document nor an error")
		}
	})
}

// FuzzParseDocument feeds arbitrary JSON to the document parser.
func FuzzParseDocument(f *testing.F) {
	f.Add([]byte(`{"accountId":"123456789012","availabilityZone":"us-east-1b","instanceId":"i-0123456789abcdef0","pendingTime":"2026-01-01T00:00:00Z","region":"us-east-1"}`))
	f.Add([]byte(`{"availabilityZone":"a"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDocument(b)
		if err == nil && (d.AccountID == "" || d.InstanceID == "" || d.Region == "") {
			t.Fatalf("accepted an incomplete document: %+v", d)
		}
	})
}
