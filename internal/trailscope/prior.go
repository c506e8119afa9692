package trailscope

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// Detail keys a changed trust policy's artifact (KindRoleTrust) carries
// once the document before the change is resolved: either the document and
// the event that set it, or why it cannot be known.
const (
	// DetailPriorTrust is the trust policy the role had before the
	// attacker's first change, as the CreateRole or UpdateAssumeRolePolicy
	// that set it recorded it in requestParameters.
	DetailPriorTrust = "priorPolicyDocument"
	// DetailPriorEventID, DetailPriorEventName and DetailPriorEventTime
	// name that event.
	DetailPriorEventID   = "priorEventID"
	DetailPriorEventName = "priorEventName"
	DetailPriorEventTime = "priorEventTime"
	// DetailPriorOutside is "true" when the earlier document itself trusts
	// an account outside the organisation (or anyone): the approver should
	// look at it before it is put back.
	DetailPriorOutside = "priorTrustsOutside"
	// DetailPriorUnknown says why the earlier document cannot be known.
	DetailPriorUnknown = "priorUnknown"
)

// MaxTrustPolicyBytes bounds an earlier trust document taken from
// CloudTrail: IAM's own quota on a role trust policy is 2,048 characters by
// default and 4,096 at most.
const MaxTrustPolicyBytes = 4096

// IsTrustChange reports whether r set a role's trust policy: a successful
// iam CreateRole or UpdateAssumeRolePolicy.
func IsTrustChange(r *Record) bool {
	if r.EventSource != "iam.amazonaws.com" || r.Failed() {
		return false
	}
	return r.EventName == "CreateRole" || r.EventName == "UpdateAssumeRolePolicy"
}

// trustSet is one trust change: the role, and the document it set.
type trustSet struct {
	rec  *Record
	role string
	doc  string
	// attacker is set when the followed chain made it.
	attacker bool
}

func trustSetOf(r *Record, ch *Chain) (trustSet, bool) {
	if !IsTrustChange(r) {
		return trustSet{}, false
	}
	p := r.params()
	key := "policyDocument"
	if r.EventName == "CreateRole" {
		key = "assumeRolePolicyDocument"
	}
	role := str(p, "roleName")
	if role == "" {
		return trustSet{}, false
	}
	_, owned := ch.Owns(r)
	return trustSet{rec: r, role: role, doc: trustDocument(str(p, key)), attacker: owned}, true
}

// trustDocument reads a trust policy as requestParameters record it: the
// JSON text (AWS's documented examples), or, as some tools deliver it, the
// URL-encoded form the IAM API receives.
func trustDocument(s string) string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "%7B") || strings.HasPrefix(t, "%7b") {
		if u, err := url.QueryUnescape(t); err == nil {
			t = strings.TrimSpace(u)
		}
	}
	return t
}

// validTrustDocument reports whether doc can be put back as a role's trust
// policy: a JSON object with a Statement, within IAM's size quota. It is
// a shape check; IAM validates the grammar when the plan runs.
func validTrustDocument(doc string) bool {
	if doc == "" || len(doc) > MaxTrustPolicyBytes {
		return false
	}
	var pol struct {
		Statement json.RawMessage `json:"Statement"`
	}
	return json.Unmarshal([]byte(doc), &pol) == nil && len(pol.Statement) > 0 && string(pol.Statement) != "null"
}

