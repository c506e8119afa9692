package awsec2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// IsolateParams are aws-ec2-isolate's parameters.
type IsolateParams struct {
	Target
	// CaseID is written into the firebreak:case tag; the run's case when
	// empty.
	CaseID string `json:"case_id,omitempty"`
	// AllowCIDRs are networks the isolated instance may still exchange
	// traffic with, such as a forensics subnet.
	AllowCIDRs []string `json:"allow_cidrs,omitempty"`
	// RevokeInstanceProfile disassociates the instance profile and denies
	// the profile role's sessions issued to this instance until now.
	RevokeInstanceProfile bool `json:"revoke_instance_profile,omitempty"`
	// UntrackFirst moves each ENI through the allow-all group before the
	// isolation group, so established connections are cut; true when
	// absent.
	UntrackFirst *bool `json:"untrack_first,omitempty"`
}

// Step statuses.
const (
	// StepDone means the step changed something.
	StepDone = "done"
	// StepAlready means what the step ensures was already in place.
	StepAlready = "already"
	// StepSkipped means the step did not apply or was not asked for.
	StepSkipped = "skipped"
	// StepFailed means the step failed; the task's error says why.
	StepFailed = "failed"
)

// Step is what one step of an action did.
type Step struct {
	// Name is the step: inspect, record, attributes, network, auto-scaling,
	// target-groups, instance-profile, tags, cleanup.
	Name string `json:"name"`
	// Status is done, already, skipped or failed.
	Status string `json:"status"`
	// Detail says what was found or changed.
	Detail string `json:"detail,omitempty"`
}

// InterfaceIsolation is what the network step did to one ENI.
type InterfaceIsolation struct {
	// NetworkInterfaceID is the ENI.
	NetworkInterfaceID string `json:"network_interface_id"`
	// VPCID is its VPC.
	VPCID string `json:"vpc_id"`
	// GroupsBefore are its groups when the task started.
	GroupsBefore []string `json:"groups_before"`
	// UntrackGroup is the VPC's allow-all group, when used.
	UntrackGroup string `json:"untrack_group,omitempty"`
	// IsolationGroup is the VPC's isolation group.
	IsolationGroup string `json:"isolation_group"`
	// Sequence lists the group sets applied in order: "untrack" then
	// "isolation", or only "isolation" without the untrack step, or
	// nothing when the ENI was already isolated.
	Sequence []string `json:"sequence"`
}

// AutoScalingIsolation is what the auto-scaling step did.
type AutoScalingIsolation struct {
	// Group is the Auto Scaling group.
	Group string `json:"group"`
	// Method is standby (EnterStandby with ShouldDecrementDesiredCapacity),
	// detach (DetachInstances, when standby would take the group below its
	// minimum size; the group launches a replacement), or none (the
	// instance was already out of service).
	Method string `json:"method"`
	// Reason explains the method.
	Reason string `json:"reason"`
	// SuspendedProcesses are the processes this isolation suspended.
	SuspendedProcesses []string `json:"suspended_processes"`
	// AlreadySuspended are the processes that were suspended before.
	AlreadySuspended []string `json:"already_suspended,omitempty"`
}

// SessionRevocation is what the instance-profile step did.
type SessionRevocation struct {
	// InstanceProfileARN is the disassociated profile.
	InstanceProfileARN string `json:"instance_profile_arn"`
	// Roles are the profile's roles given the deny.
	Roles []string `json:"roles"`
	// PolicyName is the inline deny policy on each role.
	PolicyName string `json:"policy_name"`
	// IssuedBefore is the cut-off: the role's sessions issued to this
	// instance before it are denied everything.
	IssuedBefore time.Time `json:"issued_before"`
}

