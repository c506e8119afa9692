package intake_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/intake"
	playbooks "github.com/firebreak-ir/firebreak/controller/playbook/library"
)

func TestDefaultRulesMapSamplesToBuiltInPlaybooks(t *testing.T) {
	rules := intake.DefaultRules()
	for _, r := range rules.Rules {
		if _, ok := playbooks.Get(r.Playbook); !ok {
			t.Errorf("rule %s names playbook %s, which is not built in", r.Name, r.Playbook)
		}
		if r.Mode != finding.ModeApprove {
			t.Errorf("rule %s is %s: built-in rules only propose", r.Name, r.Mode)
		}
	}
	tests := []struct {
		sample   string
		wantRule []string // per finding of the event
	}{
		{"guardduty-ssh-bruteforce.json", []string{"ec2-compromise"}},
		{"guardduty-bitcointool-dns.json", []string{"ec2-cryptomining"}},
		{"guardduty-credential-exfiltration.json", []string{"iam-credential-compromise"}},
		{"guardduty-s3-anonymous-access.json", []string{"s3-public-exposure"}},
		{"securityhub-imported.json", []string{"ec2-compromise", "iam-credential-compromise"}},
	}
	for _, tt := range tests {
		t.Run(tt.sample, func(t *testing.T) {
			fs, err := finding.ParseEvent(sample(t, tt.sample))
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != len(tt.wantRule) {
				t.Fatalf("%d findings", len(fs))
			}
			for i, f := range fs {
				m := rules.Match(f)
				if len(m) == 0 || m[0].Name != tt.wantRule[i] {
					t.Fatalf("finding %s (%s) matched %v, want %s first", f.ID, f.Type, m, tt.wantRule[i])
				}
			}
		})
	}
}

func TestLoadRulesPutsTheFileFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(`
- name: ec2-compromise
  match: {types: ["UnauthorizedAccess:EC2/*"]}
  playbook: ec2-instance-compromise
  mode: auto
- name: mine
  match: {types: ["*"]}
  playbook: drill
`), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := intake.LoadRules(path, true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs.Rules {
		names = append(names, r.Name)
	}
	if names[0] != "ec2-compromise" || rs.Rules[0].Mode != finding.ModeAuto || names[1] != "mine" || strings.Count(strings.Join(names, ","), "ec2-compromise") != 1 {
		t.Fatalf("rules %v: want the file's rules first and its ec2-compromise replacing the built-in one", names)
	}
	only, err := intake.LoadRules(path, false)
	if err != nil || len(only.Rules) != 2 {
		t.Fatalf("without defaults: %v %v", only, err)
	}
	if err := os.WriteFile(path, []byte("- name: bad\n  match: {types: [\"*\"]}\n  playbook: x\n  mode: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := intake.LoadRules(path, true); err == nil || !strings.Contains(err.Error(), path+":4:") {
		t.Fatalf("a bad rules file: %v: want file:line:column", err)
	}
}
