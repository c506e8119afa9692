package awsec2

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// CaptureParams are aws-ec2-capture's parameters.
type CaptureParams struct {
	Target
	// CaseID is recorded in the evidence; the run's case when empty.
	CaseID string `json:"case_id,omitempty"`
}

// Facts is the evidence aws-ec2-capture stores: AWS's own answers about
// the instance, as the SDK decoded them, and its console.
type Facts struct {
	// CapturedAt is when the capture started.
	CapturedAt time.Time `json:"captured_at"`
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// CaseID and RunID link the evidence to the incident.
	CaseID string `json:"case_id,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	// Instance is DescribeInstances' answer.
	Instance *ec2types.Instance `json:"instance"`
	// Attributes are DescribeInstanceAttribute's answers by attribute
	// (user data base64-encoded, as AWS returns it).
	Attributes map[string]string `json:"attributes"`
	// NetworkInterfaces, SecurityGroups and Volumes are the instance's.
	NetworkInterfaces []ec2types.NetworkInterface `json:"network_interfaces"`
	SecurityGroups    []ec2types.SecurityGroup    `json:"security_groups"`
	Volumes           []ec2types.Volume           `json:"volumes"`
	// ProfileAssociations are its instance-profile associations.
	ProfileAssociations []ec2types.IamInstanceProfileAssociation `json:"iam_instance_profile_associations"`
	// AutoScalingInstance and AutoScalingGroup are its group membership.
	AutoScalingInstance *astypes.AutoScalingInstanceDetails `json:"auto_scaling_instance,omitempty"`
	AutoScalingGroup    *astypes.AutoScalingGroup           `json:"auto_scaling_group,omitempty"`
	// TargetGroups are the target groups it is registered with, and
	// TargetHealth its registrations' health by target group ARN.
	TargetGroups []elbv2types.TargetGroup                        `json:"target_groups"`
	TargetHealth map[string][]elbv2types.TargetHealthDescription `json:"target_health"`
	// ConsoleOutput is the latest serial console output, decoded, and
	// ConsoleOutputAt when EC2 took it.
	ConsoleOutput   string    `json:"console_output"`
	ConsoleOutputAt time.Time `json:"console_output_at,omitzero"`
	// Unavailable says what could not be captured and why.
	Unavailable map[string]string `json:"unavailable,omitempty"`
}

// Artifact is one evidence artifact the capture emitted.
type Artifact struct {
	// Name is the artifact's name in the evidence store.
	Name string `json:"name"`
	// MediaType is its media type.
	MediaType string `json:"media_type"`
	// Bytes is its size.
	Bytes int `json:"bytes"`
	// SHA256 is its digest, hex.
	SHA256 string `json:"sha256"`
}

// CaptureSummary is the gist of the facts, for the result and playbooks.
type CaptureSummary struct {
	State              string            `json:"state"`
	InstanceType       string            `json:"instance_type"`
	LaunchTime         time.Time         `json:"launch_time,omitzero"`
	AvailabilityZone   string            `json:"availability_zone"`
	VPCID              string            `json:"vpc_id"`
	SubnetID           string            `json:"subnet_id"`
	PrivateIPs         []string          `json:"private_ips"`
	PublicIP           string            `json:"public_ip,omitempty"`
	SecurityGroups     []string          `json:"security_groups"`
	InstanceProfileARN string            `json:"instance_profile_arn,omitempty"`
	AutoScalingGroup   string            `json:"auto_scaling_group,omitempty"`
	TargetGroups       []string          `json:"target_groups,omitempty"`
	Volumes            []string          `json:"volumes"`
	ImageID            string            `json:"image_id"`
	KeyName            string            `json:"key_name,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
}

