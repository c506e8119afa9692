package awsec2

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Tags on the snapshots.
const (
	// TagInstance names the instance a snapshot was taken of.
	TagInstance = "firebreak:instance"
	// TagSourceSnapshot names the snapshot a re-encrypted copy was made of.
	TagSourceSnapshot = "firebreak:source-snapshot"
)

// SnapshotParams are aws-ebs-snapshot's parameters.
type SnapshotParams struct {
	Target
	// CaseID is written into the snapshots' tags; the run's case when
	// empty.
	CaseID string `json:"case_id,omitempty"`
	// KMSKeyID is a customer managed key to copy each snapshot under.
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// ShareWithAccount is the account given createVolumePermission on the
	// copies (or, without KMSKeyID, on the snapshots). With KMSKeyID and no
	// account, the security account.
	ShareWithAccount string `json:"share_with_account,omitempty"`
	// WaitForCompletion waits until every snapshot has completed.
	WaitForCompletion bool `json:"wait_for_completion,omitempty"`
}

// SnapshotCopy is a re-encrypted copy of a snapshot.
type SnapshotCopy struct {
	// SnapshotID is the copy.
	SnapshotID string `json:"snapshot_id"`
	// KMSKeyID is the key it is encrypted under.
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// State is pending, completed or error.
	State string `json:"state"`
	// SharedWith are the accounts that may create volumes from it.
	SharedWith []string `json:"shared_with,omitempty"`
}

// VolumeSnapshot is the evidence snapshot of one volume.
type VolumeSnapshot struct {
	// VolumeID and Device name the volume.
	VolumeID string `json:"volume_id"`
	Device   string `json:"device,omitempty"`
	// SnapshotID is the crash-consistent snapshot.
	SnapshotID string `json:"snapshot_id"`
	// State is pending, completed or error.
	State string `json:"state"`
	// StartTime is when the snapshot's point in time was taken.
	StartTime time.Time `json:"start_time,omitzero"`
	// SizeGiB is the volume size.
	SizeGiB int32 `json:"size_gib"`
	// Encrypted and KMSKeyID describe the snapshot's encryption.
	Encrypted bool   `json:"encrypted"`
	KMSKeyID  string `json:"kms_key_id,omitempty"`
	// SharedWith are the accounts given the snapshot itself.
	SharedWith []string `json:"shared_with,omitempty"`
	// Copy is the re-encrypted copy, with kms_key_id.
	Copy *SnapshotCopy `json:"copy,omitempty"`
}

// SnapshotResult is aws-ebs-snapshot's result.
type SnapshotResult struct {
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// CaseID and RunID are in the snapshots' tags.
	CaseID string `json:"case_id,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	// Reused is true when this run's snapshots already existed and were
	// not taken again.
	Reused bool `json:"reused"`
	// Snapshots are the volumes' snapshots, by device.
	Snapshots []VolumeSnapshot `json:"snapshots"`
	// Changes counts the successful calls that changed something.
	Changes int `json:"changes"`
	// Calls lists every API call made, in order.
	Calls []APICall `json:"calls"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// Snapshot is the aws-ebs-snapshot action.
type Snapshot struct{ cfg Config }

// NewSnapshot returns aws-ebs-snapshot.
func NewSnapshot(cfg Config) *Snapshot {
	cfg.CheckAndSetDefaults()
	return &Snapshot{cfg: cfg}
}

// Describe implements sdk.Action.
func (a *Snapshot) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	params := append(targetParams(), caseParam(),
		&pluginv1.ParamSpec{Name: "kms_key_id", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "a customer managed KMS key (id, ARN or alias) to copy each snapshot under; needed to share volumes encrypted with the default aws/ebs key, which cannot be shared. The receiving account must be allowed to use the key"},
		&pluginv1.ParamSpec{Name: "share_with_account", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the 12-digit account given the copies (or, without kms_key_id, the snapshots); with kms_key_id it defaults to the security account"},
		&pluginv1.ParamSpec{Name: "wait_for_completion", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "false",
			Description: "wait until every snapshot has completed, up to the task's deadline (copies and shares always wait for their source)"},
	)
	return &pluginv1.ActionDescription{
		Name:    SnapshotName,
		Version: Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Takes crash-consistent snapshots of all an instance's EBS volumes at one point in time (CreateSnapshots), tagged with the case " +
			"and run; optionally copies each under a customer KMS key and shares the copies with the security account. A rerun of the same run reuses its snapshots",
		Roles:  []string{"worker"},
		Params: params,
	}, nil
}

var accountIDRE = regexp.MustCompile(`^\d{12}$`)

// Execute implements sdk.Action.
func (a *Snapshot) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := a.cfg.Clock()
	var p SnapshotParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	if p.ShareWithAccount != "" && !accountIDRE.MatchString(p.ShareWithAccount) {
		return nil, sdk.Errorf(codes.InvalidArgument, "share_with_account %q is not a 12-digit AWS account id", p.ShareWithAccount)
	}
	s, err := newScope(a.cfg, req, emit, p.Target, p.CaseID)
	if err != nil {
		return nil, err
	}
	if p.ShareWithAccount == s.account {
		return nil, sdk.Errorf(codes.InvalidArgument, "share_with_account %s is the instance's own account; the snapshots are there already", p.ShareWithAccount)
	}
	if p.KMSKeyID != "" && p.ShareWithAccount == "" && req.AWS.GetSecurityAccount() != s.account {
		p.ShareWithAccount = req.AWS.GetSecurityAccount()
	}
	res := &SnapshotResult{InstanceID: s.instanceID, Account: s.account, Region: s.region, CaseID: s.caseID, RunID: s.runID, Snapshots: []VolumeSnapshot{}}
	err = (&snapshotTask{scope: s, p: p, res: res, deadline: req.Task.GetDeadline().AsTime()}).run(ctx)
	res.Calls, res.Changes = s.j.snapshot()
	res.ElapsedMS = millis(a.cfg.Clock().Sub(start))
	if err != nil {
		s.log("error", "snapshot of %s stopped: %v", s.where(), err)
		return res, err
	}
	return res, nil
}