// IsolateResult is aws-ec2-isolate's result.
type IsolateResult struct {
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// CaseID and RunID are written into the instance's tags.
	CaseID string `json:"case_id,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	// AlreadyIsolated is true when the record tag and every measure were
	// already in place and nothing was changed.
	AlreadyIsolated bool `json:"already_isolated"`
	// Resumed is true when a record tag from an earlier, unfinished
	// isolation was found: its record was kept and the missing measures
	// applied.
	Resumed bool `json:"resumed,omitempty"`
	// IsolatedAt is the firebreak:isolated-at tag's time.
	IsolatedAt time.Time `json:"isolated_at,omitzero"`
	// Steps say what each step did, in order.
	Steps []Step `json:"steps"`
	// Network is what happened to each ENI.
	Network []InterfaceIsolation `json:"network,omitempty"`
	// AutoScaling is what happened in the instance's Auto Scaling group.
	AutoScaling *AutoScalingIsolation `json:"auto_scaling,omitempty"`
	// Deregistered are the target-group registrations removed.
	Deregistered []TargetRecord `json:"deregistered,omitempty"`
	// SessionRevocation is set when the instance profile was revoked.
	SessionRevocation *SessionRevocation `json:"session_revocation,omitempty"`
	// RollbackRecord is what aws-ec2-unisolate restores; it is also on the
	// instance in the record tags.
	RollbackRecord *Record `json:"rollback_record,omitempty"`
	// RecordTags are the tag keys holding the record.
	RecordTags []string `json:"record_tags,omitempty"`
	// Warnings are things the responder should know.
	Warnings []string `json:"warnings,omitempty"`
	// Changes counts the successful calls that changed something.
	Changes int `json:"changes"`
	// Calls lists every API call made, in order.
	Calls []APICall `json:"calls"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// isolationProcesses are the Auto Scaling processes suspended so the group
// neither replaces nor terminates the isolated instance.
var isolationProcesses = []string{"HealthCheck", "ReplaceUnhealthy", "Terminate"}

// Isolate is the aws-ec2-isolate action.
type Isolate struct{ cfg Config }

// NewIsolate returns aws-ec2-isolate.
func NewIsolate(cfg Config) *Isolate {
	cfg.CheckAndSetDefaults()
	return &Isolate{cfg: cfg}
}

// Describe implements sdk.Action.
func (a *Isolate) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	params := append(targetParams(), caseParam(),
		&pluginv1.ParamSpec{Name: "allow_cidrs", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]",
			Description: "networks the isolated instance may still exchange traffic with, e.g. a forensics subnet 10.9.0.0/24 (IPv4 /8 or narrower, IPv6 /32 or narrower)"},
		&pluginv1.ParamSpec{Name: "revoke_instance_profile", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "false",
			Description: "disassociate the instance profile and deny its role's sessions issued to this instance until now (inline deny with aws:TokenIssueTime and ec2:SourceInstanceARN)"},
		&pluginv1.ParamSpec{Name: "untrack_first", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "true",
			Description: "move each ENI through an allow-all group first, so connection tracking lets the isolation group cut established sessions; false swaps directly and leaves tracked sessions open"},
	)
	return &pluginv1.ActionDescription{
		Name:    IsolateName,
		Version: Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Isolates an EC2 instance through the AWS APIs: records the rollback record (in the result and the firebreak:pre-isolation tags), " +
			"suspends its Auto Scaling processes, protects it from termination, swaps every ENI to an isolation security group through an allow-all " +
			"untrack group, puts it in ASG standby (or detaches it at minimum size), deregisters it from its target groups, optionally revokes its " +
			"instance profile, and tags it with the case",
		Destructive:    true,
		RollbackAction: UnisolateName,
		Roles:          []string{"worker"},
		Params:         params,
	}, nil
}

// Execute implements sdk.Action.
func (a *Isolate) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := a.cfg.Clock()
	var p IsolateParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	allow, err := parseAllowed(p.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	s, err := newScope(a.cfg, req, emit, p.Target, p.CaseID)
	if err != nil {
		return nil, err
	}
	res := &IsolateResult{InstanceID: s.instanceID, Account: s.account, Region: s.region, CaseID: s.caseID, RunID: s.runID, Steps: []Step{}}
	err = (&isolation{scope: s, p: p, allow: allow, untrack: p.UntrackFirst == nil || *p.UntrackFirst, res: res}).run(ctx)
	res.Calls, res.Changes = s.j.snapshot()
	res.AlreadyIsolated = err == nil && res.Resumed && res.Changes == 0
	if res.AlreadyIsolated {
		res.Resumed = false
	}
	res.ElapsedMS = millis(a.cfg.Clock().Sub(start))
	if err != nil {
		s.log("error", "isolation of %s stopped: %v", s.where(), err)
		return res, err
	}
	return res, nil
}

