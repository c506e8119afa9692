package awsemu

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// eventRule is an EventBridge rule on the region's default event bus.
type eventRule struct {
	name, arn, description string
	schedule, pattern      string
	state                  string // ENABLED, DISABLED
	roleARN                string
	created                time.Time
	targets                []eventTarget
}

// eventTarget is one target of a rule.
type eventTarget struct {
	id, arn string
}

// eventsService is EventBridge: the rules an attacker schedules to keep a
// foothold, their removal, and what a readiness review reads (the rules,
// their targets and API destinations).
func (e *Emulator) eventsService() *service {
	s := &service{
		name:        "events",
		eventSource: "events.amazonaws.com",
		protocol:    protoJSON,
		target:      "AWSEvents",
		jsonVersion: "1.1",
		errs:        jsonErrors("ThrottlingException", http.StatusBadRequest, http.StatusBadRequest),
	}
	ruleARN := func(_ *Emulator, c *call) []string {
		var in struct {
			Name string `json:"Name"`
		}
		_ = c.decodeJSON(&in)
		return []string{"arn:aws:events:" + c.region + ":" + c.who.account + ":rule/" + in.Name}
	}
	targetRuleARN := func(_ *Emulator, c *call) []string {
		var in struct {
			Rule string `json:"Rule"`
		}
		_ = c.decodeJSON(&in)
		return []string{"arn:aws:events:" + c.region + ":" + c.who.account + ":rule/" + in.Rule}
	}
	ops := []*operation{
		{name: "PutRule", handle: (*Emulator).eventsPutRule, resources: ruleARN},
		{name: "DescribeRule", readOnly: true, handle: (*Emulator).eventsDescribeRule, resources: ruleARN},
		{name: "ListRules", readOnly: true, handle: (*Emulator).eventsListRules},
		{name: "DisableRule", handle: (*Emulator).eventsDisableRule, resources: ruleARN},
		{name: "EnableRule", handle: (*Emulator).eventsEnableRule, resources: ruleARN},
		{name: "DeleteRule", handle: (*Emulator).eventsDeleteRule, resources: ruleARN},
		{name: "ListTargetsByRule", readOnly: true, handle: (*Emulator).eventsListTargets, resources: targetRuleARN},
		{name: "RemoveTargets", handle: (*Emulator).eventsRemoveTargets, resources: targetRuleARN},
		{name: "DescribeApiDestination", readOnly: true, handle: (*Emulator).evDescribeAPIDestination},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "events:" + op.name
		s.ops[op.name] = op
	}
	return s
}

var eventRuleName = regexp.MustCompile(`^[\.\-_A-Za-z0-9]{1,64}$`)

func eventsNotFound(name string) *apiError {
	return &apiError{Code: "ResourceNotFoundException", Status: http.StatusBadRequest, Message: "Rule " + name + " does not exist on EventBus default."}
}

// eventsRuleIn is the Name (and EventBusName) every rule call carries.
type eventsRuleIn struct {
	Name         string `json:"Name"`
	EventBusName string `json:"EventBusName"`
}

// ruleFor finds the named rule on the default bus. The caller holds the
// account lock.
func (c *call) ruleFor(in eventsRuleIn) (*region, *eventRule, *apiError) {
	if in.EventBusName != "" && in.EventBusName != "default" {
		return nil, nil, &apiError{Code: "ResourceNotFoundException", Status: http.StatusBadRequest, Message: "Event bus " + in.EventBusName + " does not exist."}
	}
	rg := c.acct.region(c.region)
	r := rg.eventRules[in.Name]
	if r == nil {
		return nil, nil, eventsNotFound(in.Name)
	}
	return rg, r, nil
}

