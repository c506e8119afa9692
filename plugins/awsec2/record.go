package awsec2

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Tags the isolation writes on the instance.
const (
	// TagRecord holds the rollback record; records longer than one tag
	// value continue in TagRecord:2, TagRecord:3, …
	TagRecord = "firebreak:pre-isolation"
	// TagCase, TagRun and TagIsolatedAt say who isolated the instance and
	// when; TagIsolatedAt is written last, so it marks a finished isolation.
	TagCase       = "firebreak:case"
	TagRun        = "firebreak:run"
	TagIsolatedAt = "firebreak:isolated-at"
)

// RecordVersion is the version of the Record format.
const RecordVersion = 1

// maxTagValue is EC2's limit on a tag value's length.
const maxTagValue = 256

// maxRecordTags bounds the tags a record may take, well inside EC2's 50
// tags per resource.
const maxRecordTags = 12

// recordPrefix starts the first record tag's value: the format and the
// number of tags, as in "fb1.3.".
const recordPrefix = "fb1."

// Record is the rollback record: everything aws-ec2-isolate changes, as it
// was before. aws-ec2-unisolate restores exactly this.
type Record struct {
	// Version is RecordVersion.
	Version int `json:"version"`
	// InstanceID, Account and Region name the instance.
	InstanceID string `json:"instance_id"`
	Account    string `json:"account"`
	Region     string `json:"region"`
	// RecordedAt is when the record was taken.
	RecordedAt time.Time `json:"recorded_at"`
	// RunID and CaseID are the isolating run and its case.
	RunID  string `json:"run_id,omitempty"`
	CaseID string `json:"case_id,omitempty"`
	// Interfaces are the instance's ENIs and their security groups.
	Interfaces []InterfaceRecord `json:"interfaces"`
	// AutoScaling is the instance's Auto Scaling group membership.
	AutoScaling *AutoScalingRecord `json:"auto_scaling,omitempty"`
	// TargetGroups are the instance's ELBv2 registrations.
	TargetGroups []TargetRecord `json:"target_groups,omitempty"`
	// DisableAPITermination is the termination protection.
	DisableAPITermination bool `json:"disable_api_termination"`
	// ShutdownBehavior is stop or terminate.
	ShutdownBehavior string `json:"shutdown_behavior"`
	// Volumes are the EBS volumes and their DeleteOnTermination flags.
	Volumes []VolumeRecord `json:"volumes,omitempty"`
	// InstanceProfile is the associated instance profile, if any.
	InstanceProfile *ProfileRecord `json:"instance_profile,omitempty"`
	// Tags are the earlier values of the tags the isolation writes
	// (firebreak:case, firebreak:run, firebreak:isolated-at); a key that is
	// absent was not set.
	Tags map[string]string `json:"tags,omitempty"`
}

// InterfaceRecord is one ENI's security groups.
type InterfaceRecord struct {
	// ID is the ENI, eni-….
	ID string `json:"id"`
	// VPCID is its VPC.
	VPCID string `json:"vpc_id"`
	// Groups are its security group ids, in order.
	Groups []string `json:"groups"`
}

// AutoScalingRecord is the instance's Auto Scaling group membership.
type AutoScalingRecord struct {
	// Group is the group's name.
	Group string `json:"group"`
	// Lifecycle is the instance's lifecycle state in the group (InService,
	// Standby, …).
	Lifecycle string `json:"lifecycle"`
	// SuspendedProcesses are the group's processes already suspended.
	SuspendedProcesses []string `json:"suspended_processes,omitempty"`
	// MinSize, MaxSize and DesiredCapacity are the group's sizes.
	MinSize         int32 `json:"min_size"`
	MaxSize         int32 `json:"max_size"`
	DesiredCapacity int32 `json:"desired_capacity"`
	// TargetGroups are the target groups attached to the group.
	TargetGroups []string `json:"target_groups,omitempty"`
}

// TargetRecord is one registration of the instance with a target group.
type TargetRecord struct {
	// TargetGroupARN is the target group.
	TargetGroupARN string `json:"target_group_arn"`
	// Name is its name.
	Name string `json:"name"`
	// Port is the registered port.
	Port int32 `json:"port"`
	// AvailabilityZone is the registration's zone, when one was given.
	AvailabilityZone string `json:"availability_zone,omitempty"`
}

