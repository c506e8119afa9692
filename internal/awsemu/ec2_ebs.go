package awsemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// defaultEBSKey is the ARN of an account's AWS managed aws/ebs key in a
// region.
func defaultEBSKey(account, region string) string {
	d := sha256.Sum256([]byte("aws/ebs/" + account + "/" + region))
	d[6] = d[6]&0x0f | 0x40
	d[8] = d[8]&0x3f | 0x80
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%x-%x-%x-%x-%x", region, account, d[0:4], d[4:6], d[6:8], d[8:10], d[10:16])
}

// resolveKMSKey turns a key id, alias or ARN into a key ARN; the aws/ebs
// alias names the default key.
func resolveKMSKey(ref, account, region string) string {
	switch {
	case ref == "" || ref == "alias/aws/ebs" || strings.HasSuffix(ref, ":alias/aws/ebs"):
		return defaultEBSKey(account, region)
	case strings.HasPrefix(ref, "arn:"):
		return ref
	case strings.HasPrefix(ref, "alias/"):
		return "arn:aws:kms:" + region + ":" + account + ":" + ref
	default:
		return "arn:aws:kms:" + region + ":" + account + ":key/" + ref
	}
}

type ec2VolumeAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type ec2Volume struct {
	VolumeID         string                `xml:"volumeId"`
	Size             int32                 `xml:"size"`
	SnapshotID       string                `xml:"snapshotId"`
	AvailabilityZone string                `xml:"availabilityZone"`
	Status           string                `xml:"status"`
	CreateTime       string                `xml:"createTime"`
	Attachments      []ec2VolumeAttachment `xml:"attachmentSet>item"`
	VolumeType       string                `xml:"volumeType"`
	IOPS             int32                 `xml:"iops,omitempty"`
	Encrypted        bool                  `xml:"encrypted"`
	KMSKeyID         string                `xml:"kmsKeyId,omitempty"`
	MultiAttach      bool                  `xml:"multiAttachEnabled"`
	Tags             []ec2Tag              `xml:"tagSet>item"`
}

func renderVolume(v *volume) ec2Volume {
	out := ec2Volume{VolumeID: v.id, Size: v.size, SnapshotID: v.snapshotID, AvailabilityZone: v.az, Status: v.state,
		CreateTime: xmlTime(v.created), VolumeType: v.volumeType, IOPS: v.iops, Encrypted: v.encrypted, Tags: ec2Tags(v.tags)}
	if v.encrypted {
		out.KMSKeyID = v.kmsKeyID
	}
	if v.instanceID != "" {
		out.Attachments = []ec2VolumeAttachment{{v.id, v.instanceID, v.device, "attached", xmlTime(v.attachTime), v.deleteOnT}}
	}
	return out
}

