package awsemu

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/jpeg"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

func (l *lab) memberEC2(t *testing.T, member int) *ec2.Client {
	t.Helper()
	return ec2.NewFromConfig(l.assumeResponder(t, member))
}

func instanceID(member int, name string) string {
	return labEC2ID("i", LabAccountID(member)+"/"+name)
}

func groupID(member int, name string) string {
	return labEC2ID("sg", LabAccountID(member)+"/"+name)
}

func TestDescribeInstances(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	web1, web2, worker := instanceID(2, "web-1"), instanceID(2, "web-2"), instanceID(2, "worker-1")
	tests := []struct {
		name string
		in   ec2.DescribeInstancesInput
		want []string
		code string
	}{
		{"all", ec2.DescribeInstancesInput{}, []string{web1, web2, worker}, ""},
		{"by id", ec2.DescribeInstancesInput{InstanceIds: []string{web2}}, []string{web2}, ""},
		{"by tag", ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"web-*"}}}}, []string{web1, web2}, ""},
		{"by vpc and state", ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{labEC2ID("vpc", LabAccountID(2)+"/prod")}},
			{Name: aws.String("instance-state-name"), Values: []string{"running"}},
		}}, []string{web1, web2, worker}, ""},
		{"by instance-id filter", ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{worker}}}}, []string{worker}, ""},
		{"no match", ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"db"}}}}, nil, ""},
		{"unknown id", ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}}, nil, "InvalidInstanceID.NotFound"},
		{"malformed id", ec2.DescribeInstancesInput{InstanceIds: []string{"web-1"}}, nil, "InvalidInstanceID.Malformed"},
		{"unknown filter", ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("colour"), Values: []string{"red"}}}}, nil, "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.DescribeInstances(ctx(t), &tt.in)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			ok(t, err)
			var got []string
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					got = append(got, aws.ToString(in.InstanceId))
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}

	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{web1}})
	ok(t, err)
	in := out.Reservations[0].Instances[0]
	if in.State.Name != ec2types.InstanceStateNameRunning || len(in.NetworkInterfaces) != 1 || len(in.BlockDeviceMappings) != 2 ||
		in.IamInstanceProfile == nil || len(in.SecurityGroups) != 1 || aws.ToString(in.SecurityGroups[0].GroupName) != "web" {
		t.Fatalf("instance rendered wrong: %+v", in)
	}
}

func TestDescribeInstancesPagination(t *testing.T) {
	l := newLabFrom(t, Lab{Accounts: 3, InstancesPerAccount: 12}.Seed(), false)
	c := l.memberEC2(t, 2)
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	var ids []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		ok(t, err)
		pages++
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				ids = append(ids, aws.ToString(in.InstanceId))
			}
		}
	}
	if pages != 3 || len(ids) != 12 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 12 {
		t.Fatalf("pages %d ids %d", pages, len(ids))
	}
	_, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(2)})
	wantCode(t, err, "InvalidParameterValue")
}

