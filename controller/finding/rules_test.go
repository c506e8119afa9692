package finding_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/finding"
)

func loadRules(t *testing.T) *finding.RuleSet {
	t.Helper()
	rs, err := finding.ParseRules("rules.yaml", sample(t, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestRuleMatching(t *testing.T) {
	rs := loadRules(t)
	tests := []struct {
		file string
		want [][]string // per finding: names of matching rules in file order
	}{
		{"guardduty-ssh-bruteforce.json", [][]string{{"ssh-brute-force-review"}}},
		{"guardduty-bitcointool-dns.json", [][]string{{"cryptomining"}}},
		{"guardduty-credential-exfiltration.json", [][]string{{"stolen-credentials"}}},
		{"guardduty-s3-anonymous-access.json", [][]string{{"public-bucket"}}},
		{"securityhub-imported.json", [][]string{{"ec2-compromise", "securityhub-high"}, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			fs, err := finding.ParseEvent(sample(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for _, f := range fs {
				var names []string
				for _, r := range rs.Match(f) {
					names = append(names, r.Name)
				}
				got = append(got, names)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("matched %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRuleMatchConditions(t *testing.T) {
	base := finding.Finding{
		Source: finding.SourceGuardDuty, Type: "UnauthorizedAccess:EC2/SSHBruteForce", Severity: 8,
		Account: "111122223333", Tags: map[string]string{"env": "prod", "team": "web"},
	}
	tests := []struct {
		name  string
		match string
		edit  func(f *finding.Finding)
		want  bool
	}{
		{"star crosses slashes", `types: ["UnauthorizedAccess:*"]`, nil, true},
		{"question mark is one character", `types: ["UnauthorizedAccess:EC?/SSHBruteForce"]`, nil, true},
		{"type glob misses", `types: ["Recon:*"]`, nil, false},
		{"any of the types", `types: ["Recon:*", "*SSH*"]`, nil, true},
		{"severity at the bound", "min_severity: 8", nil, true},
		{"severity below the bound", "min_severity: 8.5", nil, false},
		{"account listed", `accounts: ["999999999999", "111122223333"]`, nil, true},
		{"account not listed", `accounts: ["999999999999"]`, nil, false},
		{"all tags must match", "tags: {env: prod, team: web}", nil, true},
		{"tag value glob", "tags: {env: 'pro*'}", nil, true},
		{"tag missing", "tags: {owner: alice}", nil, false},
		{"tag value differs", "tags: {env: dev}", nil, false},
		{"source listed", "sources: [securityhub, guardduty]", nil, true},
		{"source not listed", "sources: [securityhub]", nil, false},
		{"conditions are ANDed", `{types: ["*"], min_severity: 9}`, nil, false},
		{"security hub types", `types: ["Software and Configuration Checks/*"]`, func(f *finding.Finding) {
			f.Source, f.Type = finding.SourceSecurityHub, "Effects/Data Exposure"
			f.Types = []string{"Effects/Data Exposure", "Software and Configuration Checks/AWS Security Best Practices"}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			match := tt.match
			if !strings.HasPrefix(match, "{") {
				match = "{" + match + "}"
			}
			src := "- name: r\n  match: " + match + "\n  playbook: p\n"
			rs, err := finding.ParseRules("r.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			f := base
			if tt.edit != nil {
				tt.edit(&f)
			}
			if got := rs.Rules[0].Matches(&f); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRulePlaybookInputs(t *testing.T) {
	rs := loadRules(t)
	byName := map[string]*finding.Rule{}
	for _, r := range rs.Rules {
		byName[r.Name] = r
	}
	parse := func(file string, i int) *finding.Finding {
		fs, err := finding.ParseEvent(sample(t, file))
		if err != nil {
			t.Fatal(err)
		}
		return fs[i]
	}
	tests := []struct {
		name     string
		rule     string
		finding  *finding.Finding
		declared []string
		want     map[string]any
	}{
		{
			name: "explicit inputs", rule: "ssh-brute-force-review", finding: parse("guardduty-ssh-bruteforce.json", 0),
			want: map[string]any{"instance_id": "i-0a1b2c3d4e5f67890", "account": "111122223333", "region": "eu-west-1",
				"allow_cidrs": []string{"10.99.0.0/16"}, "revoke_instance_profile": false},
		},
		{
			name: "default extraction", rule: "cryptomining", finding: parse("guardduty-bitcointool-dns.json", 0),
			want: map[string]any{"instance_id": "i-0fedcba9876543210", "account": "444455556666", "region": "us-east-1"},
		},
		{
			name: "default extraction keeps declared inputs", rule: "stolen-credentials", finding: parse("guardduty-credential-exfiltration.json", 0),
			declared: []string{"access_key_id", "user_name", "role_name", "lookback"},
			want:     map[string]any{"access_key_id": "ASIAEXAMPLEEXFIL0001", "role_name": "web-server-role"},
		},
		{
			name: "literals and references", rule: "public-bucket", finding: parse("guardduty-s3-anonymous-access.json", 0),
			want: map[string]any{"bucket": "acme-quarterly-reports", "account": "222233334444", "lookback": "72h"},
		},
		{
			name: "interpolated tags", rule: "securityhub-high", finding: parse("securityhub-imported.json", 0),
			want: map[string]any{"instance_id": "i-0123abcd4567ef890", "region": "us-east-1", "allow_cidrs": []string{},
				"note": "case for api-3 (HIGH)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := byName[tt.rule].PlaybookInputs(tt.finding, tt.declared)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
	if m := byName["ec2-compromise"].Mode; m != finding.ModeAuto {
		t.Errorf("mode = %q", m)
	}
	if m := byName["public-bucket"].Mode; m != finding.ModeApprove {
		t.Errorf("default mode = %q, want approve", m)
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"not a list", "name: r\n", []string{"r.yaml:1:1: a rules file is a list of rules, not a mapping"}},
		{"unknown rule field", "- name: r\n  match: {types: ['*']}\n  playbook: p\n  priority: 1\n",
			[]string{`r.yaml:4:3: unknown field "priority" in rule (known fields: name, match, playbook, mode, inputs)`}},
		{"unknown match field", "- name: r\n  match: {type: ['*']}\n  playbook: p\n",
			[]string{`r.yaml:2:11: unknown field "type" in match (known fields: types, min_severity, accounts, tags, sources)`}},
		{"missing name and playbook", "- match: {types: ['*']}\n",
			[]string{"r.yaml:1:3: rule has no name", `r.yaml:1:3: rule "at line 1" names no playbook`}},
		{"bad name", "- name: Rule One\n  match: {types: ['*']}\n  playbook: p\n",
			[]string{`r.yaml:1:9: rule name "Rule One" must be lower-case letters, digits and hyphens`}},
		{"duplicate name", "- {name: r, match: {types: ['*']}, playbook: p}\n- {name: r, match: {types: ['*']}, playbook: p}\n",
			[]string{`r.yaml:2:3: rule name "r" is used twice (first at line 1)`}},
		{"no match", "- name: r\n  playbook: p\n",
			[]string{`r.yaml:1:3: rule "r" has no match; to take every finding write match: {types: ["*"]}`}},
		{"severity not a number", "- name: r\n  match: {min_severity: high}\n  playbook: p\n",
			[]string{"r.yaml:2:25: min_severity must be a number from 0 to 10, not a string"}},
		{"severity out of range", "- name: r\n  match: {min_severity: 70}\n  playbook: p\n",
			[]string{"r.yaml:2:25: min_severity must be a number from 0 to 10, not 70"}},
		{"unquoted account", "- name: r\n  match: {accounts: [111122223333]}\n  playbook: p\n",
			[]string{"r.yaml:2:22: accounts[0] must be a string, not an integer"}},
		{"short account", "- name: r\n  match: {accounts: ['1234']}\n  playbook: p\n",
			[]string{`r.yaml:2:22: accounts[0]: "1234" is not a 12-digit AWS account id`}},
		{"unknown source", "- name: r\n  match: {sources: [inspector]}\n  playbook: p\n",
			[]string{`r.yaml:2:21: sources[0]: "inspector" is not guardduty or securityhub`}},
		{"bad mode", "- name: r\n  match: {types: ['*']}\n  playbook: p\n  mode: always\n",
			[]string{`r.yaml:4:9: mode must be auto or approve, not "always"`}},
		{"unknown finding field", "- name: r\n  match: {types: ['*']}\n  playbook: p\n  inputs:\n    instance_id: \"id ${{ finding.instance }}\"\n",
			[]string{`r.yaml:5:22: input "instance_id": unknown finding field "instance" (fields: source, id, type, title, description, severity, severity_label, account, region, first_seen, updated_at, resource_kind, resource_type, instance_id, access_key_id, user_name, role_name, bucket, function_name, event_id, tags)`}},
		{"not a finding reference", "- name: r\n  match: {types: ['*']}\n  playbook: p\n  inputs:\n    instance_id: ${{ inputs.x }}\n",
			[]string{`r.yaml:5:18: input "instance_id": rule inputs may only use ${{ finding.<field> }} references, not "inputs.x"`}},
		{"unclosed reference", "- name: r\n  match: {types: ['*']}\n  playbook: p\n  inputs:\n    instance_id: ${{ finding.instance_id\n",
			[]string{`r.yaml:5:18: input "instance_id": expression is not closed with "}}"`}},
		{"alias", "- &r {name: r, match: {types: ['*']}, playbook: p}\n- *r\n",
			[]string{"r.yaml:2:3: YAML aliases (*r) are not allowed in rules"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := finding.ParseRules("r.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("accepted")
			}
			errs, ok := err.(finding.RuleErrors)
			if !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}
