package awsemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// policyKind says where a policy document is attached, which decides the
// elements it must and must not carry.
type policyKind int

const (
	// identityPolicy is attached to a user or role: Resource, no Principal.
	identityPolicy policyKind = iota
	// trustPolicy is a role's assume-role policy: Principal, no Resource.
	trustPolicy
	// resourcePolicy is attached to a resource (a bucket): both.
	resourcePolicy
)

// policyDocument is a parsed IAM policy.
type policyDocument struct {
	Version    string
	Statements []*statement
}

// statement is one parsed policy statement.
type statement struct {
	Sid          string
	Deny         bool
	Actions      []string
	NotAction    bool
	Resources    []string
	NotResource  bool
	Principal    *principalSpec
	NotPrincipal bool
	Conditions   []condition
}

// principalSpec is a statement's Principal element.
type principalSpec struct {
	Any       bool
	AWS       []string
	Service   []string
	Federated []string
}

// condition is one (operator, key, values) test of a Condition block.
type condition struct {
	Operator  string // base operator without IfExists or set qualifier
	IfExists  bool
	Qualifier string // "", "ForAnyValue" or "ForAllValues"
	Key       string // lower-cased condition key
	Values    []string
}

// maxPolicyBytes bounds what parsePolicy will read; IAM's largest document
// (a managed policy) is far smaller.
const maxPolicyBytes = 131072

var conditionOperators = map[string]bool{
	"StringEquals": true, "StringNotEquals": true, "StringEqualsIgnoreCase": true,
	"StringNotEqualsIgnoreCase": true, "StringLike": true, "StringNotLike": true,
	"NumericEquals": true, "NumericNotEquals": true, "NumericLessThan": true,
	"NumericLessThanEquals": true, "NumericGreaterThan": true, "NumericGreaterThanEquals": true,
	"DateEquals": true, "DateNotEquals": true, "DateLessThan": true, "DateLessThanEquals": true,
	"DateGreaterThan": true, "DateGreaterThanEquals": true, "Bool": true, "BinaryEquals": true,
	"IpAddress": true, "NotIpAddress": true, "ArnEquals": true, "ArnLike": true,
	"ArnNotEquals": true, "ArnNotLike": true, "Null": true,
}

// negatedOperators hold when the key is absent, as IAM evaluates them.
var negatedOperators = map[string]bool{
	"StringNotEquals": true, "StringNotEqualsIgnoreCase": true, "StringNotLike": true,
	"NumericNotEquals": true, "DateNotEquals": true, "NotIpAddress": true,
	"ArnNotEquals": true, "ArnNotLike": true,
}

// parsePolicy parses and validates a policy document of the given kind. The
// error text is what IAM puts in MalformedPolicyDocument.
func parsePolicy(doc string, kind policyKind) (*policyDocument, error) {
	if len(doc) > maxPolicyBytes {
		return nil, errors.New("Policy document is too large.")
	}
	trimmed := strings.TrimLeftFunc(doc, unicode.IsSpace)
	if !strings.HasPrefix(trimmed, "{") {
		return nil, errors.New("Syntax errors in policy.")
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, errors.New("Syntax errors in policy.")
	}
	if dec.More() {
		return nil, errors.New("Syntax errors in policy.")
	}
	out := &policyDocument{}
	for k, v := range raw {
		switch k {
		case "Version":
			if err := json.Unmarshal(v, &out.Version); err != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
			if out.Version != "2012-10-17" && out.Version != "2008-10-17" {
				return nil, errors.New("The policy must contain a valid version string")
			}
		case "Id":
		case "Statement":
			stmts, err := parseStatements(v, kind)
			if err != nil {
				return nil, err
			}
			out.Statements = stmts
		default:
			return nil, errors.New("Syntax errors in policy.")
		}
	}
	if _, ok := raw["Statement"]; !ok {
		return nil, errors.New("Syntax errors in policy.")
	}
	return out, nil
}

