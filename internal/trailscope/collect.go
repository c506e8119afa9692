package trailscope

import (
	"sync"
	"time"
)

// Collector gathers records from many readers at once (log files read in
// parallel, LookupEvents pages) and keeps as little as a scope needs: the
// mints whole, every other record only as its raw text filed under its
// access key, parsed again only when the chain turns out to own it. Every
// role trust change (CreateRole, UpdateAssumeRolePolicy), whoever made it
// and however long before the window, is kept whole too: it may hold the
// document a role had before the attacker changed it.
type Collector struct {
	// Start and End, when set, drop records outside [Start, End).
	Start, End time.Time

	mu      sync.Mutex
	trust   []*Record
	mints   []*Record
	byKey   map[string][][]byte
	records int
	kept    int
}

// Add files one parsed record. It is safe for concurrent use.
func (c *Collector) Add(r *Record) {
	if IsTrustChange(r) && (c.End.IsZero() || r.EventTime.Before(c.End)) {
		c.mu.Lock()
		c.trust = append(c.trust, r)
		c.mu.Unlock()
	}
	if (!c.Start.IsZero() && r.EventTime.Before(c.Start)) || (!c.End.IsZero() && !r.EventTime.Before(c.End)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	if IsMint(r) {
		c.mints = append(c.mints, r)
		c.kept++
		return
	}
	k := r.UserIdentity.AccessKeyID
	if k == "" {
		// Nothing ties a keyless record (an AWS service's own call) to a
		// credential.
		return
	}
	if c.byKey == nil {
		c.byKey = map[string][][]byte{}
	}
	c.byKey[k] = append(c.byKey[k], r.Raw)
	c.kept++
}

// Records is how many records in the window were added.
func (c *Collector) Records() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// Scope builds the seed's scope from what was collected.
func (c *Collector) Scope(seed string, cl *Classifier) *Scope {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := Follow(seed, c.mints)
	recs := append([]*Record(nil), c.mints...)
	for _, k := range ch.Keys() {
		for _, raw := range c.byKey[k] {
			// The raw text parsed once already; it parses again.
			if r, err := ParseRecord(raw); err == nil {
				recs = append(recs, r)
			}
		}
	}
	return build(seed, recs, append(append([]*Record(nil), recs...), c.trust...), cl)
}