// isolation is one aws-ec2-isolate task.
type isolation struct {
	*scope
	p       IsolateParams
	allow   []netip.Prefix
	untrack bool
	res     *IsolateResult
	st      *instanceState
	rec     *Record
}

func (x *isolation) run(ctx context.Context) error {
	return x.runSteps(ctx, &x.res.Steps, []plannedStep{
		{"inspect", 5, "reading " + x.where(), x.inspectStep},
		{"record", 15, "recording the rollback record", x.record},
		{"auto-scaling-processes", 25, "suspending Auto Scaling processes", x.suspendProcesses},
		{"attributes", 35, "protecting the instance from termination", x.protect},
		{"network", 50, "swapping security groups", x.network},
		{"auto-scaling", 65, "taking the instance out of its Auto Scaling group", x.leaveGroup},
		{"target-groups", 75, "deregistering from target groups", x.deregister},
		{"instance-profile", 85, "revoking the instance profile", x.revokeProfile},
		{"tags", 95, "tagging the instance", x.tag},
		{"", 100, "isolated " + x.where(), nil},
	})
}

func (x *isolation) inspectStep(ctx context.Context) (string, string, error) {
	st, err := x.inspect(ctx, "inspect")
	if err != nil {
		return "", "", err
	}
	if state := st.instance.State; state != nil && (state.Name == ec2types.InstanceStateNameTerminated || state.Name == ec2types.InstanceStateNameShuttingDown) {
		return "", "", sdk.Errorf(codes.FailedPrecondition, "%s is %s: there is nothing left to isolate", x.where(), state.Name)
	}
	x.st = st
	return StepDone, fmt.Sprintf("%d network interfaces, %d volumes, %d target-group registrations", len(st.interfaces), len(st.volumes), len(st.targets)), nil
}

// record finds the record of an earlier isolation, or takes one and writes
// it into the instance's tags before anything changes, so an interrupted
// isolation can still be rolled back.
func (x *isolation) record(ctx context.Context) (string, string, error) {
	in := x.st.instance
	old, err := decodeRecordTags(in.Tags)
	switch {
	case err == nil && old.InstanceID == x.instanceID && old.Account == x.account && old.Region == x.region:
		x.rec, x.res.Resumed = old, true
		x.res.RollbackRecord, x.res.RecordTags = old, recordTagKeys(in.Tags)
		return StepAlready, fmt.Sprintf("kept the record of %s taken at %s", TagRecord, old.RecordedAt.Format(time.RFC3339)), nil
	case err == nil:
		// Security-critical: an isolation must not be stopped or steered by
		// a planted tag, so a record for another instance is replaced.
		x.res.Warnings = append(x.res.Warnings, fmt.Sprintf("replaced a %s tag naming instance %s in %s/%s", TagRecord, old.InstanceID, old.Account, old.Region))
	case !errors.Is(err, errNoRecord):
		x.res.Warnings = append(x.res.Warnings, fmt.Sprintf("replaced an unreadable %s tag: %v", TagRecord, err))
	}
	st := x.st
	rec := &Record{Version: RecordVersion, InstanceID: x.instanceID, Account: x.account, Region: x.region, RecordedAt: x.now().UTC().Truncate(time.Second),
		RunID: x.runID, CaseID: x.caseID, Interfaces: st.interfaces, AutoScaling: st.autoScaling, TargetGroups: st.targets,
		DisableAPITermination: st.disableAPITermination, ShutdownBehavior: st.shutdownBehavior, Volumes: st.volumes, InstanceProfile: st.profile}
	for _, k := range []string{TagCase, TagRun, TagIsolatedAt} {
		if v, ok := tagValue(in.Tags, k); ok {
			if rec.Tags == nil {
				rec.Tags = map[string]string{}
			}
			rec.Tags[k] = v
		}
	}
	tags, err := encodeRecordTags(rec)
	if err != nil {
		return "", "", sdk.Errorf(codes.FailedPrecondition, "%v: the instance has too many interfaces, volumes or target groups to keep its record in tags", err)
	}
	marks := []ec2types.Tag{{Key: aws.String(TagCase)}, {Key: aws.String(TagRun)}, {Key: aws.String(TagIsolatedAt)}}
	if n := countNewTags(in.Tags, append(tags, marks...)); len(in.Tags)+n > 50 {
		return "", "", sdk.Errorf(codes.FailedPrecondition, "%s has %d tags and the isolation needs %d more; EC2 allows 50: remove some tags and rerun", x.where(), len(in.Tags), n)
	}
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = aws.ToString(t.Key)
	}
	op := "ec2:CreateTags"
	if err := x.j.call(ctx, "record", op, x.instanceID+" "+strings.Join(keys, ","), func(ctx context.Context) error {
		_, err := x.c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{x.instanceID}, Tags: tags})
		return err
	}); err != nil {
		return "", "", x.explain(op, x.instanceID, err)
	}
	x.rec, x.res.RollbackRecord, x.res.RecordTags = rec, rec, keys
	return StepDone, fmt.Sprintf("wrote the rollback record into %d tags", len(tags)), nil
}