// TestIsolationFlow walks the security group dance of aws-ec2-isolate and
// its rollback, and checks the dump records the order of changes.
func TestIsolationFlow(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	member := LabAccountID(2)
	vpc := labEC2ID("vpc", member+"/prod")
	before := l.emu.Dump()

	created, err := c.CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{
		GroupName: aws.String("firebreak-isolation"), Description: aws.String("Firebreak isolation"), VpcId: aws.String(vpc),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{{Key: aws.String("firebreak:case"), Value: aws.String("42")}}}},
	})
	ok(t, err)
	isolation := aws.ToString(created.GroupId)
	if !validEC2ID(isolation, "sg") {
		t.Fatalf("group id %q", isolation)
	}
	groups, err := c.DescribeSecurityGroups(ctx(t), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{isolation}})
	ok(t, err)
	eg := groups.SecurityGroups[0].IpPermissionsEgress
	if len(eg) != 1 || aws.ToString(eg[0].IpProtocol) != "-1" || aws.ToString(eg[0].IpRanges[0].CidrIp) != "0.0.0.0/0" {
		t.Fatalf("new group egress %+v, want the default allow-all rule", eg)
	}
	allAnywhere := []ec2types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}
	_, err = c.RevokeSecurityGroupEgress(ctx(t), &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(isolation), IpPermissions: allAnywhere})
	ok(t, err)
	_, err = c.RevokeSecurityGroupEgress(ctx(t), &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(isolation), IpPermissions: allAnywhere})
	wantCode(t, err, "InvalidPermission.NotFound")
	forensics := []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
		IpRanges: []ec2types.IpRange{{CidrIp: aws.String("10.99.0.0/24"), Description: aws.String("forensics")}}}}
	_, err = c.AuthorizeSecurityGroupIngress(ctx(t), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(isolation), IpPermissions: forensics})
	ok(t, err)
	_, err = c.AuthorizeSecurityGroupIngress(ctx(t), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(isolation), IpPermissions: forensics})
	wantCode(t, err, "InvalidPermission.Duplicate")
	_, err = c.CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{GroupName: aws.String("firebreak-isolation"), Description: aws.String("x"), VpcId: aws.String(vpc)})
	wantCode(t, err, "InvalidGroup.Duplicate")

	web1 := instanceID(2, "web-1")
	desc, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{web1}})
	ok(t, err)
	eni := aws.ToString(desc.Reservations[0].Instances[0].NetworkInterfaces[0].NetworkInterfaceId)
	original := groupID(2, "web")

	for _, groups := range [][]string{{original, isolation}, {isolation}} {
		_, err = c.ModifyNetworkInterfaceAttribute(ctx(t), &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String(eni), Groups: groups})
		ok(t, err)
	}
	_, err = c.ModifyNetworkInterfaceAttribute(ctx(t), &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String(eni), Groups: []string{"sg-0123456789abcdef0"}})
	wantCode(t, err, "InvalidGroup.NotFound")
	_, err = c.ModifyNetworkInterfaceAttribute(ctx(t), &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String("eni-0123456789abcdef0"), Groups: []string{isolation}})
	wantCode(t, err, "InvalidNetworkInterfaceID.NotFound")
	_, err = c.DeleteSecurityGroup(ctx(t), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(isolation)})
	wantCode(t, err, "DependencyViolation")

	enis, err := c.DescribeNetworkInterfaces(ctx(t), &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
		{Name: aws.String("attachment.instance-id"), Values: []string{web1}}}})
	ok(t, err)
	if len(enis.NetworkInterfaces) != 1 || len(enis.NetworkInterfaces[0].Groups) != 1 || aws.ToString(enis.NetworkInterfaces[0].Groups[0].GroupId) != isolation {
		t.Fatalf("ENI after isolation: %+v", enis.NetworkInterfaces)
	}

	// Roll back: the original groups, then the isolation group goes.
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(web1), Groups: []string{original}})
	ok(t, err)
	_, err = c.DeleteSecurityGroup(ctx(t), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(isolation)})
	ok(t, err)
	_, err = c.DeleteSecurityGroup(ctx(t), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(isolation)})
	wantCode(t, err, "InvalidGroup.NotFound")

	after := l.emu.Dump()
	var hist []GroupChangeState
	for _, n := range after.Account(member).Region("us-east-1").NetworkInterfaces {
		if n.ID == eni {
			hist = n.GroupHistory
		}
	}
	wantOps := []string{"RunInstances", "ModifyNetworkInterfaceAttribute", "ModifyNetworkInterfaceAttribute", "ModifyInstanceAttribute"}
	if len(hist) != len(wantOps) {
		t.Fatalf("history %+v", hist)
	}
	for i, h := range hist {
		if h.Operation != wantOps[i] {
			t.Fatalf("change %d is %s, want %s", i, h.Operation, wantOps[i])
		}
	}
	if !slices.Equal(hist[1].Groups, []string{original, isolation}) || !slices.Equal(hist[2].Groups, []string{isolation}) {
		t.Fatalf("group sequence %+v", hist)
	}
	// Apart from the ENI's history, the rollback restored the region.
	strip := func(s *State) RegionState {
		r := *s.Account(member).Region("us-east-1")
		r.NetworkInterfaces = nil
		return r
	}
	if a, b := strip(before), strip(after); !jsonEqual(t, a, b) {
		t.Fatalf("state after rollback differs:\nbefore %s\nafter  %s", mustJSON(t, a), mustJSON(t, b))
	}
}

