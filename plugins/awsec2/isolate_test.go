package awsec2_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-cmp/cmp"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// isolationGroup returns the security group of the given name in the dump.
func securityGroup(t testing.TB, r *awsemu.RegionState, name string) awsemu.SecurityGroupState {
	t.Helper()
	for _, g := range r.SecurityGroups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no security group %s in the dump", name)
	return awsemu.SecurityGroupState{}
}

func TestIsolateThenUnisolateRestoresTheState(t *testing.T) {
	lab := awstest.StartWith(t, awsemu.Lab{Accounts: 3, InstancesPerAccount: 4}.Seed())
	member := awstest.Member(0)
	tests := []struct {
		name     string
		instance string
		params   map[string]any
		// group is the instance's Auto Scaling group; method how the
		// isolation takes it out.
		group, method string
		// targets is the number of target-group registrations.
		targets int
	}{
		{name: "in an Auto Scaling group behind two target groups: standby", instance: "web-1", group: "web-asg", method: "standby", targets: 2},
		{name: "in an Auto Scaling group at its minimum size: detach", instance: "worker-1", group: "worker-asg", method: "detach"},
		{name: "standalone, with a forensics network and no untrack step", instance: "app-1",
			params: map[string]any{"allow_cidrs": []string{"10.9.0.0/24", "2001:db8:9::/48"}, "untrack_first": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := labInstance(t, lab, member, tt.instance)
			req := lab.Request(t, member)
			params := map[string]any{"instance_id": id, "account": member, "region": awstest.Region}
			for k, v := range tt.params {
				params[k] = v
			}
			untrack := tt.params["untrack_first"] != false
			before := lab.Emu.Dump()
			beforeRegion := region(t, before, member)
			beforeInstance := instanceState(t, beforeRegion, id)

			res := mustIsolate(t, lab, awsec2.Config{}, req, params)
			if res.AlreadyIsolated || res.Changes == 0 || res.RollbackRecord == nil || len(res.RecordTags) == 0 {
				t.Fatalf("isolation result %+v", res)
			}
			for _, c := range res.Calls {
				if c.Outcome == awsec2.OutcomeFailed {
					t.Errorf("failed call in a successful isolation: %+v", c)
				}
			}

			// The instance is isolated as the issue lists.
			isolated := lab.Emu.Dump()
			r := region(t, isolated, member)
			in := instanceState(t, r, id)
			if !in.DisableAPITermination || in.ShutdownBehavior != "stop" {
				t.Errorf("termination protection %v, shutdown behaviour %s", in.DisableAPITermination, in.ShutdownBehavior)
			}
			for _, d := range in.BlockDevices {
				if d.DeleteOnTermination {
					t.Errorf("volume %s still deleted on termination", d.Volume)
				}
			}
			if in.Tags[awsec2.TagCase] != "case-test" || in.Tags[awsec2.TagRun] != "run-test" || in.Tags[awsec2.TagIsolatedAt] == "" || in.Tags[awsec2.TagRecord] == "" {
				t.Errorf("tags %v", in.Tags)
			}
			isoName := awsec2.IsolationGroupName
			if len(res.Network) != 1 || !strings.HasPrefix(res.Network[0].IsolationGroup, "sg-") {
				t.Fatalf("network %+v", res.Network)
			}
			iso := securityGroup(t, r, securityGroupName(t, r, res.Network[0].IsolationGroup))
			if !strings.HasPrefix(iso.Name, isoName) || len(in.SecurityGroups) != 1 || in.SecurityGroups[0] != iso.ID {
				t.Fatalf("instance groups %v, isolation group %+v", in.SecurityGroups, iso)
			}
			allowed, _ := tt.params["allow_cidrs"].([]string)
			wantRules := len(allowed)
			if len(iso.Ingress) != wantRules || len(iso.Egress) != wantRules {
				t.Errorf("isolation group rules: ingress %+v egress %+v, want %d each", iso.Ingress, iso.Egress, wantRules)
			}
			// The emulator's log of the ENI's groups shows the
			// connection-tracking sequence.
			eni := eniState(t, r, in.NetworkInterfaces[0])
			var seq []string
			for _, h := range eni.GroupHistory {
				seq = append(seq, securityGroupName(t, r, h.Groups[0]))
			}
			wantSeq := []string{securityGroupName(t, beforeRegion, beforeInstance.SecurityGroups[0]), iso.Name}
			if untrack {
				wantSeq = []string{wantSeq[0], awsec2.UntrackGroupName, iso.Name}
			}
			if !slices.Equal(seq, wantSeq) {
				t.Errorf("group sequence %v, want %v", seq, wantSeq)
			}
			if untrack {
				unt := securityGroup(t, r, awsec2.UntrackGroupName)
				if len(unt.Ingress) != 2 || len(unt.Egress) != 2 {
					t.Errorf("untrack group is not allow-all both ways (IPv4 and IPv6): %+v", unt)
				}
			}
			if tt.group != "" {
				g := groupState(t, r, tt.group)
				bg := groupState(t, beforeRegion, tt.group)
				for _, p := range []string{"HealthCheck", "ReplaceUnhealthy", "Terminate"} {
					if !slices.Contains(g.SuspendedProcesses, p) {
						t.Errorf("process %s not suspended: %v", p, g.SuspendedProcesses)
					}
				}
				if res.AutoScaling == nil || res.AutoScaling.Method != tt.method || res.AutoScaling.Reason == "" {
					t.Fatalf("auto scaling %+v, want method %s", res.AutoScaling, tt.method)
				}
				switch tt.method {
				case "standby":
					if g.Instances[id] != "Standby" || g.Desired != bg.Desired-1 {
						t.Errorf("group %+v: want the instance in Standby and desired %d", g, bg.Desired-1)
					}
				case "detach":
					if _, member := g.Instances[id]; member || in.AutoScalingGroup != "" || len(g.Instances) != len(bg.Instances) || g.Desired != bg.Desired {
						t.Errorf("group %+v: want the instance detached and a replacement at desired %d", g, bg.Desired)
					}
				}
			}
			if len(res.Deregistered) != tt.targets {
				t.Errorf("deregistered %+v, want %d registrations", res.Deregistered, tt.targets)
			}
			for _, tg := range r.TargetGroups {
				for _, tgt := range tg.Targets {
					if tgt.ID == id && tgt.State != "draining" {
						t.Errorf("target group %s: instance still %s", tg.Name, tgt.State)
					}
				}
			}

			// Isolating again finds everything in place and changes nothing.
			calls := lab.Emu.CallCounts()
			again := mustIsolate(t, lab, awsec2.Config{}, lab.Request(t, member), params)
			if !again.AlreadyIsolated || again.Changes != 0 || again.Resumed {
				t.Fatalf("second isolation: already %v, changes %d, steps %+v", again.AlreadyIsolated, again.Changes, again.Steps)
			}
			if n := mutatingCalls(lab.Emu.CallCounts()) - mutatingCalls(calls); n != 0 {
				t.Fatalf("the second isolation made %d changing calls", n)
			}
			if diff := cmp.Diff(account(t, withoutHistory(isolated), member), account(t, withoutHistory(lab.Emu.Dump()), member)); diff != "" {
				t.Fatalf("the second isolation changed the state (-before +after):\n%s", diff)
			}
			if again.RollbackRecord == nil || again.RollbackRecord.RecordedAt != res.RollbackRecord.RecordedAt {
				t.Fatalf("the second isolation did not keep the first record")
			}

			// The rollback restores what the record covers.
			un := mustUnisolate(t, awsec2.Config{}, lab.Request(t, member), map[string]any{
				"instance_id": id, "account": member, "rollback_record": recordJSON(t, res.RollbackRecord)})
			if un.AlreadyUnisolated || un.RecordSource != "parameter" || len(un.Restored) == 0 {
				t.Fatalf("unisolation %+v", un)
			}
			after := withoutHistory(lab.Emu.Dump())
			if tt.method != "detach" {
				if diff := cmp.Diff(account(t, withoutHistory(before), member), account(t, after, member)); diff != "" {
					t.Fatalf("the rollback did not restore the state (-before +after):\n%s", diff)
				}
				if len(un.DeletedGroups) == 0 {
					t.Errorf("the isolation's groups were not deleted: %+v", un)
				}
				return
			}
			// Detached: the group launched a replacement, and attaching the
			// instance back raised the desired capacity; everything the
			// record covers is as before.
			ar := region(t, after, member)
			if diff := cmp.Diff(beforeInstance, instanceState(t, ar, id)); diff != "" {
				t.Errorf("instance not restored (-before +after):\n%s", diff)
			}
			bg, ag := groupState(t, beforeRegion, tt.group), groupState(t, ar, tt.group)
			if ag.Instances[id] != "InService" || ag.Desired != bg.Desired+1 || !slices.Equal(ag.SuspendedProcesses, bg.SuspendedProcesses) {
				t.Errorf("group after rollback %+v, before %+v", ag, bg)
			}
			if !slices.ContainsFunc(un.Differences, func(d string) bool { return strings.Contains(d, "replacement") }) {
				t.Errorf("the differences do not explain the replacement: %v", un.Differences)
			}
			if diff := cmp.Diff(beforeRegion.SecurityGroups, ar.SecurityGroups); diff != "" {
				t.Errorf("security groups not restored (-before +after):\n%s", diff)
			}
		})
	}
}