// countNewTags counts the keys of add that the instance does not have yet.
func countNewTags(have, add []ec2types.Tag) int {
	n := 0
	for _, t := range add {
		if _, ok := tagValue(have, aws.ToString(t.Key)); !ok {
			n++
		}
	}
	return n
}

// groupName is the Auto Scaling group of the record, or "".
func (x *isolation) groupName() string {
	if x.rec.AutoScaling == nil {
		return ""
	}
	return x.rec.AutoScaling.Group
}

// currentGroup is the group's state now: from the inspection when the
// instance is still a member, else read.
func (x *isolation) currentGroup(ctx context.Context, step string) (*AutoScalingRecord, error) {
	if cur := x.st.autoScaling; cur != nil && cur.Group == x.groupName() {
		return cur, nil
	}
	name := x.groupName()
	op := "autoscaling:DescribeAutoScalingGroups"
	var out *autoscaling.DescribeAutoScalingGroupsOutput
	if err := x.j.call(ctx, step, op, name, func(ctx context.Context) (err error) {
		out, err = x.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
		return err
	}); err != nil {
		return nil, x.explain(op, name, err)
	}
	for _, g := range out.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) == name {
			rec := &AutoScalingRecord{Group: name}
			for _, p := range g.SuspendedProcesses {
				rec.SuspendedProcesses = append(rec.SuspendedProcesses, aws.ToString(p.ProcessName))
			}
			return rec, nil
		}
	}
	return nil, nil
}

// suspendProcesses stops the group from health-checking, replacing or
// terminating the instance. It runs before anything that could make the
// instance look unhealthy (the security-group swap fails its load
// balancer's health checks).
func (x *isolation) suspendProcesses(ctx context.Context) (string, string, error) {
	name := x.groupName()
	if name == "" {
		return StepSkipped, "the instance is not in an Auto Scaling group", nil
	}
	cur, err := x.currentGroup(ctx, "auto-scaling-processes")
	if err != nil {
		return "", "", err
	}
	if cur == nil {
		x.res.Warnings = append(x.res.Warnings, fmt.Sprintf("the Auto Scaling group %s of the record no longer exists", name))
		return StepSkipped, fmt.Sprintf("the Auto Scaling group %s no longer exists", name), nil
	}
	x.res.AutoScaling = &AutoScalingIsolation{Group: name, SuspendedProcesses: []string{}}
	var missing []string
	for _, p := range isolationProcesses {
		if slices.Contains(cur.SuspendedProcesses, p) {
			x.res.AutoScaling.AlreadySuspended = append(x.res.AutoScaling.AlreadySuspended, p)
		} else {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return StepAlready, fmt.Sprintf("%s already has %s suspended", name, strings.Join(isolationProcesses, ", ")), nil
	}
	op := "autoscaling:SuspendProcesses"
	if err := x.j.call(ctx, "auto-scaling-processes", op, name+" "+strings.Join(missing, ","), func(ctx context.Context) error {
		_, err := x.c.AutoScaling.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: &name, ScalingProcesses: missing})
		return err
	}); err != nil {
		return "", "", x.explain(op, name, err)
	}
	x.res.AutoScaling.SuspendedProcesses = missing
	return StepDone, fmt.Sprintf("suspended %s of %s", strings.Join(missing, ", "), name), nil
}