func TestInstanceAttributes(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	id := aws.String(instanceID(2, "web-1"))
	_, err := c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: id, DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
	ok(t, err)
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: id, InstanceInitiatedShutdownBehavior: &ec2types.AttributeValue{Value: aws.String("stop")}})
	ok(t, err)
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: id, BlockDeviceMappings: []ec2types.InstanceBlockDeviceMappingSpecification{
		{DeviceName: aws.String("/dev/xvda"), Ebs: &ec2types.EbsInstanceBlockDeviceSpecification{DeleteOnTermination: aws.Bool(false)}}}})
	ok(t, err)
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: id, BlockDeviceMappings: []ec2types.InstanceBlockDeviceMappingSpecification{
		{DeviceName: aws.String("/dev/sdz"), Ebs: &ec2types.EbsInstanceBlockDeviceSpecification{DeleteOnTermination: aws.Bool(false)}}}})
	wantCode(t, err, "InvalidInstanceAttributeValue")
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: id, InstanceInitiatedShutdownBehavior: &ec2types.AttributeValue{Value: aws.String("explode")}})
	wantCode(t, err, "InvalidParameterValue")

	term, err := c.DescribeInstanceAttribute(ctx(t), &ec2.DescribeInstanceAttributeInput{InstanceId: id, Attribute: ec2types.InstanceAttributeNameDisableApiTermination})
	ok(t, err)
	if !aws.ToBool(term.DisableApiTermination.Value) {
		t.Fatal("termination protection not reported")
	}
	bdm, err := c.DescribeInstanceAttribute(ctx(t), &ec2.DescribeInstanceAttributeInput{InstanceId: id, Attribute: ec2types.InstanceAttributeNameBlockDeviceMapping})
	ok(t, err)
	if len(bdm.BlockDeviceMappings) != 2 || aws.ToBool(bdm.BlockDeviceMappings[0].Ebs.DeleteOnTermination) {
		t.Fatalf("block devices %+v", bdm.BlockDeviceMappings)
	}
	_, err = c.DescribeInstanceAttribute(ctx(t), &ec2.DescribeInstanceAttributeInput{InstanceId: aws.String("i-0123456789abcdef0"), Attribute: ec2types.InstanceAttributeNameGroupSet})
	wantCode(t, err, "InvalidInstanceID.NotFound")
}

