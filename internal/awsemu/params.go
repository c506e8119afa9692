package awsemu

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Limits that keep a hostile form from costing more than a real one could.
const (
	maxFormParams   = 5000
	maxFormKeyDepth = 12
	maxListIndex    = 100000
)

// params is the tree a query-protocol form decodes to. "Filter.1.Value.2=x"
// becomes Filter → 1 → Value → 2 = "x". awsQuery wraps list members in a
// "member" level (Names.member.1); EC2 does not (InstanceId.1). Both are read
// the same way through list.
type params struct {
	value    string
	set      bool
	children map[string]*params
}

var errFormTooLarge = errors.New("too many parameters")

// parseParams builds the tree of a decoded form. It fails only when the form
// exceeds the limits above or a key is malformed (empty segment).
func parseParams(values url.Values) (*params, error) {
	root := &params{}
	n := 0
	for key, vals := range values {
		n += len(vals)
		if n > maxFormParams {
			return nil, errFormTooLarge
		}
		if key == "" {
			continue
		}
		segs := strings.Split(key, ".")
		if len(segs) > maxFormKeyDepth {
			return nil, errors.New("parameter name " + strconv.Quote(key) + " is nested too deeply")
		}
		node := root
		for _, s := range segs {
			if s == "" {
				return nil, errors.New("parameter name " + strconv.Quote(key) + " has an empty segment")
			}
			if node.children == nil {
				node.children = make(map[string]*params)
			}
			child, ok := node.children[s]
			if !ok {
				child = &params{}
				node.children[s] = child
			}
			node = child
		}
		if len(vals) > 0 {
			node.value = vals[0]
			node.set = true
		}
	}
	return root, nil
}

// child returns the named subtree, or nil. A dotted name descends.
func (p *params) child(name string) *params {
	node := p
	for s := range strings.SplitSeq(name, ".") {
		if node == nil || node.children == nil {
			return nil
		}
		node = node.children[s]
	}
	return node
}

// str returns the value at name, or "".
func (p *params) str(name string) string {
	if c := p.child(name); c != nil {
		return c.value
	}
	return ""
}

// has reports whether a value was given at name.
func (p *params) has(name string) bool {
	c := p.child(name)
	return c != nil && c.set
}

// boolean reads name as a boolean; absent means false.
func (p *params) boolean(name string) bool {
	return strings.EqualFold(p.str(name), "true")
}

// optBool reads name as a boolean and reports whether it was given.
func (p *params) optBool(name string) (value, ok bool) {
	if !p.has(name) {
		return false, false
	}
	return p.boolean(name), true
}

// integer reads name as an integer, reporting whether it was present; a
// malformed number is an error naming the parameter.
func (p *params) integer(name string) (int64, bool, error) {
	if !p.has(name) {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(p.str(name)), 10, 64)
	if err != nil {
		return 0, true, errors.New("Invalid value '" + p.str(name) + "' for " + name)
	}
	return v, true, nil
}

// list returns the members of the list at name in index order, reading both
// the flattened (Name.1) and the member-wrapped (Name.member.1) forms.
func (p *params) list(name string) []*params {
	c := p.child(name)
	if c == nil || c.children == nil {
		return nil
	}
	if m, ok := c.children["member"]; ok && m.children != nil {
		c = m
	}
	return c.indexed()
}

// indexed returns the numbered children of p in index order.
func (p *params) indexed() []*params {
	type indexed struct {
		i int
		p *params
	}
	var items []indexed
	for k, v := range p.children {
		i, err := strconv.Atoi(k)
		if err != nil || i < 1 || i > maxListIndex {
			continue
		}
		items = append(items, indexed{i, v})
	}
	slices.SortFunc(items, func(a, b indexed) int { return a.i - b.i })
	out := make([]*params, len(items))
	for i, it := range items {
		out[i] = it.p
	}
	return out
}

// strings returns the values of the list at name.
func (p *params) strings(name string) []string {
	items := p.list(name)
	if len(items) == 0 {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.value)
	}
	return out
}

// flatten renders the tree back as a JSON-friendly value for CloudTrail's
// requestParameters: lists become arrays, structures maps with lower-camel
// keys. redact names keys whose values must never be recorded.
func (p *params) flatten(redact func(string) bool) any {
	if p == nil {
		return nil
	}
	if p.children == nil {
		return p.value
	}
	if m, ok := p.children["member"]; ok && len(p.children) == 1 {
		return m.flatten(redact)
	}
	numeric := true
	for k := range p.children {
		if _, err := strconv.Atoi(k); err != nil {
			numeric = false
			break
		}
	}
	if numeric {
		items := p.indexed()
		out := make([]any, 0, len(items))
		for _, it := range items {
			out = append(out, it.flatten(redact))
		}
		return out
	}
	out := make(map[string]any, len(p.children))
	for k, v := range p.children {
		if redact(k) {
			continue
		}
		out[lowerFirst(k)] = v.flatten(redact)
	}
	return out
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
