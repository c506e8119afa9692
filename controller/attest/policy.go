package attest

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// Policy says which AWS identities may enrol without a token, and what they
// become. It is read from a YAML (or JSON) file:
//
//	iid:                        # host agents, by instance identity document
//	  accounts: [all]           # all, account ids, or ou=NAME-OR-ID (the accounts table)
//	  regions: [eu-west-1]      # empty: any
//	  required_tags: {firebreak: enabled}
//	  max_age: 15m              # pendingTime's age at first enrollment
//	  label_tags: [env, team]   # become labels tag.env, tag.team
//	sts:                        # API workers, by signed GetCallerIdentity
//	  - role_arn: "arn:aws:iam::*:role/FirebreakWorker"   # * and ? match
//	    accounts: [all]         # the accounts the worker serves (label serves)
type Policy struct {
	IID *IIDPolicy
	STS []STSRule
}

// IIDPolicy is the part for instance identity documents.
type IIDPolicy struct {
	Accounts     []string
	Regions      []string
	RequiredTags map[string]string
	MaxAge       time.Duration
	LabelTags    []string
}

// STSRule maps a caller ARN pattern to the worker role.
type STSRule struct {
	RoleARN  string
	Accounts []string
}

// DefaultMaxAge is the pendingTime age allowed when the policy sets none.
const DefaultMaxAge = 15 * time.Minute

// LoadPolicy reads and validates a policy file.
func LoadPolicy(file string) (*Policy, error) {
	b, err := os.ReadFile(file) //nolint:gosec // G304: the operator's --attest-policy file
	if err != nil {
		return nil, fmt.Errorf("read the attestation policy: %w", err)
	}
	return ParsePolicy(file, b)
}

// policyError is one validation error at a position of the file.
func policyError(file string, n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d:%d: %s", file, n.Line, n.Column, fmt.Sprintf(format, args...))
}