func (e *Emulator) ec2DescribeVolumes(c *call) (any, error) {
	ids := c.form.strings("VolumeId")
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	var candidates []string
	if len(ids) > 0 {
		for _, id := range ids {
			if rg.volumes[id] == nil {
				return nil, errorf(http.StatusBadRequest, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
			}
		}
		candidates = slices.Compact(slices.Sorted(slices.Values(ids)))
	} else {
		for id := range rg.volumes {
			candidates = append(candidates, id)
		}
	}
	var matched []string
	for _, id := range candidates {
		v := rg.volumes[id]
		ok, ae := matchEC2Filters(filters, v.tags, func(name string) ([]string, bool) {
			switch name {
			case "volume-id":
				return []string{v.id}, true
			case "attachment.instance-id":
				return []string{v.instanceID}, true
			case "attachment.device":
				return []string{v.device}, true
			case "attachment.delete-on-termination":
				return []string{strconv.FormatBool(v.deleteOnT)}, true
			case "status":
				return []string{v.state}, true
			case "encrypted":
				return []string{strconv.FormatBool(v.encrypted)}, true
			case "availability-zone":
				return []string{v.az}, true
			case "size":
				return []string{strconv.Itoa(int(v.size))}, true
			case "volume-type":
				return []string{v.volumeType}, true
			case "snapshot-id":
				return []string{v.snapshotID}, true
			}
			return nil, false
		})
		if ae != nil {
			return nil, ae
		}
		if ok {
			matched = append(matched, id)
		}
	}
	page, next, ae := ec2Page(matched, c.form, 5, 500)
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		ec2Envelope
		Volumes   []ec2Volume `xml:"volumeSet>item"`
		NextToken string      `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		out.Volumes = append(out.Volumes, renderVolume(rg.volumes[id]))
	}
	return out, nil
}

type ec2SnapshotInfo struct {
	Description      string   `xml:"description"`
	Tags             []ec2Tag `xml:"tagSet>item"`
	Encrypted        bool     `xml:"encrypted"`
	VolumeID         string   `xml:"volumeId"`
	State            string   `xml:"state"`
	VolumeSize       int32    `xml:"volumeSize"`
	StartTime        string   `xml:"startTime"`
	Progress         string   `xml:"progress"`
	OwnerID          string   `xml:"ownerId"`
	SnapshotID       string   `xml:"snapshotId"`
	AvailabilityZone string   `xml:"availabilityZone,omitempty"`
}

// maxSnapshotDescription is EC2's limit on a snapshot description.
const maxSnapshotDescription = 255

func (e *Emulator) ec2CreateSnapshots(c *call) (any, error) {
	p := c.form
	desc := p.str("Description")
	if len(desc) > maxSnapshotDescription {
		return nil, ec2Invalid("Value for parameter description is too long; the maximum length is %d characters", maxSnapshotDescription)
	}
	extra, ae := tagSpecifications(p, "snapshot")
	if ae != nil {
		return nil, ae
	}
	copyTags := p.str("CopyTagsFromSource")
	if copyTags != "" && copyTags != "volume" {
		return nil, ec2Invalid("Value (%s) for parameter CopyTagsFromSource is invalid. Valid values: volume", copyTags)
	}
	excludeBoot := p.boolean("InstanceSpecification.ExcludeBootVolume")
	excluded := p.strings("InstanceSpecification.ExcludeDataVolumeId")

	rg := c.ec2Region()
	in, ae := rg.instanceFor(p.str("InstanceSpecification.InstanceId"))
	if ae != nil {
		c.acct.mu.Unlock()
		return nil, ae
	}
	var made []*snapshot
	for _, d := range in.devices {
		v := rg.volumes[d.volumeID]
		if v == nil || (excludeBoot && d.deviceName == in.rootDevice) || slices.Contains(excluded, v.id) {
			continue
		}
		t := tags{}
		if copyTags == "volume" {
			for k, val := range v.tags {
				t[k] = val
			}
		}
		for k, val := range extra {
			t[k] = val
		}
		s := &snapshot{id: e.ids.resource("snap"), volumeID: v.id, volumeSize: v.size, description: desc, started: c.now,
			encrypted: v.encrypted, kmsKeyID: v.kmsKeyID, owner: c.who.account, tags: t}
		rg.snapshots[s.id] = s
		made = append(made, s)
	}
	c.acct.mu.Unlock()
	if len(made) == 0 {
		return nil, ec2Invalid("The instance '%s' has no volumes to snapshot with the given exclusions.", in.id)
	}
	e.snapMu.Lock()
	for _, s := range made {
		e.snapshotIndex[s.id] = snapshotLocation{c.who.account, c.region}
	}
	e.snapMu.Unlock()

	out := &struct {
		ec2Envelope
		Snapshots []ec2SnapshotInfo `xml:"snapshotSet>item"`
	}{}
	var ids []string
	for _, s := range made {
		// A new snapshot answers as pending; DescribeSnapshots then shows it
		// completed, since the emulator copies no data.
		out.Snapshots = append(out.Snapshots, ec2SnapshotInfo{Description: s.description, Tags: ec2Tags(s.tags), Encrypted: s.encrypted,
			VolumeID: s.volumeID, State: "pending", VolumeSize: s.volumeSize, StartTime: xmlTime(s.started), OwnerID: s.owner, SnapshotID: s.id})
		ids = append(ids, s.id)
		c.trail.resources = append(c.trail.resources, trailResource{"AWS::EC2::Snapshot", s.id})
	}
	c.trail.response = map[string]any{"snapshotSet": ids}
	return out, nil
}

type ec2Snapshot struct {
	SnapshotID  string   `xml:"snapshotId"`
	VolumeID    string   `xml:"volumeId"`
	Status      string   `xml:"status"`
	StartTime   string   `xml:"startTime"`
	Progress    string   `xml:"progress"`
	OwnerID     string   `xml:"ownerId"`
	VolumeSize  int32    `xml:"volumeSize"`
	Description string   `xml:"description"`
	Encrypted   bool     `xml:"encrypted"`
	KMSKeyID    string   `xml:"kmsKeyId,omitempty"`
	StorageTier string   `xml:"storageTier"`
	Tags        []ec2Tag `xml:"tagSet>item"`
}

func renderSnapshot(s *snapshot) ec2Snapshot {
	out := ec2Snapshot{SnapshotID: s.id, VolumeID: s.volumeID, Status: "completed", StartTime: xmlTime(s.started), Progress: "100%",
		OwnerID: s.owner, VolumeSize: s.volumeSize, Description: s.description, Encrypted: s.encrypted, StorageTier: "standard", Tags: ec2Tags(s.tags)}
	if s.encrypted {
		out.KMSKeyID = s.kmsKeyID
	}
	return out
}

// sharedSnapshot reads a snapshot another account owns. It locks that
// account; the caller holds no account lock.
func (e *Emulator) sharedSnapshot(loc snapshotLocation, id string) *snapshot {
	a := e.account(loc.account)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rg := a.regions[loc.region]
	if rg == nil || rg.snapshots[id] == nil {
		return nil
	}
	cp := *rg.snapshots[id]
	cp.tags = tags{} // another account's tags are not visible
	cp.sharedWith = slices.Clone(cp.sharedWith)
	return &cp
}

func (e *Emulator) ec2DescribeSnapshots(c *call) (any, error) {
	p := c.form
	ids := p.strings("SnapshotId")
	owners := p.strings("Owner")
	restorable := p.strings("RestorableBy")
	filters := parseEC2Filters(p)
	me := c.who.account
	for i, o := range owners {
		if o == "self" {
			owners[i] = me
		}
	}
	for i, r := range restorable {
		if r == "self" {
			restorable[i] = me
		}
	}

	rg := c.ec2Region()
	found := map[string]*snapshot{}
	for id, s := range rg.snapshots {
		cp := *s
		cp.tags = s.tags.clone()
		found[id] = &cp
	}
	c.acct.mu.Unlock()

	// Snapshots other accounts shared with this one, or made public.
	e.snapMu.RLock()
	var shared []string
	for id := range e.sharedWith[me] {
		shared = append(shared, id)
	}
	for id := range e.sharedWith["all"] {
		shared = append(shared, id)
	}
	locs := make(map[string]snapshotLocation, len(shared))
	for _, id := range shared {
		locs[id] = e.snapshotIndex[id]
	}
	e.snapMu.RUnlock()
	for id, loc := range locs {
		if loc.region != c.region || loc.account == me {
			continue
		}
		if s := e.sharedSnapshot(loc, id); s != nil {
			found[id] = s
		}
	}

	for _, id := range ids {
		if found[id] == nil {
			if !validEC2ID(id, "snap") {
				return nil, errorf(http.StatusBadRequest, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id)
			}
			return nil, errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
	}
	var matched []string
	for id, s := range found {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if len(owners) > 0 && !slices.Contains(owners, s.owner) {
			continue
		}
		if len(restorable) > 0 && !slices.ContainsFunc(restorable, func(acct string) bool {
			return acct == s.owner || slices.Contains(s.sharedWith, acct) || slices.Contains(s.sharedWith, "all")
		}) {
			continue
		}
		ok, ae := matchEC2Filters(filters, s.tags, func(name string) ([]string, bool) {
			switch name {
			case "snapshot-id":
				return []string{s.id}, true
			case "volume-id":
				return []string{s.volumeID}, true
			case "status":
				return []string{"completed"}, true
			case "owner-id":
				return []string{s.owner}, true
			case "description":
				return []string{s.description}, true
			case "encrypted":
				return []string{strconv.FormatBool(s.encrypted)}, true
			case "volume-size":
				return []string{strconv.Itoa(int(s.volumeSize))}, true
			}
			return nil, false
		})
		if ae != nil {
			return nil, ae
		}
		if ok {
			matched = append(matched, id)
		}
	}
	page, next, ae := ec2Page(matched, p, 5, 1000)
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		ec2Envelope
		Snapshots []ec2Snapshot `xml:"snapshotSet>item"`
		NextToken string        `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		out.Snapshots = append(out.Snapshots, renderSnapshot(found[id]))
	}
	return out, nil
}

