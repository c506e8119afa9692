package intake

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/controller/finding"
)

// DefaultRulesYAML are the built-in rules, in the rules file format. They
// come after the rules of a --rules file, so a file's rule wins; a file
// rule with the same name replaces the built-in one. All propose their
// playbook for approval: automatic containment is a choice the security
// engineer writes into the rules file.
const DefaultRulesYAML = `# Built-in rules: GuardDuty findings (directly or imported into Security Hub).
- name: ec2-cryptomining
  match:
    types: ["CryptoCurrency:EC2/*", "*/CryptoCurrency:EC2-*", "Impact:EC2/BitcoinDomainRequest*", "*/Impact:EC2-BitcoinDomainRequest*"]
  playbook: cryptomining-instance
  mode: approve

- name: ec2-compromise
  match:
    types:
      - "UnauthorizedAccess:EC2/*"
      - "Backdoor:EC2/*"
      - "Trojan:EC2/*"
      - "Impact:EC2/*"
      - "Execution:EC2/*"
      - "Execution:Runtime/*"
      - "*/UnauthorizedAccess:EC2-*"
      - "*/Backdoor:EC2-*"
      - "*/Trojan:EC2-*"
      - "*/Impact:EC2-*"
  playbook: ec2-instance-compromise
  mode: approve

- name: iam-credential-compromise
  match:
    types:
      - "UnauthorizedAccess:IAMUser/*"
      - "CredentialAccess:IAMUser/*"
      - "Exfiltration:IAMUser/*"
      - "Impact:IAMUser/*"
      - "Persistence:IAMUser/*"
      - "PrivilegeEscalation:IAMUser/*"
      - "InitialAccess:IAMUser/*"
      - "*/UnauthorizedAccess:IAMUser-*"
      - "*/CredentialAccess:IAMUser-*"
  playbook: iam-credential-compromise
  mode: approve

- name: s3-public-exposure
  match:
    types: ["Policy:S3/BucketAnonymousAccessGranted", "Policy:S3/BucketPublicAccessGranted", "Policy:S3/BucketBlockPublicAccessDisabled"]
  playbook: s3-public-exposure
  mode: approve
`

// DefaultRules returns the parsed built-in rules.
func DefaultRules() *finding.RuleSet {
	rs, err := finding.ParseRules("built-in rules", []byte(DefaultRulesYAML))
	if err != nil {
		panic("intake: the built-in rules do not parse: " + err.Error())
	}
	return rs
}

// LoadRules reads a rules file (empty path: none) and appends the built-in
// rules unless withDefaults is false. Errors carry file:line:column.
func LoadRules(path string, withDefaults bool) (*finding.RuleSet, error) {
	out := &finding.RuleSet{File: path}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the rules file: %w", err)
		}
		rs, err := finding.ParseRules(path, data)
		if err != nil {
			return nil, err
		}
		out.Rules = append(out.Rules, rs.Rules...)
	}
	if withDefaults {
		names := map[string]bool{}
		for _, r := range out.Rules {
			names[r.Name] = true
		}
		for _, r := range DefaultRules().Rules {
			if !names[r.Name] {
				out.Rules = append(out.Rules, r)
			}
		}
	}
	return out, nil
}
