package trailscope

import (
	"maps"
	"slices"
	"time"
)

// Place is one account and region's share of a scope.
type Place struct {
	Account string    `json:"account"`
	Region  string    `json:"region"`
	Events  int       `json:"events"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	// SourceIPs and UserAgents count the events from each.
	SourceIPs  map[string]int `json:"source_ips"`
	UserAgents map[string]int `json:"user_agents"`
}

// Event is one matched record with its class and the credential that made
// it.
type Event struct {
	Record         *Record        `json:"-"`
	AccessKeyID    string         `json:"access_key_id"`
	Classification Classification `json:"classification"`
}

// Scope is what the followed credential did.
type Scope struct {
	Chain *Chain `json:"chain"`
	// Events are the matched records, oldest first; EventCount is how
	// many (the records themselves go out as evidence, not in JSON).
	Events     []Event `json:"-"`
	EventCount int     `json:"events"`
	// Places are the accounts and regions it acted in, sorted.
	Places []*Place `json:"places"`
	// ByClass counts the events of each class; Refused counts the refused
	// calls among them.
	ByClass map[Class]int `json:"by_class"`
	Refused int           `json:"refused"`
	// Artifacts are what its successful writes left, in event order.
	Artifacts []Artifact `json:"artifacts"`
	// ReconByName counts reconnaissance calls by event name.
	ReconByName map[string]int `json:"recon_by_name"`
	// DataAccess counts data events by bucket.
	DataByBucket map[string]int `json:"data_by_bucket"`
	First        time.Time      `json:"first"`
	Last         time.Time      `json:"last"`
}

// Accounts lists the accounts the credential acted in.
func (s *Scope) Accounts() []string {
	seen := map[string]bool{}
	for _, p := range s.Places {
		seen[p.Account] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// Build follows seed through records and classifies every record the
// chain made. Records may come in any order and may repeat (the same event
// read from LookupEvents and from a log file): an eventID and recipient
// account counts once. A changed trust policy's artifacts name the
// document before the change when the records hold it (see
// resolvePriorTrust).
func Build(seed string, records []*Record, c *Classifier) *Scope {
	return build(seed, records, records, c)
}

// build is Build with the records the earlier trust documents are looked
// for in (history), which may reach back before the window.
func build(seed string, records, history []*Record, c *Classifier) *Scope {
	if c == nil {
		c = &Classifier{}
	}
	ch := Follow(seed, records)
	s := &Scope{Chain: ch, ByClass: map[Class]int{}, ReconByName: map[string]int{}, DataByBucket: map[string]int{}}
	type seenKey struct{ id, account string }
	seen := map[seenKey]bool{}
	places := map[[2]string]*Place{}
	for _, r := range records {
		cr, ok := ch.Owns(r)
		if !ok {
			continue
		}
		k := seenKey{r.EventID, r.Account()}
		if seen[k] {
			continue
		}
		seen[k] = true
		s.Events = append(s.Events, Event{Record: r, AccessKeyID: cr.AccessKeyID})
	}
	s.EventCount = len(s.Events)
	slices.SortStableFunc(s.Events, func(a, b Event) int {
		if d := a.Record.EventTime.Compare(b.Record.EventTime); d != 0 {
			return d
		}
		return cmpString(a.Record.EventID, b.Record.EventID)
	})
	for i := range s.Events {
		ev := &s.Events[i]
		r := ev.Record
		ev.Classification = c.Classify(r)
		s.ByClass[ev.Classification.Class]++
		if r.Failed() {
			s.Refused++
		}
		s.Artifacts = append(s.Artifacts, ev.Classification.Artifacts...)
		switch ev.Classification.Class {
		case Reconnaissance:
			s.ReconByName[r.EventName]++
		case DataAccess:
			s.DataByBucket[str(r.params(), "bucketName")]++
		}
		pk := [2]string{r.Account(), r.AWSRegion}
		p := places[pk]
		if p == nil {
			p = &Place{Account: pk[0], Region: pk[1], First: r.EventTime, SourceIPs: map[string]int{}, UserAgents: map[string]int{}}
			places[pk] = p
			s.Places = append(s.Places, p)
		}
		p.Events++
		p.Last = r.EventTime
		p.SourceIPs[r.SourceIPAddress]++
		p.UserAgents[r.UserAgent]++
		if s.First.IsZero() {
			s.First = r.EventTime
		}
		s.Last = r.EventTime
	}
	slices.SortFunc(s.Places, func(a, b *Place) int {
		if d := cmpString(a.Account, b.Account); d != 0 {
			return d
		}
		return cmpString(a.Region, b.Region)
	})
	s.resolvePriorTrust(history, c)
	return s
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
