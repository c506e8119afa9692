package playbook

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/firebreak-ir/firebreak/controller/selector"
)

var (
	accountIDRe = regexp.MustCompile(`^[0-9]{12}$`)
	ouIDRe      = regexp.MustCompile(`^ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$`)
	regionRe    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
)

// CheckSelector checks a target selector with the dispatcher's grammar
// (package controller/selector). Validate and the Evaluator use it unless
// WithSelectorCheck replaces it.
func CheckSelector(sel string) error {
	_, err := selector.Parse(sel)
	return err
}

// checkSelectorTemplate checks an interpolated selector as far as its
// literal text allows: each term's key must be literal, terms without
// expressions must parse, and a key followed by an expression must be one
// the grammar knows.
func checkSelectorTemplate(parts []Part) error {
	for _, term := range templateTerms(parts) {
		key, val, ok := cutTemplate(term, "=")
		if !ok {
			return fmt.Errorf("selector term %q: want key=value or key!=value", renderTerm(term))
		}
		k, lit := literalText(key)
		if !lit {
			return fmt.Errorf("selector key in %q cannot be an expression", renderTerm(term))
		}
		if v, lit := literalText(val); lit {
			if err := CheckSelector(k + "=" + v); err != nil {
				return err
			}
			continue
		}
		// The value is only known at evaluation; check the key with a value
		// its kind accepts.
		placeholder := "x"
		switch strings.TrimSpace(strings.TrimSuffix(k, "!")) {
		case "role":
			placeholder = "host"
		case "connected", "isolated", "simulated":
			placeholder = "true"
		}
		if err := CheckSelector(k + "=" + placeholder); err != nil {
			return fmt.Errorf("selector term %q: %w", renderTerm(term), errors.Unwrap(err))
		}
	}
	return nil
}

// CheckAccounts checks an accounts target: "all", "ou=ou-…" or comma-joined
// 12-digit account ids.
func CheckAccounts(accounts string) error {
	a := strings.TrimSpace(accounts)
	switch {
	case a == "all":
		return nil
	case strings.HasPrefix(a, "ou="):
		if !ouIDRe.MatchString(strings.TrimPrefix(a, "ou=")) {
			return fmt.Errorf("accounts %q: %q is not an organizational unit id such as ou-ab12-cdef3456", accounts, strings.TrimPrefix(a, "ou="))
		}
		return nil
	case a == "":
		return fmt.Errorf(`accounts is empty; write "all", "ou=ou-…" or account ids`)
	}
	for _, id := range strings.Split(a, ",") {
		if !accountIDRe.MatchString(strings.TrimSpace(id)) {
			return fmt.Errorf("accounts: %q is not a 12-digit AWS account id (or use all, ou=ou-…)", strings.TrimSpace(id))
		}
	}
	return nil
}

func checkAccountsTemplate(parts []Part) error {
	for _, term := range templateTerms(parts) {
		if s, lit := literalText(term); lit {
			s = strings.TrimSpace(s)
			if s == "all" || strings.HasPrefix(s, "ou=") {
				return fmt.Errorf("accounts: %q cannot be combined with other accounts", s)
			}
			if !accountIDRe.MatchString(s) {
				return fmt.Errorf("accounts: %q is not a 12-digit AWS account id", s)
			}
		}
	}
	return nil
}

// CheckRegions checks a list of region names, or the single word "all".
func CheckRegions(regions []string) error {
	if len(regions) == 0 {
		return fmt.Errorf(`regions is empty; write "all" or region names`)
	}
	if len(regions) == 1 && regions[0] == "all" {
		return nil
	}
	for _, r := range regions {
		if !regionRe.MatchString(r) {
			if r == "all" {
				return fmt.Errorf(`regions: "all" cannot be combined with other regions`)
			}
			return fmt.Errorf("regions: %q is not an AWS region name such as eu-west-1", r)
		}
	}
	return nil
}

// templateTerms splits an interpolated string at commas in its literal text.
func templateTerms(parts []Part) [][]Part {
	var terms [][]Part
	var cur []Part
	for _, p := range parts {
		if p.Expr != nil {
			cur = append(cur, p)
			continue
		}
		pieces := strings.Split(p.Text, ",")
		for i, piece := range pieces {
			if i > 0 {
				terms = append(terms, cur)
				cur = nil
			}
			if piece != "" {
				cur = append(cur, Part{Text: piece})
			}
		}
	}
	return append(terms, cur)
}

// cutTemplate cuts a term at the first sep in its literal text.
func cutTemplate(term []Part, sep string) (before, after []Part, found bool) {
	for i, p := range term {
		if p.Expr != nil {
			continue
		}
		if b, a, ok := strings.Cut(p.Text, sep); ok {
			before = append(append([]Part{}, term[:i]...), Part{Text: b})
			after = append([]Part{{Text: a}}, term[i+1:]...)
			return before, after, true
		}
	}
	return nil, nil, false
}

// literalText joins parts that hold no expression.
func literalText(parts []Part) (string, bool) {
	var b strings.Builder
	for _, p := range parts {
		if p.Expr != nil {
			return "", false
		}
		b.WriteString(p.Text)
	}
	return b.String(), true
}

func renderTerm(parts []Part) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Expr != nil {
			b.WriteString(p.Expr.String())
		} else {
			b.WriteString(p.Text)
		}
	}
	return strings.TrimSpace(b.String())
}
