// Package selector parses and matches run target selectors.
//
// Grammar:
//
//	selector = "all" | term { "," term }
//	term     = key ( "=" | "!=" ) value { "|" value }
//	key      = "id" | "role" | "hostname" | "account" | "region" | "instance_id"
//	         | "connected" | "isolated" | "simulated" | "label." name
//
// Terms are ANDed; the values of one term are alternatives. A value may use
// the glob characters * and ?. Examples: "role=host,label.env=prod",
// "hostname=web-*|db-1", "id=3f2a…".
package selector

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// MaxLength caps a selector's length.
const MaxLength = 4096

// Target is what a selector is matched against.
type Target struct {
	ID         string
	Role       string
	Hostname   string
	Account    string
	Region     string
	InstanceID string
	Labels     map[string]string
	Connected  bool
	Isolated   bool
	Simulated  bool
}

// Selector is a parsed selector.
type Selector struct {
	all   bool
	terms []term
	text  string
}

type term struct {
	key    string
	label  string
	negate bool
	values []string
}

var (
	labelName = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)
	valueRE   = regexp.MustCompile(`^[A-Za-z0-9_.:/@+*?-]{1,256}$`)
)

var fixedKeys = map[string]bool{
	"id": true, "role": true, "hostname": true, "account": true, "region": true,
	"instance_id": true, "connected": true, "isolated": true, "simulated": true,
}

// Parse parses a selector, returning an error that names the bad term.
func Parse(s string) (*Selector, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return nil, fmt.Errorf("empty selector: use \"all\" or terms such as role=host,label.env=prod")
	}
	if len(text) > MaxLength {
		return nil, fmt.Errorf("selector is %d characters long; the limit is %d", len(text), MaxLength)
	}
	if text == "all" {
		return &Selector{all: true, text: text}, nil
	}
	sel := &Selector{text: text}
	for i, raw := range strings.Split(text, ",") {
		t, err := parseTerm(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("selector term %d %q: %w", i+1, raw, err)
		}
		sel.terms = append(sel.terms, t)
	}
	return sel, nil
}

func parseTerm(raw string) (term, error) {
	if raw == "" {
		return term{}, fmt.Errorf("empty term (two commas in a row?)")
	}
	if raw == "all" {
		return term{}, fmt.Errorf(`"all" cannot be combined with other terms`)
	}
	var t term
	var key, val string
	if k, v, ok := strings.Cut(raw, "!="); ok {
		key, val, t.negate = k, v, true
	} else if k, v, ok := strings.Cut(raw, "="); ok {
		key, val = k, v
	} else {
		return term{}, fmt.Errorf("want key=value or key!=value")
	}
	key = strings.TrimSpace(key)
	switch {
	case strings.HasPrefix(key, "label."):
		t.key, t.label = "label", strings.TrimPrefix(key, "label.")
		if !labelName.MatchString(t.label) {
			return term{}, fmt.Errorf("label name %q is not valid", t.label)
		}
	case fixedKeys[key]:
		t.key = key
	default:
		return term{}, fmt.Errorf("unknown key %q (keys: id, role, hostname, account, region, instance_id, connected, isolated, simulated, label.NAME)", key)
	}
	for _, v := range strings.Split(strings.TrimSpace(val), "|") {
		v = strings.TrimSpace(v)
		if !valueRE.MatchString(v) {
			return term{}, fmt.Errorf("value %q is empty or has characters outside A-Z a-z 0-9 _ . : / @ + - * ?", v)
		}
		switch t.key {
		case "role":
			if v != "host" && v != "worker" && !strings.ContainsAny(v, "*?") {
				return term{}, fmt.Errorf("unknown role %q (want host or worker)", v)
			}
		case "connected", "isolated", "simulated":
			if v != "true" && v != "false" {
				return term{}, fmt.Errorf("%s takes true or false, not %q", t.key, v)
			}
		}
		t.values = append(t.values, v)
	}
	return t, nil
}

// String returns the selector as given.
func (s *Selector) String() string { return s.text }

// Match reports whether the target satisfies every term.
func (s *Selector) Match(t Target) bool {
	if s.all {
		return true
	}
	for _, tm := range s.terms {
		var got string
		present := true
		switch tm.key {
		case "id":
			got = t.ID
		case "role":
			got = t.Role
		case "hostname":
			got = t.Hostname
		case "account":
			got = t.Account
		case "region":
			got = t.Region
		case "instance_id":
			got = t.InstanceID
		case "connected":
			got = fmt.Sprint(t.Connected)
		case "isolated":
			got = fmt.Sprint(t.Isolated)
		case "simulated":
			got = fmt.Sprint(t.Simulated)
		case "label":
			got, present = t.Labels[tm.label]
		}
		hit := present && anyMatch(tm.values, got)
		if hit == tm.negate {
			return false
		}
	}
	return true
}

func anyMatch(patterns []string, v string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, v); ok {
			return true
		}
	}
	return false
}
