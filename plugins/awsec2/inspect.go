package awsec2

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"golang.org/x/sync/errgroup"
)

// instanceState is what the isolation and its rollback read about the
// instance before acting: the state a record captures, as it is now.
type instanceState struct {
	instance              *ec2types.Instance
	interfaces            []InterfaceRecord
	disableAPITermination bool
	shutdownBehavior      string
	volumes               []VolumeRecord
	profile               *ProfileRecord
	autoScaling           *AutoScalingRecord
	// targets are the instance's registrations that are not draining.
	targets []TargetRecord
}

// vpcs lists the VPCs of the instance's interfaces.
func (st *instanceState) vpcs() []string {
	var out []string
	for _, i := range st.interfaces {
		if !slices.Contains(out, i.VPCID) {
			out = append(out, i.VPCID)
		}
	}
	slices.Sort(out)
	return out
}

// inspect reads the instance and everything the isolation touches. The
// reads after DescribeInstances run concurrently.
func (s *scope) inspect(ctx context.Context, step string) (*instanceState, error) {
	in, err := s.describeInstance(ctx, step)
	if err != nil {
		return nil, err
	}
	st := &instanceState{instance: in}
	nics := slices.Clone(in.NetworkInterfaces)
	slices.SortFunc(nics, func(a, b ec2types.InstanceNetworkInterface) int {
		return int(deviceIndex(a)) - int(deviceIndex(b))
	})
	for _, n := range nics {
		rec := InterfaceRecord{ID: aws.ToString(n.NetworkInterfaceId), VPCID: aws.ToString(n.VpcId), Groups: []string{}}
		for _, g := range n.Groups {
			rec.Groups = append(rec.Groups, aws.ToString(g.GroupId))
		}
		st.interfaces = append(st.interfaces, rec)
	}
	for _, m := range in.BlockDeviceMappings {
		if m.Ebs == nil {
			continue
		}
		st.volumes = append(st.volumes, VolumeRecord{Device: aws.ToString(m.DeviceName), VolumeID: aws.ToString(m.Ebs.VolumeId),
			DeleteOnTermination: aws.ToBool(m.Ebs.DeleteOnTermination)})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.readAttributes(gctx, step, st) })
	g.Go(func() error { return s.readProfile(gctx, step, st) })
	g.Go(func() error { return s.readAutoScaling(gctx, step, st) })
	g.Go(func() error { return s.readTargets(gctx, step, st) })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return st, nil
}

func deviceIndex(n ec2types.InstanceNetworkInterface) int32 {
	if n.Attachment == nil {
		return 0
	}
	return aws.ToInt32(n.Attachment.DeviceIndex)
}

func (s *scope) readAttributes(ctx context.Context, step string, st *instanceState) error {
	for _, attr := range []ec2types.InstanceAttributeName{ec2types.InstanceAttributeNameDisableApiTermination, ec2types.InstanceAttributeNameInstanceInitiatedShutdownBehavior} {
		var out *ec2.DescribeInstanceAttributeOutput
		op := "ec2:DescribeInstanceAttribute"
		err := s.j.call(ctx, step, op, s.instanceID+" "+string(attr), func(ctx context.Context) (err error) {
			out, err = s.c.EC2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &s.instanceID, Attribute: attr})
			return err
		})
		if err != nil {
			return s.explain(op, s.instanceID, err)
		}
		if out.DisableApiTermination != nil {
			st.disableAPITermination = aws.ToBool(out.DisableApiTermination.Value)
		}
		if out.InstanceInitiatedShutdownBehavior != nil {
			st.shutdownBehavior = aws.ToString(out.InstanceInitiatedShutdownBehavior.Value)
		}
	}
	return nil
}

func (s *scope) readProfile(ctx context.Context, step string, st *instanceState) error {
	op := "ec2:DescribeIamInstanceProfileAssociations"
	var assocs []ec2types.IamInstanceProfileAssociation
	err := s.j.call(ctx, step, op, s.instanceID, func(ctx context.Context) error {
		p := ec2.NewDescribeIamInstanceProfileAssociationsPaginator(s.c.EC2, &ec2.DescribeIamInstanceProfileAssociationsInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{s.instanceID}}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			assocs = append(assocs, out.IamInstanceProfileAssociations...)
		}
		return nil
	})
	if err != nil {
		return s.explain(op, s.instanceID, err)
	}
	for _, a := range assocs {
		if a.State == ec2types.IamInstanceProfileAssociationStateAssociated || a.State == ec2types.IamInstanceProfileAssociationStateAssociating {
			st.profile = &ProfileRecord{ARN: aws.ToString(a.IamInstanceProfile.Arn), AssociationID: aws.ToString(a.AssociationId)}
		}
	}
	return nil
}

