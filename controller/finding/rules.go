package finding

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits on a rules file.
const (
	// MaxRulesFileSize is the largest rules file accepted, in bytes.
	MaxRulesFileSize = 256 << 10
	// MaxRules is the most rules one file may hold.
	MaxRules = 500
)

// Mode says whether a matched rule's playbook starts by itself.
type Mode string

// The rule modes.
const (
	// ModeAuto starts the playbook as soon as the finding arrives.
	ModeAuto Mode = "auto"
	// ModeApprove proposes the playbook; an approver starts it. It is the
	// default.
	ModeApprove Mode = "approve"
)

// RuleSet is a parsed rules file:
//
//   - name: ec2-compromise
//     match:
//     types: ["UnauthorizedAccess:EC2/*", "Backdoor:EC2/*"]   # globs; * crosses "/"
//     min_severity: 7
//     accounts: ["111122223333"]
//     tags: {env: prod}                                       # values are globs
//     sources: [guardduty]                                    # guardduty|securityhub
//     playbook: ec2-instance-compromise
//     mode: auto                                                # auto|approve (default)
//     inputs:
//     instance_id: "${{ finding.instance_id }}"
//
// Conditions of a match are ANDed; the entries of one list are ORed. Input
// values are literals or text with ${{ finding.<field> }} references, where
// field is a key of Finding.Map (tags.<key> for a tag).
type RuleSet struct {
	// File is the file name given to ParseRules.
	File string
	// Rules are the rules in file order.
	Rules []*Rule
}

// Rule maps matching findings to a playbook.
type Rule struct {
	// Name identifies the rule.
	Name string
	// Match says which findings the rule takes.
	Match Match
	// Playbook is the name of the playbook to run.
	Playbook string
	// Mode says whether the playbook starts by itself.
	Mode Mode
	// Inputs are the playbook inputs, in file order; none means the
	// default extraction (see PlaybookInputs).
	Inputs []*RuleInput
	// Line and Column are where the rule starts in the file.
	Line, Column int
}

// Match holds a rule's conditions.
type Match struct {
	// Types are globs over the finding type.
	Types []string
	// MinSeverity is the lowest severity taken, if set.
	MinSeverity *float64
	// Accounts are the account ids taken.
	Accounts []string
	// Tags must all be on the resource, with values matching these globs.
	Tags map[string]string
	// Sources are the finding sources taken.
	Sources []Source
}

// RuleInput is one playbook input a rule gives.
type RuleInput struct {
	// Name is the playbook input's name.
	Name string
	// Literal is the value when it holds no reference: a string, int64,
	// float64, bool or []string.
	Literal any
	parts   []inputPart
}

type inputPart struct {
	text  string
	field string // a Finding.Map key, or "tags.<key>"; empty for text
}

// RuleError is a problem in a rules file, at a position.
type RuleError struct {
	File         string
	Line, Column int
	Msg          string
}

// Error formats the problem as file:line:column: message.
func (e RuleError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// RuleErrors is the list of problems ParseRules returns as its error.
type RuleErrors []RuleError

// Error joins the problems, one per line.
func (es RuleErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

var (
	ruleNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	inputRe    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	refRe      = regexp.MustCompile(`^\s*finding\.([a-z_]+)(?:\.([A-Za-z0-9_.:/=+@-]{1,128}))?\s*$`)
)

// findingFields are the Finding.Map keys rule inputs may read.
var findingFields = []string{"source", "id", "type", "title", "description", "severity", "severity_label",
	"account", "region", "first_seen", "updated_at", "resource_kind", "resource_type", "instance_id",
	"access_key_id", "user_name", "role_name", "bucket", "function_name", "event_id", "tags"}

// ParseRules reads a rules file. It returns RuleErrors, each with the file
// position of the problem, when the file is not valid.
func ParseRules(filename string, data []byte) (*RuleSet, error) {
	p := &ruleParser{file: filename}
	if len(data) > MaxRulesFileSize {
		return nil, RuleErrors{{File: filename, Msg: fmt.Sprintf("rules file is %d bytes; the limit is %d", len(data), MaxRulesFileSize)}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &RuleSet{File: filename}, nil
		}
		return nil, RuleErrors{{File: filename, Msg: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "file holds more than one YAML document")
		return nil, p.errs
	}
	if len(doc.Content) == 0 {
		return &RuleSet{File: filename}, nil
	}
	root := doc.Content[0]
	// Aliases are refused: expanding them is how small documents exhaust
	// memory, and rules have no need for them.
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			p.errorf(n, "YAML aliases (*%s) are not allowed in rules", n.Value)
			return nil, p.errs
		}
		stack = append(stack, n.Content...)
	}
	if root.Kind != yaml.SequenceNode {
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			return &RuleSet{File: filename}, nil
		}
		p.errorf(root, "a rules file is a list of rules, not %s", nodeKind(root))
		return nil, p.errs
	}
	if len(root.Content) > MaxRules {
		p.errorf(root, "file holds %d rules; the limit is %d", len(root.Content), MaxRules)
		return nil, p.errs
	}
	rs := &RuleSet{File: filename}
	seen := map[string]int{}
	for _, n := range root.Content {
		r := p.rule(n)
		if r == nil {
			continue
		}
		if line, dup := seen[r.Name]; dup && r.Name != "" {
			p.errorAt(r.Line, r.Column, "rule name %q is used twice (first at line %d)", r.Name, line)
			continue
		}
		seen[r.Name] = r.Line
		rs.Rules = append(rs.Rules, r)
	}
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b RuleError) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, p.errs
	}
	return rs, nil
}