var (
	accountIDRE = regexp.MustCompile(`^[0-9]{12}$`)
	tagKeyRE    = regexp.MustCompile(`^[A-Za-z0-9_.:/=+@ -]{1,128}$`)
	labelTagRE  = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,120}$`)
	arnRE       = regexp.MustCompile(`^arn:[a-z*?-]+:(iam|sts)::[0-9*?]{1,12}:[A-Za-z0-9_+=,.@/*?-]+$`)
)

// ParsePolicy validates a policy; every error names file:line:column.
func ParsePolicy(file string, b []byte) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s:1:1: the policy is empty", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, policyError(file, root, "the policy must be a mapping with iid and/or sts")
	}
	p := &Policy{}
	err := eachKey(file, root, func(key string, k, v *yaml.Node) error {
		switch key {
		case "iid":
			ip, err := parseIID(file, v)
			p.IID = ip
			return err
		case "sts":
			rules, err := parseSTS(file, v)
			p.STS = rules
			return err
		}
		return policyError(file, k, "unknown key %q (iid, sts)", key)
	})
	if err != nil {
		return nil, err
	}
	if p.IID == nil && len(p.STS) == 0 {
		return nil, policyError(file, root, "the policy allows nothing: give iid, sts or both")
	}
	return p, nil
}

// eachKey walks a mapping, refusing duplicate keys.
func eachKey(file string, m *yaml.Node, f func(key string, k, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if seen[k.Value] {
			return policyError(file, k, "key %q appears twice", k.Value)
		}
		seen[k.Value] = true
		if err := f(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func stringList(file string, n *yaml.Node, check func(s string, n *yaml.Node) error) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, policyError(file, n, "expected a list")
	}
	var out []string
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, policyError(file, item, "expected a string")
		}
		if err := check(item.Value, item); err != nil {
			return nil, err
		}
		out = append(out, item.Value)
	}
	return out, nil
}

func checkAccounts(file string) func(string, *yaml.Node) error {
	return func(s string, n *yaml.Node) error {
		if s == "all" || accountIDRE.MatchString(s) || (strings.HasPrefix(s, "ou=") && len(s) > 3) {
			return nil
		}
		return policyError(file, n, "account %q is not all, a 12-digit account id or ou=NAME-OR-ID", s)
	}
}

func parseIID(file string, n *yaml.Node) (*IIDPolicy, error) {
	if n.Kind != yaml.MappingNode {
		return nil, policyError(file, n, "iid must be a mapping")
	}
	p := &IIDPolicy{MaxAge: DefaultMaxAge}
	err := eachKey(file, n, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "accounts":
			p.Accounts, err = stringList(file, v, checkAccounts(file))
		case "regions":
			p.Regions, err = stringList(file, v, func(s string, n *yaml.Node) error {
				if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`).MatchString(s) {
					return policyError(file, n, "region %q is not a region name", s)
				}
				return nil
			})
		case "required_tags":
			if v.Kind != yaml.MappingNode {
				return policyError(file, v, "required_tags must be a mapping of tag key to value")
			}
			p.RequiredTags = map[string]string{}
			err = eachKey(file, v, func(tag string, tk, tv *yaml.Node) error {
				if !tagKeyRE.MatchString(tag) || tv.Kind != yaml.ScalarNode {
					return policyError(file, tk, "required tag %q must be a tag key with a string value", tag)
				}
				p.RequiredTags[tag] = tv.Value
				return nil
			})
		case "max_age":
			d, perr := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || perr != nil || d <= 0 || d > 365*24*time.Hour {
				return policyError(file, v, "max_age %q is not a positive duration such as 15m or 24h", v.Value)
			}
			p.MaxAge = d
		case "label_tags":
			p.LabelTags, err = stringList(file, v, func(s string, n *yaml.Node) error {
				if !labelTagRE.MatchString(s) {
					return policyError(file, n, "label tag %q cannot become a label key (letters, digits, _ . : / -)", s)
				}
				return nil
			})
		default:
			return policyError(file, k, "unknown key %q under iid (accounts, regions, required_tags, max_age, label_tags)", key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(p.Accounts) == 0 {
		return nil, policyError(file, n, "iid needs accounts (all, account ids or ou=…)")
	}
	return p, nil
}

func parseSTS(file string, n *yaml.Node) ([]STSRule, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, policyError(file, n, "sts must be a list of rules")
	}
	var out []STSRule
	for _, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			return nil, policyError(file, item, "an sts rule must be a mapping with role_arn and accounts")
		}
		var r STSRule
		err := eachKey(file, item, func(key string, k, v *yaml.Node) error {
			var err error
			switch key {
			case "role_arn":
				if v.Kind != yaml.ScalarNode || !arnRE.MatchString(v.Value) {
					return policyError(file, v, "role_arn %q is not an IAM or STS ARN pattern (arn:aws:iam::ACCOUNT:role/NAME, * and ? match)", v.Value)
				}
				if _, perr := path.Match(v.Value, ""); perr != nil {
					return policyError(file, v, "role_arn %q is not a valid pattern: %v", v.Value, perr)
				}
				r.RoleARN = v.Value
			case "accounts":
				r.Accounts, err = stringList(file, v, checkAccounts(file))
			default:
				return policyError(file, k, "unknown key %q in an sts rule (role_arn, accounts)", key)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if r.RoleARN == "" || len(r.Accounts) == 0 {
			return nil, policyError(file, item, "an sts rule needs role_arn and accounts")
		}
		out = append(out, r)
	}
	return out, nil
}

// errNotAllowed is an account the policy's list does not hold.
var errNotAllowed = errors.New("not allowed by the attestation policy")

// allowedAccount checks an account against a policy list: it must be in
// the organisation (the accounts table) and selected by the list.
func allowedAccount(known []*store.Account, list []string, account string) error {
	var in *store.Account
	for _, a := range known {
		if a.ID == account {
			in = a
		}
	}
	if in == nil {
		return fmt.Errorf("account %s is not in the organisation (the accounts table; run firebreak accounts sync)", account)
	}
	for _, expr := range list {
		sel, err := runs.SelectAccounts([]*store.Account{in}, expr)
		if err == nil && len(sel) == 1 {
			return nil
		}
	}
	return fmt.Errorf("account %s is %w", account, errNotAllowed)
}
