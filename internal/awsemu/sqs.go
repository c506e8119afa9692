package awsemu

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// queue is an SQS standard queue. Its messages have their own lock so long
// polls never hold the account's.
type queue struct {
	name    string
	account string
	region  string
	arn     string
	created time.Time

	mu         sync.Mutex
	visibility time.Duration
	delay      time.Duration
	retention  time.Duration
	waitTime   time.Duration
	maxSize    int
	extra      map[string]string // Policy, RedrivePolicy and other stored attributes
	messages   []*message
	sent       uint64
	// notify is closed and replaced whenever a message arrives.
	notify chan struct{}
	// polling counts the long polls waiting on the queue.
	polling int
}

type messageAttribute struct {
	DataType    string `json:"DataType"`
	StringValue string `json:"StringValue,omitempty"`
	BinaryValue []byte `json:"BinaryValue,omitempty"`
}

type message struct {
	id           string
	body         string
	attrs        map[string]messageAttribute
	sent         time.Time
	visibleAt    time.Time
	receives     int
	firstReceive time.Time
	receipt      string
	sender       string
}

func newQueue(name, account, region string, now time.Time) *queue {
	return &queue{name: name, account: account, region: region, arn: "arn:aws:sqs:" + region + ":" + account + ":" + name, created: now,
		visibility: 30 * time.Second, retention: 4 * 24 * time.Hour, maxSize: 262144, extra: map[string]string{}, notify: make(chan struct{})}
}