func TestTags(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	id := instanceID(2, "web-1")
	tests := []struct {
		name string
		tags []ec2types.Tag
		code string
	}{
		{"ok", []ec2types.Tag{{Key: aws.String("firebreak:isolated"), Value: aws.String("case-42")}}, ""},
		{"value at limit", []ec2types.Tag{{Key: aws.String("note"), Value: aws.String(strings.Repeat("v", 256))}}, ""},
		{"value over limit", []ec2types.Tag{{Key: aws.String("note"), Value: aws.String(strings.Repeat("v", 257))}}, "InvalidParameterValue"},
		{"reserved prefix", []ec2types.Tag{{Key: aws.String("aws:owner"), Value: aws.String("me")}}, "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{id}, Tags: tt.tags})
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			ok(t, err)
		})
	}
	_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{"i-0123456789abcdef0"}, Tags: tests[0].tags})
	wantCode(t, err, "InvalidInstanceID.NotFound")

	out, err := c.DescribeTags(ctx(t), &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
		{Name: aws.String("resource-id"), Values: []string{id}}, {Name: aws.String("key"), Values: []string{"firebreak:*"}}}})
	ok(t, err)
	if len(out.Tags) != 1 || aws.ToString(out.Tags[0].Value) != "case-42" || out.Tags[0].ResourceType != ec2types.ResourceTypeInstance {
		t.Fatalf("tags %+v", out.Tags)
	}
	_, err = c.DeleteTags(ctx(t), &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("firebreak:isolated"), Value: aws.String("other")}}})
	ok(t, err)
	out, err = c.DescribeTags(ctx(t), &ec2.DescribeTagsInput{Filters: []ec2types.Filter{{Name: aws.String("key"), Values: []string{"firebreak:isolated"}}}})
	ok(t, err)
	if len(out.Tags) != 1 {
		t.Fatal("a delete with a different value removed the tag")
	}
	_, err = c.DeleteTags(ctx(t), &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("firebreak:isolated")}}})
	ok(t, err)
	out, err = c.DescribeTags(ctx(t), &ec2.DescribeTagsInput{Filters: []ec2types.Filter{{Name: aws.String("key"), Values: []string{"firebreak:isolated"}}}})
	ok(t, err)
	if len(out.Tags) != 0 {
		t.Fatalf("tag survived delete: %+v", out.Tags)
	}
}

func TestSnapshots(t *testing.T) {
	l := newLab(t, 4)
	c := l.memberEC2(t, 2)
	web1 := instanceID(2, "web-1")
	vols, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("attachment.instance-id"), Values: []string{web1}}}})
	ok(t, err)
	if len(vols.Volumes) != 2 {
		t.Fatalf("volumes %+v", vols.Volumes)
	}
	_, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-0123456789abcdef0"}})
	wantCode(t, err, "InvalidVolume.NotFound")

	created, err := c.CreateSnapshots(ctx(t), &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(web1)},
		Description:           aws.String("firebreak case 42"),
		CopyTagsFromSource:    ec2types.CopyTagsFromSourceVolume,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
			Tags: []ec2types.Tag{{Key: aws.String("firebreak:case"), Value: aws.String("42")}}}},
	})
	ok(t, err)
	if len(created.Snapshots) != 2 {
		t.Fatalf("snapshots %+v", created.Snapshots)
	}
	var rootSnap, dataSnap string
	for _, s := range created.Snapshots {
		if s.State != ec2types.SnapshotStatePending || aws.ToString(s.Description) != "firebreak case 42" {
			t.Fatalf("snapshot %+v", s)
		}
		tagged := map[string]string{}
		for _, tg := range s.Tags {
			tagged[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if tagged["firebreak:case"] != "42" {
			t.Fatalf("snapshot tags %v", tagged)
		}
		if tagged["Name"] == "web-1-data" {
			dataSnap = aws.ToString(s.SnapshotId)
		} else {
			rootSnap = aws.ToString(s.SnapshotId)
		}
	}
	if dataSnap == "" || rootSnap == "" {
		t.Fatal("volume tags were not copied")
	}

	desc, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []ec2types.Filter{
		{Name: aws.String("tag:firebreak:case"), Values: []string{"42"}}}})
	ok(t, err)
	if len(desc.Snapshots) != 2 || desc.Snapshots[0].State != ec2types.SnapshotStateCompleted {
		t.Fatalf("described %+v", desc.Snapshots)
	}
	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snap-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSnapshot.NotFound")

	security := LabAccountID(1)
	_, err = c.ModifySnapshotAttribute(ctx(t), &ec2.ModifySnapshotAttributeInput{SnapshotId: aws.String(rootSnap),
		Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission, OperationType: ec2types.OperationTypeAdd, UserIds: []string{security}})
	wantCode(t, err, "InvalidParameter")
	_, err = c.ModifySnapshotAttribute(ctx(t), &ec2.ModifySnapshotAttributeInput{SnapshotId: aws.String(dataSnap),
		CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: []ec2types.CreateVolumePermission{{UserId: aws.String(security)}}}})
	ok(t, err)
	attr, err := c.DescribeSnapshotAttribute(ctx(t), &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(dataSnap), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
	ok(t, err)
	if len(attr.CreateVolumePermissions) != 1 || aws.ToString(attr.CreateVolumePermissions[0].UserId) != security {
		t.Fatalf("permissions %+v", attr.CreateVolumePermissions)
	}

	// The security account sees the shared snapshot and copies it with its
	// own key.
	sec := ec2.NewFromConfig(l.assumeWorker(t))
	shared, err := sec.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{RestorableByUserIds: []string{"self"}})
	ok(t, err)
	if len(shared.Snapshots) != 1 || aws.ToString(shared.Snapshots[0].SnapshotId) != dataSnap {
		t.Fatalf("shared snapshots %+v", shared.Snapshots)
	}
	evidenceKey := "arn:aws:kms:us-east-1:" + security + ":key/11111111-2222-3333-4444-555555555555"
	cp, err := sec.CopySnapshot(ctx(t), &ec2.CopySnapshotInput{SourceRegion: aws.String("us-east-1"), SourceSnapshotId: aws.String(dataSnap),
		Encrypted: aws.Bool(true), KmsKeyId: aws.String(evidenceKey)})
	ok(t, err)
	copied, err := sec.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(cp.SnapshotId)}})
	ok(t, err)
	if s := copied.Snapshots[0]; !aws.ToBool(s.Encrypted) || aws.ToString(s.KmsKeyId) != evidenceKey || aws.ToString(s.OwnerId) != security {
		t.Fatalf("copy %+v", s)
	}
	_, err = ec2.NewFromConfig(l.assumeResponder(t, 3)).CopySnapshot(ctx(t), &ec2.CopySnapshotInput{SourceRegion: aws.String("us-east-1"), SourceSnapshotId: aws.String(dataSnap)})
	wantCode(t, err, "InvalidSnapshot.NotFound")
	_, err = sec.CopySnapshot(ctx(t), &ec2.CopySnapshotInput{SourceRegion: aws.String("us-east-1"), SourceSnapshotId: aws.String(dataSnap), KmsKeyId: aws.String(evidenceKey)})
	wantCode(t, err, "InvalidParameterDependency")
}