// securityGroupName returns the name of a group by id.
func securityGroupName(t testing.TB, r *awsemu.RegionState, id string) string {
	t.Helper()
	for _, g := range r.SecurityGroups {
		if g.ID == id {
			return g.Name
		}
	}
	t.Fatalf("no security group %s in the dump", id)
	return ""
}

func TestUnisolateReadsTheRecordFromTags(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-2")
	// Tags left from an earlier case are overwritten, and put back by the
	// rollback.
	req := lab.Request(t, member)
	clients, err := awsec2.NewClients(req.Aws)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients.EC2.CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{
		{Key: aws.String(awsec2.TagCase), Value: aws.String("case-2025-old")}, {Key: aws.String(awsec2.TagIsolatedAt), Value: aws.String("2025-01-01T00:00:00Z")}}}); err != nil {
		t.Fatal(err)
	}
	before := account(t, withoutHistory(lab.Emu.Dump()), member)
	res := mustIsolate(t, lab, awsec2.Config{}, req, map[string]any{"instance_id": id})
	tags := instanceState(t, region(t, lab.Emu.Dump(), member), id).Tags
	if tags[awsec2.TagCase] != "case-test" || tags[awsec2.TagIsolatedAt] == "2025-01-01T00:00:00Z" || res.RollbackRecord.Tags[awsec2.TagCase] != "case-2025-old" {
		t.Fatalf("tags after isolation %v, record %v", tags, res.RollbackRecord.Tags)
	}

	un := mustUnisolate(t, awsec2.Config{}, lab.Request(t, member), map[string]any{"instance_id": id})
	if un.RecordSource != "tag" || un.AlreadyUnisolated {
		t.Fatalf("unisolation %+v", un)
	}
	if diff := cmp.Diff(before, account(t, withoutHistory(lab.Emu.Dump()), member)); diff != "" {
		t.Fatalf("not restored (-before +after):\n%s", diff)
	}
	// Again: the tags are gone, nothing to do, nothing changed.
	again := mustUnisolate(t, awsec2.Config{}, lab.Request(t, member), map[string]any{"instance_id": id})
	if !again.AlreadyUnisolated || again.Changes != 0 || stepStatus(again.Steps, "record") != awsec2.StepSkipped {
		t.Fatalf("second unisolation %+v", again)
	}
}

