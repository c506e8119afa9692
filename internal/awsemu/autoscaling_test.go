package awsemu

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

func targetStates(t *testing.T, c *elb.Client, arn string) map[string]elbtypes.TargetHealthStateEnum {
	t.Helper()
	out, err := c.DescribeTargetHealth(ctx(t), &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
	ok(t, err)
	states := map[string]elbtypes.TargetHealthStateEnum{}
	for _, d := range out.TargetHealthDescriptions {
		states[aws.ToString(d.Target.Id)] = d.TargetHealth.State
	}
	return states
}

func TestStandbyAndTargetGroups(t *testing.T) {
	l := newLab(t, 3)
	cfg := l.assumeResponder(t, 2)
	as, lb := autoscaling.NewFromConfig(cfg), elb.NewFromConfig(cfg)
	web1, web2, worker := instanceID(2, "web-1"), instanceID(2, "web-2"), instanceID(2, "worker-1")

	groups, err := as.DescribeAutoScalingGroups(ctx(t), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web-asg"}})
	ok(t, err)
	g := groups.AutoScalingGroups[0]
	if aws.ToInt32(g.DesiredCapacity) != 2 || len(g.Instances) != 2 || len(g.TargetGroupARNs) != 2 {
		t.Fatalf("web-asg %+v", g)
	}
	httpTG := g.TargetGroupARNs[0]
	tgs, err := lb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{Names: []string{"web-http", "web-https"}})
	ok(t, err)
	if len(tgs.TargetGroups) != 2 {
		t.Fatalf("target groups %+v", tgs.TargetGroups)
	}
	if s := targetStates(t, lb, httpTG); s[web1] != elbtypes.TargetHealthStateEnumHealthy || s[web2] != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("initial target health %v", s)
	}

	_, err = as.SuspendProcesses(ctx(t), &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String("web-asg"),
		ScalingProcesses: []string{"Launch", "Terminate", "HealthCheck", "ReplaceUnhealthy", "AZRebalance"}})
	ok(t, err)
	entered, err := as.EnterStandby(ctx(t), &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("web-asg"),
		InstanceIds: []string{web1}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	ok(t, err)
	if len(entered.Activities) != 1 || aws.ToString(entered.Activities[0].AutoScalingGroupName) != "web-asg" {
		t.Fatalf("activities %+v", entered.Activities)
	}
	if s := targetStates(t, lb, httpTG); s[web1] != elbtypes.TargetHealthStateEnumDraining || s[web2] != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("health after standby %v", s)
	}
	l.clock.Advance(301 * time.Second)
	if s := targetStates(t, lb, httpTG); len(s) != 1 || s[web2] != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("health after the deregistration delay %v", s)
	}
	inst, err := as.DescribeAutoScalingInstances(ctx(t), &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{web1}})
	ok(t, err)
	if aws.ToString(inst.AutoScalingInstances[0].LifecycleState) != string(astypes.LifecycleStateStandby) {
		t.Fatalf("lifecycle %s", aws.ToString(inst.AutoScalingInstances[0].LifecycleState))
	}

	// The worker group is at its minimum: decrementing would go below it.
	_, err = as.EnterStandby(ctx(t), &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("worker-asg"),
		InstanceIds: []string{worker}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	wantCode(t, err, "ValidationError")
	_, err = as.EnterStandby(ctx(t), &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("worker-asg"),
		InstanceIds: []string{web2}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	wantCode(t, err, "ValidationError")
	_, err = as.EnterStandby(ctx(t), &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("nope"),
		InstanceIds: []string{web2}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	wantCode(t, err, "ValidationError")

	// Without decrementing, the group replaces the instance on standby.
	_, err = as.EnterStandby(ctx(t), &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("worker-asg"),
		InstanceIds: []string{worker}, ShouldDecrementDesiredCapacity: aws.Bool(false)})
	ok(t, err)
	wg, err := as.DescribeAutoScalingGroups(ctx(t), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"worker-asg"}})
	ok(t, err)
	if n := len(wg.AutoScalingGroups[0].Instances); n != 2 {
		t.Fatalf("worker-asg has %d instances, want the standby one and its replacement", n)
	}

	// Roll back the web group.
	_, err = as.ExitStandby(ctx(t), &autoscaling.ExitStandbyInput{AutoScalingGroupName: aws.String("web-asg"), InstanceIds: []string{web1}})
	ok(t, err)
	_, err = as.ResumeProcesses(ctx(t), &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String("web-asg")})
	ok(t, err)
	if s := targetStates(t, lb, httpTG); s[web1] != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("health after exit standby %v", s)
	}
	groups, err = as.DescribeAutoScalingGroups(ctx(t), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web-asg"}})
	ok(t, err)
	if g := groups.AutoScalingGroups[0]; aws.ToInt32(g.DesiredCapacity) != 2 || len(g.SuspendedProcesses) != 0 {
		t.Fatalf("web-asg after rollback %+v", g)
	}
}

