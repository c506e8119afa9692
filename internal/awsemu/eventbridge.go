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

// This file holds EventBridge's seeds (rules with their targets, API
// destinations) and what a readiness review reads of API destinations
// (DescribeApiDestination), so it can tell whether GuardDuty findings
// reach the controller's intake. The rule calls are in events.go.

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
		er := &eventRule{name: r.Name, pattern: r.EventPattern, state: state, created: now,
			arn: "arn:aws:events:" + rg.name + ":" + account + ":rule/" + r.Name}
		for i, t := range r.Targets {
			er.targets = append(er.targets, eventTarget{id: fmt.Sprintf("target-%d", i+1), arn: t})
		}
		rg.eventRules[r.Name] = er
	}
	return nil
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