func TestConsole(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	id := aws.String(instanceID(2, "web-1"))
	out, err := c.GetConsoleOutput(ctx(t), &ec2.GetConsoleOutputInput{InstanceId: id, Latest: aws.Bool(true)})
	ok(t, err)
	text, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	ok(t, err)
	if !strings.Contains(string(text), instanceID(2, "web-1")) {
		t.Fatalf("console output %q", text)
	}
	shot, err := c.GetConsoleScreenshot(ctx(t), &ec2.GetConsoleScreenshotInput{InstanceId: id})
	ok(t, err)
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(shot.ImageData))
	ok(t, err)
	img, err := jpeg.Decode(bytes.NewReader(raw))
	ok(t, err)
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("screenshot %v", b)
	}
	_, err = c.GetConsoleOutput(ctx(t), &ec2.GetConsoleOutputInput{InstanceId: aws.String("i-0123456789abcdef0")})
	wantCode(t, err, "InvalidInstanceID.NotFound")
}

func TestInstanceProfileAssociations(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	id := instanceID(2, "web-1")
	list, err := c.DescribeIamInstanceProfileAssociations(ctx(t), &ec2.DescribeIamInstanceProfileAssociationsInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
	ok(t, err)
	if len(list.IamInstanceProfileAssociations) != 1 {
		t.Fatalf("associations %+v", list.IamInstanceProfileAssociations)
	}
	a := list.IamInstanceProfileAssociations[0]
	profileARN := aws.ToString(a.IamInstanceProfile.Arn)
	_, err = c.AssociateIamInstanceProfile(ctx(t), &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Arn: aws.String(profileARN)}})
	wantCode(t, err, "IncorrectState")
	_, err = c.DisassociateIamInstanceProfile(ctx(t), &ec2.DisassociateIamInstanceProfileInput{AssociationId: a.AssociationId})
	ok(t, err)
	_, err = c.DisassociateIamInstanceProfile(ctx(t), &ec2.DisassociateIamInstanceProfileInput{AssociationId: a.AssociationId})
	wantCode(t, err, "InvalidAssociationID.NotFound")
	_, err = c.AssociateIamInstanceProfile(ctx(t), &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String("nope")}})
	wantCode(t, err, "InvalidParameterValue")
	re, err := c.AssociateIamInstanceProfile(ctx(t), &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String("AppInstanceRole")}})
	ok(t, err)
	if aws.ToString(re.IamInstanceProfileAssociation.IamInstanceProfile.Arn) != profileARN {
		t.Fatalf("re-association %+v", re.IamInstanceProfileAssociation)
	}
}