func TestDetachAttachAndUpdate(t *testing.T) {
	l := newLab(t, 3)
	cfg := l.assumeResponder(t, 2)
	as, lb := autoscaling.NewFromConfig(cfg), elb.NewFromConfig(cfg)
	web1 := instanceID(2, "web-1")
	_, err := as.DetachInstances(ctx(t), &autoscaling.DetachInstancesInput{AutoScalingGroupName: aws.String("web-asg"),
		InstanceIds: []string{web1}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	ok(t, err)
	_, err = as.DetachInstances(ctx(t), &autoscaling.DetachInstancesInput{AutoScalingGroupName: aws.String("web-asg"),
		InstanceIds: []string{web1}, ShouldDecrementDesiredCapacity: aws.Bool(true)})
	wantCode(t, err, "ValidationError")
	_, err = as.UpdateAutoScalingGroup(ctx(t), &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("web-asg"), DesiredCapacity: aws.Int32(9)})
	wantCode(t, err, "ValidationError")
	_, err = as.AttachInstances(ctx(t), &autoscaling.AttachInstancesInput{AutoScalingGroupName: aws.String("web-asg"), InstanceIds: []string{web1}})
	ok(t, err)
	groups, err := as.DescribeAutoScalingGroups(ctx(t), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web-asg"}})
	ok(t, err)
	var ids []string
	for _, in := range groups.AutoScalingGroups[0].Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	if aws.ToInt32(groups.AutoScalingGroups[0].DesiredCapacity) != 2 || !slices.Contains(ids, web1) {
		t.Fatalf("after re-attach: desired %d, instances %v", aws.ToInt32(groups.AutoScalingGroups[0].DesiredCapacity), ids)
	}
	arn := groups.AutoScalingGroups[0].TargetGroupARNs[1]
	if s := targetStates(t, lb, arn); s[web1] != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("re-attached instance not registered: %v", s)
	}

	_, err = lb.DeregisterTargets(ctx(t), &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: []elbtypes.TargetDescription{{Id: aws.String(web1)}}})
	ok(t, err)
	_, err = lb.RegisterTargets(ctx(t), &elb.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: []elbtypes.TargetDescription{{Id: aws.String(web1)}}})
	ok(t, err)
	_, err = lb.RegisterTargets(ctx(t), &elb.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: []elbtypes.TargetDescription{{Id: aws.String("i-0123456789abcdef0")}}})
	wantCode(t, err, "InvalidTarget")
	_, err = lb.DescribeTargetHealth(ctx(t), &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn + "x")})
	wantCode(t, err, "TargetGroupNotFound")
	_, err = lb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{Names: []string{"nope"}})
	wantCode(t, err, "TargetGroupNotFound")

	// Scaling in terminates the newest instance and takes it out of the
	// target groups.
	_, err = as.UpdateAutoScalingGroup(ctx(t), &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("web-asg"), DesiredCapacity: aws.Int32(1)})
	ok(t, err)
	groups, err = as.DescribeAutoScalingGroups(ctx(t), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web-asg"}})
	ok(t, err)
	if n := len(groups.AutoScalingGroups[0].Instances); n != 1 {
		t.Fatalf("after scale-in %d instances", n)
	}
}