type snapshotTask struct {
	*scope
	p        SnapshotParams
	res      *SnapshotResult
	deadline time.Time
}

// evidenceTags are the tags of every snapshot and copy of the task.
func (x *snapshotTask) evidenceTags(extra ...ec2types.Tag) []ec2types.Tag {
	tags := []ec2types.Tag{{Key: aws.String(TagInstance), Value: aws.String(x.instanceID)}, {Key: aws.String(TagRun), Value: aws.String(clipTag(x.runID))}}
	if x.caseID != "" {
		tags = append(tags, ec2types.Tag{Key: aws.String(TagCase), Value: aws.String(clipTag(x.caseID))})
	}
	return append(tags, extra...)
}

func (x *snapshotTask) run(ctx context.Context) error {
	x.progress(5, "reading %s", x.where())
	in, err := x.describeInstance(ctx, "inspect")
	if err != nil {
		return err
	}
	if in.State != nil && in.State.Name == ec2types.InstanceStateNameTerminated {
		return sdk.Errorf(codes.FailedPrecondition, "%s is terminated: its volumes are gone or detached; snapshot them by volume id instead", x.where())
	}
	devices := map[string]string{}
	for _, m := range in.BlockDeviceMappings {
		if m.Ebs != nil {
			devices[aws.ToString(m.Ebs.VolumeId)] = aws.ToString(m.DeviceName)
		}
	}
	if len(devices) == 0 {
		return sdk.Errorf(codes.FailedPrecondition, "%s has no EBS volumes to snapshot", x.where())
	}
	if x.runID == "" {
		return sdk.Errorf(codes.InvalidArgument, "the task names no run: snapshots are tagged and found again by run id")
	}

	x.progress(15, "looking for this run's snapshots")
	existing, err := x.findSnapshots(ctx)
	if err != nil {
		return err
	}
	originals := map[string]ec2types.Snapshot{} // by volume
	copies := map[string]ec2types.Snapshot{}    // by source snapshot
	for _, sn := range existing {
		if src, ok := snapshotTag(sn, TagSourceSnapshot); ok {
			copies[src] = sn
		} else if _, ok := devices[aws.ToString(sn.VolumeId)]; ok {
			originals[aws.ToString(sn.VolumeId)] = sn
		}
	}
	if len(originals) > 0 {
		x.res.Reused = true
	} else {
		x.progress(30, "taking crash-consistent snapshots of %d volumes", len(devices))
		if originals, err = x.createSnapshots(ctx); err != nil {
			return err
		}
	}
	vols := make([]string, 0, len(devices))
	for v := range devices {
		vols = append(vols, v)
	}
	slices.SortFunc(vols, func(a, b string) int { return strings.Compare(devices[a], devices[b]) })
	for _, v := range vols {
		sn, ok := originals[v]
		if !ok {
			x.log("warn", "volume %s (%s) has no snapshot of this run: it was attached after the run's snapshots were taken", v, devices[v])
			continue
		}
		x.res.Snapshots = append(x.res.Snapshots, VolumeSnapshot{VolumeID: v, Device: devices[v], SnapshotID: aws.ToString(sn.SnapshotId),
			State: string(sn.State), StartTime: aws.ToTime(sn.StartTime), SizeGiB: aws.ToInt32(sn.VolumeSize), Encrypted: aws.ToBool(sn.Encrypted),
			KMSKeyID: aws.ToString(sn.KmsKeyId)})
	}

	needCompleted := x.p.WaitForCompletion || x.p.KMSKeyID != "" || x.p.ShareWithAccount != ""
	if needCompleted {
		x.progress(45, "waiting for the snapshots to complete")
		if err := x.waitCompleted(ctx, x.res.Snapshots, func(v *VolumeSnapshot) *string { return &v.SnapshotID }, func(v *VolumeSnapshot, st string) { v.State = st }); err != nil {
			return err
		}
	}
	if x.p.KMSKeyID != "" {
		x.progress(60, "copying the snapshots under %s", x.p.KMSKeyID)
		for i := range x.res.Snapshots {
			v := &x.res.Snapshots[i]
			if c, ok := copies[v.SnapshotID]; ok {
				v.Copy = &SnapshotCopy{SnapshotID: aws.ToString(c.SnapshotId), KMSKeyID: aws.ToString(c.KmsKeyId), State: string(c.State)}
				continue
			}
			if err := x.copySnapshot(ctx, v); err != nil {
				return err
			}
		}
		if x.p.ShareWithAccount != "" || x.p.WaitForCompletion {
			x.progress(75, "waiting for the copies to complete")
			if err := x.waitCompleted(ctx, x.res.Snapshots, func(v *VolumeSnapshot) *string { return &v.Copy.SnapshotID },
				func(v *VolumeSnapshot, st string) { v.Copy.State = st }); err != nil {
				return err
			}
		}
	}
	if acct := x.p.ShareWithAccount; acct != "" {
		x.progress(85, "sharing with account %s", acct)
		for i := range x.res.Snapshots {
			v := &x.res.Snapshots[i]
			id, shared := v.SnapshotID, &v.SharedWith
			if v.Copy != nil {
				id, shared = v.Copy.SnapshotID, &v.Copy.SharedWith
			}
			if err := x.share(ctx, v, id, acct); err != nil {
				return err
			}
			*shared = append(*shared, acct)
		}
	}
	x.progress(100, "%d snapshots of %s", len(x.res.Snapshots), x.where())
	return nil
}