// CaptureResult is aws-ec2-capture's result.
type CaptureResult struct {
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// CaseID is the case the evidence belongs to.
	CaseID string `json:"case_id,omitempty"`
	// CapturedAt is when the capture started.
	CapturedAt time.Time `json:"captured_at"`
	// Summary is the gist of the facts.
	Summary CaptureSummary `json:"summary"`
	// Artifacts are the evidence emitted, with their digests; the agent
	// stores them in the controller's evidence store.
	Artifacts []Artifact `json:"artifacts"`
	// ConsoleOutputBytes is the size of the console output captured.
	ConsoleOutputBytes int `json:"console_output_bytes"`
	// Unavailable says what could not be captured and why.
	Unavailable map[string]string `json:"unavailable,omitempty"`
	// Calls lists every API call made.
	Calls []APICall `json:"calls"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// Capture is the aws-ec2-capture action.
type Capture struct{ cfg Config }

// NewCapture returns aws-ec2-capture.
func NewCapture(cfg Config) *Capture {
	cfg.CheckAndSetDefaults()
	return &Capture{cfg: cfg}
}

// Describe implements sdk.Action.
func (a *Capture) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    CaptureName,
		Version: Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Captures an EC2 instance's metadata as evidence before anything changes: DescribeInstances and its attributes, " +
			"network interfaces, security groups, volumes, instance profile, Auto Scaling and target-group facts, the latest console output " +
			"and a console screenshot. Reads only",
		Roles:  []string{"worker"},
		Params: append(targetParams(), caseParam()),
	}, nil
}

// Execute implements sdk.Action.
func (a *Capture) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := a.cfg.Clock()
	var p CaptureParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	s, err := newScope(a.cfg, req, emit, p.Target, p.CaseID)
	if err != nil {
		return nil, err
	}
	x := &captureTask{scope: s, facts: &Facts{CapturedAt: start.UTC(), InstanceID: s.instanceID, Account: s.account, Region: s.region,
		CaseID: s.caseID, RunID: s.runID, Attributes: map[string]string{}, TargetHealth: map[string][]elbv2types.TargetHealthDescription{},
		NetworkInterfaces: []ec2types.NetworkInterface{}, SecurityGroups: []ec2types.SecurityGroup{}, Volumes: []ec2types.Volume{},
		ProfileAssociations: []ec2types.IamInstanceProfileAssociation{}, TargetGroups: []elbv2types.TargetGroup{}}}
	res := &CaptureResult{InstanceID: s.instanceID, Account: s.account, Region: s.region, CaseID: s.caseID, CapturedAt: start.UTC(), Artifacts: []Artifact{}}
	err = x.run(ctx, res)
	res.Calls, _ = s.j.snapshot()
	res.ElapsedMS = millis(a.cfg.Clock().Sub(start))
	if err != nil {
		s.log("error", "capture of %s stopped: %v", s.where(), err)
		if res.Summary.State == "" {
			return nil, err
		}
		return res, err
	}
	return res, nil
}

type captureTask struct {
	*scope
	mu    sync.Mutex // guards facts.Unavailable and the maps from concurrent reads
	facts *Facts
}

// unavailable notes a part that could not be captured; the capture goes on.
func (x *captureTask) unavailable(part string, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.facts.Unavailable == nil {
		x.facts.Unavailable = map[string]string{}
	}
	x.facts.Unavailable[part] = err.Error()
}

func (x *captureTask) run(ctx context.Context, res *CaptureResult) error {
	x.progress(5, "reading %s", x.where())
	in, err := x.describeInstance(ctx, "describe")
	if err != nil {
		return err
	}
	x.facts.Instance = in
	res.Summary = summarise(in)

	// Everything else is read concurrently. A missing part (a screenshot of
	// a stopped instance, a denied read) is recorded, not fatal: the rest
	// is still evidence.
	x.progress(20, "reading the instance's network, volumes, groups and console")
	g, gctx := errgroup.WithContext(ctx)
	for _, read := range []func(context.Context){x.attributes, x.interfaces, x.volumes, x.profile, x.autoScaling, x.targets, x.console} {
		g.Go(func() error { read(gctx); return nil })
	}
	var screenshot []byte
	g.Go(func() error { screenshot = x.screenshot(gctx); return nil })
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return sdk.Errorf(codes.DeadlineExceeded, "capturing %s: %v", x.where(), err)
	}
	if x.facts.AutoScalingInstance != nil {
		res.Summary.AutoScalingGroup = aws.ToString(x.facts.AutoScalingInstance.AutoScalingGroupName)
	}
	for _, tg := range x.facts.TargetGroups {
		res.Summary.TargetGroups = append(res.Summary.TargetGroups, aws.ToString(tg.TargetGroupName))
	}
	res.ConsoleOutputBytes = len(x.facts.ConsoleOutput)
	res.Unavailable = x.facts.Unavailable

	x.progress(80, "storing the evidence")
	facts, err := json.MarshalIndent(x.facts, "", "  ")
	if err != nil {
		return sdk.Errorf(codes.Internal, "encoding the facts: %v", err)
	}
	base := x.instanceID + "-" + x.facts.CapturedAt.Format("20060102T150405Z") + "-"
	artifacts := []struct {
		name, mediaType string
		data            []byte
	}{
		{base + "facts.json", "application/json", facts},
		{base + "console.txt", "text/plain; charset=utf-8", []byte(x.facts.ConsoleOutput)},
	}
	if screenshot != nil {
		artifacts = append(artifacts, struct {
			name, mediaType string
			data            []byte
		}{base + "screenshot.jpg", "image/jpeg", screenshot})
	}
	for _, a := range artifacts {
		w := x.emit.Artifact(a.name, a.mediaType)
		if _, err := w.Write(a.data); err != nil {
			return sdk.Errorf(codes.Unavailable, "sending evidence %s to the agent: %v", a.name, err)
		}
		if err := w.Close(); err != nil {
			return sdk.Errorf(codes.Unavailable, "sending evidence %s to the agent: %v", a.name, err)
		}
		sum := sha256.Sum256(a.data)
		res.Artifacts = append(res.Artifacts, Artifact{Name: a.name, MediaType: a.mediaType, Bytes: len(a.data), SHA256: hex.EncodeToString(sum[:])})
	}
	x.progress(100, "captured %s", x.where())
	return nil
}

// summarise is the gist of DescribeInstances' answer.
func summarise(in *ec2types.Instance) CaptureSummary {
	s := CaptureSummary{InstanceType: string(in.InstanceType), LaunchTime: aws.ToTime(in.LaunchTime), VPCID: aws.ToString(in.VpcId),
		SubnetID: aws.ToString(in.SubnetId), PublicIP: aws.ToString(in.PublicIpAddress), ImageID: aws.ToString(in.ImageId), KeyName: aws.ToString(in.KeyName),
		PrivateIPs: []string{}, SecurityGroups: []string{}, Volumes: []string{}}
	if in.State != nil {
		s.State = string(in.State.Name)
	}
	if in.Placement != nil {
		s.AvailabilityZone = aws.ToString(in.Placement.AvailabilityZone)
	}
	for _, n := range in.NetworkInterfaces {
		s.PrivateIPs = append(s.PrivateIPs, aws.ToString(n.PrivateIpAddress))
		for _, g := range n.Groups {
			if id := aws.ToString(g.GroupId); !slices.Contains(s.SecurityGroups, id) {
				s.SecurityGroups = append(s.SecurityGroups, id)
			}
		}
	}
	if in.IamInstanceProfile != nil {
		s.InstanceProfileARN = aws.ToString(in.IamInstanceProfile.Arn)
	}
	for _, m := range in.BlockDeviceMappings {
		if m.Ebs != nil {
			s.Volumes = append(s.Volumes, aws.ToString(m.Ebs.VolumeId))
		}
	}
	if len(in.Tags) > 0 {
		s.Tags = map[string]string{}
		for _, t := range in.Tags {
			s.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return s
}

func (x *captureTask) attributes(ctx context.Context) {
	for _, attr := range []ec2types.InstanceAttributeName{ec2types.InstanceAttributeNameDisableApiTermination, ec2types.InstanceAttributeNameDisableApiStop,
		ec2types.InstanceAttributeNameInstanceInitiatedShutdownBehavior, ec2types.InstanceAttributeNameUserData, ec2types.InstanceAttributeNameSourceDestCheck} {
		op := "ec2:DescribeInstanceAttribute"
		var out *ec2.DescribeInstanceAttributeOutput
		if err := x.j.call(ctx, "describe", op, x.instanceID+" "+string(attr), func(ctx context.Context) (err error) {
			out, err = x.c.EC2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &x.instanceID, Attribute: attr})
			return err
		}); err != nil {
			x.unavailable("attribute "+string(attr), x.explain(op, x.instanceID, err))
			continue
		}
		v := ""
		switch {
		case out.DisableApiTermination != nil:
			v = fmt.Sprint(aws.ToBool(out.DisableApiTermination.Value))
		case out.DisableApiStop != nil:
			v = fmt.Sprint(aws.ToBool(out.DisableApiStop.Value))
		case out.InstanceInitiatedShutdownBehavior != nil:
			v = aws.ToString(out.InstanceInitiatedShutdownBehavior.Value)
		case out.UserData != nil:
			v = aws.ToString(out.UserData.Value)
		case out.SourceDestCheck != nil:
			v = fmt.Sprint(aws.ToBool(out.SourceDestCheck.Value))
		}
		x.mu.Lock()
		x.facts.Attributes[string(attr)] = v
		x.mu.Unlock()
	}
}

func (x *captureTask) interfaces(ctx context.Context) {
	op := "ec2:DescribeNetworkInterfaces"
	var nics []ec2types.NetworkInterface
	if err := x.j.call(ctx, "describe", op, "attachment.instance-id="+x.instanceID, func(ctx context.Context) error {
		p := ec2.NewDescribeNetworkInterfacesPaginator(x.c.EC2, &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
			{Name: aws.String("attachment.instance-id"), Values: []string{x.instanceID}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			nics = append(nics, out.NetworkInterfaces...)
		}
		return nil
	}); err != nil {
		x.unavailable("network interfaces", x.explain(op, x.instanceID, err))
		return
	}
	var groups []string
	for _, n := range nics {
		for _, g := range n.Groups {
			if id := aws.ToString(g.GroupId); !slices.Contains(groups, id) {
				groups = append(groups, id)
			}
		}
	}
	x.mu.Lock()
	x.facts.NetworkInterfaces = nics
	x.mu.Unlock()
	if len(groups) == 0 {
		return
	}
	op = "ec2:DescribeSecurityGroups"
	var sgs []ec2types.SecurityGroup
	if err := x.j.call(ctx, "describe", op, strings.Join(groups, ","), func(ctx context.Context) error {
		p := ec2.NewDescribeSecurityGroupsPaginator(x.c.EC2, &ec2.DescribeSecurityGroupsInput{GroupIds: groups})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			sgs = append(sgs, out.SecurityGroups...)
		}
		return nil
	}); err != nil {
		x.unavailable("security groups", x.explain(op, strings.Join(groups, ","), err))
		return
	}
	x.mu.Lock()
	x.facts.SecurityGroups = sgs
	x.mu.Unlock()
}

func (x *captureTask) volumes(ctx context.Context) {
	op := "ec2:DescribeVolumes"
	var vols []ec2types.Volume
	if err := x.j.call(ctx, "describe", op, "attachment.instance-id="+x.instanceID, func(ctx context.Context) error {
		p := ec2.NewDescribeVolumesPaginator(x.c.EC2, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
			{Name: aws.String("attachment.instance-id"), Values: []string{x.instanceID}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			vols = append(vols, out.Volumes...)
		}
		return nil
	}); err != nil {
		x.unavailable("volumes", x.explain(op, x.instanceID, err))
		return
	}
	x.mu.Lock()
	x.facts.Volumes = vols
	x.mu.Unlock()
}

func (x *captureTask) profile(ctx context.Context) {
	op := "ec2:DescribeIamInstanceProfileAssociations"
	var assocs []ec2types.IamInstanceProfileAssociation
	if err := x.j.call(ctx, "describe", op, x.instanceID, func(ctx context.Context) error {
		p := ec2.NewDescribeIamInstanceProfileAssociationsPaginator(x.c.EC2, &ec2.DescribeIamInstanceProfileAssociationsInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{x.instanceID}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			assocs = append(assocs, out.IamInstanceProfileAssociations...)
		}
		return nil
	}); err != nil {
		x.unavailable("instance profile associations", x.explain(op, x.instanceID, err))
		return
	}
	x.mu.Lock()
	x.facts.ProfileAssociations = assocs
	x.mu.Unlock()
}

func (x *captureTask) autoScaling(ctx context.Context) {
	op := "autoscaling:DescribeAutoScalingInstances"
	var out *autoscaling.DescribeAutoScalingInstancesOutput
	if err := x.j.call(ctx, "describe", op, x.instanceID, func(ctx context.Context) (err error) {
		out, err = x.c.AutoScaling.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{x.instanceID}})
		return err
	}); err != nil {
		x.unavailable("auto scaling", x.explain(op, x.instanceID, err))
		return
	}
	if len(out.AutoScalingInstances) == 0 {
		return
	}
	m := out.AutoScalingInstances[0]
	name := aws.ToString(m.AutoScalingGroupName)
	op = "autoscaling:DescribeAutoScalingGroups"
	var gout *autoscaling.DescribeAutoScalingGroupsOutput
	if err := x.j.call(ctx, "describe", op, name, func(ctx context.Context) (err error) {
		gout, err = x.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
		return err
	}); err != nil {
		x.unavailable("auto scaling group", x.explain(op, name, err))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.facts.AutoScalingInstance = &m
	if gout != nil && len(gout.AutoScalingGroups) > 0 {
		x.facts.AutoScalingGroup = &gout.AutoScalingGroups[0]
	}
}

func (x *captureTask) targets(ctx context.Context) {
	st := &instanceState{}
	for _, n := range x.facts.Instance.NetworkInterfaces {
		st.interfaces = append(st.interfaces, InterfaceRecord{ID: aws.ToString(n.NetworkInterfaceId), VPCID: aws.ToString(n.VpcId)})
	}
	op := "elasticloadbalancing:DescribeTargetGroups"
	var groups []elbv2types.TargetGroup
	if err := x.j.call(ctx, "describe", op, strings.Join(st.vpcs(), ","), func(ctx context.Context) error {
		p := elbv2.NewDescribeTargetGroupsPaginator(x.c.ELBv2, &elbv2.DescribeTargetGroupsInput{})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			groups = append(groups, out.TargetGroups...)
		}
		return nil
	}); err != nil {
		x.unavailable("target groups", x.explain(op, "the region's target groups", err))
		return
	}
	for _, tg := range groups {
		if !slices.Contains(st.vpcs(), aws.ToString(tg.VpcId)) {
			continue
		}
		arn := aws.ToString(tg.TargetGroupArn)
		op := "elasticloadbalancing:DescribeTargetHealth"
		var out *elbv2.DescribeTargetHealthOutput
		if err := x.j.call(ctx, "describe", op, arn, func(ctx context.Context) (err error) {
			out, err = x.c.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: &arn})
			return err
		}); err != nil {
			x.unavailable("target health of "+arn, x.explain(op, arn, err))
			continue
		}
		var mine []elbv2types.TargetHealthDescription
		for _, d := range out.TargetHealthDescriptions {
			if d.Target != nil && aws.ToString(d.Target.Id) == x.instanceID {
				mine = append(mine, d)
			}
		}
		if len(mine) > 0 {
			x.mu.Lock()
			x.facts.TargetGroups = append(x.facts.TargetGroups, tg)
			x.facts.TargetHealth[arn] = mine
			x.mu.Unlock()
		}
	}
}

func (x *captureTask) console(ctx context.Context) {
	op := "ec2:GetConsoleOutput"
	var out *ec2.GetConsoleOutputOutput
	if err := x.j.call(ctx, "console", op, x.instanceID+" latest", func(ctx context.Context) (err error) {
		out, err = x.c.EC2.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: &x.instanceID, Latest: aws.Bool(true)})
		return err
	}); err != nil {
		x.unavailable("console output", x.explain(op, x.instanceID, err))
		return
	}
	text, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil {
		x.unavailable("console output", fmt.Errorf("EC2 returned console output that is not base64: %w", err))
		return
	}
	x.mu.Lock()
	x.facts.ConsoleOutput, x.facts.ConsoleOutputAt = string(text), aws.ToTime(out.Timestamp)
	x.mu.Unlock()
}

func (x *captureTask) screenshot(ctx context.Context) []byte {
	op := "ec2:GetConsoleScreenshot"
	var out *ec2.GetConsoleScreenshotOutput
	if err := x.j.call(ctx, "console", op, x.instanceID, func(ctx context.Context) (err error) {
		out, err = x.c.EC2.GetConsoleScreenshot(ctx, &ec2.GetConsoleScreenshotInput{InstanceId: &x.instanceID, WakeUp: aws.Bool(true)})
		return err
	}); err != nil {
		x.unavailable("console screenshot", x.explain(op, x.instanceID, err))
		return nil
	}
	img, err := base64.StdEncoding.DecodeString(aws.ToString(out.ImageData))
	if err != nil {
		x.unavailable("console screenshot", fmt.Errorf("EC2 returned a screenshot that is not base64: %w", err))
		return nil
	}
	return img
}