// protect sets termination protection, shutdown behaviour stop and
// DeleteOnTermination=false on every volume, so neither an API call nor a
// shutdown from inside destroys the instance or its disks.
func (x *isolation) protect(ctx context.Context) (string, string, error) {
	st := x.st
	var done []string
	modify := func(what string, in *ec2.ModifyInstanceAttributeInput) error {
		op := "ec2:ModifyInstanceAttribute"
		in.InstanceId = &x.instanceID
		if err := x.j.call(ctx, "attributes", op, x.instanceID+" "+what, func(ctx context.Context) error {
			_, err := x.c.EC2.ModifyInstanceAttribute(ctx, in)
			return err
		}); err != nil {
			return x.explain(op, x.instanceID+" "+what, err)
		}
		done = append(done, what)
		return nil
	}
	if !st.disableAPITermination {
		if err := modify("DisableApiTermination=true", &ec2.ModifyInstanceAttributeInput{DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
			return "", "", err
		}
	}
	if st.shutdownBehavior != "stop" {
		if err := modify("InstanceInitiatedShutdownBehavior=stop", &ec2.ModifyInstanceAttributeInput{InstanceInitiatedShutdownBehavior: &ec2types.AttributeValue{Value: aws.String("stop")}}); err != nil {
			return "", "", err
		}
	}
	var mappings []ec2types.InstanceBlockDeviceMappingSpecification
	var vols []string
	for _, v := range st.volumes {
		if v.DeleteOnTermination {
			mappings = append(mappings, ec2types.InstanceBlockDeviceMappingSpecification{DeviceName: aws.String(v.Device),
				Ebs: &ec2types.EbsInstanceBlockDeviceSpecification{VolumeId: aws.String(v.VolumeID), DeleteOnTermination: aws.Bool(false)}})
			vols = append(vols, v.VolumeID)
		}
	}
	if len(mappings) > 0 {
		if err := modify("DeleteOnTermination=false on "+strings.Join(vols, ","), &ec2.ModifyInstanceAttributeInput{BlockDeviceMappings: mappings}); err != nil {
			return "", "", err
		}
	}
	if len(done) == 0 {
		return StepAlready, "termination protection, shutdown behaviour stop and DeleteOnTermination=false were already set", nil
	}
	return StepDone, "set " + strings.Join(done, "; "), nil
}

// network moves every ENI to its VPC's isolation group, through the
// allow-all untrack group unless untrack_first is false.
func (x *isolation) network(ctx context.Context) (string, string, error) {
	const step = "network"
	iso := isolationSpec(x.allow)
	unt := untrackSpec()
	vpcs := x.st.vpcs()
	if len(vpcs) == 0 {
		return StepSkipped, "the instance has no network interfaces", nil
	}
	names := []string{iso.name}
	if x.untrack {
		names = append(names, unt.name)
	}
	found, err := x.findGroups(ctx, step, vpcs, names)
	if err != nil {
		return "", "", err
	}
	lookup := func(vpc, name string) *ec2types.SecurityGroup {
		if g, ok := found[groupKey{vpc, name}]; ok {
			return &g
		}
		return nil
	}
	isoIDs, untIDs := map[string]string{}, map[string]string{}
	for _, vpc := range vpcs {
		if isoIDs[vpc], err = x.ensureGroup(ctx, step, vpc, iso, lookup(vpc, iso.name)); err != nil {
			return "", "", err
		}
	}
	changed := 0
	for _, nic := range x.st.interfaces {
		ii := InterfaceIsolation{NetworkInterfaceID: nic.ID, VPCID: nic.VPCID, GroupsBefore: nic.Groups, IsolationGroup: isoIDs[nic.VPCID], Sequence: []string{}}
		if slices.Equal(nic.Groups, []string{ii.IsolationGroup}) {
			x.res.Network = append(x.res.Network, ii)
			continue
		}
		if x.untrack {
			if _, ok := untIDs[nic.VPCID]; !ok {
				if untIDs[nic.VPCID], err = x.ensureGroup(ctx, step, nic.VPCID, unt, lookup(nic.VPCID, unt.name)); err != nil {
					return "", "", err
				}
			}
			ii.UntrackGroup = untIDs[nic.VPCID]
			if !slices.Equal(nic.Groups, []string{ii.UntrackGroup}) {
				if err := x.setGroups(ctx, nic.ID, ii.UntrackGroup); err != nil {
					x.res.Network = append(x.res.Network, ii)
					return "", "", err
				}
			}
			ii.Sequence = append(ii.Sequence, "untrack")
		}
		if err := x.setGroups(ctx, nic.ID, ii.IsolationGroup); err != nil {
			x.res.Network = append(x.res.Network, ii)
			return "", "", err
		}
		ii.Sequence = append(ii.Sequence, "isolation")
		x.res.Network = append(x.res.Network, ii)
		changed++
	}
	if changed == 0 {
		return StepAlready, fmt.Sprintf("every network interface was already in %s", iso.name), nil
	}
	how := "directly (untrack_first=false: established connections stay open)"
	if x.untrack {
		how = "through " + unt.name + " (allow-all, so connections become untracked and are cut)"
	}
	return StepDone, fmt.Sprintf("moved %d network interfaces to %s %s", changed, iso.name, how), nil
}

func (x *isolation) setGroups(ctx context.Context, eni, group string) error {
	op := "ec2:ModifyNetworkInterfaceAttribute"
	if err := x.j.call(ctx, "network", op, eni+" groups="+group, func(ctx context.Context) error {
		_, err := x.c.EC2.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: &eni, Groups: []string{group}})
		return err
	}); err != nil {
		return x.explain(op, eni, err)
	}
	return nil
}