func TestConcurrentIsolationsShareTheVPCGroups(t *testing.T) {
	lab := awstest.StartWith(t, awsemu.Lab{Accounts: 3, InstancesPerAccount: 6}.Seed())
	member := awstest.Member(0)
	names := []string{"web-1", "web-2", "worker-1", "app-1", "app-2", "app-3"}
	var wg sync.WaitGroup
	results := make([]*awsec2.IsolateResult, len(names))
	for i, n := range names {
		id := labInstance(t, lab, member, n)
		req := lab.Request(t, member)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = mustIsolate(t, lab, awsec2.Config{}, req, map[string]any{"instance_id": id})
		}()
	}
	wg.Wait()
	r := region(t, lab.Emu.Dump(), member)
	var iso []string
	for _, g := range r.SecurityGroups {
		if g.Name == awsec2.IsolationGroupName {
			iso = append(iso, g.ID)
			if len(g.Ingress) != 0 || len(g.Egress) != 0 {
				t.Errorf("isolation group has rules after concurrent set-up: %+v", g)
			}
		}
	}
	if len(iso) != 1 {
		t.Fatalf("%d isolation groups in the VPC, want 1", len(iso))
	}
	for i, n := range names {
		in := instanceState(t, r, labInstance(t, lab, member, n))
		if !slices.Equal(in.SecurityGroups, iso) {
			t.Errorf("%s has groups %v", n, in.SecurityGroups)
		}
		if results[i] == nil || results[i].AlreadyIsolated {
			t.Errorf("%s: %+v", n, results[i])
		}
	}
	// web-1 and web-2 share web-asg (min 1, desired 2): only one of them
	// can go to standby; the other is detached.
	methods := []string{results[0].AutoScaling.Method, results[1].AutoScaling.Method}
	slices.Sort(methods)
	if !slices.Equal(methods, []string{"detach", "standby"}) {
		t.Errorf("web-asg methods %v, want one standby and one detach", methods)
	}
	// Unisolating one keeps the processes suspended for the other.
	un := mustUnisolate(t, awsec2.Config{}, lab.Request(t, member), map[string]any{"instance_id": labInstance(t, lab, member, "web-1")})
	if g := groupState(t, region(t, lab.Emu.Dump(), member), "web-asg"); !slices.Contains(g.SuspendedProcesses, "Terminate") {
		t.Errorf("processes resumed while web-2 is isolated: %v; differences %v", g.SuspendedProcesses, un.Differences)
	}
	if !slices.ContainsFunc(un.Differences, func(d string) bool { return strings.Contains(d, "still isolated") }) || !slices.Contains(un.KeptGroups, iso[0]) {
		t.Errorf("differences %v, kept groups %v", un.Differences, un.KeptGroups)
	}
}

