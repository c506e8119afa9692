package finding

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// The EventBridge detail types this package reads.
const (
	DetailTypeGuardDuty   = "GuardDuty Finding"
	DetailTypeSecurityHub = "Security Hub Findings - Imported"
)

// MaxFindingsPerEvent bounds the findings one Security Hub event may carry.
const MaxFindingsPerEvent = 100

var regionRe = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// Event is the EventBridge envelope of a finding event.
type Event struct {
	// Version is the envelope version, "0".
	Version string
	// ID is the event id.
	ID string
	// DetailType says what the detail holds.
	DetailType string
	// Source is the emitting service, aws.guardduty or aws.securityhub.
	Source string
	// Account is the account the event was emitted in.
	Account string
	// Time is when the event was emitted.
	Time string
	// Region is the region the event was emitted in.
	Region string
	// Resources lists the ARNs the event concerns.
	Resources []string
}

// ParseEvent reads an EventBridge event carrying a GuardDuty finding or
// Security Hub imported findings and returns the normalised findings: one
// for GuardDuty, one per entry of detail.findings for Security Hub. It
// refuses, with an *Error naming the JSON path, anything too large,
// malformed, of the wrong type or of another detail type.
func ParseEvent(data []byte) ([]*Finding, error) {
	if len(data) > MaxEventSize {
		return nil, &Error{Msg: fmt.Sprintf("event is %d bytes; the limit is %d", len(data), MaxEventSize)}
	}
	tree, err := decodeStrict(data)
	if err != nil {
		return nil, err
	}
	root, err := asObject(tree, "")
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("event: want object, got %s", jsonType(tree))}
	}
	ev, err := readEnvelope(root)
	if err != nil {
		return nil, err
	}
	detail, _, err := root.obj("detail", true)
	if err != nil {
		return nil, err
	}
	switch ev.DetailType {
	case DetailTypeGuardDuty:
		if ev.Source != "aws.guardduty" {
			return nil, errorf("source", "%q does not send %q; want aws.guardduty", ev.Source, ev.DetailType)
		}
		f, err := parseGuardDuty(detail)
		if err != nil {
			return nil, err
		}
		f.EventID = ev.ID
		return []*Finding{f}, nil
	case DetailTypeSecurityHub:
		if ev.Source != "aws.securityhub" {
			return nil, errorf("source", "%q does not send %q; want aws.securityhub", ev.Source, ev.DetailType)
		}
		list, err := detail.array("findings", true)
		if err != nil {
			return nil, err
		}
		switch {
		case len(list) == 0:
			return nil, errorf("detail.findings", "empty")
		case len(list) > MaxFindingsPerEvent:
			return nil, errorf("detail.findings", "%d findings; the limit is %d", len(list), MaxFindingsPerEvent)
		}
		out := make([]*Finding, 0, len(list))
		for i, v := range list {
			o, err := asObject(v, fmt.Sprintf("detail.findings[%d]", i))
			if err != nil {
				return nil, err
			}
			f, err := parseASFF(o, ev.Region)
			if err != nil {
				return nil, err
			}
			f.EventID = ev.ID
			out = append(out, f)
		}
		return out, nil
	}
	return nil, errorf("detail-type", "%q is not a finding event; want %q or %q", ev.DetailType, DetailTypeGuardDuty, DetailTypeSecurityHub)
}

func readEnvelope(root object) (*Event, error) {
	ev := &Event{}
	var err error
	if ev.Version, err = root.str("version", true); err != nil {
		return nil, err
	}
	if ev.ID, err = root.str("id", true); err != nil {
		return nil, err
	}
	if ev.DetailType, err = root.str("detail-type", true); err != nil {
		return nil, err
	}
	if ev.Source, err = root.str("source", true); err != nil {
		return nil, err
	}
	if ev.Account, err = root.account("account", true); err != nil {
		return nil, err
	}
	if _, err := root.time("time", true); err != nil {
		return nil, err
	}
	ev.Time = root.m["time"].(string)
	if ev.Region, err = root.str("region", true); err != nil {
		return nil, err
	}
	if !regionRe.MatchString(ev.Region) {
		return nil, errorf("region", "%q is not an AWS region name", ev.Region)
	}
	if ev.Resources, err = root.strings("resources"); err != nil {
		return nil, err
	}
	return ev, nil
}

// rawOf re-encodes a decoded subtree; maps encode with sorted keys, so the
// raw JSON is canonical.
func rawOf(o object) json.RawMessage {
	b, err := json.Marshal(o.m)
	if err != nil {
		return nil
	}
	return b
}
