package awsemu

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (e *Emulator) elbv2Service() *service {
	s := &service{
		name:        "elasticloadbalancing",
		eventSource: "elasticloadbalancing.amazonaws.com",
		protocol:    protoQuery,
		xmlns:       "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
		version:     "2015-12-01",
		errs:        queryErrors(),
	}
	tgARN := func(e *Emulator, c *call) []string {
		if arn := c.form.str("TargetGroupArn"); arn != "" {
			return []string{arn}
		}
		return nil
	}
	ops := []*operation{
		{name: "DescribeTargetGroups", readOnly: true, handle: (*Emulator).elbDescribeTargetGroups},
		{name: "DescribeTargetHealth", readOnly: true, handle: (*Emulator).elbDescribeTargetHealth, resources: tgARN},
		{name: "RegisterTargets", handle: (*Emulator).elbRegisterTargets, resources: tgARN},
		{name: "DeregisterTargets", handle: (*Emulator).elbDeregisterTargets, resources: tgARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "elasticloadbalancing:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func tgNotFound() *apiError {
	return errorf(http.StatusBadRequest, "TargetGroupNotFound", "One or more target groups not found")
}

// prune drops targets whose deregistration delay is over.
func (tg *targetGroup) prune(now time.Time) {
	tg.targets = slices.DeleteFunc(tg.targets, func(t *target) bool {
		return !t.drainingUntil.IsZero() && !now.Before(t.drainingUntil)
	})
}

// register adds an instance target, or brings a draining one back.
func (tg *targetGroup) register(in *instance, port int32, now time.Time) {
	tg.prune(now)
	if t := tg.find(in.id, port); t != nil {
		t.drainingUntil = time.Time{}
		return
	}
	tg.targets = append(tg.targets, &target{id: in.id, port: port, az: in.az, registered: now})
}

// deregister starts draining a target; it reports whether it was registered.
func (tg *targetGroup) deregister(id string, port int32, now time.Time) bool { //nolint:unparam // reports whether the target was registered, like register
	tg.prune(now)
	t := tg.find(id, port)
	if t == nil || !t.drainingUntil.IsZero() {
		return false
	}
	t.drainingUntil = now.Add(tg.deregistrationDelay)
	if tg.deregistrationDelay == 0 {
		tg.prune(now)
	}
	return true
}

// registerEverywhere registers an instance on each target group's port, as
// Auto Scaling does for its members.
func (rg *region) registerEverywhere(arns []string, in *instance, now time.Time) {
	for _, arn := range arns {
		if tg := rg.targetGroups[arn]; tg != nil && in != nil {
			tg.register(in, tg.port, now)
		}
	}
}

// deregisterEverywhere deregisters every target of the instance from the
// groups.
func (rg *region) deregisterEverywhere(arns []string, id string, now time.Time) {
	for _, arn := range arns {
		tg := rg.targetGroups[arn]
		if tg == nil {
			continue
		}
		for _, t := range slices.Clone(tg.targets) {
			if t.id == id {
				tg.deregister(id, t.port, now)
			}
		}
	}
}

type elbMatcher struct {
	HTTPCode string `xml:"HttpCode"`
}

type elbTargetGroupOut struct {
	TargetGroupArn             string     `xml:"TargetGroupArn"`
	TargetGroupName            string     `xml:"TargetGroupName"`
	Protocol                   string     `xml:"Protocol"`
	Port                       int32      `xml:"Port"`
	VpcID                      string     `xml:"VpcId"`
	HealthCheckProtocol        string     `xml:"HealthCheckProtocol"`
	HealthCheckPort            string     `xml:"HealthCheckPort"`
	HealthCheckEnabled         bool       `xml:"HealthCheckEnabled"`
	HealthCheckIntervalSeconds int32      `xml:"HealthCheckIntervalSeconds"`
	HealthCheckTimeoutSeconds  int32      `xml:"HealthCheckTimeoutSeconds"`
	HealthyThresholdCount      int32      `xml:"HealthyThresholdCount"`
	UnhealthyThresholdCount    int32      `xml:"UnhealthyThresholdCount"`
	HealthCheckPath            string     `xml:"HealthCheckPath"`
	Matcher                    elbMatcher `xml:"Matcher"`
	LoadBalancerArns           []string   `xml:"LoadBalancerArns>member"`
	TargetType                 string     `xml:"TargetType"`
	ProtocolVersion            string     `xml:"ProtocolVersion"`
	IPAddressType              string     `xml:"IpAddressType"`
}

func (e *Emulator) elbDescribeTargetGroups(c *call) (any, error) {
	arns := c.form.strings("TargetGroupArns")
	names := c.form.strings("Names")
	lb := c.form.str("LoadBalancerArn")
	pageSize := int64(400)
	if n, ok, err := c.form.integer("PageSize"); err != nil || (ok && (n < 1 || n > 400)) {
		return nil, asgValidation("1 validation error detected: Value at 'pageSize' failed to satisfy constraint: Member must have value between 1 and 400")
	} else if ok {
		pageSize = n
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	for _, arn := range arns {
		if rg.targetGroups[arn] == nil {
			return nil, tgNotFound()
		}
	}
	var matched []string
	for arn, tg := range rg.targetGroups {
		if len(arns) > 0 && !slices.Contains(arns, arn) {
			continue
		}
		if len(names) > 0 && !slices.Contains(names, tg.name) {
			continue
		}
		if lb != "" && !slices.Contains(tg.loadBalancers, lb) {
			continue
		}
		matched = append(matched, arn)
	}
	for _, n := range names {
		if !slices.ContainsFunc(matched, func(arn string) bool { return rg.targetGroups[arn].name == n }) {
			return nil, tgNotFound()
		}
	}
	slices.Sort(matched)
	page, next, ae := jsonPage(matched, c.form.str("Marker"), int(pageSize), 400, func(string) *apiError {
		return asgValidation("Invalid Marker")
	})
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		TargetGroups []elbTargetGroupOut `xml:"TargetGroups>member"`
		NextMarker   string              `xml:"NextMarker,omitempty"`
	}{NextMarker: next}
	for _, arn := range page {
		tg := rg.targetGroups[arn]
		out.TargetGroups = append(out.TargetGroups, elbTargetGroupOut{
			TargetGroupArn: tg.arn, TargetGroupName: tg.name, Protocol: tg.protocol, Port: tg.port, VpcID: tg.vpcID,
			HealthCheckProtocol: tg.protocol, HealthCheckPort: "traffic-port", HealthCheckEnabled: true, HealthCheckIntervalSeconds: 30,
			HealthCheckTimeoutSeconds: 5, HealthyThresholdCount: 5, UnhealthyThresholdCount: 2, HealthCheckPath: tg.healthPath,
			Matcher: elbMatcher{"200"}, LoadBalancerArns: tg.loadBalancers, TargetType: tg.targetType, ProtocolVersion: "HTTP1", IPAddressType: "ipv4",
		})
	}
	return out, nil
}

type elbTarget struct {
	ID               string `xml:"Id"`
	Port             int32  `xml:"Port"`
	AvailabilityZone string `xml:"AvailabilityZone,omitempty"`
}

type elbTargetHealth struct {
	State       string `xml:"State"`
	Reason      string `xml:"Reason,omitempty"`
	Description string `xml:"Description,omitempty"`
}

type elbHealthDescription struct {
	Target          elbTarget       `xml:"Target"`
	HealthCheckPort string          `xml:"HealthCheckPort"`
	TargetHealth    elbTargetHealth `xml:"TargetHealth"`
}

// targetsOf reads Targets.member.N.
func targetsOf(p *params) []elbTarget {
	var out []elbTarget
	for _, t := range p.list("Targets") {
		port, _, _ := t.integer("Port")
		out = append(out, elbTarget{ID: t.str("Id"), Port: int32(port), AvailabilityZone: t.str("AvailabilityZone")})
	}
	return out
}

func (rg *region) health(t *target) elbTargetHealth {
	if !t.drainingUntil.IsZero() {
		return elbTargetHealth{"draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"}
	}
	in := rg.instances[t.id]
	switch {
	case in == nil || in.state == "terminated":
		return elbTargetHealth{"unused", "Target.InvalidState", "Target is in the terminated state"}
	case in.state != "running":
		return elbTargetHealth{"unused", "Target.InvalidState", "Target is in the " + in.state + " state"}
	}
	return elbTargetHealth{State: "healthy"}
}

func (e *Emulator) elbDescribeTargetHealth(c *call) (any, error) {
	arn := c.form.str("TargetGroupArn")
	asked := targetsOf(c.form)
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	tg := rg.targetGroups[arn]
	if tg == nil {
		return nil, tgNotFound()
	}
	tg.prune(c.now)
	out := &struct {
		Descriptions []elbHealthDescription `xml:"TargetHealthDescriptions>member"`
	}{}
	describe := func(t *target) {
		out.Descriptions = append(out.Descriptions, elbHealthDescription{elbTarget{t.id, t.port, ""}, strconv.Itoa(int(t.port)), rg.health(t)})
	}
	if len(asked) == 0 {
		for _, t := range tg.targets {
			describe(t)
		}
		return out, nil
	}
	for _, a := range asked {
		port := a.Port
		if port == 0 {
			port = tg.port
		}
		if t := tg.find(a.ID, port); t != nil {
			describe(t)
			continue
		}
		if rg.instances[a.ID] == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are invalid: '%s'", a.ID)
		}
		out.Descriptions = append(out.Descriptions, elbHealthDescription{elbTarget{a.ID, port, ""}, strconv.Itoa(int(port)),
			elbTargetHealth{"unused", "Target.NotRegistered", "Target is not registered to the target group"}})
	}
	return out, nil
}

func (e *Emulator) elbRegisterTargets(c *call) (any, error) {
	arn := c.form.str("TargetGroupArn")
	targets := targetsOf(c.form)
	if len(targets) == 0 {
		return nil, asgValidation("1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	tg := rg.targetGroups[arn]
	if tg == nil {
		return nil, tgNotFound()
	}
	var invalid, notRunning, otherVPC []string
	for _, t := range targets {
		in := rg.instances[t.ID]
		switch {
		case in == nil:
			invalid = append(invalid, "'"+t.ID+"'")
		case in.state != "running":
			notRunning = append(notRunning, "'"+t.ID+"'")
		case in.vpcID != tg.vpcID:
			otherVPC = append(otherVPC, "'"+t.ID+"'")
		}
	}
	switch {
	case len(invalid) > 0:
		return nil, errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are invalid: %s", strings.Join(invalid, ", "))
	case len(otherVPC) > 0:
		return nil, errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are not in the target group VPC '%s': %s", tg.vpcID, strings.Join(otherVPC, ", "))
	case len(notRunning) > 0:
		return nil, errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are not in a running state and cannot be registered: %s", strings.Join(notRunning, ", "))
	}
	for _, t := range targets {
		port := t.Port
		if port == 0 {
			port = tg.port
		}
		tg.register(rg.instances[t.ID], port, c.now)
	}
	return nil, nil
}

func (e *Emulator) elbDeregisterTargets(c *call) (any, error) {
	arn := c.form.str("TargetGroupArn")
	targets := targetsOf(c.form)
	if len(targets) == 0 {
		return nil, asgValidation("1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	tg := rg.targetGroups[arn]
	if tg == nil {
		return nil, tgNotFound()
	}
	tg.prune(c.now)
	var missing []string
	for _, t := range targets {
		port := t.Port
		if port == 0 {
			port = tg.port
		}
		if tg.find(t.ID, port) == nil {
			missing = append(missing, "'"+t.ID+"'")
		}
	}
	if len(missing) > 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are not registered in target group '%s': %s", tg.name, strings.Join(missing, ", "))
	}
	for _, t := range targets {
		port := t.Port
		if port == 0 {
			port = tg.port
		}
		tg.deregister(t.ID, port, c.now)
	}
	return nil, nil
}
