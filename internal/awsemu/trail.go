package awsemu

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"time"
)

// trailResource is a resource a CloudTrail event names.
type trailResource struct {
	Type string `json:"ResourceType"`
	Name string `json:"ResourceName"`
}

// trailEvent is one recorded management event.
type trailEvent struct {
	seq         uint64
	id          string
	name        string
	source      string
	accessKeyID string
	username    string
	readOnly    bool
	at          time.Time
	resources   []trailResource
	record      string // the CloudTrailEvent JSON document
}

// eventLog holds one account's events in one region, oldest first.
type eventLog struct {
	mu     sync.Mutex
	events []*trailEvent
}

// tokenBucket is a LookupEvents rate limiter on the emulated clock.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

type trailKey struct{ account, region string }

// trailStore is CloudTrail's event history for every account and region.
type trailStore struct {
	limit int
	rate  float64

	mu       sync.Mutex
	seq      uint64
	logs     map[trailKey]*eventLog
	limiters map[trailKey]*tokenBucket
}

func newTrailStore(limit int, rate float64) *trailStore {
	return &trailStore{limit: limit, rate: rate, logs: make(map[trailKey]*eventLog), limiters: make(map[trailKey]*tokenBucket)}
}

func (s *trailStore) log(k trailKey) *eventLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.logs[k]
	if !ok {
		l = &eventLog{}
		s.logs[k] = l
	}
	return l
}

