package awsemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// This file holds what a readiness review reads of EventBridge: the rules
// of a region's default event bus with their targets (ListRules,
// ListTargetsByRule) and API destinations (DescribeApiDestination), so it
// can tell whether GuardDuty findings reach the controller's intake.

// EventRuleSeed is an EventBridge rule on the region's default event bus.
type EventRuleSeed struct {
	Name string `yaml:"name" json:"name"`
	// EventPattern is the rule's event pattern, as JSON.
	EventPattern string `yaml:"eventPattern" json:"eventPattern"`
	// Disabled rules match nothing.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Targets are the ARNs the rule sends matched events to: an SQS queue,
	// an API destination or another account's event bus.
	Targets []string `yaml:"targets,omitempty" json:"targets,omitempty"`
}

// APIDestinationSeed is an EventBridge API destination.
type APIDestinationSeed struct {
	Name string `yaml:"name" json:"name"`
	// Endpoint is the HTTPS URL events are posted to.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
}

// accountIDRe is a 12-digit account id.
var accountIDRe = regexp.MustCompile(`^\d{12}$`)

// eventRule is a rule of a region's default event bus.
type eventRule struct {
	name, pattern, state, arn string
	targets                   []string
}

// apiDestination is an EventBridge API destination.
type apiDestination struct {
	name, endpoint, arn string
	created             time.Time
}

// APIDestinationARN is the ARN of the API destination name in an account
// and region, as the emulator makes it.
func APIDestinationARN(account, region, name string) string {
	return "arn:aws:events:" + region + ":" + account + ":api-destination/" + name + "/" + labHex("apidest/"+account+"/"+region+"/"+name, 8)
}

// seedEvents applies a region's EventBridge seeds. The caller holds no
// lock; rg is not yet shared.
func seedEvents(account string, rg *region, rs *RegionSeed, now time.Time) error {
	for _, d := range rs.APIDestinations {
		if d.Name == "" || !strings.HasPrefix(d.Endpoint, "https://") {
			return fmt.Errorf("API destination %q: a name and an https:// endpoint are needed", d.Name)
		}
		if rg.apiDestinations == nil {
			rg.apiDestinations = map[string]*apiDestination{}
		}
		rg.apiDestinations[d.Name] = &apiDestination{name: d.Name, endpoint: d.Endpoint, arn: APIDestinationARN(account, rg.name, d.Name), created: now}
	}
	for _, r := range rs.EventRules {
		if r.Name == "" || !json.Valid([]byte(r.EventPattern)) {
			return fmt.Errorf("event rule %q: a name and a JSON event pattern are needed", r.Name)
		}
		if rg.eventRules == nil {
			rg.eventRules = map[string]*eventRule{}
		}
		state := "ENABLED"
		if r.Disabled {
			state = "DISABLED"
		}
		rg.eventRules[r.Name] = &eventRule{name: r.Name, pattern: r.EventPattern, state: state, targets: slices.Clone(r.Targets),
			arn: "arn:aws:events:" + rg.name + ":" + account + ":rule/" + r.Name}
	}
	return nil
}

func (e *Emulator) eventsService() *service {
	s := &service{
		name:        "events",
		eventSource: "events.amazonaws.com",
		protocol:    protoJSON,
		target:      "AWSEvents",
		jsonVersion: "1.1",
		errs:        jsonErrors("ThrottlingException", http.StatusBadRequest, http.StatusBadRequest),
	}
	ruleARN := func(e *Emulator, c *call) []string {
		var in struct {
			Rule string `json:"Rule"`
		}
		// A body that does not decode names no rule; the call itself
		// reports the malformed body.
		_ = json.Unmarshal(c.body, &in)
		return []string{"arn:aws:events:" + c.region + ":" + c.who.account + ":rule/" + in.Rule}
	}
	ops := []*operation{
		{name: "ListRules", readOnly: true, handle: (*Emulator).evListRules},
		{name: "ListTargetsByRule", readOnly: true, handle: (*Emulator).evListTargetsByRule, resources: ruleARN},
		{name: "DescribeApiDestination", readOnly: true, handle: (*Emulator).evDescribeAPIDestination},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "events:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func evNotFound(what string) *apiError {
	return &apiError{Code: "ResourceNotFoundException", Status: http.StatusBadRequest, Message: what + " does not exist."}
}

// evPage pages names sorted, NextToken being the last name returned.
func evPage(names []string, token string, limit int) (page []string, next string) {
	slices.Sort(names)
	if token != "" {
		i, _ := slices.BinarySearch(names, token)
		for i < len(names) && names[i] <= token {
			i++
		}
		names = names[i:]
	}
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	if len(names) > limit {
		return names[:limit], names[limit-1]
	}
	return names, ""
}

func (e *Emulator) evListRules(c *call) (any, error) {
	var in struct {
		NamePrefix   string `json:"NamePrefix"`
		EventBusName string `json:"EventBusName"`
		NextToken    string `json:"NextToken"`
		Limit        int    `json:"Limit"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rules := c.acct.region(c.region).eventRules
	if in.EventBusName != "" && in.EventBusName != "default" {
		return nil, evNotFound("Event bus " + in.EventBusName)
	}
	var names []string
	for n := range rules {
		if strings.HasPrefix(n, in.NamePrefix) {
			names = append(names, n)
		}
	}
	page, next := evPage(names, in.NextToken, in.Limit)
	out := []map[string]any{}
	for _, n := range page {
		r := rules[n]
		out = append(out, map[string]any{"Name": r.name, "Arn": r.arn, "EventPattern": r.pattern, "State": r.state, "EventBusName": "default"})
	}
	resp := map[string]any{"Rules": out}
	if next != "" {
		resp["NextToken"] = next
	}
	return resp, nil
}

func (e *Emulator) evListTargetsByRule(c *call) (any, error) {
	var in struct {
		Rule      string `json:"Rule"`
		NextToken string `json:"NextToken"`
		Limit     int    `json:"Limit"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r := c.acct.region(c.region).eventRules[in.Rule]
	if r == nil {
		return nil, evNotFound("Rule " + in.Rule)
	}
	targets := []map[string]any{}
	for i, arn := range r.targets {
		targets = append(targets, map[string]any{"Id": fmt.Sprintf("target-%d", i+1), "Arn": arn})
	}
	return map[string]any{"Targets": targets}, nil
}

func (e *Emulator) evDescribeAPIDestination(c *call) (any, error) {
	var in struct {
		Name string `json:"Name"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	d := c.acct.region(c.region).apiDestinations[in.Name]
	if d == nil {
		return nil, evNotFound("An api-destination '" + in.Name + "'")
	}
	return map[string]any{"ApiDestinationArn": d.arn, "Name": d.name, "InvocationEndpoint": d.endpoint, "HttpMethod": "POST",
		"ApiDestinationState": "ACTIVE", "CreationTime": epochTime(d.created), "LastModifiedTime": epochTime(d.created),
		"ConnectionArn": "arn:aws:events:" + c.region + ":" + c.acct.id + ":connection/" + d.name + "/" + labHex("conn/"+d.arn, 8)}, nil
}
