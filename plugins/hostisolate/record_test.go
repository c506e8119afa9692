package hostisolate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
)

func TestReadRecord(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		want    bool
		wantErr string
	}{
		{name: "nothing recorded", want: false},
		{name: "not JSON", content: ptr("{"), wantErr: "is not valid JSON"},
		{name: "a newer format", content: ptr(`{"version": 2}`), wantErr: "has format version 2; this plugin reads version 1"},
		{name: "recorded", content: ptr(`{"version": 1, "table": "inet firebreak", "controller_addresses": ["10.0.0.1"], "controller_port": 8443}`), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != nil {
				if err := os.WriteFile(filepath.Join(dir, hostisolate.RecordFile), []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rec, err := hostisolate.ReadRecord(dir)
			ok, rerr := hostisolate.Recorded(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || rerr == nil {
					t.Fatalf("ReadRecord error = %v, Recorded error = %v, want %q", err, rerr, tt.wantErr)
				}
				return
			}
			if err != nil || rerr != nil {
				t.Fatal(err, rerr)
			}
			if (rec != nil) != tt.want || ok != tt.want {
				t.Fatalf("ReadRecord = %+v, Recorded = %t, want %t", rec, ok, tt.want)
			}
		})
	}
}

// TestRecordRoundTrip checks that what host-isolate records rebuilds the
// ruleset it applied, which is what reconcile relies on, and that the
// record is written atomically with private permissions.
func TestRecordRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.host.ControllerAddresses = []string{"fd99::1", "10.99.0.1"}
	res := f.isolated(t, map[string]any{"allow": []string{"[2001:db8::/32]:443/tcp", "10.20.0.0/16"}, "allow_dhcp": false, "reason": "case 12"})

	rec, err := hostisolate.ReadRecord(f.stateDir)
	if err != nil || rec == nil {
		t.Fatalf("ReadRecord: %+v %v", rec, err)
	}
	if rec.Params.Reason != "case 12" || len(rec.Params.Allow) != 2 || rec.Params.AllowDHCP == nil || *rec.Params.AllowDHCP {
		t.Errorf("recorded params %+v", rec.Params)
	}
	spec, err := rec.Spec()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := hostisolate.BuildRuleset(spec)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Digest != res.RuleDigest || rs.Digest != rec.RuleDigest || len(rs.Rules) != rec.RuleCount {
		t.Errorf("rebuilt %s (%d rules), applied %s, recorded %s (%d rules)", rs.Digest, len(rs.Rules), res.RuleDigest, rec.RuleDigest, rec.RuleCount)
	}

	info, err := os.Stat(hostisolate.RecordPath(f.stateDir))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, want 0600", info.Mode().Perm())
	}
	for _, name := range f.files(t) {
		if name != hostisolate.RecordFile && name != "isolation.lock" {
			t.Errorf("left behind in the state directory: %s", name)
		}
	}
}

func ptr(s string) *string { return &s }
