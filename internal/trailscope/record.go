// Package trailscope reads CloudTrail records and tells what a credential
// did with them: it follows the sessions the credential minted
// (GetSessionToken, AssumeRole, GetFederationToken), transitively and
// across accounts, and classifies each event as persistence, defence
// evasion, exposure, data access or reconnaissance, naming the artifact a
// write left behind. It is pure: records in, a scope out. The
// aws-credential-scope action feeds it from LookupEvents or from the
// organisation trail's log files; the controller's eradication planner
// reads the artifacts it names.
package trailscope

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxRecordBytes bounds one CloudTrail record; AWS caps an event at 256 KB
// in CloudTrail Lake and delivers far smaller ones in practice.
const MaxRecordBytes = 1 << 20

// MaxLogFileBytes bounds a decompressed log file. CloudTrail's files are
// a few megabytes; the bound keeps a crafted file (a gzip bomb in a bucket
// an attacker could write to) from exhausting a worker that reads many at
// once.
const MaxLogFileBytes = 64 << 20

// Identity is a record's userIdentity element.
type Identity struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId"`
	ARN         string `json:"arn"`
	AccountID   string `json:"accountId"`
	AccessKeyID string `json:"accessKeyId"`
	UserName    string `json:"userName"`
	InvokedBy   string `json:"invokedBy"`
	// SessionContext is present for temporary credentials.
	SessionContext *struct {
		SessionIssuer struct {
			Type        string `json:"type"`
			PrincipalID string `json:"principalId"`
			ARN         string `json:"arn"`
			AccountID   string `json:"accountId"`
			UserName    string `json:"userName"`
		} `json:"sessionIssuer"`
	} `json:"sessionContext"`
}

// Resource is one entry of a record's resources list.
type Resource struct {
	ARN       string `json:"ARN"`
	AccountID string `json:"accountId"`
	Type      string `json:"type"`
}

// Record is one CloudTrail event as a trail's log file or LookupEvents'
// CloudTrailEvent carries it. Raw is the record exactly as read, for
// evidence.
type Record struct {
	EventVersion       string          `json:"eventVersion"`
	UserIdentity       Identity        `json:"userIdentity"`
	EventTime          time.Time       `json:"eventTime"`
	EventSource        string          `json:"eventSource"`
	EventName          string          `json:"eventName"`
	AWSRegion          string          `json:"awsRegion"`
	SourceIPAddress    string          `json:"sourceIPAddress"`
	UserAgent          string          `json:"userAgent"`
	ErrorCode          string          `json:"errorCode"`
	ErrorMessage       string          `json:"errorMessage"`
	RequestParameters  json.RawMessage `json:"requestParameters"`
	ResponseElements   json.RawMessage `json:"responseElements"`
	EventID            string          `json:"eventID"`
	SharedEventID      string          `json:"sharedEventID"`
	ReadOnly           *bool           `json:"readOnly"`
	Resources          []Resource      `json:"resources"`
	EventType          string          `json:"eventType"`
	ManagementEvent    *bool           `json:"managementEvent"`
	EventCategory      string          `json:"eventCategory"`
	RecipientAccountID string          `json:"recipientAccountId"`

	Raw json.RawMessage `json:"-"`
}

// ParseRecord reads one CloudTrail record. It refuses a record without the
// fields every CloudTrail event has (eventTime, eventSource, eventName,
// eventID), so a malformed file cannot slip partial events into a scope.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("trailscope: record of %d bytes is over the %d-byte limit", len(b), MaxRecordBytes)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("trailscope: record is not a CloudTrail event: %w", err)
	}
	switch {
	case r.EventTime.IsZero():
		return nil, errors.New("trailscope: record has no eventTime")
	case r.EventSource == "" || r.EventName == "":
		return nil, errors.New("trailscope: record has no eventSource or eventName")
	case r.EventID == "":
		return nil, errors.New("trailscope: record has no eventID")
	}
	r.EventTime = r.EventTime.UTC()
	r.Raw = append(json.RawMessage(nil), b...)
	return &r, nil
}

// ParseLogFile reads a trail log file, gzipped or not:
// {"Records":[…]}. Any bad record fails the whole file, naming its index.
func ParseLogFile(r io.Reader) ([]*Record, error) {
	br := &peekReader{r: r}
	head, err := br.peek(2)
	if err != nil {
		return nil, fmt.Errorf("trailscope: read log file: %w", err)
	}
	var src io.Reader = br
	if bytes.Equal(head, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("trailscope: log file is not valid gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	body, err := io.ReadAll(io.LimitReader(src, MaxLogFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("trailscope: read log file: %w", err)
	}
	if len(body) > MaxLogFileBytes {
		return nil, fmt.Errorf("trailscope: log file is over %d bytes decompressed", MaxLogFileBytes)
	}
	var file struct {
		Records []json.RawMessage `json:"Records"`
	}
	if err := json.Unmarshal(body, &file); err != nil {
		return nil, fmt.Errorf("trailscope: log file is not {\"Records\":[…]}: %w", err)
	}
	if file.Records == nil {
		return nil, errors.New("trailscope: log file has no Records array")
	}
	out := make([]*Record, 0, len(file.Records))
	for i, raw := range file.Records {
		rec, err := ParseRecord(raw)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// peekReader lets ParseLogFile look at the gzip magic without losing it.
type peekReader struct {
	r   io.Reader
	buf []byte
}

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.buf) < n {
		b := make([]byte, n-len(p.buf))
		k, err := p.r.Read(b)
		p.buf = append(p.buf, b[:k]...)
		if err == io.EOF {
			return p.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return p.buf[:n], nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// IsReadOnly reports whether the event only read: its readOnly field, or,
// when the record lacks one, a List/Describe/Get/Head name.
func (r *Record) IsReadOnly() bool {
	if r.ReadOnly != nil {
		return *r.ReadOnly
	}
	for _, p := range []string{"List", "Describe", "Get", "Head", "Lookup", "BatchGet"} {
		if strings.HasPrefix(r.EventName, p) {
			return true
		}
	}
	return false
}

// Failed reports whether AWS refused or failed the call.
func (r *Record) Failed() bool { return r.ErrorCode != "" }

// Account is the account the event happened in.
func (r *Record) Account() string {
	if r.RecipientAccountID != "" {
		return r.RecipientAccountID
	}
	return r.UserIdentity.AccountID
}

// params decodes requestParameters; a record without them gives an empty map.
func (r *Record) params() map[string]any { return object(r.RequestParameters) }

// response decodes responseElements.
func (r *Record) response() map[string]any { return object(r.ResponseElements) }

func object(raw json.RawMessage) map[string]any {
	var m map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &m) == nil && m != nil {
		return m
	}
	return map[string]any{}
}

// str reads a string at a path of object keys.
func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = obj[k]
	}
	switch v := cur.(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(v)
	case []any:
		// S3 writes some parameters as one-element lists ("x-amz-acl": ["public-read"]).
		if len(v) == 1 {
			if s, ok := v[0].(string); ok {
				return s
			}
		}
	}
	return ""
}

// items reads EC2's {"items":[…]} lists, and plain lists.
func items(v any) []map[string]any {
	if obj, ok := v.(map[string]any); ok {
		v = obj["items"]
	}
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, it := range list {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