func (e *Emulator) ec2CopySnapshot(c *call) (any, error) {
	p := c.form
	srcID, srcRegion := p.str("SourceSnapshotId"), p.str("SourceRegion")
	if srcID == "" {
		return nil, ec2Missing("SourceSnapshotId")
	}
	if srcRegion == "" {
		return nil, ec2Missing("SourceRegion")
	}
	encrypt := p.boolean("Encrypted")
	keyRef := p.str("KmsKeyId")
	if keyRef != "" && !encrypt {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	t, ae := tagSpecifications(p, "snapshot")
	if ae != nil {
		return nil, ae
	}
	me := c.who.account

	e.snapMu.RLock()
	loc, ok := e.snapshotIndex[srcID]
	visible := ok && (loc.account == me || e.sharedWith[me][srcID] || e.sharedWith["all"][srcID])
	e.snapMu.RUnlock()
	if !visible || loc.region != srcRegion {
		return nil, errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", srcID)
	}
	var src *snapshot
	if loc.account == me {
		c.acct.mu.Lock()
		if rg := c.acct.regions[loc.region]; rg != nil && rg.snapshots[srcID] != nil {
			cp := *rg.snapshots[srcID]
			src = &cp
		}
		c.acct.mu.Unlock()
	} else {
		src = e.sharedSnapshot(loc, srcID)
	}
	if src == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", srcID)
	}

	cp := &snapshot{id: e.ids.resource("snap"), volumeID: "vol-ffffffff", volumeSize: src.volumeSize, description: p.str("Description"),
		started: c.now, owner: me, tags: t, sourceID: src.id}
	if cp.description == "" {
		cp.description = fmt.Sprintf("[Copied %s from %s]", src.id, srcRegion)
	}
	switch {
	case keyRef != "":
		cp.encrypted, cp.kmsKeyID = true, resolveKMSKey(keyRef, me, c.region)
	case src.encrypted && src.owner == me && srcRegion == c.region:
		cp.encrypted, cp.kmsKeyID = true, src.kmsKeyID
	case src.encrypted || encrypt:
		cp.encrypted, cp.kmsKeyID = true, defaultEBSKey(me, c.region)
	}
	c.acct.mu.Lock()
	c.acct.region(c.region).snapshots[cp.id] = cp
	c.acct.mu.Unlock()
	e.snapMu.Lock()
	e.snapshotIndex[cp.id] = snapshotLocation{me, c.region}
	e.snapMu.Unlock()
	c.trail.resources = append(c.trail.resources, trailResource{"AWS::EC2::Snapshot", cp.id})
	c.trail.response = map[string]any{"snapshotId": cp.id}
	return &struct {
		ec2Envelope
		SnapshotID string   `xml:"snapshotId"`
		Tags       []ec2Tag `xml:"tagSet>item"`
	}{SnapshotID: cp.id, Tags: ec2Tags(cp.tags)}, nil
}