func TestNetworkDescriptions(t *testing.T) {
	l := newLab(t, 3)
	c := l.memberEC2(t, 2)
	vpcs, err := c.DescribeVpcs(ctx(t), &ec2.DescribeVpcsInput{})
	ok(t, err)
	if len(vpcs.Vpcs) != 1 || aws.ToString(vpcs.Vpcs[0].CidrBlock) != "10.0.0.0/16" {
		t.Fatalf("vpcs %+v", vpcs.Vpcs)
	}
	subnets, err := c.DescribeSubnets(ctx(t), &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("availability-zone"), Values: []string{"us-east-1b"}}}})
	ok(t, err)
	if len(subnets.Subnets) != 1 || aws.ToString(subnets.Subnets[0].CidrBlock) != "10.0.2.0/24" {
		t.Fatalf("subnets %+v", subnets.Subnets)
	}
	_, err = c.DescribeVpcs(ctx(t), &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-0123456789abcdef0"}})
	wantCode(t, err, "InvalidVpcID.NotFound")
	_, err = c.DescribeSubnets(ctx(t), &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSubnetID.NotFound")

	regions, err := c.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	ok(t, err)
	var names []string
	for _, r := range regions.Regions {
		names = append(names, aws.ToString(r.RegionName))
	}
	if !slices.Equal(names, []string{"us-east-1", "us-west-2"}) {
		t.Fatalf("regions %v", names)
	}
	all, err := c.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{AllRegions: aws.Bool(true)})
	ok(t, err)
	if len(all.Regions) != len(knownRegions) {
		t.Fatalf("all regions: %d", len(all.Regions))
	}
	sgs, err := c.DescribeSecurityGroups(ctx(t), &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("group-name"), Values: []string{"worker"}}}})
	ok(t, err)
	if len(sgs.SecurityGroups) != 1 || len(sgs.SecurityGroups[0].IpPermissions) != 1 || aws.ToString(sgs.SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0].GroupId) != groupID(2, "web") {
		t.Fatalf("worker group %+v", sgs.SecurityGroups)
	}
}