func (s *trailStore) nextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// allow takes a LookupEvents token for the account and region.
func (s *trailStore) allow(k trailKey, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.limiters[k]
	if !ok {
		b = &tokenBucket{tokens: s.rate, last: now}
		s.limiters[k] = b
	}
	if now.After(b.last) {
		b.tokens = min(s.rate, b.tokens+now.Sub(b.last).Seconds()*s.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// eventRetention is how long CloudTrail's event history keeps events.
const eventRetention = 90 * 24 * time.Hour

func (s *trailStore) add(k trailKey, ev *trailEvent) {
	l := s.log(k)
	l.mu.Lock()
	defer l.mu.Unlock()
	drop := 0
	for drop < len(l.events) && ev.at.Sub(l.events[drop].at) > eventRetention {
		drop++
	}
	if len(l.events)-drop >= s.limit {
		drop = max(drop, len(l.events)-s.limit+1)
	}
	if drop > 0 {
		l.events = append(l.events[:0], l.events[drop:]...)
	}
	l.events = append(l.events, ev)
}

// cloudTrailRecord is the CloudTrailEvent document.
type cloudTrailRecord struct {
	EventVersion       string          `json:"eventVersion"`
	UserIdentity       userIdentity    `json:"userIdentity"`
	EventTime          string          `json:"eventTime"`
	EventSource        string          `json:"eventSource"`
	EventName          string          `json:"eventName"`
	AWSRegion          string          `json:"awsRegion"`
	SourceIPAddress    string          `json:"sourceIPAddress"`
	UserAgent          string          `json:"userAgent"`
	ErrorCode          string          `json:"errorCode,omitempty"`
	ErrorMessage       string          `json:"errorMessage,omitempty"`
	RequestParameters  any             `json:"requestParameters"`
	ResponseElements   any             `json:"responseElements"`
	RequestID          string          `json:"requestID"`
	EventID            string          `json:"eventID"`
	ReadOnly           bool            `json:"readOnly"`
	Resources          []eventResource `json:"resources,omitempty"`
	EventType          string          `json:"eventType"`
	ManagementEvent    bool            `json:"managementEvent"`
	RecipientAccountID string          `json:"recipientAccountId"`
	// SharedEventID is the same in each account's copy of an event that
	// more than one account records, as AssumeRole into another account.
	SharedEventID string `json:"sharedEventID,omitempty"`
	EventCategory string `json:"eventCategory"`
}

type eventResource struct {
	ARN       string `json:"ARN,omitempty"`
	AccountID string `json:"accountId"`
	Type      string `json:"type"`
	Name      string `json:"name,omitempty"`
}

type userIdentity struct {
	Type           string          `json:"type"`
	PrincipalID    string          `json:"principalId"`
	ARN            string          `json:"arn,omitempty"`
	AccountID      string          `json:"accountId"`
	AccessKeyID    string          `json:"accessKeyId,omitempty"`
	UserName       string          `json:"userName,omitempty"`
	SessionContext *sessionContext `json:"sessionContext,omitempty"`
}

type sessionContext struct {
	SessionIssuer struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
		ARN         string `json:"arn"`
		AccountID   string `json:"accountId"`
		UserName    string `json:"userName"`
	} `json:"sessionIssuer"`
	WebIDFederationData struct{} `json:"webIdFederationData"`
	Attributes          struct {
		CreationDate     string `json:"creationDate"`
		MFAAuthenticated string `json:"mfaAuthenticated"`
	} `json:"attributes"`
	SourceIdentity  string `json:"sourceIdentity,omitempty"`
	EC2RoleDelivery string `json:"ec2RoleDelivery,omitempty"`
}

// redactedParams are request parameters CloudTrail never records.
var redactedParams = map[string]bool{
	"password": true, "newpassword": true, "oldpassword": true, "secretaccesskey": true,
	"sessiontoken": true, "privatekey": true, "tokencode": true, "messagebody": true,
	"x-amz-security-token": true, "authorization": true, "zipfile": true,
}

func redactParam(k string) bool { return redactedParams[strings.ToLower(k)] }

// resourceParams maps request parameters to the resource types LookupEvents
// reports for them.
var resourceParams = map[string]string{
	"InstanceId":           "AWS::EC2::Instance",
	"InstanceIds":          "AWS::EC2::Instance",
	"GroupId":              "AWS::EC2::SecurityGroup",
	"SecurityGroupId":      "AWS::EC2::SecurityGroup",
	"NetworkInterfaceId":   "AWS::EC2::NetworkInterface",
	"VolumeId":             "AWS::EC2::Volume",
	"SnapshotId":           "AWS::EC2::Snapshot",
	"SourceSnapshotId":     "AWS::EC2::Snapshot",
	"ResourceId":           "AWS::EC2::Resource",
	"UserName":             "AWS::IAM::User",
	"RoleName":             "AWS::IAM::Role",
	"RoleArn":              "AWS::IAM::Role",
	"AccessKeyId":          "AWS::IAM::AccessKey",
	"PolicyArn":            "AWS::IAM::Policy",
	"InstanceProfileName":  "AWS::IAM::InstanceProfile",
	"AutoScalingGroupName": "AWS::AutoScaling::AutoScalingGroup",
	"TargetGroupArn":       "AWS::ElasticLoadBalancingV2::TargetGroup",
	"FunctionName":         "AWS::Lambda::Function",
	"Bucket":               "AWS::S3::Bucket",
	"QueueName":            "AWS::SQS::Queue",
	"QueueUrl":             "AWS::SQS::Queue",
}

// requestParameters renders the sanitised parameters of a call.
func (c *call) requestParameters() any {
	var out map[string]any
	switch c.svc.protocol {
	case protoEC2, protoQuery:
		if c.form == nil {
			return nil
		}
		m, _ := c.form.flatten(redactParam).(map[string]any)
		delete(m, "action")
		delete(m, "version")
		out = m
	case protoJSON:
		// The trail records what it can; a malformed body is the call's
		// own error to report.
		_ = json.Unmarshal(c.body, &out)
		out = lowerKeys(out)
	case protoRestJSON, protoRestXML:
		out = map[string]any{}
		for k, v := range c.path {
			if c.svc.protocol == protoRestJSON {
				k = lowerFirst(k)
			}
			out[k] = v
		}
		q, _ := url.ParseQuery(c.r.URL.RawQuery)
		for k := range q {
			if !strings.HasPrefix(k, "X-Amz-") {
				out[k] = q.Get(k)
			}
		}
		if c.svc.protocol == protoRestJSON {
			var body map[string]any
			if json.Unmarshal(c.body, &body) == nil {
				for k, v := range lowerKeys(body) {
					out[k] = v
				}
			}
		}
	}
	return redactTree(out)
}

// lowerKeys writes a JSON body's member names in lower camel case, as
// CloudTrail records the requestParameters of JSON services
// ({"Name": …} becomes {"name": …}).
func lowerKeys(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[lowerFirst(k)] = lowerTree(v)
	}
	return out
}

func lowerTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return lowerKeys(x)
	case []any:
		for i := range x {
			x[i] = lowerTree(x[i])
		}
	}
	return v
}

func redactTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return nil
		}
		for k, vv := range x {
			if redactParam(k) {
				delete(x, k)
				continue
			}
			x[k] = redactTree(vv)
		}
		return x
	case []any:
		for i := range x {
			x[i] = redactTree(x[i])
		}
	}
	return v
}