func (e *Emulator) ec2ModifySnapshotAttribute(c *call) (any, error) {
	p := c.form
	id := p.str("SnapshotId")
	if id == "" {
		return nil, ec2Missing("SnapshotId")
	}
	if attr := p.str("Attribute"); attr != "" && attr != "createVolumePermission" {
		return nil, ec2Invalid("Value (%s) for parameter attribute is invalid. Only createVolumePermission can be modified.", attr)
	}
	var add, remove []string
	switch op := p.str("OperationType"); op {
	case "add":
		add = append(p.strings("UserId"), p.strings("UserGroup")...)
	case "remove":
		remove = append(p.strings("UserId"), p.strings("UserGroup")...)
	case "":
	default:
		return nil, ec2Invalid("Value (%s) for parameter operationType is invalid. Valid values: add, remove", op)
	}
	for _, perm := range p.list("CreateVolumePermission.Add") {
		add = append(add, perm.str("UserId")+perm.str("Group"))
	}
	for _, perm := range p.list("CreateVolumePermission.Remove") {
		remove = append(remove, perm.str("UserId")+perm.str("Group"))
	}
	if len(add) > 0 && len(remove) > 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterCombination", "You cannot both add and remove permissions in one request.")
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil, ec2Missing("CreateVolumePermission")
	}
	for _, who := range slices.Concat(add, remove) {
		if who != "all" && !isAccountID(who) {
			return nil, ec2Invalid("Value (%s) for parameter userId is invalid. Expecting a 12-digit account number.", who)
		}
	}

	rg := c.ec2Region()
	s := rg.snapshots[id]
	if s == nil {
		c.acct.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	if len(add) > 0 && s.encrypted {
		if slices.Contains(add, "all") {
			c.acct.mu.Unlock()
			return nil, errorf(http.StatusBadRequest, "InvalidParameter", "Encrypted snapshots with EBS default key cannot be shared publicly.")
		}
		// AWS refuses to share what only the account's own managed key can
		// decrypt.
		if s.kmsKeyID == defaultEBSKey(c.who.account, c.region) {
			c.acct.mu.Unlock()
			return nil, errorf(http.StatusBadRequest, "InvalidParameter", "Snapshots encrypted with the AWS Managed CMK can't be shared. Specify another snapshot.")
		}
	}
	for _, who := range add {
		if !slices.Contains(s.sharedWith, who) {
			s.sharedWith = append(s.sharedWith, who)
		}
	}
	s.sharedWith = slices.DeleteFunc(s.sharedWith, func(w string) bool { return slices.Contains(remove, w) })
	slices.Sort(s.sharedWith)
	c.acct.mu.Unlock()

	e.snapMu.Lock()
	for _, who := range add {
		if e.sharedWith[who] == nil {
			e.sharedWith[who] = map[string]bool{}
		}
		e.sharedWith[who][id] = true
	}
	for _, who := range remove {
		delete(e.sharedWith[who], id)
	}
	e.snapMu.Unlock()
	return &ec2Return{Return: true}, nil
}