type ruleParser struct {
	file string
	errs RuleErrors
}

func (p *ruleParser) errorAt(line, col int, format string, args ...any) {
	p.errs = append(p.errs, RuleError{File: p.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (p *ruleParser) errorf(n *yaml.Node, format string, args ...any) {
	p.errorAt(n.Line, n.Column, format, args...)
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a " + n.ShortTag() + " value"
	}
	return "an alias"
}

// fields walks a mapping with known keys.
func (p *ruleParser) fields(n *yaml.Node, what string, known []string, set func(key string, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping, not %s", what, nodeKind(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str":
			p.errorf(k, "%s: keys must be strings, not %s", what, nodeKind(k))
		case !slices.Contains(known, k.Value):
			p.errorf(k, "unknown field %q in %s (known fields: %s)", k.Value, what, strings.Join(known, ", "))
		case seen[k.Value]:
			p.errorf(k, "field %q appears twice in %s", k.Value, what)
		default:
			seen[k.Value] = true
			set(k.Value, v)
		}
	}
	return true
}

func (p *ruleParser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "%s must be a string, not %s", what, nodeKind(n))
		return "", false
	}
	return n.Value, true
}

func (p *ruleParser) strList(n *yaml.Node, what string) ([]string, []*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list, not %s", what, nodeKind(n))
		return nil, nil, false
	}
	out := []string{}
	ok := true
	for i, e := range n.Content {
		s, good := p.str(e, fmt.Sprintf("%s[%d]", what, i))
		if good && strings.TrimSpace(s) == "" {
			p.errorf(e, "%s[%d] is empty", what, i)
			good = false
		}
		ok = ok && good
		out = append(out, s)
	}
	return out, n.Content, ok
}

func (p *ruleParser) rule(n *yaml.Node) *Rule {
	r := &Rule{Line: n.Line, Column: n.Column, Mode: ModeApprove}
	var matchNode *yaml.Node
	matchBad := false
	ok := p.fields(n, "rule", []string{"name", "match", "playbook", "mode", "inputs"}, func(key string, v *yaml.Node) {
		switch key {
		case "name":
			if s, ok := p.str(v, "name"); ok {
				if !ruleNameRe.MatchString(s) {
					p.errorf(v, "rule name %q must be lower-case letters, digits and hyphens", s)
				}
				r.Name = s
			}
		case "match":
			matchNode = v
			before := len(p.errs)
			p.match(v, &r.Match)
			matchBad = len(p.errs) > before
		case "playbook":
			if s, ok := p.str(v, "playbook"); ok {
				if !ruleNameRe.MatchString(s) {
					p.errorf(v, "playbook name %q must be lower-case letters, digits and hyphens", s)
				}
				r.Playbook = s
			}
		case "mode":
			if s, ok := p.str(v, "mode"); ok {
				if s != string(ModeAuto) && s != string(ModeApprove) {
					p.errorf(v, "mode must be auto or approve, not %q", s)
				}
				r.Mode = Mode(s)
			}
		case "inputs":
			r.Inputs = p.inputs(v)
		}
	})
	if !ok {
		return nil
	}
	name := r.Name
	if name == "" {
		p.errorf(n, "rule has no name")
		name = "at line " + strconv.Itoa(n.Line)
	}
	switch {
	case matchNode == nil:
		p.errorf(n, "rule %q has no match; to take every finding write match: {types: [\"*\"]}", name)
	case r.Match.empty() && !matchBad:
		p.errorf(matchNode, "rule %q: match has no conditions; to take every finding write types: [\"*\"]", name)
	}
	if r.Playbook == "" {
		p.errorf(n, "rule %q names no playbook", name)
	}
	return r
}

