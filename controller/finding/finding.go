// Package finding turns AWS security findings delivered by EventBridge
// (GuardDuty findings and Security Hub imported findings in the AWS
// Security Finding Format) into one normalised Finding, and matches
// findings against rules that start playbooks.
//
// Events are hostile input: they are size-limited, decoded strictly
// (duplicate keys, wrong types and unknown event kinds are refused), and
// every refusal names the JSON path of the bad value.
package finding

import (
	"encoding/json"
	"time"
)

// MaxEventSize is the largest event accepted, in bytes.
const MaxEventSize = 256 << 10

// Source is the service a finding came from.
type Source string

// The finding sources.
const (
	SourceGuardDuty   Source = "guardduty"
	SourceSecurityHub Source = "securityhub"
)

// ResourceKind is the kind of AWS resource a finding is about.
type ResourceKind string

// The resource kinds playbooks act on; other resources are ResourceOther.
const (
	ResourceInstance  ResourceKind = "instance"
	ResourceAccessKey ResourceKind = "access_key"
	ResourceS3Bucket  ResourceKind = "s3_bucket"
	ResourceLambda    ResourceKind = "lambda_function"
	ResourceIAMRole   ResourceKind = "iam_role"
	ResourceIAMUser   ResourceKind = "iam_user"
	ResourceOther     ResourceKind = "other"
)

// Severity labels, on GuardDuty's scale: low 1.0–3.9, medium 4.0–6.9,
// high 7.0–8.9, critical 9.0–10.0; below 1.0 is informational.
const (
	LabelInformational = "INFORMATIONAL"
	LabelLow           = "LOW"
	LabelMedium        = "MEDIUM"
	LabelHigh          = "HIGH"
	LabelCritical      = "CRITICAL"
)

// Finding is a security finding in Firebreak's normalised form.
type Finding struct {
	// Source is the service that produced the finding.
	Source Source `json:"source"`
	// ID is the finding's id in its source.
	ID string `json:"id"`
	// Type is the finding type, e.g. "UnauthorizedAccess:EC2/SSHBruteForce";
	// for Security Hub findings, the first of Types.
	Type string `json:"type"`
	// Types lists every type a Security Hub finding carries; for GuardDuty,
	// just Type.
	Types []string `json:"types,omitempty"`
	// Title is the finding's one-line summary.
	Title string `json:"title"`
	// Description is the finding's longer explanation.
	Description string `json:"description,omitempty"`
	// Severity is 0–10 on GuardDuty's scale; Security Hub's normalised
	// 0–100 severity is divided by ten.
	Severity float64 `json:"severity"`
	// SeverityLabel is INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL.
	SeverityLabel string `json:"severity_label"`
	// Account is the AWS account the finding is in.
	Account string `json:"account"`
	// Region is the AWS region the finding is in.
	Region string `json:"region"`
	// FirstSeen is when the activity was first observed.
	FirstSeen time.Time `json:"first_seen"`
	// UpdatedAt is when the source last updated the finding; with ID it
	// forms the dedup key.
	UpdatedAt time.Time `json:"updated_at"`
	// ResourceKind is the kind of the affected resource.
	ResourceKind ResourceKind `json:"resource_kind"`
	// ResourceType is the source's own name for it, e.g. "Instance" or
	// "AwsEc2Instance".
	ResourceType string `json:"resource_type,omitempty"`
	// InstanceID is the affected EC2 instance, if any.
	InstanceID string `json:"instance_id,omitempty"`
	// AccessKeyID is the affected or used access key, if any.
	AccessKeyID string `json:"access_key_id,omitempty"`
	// UserName is the IAM user involved, if any.
	UserName string `json:"user_name,omitempty"`
	// RoleName is the IAM role involved (for assumed-role sessions), if any.
	RoleName string `json:"role_name,omitempty"`
	// Bucket is the affected S3 bucket, if any.
	Bucket string `json:"bucket,omitempty"`
	// FunctionName is the affected Lambda function, if any.
	FunctionName string `json:"function_name,omitempty"`
	// Tags are the affected resource's tags.
	Tags map[string]string `json:"tags,omitempty"`
	// EventID is the id of the EventBridge event that carried the finding.
	EventID string `json:"event_id,omitempty"`
	// Raw is the finding's own JSON: the GuardDuty detail or the ASFF entry.
	Raw json.RawMessage `json:"raw,omitempty"`
}

// DedupKey identifies one version of a finding: a finding seen again with
// the same update time is a duplicate; an update is new.
func (f *Finding) DedupKey() string {
	return f.ID + "|" + f.UpdatedAt.UTC().Format(time.RFC3339Nano)
}

// Map returns the finding as playbook expressions see it (finding.<key>):
// every field under its JSON name, times as RFC 3339 text, tags as a map,
// and raw as the decoded source JSON. Absent fields are empty strings, so
// expressions need no has() guards for them.
func (f *Finding) Map() map[string]any {
	tags := make(map[string]any, len(f.Tags))
	for k, v := range f.Tags {
		tags[k] = v
	}
	types := make([]any, len(f.Types))
	for i, t := range f.Types {
		types[i] = t
	}
	m := map[string]any{
		"source":         string(f.Source),
		"id":             f.ID,
		"type":           f.Type,
		"types":          types,
		"title":          f.Title,
		"description":    f.Description,
		"severity":       f.Severity,
		"severity_label": f.SeverityLabel,
		"account":        f.Account,
		"region":         f.Region,
		"first_seen":     formatTime(f.FirstSeen),
		"updated_at":     formatTime(f.UpdatedAt),
		"resource_kind":  string(f.ResourceKind),
		"resource_type":  f.ResourceType,
		"instance_id":    f.InstanceID,
		"access_key_id":  f.AccessKeyID,
		"user_name":      f.UserName,
		"role_name":      f.RoleName,
		"bucket":         f.Bucket,
		"function_name":  f.FunctionName,
		"tags":           tags,
		"event_id":       f.EventID,
	}
	var raw any
	if len(f.Raw) > 0 && json.Unmarshal(f.Raw, &raw) == nil {
		m["raw"] = raw
	} else {
		m["raw"] = map[string]any{}
	}
	return m
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// labelFor maps a 0–10 severity to its label.
func labelFor(sev float64) string {
	switch {
	case sev >= 9:
		return LabelCritical
	case sev >= 7:
		return LabelHigh
	case sev >= 4:
		return LabelMedium
	case sev >= 1:
		return LabelLow
	}
	return LabelInformational
}

// severityOfLabel maps a label to the bottom of its band, for findings
// that carry only a label.
var severityOfLabel = map[string]float64{
	LabelInformational: 0, LabelLow: 1, LabelMedium: 4, LabelHigh: 7, LabelCritical: 9,
}