type ec2VolumePermission struct {
	UserID string `xml:"userId,omitempty"`
	Group  string `xml:"group,omitempty"`
}

func (e *Emulator) ec2DescribeSnapshotAttribute(c *call) (any, error) {
	id := c.form.str("SnapshotId")
	if attr := c.form.str("Attribute"); attr != "createVolumePermission" {
		return nil, ec2Invalid("Value (%s) for parameter attribute is invalid. Valid values: createVolumePermission", attr)
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	s := rg.snapshots[id]
	if s == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	out := &struct {
		ec2Envelope
		SnapshotID  string                `xml:"snapshotId"`
		Permissions []ec2VolumePermission `xml:"createVolumePermission>item"`
	}{SnapshotID: id}
	for _, w := range s.sharedWith {
		if w == "all" {
			out.Permissions = append(out.Permissions, ec2VolumePermission{Group: "all"})
		} else {
			out.Permissions = append(out.Permissions, ec2VolumePermission{UserID: w})
		}
	}
	return out, nil
}

func (e *Emulator) ec2GetConsoleOutput(c *call) (any, error) {
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	in, ae := rg.instanceFor(c.form.str("InstanceId"))
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		ec2Envelope
		InstanceID string `xml:"instanceId"`
		Timestamp  string `xml:"timestamp"`
		Output     string `xml:"output"`
	}{InstanceID: in.id, Timestamp: xmlTime(c.now)}
	text := in.consoleOutput
	if c.form.boolean("Latest") {
		// Only the most recent 64 KB are kept for the latest output.
		if len(text) > 64<<10 {
			text = text[len(text)-64<<10:]
		}
	}
	out.Output = base64.StdEncoding.EncodeToString([]byte(text))
	return out, nil
}

func (e *Emulator) ec2GetConsoleScreenshot(c *call) (any, error) {
	rg := c.ec2Region()
	in, ae := rg.instanceFor(c.form.str("InstanceId"))
	if ae != nil {
		c.acct.mu.Unlock()
		return nil, ae
	}
	if in.state != "running" {
		c.acct.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "IncorrectInstanceState", "The instance '%s' is not in the 'running' state.", in.id)
	}
	text, id := in.consoleOutput, in.id
	c.acct.mu.Unlock()
	img, err := consoleScreenshot(id, text)
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Envelope
		InstanceID string `xml:"instanceId"`
		ImageData  string `xml:"imageData"`
	}{InstanceID: id, ImageData: base64.StdEncoding.EncodeToString(img)}, nil
}

// consoleScreenshot draws a small JPEG of a text console: one bar per line
// of console output, as long as the line, on a dark screen. It is a real
// image that decoders accept, not a picture of real text.
func consoleScreenshot(instanceID, text string) ([]byte, error) {
	const w, h, lineH = 320, 200, 8
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	bg := color.RGBA{12, 12, 16, 255}
	for y := range h {
		for x := range w {
			img.Set(x, y, bg)
		}
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > h/lineH {
		lines = lines[len(lines)-h/lineH:]
	}
	seed := sha256.Sum256([]byte(instanceID))
	fg := color.RGBA{170 + seed[0]%60, 170 + seed[1]%60, 170 + seed[2]%60, 255}
	for i, line := range lines {
		n := min(len(line)*2, w-8)
		for y := i*lineH + 2; y < i*lineH+lineH-2; y++ {
			for x := 4; x < 4+n; x++ {
				img.Set(x, y, fg)
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 75}); err != nil {
		return nil, fmt.Errorf("encode console screenshot: %w", err)
	}
	return buf.Bytes(), nil
}