func TestIsolateRevokesInstanceProfileSessions(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	seed := awsemu.LabSeed(3)
	emu, err := awsemu.New(awsemu.Config{Seed: seed, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	lab := &awstest.Lab{Emu: emu, Endpoint: endpoint, Seed: seed}
	member := awstest.Member(0)
	id, other := labInstance(t, lab, member, "web-1"), labInstance(t, lab, member, "web-2")
	cfg := awsec2.Config{Clock: clock}
	ctx := context.Background()
	probes := 0
	useRole := func(c awsemu.Credentials) error {
		probes++
		_, err := sqsWith(lab, c).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("probe-%d", probes))})
		return err
	}

	old, err := emu.IssueInstanceCredentials(member, awstest.Region, id)
	if err != nil {
		t.Fatal(err)
	}
	otherOld, err := emu.IssueInstanceCredentials(member, awstest.Region, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := useRole(old); err != nil {
		t.Fatalf("the instance role cannot work before the isolation: %v", err)
	}
	advance(time.Minute)
	res := mustIsolate(t, lab, cfg, lab.Request(t, member), map[string]any{"instance_id": id, "revoke_instance_profile": true})
	rev := res.SessionRevocation
	if rev == nil || !slices.Equal(rev.Roles, []string{"AppInstanceRole"}) || !rev.IssuedBefore.After(now.Add(-time.Second)) {
		t.Fatalf("session revocation %+v", rev)
	}
	if in := instanceState(t, region(t, emu.Dump(), member), id); in.InstanceProfile != "" {
		t.Fatalf("instance profile %s still associated", in.InstanceProfile)
	}
	if _, err := emu.IssueInstanceCredentials(member, awstest.Region, id); err == nil {
		t.Fatal("the isolated instance still gets credentials from its profile")
	}
	// The stolen session is denied; the same role's sessions on other
	// instances are not.
	if err := useRole(old); awsclient.ErrorCode(err) != "AccessDenied" {
		t.Fatalf("the old session of the isolated instance: %v, want AccessDenied", err)
	}
	if err := useRole(otherOld); err != nil {
		t.Fatalf("another instance's session of the same role was denied: %v", err)
	}

	// After the rollback the instance gets a working new session, while
	// the old one stays denied.
	advance(time.Minute)
	un := mustUnisolate(t, cfg, lab.Request(t, member), map[string]any{"instance_id": id, "rollback_record": recordJSON(t, res.RollbackRecord)})
	fresh, err := emu.IssueInstanceCredentials(member, awstest.Region, id)
	if err != nil {
		t.Fatalf("no credentials after the rollback: %v (%+v)", err, un)
	}
	if err := useRole(fresh); err != nil {
		t.Fatalf("a new session after the rollback was denied: %v", err)
	}
	if err := useRole(old); awsclient.ErrorCode(err) != "AccessDenied" {
		t.Fatalf("the old session after the rollback: %v, want AccessDenied", err)
	}
	// restore_role_sessions lifts the deny.
	mustUnisolate(t, cfg, lab.Request(t, member), map[string]any{"instance_id": id, "rollback_record": recordJSON(t, res.RollbackRecord), "restore_role_sessions": true})
	if err := useRole(old); err != nil {
		t.Fatalf("the old session after restore_role_sessions: %v", err)
	}
}