// resolvePriorTrust finds, for every role whose trust the chain changed,
// the document the role had before the first change, and writes it (or why
// it cannot be known) into each of that role's KindRoleTrust artifacts.
//
// history is every record read, the chain's and everyone else's: the
// document before the change was usually set by an administrator, not by
// the attacker. The earlier document is the one of the latest successful
// CreateRole or UpdateAssumeRolePolicy of the role, in the same account, at
// or before the first change (CloudTrail's times are to the second), made
// by anyone but the chain. It cannot be known when:
//   - no such event was read (the role was set up before the window, or
//     the log files or LookupEvents do not reach back far enough);
//   - the latest such event is the chain's own CreateRole (the attacker
//     made the role: there is no legitimate document to put back);
//   - two such events of the same second set different documents;
//   - the document is not a JSON policy within IAM's size quota.
func (s *Scope) resolvePriorTrust(history []*Record, c *Classifier) {
	type roleKey struct{ account, role string }
	first := map[roleKey]*Artifact{}
	byEvent := map[string]*Record{}
	for _, ev := range s.Events {
		byEvent[ev.Record.EventID] = ev.Record
	}
	for i := range s.Artifacts {
		a := &s.Artifacts[i]
		if a.Kind != KindRoleTrust {
			continue
		}
		if k := (roleKey{a.Account, a.ID}); first[k] == nil {
			first[k] = a
		}
	}
	if len(first) == 0 {
		return
	}
	sets := map[roleKey][]trustSet{}
	seen := map[string]bool{}
	for _, r := range history {
		ts, ok := trustSetOf(r, s.Chain)
		if !ok || seen[r.EventID+"/"+r.Account()] {
			continue
		}
		seen[r.EventID+"/"+r.Account()] = true
		k := roleKey{r.Account(), ts.role}
		if first[k] != nil {
			sets[k] = append(sets[k], ts)
		}
	}
	prior := map[roleKey]map[string]string{}
	for k, a := range first {
		change := byEvent[a.EventID]
		if change == nil {
			prior[k] = map[string]string{DetailPriorUnknown: "the change's own event is not among the records read"}
			continue
		}
		prior[k] = priorOf(change, sets[k], c)
	}
	for i := range s.Artifacts {
		a := &s.Artifacts[i]
		if a.Kind != KindRoleTrust {
			continue
		}
		if a.Detail == nil {
			a.Detail = map[string]string{}
		}
		for _, dk := range []string{DetailPriorTrust, DetailPriorEventID, DetailPriorEventName, DetailPriorEventTime, DetailPriorOutside, DetailPriorUnknown} {
			delete(a.Detail, dk)
		}
		for dk, v := range prior[roleKey{a.Account, a.ID}] {
			a.Detail[dk] = v
		}
	}
}

// priorOf picks the document before change among the role's trust sets.
func priorOf(change *Record, sets []trustSet, c *Classifier) map[string]string {
	var latest time.Time
	var at []trustSet
	for _, ts := range sets {
		// The chain's updates are the attacker's changes, never the
		// document to put back; its CreateRole stays a candidate so that
		// a role the attacker made is known as such.
		if ts.rec.EventID == change.EventID || (ts.attacker && ts.rec.EventName == "UpdateAssumeRolePolicy") ||
			ts.rec.EventTime.After(change.EventTime) {
			continue
		}
		switch {
		case len(at) == 0 || ts.rec.EventTime.After(latest):
			latest, at = ts.rec.EventTime, []trustSet{ts}
		case ts.rec.EventTime.Equal(latest):
			at = append(at, ts)
		}
	}
	if len(at) == 0 {
		return map[string]string{DetailPriorUnknown: "no CreateRole or UpdateAssumeRolePolicy of the role before the change was read"}
	}
	for _, ts := range at {
		if ts.attacker {
			return map[string]string{DetailPriorUnknown: "the role was created by the followed credential (" + ts.rec.EventID + ")"}
		}
		if ts.doc != at[0].doc {
			return map[string]string{DetailPriorUnknown: "events " + at[0].rec.EventID + " and " + ts.rec.EventID +
				" set different documents in the same second"}
		}
	}
	ts := at[0]
	if !validTrustDocument(ts.doc) {
		return map[string]string{DetailPriorUnknown: "the document event " + ts.rec.EventID + " recorded is not a JSON policy within IAM's size quota"}
	}
	out := map[string]string{
		DetailPriorTrust:     ts.doc,
		DetailPriorEventID:   ts.rec.EventID,
		DetailPriorEventName: ts.rec.EventName,
		DetailPriorEventTime: ts.rec.EventTime.UTC().Format(time.RFC3339),
	}
	if c.trustsOutside(ts.doc, change.Account()) {
		out[DetailPriorOutside] = "true"
	}
	return out
}