func snapshotTag(sn ec2types.Snapshot, key string) (string, bool) { return tagValue(sn.Tags, key) }

// findSnapshots lists this account's snapshots of the instance tagged with
// the run: the ones an earlier attempt of the same run took.
func (x *snapshotTask) findSnapshots(ctx context.Context) ([]ec2types.Snapshot, error) {
	op := "ec2:DescribeSnapshots"
	var out []ec2types.Snapshot
	err := x.j.call(ctx, "inspect", op, TagInstance+"="+x.instanceID+","+TagRun+"="+x.runID, func(ctx context.Context) error {
		p := ec2.NewDescribeSnapshotsPaginator(x.c.EC2, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + TagInstance), Values: []string{x.instanceID}}, {Name: aws.String("tag:" + TagRun), Values: []string{clipTag(x.runID)}}}})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			out = append(out, page.Snapshots...)
		}
		return nil
	})
	if err != nil {
		return nil, x.explain(op, x.instanceID, err)
	}
	return out, nil
}

// createSnapshots takes one crash-consistent snapshot set of every volume.
func (x *snapshotTask) createSnapshots(ctx context.Context) (map[string]ec2types.Snapshot, error) {
	op := "ec2:CreateSnapshots"
	desc := fmt.Sprintf("Firebreak evidence: crash-consistent snapshot of %s, case %s, run %s", x.instanceID, x.caseID, x.runID)
	if len(desc) > 255 {
		desc = desc[:255]
	}
	var out *ec2.CreateSnapshotsOutput
	if err := x.j.call(ctx, "snapshot", op, x.instanceID, func(ctx context.Context) (err error) {
		out, err = x.c.EC2.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
			InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: &x.instanceID, ExcludeBootVolume: aws.Bool(false)},
			Description:           &desc, CopyTagsFromSource: ec2types.CopyTagsFromSourceVolume,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: x.evidenceTags()}},
		})
		return err
	}); err != nil {
		return nil, x.explain(op, x.instanceID, err)
	}
	made := map[string]ec2types.Snapshot{}
	for _, s := range out.Snapshots {
		made[aws.ToString(s.VolumeId)] = ec2types.Snapshot{SnapshotId: s.SnapshotId, VolumeId: s.VolumeId, State: s.State, StartTime: s.StartTime,
			VolumeSize: s.VolumeSize, Encrypted: s.Encrypted, Tags: s.Tags}
	}
	return made, nil
}