func (e *Emulator) sqsService() *service {
	s := &service{
		name:            "sqs",
		eventSource:     "sqs.amazonaws.com",
		protocol:        protoJSON,
		target:          "AmazonSQS",
		jsonVersion:     "1.0",
		queryCompatible: true,
		errs:            jsonErrors("RequestThrottled", http.StatusBadRequest, http.StatusForbidden),
	}
	// SQS keeps announcing its old query-protocol codes, which the SDK
	// reports as the error code.
	s.errs.unknownKey.QueryCode = "InvalidClientTokenId"
	s.errs.badSignature.QueryCode = "SignatureDoesNotMatch"
	s.errs.expiredToken.QueryCode = "ExpiredToken"
	s.errs.missingAuth.QueryCode = "MissingAuthenticationToken"
	s.errs.skewed.QueryCode = "SignatureDoesNotMatch"
	s.errs.throttled.QueryCode = "RequestThrottled"
	queueARN := func(e *Emulator, c *call) []string {
		var in struct {
			QueueURL  string `json:"QueueUrl"`
			QueueName string `json:"QueueName"`
		}
		// A body that does not decode names no queue; the call itself
		// reports the malformed body.
		_ = json.Unmarshal(c.body, &in)
		name := in.QueueName
		if in.QueueURL != "" {
			_, name, _ = parseQueueURL(in.QueueURL)
		}
		if name == "" {
			return nil
		}
		return []string{"arn:aws:sqs:" + c.region + ":" + c.who.account + ":" + name}
	}
	ops := []*operation{
		{name: "CreateQueue", handle: (*Emulator).sqsCreateQueue, resources: queueARN},
		{name: "GetQueueUrl", readOnly: true, handle: (*Emulator).sqsGetQueueURL, resources: queueARN},
		{name: "GetQueueAttributes", readOnly: true, handle: (*Emulator).sqsGetQueueAttributes, resources: queueARN},
		{name: "SendMessage", dataEvent: true, handle: (*Emulator).sqsSendMessage, resources: queueARN},
		{name: "ReceiveMessage", dataEvent: true, readOnly: true, handle: (*Emulator).sqsReceiveMessage, resources: queueARN},
		{name: "DeleteMessage", dataEvent: true, handle: (*Emulator).sqsDeleteMessage, resources: queueARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "sqs:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func sqsError(code, queryCode, format string, args ...any) *apiError {
	return &apiError{Code: code, QueryCode: queryCode, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func noSuchQueue() *apiError {
	return sqsError("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
}

// queueURL is the URL of a queue as seen through this request's endpoint.
func (c *call) queueURL(q *queue) string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.r.Host + "/" + q.account + "/" + q.name
}

// parseQueueURL reads the account and queue name from a queue URL.
func parseQueueURL(raw string) (account, name string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || !isAccountID(parts[0]) || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// queueFor finds the queue a QueueUrl names in the caller's account.
func (c *call) queueFor(rawURL string) (*queue, *apiError) {
	if rawURL == "" {
		return nil, sqsError("MissingParameter", "MissingParameter", "The request must contain the parameter QueueUrl.")
	}
	account, name, ok := parseQueueURL(rawURL)
	if !ok || account != c.who.account {
		return nil, noSuchQueue()
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	q := c.acct.region(c.region).queues[name]
	if q == nil {
		return nil, noSuchQueue()
	}
	return q, nil
}

var queueNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// queueDurationAttrs are the attributes kept as durations, with their
// allowed range in seconds.
var queueDurationAttrs = map[string][2]int{
	"VisibilityTimeout": {0, 43200}, "DelaySeconds": {0, 900}, "MessageRetentionPeriod": {60, 1209600},
	"ReceiveMessageWaitTimeSeconds": {0, 20}, "MaximumMessageSize": {1024, 262144},
}

var queueStoredAttrs = []string{"Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled"}

// applyAttributes sets queue attributes after validating all of them.
func (q *queue) applyAttributes(attrs map[string]string) *apiError {
	for k, v := range attrs {
		if rng, ok := queueDurationAttrs[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < rng[0] || n > rng[1] {
				return sqsError("InvalidAttributeValue", "InvalidAttributeValue", "Invalid value for the parameter %s.", k)
			}
			continue
		}
		if !slices.Contains(queueStoredAttrs, k) {
			return sqsError("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute %s.", k)
		}
	}
	for k, v := range attrs {
		n, _ := strconv.Atoi(v)
		switch k {
		case "VisibilityTimeout":
			q.visibility = time.Duration(n) * time.Second
		case "DelaySeconds":
			q.delay = time.Duration(n) * time.Second
		case "MessageRetentionPeriod":
			q.retention = time.Duration(n) * time.Second
		case "ReceiveMessageWaitTimeSeconds":
			q.waitTime = time.Duration(n) * time.Second
		case "MaximumMessageSize":
			q.maxSize = n
		default:
			q.extra[k] = v
		}
	}
	return nil
}

// attributes renders the queue's attributes. The caller holds q.mu.
func (q *queue) attributes(now time.Time) map[string]string {
	visible, inFlight, delayed := 0, 0, 0
	for _, m := range q.messages {
		switch {
		case m.receives == 0 && now.Before(m.visibleAt):
			delayed++
		case now.Before(m.visibleAt):
			inFlight++
		default:
			visible++
		}
	}
	out := map[string]string{
		"QueueArn":                              q.arn,
		"CreatedTimestamp":                      strconv.FormatInt(q.created.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(q.created.Unix(), 10),
		"VisibilityTimeout":                     strconv.Itoa(int(q.visibility / time.Second)),
		"DelaySeconds":                          strconv.Itoa(int(q.delay / time.Second)),
		"MessageRetentionPeriod":                strconv.Itoa(int(q.retention / time.Second)),
		"ReceiveMessageWaitTimeSeconds":         strconv.Itoa(int(q.waitTime / time.Second)),
		"MaximumMessageSize":                    strconv.Itoa(q.maxSize),
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inFlight),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(delayed),
	}
	for k, v := range q.extra {
		out[k] = v
	}
	return out
}

func (e *Emulator) sqsCreateQueue(c *call) (any, error) {
	var in struct {
		QueueName  string            `json:"QueueName"`
		Attributes map[string]string `json:"Attributes"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if !queueNamePattern.MatchString(in.QueueName) {
		return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	if q := rg.queues[in.QueueName]; q != nil {
		q.mu.Lock()
		defer q.mu.Unlock()
		current := q.attributes(c.now)
		for k, v := range in.Attributes {
			if current[k] != v {
				return nil, sqsError("QueueNameExists", "QueueAlreadyExists", "A queue already exists with the same name and a different value for attribute %s", k)
			}
		}
		return map[string]string{"QueueUrl": c.queueURL(q)}, nil
	}
	q := newQueue(in.QueueName, c.who.account, c.region, c.now)
	if ae := q.applyAttributes(in.Attributes); ae != nil {
		return nil, ae
	}
	rg.queues[q.name] = q
	return map[string]string{"QueueUrl": c.queueURL(q)}, nil
}

func (e *Emulator) sqsGetQueueURL(c *call) (any, error) {
	var in struct {
		QueueName              string `json:"QueueName"`
		QueueOwnerAWSAccountID string `json:"QueueOwnerAWSAccountId"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if in.QueueOwnerAWSAccountID != "" && in.QueueOwnerAWSAccountID != c.who.account {
		return nil, noSuchQueue()
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	q := c.acct.region(c.region).queues[in.QueueName]
	if q == nil {
		return nil, noSuchQueue()
	}
	return map[string]string{"QueueUrl": c.queueURL(q)}, nil
}

func (e *Emulator) sqsGetQueueAttributes(c *call) (any, error) {
	var in struct {
		QueueURL       string   `json:"QueueUrl"`
		AttributeNames []string `json:"AttributeNames"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	q, ae := c.queueFor(in.QueueURL)
	if ae != nil {
		return nil, ae
	}
	q.mu.Lock()
	all := q.attributes(c.now)
	q.mu.Unlock()
	out := map[string]string{}
	for _, n := range in.AttributeNames {
		if n == "All" {
			out = all
			break
		}
		v, ok := all[n]
		if !ok {
			return nil, sqsError("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute %s.", n)
		}
		out[n] = v
	}
	return map[string]any{"Attributes": out}, nil
}

// md5Hex is the hex MD5 SQS reports of a message body.
func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// attributesMD5 is SQS's digest of message attributes: each attribute in
// name order as length-prefixed name, data type, a transport byte (1 for
// strings and numbers, 2 for binary) and length-prefixed value.
func attributesMD5(attrs map[string]messageAttribute) string {
	if len(attrs) == 0 {
		return ""
	}
	h := md5.New()
	put := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		a := attrs[n]
		put([]byte(n))
		put([]byte(a.DataType))
		if strings.HasPrefix(a.DataType, "Binary") {
			h.Write([]byte{2})
			put(a.BinaryValue)
		} else {
			h.Write([]byte{1})
			put([]byte(a.StringValue))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// enqueue adds a message and wakes long polls.
func (e *Emulator) enqueue(q *queue, body string, attrs map[string]messageAttribute, delay time.Duration, sender string, now time.Time) *message {
	m := &message{id: e.ids.uuid("message"), body: body, attrs: attrs, sent: now, sender: sender}
	q.mu.Lock()
	if delay < 0 {
		delay = q.delay
	}
	m.visibleAt = now.Add(delay)
	q.messages = append(q.messages, m)
	q.sent++
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
	return m
}

func (e *Emulator) sqsSendMessage(c *call) (any, error) {
	var in struct {
		QueueURL          string                      `json:"QueueUrl"`
		MessageBody       string                      `json:"MessageBody"`
		DelaySeconds      *int                        `json:"DelaySeconds"`
		MessageAttributes map[string]messageAttribute `json:"MessageAttributes"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if in.MessageBody == "" {
		return nil, sqsError("MissingParameter", "MissingParameter", "The request must contain the parameter MessageBody.")
	}
	if !utf8.ValidString(in.MessageBody) {
		return nil, sqsError("InvalidMessageContents", "InvalidMessageContents", "Invalid characters found.")
	}
	q, ae := c.queueFor(in.QueueURL)
	if ae != nil {
		return nil, ae
	}
	q.mu.Lock()
	maxSize := q.maxSize
	q.mu.Unlock()
	size := len(in.MessageBody)
	for n, a := range in.MessageAttributes {
		size += len(n) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
		if a.DataType == "" {
			return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "The message attribute '%s' must contain non-empty message attribute type.", n)
		}
	}
	if size > maxSize {
		return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", maxSize)
	}
	delay := time.Duration(-1)
	if in.DelaySeconds != nil {
		if *in.DelaySeconds < 0 || *in.DelaySeconds > 900 {
			return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900.", *in.DelaySeconds)
		}
		delay = time.Duration(*in.DelaySeconds) * time.Second
	}
	m := e.enqueue(q, in.MessageBody, in.MessageAttributes, delay, c.who.userID, c.now)
	out := map[string]string{"MessageId": m.id, "MD5OfMessageBody": md5Hex(m.body)}
	if d := attributesMD5(m.attrs); d != "" {
		out["MD5OfMessageAttributes"] = d
	}
	return out, nil
}

// SendQueueMessage puts a message on a queue as if an AWS service (for
// example EventBridge) had sent it, and returns its message id.
func (e *Emulator) SendQueueMessage(accountID, region, queueName, body string) (string, error) {
	a := e.account(accountID)
	if a == nil {
		return "", fmt.Errorf("awsemu: no account %s", accountID)
	}
	a.mu.Lock()
	var q *queue
	if rg := a.regions[region]; rg != nil {
		q = rg.queues[queueName]
	}
	a.mu.Unlock()
	if q == nil {
		return "", fmt.Errorf("awsemu: no queue %s in %s/%s", queueName, accountID, region)
	}
	return e.enqueue(q, body, nil, -1, "AIDAEVENTBRIDGE", e.now()).id, nil
}

type sqsMessageOut struct {
	MessageID              string                      `json:"MessageId"`
	ReceiptHandle          string                      `json:"ReceiptHandle"`
	MD5OfBody              string                      `json:"MD5OfBody"`
	Body                   string                      `json:"Body"`
	Attributes             map[string]string           `json:"Attributes,omitempty"`
	MD5OfMessageAttributes string                      `json:"MD5OfMessageAttributes,omitempty"`
	MessageAttributes      map[string]messageAttribute `json:"MessageAttributes,omitempty"`
}

// wantedAttributes filters message attributes by the names a receive asked
// for: "All", ".*", exact names or "prefix.*".
func wantedAttributes(attrs map[string]messageAttribute, names []string) map[string]messageAttribute {
	out := map[string]messageAttribute{}
	for n, a := range attrs {
		for _, want := range names {
			if want == "All" || want == ".*" || want == n || (strings.HasSuffix(want, ".*") && strings.HasPrefix(n, strings.TrimSuffix(want, "*"))) {
				out[n] = a
				break
			}
		}
	}
	return out
}

// take hands out up to n visible messages, hiding each for the visibility
// timeout. The caller holds q.mu.
func (e *Emulator) take(q *queue, n int, visibility time.Duration, now time.Time) []*message {
	var out []*message
	q.messages = slices.DeleteFunc(q.messages, func(m *message) bool { return now.Sub(m.sent) > q.retention })
	for _, m := range q.messages {
		if len(out) == n {
			break
		}
		if now.Before(m.visibleAt) {
			continue
		}
		m.receives++
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		m.visibleAt = now.Add(visibility)
		m.receipt = base64.StdEncoding.EncodeToString([]byte(q.arn + "\x00" + m.id + "\x00" + strconv.Itoa(m.receives) + "\x00" + e.ids.hexString("receipt", 16)))
		cp := *m
		out = append(out, &cp)
	}
	return out
}

// nextVisible is how long until a hidden message becomes visible again, or
// a negative duration when none will. The caller holds q.mu.
func (q *queue) nextVisible(now time.Time) time.Duration {
	next := time.Duration(-1)
	for _, m := range q.messages {
		if d := m.visibleAt.Sub(now); d > 0 && (next < 0 || d < next) {
			next = d
		}
	}
	return next
}

func (e *Emulator) sqsReceiveMessage(c *call) (any, error) {
	var in struct {
		QueueURL                    string   `json:"QueueUrl"`
		AttributeNames              []string `json:"AttributeNames"`
		MessageSystemAttributeNames []string `json:"MessageSystemAttributeNames"`
		MessageAttributeNames       []string `json:"MessageAttributeNames"`
		MaxNumberOfMessages         *int     `json:"MaxNumberOfMessages"`
		VisibilityTimeout           *int     `json:"VisibilityTimeout"`
		WaitTimeSeconds             *int     `json:"WaitTimeSeconds"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	n := 1
	if in.MaxNumberOfMessages != nil {
		if *in.MaxNumberOfMessages < 1 || *in.MaxNumberOfMessages > 10 {
			return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", *in.MaxNumberOfMessages)
		}
		n = *in.MaxNumberOfMessages
	}
	q, ae := c.queueFor(in.QueueURL)
	if ae != nil {
		return nil, ae
	}
	q.mu.Lock()
	visibility, wait := q.visibility, q.waitTime
	q.mu.Unlock()
	if in.VisibilityTimeout != nil {
		if *in.VisibilityTimeout < 0 || *in.VisibilityTimeout > 43200 {
			return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", *in.VisibilityTimeout)
		}
		visibility = time.Duration(*in.VisibilityTimeout) * time.Second
	}
	if in.WaitTimeSeconds != nil {
		if *in.WaitTimeSeconds < 0 || *in.WaitTimeSeconds > 20 {
			return nil, sqsError("InvalidParameterValue", "InvalidParameterValue", "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *in.WaitTimeSeconds)
		}
		wait = time.Duration(*in.WaitTimeSeconds) * time.Second
	}

	deadline := time.Now().Add(wait)
	var got []*message
	for {
		now := e.now()
		q.mu.Lock()
		got = e.take(q, n, visibility, now)
		notify := q.notify
		next := q.nextVisible(now)
		q.mu.Unlock()
		remaining := time.Until(deadline)
		if len(got) > 0 || remaining <= 0 {
			break
		}
		if next >= 0 && next < remaining {
			remaining = next
		}
		q.mu.Lock()
		q.polling++
		q.mu.Unlock()
		t := time.NewTimer(remaining)
		canceled := false
		select {
		case <-notify:
		case <-t.C:
		case <-c.ctx.Done():
			canceled = true
		}
		t.Stop()
		q.mu.Lock()
		q.polling--
		q.mu.Unlock()
		if canceled {
			return map[string]any{"Messages": []sqsMessageOut{}}, nil
		}
	}

	wantSystem := slices.Concat(in.AttributeNames, in.MessageSystemAttributeNames)
	out := make([]sqsMessageOut, 0, len(got))
	for _, m := range got {
		mo := sqsMessageOut{MessageID: m.id, ReceiptHandle: m.receipt, MD5OfBody: md5Hex(m.body), Body: m.body}
		if len(wantSystem) > 0 {
			all := map[string]string{
				"SenderId":                         m.sender,
				"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
				"ApproximateReceiveCount":          strconv.Itoa(m.receives),
				"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstReceive.UnixMilli(), 10),
			}
			mo.Attributes = map[string]string{}
			for k, v := range all {
				if slices.Contains(wantSystem, "All") || slices.Contains(wantSystem, k) {
					mo.Attributes[k] = v
				}
			}
		}
		if attrs := wantedAttributes(m.attrs, in.MessageAttributeNames); len(attrs) > 0 {
			mo.MessageAttributes = attrs
			mo.MD5OfMessageAttributes = attributesMD5(attrs)
		}
		out = append(out, mo)
	}
	return map[string]any{"Messages": out}, nil
}

func (e *Emulator) sqsDeleteMessage(c *call) (any, error) {
	var in struct {
		QueueURL      string `json:"QueueUrl"`
		ReceiptHandle string `json:"ReceiptHandle"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	q, ae := c.queueFor(in.QueueURL)
	if ae != nil {
		return nil, ae
	}
	invalid := sqsError("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", "The input receipt handle \"%s\" is not a valid receipt handle.", in.ReceiptHandle)
	raw, err := base64.StdEncoding.DecodeString(in.ReceiptHandle)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 4 || parts[0] != q.arn {
		return nil, invalid
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// As in SQS, a handle of a message already deleted succeeds, and so does
	// a stale handle of a message received again since, without deleting it.
	for i, m := range q.messages {
		if m.id == parts[1] && m.receipt == in.ReceiptHandle {
			q.messages = slices.Delete(q.messages, i, i+1)
			break
		}
	}
	return nil, nil
}