func (m *Match) empty() bool {
	return len(m.Types) == 0 && m.MinSeverity == nil && len(m.Accounts) == 0 && len(m.Tags) == 0 && len(m.Sources) == 0
}

func (p *ruleParser) match(n *yaml.Node, m *Match) {
	p.fields(n, "match", []string{"types", "min_severity", "accounts", "tags", "sources"}, func(key string, v *yaml.Node) {
		switch key {
		case "types":
			m.Types, _, _ = p.strList(v, "types")
		case "min_severity":
			if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!int" && v.ShortTag() != "!!float") {
				p.errorf(v, "min_severity must be a number from 0 to 10, not %s", nodeKind(v))
				return
			}
			f, err := strconv.ParseFloat(v.Value, 64)
			if err != nil || f < 0 || f > 10 {
				p.errorf(v, "min_severity must be a number from 0 to 10, not %s", v.Value)
				return
			}
			m.MinSeverity = &f
		case "accounts":
			ids, nodes, _ := p.strList(v, "accounts")
			for i, id := range ids {
				if id != "" && !accountRe.MatchString(id) {
					p.errorf(nodes[i], "accounts[%d]: %q is not a 12-digit AWS account id", i, id)
				}
			}
			m.Accounts = ids
		case "tags":
			if v.Kind != yaml.MappingNode {
				p.errorf(v, "tags must be a mapping of tag keys to values, not %s", nodeKind(v))
				return
			}
			m.Tags = map[string]string{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, val := v.Content[i], v.Content[i+1]
				key, ok1 := p.str(k, "tag key")
				value, ok2 := p.str(val, fmt.Sprintf("tag %q", k.Value))
				if ok1 && ok2 {
					m.Tags[key] = value
				}
			}
		case "sources":
			names, nodes, _ := p.strList(v, "sources")
			for i, s := range names {
				if s != string(SourceGuardDuty) && s != string(SourceSecurityHub) {
					if s != "" {
						p.errorf(nodes[i], "sources[%d]: %q is not guardduty or securityhub", i, s)
					}
					continue
				}
				m.Sources = append(m.Sources, Source(s))
			}
		}
	})
}

func (p *ruleParser) inputs(n *yaml.Node) []*RuleInput {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "inputs must be a mapping of playbook input names to values, not %s", nodeKind(n))
		return nil
	}
	var out []*RuleInput
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.str(k, "input name")
		if !ok {
			continue
		}
		if !inputRe.MatchString(name) {
			p.errorf(k, "input name %q must be lower-case letters, digits and underscores", name)
			continue
		}
		in := &RuleInput{Name: name}
		switch {
		case v.Kind == yaml.SequenceNode:
			list, _, ok := p.strList(v, "input "+strconv.Quote(name))
			if ok {
				in.Literal = list
			}
		case v.Kind != yaml.ScalarNode:
			p.errorf(v, "input %q must be a scalar or a list of strings, not %s", name, nodeKind(v))
			continue
		case v.ShortTag() == "!!str":
			parts, ok := p.template(v, name)
			if !ok {
				continue
			}
			if len(parts) == 1 && parts[0].field == "" {
				in.Literal = parts[0].text
			} else {
				in.parts = parts
			}
		default:
			var lit any
			if err := v.Decode(&lit); err != nil {
				p.errorf(v, "input %q: %v", name, err)
				continue
			}
			if i, isInt := lit.(int); isInt {
				lit = int64(i)
			}
			in.Literal = lit
		}
		out = append(out, in)
	}
	return out
}

