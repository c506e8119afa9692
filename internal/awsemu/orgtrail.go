package awsemu

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// OrganizationTrailSeed is the organisation's trail: CloudTrail delivers
// every member account's management events as log files into one bucket.
type OrganizationTrailSeed struct {
	// Name is the trail's name; "organization-trail" when empty.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Bucket is the S3 bucket the log files go into; it must be seeded, in
	// this seed or before it (usually in the log-archive account).
	Bucket string `yaml:"bucket" json:"bucket"`
}

// orgTrail is the organisation trail once seeded.
type orgTrail struct {
	name   string
	bucket string
}

// Log-file delivery. CloudTrail writes a file per account and region about
// every five minutes; the emulator closes a file when its first event is
// that old on the emulated clock, when it holds trailFileRecords events, or
// when DeliverTrailLogs is called.
const (
	trailFileWindow  = 5 * time.Minute
	trailFileRecords = 1000
)

// pendingLogFile is the events waiting for one account and region's next
// log file.
type pendingLogFile struct {
	first   time.Time
	records []json.RawMessage
}

// trailDelivery buffers the organisation trail's events per account and
// region until their log file is written.
type trailDelivery struct {
	mu      sync.Mutex
	pending map[trailKey]*pendingLogFile
}

// TrailLogKey is the object key CloudTrail gives an organisation trail's
// log file: AWSLogs/<org id>/<account>/CloudTrail/<region>/YYYY/MM/DD/
// <account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<unique>.json.gz.
func TrailLogKey(orgID, account, region string, at time.Time, unique string) string {
	at = at.UTC()
	return fmt.Sprintf("AWSLogs/%s/%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_%s.json.gz",
		orgID, account, region, at.Format("2006/01/02"), account, region, at.Format("20060102T1504Z"), unique)
}

// orgTrailFor returns the organisation and its trail when the account's
// events go to an organisation trail.
func (e *Emulator) orgTrailFor(account string) (*organization, bool) {
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	if o == nil || o.trail == nil {
		return nil, false
	}
	if _, member := o.parent[account]; !member {
		return nil, false
	}
	return o, true
}

// orgTrailRecord queues one event for the organisation trail's log files,
// writing out the account and region's pending file first when it is due.
func (e *Emulator) orgTrailRecord(account, region string, at time.Time, doc []byte) {
	o, ok := e.orgTrailFor(account)
	if !ok {
		return
	}
	k := trailKey{account, region}
	d := &e.delivery
	d.mu.Lock()
	if d.pending == nil {
		d.pending = map[trailKey]*pendingLogFile{}
	}
	var due *pendingLogFile
	p := d.pending[k]
	if p != nil && (at.Sub(p.first) >= trailFileWindow || len(p.records) >= trailFileRecords) {
		due, p = p, nil
	}
	if p == nil {
		p = &pendingLogFile{first: at}
		d.pending[k] = p
	}
	p.records = append(p.records, json.RawMessage(doc))
	d.mu.Unlock()
	if due != nil {
		e.writeTrailLogFile(o, k, due.first, due.records)
	}
}

// DeliverTrailLogs writes every pending organisation-trail event into its
// log file now, as CloudTrail eventually does, and returns how many files
// it wrote.
func (e *Emulator) DeliverTrailLogs() int {
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	d := &e.delivery
	d.mu.Lock()
	pending := d.pending
	d.pending = nil
	d.mu.Unlock()
	if o == nil || o.trail == nil {
		return 0
	}
	n := 0
	for k, p := range pending {
		if e.writeTrailLogFile(o, k, p.first, p.records) {
			n++
		}
	}
	return n
}

// WriteTrailLogFile writes records, each a CloudTrail event document, as one
// organisation-trail log file of the account and region, stamped at. It
// lets benchmarks fill the trail bucket without making each call.
func (e *Emulator) WriteTrailLogFile(account, region string, at time.Time, records []json.RawMessage) error {
	o, ok := e.orgTrailFor(account)
	if !ok {
		return fmt.Errorf("awsemu: account %s sends no events to an organisation trail", account)
	}
	if !e.writeTrailLogFile(o, trailKey{account, region}, at, records) {
		return fmt.Errorf("awsemu: the organisation trail's bucket %s is missing", o.trail.bucket)
	}
	return nil
}

// writeTrailLogFile renders {"Records":[…]}, gzips it and stores it in the
// trail's bucket.
func (e *Emulator) writeTrailLogFile(o *organization, k trailKey, at time.Time, records []json.RawMessage) bool {
	e.mu.RLock()
	b := e.buckets[o.trail.bucket]
	e.mu.RUnlock()
	if b == nil {
		e.log.Error("awsemu: the organisation trail's bucket is missing", "bucket", o.trail.bucket)
		return false
	}
	var raw bytes.Buffer
	raw.WriteString(`{"Records":[`)
	for i, r := range records {
		if i > 0 {
			raw.WriteByte(',')
		}
		raw.Write(r)
	}
	raw.WriteString(`]}`)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write(raw.Bytes()) // writes to memory cannot fail
	_ = w.Close()
	unique := strings.ToUpper(e.ids.lowerAlnum("trailfile", 16))
	key := TrailLogKey(o.id, k.account, k.region, at, unique)
	b.store().put(key, &s3Object{data: gz.Bytes(), modified: e.now(), contentType: "application/json", contentEncoding: "gzip"})
	return true
}

// AddEventHistory puts records, each a CloudTrail event document, into the
// account and region's LookupEvents history, as if the calls had been
// made. It lets benchmarks compare LookupEvents with the trail's log files
// over the same events.
func (e *Emulator) AddEventHistory(account, region string, records []json.RawMessage) error {
	for i, raw := range records {
		var rec struct {
			EventID      string    `json:"eventID"`
			EventName    string    `json:"eventName"`
			EventSource  string    `json:"eventSource"`
			EventTime    time.Time `json:"eventTime"`
			ReadOnly     bool      `json:"readOnly"`
			UserIdentity struct {
				AccessKeyID string `json:"accessKeyId"`
				UserName    string `json:"userName"`
			} `json:"userIdentity"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil || rec.EventID == "" || rec.EventTime.IsZero() {
			return fmt.Errorf("awsemu: record %d is not a CloudTrail event with eventID and eventTime: %v", i, err)
		}
		e.trail.add(trailKey{account, region}, &trailEvent{seq: e.trail.nextSeq(), id: rec.EventID, name: rec.EventName,
			source: rec.EventSource, accessKeyID: rec.UserIdentity.AccessKeyID, username: rec.UserIdentity.UserName,
			readOnly: rec.ReadOnly, at: rec.EventTime, record: string(raw)})
	}
	return nil
}
