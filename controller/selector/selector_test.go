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

func FuzzParse(f *testing.F) {
	for _, s := range []string{"all", "role=host,label.env=prod", "hostname=web-*|db-1", "id!=x", "a=,", "label.x=y|z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := selector.Parse(s)
		if err != nil {
			return
		}
		sel.Match(selector.Target{Labels: map[string]string{"x": "y"}})
	})
}
