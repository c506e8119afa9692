package cases

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
)

// ScopeActionName is the action whose results make a report's Scope
// section.
const ScopeActionName = "aws-credential-scope"

// ScopeSection is what the case's aws-credential-scope runs found: the
// accounts, regions and sessions the credential used, and what it
// created or changed, by class. It is built from the workers' results,
// which are what CloudTrail recorded as those workers read it.
type ScopeSection struct {
	// Keys are the keys scoped, as asked.
	Keys []string `json:"keys"`
	// Sources are the sources read (lookup, trail).
	Sources []string `json:"sources"`
	// Events counts the matched events over every task.
	Events int `json:"events"`
	// Accounts and Regions are where the credential acted.
	Accounts []string `json:"accounts"`
	Regions  []string `json:"regions"`
	// Sessions are the credentials of the chain, the scoped keys included.
	Sessions []*trailscope.Credential `json:"sessions"`
	// Places are the accounts and regions with first and last activity.
	Places []*trailscope.Place `json:"places"`
	// ByClass counts the events of each class.
	ByClass map[trailscope.Class]int `json:"by_class"`
	// Artifacts are what the writes left, oldest first.
	Artifacts []trailscope.Artifact `json:"artifacts"`
	// Recon counts reconnaissance calls by name; DataByBucket data events
	// by bucket.
	Recon        map[string]int `json:"reconnaissance"`
	DataByBucket map[string]int `json:"data_by_bucket"`
	First        time.Time      `json:"first,omitzero"`
	Last         time.Time      `json:"last,omitzero"`
	// Runs are the scope runs it was built from.
	Runs []string `json:"runs"`
	// Requests are the scope runs as they were asked, oldest first: what
	// `eradicate verify` re-runs to see what the key did since.
	Requests []ScopeRequest `json:"requests"`
}

// ScopeRequest is one aws-credential-scope run of the case as it was asked:
// the key, the source and the window's start as its tasks resolved it.
type ScopeRequest struct {
	RunID     string    `json:"run_id"`
	CreatedAt time.Time `json:"created_at"`
	// Status is the run's status name (succeeded, failed…).
	Status string `json:"status"`
	// Key is the key scoped.
	Key string `json:"access_key_id"`
	// Minted is set when the key is a session (ASIA…) the case's scope
	// followed from another key the case scoped (a later round of the same
	// scope), not a key a responder asked for.
	Minted bool `json:"minted,omitempty"`
	// Source is lookup or trail.
	Source string `json:"source"`
	// Start is the window's start: the run's start parameter (RFC 3339, or
	// a duration ago counted from the run's creation; 7 days when absent),
	// the operator's word as the controller recorded it, not a worker's;
	// zero when unreadable.
	Start time.Time `json:"start,omitzero"`
	// Accounts is the run's account selector ("all", "ID,ID", "ou=NAME").
	Accounts string `json:"accounts"`
	// Regions, TrailBucket, TrailPrefix and OrgID are the run's parameters
	// of the same names.
	Regions     []string `json:"regions,omitempty"`
	TrailBucket string   `json:"trail_bucket,omitempty"`
	TrailPrefix string   `json:"trail_prefix,omitempty"`
	OrgID       string   `json:"org_id,omitempty"`
}

// scopeParams are the aws-credential-scope parameters a request keeps.
type scopeParams struct {
	Key         string   `json:"access_key_id"`
	Start       string   `json:"start"`
	Source      string   `json:"source"`
	Regions     []string `json:"regions"`
	TrailBucket string   `json:"trail_bucket"`
	TrailPrefix string   `json:"trail_prefix"`
	OrgID       string   `json:"org_id"`
}

// request records one scope run as asked.
func (s *ScopeSection) request(run *store.Run) {
	var p scopeParams
	if json.Unmarshal(run.ParamsJSON, &p) != nil || p.Key == "" {
		return
	}
	if p.Source == "" {
		p.Source = "lookup"
	}
	rq := ScopeRequest{RunID: run.ID, CreatedAt: run.CreatedAt, Status: runStatusName(run.Status), Key: p.Key, Source: p.Source,
		Accounts: run.Accounts, Regions: p.Regions, TrailBucket: p.TrailBucket, TrailPrefix: p.TrailPrefix, OrgID: p.OrgID,
		Start: windowStart(p.Start, run.CreatedAt)}
	s.Requests = append(s.Requests, rq)
}

var daysAgoRE = regexp.MustCompile(`^(\d{1,4})d$`)

// windowStart resolves aws-credential-scope's start parameter as the action
// does, against the run's creation: an RFC 3339 time, a duration ago (Go
// durations, plus Nd), 7 days when empty; zero when unreadable.
func windowStart(v string, created time.Time) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		v = "7d"
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC()
	}
	if m := daysAgoRE.FindStringSubmatch(v); m != nil {
		if n, _ := strconv.Atoi(m[1]); n <= 3650 {
			return created.Add(-time.Duration(n) * 24 * time.Hour).UTC()
		}
		return time.Time{}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return created.Add(-d).UTC()
	}
	return time.Time{}
}