func (s *scope) readAutoScaling(ctx context.Context, step string, st *instanceState) error {
	op := "autoscaling:DescribeAutoScalingInstances"
	var out *autoscaling.DescribeAutoScalingInstancesOutput
	err := s.j.call(ctx, step, op, s.instanceID, func(ctx context.Context) (err error) {
		out, err = s.c.AutoScaling.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{s.instanceID}})
		return err
	})
	if err != nil {
		return s.explain(op, s.instanceID, err)
	}
	if len(out.AutoScalingInstances) == 0 {
		return nil
	}
	m := out.AutoScalingInstances[0]
	rec := &AutoScalingRecord{Group: aws.ToString(m.AutoScalingGroupName), Lifecycle: aws.ToString(m.LifecycleState)}
	op = "autoscaling:DescribeAutoScalingGroups"
	var gout *autoscaling.DescribeAutoScalingGroupsOutput
	err = s.j.call(ctx, step, op, rec.Group, func(ctx context.Context) (err error) {
		gout, err = s.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{rec.Group}})
		return err
	})
	if err != nil {
		return s.explain(op, rec.Group, err)
	}
	for _, g := range gout.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) != rec.Group {
			continue
		}
		rec.MinSize, rec.MaxSize, rec.DesiredCapacity = aws.ToInt32(g.MinSize), aws.ToInt32(g.MaxSize), aws.ToInt32(g.DesiredCapacity)
		for _, p := range g.SuspendedProcesses {
			rec.SuspendedProcesses = append(rec.SuspendedProcesses, aws.ToString(p.ProcessName))
		}
		slices.Sort(rec.SuspendedProcesses)
		rec.TargetGroups = slices.Sorted(slices.Values(g.TargetGroupARNs))
	}
	st.autoScaling = rec
	return nil
}

// readTargets finds the instance's registrations: ELBv2 has no lookup by
// target, so it reads the health of every instance-type target group in
// the instance's VPCs.
func (s *scope) readTargets(ctx context.Context, step string, st *instanceState) error {
	vpcs := st.vpcs()
	op := "elasticloadbalancing:DescribeTargetGroups"
	var groups []elbv2types.TargetGroup
	err := s.j.call(ctx, step, op, strings.Join(vpcs, ","), func(ctx context.Context) error {
		p := elbv2.NewDescribeTargetGroupsPaginator(s.c.ELBv2, &elbv2.DescribeTargetGroupsInput{})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			groups = append(groups, out.TargetGroups...)
		}
		return nil
	})
	if err != nil {
		return s.explain(op, "the region's target groups", err)
	}
	for _, tg := range groups {
		if !slices.Contains(vpcs, aws.ToString(tg.VpcId)) || (tg.TargetType != "" && tg.TargetType != elbv2types.TargetTypeEnumInstance) {
			continue
		}
		arn := aws.ToString(tg.TargetGroupArn)
		op := "elasticloadbalancing:DescribeTargetHealth"
		var out *elbv2.DescribeTargetHealthOutput
		err := s.j.call(ctx, step, op, arn, func(ctx context.Context) (err error) {
			out, err = s.c.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: &arn})
			return err
		})
		if err != nil {
			return s.explain(op, arn, err)
		}
		for _, d := range out.TargetHealthDescriptions {
			if d.Target == nil || aws.ToString(d.Target.Id) != s.instanceID {
				continue
			}
			if d.TargetHealth != nil && d.TargetHealth.State == elbv2types.TargetHealthStateEnumDraining {
				continue
			}
			st.targets = append(st.targets, TargetRecord{TargetGroupARN: arn, Name: aws.ToString(tg.TargetGroupName),
				Port: aws.ToInt32(d.Target.Port), AvailabilityZone: aws.ToString(d.Target.AvailabilityZone)})
		}
	}
	slices.SortFunc(st.targets, func(a, b TargetRecord) int { return strings.Compare(a.Name, b.Name) })
	return nil
}
