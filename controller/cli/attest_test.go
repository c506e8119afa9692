package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/iid"
)

// TestAttestCheckIID verifies documents offline: exit 0 with the account,
// region and instance id for a valid signature, 6 otherwise.
func TestAttestCheckIID(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	auth, err := iid.NewAuthority("check-iid test", now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := iid.NewAuthority("someone else", now)
	if err != nil {
		t.Fatal(err)
	}
	doc := &iid.Document{AccountID: "123456789012", AvailabilityZone: "eu-west-1b", InstanceID: "i-0123456789abcdef0", PendingTime: now, Region: "eu-west-1"}
	signed, err := auth.Sign(doc, now)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Sign(doc, now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write("cert.pem", auth.CertificatePEM())
	docFile := write("doc.json", signed.Document)
	rsa := write("doc.rsa2048", []byte(signed.RSA2048))
	bare := write("doc.sig", []byte(signed.Signature))
	forgedSig := write("forged.rsa2048", []byte(forged.RSA2048))
	otherDoc := write("other.json", []byte(strings.Replace(string(signed.Document), "i-0123456789abcdef0", "i-0fedcba9876543210", 1)))
	dial := serve(t, &fakeOperator{})

	tests := []struct {
		name     string
		args     []string
		wantExit int
		want     string
	}{
		{"valid rsa2048", []string{"--document", docFile, "--signature", rsa, "--cert-file", cert}, ExitOK, "instance id  i-0123456789abcdef0"},
		{"valid bare signature", []string{"--document", docFile, "--signature", bare, "--variant", "signature", "--cert-file", cert}, ExitOK, "account      123456789012"},
		{"only the embedded certificates", []string{"--document", docFile, "--signature", rsa}, ExitVerifyFailed, "does NOT verify"},
		{"signed by another key", []string{"--document", docFile, "--signature", forgedSig, "--cert-file", cert}, ExitVerifyFailed, "does NOT verify"},
		{"another document", []string{"--document", otherDoc, "--signature", rsa, "--cert-file", cert}, ExitVerifyFailed, "not byte-identical"},
		{"unknown variant", []string{"--document", docFile, "--signature", rsa, "--variant", "dsa"}, ExitUsage, "not one of rsa2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, dial, append([]string{"attest", "check-iid"}, tt.args...)...)
			if r.code != tt.wantExit || !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d with %q", r.code, r.stdout, r.stderr, tt.wantExit, tt.want)
			}
		})
	}
	r := run(t, dial, "attest", "check-iid", "--json", "--document", docFile, "--signature", rsa, "--cert-file", cert)
	var out struct {
		Valid      bool   `json:"valid"`
		Account    string `json:"account"`
		Region     string `json:"region"`
		InstanceID string `json:"instance_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != ExitOK || !out.Valid || out.Account != "123456789012" || out.Region != "eu-west-1" || out.InstanceID != "i-0123456789abcdef0" {
		t.Fatalf("--json: exit %d %q (%v)", r.code, r.stdout, err)
	}
}