// scopeResult is the part of aws-credential-scope's result a report reads.
type scopeResult struct {
	Source string            `json:"source"`
	Key    string            `json:"access_key_id"`
	Scope  *trailscope.Scope `json:"scope"`
}

// addScope merges one task's result into the section; a result that does
// not parse is left out (the Actions section still shows it).
func (s *ScopeSection) add(runID string, output []byte) {
	var res scopeResult
	if json.Unmarshal(output, &res) != nil || res.Scope == nil || res.Scope.Chain == nil {
		return
	}
	if !slices.Contains(s.Runs, runID) {
		s.Runs = append(s.Runs, runID)
	}
	if !slices.Contains(s.Keys, res.Key) {
		s.Keys = append(s.Keys, res.Key)
	}
	if !slices.Contains(s.Sources, res.Source) {
		s.Sources = append(s.Sources, res.Source)
	}
	sc := res.Scope
	s.Events += sc.EventCount
	for _, c := range sc.Chain.Credentials {
		if c == nil {
			continue
		}
		// A session scoped in its own account (a later round) is that
		// round's followed key, without its parent: keep the record
		// that says who minted it.
		switch i := slices.IndexFunc(s.Sessions, func(o *trailscope.Credential) bool { return o.AccessKeyID == c.AccessKeyID }); {
		case i < 0:
			s.Sessions = append(s.Sessions, c)
		case s.Sessions[i].Parent == "" && c.Parent != "":
			s.Sessions[i] = c
		}
	}
	for _, p := range sc.Places {
		if p == nil {
			continue
		}
		i := slices.IndexFunc(s.Places, func(o *trailscope.Place) bool { return o.Account == p.Account && o.Region == p.Region })
		if i < 0 {
			s.Places = append(s.Places, p)
			continue
		}
		o := s.Places[i]
		// The same events read from two sources count once: keep the
		// larger reading.
		if p.Events > o.Events {
			s.Places[i] = p
		}
	}
	for k, v := range sc.ByClass {
		s.ByClass[k] += v
	}
	for k, v := range sc.ReconByName {
		s.Recon[k] += v
	}
	for k, v := range sc.DataByBucket {
		s.DataByBucket[k] += v
	}
	for _, a := range sc.Artifacts {
		if !slices.ContainsFunc(s.Artifacts, func(o trailscope.Artifact) bool {
			return o.EventID == a.EventID && o.Kind == a.Kind && o.ID == a.ID && o.Account == a.Account && maps.Equal(o.Detail, a.Detail)
		}) {
			s.Artifacts = append(s.Artifacts, a)
		}
	}
	if !sc.First.IsZero() && (s.First.IsZero() || sc.First.Before(s.First)) {
		s.First = sc.First
	}
	if sc.Last.After(s.Last) {
		s.Last = sc.Last
	}
}

// finish sorts the section's lists.
func (s *ScopeSection) finish() {
	accounts, regions := map[string]bool{}, map[string]bool{}
	for _, p := range s.Places {
		accounts[p.Account], regions[p.Region] = true, true
	}
	s.Accounts, s.Regions = slices.Sorted(maps.Keys(accounts)), slices.Sorted(maps.Keys(regions))
	// Which keys are sessions minted by another scoped key comes from the
	// workers' results; a long-term key (AKIA…) is never one, and the
	// parent must itself be a key the case scoped, so a worker cannot
	// strike a key a responder asked for off what verification re-scopes.
	asked := map[string]bool{}
	for _, rq := range s.Requests {
		asked[rq.Key] = true
	}
	for i := range s.Requests {
		key := s.Requests[i].Key
		s.Requests[i].Minted = strings.HasPrefix(key, "ASIA") && slices.ContainsFunc(s.Sessions, func(c *trailscope.Credential) bool {
			return c.AccessKeyID == key && c.Parent != "" && c.Parent != key && asked[c.Parent]
		})
	}
	slices.SortStableFunc(s.Requests, func(a, b ScopeRequest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	slices.SortFunc(s.Places, func(a, b *trailscope.Place) int {
		if a.Account != b.Account {
			return cmpStr(a.Account, b.Account)
		}
		return cmpStr(a.Region, b.Region)
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func newScopeSection() *ScopeSection {
	return &ScopeSection{ByClass: map[trailscope.Class]int{}, Recon: map[string]int{}, DataByBucket: map[string]int{},
		Sessions: []*trailscope.Credential{}, Places: []*trailscope.Place{}, Artifacts: []trailscope.Artifact{}, Requests: []ScopeRequest{}}
}