func (e *Emulator) eventsPutRule(c *call) (any, error) {
	var in struct {
		eventsRuleIn
		ScheduleExpression string `json:"ScheduleExpression"`
		EventPattern       string `json:"EventPattern"`
		State              string `json:"State"`
		Description        string `json:"Description"`
		RoleArn            string `json:"RoleArn"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if !eventRuleName.MatchString(in.Name) {
		return nil, &apiError{Code: "ValidationException", Status: http.StatusBadRequest,
			Message: "1 validation error detected: Value '" + in.Name + "' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"}
	}
	if in.ScheduleExpression == "" && in.EventPattern == "" {
		return nil, &apiError{Code: "ValidationException", Status: http.StatusBadRequest, Message: "Parameter(s) EventPattern or ScheduleExpression must be specified."}
	}
	state := in.State
	switch state {
	case "":
		state = "ENABLED"
	case "ENABLED", "DISABLED":
	default:
		return nil, &apiError{Code: "ValidationException", Status: http.StatusBadRequest,
			Message: "1 validation error detected: Value '" + state + "' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"}
	}
	if in.EventBusName != "" && in.EventBusName != "default" {
		return nil, &apiError{Code: "ResourceNotFoundException", Status: http.StatusBadRequest, Message: "Event bus " + in.EventBusName + " does not exist."}
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	r := rg.eventRules[in.Name]
	if r == nil {
		r = &eventRule{name: in.Name, arn: "arn:aws:events:" + c.region + ":" + c.acct.id + ":rule/" + in.Name, created: c.now}
		rg.eventRules[in.Name] = r
	}
	r.description, r.schedule, r.pattern, r.state, r.roleARN = in.Description, in.ScheduleExpression, in.EventPattern, state, in.RoleArn
	c.trail.response = map[string]any{"ruleArn": r.arn}
	return map[string]any{"RuleArn": r.arn}, nil
}

func renderRule(r *eventRule) map[string]any {
	out := map[string]any{"Name": r.name, "Arn": r.arn, "State": r.state, "EventBusName": "default", "CreatedBy": ""}
	if r.description != "" {
		out["Description"] = r.description
	}
	if r.schedule != "" {
		out["ScheduleExpression"] = r.schedule
	}
	if r.pattern != "" {
		out["EventPattern"] = r.pattern
	}
	if r.roleARN != "" {
		out["RoleArn"] = r.roleARN
	}
	return out
}

func (e *Emulator) eventsDescribeRule(c *call) (any, error) {
	var in eventsRuleIn
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, r, ae := c.ruleFor(in)
	if ae != nil {
		return nil, ae
	}
	out := renderRule(r)
	out["CreatedBy"] = c.acct.id
	return out, nil
}

func (e *Emulator) eventsListRules(c *call) (any, error) {
	var in struct {
		NamePrefix   string `json:"NamePrefix"`
		EventBusName string `json:"EventBusName"`
		NextToken    string `json:"NextToken"`
		Limit        int    `json:"Limit"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if in.EventBusName != "" && in.EventBusName != "default" {
		return nil, evNotFound("Event bus " + in.EventBusName)
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	var names []string
	for n := range rg.eventRules {
		if strings.HasPrefix(n, in.NamePrefix) {
			names = append(names, n)
		}
	}
	page, next := evPage(names, in.NextToken, in.Limit)
	list := make([]map[string]any, 0, len(page))
	for _, n := range page {
		list = append(list, renderRule(rg.eventRules[n]))
	}
	resp := map[string]any{"Rules": list}
	if next != "" {
		resp["NextToken"] = next
	}
	return resp, nil
}

func (e *Emulator) eventsSetState(c *call, state string) (any, error) {
	var in eventsRuleIn
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, r, ae := c.ruleFor(in)
	if ae != nil {
		return nil, ae
	}
	r.state = state
	return map[string]any{}, nil
}

func (e *Emulator) eventsDisableRule(c *call) (any, error) { return e.eventsSetState(c, "DISABLED") }

func (e *Emulator) eventsEnableRule(c *call) (any, error) { return e.eventsSetState(c, "ENABLED") }

func (e *Emulator) eventsDeleteRule(c *call) (any, error) {
	var in eventsRuleIn
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, r, ae := c.ruleFor(in)
	if ae != nil {
		// EventBridge deletes a rule that does not exist without complaint.
		if ae.Code == "ResourceNotFoundException" && (in.EventBusName == "" || in.EventBusName == "default") {
			return map[string]any{}, nil
		}
		return nil, ae
	}
	delete(rg.eventRules, r.name)
	return map[string]any{}, nil
}

// PutTargets is not emulated: a rule's targets come from the seed.

func (e *Emulator) eventsListTargets(c *call) (any, error) {
	var in struct {
		Rule string `json:"Rule"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, r, ae := c.ruleFor(eventsRuleIn{Name: in.Rule})
	if ae != nil {
		return nil, ae
	}
	targets := make([]map[string]any, 0, len(r.targets))
	for _, t := range r.targets {
		targets = append(targets, map[string]any{"Id": t.id, "Arn": t.arn})
	}
	return map[string]any{"Targets": targets}, nil
}

func (e *Emulator) eventsRemoveTargets(c *call) (any, error) {
	var in struct {
		Rule string   `json:"Rule"`
		Ids  []string `json:"Ids"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, r, ae := c.ruleFor(eventsRuleIn{Name: in.Rule})
	if ae != nil {
		return nil, ae
	}
	failed := make([]map[string]string, 0)
	for _, id := range in.Ids {
		i := slices.IndexFunc(r.targets, func(t eventTarget) bool { return t.id == id })
		if i < 0 {
			failed = append(failed, map[string]string{"TargetId": id, "ErrorCode": "ResourceNotFoundException", "ErrorMessage": "Target " + id + " does not exist."})
			continue
		}
		r.targets = slices.Delete(r.targets, i, i+1)
	}
	return map[string]any{"FailedEntryCount": len(failed), "FailedEntries": failed}, nil
}