// leaveGroup takes the instance out of service: standby, which keeps it a
// member, or detach when standby would take the group below its minimum.
func (x *isolation) leaveGroup(ctx context.Context) (string, string, error) {
	const step = "auto-scaling"
	name := x.groupName()
	if name == "" || x.res.AutoScaling == nil {
		return StepSkipped, "the instance is not in an Auto Scaling group", nil
	}
	out := x.res.AutoScaling
	cur := x.st.autoScaling
	switch {
	case cur == nil || cur.Group != name:
		out.Method, out.Reason = "none", "the instance is no longer a member of "+name+" (detached earlier)"
		return StepAlready, out.Reason, nil
	case cur.Lifecycle == "Standby":
		out.Method, out.Reason = "none", "the instance is already in Standby in "+name
		return StepAlready, out.Reason, nil
	case cur.Lifecycle != "InService":
		return "", "", sdk.Errorf(codes.FailedPrecondition, "%s is in lifecycle state %s in Auto Scaling group %s; wait until it is InService and rerun", x.where(), cur.Lifecycle, name)
	}
	if cur.DesiredCapacity-1 >= cur.MinSize {
		op := "autoscaling:EnterStandby"
		err := x.j.call(ctx, step, op, name+" "+x.instanceID, func(ctx context.Context) error {
			_, err := x.c.AutoScaling.EnterStandby(ctx, &autoscaling.EnterStandbyInput{AutoScalingGroupName: &name, InstanceIds: []string{x.instanceID},
				ShouldDecrementDesiredCapacity: aws.Bool(true)})
			return err
		})
		if err == nil {
			out.Method = "standby"
			out.Reason = fmt.Sprintf("desired capacity %d is above the minimum %d, so the instance went to Standby and the desired capacity down by one; it stays a member", cur.DesiredCapacity, cur.MinSize)
			return StepDone, out.Reason, nil
		}
		// Another isolation in the same group may have lowered the desired
		// capacity since it was read.
		if !isCode(err, "ValidationError") {
			return "", "", x.explain(op, name, err)
		}
		out.Reason = "EnterStandby was refused (" + errorMessage(err) + "), so "
	} else {
		out.Reason = fmt.Sprintf("desired capacity %d is at the minimum %d, so standby with a lower desired capacity is impossible; ", cur.DesiredCapacity, cur.MinSize)
	}
	op := "autoscaling:DetachInstances"
	if err := x.j.call(ctx, step, op, name+" "+x.instanceID, func(ctx context.Context) error {
		_, err := x.c.AutoScaling.DetachInstances(ctx, &autoscaling.DetachInstancesInput{AutoScalingGroupName: &name, InstanceIds: []string{x.instanceID},
			ShouldDecrementDesiredCapacity: aws.Bool(false)})
		return err
	}); err != nil {
		return "", "", x.explain(op, name, err)
	}
	out.Method = "detach"
	out.Reason += "the instance was detached and the group launches a replacement to keep its capacity"
	return StepDone, out.Reason, nil
}