func parseStatements(raw json.RawMessage, kind policyKind) ([]*statement, error) {
	var list []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("Syntax errors in policy.")
		}
	} else {
		list = []json.RawMessage{raw}
	}
	out := make([]*statement, 0, len(list))
	for _, r := range list {
		st, err := parseStatement(r, kind)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func parseStatement(raw json.RawMessage, kind policyKind) (*statement, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, errors.New("Syntax errors in policy.")
	}
	st := &statement{}
	var err error
	for k, v := range fields {
		switch k {
		case "Sid":
			if json.Unmarshal(v, &st.Sid) != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
		case "Effect":
			var effect string
			if json.Unmarshal(v, &effect) != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
			switch effect {
			case "Allow":
			case "Deny":
				st.Deny = true
			default:
				return nil, errors.New("Invalid effect: " + effect)
			}
		case "Action", "NotAction":
			if st.Actions != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
			if st.Actions, err = stringOrList(v); err != nil {
				return nil, err
			}
			st.NotAction = k == "NotAction"
			for _, a := range st.Actions {
				if a != "*" && !strings.Contains(a, ":") {
					return nil, fmt.Errorf("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")
				}
			}
		case "Resource", "NotResource":
			if st.Resources != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
			if st.Resources, err = stringOrList(v); err != nil {
				return nil, err
			}
			st.NotResource = k == "NotResource"
			for _, r := range st.Resources {
				if r != "*" && !strings.HasPrefix(r, "arn:") {
					return nil, fmt.Errorf("Resource %s must be in ARN format or \"*\".", r)
				}
			}
		case "Principal", "NotPrincipal":
			if st.Principal != nil {
				return nil, errors.New("Syntax errors in policy.")
			}
			if st.Principal, err = parsePrincipal(v); err != nil {
				return nil, err
			}
			st.NotPrincipal = k == "NotPrincipal"
		case "Condition":
			if st.Conditions, err = parseConditions(v); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("Syntax errors in policy.")
		}
	}
	if _, ok := fields["Effect"]; !ok {
		return nil, errors.New("Syntax errors in policy.")
	}
	if st.Actions == nil {
		return nil, errors.New("Policy statement must contain actions.")
	}
	switch kind {
	case identityPolicy:
		if st.Principal != nil {
			return nil, errors.New("Policy document should not specify a principal.")
		}
		if st.Resources == nil {
			return nil, errors.New("Policy statement must contain resources.")
		}
	case trustPolicy:
		if st.Principal == nil {
			return nil, errors.New("Missing required field Principal")
		}
		if st.Resources != nil {
			return nil, errors.New("Has prohibited field Resource.")
		}
	case resourcePolicy:
		if st.Principal == nil {
			return nil, errors.New("Missing required field Principal")
		}
		if st.Resources == nil {
			return nil, errors.New("Missing required field Resource")
		}
	}
	return st, nil
}

// stringOrList reads a JSON string or array of strings; an empty array is a
// syntax error as IAM sees it.
func stringOrList(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, errors.New("Syntax errors in policy.")
	}
	return many, nil
}

func parsePrincipal(raw json.RawMessage) (*principalSpec, error) {
	var star string
	if err := json.Unmarshal(raw, &star); err == nil {
		if star != "*" {
			return nil, errors.New("Invalid principal in policy: " + star)
		}
		return &principalSpec{Any: true}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) == 0 {
		return nil, errors.New("Syntax errors in policy.")
	}
	p := &principalSpec{}
	for k, v := range m {
		vals, err := stringOrList(v)
		if err != nil {
			return nil, err
		}
		switch k {
		case "AWS":
			for _, a := range vals {
				if a == "*" {
					p.Any = true
					continue
				}
				if !isAccountID(a) && !strings.HasPrefix(a, "arn:") {
					return nil, errors.New("Invalid principal in policy: \"AWS\":\"" + a + "\"")
				}
				p.AWS = append(p.AWS, a)
			}
		case "Service":
			p.Service = append(p.Service, vals...)
		case "Federated":
			p.Federated = append(p.Federated, vals...)
		case "CanonicalUser":
		default:
			return nil, errors.New("Invalid principal in policy: " + k)
		}
	}
	return p, nil
}

func parseConditions(raw json.RawMessage) ([]condition, error) {
	var ops map[string]map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&ops); err != nil {
		return nil, errors.New("Syntax errors in policy.")
	}
	var out []condition
	for op, keys := range ops {
		c := condition{Operator: op}
		if q, rest, ok := strings.Cut(op, ":"); ok {
			if q != "ForAnyValue" && q != "ForAllValues" {
				return nil, errors.New("Invalid Condition type : " + op)
			}
			c.Qualifier, c.Operator = q, rest
		}
		if base, ok := strings.CutSuffix(c.Operator, "IfExists"); ok && base != "" {
			c.Operator, c.IfExists = base, true
		}
		if !conditionOperators[c.Operator] || (c.IfExists && c.Operator == "Null") {
			return nil, errors.New("Invalid Condition type : " + op)
		}
		for key, v := range keys {
			vals, err := conditionValues(v)
			if err != nil {
				return nil, err
			}
			cc := c
			cc.Key = strings.ToLower(key)
			cc.Values = vals
			out = append(out, cc)
		}
	}
	// Map iteration order is random; evaluation does not care, but a stable
	// order keeps dumps and errors reproducible.
	slices.SortFunc(out, func(a, b condition) int {
		return strings.Compare(a.Operator+"\x00"+a.Key, b.Operator+"\x00"+b.Key)
	})
	return out, nil
}

