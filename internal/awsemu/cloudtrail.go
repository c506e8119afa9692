package awsemu

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (e *Emulator) cloudtrailService() *service {
	s := &service{
		name:        "cloudtrail",
		eventSource: "cloudtrail.amazonaws.com",
		protocol:    protoJSON,
		target:      "CloudTrail_20131101",
		jsonVersion: "1.1",
		errs:        jsonErrors("ThrottlingException", http.StatusBadRequest, http.StatusBadRequest),
	}
	s.ops = map[string]*operation{
		"LookupEvents":   {name: "LookupEvents", action: "cloudtrail:LookupEvents", readOnly: true, handle: (*Emulator).ctLookupEvents},
		"DescribeTrails": {name: "DescribeTrails", action: "cloudtrail:DescribeTrails", readOnly: true, handle: (*Emulator).ctDescribeTrails},
		"GetTrailStatus": {name: "GetTrailStatus", action: "cloudtrail:GetTrailStatus", readOnly: true, handle: (*Emulator).ctGetTrailStatus},
		"StartLogging":   {name: "StartLogging", action: "cloudtrail:StartLogging", handle: (*Emulator).ctStartLogging},
		"StopLogging":    {name: "StopLogging", action: "cloudtrail:StopLogging", handle: (*Emulator).ctStopLogging},
	}
	return s
}

func ctError(code, msg string) *apiError {
	return &apiError{Code: code, Status: http.StatusBadRequest, Message: msg}
}

type ctEventOut struct {
	EventID         string          `json:"EventId"`
	EventName       string          `json:"EventName"`
	ReadOnly        string          `json:"ReadOnly"`
	AccessKeyID     string          `json:"AccessKeyId"`
	EventTime       epochTime       `json:"EventTime"`
	EventSource     string          `json:"EventSource"`
	Username        string          `json:"Username"`
	Resources       []trailResource `json:"Resources"`
	CloudTrailEvent string          `json:"CloudTrailEvent"`
}

// lookupAttributeKeys are the attributes LookupEvents filters on.
var lookupAttributeKeys = []string{"EventId", "EventName", "ReadOnly", "Username", "ResourceType", "ResourceName", "EventSource", "AccessKeyId"}

func (ev *trailEvent) matches(key, value string) bool {
	switch key {
	case "EventId":
		return ev.id == value
	case "EventName":
		return ev.name == value
	case "ReadOnly":
		return strconv.FormatBool(ev.readOnly) == value
	case "Username":
		return ev.username == value
	case "EventSource":
		return ev.source == value
	case "AccessKeyId":
		return ev.accessKeyID == value
	case "ResourceType":
		return slices.ContainsFunc(ev.resources, func(r trailResource) bool { return r.Type == value })
	case "ResourceName":
		return slices.ContainsFunc(ev.resources, func(r trailResource) bool { return r.Name == value })
	}
	return false
}

func (e *Emulator) ctLookupEvents(c *call) (any, error) {
	var in struct {
		LookupAttributes []struct {
			AttributeKey   string `json:"AttributeKey"`
			AttributeValue string `json:"AttributeValue"`
		} `json:"LookupAttributes"`
		StartTime     *epochTime `json:"StartTime"`
		EndTime       *epochTime `json:"EndTime"`
		EventCategory string     `json:"EventCategory"`
		MaxResults    *int       `json:"MaxResults"`
		NextToken     string     `json:"NextToken"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	key := trailKey{c.who.account, c.region}
	// CloudTrail allows LookupEvents two requests per second per account
	// and region; the limit runs on the emulated clock.
	if !e.trail.allow(key, c.now) {
		return nil, ctError("ThrottlingException", "Rate exceeded")
	}
	if len(in.LookupAttributes) > 1 {
		return nil, ctError("InvalidLookupAttributesException", "You cannot specify more than one lookup attribute.")
	}
	for _, a := range in.LookupAttributes {
		if !slices.Contains(lookupAttributeKeys, a.AttributeKey) {
			return nil, ctError("InvalidLookupAttributesException", "Lookup attribute key "+a.AttributeKey+" is not valid.")
		}
		if a.AttributeValue == "" {
			return nil, ctError("InvalidLookupAttributesException", "Lookup attribute value cannot be empty.")
		}
	}
	if in.EventCategory != "" && in.EventCategory != "insight" {
		return nil, ctError("InvalidEventCategoryException", "Event category "+in.EventCategory+" is not valid.")
	}
	limit := 50
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 50 {
			return nil, ctError("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
		}
		limit = *in.MaxResults
	}
	start, end := c.now.Add(-eventRetention), c.now
	if in.StartTime != nil {
		start = time.Time(*in.StartTime)
	}
	if in.EndTime != nil {
		end = time.Time(*in.EndTime)
	}
	if start.After(end) {
		return nil, ctError("InvalidTimeRangeException", "Start time must be less than or equal to end time.")
	}
	before := ^uint64(0)
	if in.NextToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		n, err2 := strconv.ParseUint(strings.TrimPrefix(string(raw), "seq:"), 10, 64)
		if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "seq:") {
			return nil, ctError("InvalidNextTokenException", "Invalid NextToken.")
		}
		before = n
	}

	out := struct {
		Events    []ctEventOut `json:"Events"`
		NextToken any          `json:"NextToken"`
	}{Events: []ctEventOut{}}
	if in.EventCategory == "insight" {
		// The emulator records management events only.
		return out, nil
	}
	l := e.trail.log(key)
	l.mu.Lock()
	var last *trailEvent
	more := false
	for i := len(l.events) - 1; i >= 0; i-- {
		ev := l.events[i]
		if ev.seq >= before || ev.at.After(end) {
			continue
		}
		if ev.at.Before(start) {
			break
		}
		if len(in.LookupAttributes) == 1 && !ev.matches(in.LookupAttributes[0].AttributeKey, in.LookupAttributes[0].AttributeValue) {
			continue
		}
		if len(out.Events) == limit {
			more = true
			break
		}
		out.Events = append(out.Events, ctEventOut{ev.id, ev.name, strconv.FormatBool(ev.readOnly), ev.accessKeyID, epochTime(ev.at),
			ev.source, ev.username, slices.Clone(ev.resources), ev.record})
		last = ev
	}
	l.mu.Unlock()
	if more && last != nil {
		out.NextToken = base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatUint(last.seq, 10)))
	}
	return out, nil
}