// waitCompleted waits until the snapshots named by id have completed,
// within the task's deadline.
func (x *snapshotTask) waitCompleted(ctx context.Context, snaps []VolumeSnapshot, id func(*VolumeSnapshot) *string, set func(*VolumeSnapshot, string)) error {
	var ids []string
	for i := range snaps {
		ids = append(ids, *id(&snaps[i]))
	}
	if len(ids) == 0 {
		return nil
	}
	maxWait := time.Hour
	if !x.deadline.IsZero() {
		maxWait = time.Until(x.deadline) - 10*time.Second
	}
	if maxWait <= 0 {
		return sdk.Errorf(codes.DeadlineExceeded, "no time left before the task's deadline to wait for snapshots %s", strings.Join(ids, ", "))
	}
	op := "ec2:DescribeSnapshots"
	var out *ec2.DescribeSnapshotsOutput
	err := x.j.call(ctx, "wait", op, strings.Join(ids, ",")+" until completed", func(ctx context.Context) (err error) {
		w := ec2.NewSnapshotCompletedWaiter(x.c.EC2, func(o *ec2.SnapshotCompletedWaiterOptions) { o.MinDelay = 5 * time.Second })
		out, err = w.WaitForOutput(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: ids}, maxWait)
		return err
	})
	if err != nil {
		return sdk.Errorf(codes.DeadlineExceeded, "snapshots %s did not complete: %v; rerun the task with a longer --deadline (it reuses the snapshots already taken)", strings.Join(ids, ", "), err)
	}
	for _, s := range out.Snapshots {
		for i := range snaps {
			if *id(&snaps[i]) == aws.ToString(s.SnapshotId) {
				set(&snaps[i], string(s.State))
			}
		}
	}
	return nil
}

// copySnapshot copies a snapshot re-encrypted under the task's key.
func (x *snapshotTask) copySnapshot(ctx context.Context, v *VolumeSnapshot) error {
	op := "ec2:CopySnapshot"
	desc := fmt.Sprintf("Firebreak evidence: %s of %s (%s) re-encrypted, case %s, run %s", v.SnapshotID, x.instanceID, v.Device, x.caseID, x.runID)
	if len(desc) > 255 {
		desc = desc[:255]
	}
	var out *ec2.CopySnapshotOutput
	if err := x.j.call(ctx, "copy", op, v.SnapshotID+" under "+x.p.KMSKeyID, func(ctx context.Context) (err error) {
		out, err = x.c.EC2.CopySnapshot(ctx, &ec2.CopySnapshotInput{SourceSnapshotId: aws.String(v.SnapshotID), SourceRegion: aws.String(x.region),
			Encrypted: aws.Bool(true), KmsKeyId: aws.String(x.p.KMSKeyID), Description: &desc,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
				Tags: x.evidenceTags(ec2types.Tag{Key: aws.String(TagSourceSnapshot), Value: aws.String(v.SnapshotID)})}}})
		return err
	}); err != nil {
		return x.explain(op, v.SnapshotID, err)
	}
	v.Copy = &SnapshotCopy{SnapshotID: aws.ToString(out.SnapshotId), KMSKeyID: x.p.KMSKeyID, State: string(ec2types.SnapshotStatePending)}
	return nil
}

// share gives an account createVolumePermission on a snapshot, unless it
// has it already.
func (x *snapshotTask) share(ctx context.Context, v *VolumeSnapshot, id, acct string) error {
	op := "ec2:DescribeSnapshotAttribute"
	var attr *ec2.DescribeSnapshotAttributeOutput
	if err := x.j.call(ctx, "share", op, id+" createVolumePermission", func(ctx context.Context) (err error) {
		attr, err = x.c.EC2.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: &id, Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
		return err
	}); err != nil {
		return x.explain(op, id, err)
	}
	if slices.ContainsFunc(attr.CreateVolumePermissions, func(p ec2types.CreateVolumePermission) bool { return aws.ToString(p.UserId) == acct }) {
		return nil
	}
	op = "ec2:ModifySnapshotAttribute"
	err := x.j.call(ctx, "share", op, id+" createVolumePermission add "+acct, func(ctx context.Context) error {
		_, err := x.c.EC2.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{SnapshotId: &id, Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission,
			CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: []ec2types.CreateVolumePermission{{UserId: aws.String(acct)}}}})
		return err
	})
	switch {
	case err == nil:
		return nil
	case isCode(err, "InvalidParameter") && strings.Contains(strings.ToLower(errorMessage(err)), "managed"):
		return sdk.Errorf(codes.FailedPrecondition, "snapshot %s of volume %s is encrypted with the account's default aws/ebs key, which AWS does not let you share: "+
			"rerun with --param kms_key_id=<a customer managed key that account %s may use> to share re-encrypted copies", id, v.VolumeID, acct)
	}
	return x.explain(op, id, err)
}
