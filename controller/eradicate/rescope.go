package eradicate

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
)

// Rescopes returns the scopes a case's Scope section was built from, as
// responders asked them: one per key and source, not the sessions a scope
// followed (scoping the key again follows them again), each with the
// earliest window start of its runs (the scope's first activity when no
// run said).
func Rescopes(sc *cases.ScopeSection) []eradplan.Rescope {
	if sc == nil {
		return nil
	}
	var out []eradplan.Rescope
	for _, rq := range sc.Requests {
		if rq.Minted {
			continue
		}
		start := rq.Start
		if start.IsZero() {
			start = sc.First
		}
		r := eradplan.Rescope{Key: rq.Key, Source: rq.Source, Start: start.UTC(), Accounts: rq.Accounts, Regions: rq.Regions,
			TrailBucket: rq.TrailBucket, TrailPrefix: rq.TrailPrefix, OrgID: rq.OrgID}
		i := slices.IndexFunc(out, func(o eradplan.Rescope) bool { return sameScope(o, r) })
		switch {
		case i < 0:
			out = append(out, r)
		case !r.Start.IsZero() && (out[i].Start.IsZero() || r.Start.Before(out[i].Start)):
			out[i].Start = r.Start
		}
	}
	return out
}

// sameScope reports whether two scopes read the same thing, their windows
// aside.
func sameScope(a, b eradplan.Rescope) bool {
	return a.Key == b.Key && a.Source == b.Source && a.Accounts == b.Accounts && slices.Equal(a.Regions, b.Regions) &&
		a.TrailBucket == b.TrailBucket && a.TrailPrefix == b.TrailPrefix && a.OrgID == b.OrgID
}

// notRescoped names the plan's scopes that no succeeded scope run of the
// case repeated after the plan and after its last eradication run: a
// verification without one cannot have seen what the attacker made since,
// so it records nothing. The runs are the controller's own records.
func notRescoped(p *eradplan.Plan, r *cases.Report) []string {
	want := p.Rescope
	if len(want) == 0 {
		want = Rescopes(r.Scope)
	}
	since := p.CreatedAt
	for _, a := range r.Actions {
		var rp verifyParams
		if a.Action != Action || json.Unmarshal(a.Params, &rp) != nil || rp.PlanID != p.ID || rp.Verify {
			continue
		}
		if a.CreatedAt.After(since) {
			since = a.CreatedAt
		}
	}
	out := []string{}
	for _, w := range want {
		ok := r.Scope != nil && slices.ContainsFunc(r.Scope.Requests, func(rq cases.ScopeRequest) bool {
			return rq.Key == w.Key && rq.Source == w.Source && rq.Status == "succeeded" && !rq.CreatedAt.Before(since)
		})
		if !ok {
			out = append(out, fmt.Sprintf("key %s: no %s scope of it succeeded since %s (the plan or its last eradication run): "+
				"`firebreak eradicate verify` re-scopes it first", w.Key, w.Source, since.UTC().Format(time.RFC3339)))
		}
	}
	return out
}
