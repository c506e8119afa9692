package eradicate

import (
	"reflect"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
)

func TestRescopes(t *testing.T) {
	const leaked, other, hop = "AKIAIOSFODNN7EXAMPLE", "AKIAOTHERKEYEXAMPLE1", "ASIAQRSTUVWXYZEXAMPL"
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	first := t0.Add(-3 * time.Hour)
	lookup := func(key string, start time.Time) cases.ScopeRequest {
		return cases.ScopeRequest{Key: key, Source: "lookup", Start: start, Accounts: "all", Status: "succeeded"}
	}
	tests := []struct {
		name string
		reqs []cases.ScopeRequest
		want []eradplan.Rescope
	}{
		{name: "no scope section"},
		{name: "the sessions a scope followed are not scoped on their own",
			reqs: []cases.ScopeRequest{lookup(leaked, t0), {Key: hop, Minted: true, Source: "lookup", Start: t0, Accounts: "210987654303"}},
			want: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: t0, Accounts: "all"}}},
		{name: "the same scope twice keeps the earliest window",
			reqs: []cases.ScopeRequest{lookup(leaked, t0), lookup(leaked, t0.Add(-time.Hour)), lookup(leaked, t0.Add(time.Hour))},
			want: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: t0.Add(-time.Hour), Accounts: "all"}}},
		{name: "another source or another key is another scope",
			reqs: []cases.ScopeRequest{lookup(leaked, t0), lookup(other, t0),
				{Key: leaked, Source: "trail", Start: t0, Accounts: "210987654301", TrailBucket: "org-trail", OrgID: "o-abc1234567"}},
			want: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: t0, Accounts: "all"}, {Key: other, Source: "lookup", Start: t0, Accounts: "all"},
				{Key: leaked, Source: "trail", Start: t0, Accounts: "210987654301", TrailBucket: "org-trail", OrgID: "o-abc1234567"}}},
		{name: "a run whose tasks said no window starts at the scope's first activity",
			reqs: []cases.ScopeRequest{lookup(leaked, time.Time{})},
			want: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: first, Accounts: "all"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc *cases.ScopeSection
			if tt.reqs != nil {
				sc = &cases.ScopeSection{Requests: tt.reqs, First: first}
			}
			if got := Rescopes(sc); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
