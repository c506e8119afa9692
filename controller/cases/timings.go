package cases

import (
	"encoding/json"
	"time"

	"github.com/firebreak-ir/firebreak/controller/playbook"
)

// Timings are a case's response timings, as NIST SP 800-61 metrics:
//
//   - time to detect: from the earliest first-seen time of the case's
//     findings to the first receipt of a finding by Firebreak;
//   - time to contain, eradicate and recover: from that first receipt (or
//     the case's opening, for a case opened by hand) to the end of the last
//     successful step of that phase. A step whose rollback succeeded does
//     not count: what it did was undone.
//
// A zero time means the event has not happened.
type Timings struct {
	// FirstSeen is the earliest first-seen time of the case's findings.
	FirstSeen time.Time
	// DetectedAt is the first receipt of a finding, or the case's opening.
	DetectedAt time.Time
	// ContainedAt, EradicatedAt and RecoveredAt are when the last
	// successful step of each phase ended.
	ContainedAt, EradicatedAt, RecoveredAt time.Time
}

func since(from, to time.Time) (time.Duration, bool) {
	if from.IsZero() || to.IsZero() {
		return 0, false
	}
	return max(to.Sub(from), 0), true
}

// TimeToDetect is DetectedAt − FirstSeen.
func (t Timings) TimeToDetect() (time.Duration, bool) { return since(t.FirstSeen, t.DetectedAt) }

// TimeToContain is ContainedAt − DetectedAt.
func (t Timings) TimeToContain() (time.Duration, bool) { return since(t.DetectedAt, t.ContainedAt) }

// TimeToEradicate is EradicatedAt − DetectedAt.
func (t Timings) TimeToEradicate() (time.Duration, bool) { return since(t.DetectedAt, t.EradicatedAt) }

// TimeToRecover is RecoveredAt − DetectedAt.
func (t Timings) TimeToRecover() (time.Duration, bool) { return since(t.DetectedAt, t.RecoveredAt) }

// MarshalJSON writes the times and each duration that is known, in
// milliseconds and as text.
func (t Timings) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	put := func(name string, v time.Time) {
		if !v.IsZero() {
			m[name] = v.UTC()
		}
	}
	put("first_seen", t.FirstSeen)
	put("detected_at", t.DetectedAt)
	put("contained_at", t.ContainedAt)
	put("eradicated_at", t.EradicatedAt)
	put("recovered_at", t.RecoveredAt)
	dur := func(name string, d time.Duration, ok bool) {
		if ok {
			m[name+"_ms"] = d.Milliseconds()
			m[name] = d.Round(time.Millisecond).String()
		}
	}
	d, ok := t.TimeToDetect()
	dur("time_to_detect", d, ok)
	d, ok = t.TimeToContain()
	dur("time_to_contain", d, ok)
	d, ok = t.TimeToEradicate()
	dur("time_to_eradicate", d, ok)
	d, ok = t.TimeToRecover()
	dur("time_to_recover", d, ok)
	return json.Marshal(m)
}

// operationStep reports whether a step entry is an operation step's (its
// detail's action is operation:NAME). An operation's own success marks no
// timing: an eradication plan built or run proves nothing is left; the
// eradication service records the eradication itself, as a step entry of
// its own, once it has verified it.
func operationStep(e *Entry) bool {
	if len(e.Detail) == 0 {
		return false
	}
	var d struct {
		Action string `json:"action"`
	}
	return json.Unmarshal(e.Detail, &d) == nil && playbook.IsOperation(d.Action)
}

// Derive computes a case's timings from its findings and the step and
// rollback entries of its timeline. It is a pure function of its inputs.
func Derive(createdAt time.Time, findings []*FindingRecord, timeline []*Entry) Timings {
	var t Timings
	for _, f := range findings {
		if fs := f.Finding.FirstSeen; !fs.IsZero() && (t.FirstSeen.IsZero() || fs.Before(t.FirstSeen)) {
			t.FirstSeen = fs
		}
		if t.DetectedAt.IsZero() || f.ReceivedAt.Before(t.DetectedAt) {
			t.DetectedAt = f.ReceivedAt
		}
	}
	if t.DetectedAt.IsZero() {
		t.DetectedAt = createdAt
	}
	undone := map[string]bool{}
	for _, e := range timeline {
		if e.Kind == KindRollback && e.Status == EntrySucceeded {
			undone[e.PlaybookRunID+"/"+e.StepID] = true
		}
	}
	latest := func(cur *time.Time, at time.Time) {
		if at.After(*cur) {
			*cur = at
		}
	}
	for _, e := range timeline {
		if e.Kind != KindStep || e.Status != EntrySucceeded || undone[e.PlaybookRunID+"/"+e.StepID] || operationStep(e) {
			continue
		}
		switch e.Phase {
		case playbook.PhaseContain:
			latest(&t.ContainedAt, e.At)
		case playbook.PhaseEradicate:
			latest(&t.EradicatedAt, e.At)
		case playbook.PhaseRecover:
			latest(&t.RecoveredAt, e.At)
		}
	}
	return t
}