func TestIsolateRetriesThrottledCalls(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	req := lab.Request(t, member)
	// EC2 answers RequestLimitExceeded, Auto Scaling Throttling.
	throttled := []struct {
		service, op string
		n           int
	}{{"ec2", "ModifyNetworkInterfaceAttribute", 2}, {"autoscaling", "EnterStandby", 1}}
	for _, f := range throttled {
		lab.Emu.ThrottleNext(f.service, f.op, f.n)
	}
	res := mustIsolate(t, lab, awsec2.Config{}, req, map[string]any{"instance_id": id})
	for _, f := range throttled {
		op := f.service + ":" + f.op
		i := slices.IndexFunc(res.Calls, func(c awsec2.APICall) bool { return c.Operation == op })
		if i < 0 {
			t.Fatalf("no %s call in %+v", op, res.Calls)
		}
		if c := res.Calls[i]; c.Attempts != f.n+1 || c.Outcome != awsec2.OutcomeOK {
			t.Errorf("first %s call: %+v, want ok after %d attempts", op, c, f.n+1)
		}
	}
	if left := lab.Emu.Faults(); len(left) != 0 {
		t.Errorf("throttles not used up: %+v", left)
	}
}

func TestIsolateFailureMidwayReportsWhatWasDoneAndResumes(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	before := account(t, withoutHistory(lab.Emu.Dump()), member)
	req := lab.Request(t, member)

	// Deny the responder role EnterStandby, which comes after the
	// security-group swap.
	cfg, err := awsclient.Config(req.Aws)
	if err != nil {
		t.Fatal(err)
	}
	admin := iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = aws.String(lab.Endpoint) })
	ctx := context.Background()
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(awsemu.LabResponderRole), PolicyName: aws.String("test-deny"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"autoscaling:EnterStandby","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	o := run(t, awsec2.NewIsolate(awsec2.Config{}), req, map[string]any{"instance_id": id})
	var res awsec2.IsolateResult
	o.Output(t, &res)
	msg := o.Result.GetError()
	if !strings.Contains(msg, "autoscaling:EnterStandby") || !strings.Contains(msg, "denied") {
		t.Fatalf("error %q", msg)
	}
	if stepStatus(res.Steps, "network") != awsec2.StepDone || stepStatus(res.Steps, "auto-scaling") != awsec2.StepFailed || res.RollbackRecord == nil {
		t.Fatalf("partial result does not say what was done: %+v", res.Steps)
	}
	if last := res.Calls[len(res.Calls)-1]; last.Operation != "autoscaling:EnterStandby" || last.Outcome != awsec2.OutcomeFailed {
		t.Fatalf("last call %+v", last)
	}
	if _, err := admin.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(awsemu.LabResponderRole), PolicyName: aws.String("test-deny")}); err != nil {
		t.Fatal(err)
	}

	// A rerun keeps the first record and finishes.
	again := mustIsolate(t, lab, awsec2.Config{}, lab.Request(t, member), map[string]any{"instance_id": id})
	if !again.Resumed || again.AlreadyIsolated || stepStatus(again.Steps, "auto-scaling") != awsec2.StepDone || stepStatus(again.Steps, "network") != awsec2.StepAlready ||
		stepStatus(again.Steps, "tags") != awsec2.StepDone {
		t.Fatalf("rerun %+v", again.Steps)
	}
	if again.RollbackRecord.RecordedAt != res.RollbackRecord.RecordedAt {
		t.Fatal("the rerun took a new record of the half-isolated instance")
	}
	mustUnisolate(t, awsec2.Config{}, lab.Request(t, member), map[string]any{"instance_id": id})
	if diff := cmp.Diff(before, account(t, withoutHistory(lab.Emu.Dump()), member)); diff != "" {
		t.Fatalf("not restored after a resumed isolation (-before +after):\n%s", diff)
	}
}

