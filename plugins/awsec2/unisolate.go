package awsec2

import (
	"context"
	"errors"
	"fmt"
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

// UnisolateParams are aws-ec2-unisolate's parameters.
type UnisolateParams struct {
	Target
	// RollbackRecord is the isolation's rollback record as JSON (the
	// isolate result's rollback_record); read from the instance's
	// firebreak:pre-isolation tags when empty.
	RollbackRecord string `json:"rollback_record,omitempty"`
	// RestoreRoleSessions deletes the inline deny the isolation put on the
	// instance profile's roles, so the sessions issued to the instance
	// before the isolation work again.
	RestoreRoleSessions bool `json:"restore_role_sessions,omitempty"`
}

// UnisolateResult is aws-ec2-unisolate's result.
type UnisolateResult struct {
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// RecordSource is where the record came from: parameter or tag; empty
	// when there was none.
	RecordSource string `json:"record_source,omitempty"`
	// AlreadyUnisolated is true when everything the record covers was
	// already as recorded (or there was no record) and nothing changed.
	AlreadyUnisolated bool `json:"already_unisolated"`
	// Steps say what each step did, in order.
	Steps []Step `json:"steps"`
	// Restored lists what was put back, one line per change.
	Restored []string `json:"restored,omitempty"`
	// DeletedGroups are the Firebreak security groups deleted because no
	// ENI used them any more; KeptGroups are those still in use.
	DeletedGroups []string `json:"deleted_groups,omitempty"`
	KeptGroups    []string `json:"kept_groups,omitempty"`
	// Differences are what the instance keeps that differs from the
	// record, and why.
	Differences []string `json:"differences,omitempty"`
	// Record is the record restored.
	Record *Record `json:"record,omitempty"`
	// Changes counts the successful calls that changed something.
	Changes int `json:"changes"`
	// Calls lists every API call made, in order.
	Calls []APICall `json:"calls"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// Unisolate is the aws-ec2-unisolate action.
type Unisolate struct{ cfg Config }

// NewUnisolate returns aws-ec2-unisolate.
func NewUnisolate(cfg Config) *Unisolate {
	cfg.CheckAndSetDefaults()
	return &Unisolate{cfg: cfg}
}

// Describe implements sdk.Action.
func (a *Unisolate) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	params := append(targetParams(),
		&pluginv1.ParamSpec{Name: "rollback_record", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the isolation's rollback record as JSON (aws-ec2-isolate's rollback_record output); read from the instance's firebreak:pre-isolation tags when empty"},
		&pluginv1.ParamSpec{Name: "restore_role_sessions", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "false",
			Description: "also delete the inline deny on the instance profile's roles, so sessions issued to the instance before the isolation work again; only for a false positive, where no credentials can have been stolen"},
	)
	return &pluginv1.ActionDescription{
		Name:    UnisolateName,
		Version: Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Ends an aws-ec2-isolate isolation: restores exactly what the rollback record says (security groups of every ENI, " +
			"termination protection, shutdown behaviour, DeleteOnTermination, Auto Scaling membership and processes, target groups, instance " +
			"profile), deletes the Firebreak security groups no ENI uses any more, and removes the isolation's tags",
		Destructive:    true,
		RollbackAction: IsolateName,
		Roles:          []string{"worker"},
		Params:         params,
	}, nil
}

// Execute implements sdk.Action.
func (a *Unisolate) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := a.cfg.Clock()
	var p UnisolateParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	var given *Record
	if strings.TrimSpace(p.RollbackRecord) != "" {
		r, err := parseRecord([]byte(p.RollbackRecord))
		if err != nil {
			return nil, sdk.Errorf(codes.InvalidArgument, "rollback_record: %v", err)
		}
		given = r
	}
	s, err := newScope(a.cfg, req, emit, p.Target, "")
	if err != nil {
		return nil, err
	}
	res := &UnisolateResult{InstanceID: s.instanceID, Account: s.account, Region: s.region, Steps: []Step{}}
	err = (&restoration{scope: s, p: p, given: given, res: res}).run(ctx)
	res.Calls, res.Changes = s.j.snapshot()
	res.AlreadyUnisolated = err == nil && res.Changes == 0
	res.ElapsedMS = millis(a.cfg.Clock().Sub(start))
	if err != nil {
		s.log("error", "unisolation of %s stopped: %v", s.where(), err)
		return res, err
	}
	return res, nil
}

// restoration is one aws-ec2-unisolate task.
type restoration struct {
	*scope
	p     UnisolateParams
	given *Record
	res   *UnisolateResult
	st    *instanceState
	rec   *Record
}

func (x *restoration) run(ctx context.Context) error {
	if err := x.runSteps(ctx, &x.res.Steps, []plannedStep{
		{"inspect", 5, "reading " + x.where(), x.inspectStep},
		{"record", 10, "reading the rollback record", x.findRecord},
	}); err != nil {
		return err
	}
	if x.rec == nil {
		x.progress(100, "%s carries no isolation record: nothing to restore", x.where())
		return nil
	}
	// Network first, so the instance can pass health checks by the time
	// Auto Scaling and the load balancers take it back.
	return x.runSteps(ctx, &x.res.Steps, []plannedStep{
		{"network", 20, "restoring security groups", x.network},
		{"attributes", 35, "restoring instance attributes", x.attributes},
		{"auto-scaling", 50, "restoring Auto Scaling membership", x.autoScaling},
		{"target-groups", 65, "re-registering with target groups", x.targets},
		{"instance-profile", 75, "restoring the instance profile", x.profile},
		{"cleanup", 85, "deleting unused isolation groups", x.cleanup},
		{"tags", 95, "removing the isolation's tags", x.tags},
		{"", 100, "restored " + x.where(), nil},
	})
}

func (x *restoration) inspectStep(ctx context.Context) (string, string, error) {
	st, err := x.inspect(ctx, "inspect")
	if err != nil {
		return "", "", err
	}
	x.st = st
	return StepDone, fmt.Sprintf("%d network interfaces, %d volumes, %d target-group registrations", len(st.interfaces), len(st.volumes), len(st.targets)), nil
}

// findRecord takes the record from the parameter, else from the tags, and
// checks that it is this instance's.
func (x *restoration) findRecord(context.Context) (string, string, error) {
	rec, source := x.given, "parameter"
	if rec == nil {
		r, err := decodeRecordTags(x.st.instance.Tags)
		switch {
		case errors.Is(err, errNoRecord):
			return StepSkipped, fmt.Sprintf("no rollback_record given and no %s tag on the instance: it is not isolated by Firebreak, nothing to restore", TagRecord), nil
		case err != nil:
			return "", "", sdk.Errorf(codes.FailedPrecondition, "the instance's %s tags cannot be read (%v); pass the isolation result's rollback_record as --param rollback_record=…", TagRecord, err)
		}
		rec, source = r, "tag"
	}
	// Security-critical: a record restores security groups, target groups
	// and an instance profile; one taken of another instance must not be
	// applied here.
	if rec.InstanceID != x.instanceID || rec.Account != x.account || rec.Region != x.region {
		return "", "", sdk.Errorf(codes.InvalidArgument, "the rollback record is of instance %s in account %s region %s, not of %s; refusing to apply it",
			rec.InstanceID, rec.Account, rec.Region, x.where())
	}
	x.rec, x.res.Record, x.res.RecordSource = rec, rec, source
	return StepDone, fmt.Sprintf("using the record from the %s, taken at %s", source, rec.RecordedAt.Format(time.RFC3339)), nil
}

func (x *restoration) restored(format string, args ...any) {
	x.res.Restored = append(x.res.Restored, fmt.Sprintf(format, args...))
}

func (x *restoration) differ(format string, args ...any) {
	x.res.Differences = append(x.res.Differences, fmt.Sprintf(format, args...))
}

// network gives every recorded ENI that is still attached its recorded
// security groups.
func (x *restoration) network(ctx context.Context) (string, string, error) {
	changed := 0
	for _, want := range x.rec.Interfaces {
		i := slices.IndexFunc(x.st.interfaces, func(n InterfaceRecord) bool { return n.ID == want.ID })
		if i < 0 {
			x.differ("network interface %s of the record is no longer attached to the instance; its groups were not restored", want.ID)
			continue
		}
		if sameSet(x.st.interfaces[i].Groups, want.Groups) {
			continue
		}
		op := "ec2:ModifyNetworkInterfaceAttribute"
		if err := x.j.call(ctx, "network", op, want.ID+" groups="+strings.Join(want.Groups, ","), func(ctx context.Context) error {
			_, err := x.c.EC2.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String(want.ID), Groups: want.Groups})
			return err
		}); err != nil {
			return "", "", x.explain(op, want.ID, err)
		}
		x.restored("%s: security groups %s", want.ID, strings.Join(want.Groups, ", "))
		changed++
	}
	for _, n := range x.st.interfaces {
		if !slices.ContainsFunc(x.rec.Interfaces, func(r InterfaceRecord) bool { return r.ID == n.ID }) {
			x.differ("network interface %s was attached after the isolation; it keeps groups %s", n.ID, strings.Join(n.Groups, ", "))
		}
	}
	if changed == 0 {
		return StepAlready, "every network interface already had its recorded groups", nil
	}
	return StepDone, fmt.Sprintf("restored the groups of %d network interfaces", changed), nil
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// attributes restores termination protection, shutdown behaviour and the
// volumes' DeleteOnTermination.
func (x *restoration) attributes(ctx context.Context) (string, string, error) {
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
		x.restored("%s: %s", x.instanceID, what)
		return nil
	}
	if x.st.disableAPITermination != x.rec.DisableAPITermination {
		if err := modify(fmt.Sprintf("DisableApiTermination=%t", x.rec.DisableAPITermination),
			&ec2.ModifyInstanceAttributeInput{DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(x.rec.DisableAPITermination)}}); err != nil {
			return "", "", err
		}
	}
	if x.rec.ShutdownBehavior != "" && x.st.shutdownBehavior != x.rec.ShutdownBehavior {
		if err := modify("InstanceInitiatedShutdownBehavior="+x.rec.ShutdownBehavior,
			&ec2.ModifyInstanceAttributeInput{InstanceInitiatedShutdownBehavior: &ec2types.AttributeValue{Value: aws.String(x.rec.ShutdownBehavior)}}); err != nil {
			return "", "", err
		}
	}
	var mappings []ec2types.InstanceBlockDeviceMappingSpecification
	var vols []string
	for _, want := range x.rec.Volumes {
		i := slices.IndexFunc(x.st.volumes, func(v VolumeRecord) bool { return v.VolumeID == want.VolumeID })
		if i < 0 {
			x.differ("volume %s of the record is no longer attached; its DeleteOnTermination was not restored", want.VolumeID)
			continue
		}
		if have := x.st.volumes[i]; have.DeleteOnTermination != want.DeleteOnTermination {
			mappings = append(mappings, ec2types.InstanceBlockDeviceMappingSpecification{DeviceName: aws.String(have.Device),
				Ebs: &ec2types.EbsInstanceBlockDeviceSpecification{VolumeId: aws.String(want.VolumeID), DeleteOnTermination: aws.Bool(want.DeleteOnTermination)}})
			vols = append(vols, fmt.Sprintf("%s=%t", want.VolumeID, want.DeleteOnTermination))
		}
	}
	if len(mappings) > 0 {
		if err := modify("DeleteOnTermination "+strings.Join(vols, ","), &ec2.ModifyInstanceAttributeInput{BlockDeviceMappings: mappings}); err != nil {
			return "", "", err
		}
	}
	if len(done) == 0 {
		return StepAlready, "the attributes were already as recorded", nil
	}
	return StepDone, "set " + strings.Join(done, "; "), nil
}

// autoScaling puts the instance back in service in its group and resumes
// the processes the isolation suspended, unless another instance of the
// group is still isolated.
func (x *restoration) autoScaling(ctx context.Context) (string, string, error) {
	const step = "auto-scaling"
	want := x.rec.AutoScaling
	if want == nil {
		return StepSkipped, "the instance was not in an Auto Scaling group", nil
	}
	name := want.Group
	var done []string
	cur := x.st.autoScaling
	switch {
	case cur != nil && cur.Group != name:
		x.differ("the instance is now in Auto Scaling group %s, not %s as recorded; its membership was left alone", cur.Group, name)
	case cur == nil && want.Lifecycle == "InService":
		op := "autoscaling:AttachInstances"
		if err := x.j.call(ctx, step, op, name+" "+x.instanceID, func(ctx context.Context) error {
			_, err := x.c.AutoScaling.AttachInstances(ctx, &autoscaling.AttachInstancesInput{AutoScalingGroupName: &name, InstanceIds: []string{x.instanceID}})
			return err
		}); err != nil {
			return "", "", x.explain(op, name, err)
		}
		done = append(done, "attached to "+name)
		x.restored("%s: attached to Auto Scaling group %s", x.instanceID, name)
		x.differ("Auto Scaling group %s launched a replacement when the instance was detached; attaching it back raised the desired capacity by one. "+
			"Lower the desired capacity when the group should shrink again (the group then terminates an instance of its choosing).", name)
	case cur != nil && cur.Lifecycle == "Standby" && want.Lifecycle == "InService":
		op := "autoscaling:ExitStandby"
		if err := x.j.call(ctx, step, op, name+" "+x.instanceID, func(ctx context.Context) error {
			_, err := x.c.AutoScaling.ExitStandby(ctx, &autoscaling.ExitStandbyInput{AutoScalingGroupName: &name, InstanceIds: []string{x.instanceID}})
			return err
		}); err != nil {
			return "", "", x.explain(op, name, err)
		}
		done = append(done, "out of Standby in "+name)
		x.restored("%s: InService in Auto Scaling group %s", x.instanceID, name)
	}
	suspended, err := x.suspendedNow(ctx, name)
	if err != nil {
		return "", "", err
	}
	var resume []string
	for _, p := range isolationProcesses {
		if slices.Contains(suspended, p) && !slices.Contains(want.SuspendedProcesses, p) {
			resume = append(resume, p)
		}
	}
	if len(resume) > 0 {
		others, err := x.otherIsolatedMembers(ctx, name)
		if err != nil {
			return "", "", err
		}
		if len(others) > 0 {
			x.differ("Auto Scaling group %s keeps %s suspended: %s still isolated", name, strings.Join(resume, ", "), strings.Join(others, ", "))
		} else {
			op := "autoscaling:ResumeProcesses"
			if err := x.j.call(ctx, step, op, name+" "+strings.Join(resume, ","), func(ctx context.Context) error {
				_, err := x.c.AutoScaling.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: &name, ScalingProcesses: resume})
				return err
			}); err != nil {
				return "", "", x.explain(op, name, err)
			}
			done = append(done, "resumed "+strings.Join(resume, ", "))
			x.restored("%s: resumed %s", name, strings.Join(resume, ", "))
		}
	}
	if len(done) == 0 {
		return StepAlready, "the Auto Scaling membership and processes were already as recorded", nil
	}
	return StepDone, strings.Join(done, "; "), nil
}

// suspendedNow reads the group's suspended processes.
func (x *restoration) suspendedNow(ctx context.Context, name string) ([]string, error) {
	op := "autoscaling:DescribeAutoScalingGroups"
	var out *autoscaling.DescribeAutoScalingGroupsOutput
	if err := x.j.call(ctx, "auto-scaling", op, name, func(ctx context.Context) (err error) {
		out, err = x.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
		return err
	}); err != nil {
		return nil, x.explain(op, name, err)
	}
	var ps []string
	for _, g := range out.AutoScalingGroups {
		for _, p := range g.SuspendedProcesses {
			ps = append(ps, aws.ToString(p.ProcessName))
		}
	}
	return ps, nil
}

// otherIsolatedMembers lists the other instances whose isolation record
// names the group.
func (x *restoration) otherIsolatedMembers(ctx context.Context, group string) ([]string, error) {
	op := "ec2:DescribeInstances"
	var others []string
	err := x.j.call(ctx, "auto-scaling", op, "tag-key="+TagRecord, func(ctx context.Context) error {
		p := ec2.NewDescribeInstancesPaginator(x.c.EC2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag-key"), Values: []string{TagRecord}},
			{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					id := aws.ToString(in.InstanceId)
					if id == x.instanceID {
						continue
					}
					if rec, err := decodeRecordTags(in.Tags); err == nil && rec.AutoScaling != nil && rec.AutoScaling.Group == group {
						others = append(others, id)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, x.explain(op, "instances with "+TagRecord, err)
	}
	slices.Sort(others)
	return others, nil
}

// targets registers the instance again wherever the record says it was.
func (x *restoration) targets(ctx context.Context) (string, string, error) {
	var done []string
	for _, t := range x.rec.TargetGroups {
		if slices.ContainsFunc(x.st.targets, func(h TargetRecord) bool { return h.TargetGroupARN == t.TargetGroupARN && h.Port == t.Port }) {
			continue
		}
		op := "elasticloadbalancing:RegisterTargets"
		arn := t.TargetGroupARN
		target := elbv2types.TargetDescription{Id: aws.String(x.instanceID), Port: aws.Int32(t.Port)}
		if t.AvailabilityZone != "" {
			target.AvailabilityZone = aws.String(t.AvailabilityZone)
		}
		if err := x.j.call(ctx, "target-groups", op, fmt.Sprintf("%s %s:%d", arn, x.instanceID, t.Port), func(ctx context.Context) error {
			_, err := x.c.ELBv2.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: &arn, Targets: []elbv2types.TargetDescription{target}})
			return err
		}); err != nil {
			return "", "", x.explain(op, arn, err)
		}
		done = append(done, fmt.Sprintf("%s:%d", t.Name, t.Port))
		x.restored("%s: registered with %s on port %d", x.instanceID, t.Name, t.Port)
	}
	if len(done) == 0 {
		return StepAlready, "the instance was already registered as recorded", nil
	}
	return StepDone, "registered with " + strings.Join(done, ", "), nil
}

// profile associates the recorded instance profile again and, when asked,
// deletes the isolation's session deny.
func (x *restoration) profile(ctx context.Context) (string, string, error) {
	const step = "instance-profile"
	want := x.rec.InstanceProfile
	if want == nil {
		return StepSkipped, "the instance had no instance profile", nil
	}
	var done []string
	switch cur := x.st.profile; {
	case cur == nil:
		op := "ec2:AssociateIamInstanceProfile"
		if err := x.j.call(ctx, step, op, x.instanceID+" "+want.ARN, func(ctx context.Context) error {
			_, err := x.c.EC2.AssociateIamInstanceProfile(ctx, &ec2.AssociateIamInstanceProfileInput{InstanceId: &x.instanceID,
				IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Arn: aws.String(want.ARN)}})
			return err
		}); err != nil {
			return "", "", x.explain(op, want.ARN, err)
		}
		done = append(done, "associated "+want.ARN)
		x.restored("%s: instance profile %s (a new association id)", x.instanceID, want.ARN)
	case cur.ARN != want.ARN:
		x.differ("the instance now has instance profile %s, not %s as recorded; it was left alone", cur.ARN, want.ARN)
	}
	policy := revokePolicyName(x.instanceID)
	if x.p.RestoreRoleSessions {
		name := want.name()
		op := "iam:GetInstanceProfile"
		var out *iam.GetInstanceProfileOutput
		if err := x.j.call(ctx, step, op, name, func(ctx context.Context) (err error) {
			out, err = x.c.IAM.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: &name})
			return err
		}); err != nil {
			return "", "", x.explain(op, name, err)
		}
		for _, r := range out.InstanceProfile.Roles {
			role := aws.ToString(r.RoleName)
			op := "iam:DeleteRolePolicy"
			outcome, err := x.j.do(ctx, step, op, role+" "+policy, func(ctx context.Context) error {
				_, err := x.c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: &role, PolicyName: &policy})
				return err
			}, "NoSuchEntity")
			if err != nil {
				return "", "", x.explain(op, role, err)
			}
			if outcome == OutcomeOK {
				done = append(done, "deleted "+policy+" from "+role)
				x.restored("%s: deleted the session deny %s", role, policy)
			}
		}
	} else if x.st.profile == nil {
		// The isolation disassociated the profile, so it revoked its sessions.
		x.differ("the instance profile's roles keep the inline deny %s: sessions issued to the instance before the isolation stay denied, "+
			"new ones work (restore_role_sessions=true deletes it)", policy)
	}
	if len(done) == 0 {
		return StepAlready, "the instance profile was already as recorded", nil
	}
	return StepDone, strings.Join(done, "; "), nil
}

// cleanup deletes the Firebreak security groups of the record's VPCs that
// no ENI uses any more; isolations of other instances keep theirs.
func (x *restoration) cleanup(ctx context.Context) (string, string, error) {
	const step = "cleanup"
	var vpcs []string
	for _, n := range x.rec.Interfaces {
		if !slices.Contains(vpcs, n.VPCID) {
			vpcs = append(vpcs, n.VPCID)
		}
	}
	if len(vpcs) == 0 {
		return StepSkipped, "no VPCs in the record", nil
	}
	op := "ec2:DescribeSecurityGroups"
	var groups []ec2types.SecurityGroup
	if err := x.j.call(ctx, step, op, TagManaged+" in "+strings.Join(vpcs, ","), func(ctx context.Context) error {
		p := ec2.NewDescribeSecurityGroupsPaginator(x.c.EC2, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: vpcs}, {Name: aws.String("tag-key"), Values: []string{TagManaged}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			groups = append(groups, out.SecurityGroups...)
		}
		return nil
	}); err != nil {
		return "", "", x.explain(op, strings.Join(vpcs, ","), err)
	}
	slices.SortFunc(groups, func(a, b ec2types.SecurityGroup) int {
		return strings.Compare(aws.ToString(a.GroupId), aws.ToString(b.GroupId))
	})
	for _, g := range groups {
		id := aws.ToString(g.GroupId)
		op := "ec2:DescribeNetworkInterfaces"
		var users []string
		if err := x.j.call(ctx, step, op, "group-id="+id, func(ctx context.Context) error {
			p := ec2.NewDescribeNetworkInterfacesPaginator(x.c.EC2, &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
				{Name: aws.String("group-id"), Values: []string{id}}}})
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					return err
				}
				for _, n := range out.NetworkInterfaces {
					users = append(users, aws.ToString(n.NetworkInterfaceId))
				}
			}
			return nil
		}); err != nil {
			return "", "", x.explain(op, id, err)
		}
		if len(users) > 0 {
			x.res.KeptGroups = append(x.res.KeptGroups, id)
			x.differ("security group %s (%s) stays: network interfaces %s still use it", id, aws.ToString(g.GroupName), strings.Join(users, ", "))
			continue
		}
		op = "ec2:DeleteSecurityGroup"
		outcome, err := x.j.do(ctx, step, op, id, func(ctx context.Context) error {
			_, err := x.c.EC2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &id})
			return err
		}, "InvalidGroup.NotFound", "DependencyViolation")
		if err != nil {
			return "", "", x.explain(op, id, err)
		}
		if outcome == OutcomeOK {
			x.res.DeletedGroups = append(x.res.DeletedGroups, id)
		} else {
			x.res.KeptGroups = append(x.res.KeptGroups, id)
		}
	}
	if len(x.res.DeletedGroups) == 0 {
		return StepAlready, "no unused Firebreak security group to delete", nil
	}
	return StepDone, "deleted " + strings.Join(x.res.DeletedGroups, ", "), nil
}

// tags removes the record and the isolation's tags, and puts back the
// values those keys had before; it runs last, so a failed restoration
// keeps the record for a retry.
func (x *restoration) tags(ctx context.Context) (string, string, error) {
	const step = "tags"
	have := x.st.instance.Tags
	var del []ec2types.Tag
	for _, k := range append(recordTagKeys(have), TagCase, TagRun, TagIsolatedAt) {
		_, present := tagValue(have, k)
		if _, earlier := x.rec.Tags[k]; present && !earlier {
			del = append(del, ec2types.Tag{Key: aws.String(k)})
		}
	}
	var put []ec2types.Tag
	for _, k := range []string{TagCase, TagRun, TagIsolatedAt} {
		old, kept := x.rec.Tags[k]
		if v, ok := tagValue(have, k); kept && (!ok || v != old) {
			put = append(put, ec2types.Tag{Key: aws.String(k), Value: aws.String(old)})
		}
	}
	var done []string
	if len(del) > 0 {
		keys := make([]string, len(del))
		for i, t := range del {
			keys[i] = aws.ToString(t.Key)
		}
		op := "ec2:DeleteTags"
		if err := x.j.call(ctx, step, op, x.instanceID+" "+strings.Join(keys, ","), func(ctx context.Context) error {
			_, err := x.c.EC2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{x.instanceID}, Tags: del})
			return err
		}); err != nil {
			return "", "", x.explain(op, x.instanceID, err)
		}
		done = append(done, "removed "+strings.Join(keys, ", "))
	}
	if len(put) > 0 {
		keys := make([]string, len(put))
		for i, t := range put {
			keys[i] = aws.ToString(t.Key)
		}
		op := "ec2:CreateTags"
		if err := x.j.call(ctx, step, op, x.instanceID+" "+strings.Join(keys, ","), func(ctx context.Context) error {
			_, err := x.c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{x.instanceID}, Tags: put})
			return err
		}); err != nil {
			return "", "", x.explain(op, x.instanceID, err)
		}
		done = append(done, "put back the earlier "+strings.Join(keys, ", "))
	}
	if len(done) == 0 {
		return StepAlready, "the isolation's tags were already gone", nil
	}
	return StepDone, strings.Join(done, "; "), nil
}