// deregister removes every registration the inspection found. Standby and
// detach already deregister the instance from the group's own target
// groups (AWS does that as part of both), so only the others need a call.
func (x *isolation) deregister(ctx context.Context) (string, string, error) {
	if len(x.st.targets) == 0 {
		return StepAlready, "the instance is registered with no target group", nil
	}
	var byGroup, byUs []string
	for _, t := range x.st.targets {
		name := fmt.Sprintf("%s:%d", t.Name, t.Port)
		if as := x.res.AutoScaling; as != nil && (as.Method == "standby" || as.Method == "detach") && x.st.autoScaling != nil &&
			slices.Contains(x.st.autoScaling.TargetGroups, t.TargetGroupARN) {
			byGroup = append(byGroup, name)
			x.res.Deregistered = append(x.res.Deregistered, t)
			continue
		}
		op := "elasticloadbalancing:DeregisterTargets"
		arn := t.TargetGroupARN
		target := elbv2types.TargetDescription{Id: aws.String(x.instanceID), Port: aws.Int32(t.Port)}
		if t.AvailabilityZone != "" {
			target.AvailabilityZone = aws.String(t.AvailabilityZone)
		}
		if err := x.j.call(ctx, "target-groups", op, fmt.Sprintf("%s %s:%d", arn, x.instanceID, t.Port), func(ctx context.Context) error {
			_, err := x.c.ELBv2.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: &arn, Targets: []elbv2types.TargetDescription{target}})
			return err
		}, "InvalidTarget"); err != nil {
			return "", "", x.explain(op, arn, err)
		}
		byUs = append(byUs, name)
		x.res.Deregistered = append(x.res.Deregistered, t)
	}
	var detail []string
	if len(byUs) > 0 {
		detail = append(detail, "deregistered from "+strings.Join(byUs, ", "))
	}
	if len(byGroup) > 0 {
		detail = append(detail, fmt.Sprintf("%s deregistered it from %s when it left service", x.res.AutoScaling.Group, strings.Join(byGroup, ", ")))
	}
	if len(byUs) == 0 {
		return StepAlready, strings.Join(detail, "; "), nil
	}
	return StepDone, strings.Join(detail, "; "), nil
}

// revokePolicyName is the inline deny put on the profile's roles.
func revokePolicyName(instanceID string) string { return "firebreak-revoke-" + instanceID }

// revokePolicy denies everything to the role's sessions that EC2 issued to
// this instance before the cut-off.
func revokePolicy(instanceARN string, before time.Time) (string, error) {
	doc := map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid": "FirebreakRevokeInstanceSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
			"Condition": map[string]any{
				"DateLessThan": map[string]string{"aws:TokenIssueTime": before.UTC().Format(time.RFC3339)},
				"StringEquals": map[string]string{"ec2:SourceInstanceARN": instanceARN},
			},
		}},
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