// conditionValues reads a condition's value or values; numbers and booleans
// are compared in their textual form.
func conditionValues(raw json.RawMessage) ([]string, error) {
	var list []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("Syntax errors in policy.")
		}
	} else {
		list = []json.RawMessage{raw}
	}
	out := make([]string, 0, len(list))
	for _, r := range list {
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("Syntax errors in policy.")
		}
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case json.Number:
			out = append(out, x.String())
		case bool:
			out = append(out, strconv.FormatBool(x))
		default:
			return nil, errors.New("Syntax errors in policy.")
		}
	}
	return out, nil
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// requestContext is what a policy is evaluated against.
type requestContext struct {
	Action   string
	Resource string
	// Keys holds the condition keys, lower-cased, each with its values.
	Keys map[string][]string
	// Caller identifies the principal for Principal matching (trust and
	// resource policies).
	Caller *callerIdentity
}

// callerIdentity is what Principal elements are matched against.
type callerIdentity struct {
	Account string
	// ARNs names the principal: a user ARN, or a role ARN and its
	// assumed-role session ARN, or the account root ARN.
	ARNs []string
}

// decision is the outcome of evaluating one or more policies.
type decision int

const (
	// implicitDeny: no statement applies.
	implicitDeny decision = iota
	// allowed: an Allow statement applies and no Deny does.
	allowed
	// explicitDeny: a Deny statement applies.
	explicitDeny
)

// evaluation is the result of matching a request against a policy.
type evaluation struct {
	Decision decision
	// NamedPrincipal is set when an Allow matched the caller by its own ARN
	// rather than by "*" or its account, which decides whether the caller's
	// identity policies must also allow a cross-principal action.
	NamedPrincipal bool
}

// evaluate applies the document to the request: a matching Deny wins over a
// matching Allow; neither is an implicit deny.
func (d *policyDocument) evaluate(rc *requestContext) evaluation {
	var ev evaluation
	for _, st := range d.Statements {
		named, ok := st.matches(rc)
		if !ok {
			continue
		}
		if st.Deny {
			return evaluation{Decision: explicitDeny}
		}
		ev.Decision = allowed
		ev.NamedPrincipal = ev.NamedPrincipal || named
	}
	return ev
}

func (st *statement) matches(rc *requestContext) (namedPrincipal, ok bool) {
	actionHit := slices.ContainsFunc(st.Actions, func(a string) bool { return globMatch(a, rc.Action, true) })
	if actionHit == st.NotAction {
		return false, false
	}
	if st.Resources != nil {
		hit := false
		for _, r := range st.Resources {
			pattern, ok := substituteVariables(r, rc.Keys)
			if ok && globMatch(pattern, rc.Resource, false) {
				hit = true
				break
			}
		}
		if hit == st.NotResource {
			return false, false
		}
	}
	if st.Principal != nil {
		hit, named := st.Principal.matches(rc.Caller)
		if hit == st.NotPrincipal {
			return false, false
		}
		namedPrincipal = named && !st.NotPrincipal
	}
	for _, c := range st.Conditions {
		if !c.holds(rc.Keys) {
			return false, false
		}
	}
	return namedPrincipal, true
}

// matches reports whether the caller is one of the principals, and whether it
// was named by ARN.
func (p *principalSpec) matches(caller *callerIdentity) (hit, named bool) {
	if caller == nil {
		return false, false
	}
	for _, a := range p.AWS {
		if slices.Contains(caller.ARNs, a) {
			return true, true
		}
	}
	if p.Any {
		return true, false
	}
	for _, a := range p.AWS {
		if a == caller.Account || a == "arn:aws:iam::"+caller.Account+":root" {
			return true, false
		}
	}
	return false, false
}

// substituteVariables replaces ${key} policy variables with the request's
// single value for key. It reports false when a variable has no value, in
// which case the element cannot match, as in IAM.
func substituteVariables(s string, keys map[string][]string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, true
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), true
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String(), true
		}
		b.WriteString(s[:i])
		name := s[i+2 : i+j]
		switch name {
		case "*", "?", "$":
			b.WriteString(name)
		default:
			vals := keys[strings.ToLower(name)]
			if len(vals) != 1 {
				return "", false
			}
			b.WriteString(vals[0])
		}
		s = s[i+j+1:]
	}
}