func TestEC2DryRun(t *testing.T) {
	l := newLab(t, 3)
	_, err := l.memberEC2(t, 2).ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{DryRun: aws.Bool(true),
		InstanceId: aws.String(instanceID(2, "web-1")), DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
	wantCode(t, err, "DryRunOperation")
	_, err = ec2.NewFromConfig(l.compromised(2)).ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{DryRun: aws.Bool(true),
		InstanceId: aws.String(instanceID(2, "web-1")), DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
	wantCode(t, err, "UnauthorizedOperation")
}

// TestAssociatingAProfilePassesItsRole: AssociateIamInstanceProfile hands
// the profile's role to EC2, so AWS checks iam:PassRole on that role with
// iam:PassedToService and iam:AssociatedResourceArn; a caller allowed the
// EC2 call but not the pass is refused, and nothing is associated.
func TestAssociatingAProfilePassesItsRole(t *testing.T) {
	l := newLab(t, 3)
	member := LabAccountID(2)
	id := instanceID(2, "web-1")
	role := "arn:aws:iam::" + member + ":role/AppInstanceRole"
	admin := iam.NewFromConfig(l.assumeResponder(t, 2))
	ec2Admin := l.memberEC2(t, 2)
	ec2Calls := `{"Effect":"Allow","Action":["ec2:AssociateIamInstanceProfile","ec2:DescribeIamInstanceProfileAssociations"],"Resource":"*"}`
	for i, tc := range []struct {
		name, pass string
		wantCode   string
	}{
		{name: "no iam:PassRole", wantCode: "UnauthorizedOperation"},
		{name: "PassRole to another service", wantCode: "UnauthorizedOperation",
			pass: `{"Effect":"Allow","Action":"iam:PassRole","Resource":"` + role + `","Condition":{"StringEquals":{"iam:PassedToService":"lambda.amazonaws.com"}}}`},
		{name: "PassRole for another instance", wantCode: "UnauthorizedOperation",
			pass: `{"Effect":"Allow","Action":"iam:PassRole","Resource":"` + role + `","Condition":{"ArnLike":{"iam:AssociatedResourceArn":"arn:aws:ec2:*:` + member + `:instance/i-other"}}}`},
		{name: "PassRole for roles under another path", wantCode: "UnauthorizedOperation",
			pass: `{"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::` + member + `:role/app/*"}`},
		{name: "PassRole of this role to EC2 for this account's instances",
			pass: `{"Effect":"Allow","Action":"iam:PassRole","Resource":"` + role + `","Condition":{"StringEquals":{"iam:PassedToService":"ec2.amazonaws.com"},"ArnLike":{"iam:AssociatedResourceArn":"arn:aws:ec2:*:` + member + `:instance/*"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := ec2Admin.DescribeIamInstanceProfileAssociations(ctx(t), &ec2.DescribeIamInstanceProfileAssociationsInput{
				Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
			ok(t, err)
			for _, a := range list.IamInstanceProfileAssociations {
				_, err := ec2Admin.DisassociateIamInstanceProfile(ctx(t), &ec2.DisassociateIamInstanceProfileInput{AssociationId: a.AssociationId})
				ok(t, err)
			}
			user := aws.String(fmt.Sprintf("restorer-%d", i))
			_, err = admin.CreateUser(ctx(t), &iam.CreateUserInput{UserName: user})
			ok(t, err)
			statements := ec2Calls
			if tc.pass != "" {
				statements += "," + tc.pass
			}
			_, err = admin.PutUserPolicy(ctx(t), &iam.PutUserPolicyInput{UserName: user, PolicyName: aws.String("restore"),
				PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[` + statements + `]}`)})
			ok(t, err)
			key, err := admin.CreateAccessKey(ctx(t), &iam.CreateAccessKeyInput{UserName: user})
			ok(t, err)
			c := ec2.NewFromConfig(l.cfg(aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey), ""))
			_, err = c.AssociateIamInstanceProfile(ctx(t), &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
				IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String("AppInstanceRole")}})
			after, lerr := ec2Admin.DescribeIamInstanceProfileAssociations(ctx(t), &ec2.DescribeIamInstanceProfileAssociationsInput{
				Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
			ok(t, lerr)
			if tc.wantCode == "" {
				ok(t, err)
				if len(after.IamInstanceProfileAssociations) != 1 {
					t.Fatalf("associations after an allowed pass: %d", len(after.IamInstanceProfileAssociations))
				}
				return
			}
			wantCode(t, err, tc.wantCode)
			if !strings.Contains(err.Error(), "iam:PassRole") || !strings.Contains(err.Error(), role) {
				t.Fatalf("the refusal does not name iam:PassRole on %s: %v", role, err)
			}
			if len(after.IamInstanceProfileAssociations) != 0 {
				t.Fatalf("a refused pass still associated the profile: %+v", after.IamInstanceProfileAssociations)
			}
		})
	}
}