// VolumeRecord is one attached EBS volume.
type VolumeRecord struct {
	// Device is the device name, e.g. /dev/xvda.
	Device string `json:"device"`
	// VolumeID is the volume.
	VolumeID string `json:"volume_id"`
	// DeleteOnTermination is the volume's flag.
	DeleteOnTermination bool `json:"delete_on_termination"`
}

// ProfileRecord is an instance profile association.
type ProfileRecord struct {
	// ARN is the instance profile's ARN.
	ARN string `json:"arn"`
	// AssociationID is the association, iip-assoc-….
	AssociationID string `json:"association_id"`
}

// name is the instance profile's name, the last part of its ARN.
func (p *ProfileRecord) name() string {
	return p.ARN[strings.LastIndex(p.ARN, "/")+1:]
}

// recordTagKey is the key of the i-th (1-based) record tag.
func recordTagKey(i int) string {
	if i == 1 {
		return TagRecord
	}
	return TagRecord + ":" + strconv.Itoa(i)
}

// encodeRecordTags renders a record as instance tags: JSON, gzip, base64,
// cut into 256-character values. The first value starts with "fb1.N." where
// N is the number of tags.
func encodeRecordTags(r *Record) ([]ec2types.Tag, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the rollback record: %w", err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := base64.StdEncoding.EncodeToString(buf.Bytes())
	for n := 1; n <= maxRecordTags; n++ {
		prefix := recordPrefix + strconv.Itoa(n) + "."
		if len(prefix)+len(data) > n*maxTagValue {
			continue
		}
		tags := make([]ec2types.Tag, 0, n)
		rest := prefix + data
		for i := 1; i <= n; i++ {
			cut := min(len(rest), maxTagValue)
			key, value := recordTagKey(i), rest[:cut]
			tags = append(tags, ec2types.Tag{Key: &key, Value: &value})
			rest = rest[cut:]
		}
		return tags, nil
	}
	return nil, fmt.Errorf("the rollback record is %d bytes compressed, more than %d tags can hold", len(data), maxRecordTags)
}

// errNoRecord means the instance carries no record tag.
var errNoRecord = errors.New("no " + TagRecord + " tag")

// decodeRecordTags reads a record back from an instance's tags.
func decodeRecordTags(tags []ec2types.Tag) (*Record, error) {
	first, ok := tagValue(tags, TagRecord)
	if !ok {
		return nil, errNoRecord
	}
	rest, ok := strings.CutPrefix(first, recordPrefix)
	nText, data, found := strings.Cut(rest, ".")
	n, err := strconv.Atoi(nText)
	if !ok || !found || err != nil || n < 1 || n > maxRecordTags {
		return nil, fmt.Errorf("tag %s does not start with %sN.", TagRecord, recordPrefix)
	}
	var sb strings.Builder
	sb.WriteString(data)
	for i := 2; i <= n; i++ {
		part, ok := tagValue(tags, recordTagKey(i))
		if !ok {
			return nil, fmt.Errorf("tag %s is missing: the record is cut short", recordTagKey(i))
		}
		sb.WriteString(part)
	}
	raw, err := base64.StdEncoding.DecodeString(sb.String())
	if err != nil {
		return nil, fmt.Errorf("the record tags are not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the record tags are not gzip: %w", err)
	}
	js, err := io.ReadAll(io.LimitReader(zr, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("the record tags are corrupt: %w", err)
	}
	return parseRecord(js)
}

// parseRecord decodes a record's JSON, refusing unknown fields.
func parseRecord(js []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("the rollback record is not valid JSON of a record: %w", err)
	}
	if r.Version != RecordVersion {
		return nil, fmt.Errorf("the rollback record has version %d; this plugin reads version %d", r.Version, RecordVersion)
	}
	return &r, nil
}

// recordTagKeys lists the record tag keys present on an instance.
func recordTagKeys(tags []ec2types.Tag) []string {
	var keys []string
	for _, t := range tags {
		if k := aws.ToString(t.Key); k == TagRecord || strings.HasPrefix(k, TagRecord+":") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
