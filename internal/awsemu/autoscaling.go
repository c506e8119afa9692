package awsemu

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// scalingProcesses are the processes SuspendProcesses knows.
var scalingProcesses = []string{"Launch", "Terminate", "AddToLoadBalancer", "AlarmNotification", "AZRebalance",
	"HealthCheck", "InstanceRefresh", "ReplaceUnhealthy", "ScheduledActions"}

func (e *Emulator) autoscalingService() *service {
	s := &service{
		name:        "autoscaling",
		eventSource: "autoscaling.amazonaws.com",
		protocol:    protoQuery,
		xmlns:       "http://autoscaling.amazonaws.com/doc/2011-01-01/",
		version:     "2011-01-01",
		errs:        queryErrors(),
	}
	groupARN := func(e *Emulator, c *call) []string {
		name := c.form.str("AutoScalingGroupName")
		if name == "" {
			return nil
		}
		c.acct.mu.Lock()
		defer c.acct.mu.Unlock()
		if g := c.acct.region(c.region).asgs[name]; g != nil {
			return []string{g.arn}
		}
		return nil
	}
	ops := []*operation{
		{name: "DescribeAutoScalingGroups", readOnly: true, handle: (*Emulator).asgDescribeGroups},
		{name: "DescribeAutoScalingInstances", readOnly: true, handle: (*Emulator).asgDescribeInstances},
		{name: "EnterStandby", handle: (*Emulator).asgEnterStandby, resources: groupARN},
		{name: "ExitStandby", handle: (*Emulator).asgExitStandby, resources: groupARN},
		{name: "DetachInstances", handle: (*Emulator).asgDetachInstances, resources: groupARN},
		{name: "AttachInstances", handle: (*Emulator).asgAttachInstances, resources: groupARN},
		{name: "SuspendProcesses", handle: (*Emulator).asgSuspendProcesses, resources: groupARN},
		{name: "ResumeProcesses", handle: (*Emulator).asgResumeProcesses, resources: groupARN},
		{name: "UpdateAutoScalingGroup", handle: (*Emulator).asgUpdateGroup, resources: groupARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "autoscaling:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func asgValidation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

type asgLaunchTemplate struct {
	LaunchTemplateID   string `xml:"LaunchTemplateId"`
	LaunchTemplateName string `xml:"LaunchTemplateName"`
	Version            string `xml:"Version"`
}

type asgInstanceOut struct {
	InstanceID           string             `xml:"InstanceId"`
	InstanceType         string             `xml:"InstanceType,omitempty"`
	AutoScalingGroupName string             `xml:"AutoScalingGroupName,omitempty"`
	AvailabilityZone     string             `xml:"AvailabilityZone"`
	LifecycleState       string             `xml:"LifecycleState"`
	HealthStatus         string             `xml:"HealthStatus"`
	LaunchTemplate       *asgLaunchTemplate `xml:"LaunchTemplate,omitempty"`
	ProtectedFromScaleIn bool               `xml:"ProtectedFromScaleIn"`
}

type asgSuspended struct {
	ProcessName      string `xml:"ProcessName"`
	SuspensionReason string `xml:"SuspensionReason"`
}

type asgTag struct {
	ResourceID        string `xml:"ResourceId"`
	ResourceType      string `xml:"ResourceType"`
	Key               string `xml:"Key"`
	Value             string `xml:"Value"`
	PropagateAtLaunch bool   `xml:"PropagateAtLaunch"`
}

type asgGroupOut struct {
	AutoScalingGroupName   string             `xml:"AutoScalingGroupName"`
	AutoScalingGroupARN    string             `xml:"AutoScalingGroupARN"`
	LaunchTemplate         *asgLaunchTemplate `xml:"LaunchTemplate,omitempty"`
	MinSize                int32              `xml:"MinSize"`
	MaxSize                int32              `xml:"MaxSize"`
	DesiredCapacity        int32              `xml:"DesiredCapacity"`
	DefaultCooldown        int32              `xml:"DefaultCooldown"`
	AvailabilityZones      []string           `xml:"AvailabilityZones>member"`
	TargetGroupARNs        []string           `xml:"TargetGroupARNs>member"`
	HealthCheckType        string             `xml:"HealthCheckType"`
	HealthCheckGracePeriod int32              `xml:"HealthCheckGracePeriod"`
	Instances              []asgInstanceOut   `xml:"Instances>member"`
	CreatedTime            string             `xml:"CreatedTime"`
	SuspendedProcesses     []asgSuspended     `xml:"SuspendedProcesses>member"`
	VPCZoneIdentifier      string             `xml:"VPCZoneIdentifier"`
	Tags                   []asgTag           `xml:"Tags>member"`
	TerminationPolicies    []string           `xml:"TerminationPolicies>member"`
	NewInstancesProtected  bool               `xml:"NewInstancesProtectedFromScaleIn"`
}

func (g *autoScalingGroup) template() *asgLaunchTemplate {
	if g.launch.templateID == "" {
		return nil
	}
	return &asgLaunchTemplate{g.launch.templateID, g.launch.templateName, g.launch.version}
}

func renderGroup(g *autoScalingGroup) asgGroupOut {
	out := asgGroupOut{
		AutoScalingGroupName: g.name, AutoScalingGroupARN: g.arn, LaunchTemplate: g.template(),
		MinSize: g.min, MaxSize: g.max, DesiredCapacity: g.desired, DefaultCooldown: g.defaultCooldown,
		AvailabilityZones: g.azs, TargetGroupARNs: g.targetGroups, HealthCheckType: g.healthCheckType,
		HealthCheckGracePeriod: g.healthGrace, CreatedTime: xmlTime(g.created), VPCZoneIdentifier: strings.Join(g.subnets, ","),
		TerminationPolicies: []string{"Default"},
	}
	for _, m := range g.instances {
		out.Instances = append(out.Instances, asgInstanceOut{InstanceID: m.id, InstanceType: m.itype, AvailabilityZone: m.az,
			LifecycleState: m.lifecycle, HealthStatus: m.health, LaunchTemplate: g.template(), ProtectedFromScaleIn: m.protected})
	}
	for _, p := range scalingProcesses {
		if reason, ok := g.suspended[p]; ok {
			out.SuspendedProcesses = append(out.SuspendedProcesses, asgSuspended{p, reason})
		}
	}
	for _, k := range g.tags.sortedKeys() {
		out.Tags = append(out.Tags, asgTag{g.name, "auto-scaling-group", k, g.tags[k], true})
	}
	return out
}

func (e *Emulator) asgDescribeGroups(c *call) (any, error) {
	names := c.form.strings("AutoScalingGroupNames")
	maxRecords := int64(50)
	if n, ok, err := c.form.integer("MaxRecords"); err != nil || (ok && (n < 1 || n > 100)) {
		return nil, asgValidation("1 validation error detected: Value at 'maxRecords' failed to satisfy constraint: Member must have value between 1 and 100")
	} else if ok {
		maxRecords = n
	}
	type filter struct {
		name   string
		values []string
	}
	var filters []filter
	for _, f := range c.form.list("Filters") {
		filters = append(filters, filter{f.str("Name"), f.strings("Values")})
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	var matched []string
	for name, g := range rg.asgs {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		ok := true
		for _, f := range filters {
			var have []string
			switch {
			case strings.HasPrefix(f.name, "tag:"):
				if v, present := g.tags[strings.TrimPrefix(f.name, "tag:")]; present {
					have = []string{v}
				}
			case f.name == "tag-key":
				have = g.tags.sortedKeys()
			case f.name == "tag-value":
				for _, k := range g.tags.sortedKeys() {
					have = append(have, g.tags[k])
				}
			default:
				return nil, asgValidation("Filter name %s is not valid.", f.name)
			}
			if !slices.ContainsFunc(have, func(h string) bool { return slices.Contains(f.values, h) }) {
				ok = false
			}
		}
		if ok {
			matched = append(matched, name)
		}
	}
	slices.Sort(matched)
	page, next, ae := jsonPage(matched, c.form.str("NextToken"), int(maxRecords), 100, func(string) *apiError {
		return errorf(http.StatusBadRequest, "InvalidNextToken", "The token provided is not valid.")
	})
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		Groups    []asgGroupOut `xml:"AutoScalingGroups>member"`
		NextToken string        `xml:"NextToken,omitempty"`
	}{NextToken: next}
	for _, n := range page {
		out.Groups = append(out.Groups, renderGroup(rg.asgs[n]))
	}
	return out, nil
}

func (e *Emulator) asgDescribeInstances(c *call) (any, error) {
	ids := c.form.strings("InstanceIds")
	maxRecords := int64(50)
	if n, ok, err := c.form.integer("MaxRecords"); err != nil || (ok && (n < 1 || n > 50)) {
		return nil, asgValidation("1 validation error detected: Value at 'maxRecords' failed to satisfy constraint: Member must have value between 1 and 50")
	} else if ok {
		maxRecords = n
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	byID := map[string]asgInstanceOut{}
	var keys []string
	for _, g := range rg.asgs {
		for _, m := range g.instances {
			if len(ids) > 0 && !slices.Contains(ids, m.id) {
				continue
			}
			byID[m.id] = asgInstanceOut{InstanceID: m.id, InstanceType: m.itype, AutoScalingGroupName: g.name, AvailabilityZone: m.az,
				LifecycleState: m.lifecycle, HealthStatus: strings.ToUpper(m.health), LaunchTemplate: g.template(), ProtectedFromScaleIn: m.protected}
			keys = append(keys, m.id)
		}
	}
	slices.Sort(keys)
	page, next, ae := jsonPage(keys, c.form.str("NextToken"), int(maxRecords), 50, func(string) *apiError {
		return errorf(http.StatusBadRequest, "InvalidNextToken", "The token provided is not valid.")
	})
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		Instances []asgInstanceOut `xml:"AutoScalingInstances>member"`
		NextToken string           `xml:"NextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		out.Instances = append(out.Instances, byID[id])
	}
	return out, nil
}

type asgActivity struct {
	ActivityID           string `xml:"ActivityId"`
	AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	Description          string `xml:"Description"`
	Cause                string `xml:"Cause"`
	StartTime            string `xml:"StartTime"`
	StatusCode           string `xml:"StatusCode"`
	Progress             int32  `xml:"Progress"`
	Details              string `xml:"Details"`
}

type asgActivities struct {
	Activities []asgActivity `xml:"Activities>member"`
}

// groupFor finds the named group in the call's region. The caller holds
// the account lock.
func (c *call) asgFor(name string) (*region, *autoScalingGroup, *apiError) {
	if name == "" {
		return nil, nil, asgValidation("1 validation error detected: Value null at 'autoScalingGroupName' failed to satisfy constraint: Member must not be null")
	}
	rg := c.acct.region(c.region)
	g := rg.asgs[name]
	if g == nil {
		return nil, nil, asgValidation("AutoScalingGroup name not found - AutoScalingGroup %s not found", name)
	}
	return rg, g, nil
}

func (e *Emulator) activity(c *call, g *autoScalingGroup, in *instance, desc, cause string) asgActivity {
	g.activities++
	return asgActivity{ActivityID: e.ids.uuid("activity"), AutoScalingGroupName: g.name, Description: desc + ": " + in.id,
		Cause: fmt.Sprintf("At %s %s", c.now.UTC().Format(time.RFC3339), cause), StartTime: xmlTime(c.now), StatusCode: "InProgress", Progress: 50,
		Details: fmt.Sprintf(`{"Subnet ID":"%s","Availability Zone":"%s"}`, in.subnetID, in.az)}
}

// inService counts the members that count towards desired capacity.
func (g *autoScalingGroup) inService() int32 {
	n := int32(0)
	for _, m := range g.instances {
		if m.lifecycle == "InService" || m.lifecycle == "Pending" {
			n++
		}
	}
	return n
}

// membersFor returns the group's members named by InstanceIds, each in one
// of the allowed lifecycle states.
func membersFor(c *call, g *autoScalingGroup, allowed string) ([]*asgInstance, *apiError) {
	ids := c.form.strings("InstanceIds")
	if len(ids) == 0 {
		return nil, asgValidation("The instance ID list is empty.")
	}
	if len(ids) > 20 {
		return nil, asgValidation("The number of instance IDs must be at most 20.")
	}
	var out []*asgInstance
	for _, id := range ids {
		m := g.member(id)
		if m == nil {
			return nil, asgValidation("The instance %s is not part of Auto Scaling group %s.", id, g.name)
		}
		if allowed != "" && m.lifecycle != allowed {
			return nil, asgValidation("The instance %s is not in %s.", id, allowed)
		}
		out = append(out, m)
	}
	return out, nil
}

func (e *Emulator) asgEnterStandby(c *call) (any, error) {
	decrement, given := c.form.optBool("ShouldDecrementDesiredCapacity")
	if !given {
		return nil, asgValidation("1 validation error detected: Value null at 'shouldDecrementDesiredCapacity' failed to satisfy constraint: Member must not be null")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	members, ae := membersFor(c, g, "InService")
	if ae != nil {
		return nil, ae
	}
	n := int32(len(members))
	before := g.desired
	if decrement && g.desired-n < g.min {
		return nil, asgValidation("AutoScalingGroup %s has min-size=%d, max-size=%d, and desired-size=%d. To place into standby %d instances, please update the AutoScalingGroup sizes appropriately.",
			g.name, g.min, g.max, g.desired, n)
	}
	if decrement {
		g.desired -= n
	}
	out := &asgActivities{}
	for _, m := range members {
		m.lifecycle = "Standby"
		rg.deregisterEverywhere(g.targetGroups, m.id, c.now)
		cause := fmt.Sprintf("instance %s was moved to standby in response to a user request, shrinking the capacity from %d to %d.", m.id, before, g.desired)
		if !decrement {
			cause = fmt.Sprintf("instance %s was moved to standby in response to a user request, keeping the capacity at the desired %d.", m.id, g.desired)
		}
		out.Activities = append(out.Activities, e.activity(c, g, rg.instances[m.id], "Moving EC2 instance to Standby", cause))
	}
	if err := e.reconcile(c.acct, rg, g, c.now); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *Emulator) asgExitStandby(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	members, ae := membersFor(c, g, "Standby")
	if ae != nil {
		return nil, ae
	}
	n := int32(len(members))
	if g.desired+n > g.max {
		return nil, asgValidation("AutoScalingGroup %s has min-size=%d, max-size=%d, and desired-size=%d. To exit standby %d instances, please update the AutoScalingGroup sizes appropriately.",
			g.name, g.min, g.max, g.desired, n)
	}
	before := g.desired
	g.desired += n
	out := &asgActivities{}
	for _, m := range members {
		m.lifecycle = "InService"
		if _, suspended := g.suspended["AddToLoadBalancer"]; !suspended {
			rg.registerEverywhere(g.targetGroups, rg.instances[m.id], c.now)
		}
		out.Activities = append(out.Activities, e.activity(c, g, rg.instances[m.id], "Moving EC2 instance out of Standby",
			fmt.Sprintf("instance %s was moved out of standby in response to a user request, increasing the capacity from %d to %d.", m.id, before, g.desired)))
	}
	return out, nil
}

func (e *Emulator) asgDetachInstances(c *call) (any, error) {
	decrement, given := c.form.optBool("ShouldDecrementDesiredCapacity")
	if !given {
		return nil, asgValidation("1 validation error detected: Value null at 'shouldDecrementDesiredCapacity' failed to satisfy constraint: Member must not be null")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	members, ae := membersFor(c, g, "")
	if ae != nil {
		return nil, ae
	}
	counted := int32(0)
	for _, m := range members {
		if m.lifecycle == "InService" || m.lifecycle == "Pending" {
			counted++
		}
	}
	if decrement && g.desired-counted < g.min {
		return nil, asgValidation("AutoScalingGroup %s has min-size=%d, max-size=%d, and desired-size=%d. To detach %d instances, please update the AutoScalingGroup sizes appropriately.",
			g.name, g.min, g.max, g.desired, len(members))
	}
	before := g.desired
	if decrement {
		g.desired -= counted
	}
	out := &asgActivities{}
	for _, m := range members {
		in := rg.instances[m.id]
		rg.deregisterEverywhere(g.targetGroups, m.id, c.now)
		g.instances = slices.DeleteFunc(g.instances, func(x *asgInstance) bool { return x.id == m.id })
		in.asgName = ""
		delete(in.tags, "aws:autoscaling:groupName")
		out.Activities = append(out.Activities, e.activity(c, g, in, "Detaching EC2 instance",
			fmt.Sprintf("instance %s was detached in response to a user request, shrinking the capacity from %d to %d.", m.id, before, g.desired)))
	}
	if err := e.reconcile(c.acct, rg, g, c.now); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *Emulator) asgAttachInstances(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	ids := c.form.strings("InstanceIds")
	if len(ids) == 0 {
		return nil, asgValidation("The instance ID list is empty.")
	}
	var ins []*instance
	for _, id := range ids {
		in := rg.instances[id]
		switch {
		case in == nil:
			return nil, asgValidation("Instance %s is not valid.", id)
		case in.asgName == g.name:
			continue
		case in.asgName != "":
			return nil, asgValidation("The instance %s is already part of the Auto Scaling group %s.", id, in.asgName)
		case in.state != "running":
			return nil, asgValidation("Instance %s is not in correct state.", id)
		case !slices.Contains(g.azs, in.az):
			return nil, asgValidation("Instance %s is not in the Availability Zones of the Auto Scaling group %s.", id, g.name)
		}
		ins = append(ins, in)
	}
	if g.desired+int32(len(ins)) > g.max {
		return nil, asgValidation("Desired capacity:%d must be between the specified min size:%d and max size:%d", g.desired+int32(len(ins)), g.min, g.max)
	}
	g.desired += int32(len(ins))
	for _, in := range ins {
		in.asgName = g.name
		in.tags["aws:autoscaling:groupName"] = g.name
		g.instances = append(g.instances, &asgInstance{id: in.id, az: in.az, lifecycle: "InService", health: "Healthy", itype: in.instanceType})
		if _, suspended := g.suspended["AddToLoadBalancer"]; !suspended {
			rg.registerEverywhere(g.targetGroups, in, c.now)
		}
	}
	return nil, nil
}

func processesOf(c *call) ([]string, *apiError) {
	ps := c.form.strings("ScalingProcesses")
	if len(ps) == 0 {
		return scalingProcesses, nil
	}
	for _, p := range ps {
		if !slices.Contains(scalingProcesses, p) {
			return nil, asgValidation("Process %s is not a valid process.", p)
		}
	}
	return ps, nil
}

func (e *Emulator) asgSuspendProcesses(c *call) (any, error) {
	ps, ae := processesOf(c)
	if ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	for _, p := range ps {
		if _, ok := g.suspended[p]; !ok {
			g.suspended[p] = "User suspended at " + c.now.UTC().Format(time.RFC3339)
		}
	}
	return nil, nil
}

func (e *Emulator) asgResumeProcesses(c *call) (any, error) {
	ps, ae := processesOf(c)
	if ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	for _, p := range ps {
		delete(g.suspended, p)
	}
	if err := e.reconcile(c.acct, rg, g, c.now); err != nil {
		return nil, err
	}
	return nil, nil
}

func (e *Emulator) asgUpdateGroup(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, g, ae := c.asgFor(c.form.str("AutoScalingGroupName"))
	if ae != nil {
		return nil, ae
	}
	minSize, maxSize, desired := g.min, g.max, g.desired
	for _, f := range []struct {
		name string
		dst  *int32
	}{{"MinSize", &minSize}, {"MaxSize", &maxSize}, {"DesiredCapacity", &desired}} {
		n, ok, err := c.form.integer(f.name)
		if err != nil || (ok && n < 0) {
			return nil, asgValidation("1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have value greater than or equal to 0", lowerFirst(f.name))
		}
		if ok {
			*f.dst = int32(n)
		}
	}
	// A new minimum or maximum drags the desired capacity along when the
	// caller did not set it.
	if !c.form.has("DesiredCapacity") {
		desired = max(minSize, min(desired, maxSize))
	}
	if minSize > maxSize {
		return nil, asgValidation("Max bound, %d, must be greater than or equal to min bound, %d", maxSize, minSize)
	}
	if desired < minSize || desired > maxSize {
		return nil, asgValidation("Desired capacity:%d must be between the specified min size:%d and max size:%d", desired, minSize, maxSize)
	}
	g.min, g.max, g.desired = minSize, maxSize, desired
	if err := e.reconcile(c.acct, rg, g, c.now); err != nil {
		return nil, err
	}
	return nil, nil
}

// reconcile launches or terminates instances until the group's in-service
// capacity matches its desired capacity, as far as its suspended processes
// allow. The caller holds the account lock.
func (e *Emulator) reconcile(a *account, rg *region, g *autoScalingGroup, now time.Time) error {
	for g.inService() < g.desired {
		if _, suspended := g.suspended["Launch"]; suspended || len(g.subnets) == 0 {
			return nil
		}
		sn := rg.subnets[g.subnets[int(g.activities)%len(g.subnets)]]
		if sn == nil {
			return fmt.Errorf("auto scaling group %s names missing subnet", g.name)
		}
		var prof *instanceProfile
		if g.launch.instanceProfile != "" {
			prof = a.instanceProfiles[g.launch.instanceProfile]
		}
		in, err := e.launchInstance(a.id, rg, launchRequest{
			instanceType: g.launch.instanceType, imageID: g.launch.imageID, subnet: sn, groups: g.launch.securityGroups,
			tags: tags{"aws:autoscaling:groupName": g.name}, launchTime: now, profile: prof,
			volumes: []VolumeSeed{{Size: g.launch.volumeSize, Encrypted: g.launch.encrypted, KMSKeyID: g.launch.kmsKeyID}},
		})
		if err != nil {
			return fmt.Errorf("auto scaling group %s: launch replacement: %w", g.name, err)
		}
		in.asgName = g.name
		g.activities++
		g.instances = append(g.instances, &asgInstance{id: in.id, az: in.az, lifecycle: "InService", health: "Healthy", itype: in.instanceType})
		if _, suspended := g.suspended["AddToLoadBalancer"]; !suspended {
			rg.registerEverywhere(g.targetGroups, in, now)
		}
	}
	for g.inService() > g.desired {
		if _, suspended := g.suspended["Terminate"]; suspended {
			return nil
		}
		// The default termination policy picks the newest unprotected
		// in-service instance.
		victim := -1
		for j := len(g.instances) - 1; j >= 0; j-- {
			if m := g.instances[j]; m.lifecycle == "InService" && !m.protected {
				victim = j
				break
			}
		}
		if victim < 0 {
			return nil
		}
		m := g.instances[victim]
		g.instances = slices.Delete(g.instances, victim, victim+1)
		rg.deregisterEverywhere(g.targetGroups, m.id, now)
		rg.terminate(rg.instances[m.id])
		g.activities++
	}
	return nil
}

// terminate ends an instance: its primary interface and the volumes marked
// delete-on-termination go with it.
func (rg *region) terminate(in *instance) {
	if in == nil {
		return
	}
	in.state = "terminated"
	in.asgName = ""
	for _, id := range in.enis {
		if eni := rg.enis[id]; eni != nil {
			if sn := rg.subnets[eni.subnetID]; sn != nil {
				delete(sn.used, eni.privateIP)
			}
			delete(rg.enis, id)
		}
	}
	in.enis = nil
	for _, d := range in.devices {
		if d.deleteOnTermination {
			delete(rg.volumes, d.volumeID)
		} else if v := rg.volumes[d.volumeID]; v != nil {
			v.instanceID, v.device, v.state = "", "", "available"
		}
	}
	in.devices = nil
	for id, a := range rg.associations {
		if a.instanceID == in.id {
			delete(rg.associations, id)
		}
	}
}
