package selector_test

import (
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/selector"
)

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty selector"},
		{"role", `selector term 1 "role": want key=value`},
		{"role=hots", `unknown role "hots"`},
		{"colour=red", `unknown key "colour"`},
		{"role=host,,id=x", "selector term 2 \"\": empty term"},
		{"all,role=host", `"all" cannot be combined`},
		{"label.=x", `label name "" is not valid`},
		{"hostname=a b", `has characters outside`},
		{"hostname=web[1]", "has characters outside"},
		{"connected=yes", "connected takes true or false"},
		{"id=", "is empty"},
		{strings.Repeat("a", selector.MaxLength+1), "the limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := selector.Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) error = %v, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	web := selector.Target{ID: "a1", Role: "host", Hostname: "web-1", Labels: map[string]string{"env": "prod"}, Connected: true}
	db := selector.Target{ID: "b2", Role: "host", Hostname: "db-1", Labels: map[string]string{"env": "dev"}}
	worker := selector.Target{ID: "w1", Role: "worker", Hostname: "worker", Account: "111122223333"}
	tests := []struct {
		sel  string
		want []string
	}{
		{"all", []string{"a1", "b2", "w1"}},
		{"role=host", []string{"a1", "b2"}},
		{"role=host,label.env=prod", []string{"a1"}},
		{"label.env!=prod", []string{"b2", "w1"}},
		{"hostname=web-*|db-1", []string{"a1", "b2"}},
		{"id=w1", []string{"w1"}},
		{"account=1111*", []string{"w1"}},
		{"connected=true", []string{"a1"}},
		{"role=host,connected=false", []string{"b2"}},
		{"label.team=x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s, err := selector.Parse(tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range []selector.Target{web, db, worker} {
				if s.Match(tg) {
					got = append(got, tg.ID)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("matched %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzParse checks the selector's meaning, not only that it does not panic:
// "all" selects everything; a selector selects a target exactly when every
// one of its terms alone does (a parse never selects more than its terms
// allow); and k!=v selects exactly the targets k=v does not.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"all", "role=host,label.env=prod", "hostname=web-*|db-1", "id!=x", "a=,", "label.x=y|z", "connected=true,isolated!=true"} {
		f.Add(s, "web-1", "prod")
	}
	f.Fuzz(func(t *testing.T, s, name, label string) {
		sel, err := selector.Parse(s)
		if err != nil {
			return
		}
		targets := []selector.Target{
			{},
			{ID: name, Role: "host", Hostname: name, Account: "111111111111", Region: "eu-west-1", InstanceID: "i-0" + name,
				Labels: map[string]string{"x": "y", "env": label, name: label}, Connected: true},
			{ID: label, Role: "worker", Hostname: label, Account: name, Region: name, Labels: map[string]string{label: name},
				Isolated: true, Simulated: true},
		}
		text := strings.TrimSpace(s)
		if text == "all" {
			for _, tg := range targets {
				if !sel.Match(tg) {
					t.Fatalf("all did not select %+v", tg)
				}
			}
			return
		}
		var terms []*selector.Selector
		var negated []*selector.Selector
		for _, raw := range strings.Split(text, ",") {
			term, err := selector.Parse(raw)
			if err != nil {
				t.Fatalf("the selector %q parsed but its term %q does not: %v", s, raw, err)
			}
			terms = append(terms, term)
			flipped := strings.Replace(raw, "!=", "=", 1)
			if flipped == raw {
				flipped = strings.Replace(raw, "=", "!=", 1)
			}
			neg, err := selector.Parse(flipped)
			if err != nil {
				t.Fatalf("term %q parsed but its negation %q does not: %v", raw, flipped, err)
			}
			negated = append(negated, neg)
		}
		for _, tg := range targets {
			all := true
			for i, term := range terms {
				hit := term.Match(tg)
				all = all && hit
				if negated[i].Match(tg) == hit {
					t.Fatalf("term %q and its negation %q agree (%v) on %+v", terms[i], negated[i], hit, tg)
				}
			}
			if sel.Match(tg) != all {
				t.Fatalf("%q selects %+v: %v, but its terms together say %v", s, tg, sel.Match(tg), all)
			}
		}
	})
}