// eventResources derives the resources an event names from its parameters,
// plus those the handler added.
func (c *call) eventResources(params any) []trailResource {
	seen := map[trailResource]bool{}
	var out []trailResource
	add := func(r trailResource) {
		if r.Name != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				walk(k, vv)
			}
		case []any:
			for _, vv := range x {
				walk(key, vv)
			}
		case string:
			if typ, ok := resourceParams[upperFirst(key)]; ok {
				add(trailResource{Type: typ, Name: x})
			}
		}
	}
	walk("", params)
	for _, r := range c.trail.resources {
		add(r)
	}
	return out
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// recordEvent writes the call's CloudTrail event into the caller's account
// (and any other account the handler named).
func (e *Emulator) recordEvent(c *call, ae *apiError) {
	p := c.who
	region := c.region
	if c.svc.global {
		region = "us-east-1"
	}
	params := c.requestParameters()
	rec := cloudTrailRecord{
		EventVersion:      "1.10",
		EventTime:         c.now.UTC().Format(time.RFC3339),
		EventSource:       c.svc.eventSource,
		EventName:         c.op.trailEventName(),
		AWSRegion:         region,
		SourceIPAddress:   clientIP(c.r),
		UserAgent:         c.r.UserAgent(),
		RequestParameters: params,
		ResponseElements:  c.trail.response,
		RequestID:         c.id,
		ReadOnly:          c.op.readOnly,
		EventType:         "AwsApiCall",
		ManagementEvent:   true,
		EventCategory:     "Management",
	}
	if ae != nil {
		rec.ErrorCode = ae.Code
		if c.svc.protocol == protoEC2 {
			rec.ErrorCode = "Client." + ae.Code
		}
		rec.ErrorMessage = ae.Message
		rec.ResponseElements = nil
	}
	rec.UserIdentity = e.userIdentity(p)
	resources := c.eventResources(params)
	for _, r := range resources {
		rec.Resources = append(rec.Resources, renderResource(p.account, r))
	}

	targets := append([]string{p.account}, c.trail.alsoIn...)
	if len(targets) > 1 {
		rec.SharedEventID = e.ids.uuid("shared-event")
	}
	for i, acct := range targets {
		rec.RecipientAccountID = acct
		rec.EventID = e.ids.uuid("event")
		if i > 0 && acct != p.account {
			rec.UserIdentity = userIdentity{Type: "AWSAccount", PrincipalID: p.userID, AccountID: p.account}
		}
		doc, err := json.Marshal(rec)
		if err != nil {
			e.log.Error("awsemu: render CloudTrail event", "error", err)
			return
		}
		e.trail.add(trailKey{acct, region}, &trailEvent{
			seq:         e.trail.nextSeq(),
			id:          rec.EventID,
			name:        c.op.trailEventName(),
			source:      c.svc.eventSource,
			accessKeyID: p.cred.id,
			username:    p.name,
			readOnly:    c.op.readOnly,
			at:          c.now,
			resources:   resources,
			record:      string(doc),
		})
		e.orgTrailRecord(acct, region, c.now, doc)
	}
}

// renderResource writes a resource as CloudTrail's resources list does: an
// ARN with the account it names, or a type and name in the caller's
// account.
func renderResource(account string, r trailResource) eventResource {
	if strings.HasPrefix(r.Name, "arn:") {
		if parts := strings.SplitN(r.Name, ":", 6); len(parts) == 6 && parts[4] != "" {
			account = parts[4]
		}
		return eventResource{ARN: r.Name, AccountID: account, Type: r.Type}
	}
	return eventResource{AccountID: account, Type: r.Type, Name: r.Name}
}

// userIdentity describes the caller as CloudTrail does.
func (e *Emulator) userIdentity(p *principal) userIdentity {
	id := userIdentity{PrincipalID: p.userID, ARN: p.arn, AccountID: p.account, AccessKeyID: p.cred.id}
	switch p.kind {
	case principalRoot:
		id.Type = "Root"
	case principalUser:
		id.Type = "IAMUser"
		id.UserName = p.name
		if s := p.cred.userSession; s != nil {
			sc := &sessionContext{}
			sc.Attributes.CreationDate = s.issued.UTC().Format(time.RFC3339)
			sc.Attributes.MFAAuthenticated = "false"
			id.SessionContext = sc
		}
	case principalSession:
		s := p.cred.session
		id.Type = "AssumedRole"
		sc := &sessionContext{SourceIdentity: s.sourceIdentity}
		sc.SessionIssuer.Type = "Role"
		sc.SessionIssuer.PrincipalID = s.roleID
		sc.SessionIssuer.ARN = p.principalARN
		sc.SessionIssuer.AccountID = p.account
		sc.SessionIssuer.UserName = s.roleName
		sc.Attributes.CreationDate = s.issued.UTC().Format(time.RFC3339)
		sc.Attributes.MFAAuthenticated = "false"
		if s.sourceInstanceARN != "" {
			sc.EC2RoleDelivery = "2.0"
		}
		id.SessionContext = sc
	}
	return id
}