// revokeProfile disassociates the instance profile and denies the sessions
// already issued to this instance: the credentials in its metadata service
// stay valid for hours after the disassociation, and may have been stolen.
func (x *isolation) revokeProfile(ctx context.Context) (string, string, error) {
	const step = "instance-profile"
	if !x.p.RevokeInstanceProfile {
		return StepSkipped, "revoke_instance_profile is false", nil
	}
	prof := x.rec.InstanceProfile
	if prof == nil {
		prof = x.st.profile
	}
	if prof == nil {
		return StepSkipped, "the instance has no instance profile", nil
	}
	changed := false
	if cur := x.st.profile; cur != nil {
		op := "ec2:DisassociateIamInstanceProfile"
		if err := x.j.call(ctx, step, op, cur.AssociationID+" "+cur.ARN, func(ctx context.Context) error {
			_, err := x.c.EC2.DisassociateIamInstanceProfile(ctx, &ec2.DisassociateIamInstanceProfileInput{AssociationId: aws.String(cur.AssociationID)})
			return err
		}, "InvalidAssociationID.NotFound"); err != nil {
			return "", "", x.explain(op, cur.AssociationID, err)
		}
		changed = true
	}
	op := "iam:GetInstanceProfile"
	name := prof.name()
	var out *iam.GetInstanceProfileOutput
	if err := x.j.call(ctx, step, op, name, func(ctx context.Context) (err error) {
		out, err = x.c.IAM.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: &name})
		return err
	}); err != nil {
		return "", "", x.explain(op, name, err)
	}
	// Whole seconds, rounded up: aws:TokenIssueTime has second precision,
	// and a session issued in this very second must be denied too.
	cutoff := x.now().UTC().Truncate(time.Second).Add(time.Second)
	rev := &SessionRevocation{InstanceProfileARN: prof.ARN, Roles: []string{}, PolicyName: revokePolicyName(x.instanceID), IssuedBefore: cutoff}
	doc, err := revokePolicy(x.instanceARN(), cutoff)
	if err != nil {
		return "", "", err
	}
	for _, r := range out.InstanceProfile.Roles {
		role := aws.ToString(r.RoleName)
		rev.Roles = append(rev.Roles, role)
		if x.res.Resumed {
			// A resumed isolation keeps the cut-off already in place.
			op := "iam:GetRolePolicy"
			var got *iam.GetRolePolicyOutput
			err := x.j.call(ctx, step, op, role+" "+rev.PolicyName, func(ctx context.Context) (err error) {
				got, err = x.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &role, PolicyName: &rev.PolicyName})
				return err
			}, "NoSuchEntity")
			if err != nil {
				return "", "", x.explain(op, role, err)
			}
			if got != nil {
				continue
			}
		}
		op := "iam:PutRolePolicy"
		if err := x.j.call(ctx, step, op, role+" "+rev.PolicyName, func(ctx context.Context) error {
			_, err := x.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: &role, PolicyName: &rev.PolicyName, PolicyDocument: &doc})
			return err
		}); err != nil {
			return "", "", x.explain(op, role, err)
		}
		changed = true
	}
	x.res.SessionRevocation = rev
	if !changed {
		return StepAlready, fmt.Sprintf("the profile was already disassociated and %s already denies the sessions", rev.PolicyName), nil
	}
	return StepDone, fmt.Sprintf("disassociated %s and denied sessions issued to the instance before %s on roles %s", prof.ARN,
		cutoff.Format(time.RFC3339), strings.Join(rev.Roles, ", ")), nil
}

// tag writes firebreak:case, firebreak:run and, last of all,
// firebreak:isolated-at, which marks the isolation finished.
func (x *isolation) tag(ctx context.Context) (string, string, error) {
	tags := x.st.instance.Tags
	// Only the tag of the isolation the record belongs to counts: one left
	// over from elsewhere is overwritten (the record keeps its value).
	if at, ok := tagValue(tags, TagIsolatedAt); ok && x.res.Resumed {
		if t, err := time.Parse(time.RFC3339, at); err == nil {
			x.res.IsolatedAt = t
		}
		return StepAlready, "the instance was already tagged isolated at " + at, nil
	}
	now := x.now().UTC().Truncate(time.Second)
	add := []ec2types.Tag{{Key: aws.String(TagIsolatedAt), Value: aws.String(now.Format(time.RFC3339))}}
	if x.caseID != "" {
		add = append(add, ec2types.Tag{Key: aws.String(TagCase), Value: aws.String(clipTag(x.caseID))})
	}
	if x.runID != "" {
		add = append(add, ec2types.Tag{Key: aws.String(TagRun), Value: aws.String(clipTag(x.runID))})
	}
	op := "ec2:CreateTags"
	if err := x.j.call(ctx, "tags", op, x.instanceID+" "+TagCase+","+TagRun+","+TagIsolatedAt, func(ctx context.Context) error {
		_, err := x.c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{x.instanceID}, Tags: add})
		return err
	}); err != nil {
		return "", "", x.explain(op, x.instanceID, err)
	}
	x.res.IsolatedAt = now
	return StepDone, fmt.Sprintf("tagged case %q, run %q, isolated at %s", x.caseID, x.runID, now.Format(time.RFC3339)), nil
}

// clipTag shortens a value to EC2's tag value limit.
func clipTag(s string) string {
	if len(s) > maxTagValue {
		return s[:maxTagValue]
	}
	return s
}