// holds evaluates the condition against the request's keys.
func (c condition) holds(keys map[string][]string) bool {
	vals, present := keys[c.Key]
	if c.Operator == "Null" {
		want := len(c.Values) > 0 && strings.EqualFold(c.Values[0], "true")
		return want == !present
	}
	if !present || len(vals) == 0 {
		switch {
		case c.Qualifier == "ForAllValues":
			return true
		case c.Qualifier == "ForAnyValue":
			return false
		case c.IfExists:
			return true
		default:
			return negatedOperators[c.Operator]
		}
	}
	policyValues := make([]string, 0, len(c.Values))
	for _, v := range c.Values {
		if s, ok := substituteVariables(v, keys); ok {
			policyValues = append(policyValues, s)
		}
	}
	positive := c.positiveOperator()
	negated := negatedOperators[c.Operator]
	one := func(v string) bool {
		hit := slices.ContainsFunc(policyValues, func(p string) bool { return compare(positive, p, v) })
		return hit != negated
	}
	switch c.Qualifier {
	case "ForAllValues":
		return !slices.ContainsFunc(vals, func(v string) bool { return !one(v) })
	case "ForAnyValue":
		return slices.ContainsFunc(vals, one)
	default:
		if negated {
			// A negated test holds when no request value matches.
			return !slices.ContainsFunc(vals, func(v string) bool { return !one(v) })
		}
		return slices.ContainsFunc(vals, one)
	}
}

// positiveOperator maps a negated operator to the test it negates.
func (c condition) positiveOperator() string {
	switch c.Operator {
	case "StringNotEquals":
		return "StringEquals"
	case "StringNotEqualsIgnoreCase":
		return "StringEqualsIgnoreCase"
	case "StringNotLike":
		return "StringLike"
	case "NumericNotEquals":
		return "NumericEquals"
	case "DateNotEquals":
		return "DateEquals"
	case "NotIpAddress":
		return "IpAddress"
	case "ArnNotEquals":
		return "ArnEquals"
	case "ArnNotLike":
		return "ArnLike"
	}
	return c.Operator
}

// compare applies a positive operator to a policy value and a request value.
func compare(op, policy, request string) bool {
	switch op {
	case "StringEquals", "BinaryEquals":
		return policy == request
	case "StringEqualsIgnoreCase":
		return strings.EqualFold(policy, request)
	case "StringLike":
		return globMatch(policy, request, false)
	case "ArnEquals", "ArnLike":
		return arnLike(policy, request)
	case "Bool":
		return strings.EqualFold(policy, request)
	case "NumericEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals":
		p, err1 := strconv.ParseFloat(policy, 64)
		r, err2 := strconv.ParseFloat(request, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		return ordered(op, p, r)
	case "DateEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals":
		p, ok1 := parsePolicyTime(policy)
		r, ok2 := parsePolicyTime(request)
		if !ok1 || !ok2 {
			return false
		}
		return ordered(op, float64(p.UnixNano()), float64(r.UnixNano()))
	case "IpAddress":
		pfx, err := netip.ParsePrefix(policy)
		if err != nil {
			a, err2 := netip.ParseAddr(policy)
			if err2 != nil {
				return false
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		a, err := netip.ParseAddr(request)
		return err == nil && pfx.Contains(a.Unmap())
	}
	return false
}

// ordered compares the request value r with the policy value p: "less than"
// means the request is less than the policy value.
func ordered(op string, p, r float64) bool {
	switch {
	case strings.HasSuffix(op, "LessThanEquals"):
		return r <= p
	case strings.HasSuffix(op, "LessThan"):
		return r < p
	case strings.HasSuffix(op, "GreaterThanEquals"):
		return r >= p
	case strings.HasSuffix(op, "GreaterThan"):
		return r > p
	default:
		return r == p
	}
}

// parsePolicyTime reads an ISO 8601 date or date-time, or epoch seconds.
func parsePolicyTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), true
	}
	return time.Time{}, false
}

// arnLike matches an ARN against a pattern component by component, so a
// wildcard never spans the colons that separate partition, service, region,
// account and resource.
func arnLike(pattern, arn string) bool {
	pp := strings.SplitN(pattern, ":", 6)
	ap := strings.SplitN(arn, ":", 6)
	if len(pp) != 6 || len(ap) != 6 {
		return pattern == arn
	}
	for i := range pp {
		if !globMatch(pp[i], ap[i], false) {
			return false
		}
	}
	return true
}

// globMatch matches s against a pattern where * is any run of characters and
// ? any one character. It runs in O(len(pattern)·len(s)) worst case, with no
// recursion, so hostile patterns cannot blow up.
func globMatch(pattern, s string, foldCase bool) bool {
	if foldCase {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
	px, sx := 0, 0
	starP, starS := -1, -1
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case starP >= 0:
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// policySize counts a document's characters other than white space, which is
// how IAM measures inline policies against its quotas.
func policySize(doc string) int {
	n := 0
	for _, r := range doc {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}