// template splits a string into text and finding references.
func (p *ruleParser) template(n *yaml.Node, name string) ([]inputPart, bool) {
	s := n.Value
	col := func(off int) int {
		c := n.Column + len([]rune(s[:off]))
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			c++
		}
		return c
	}
	var parts []inputPart
	rest := 0
	for {
		i := strings.Index(s[rest:], "${{")
		if i < 0 {
			if rest < len(s) || len(parts) == 0 {
				parts = append(parts, inputPart{text: s[rest:]})
			}
			return parts, true
		}
		open := rest + i
		if open > rest {
			parts = append(parts, inputPart{text: s[rest:open]})
		}
		end := strings.Index(s[open:], "}}")
		if end < 0 {
			p.errorAt(n.Line, col(open), "input %q: expression is not closed with \"}}\"", name)
			return nil, false
		}
		body := s[open+3 : open+end]
		m := refRe.FindStringSubmatch(body)
		switch {
		case m == nil:
			p.errorAt(n.Line, col(open), "input %q: rule inputs may only use ${{ finding.<field> }} references, not %q", name, strings.TrimSpace(body))
			return nil, false
		case !slices.Contains(findingFields, m[1]):
			p.errorAt(n.Line, col(open), "input %q: unknown finding field %q (fields: %s)", name, m[1], strings.Join(findingFields, ", "))
			return nil, false
		case m[1] == "tags" && m[2] == "":
			p.errorAt(n.Line, col(open), "input %q: name a tag, as in finding.tags.Name", name)
			return nil, false
		case m[1] != "tags" && m[2] != "":
			p.errorAt(n.Line, col(open), "input %q: finding.%s has no fields", name, m[1])
			return nil, false
		}
		field := m[1]
		if m[2] != "" {
			field += "." + m[2]
		}
		parts = append(parts, inputPart{field: field})
		rest = open + end + 2
	}
}

// Matches reports whether the rule takes the finding.
func (r *Rule) Matches(f *Finding) bool {
	m := r.Match
	if len(m.Sources) > 0 && !slices.Contains(m.Sources, f.Source) {
		return false
	}
	if m.MinSeverity != nil && f.Severity < *m.MinSeverity {
		return false
	}
	if len(m.Accounts) > 0 && !slices.Contains(m.Accounts, f.Account) {
		return false
	}
	if len(m.Types) > 0 {
		types := f.Types
		if len(types) == 0 {
			types = []string{f.Type}
		}
		hit := false
		for _, pattern := range m.Types {
			for _, t := range types {
				if globMatch(pattern, t) {
					hit = true
				}
			}
		}
		if !hit {
			return false
		}
	}
	for k, pattern := range m.Tags {
		v, ok := f.Tags[k]
		if !ok || !globMatch(pattern, v) {
			return false
		}
	}
	return true
}

// Match returns the rules that take the finding, in file order.
func (rs *RuleSet) Match(f *Finding) []*Rule {
	var out []*Rule
	for _, r := range rs.Rules {
		if r.Matches(f) {
			out = append(out, r)
		}
	}
	return out
}

// DefaultInputs are the finding fields a rule without inputs passes to its
// playbook, under the same names, when the finding has them.
var DefaultInputs = []string{"instance_id", "access_key_id", "user_name", "role_name", "account", "region", "bucket"}

// PlaybookInputs returns the playbook inputs for a finding. A rule's own inputs
// are all returned, references resolved. A rule without inputs passes the
// DefaultInputs the finding has; when declared is not nil only those the
// playbook declares are passed, so a playbook is not handed inputs it does
// not know.
func (r *Rule) PlaybookInputs(f *Finding, declared []string) map[string]any {
	out := map[string]any{}
	if len(r.Inputs) == 0 {
		m := f.Map()
		for _, name := range DefaultInputs {
			if declared != nil && !slices.Contains(declared, name) {
				continue
			}
			if v, _ := m[name].(string); v != "" {
				out[name] = v
			}
		}
		return out
	}
	m := f.Map()
	for _, in := range r.Inputs {
		if in.parts == nil {
			out[in.Name] = in.Literal
			continue
		}
		if len(in.parts) == 1 {
			out[in.Name] = lookupField(m, in.parts[0].field)
			continue
		}
		var b strings.Builder
		for _, part := range in.parts {
			if part.field == "" {
				b.WriteString(part.text)
				continue
			}
			b.WriteString(fmt.Sprint(lookupField(m, part.field)))
		}
		out[in.Name] = b.String()
	}
	return out
}

func lookupField(m map[string]any, field string) any {
	if tag, ok := strings.CutPrefix(field, "tags."); ok {
		tags, _ := m["tags"].(map[string]any)
		v, _ := tags[tag].(string)
		return v
	}
	return m[field]
}