func TestIsolateRefusesBadTargets(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	west := lab.Credentials(t, member)
	west.Region = "us-west-2"
	var ci awsemu.AccessKeySeed
	for _, a := range lab.Seed.Accounts {
		if a.ID == member {
			ci = a.Users[0].AccessKeys[0]
		}
	}
	tests := []struct {
		name   string
		creds  *pluginv1.AWSCredentials
		params map[string]any
		want   string
	}{
		{name: "missing instance", params: map[string]any{"instance_id": "i-0123456789abcdef0"},
			want: fmt.Sprintf("instance i-0123456789abcdef0 not found in account %s region us-east-1", member)},
		{name: "wrong region", creds: west, params: map[string]any{"instance_id": id},
			want: fmt.Sprintf("instance %s not found in account %s region us-west-2", id, member)},
		{name: "region parameter disagrees with the credentials", params: map[string]any{"instance_id": id, "region": "eu-west-1"},
			want: "the region parameter says eu-west-1 but the task's credentials are for region us-east-1"},
		{name: "account parameter disagrees with the credentials", params: map[string]any{"instance_id": id, "account": awstest.Member(1)},
			want: "the account parameter says " + awstest.Member(1)},
		{name: "not an instance id", params: map[string]any{"instance_id": "web-1"}, want: `instance_id "web-1" is not an EC2 instance id`},
		{name: "allowed network too wide", params: map[string]any{"instance_id": id, "allow_cidrs": []string{"0.0.0.0/1"}}, want: "wider than /8"},
		{name: "denied call", params: map[string]any{"instance_id": id},
			creds: &pluginv1.AWSCredentials{AccessKeyId: ci.ID, SecretAccessKey: ci.Secret, Account: member, Region: awstest.Region, EndpointUrl: lab.Endpoint},
			want:  "was denied to the responder role in account " + member},
		{name: "unknown parameter", params: map[string]any{"instance_id": id, "isolate_harder": true}, want: `unknown field "isolate_harder"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := lab.Request(t, member)
			if tt.creds != nil {
				req.Aws = tt.creds
			}
			before := region(t, withoutHistory(lab.Emu.Dump()), member)
			o := run(t, awsec2.NewIsolate(awsec2.Config{}), req, tt.params)
			msg := o.Result.GetError()
			if o.Err != nil {
				msg = o.Err.Error()
			}
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q, want %q", msg, tt.want)
			}
			if diff := cmp.Diff(before, region(t, withoutHistory(lab.Emu.Dump()), member)); diff != "" {
				t.Fatalf("a refused isolation changed the state:\n%s", diff)
			}
		})
	}
}
