package awsemu

import (
	"maps"
	"sync"
	"time"
)

// Call is one API request the emulator answered.
type Call struct {
	// Time is the emulated time the call arrived.
	Time time.Time `json:"time"`
	// RequestID is the id the answer carried.
	RequestID string `json:"requestId"`
	// Account is the caller's account; empty when authentication failed.
	Account string `json:"account,omitempty"`
	// PrincipalARN is the caller's ARN as GetCallerIdentity reports it.
	PrincipalARN string `json:"principalArn,omitempty"`
	// AccessKeyID is the key the request was signed with.
	AccessKeyID string `json:"accessKeyId,omitempty"`
	// Service is the signing name: ec2, iam, sts, s3, …
	Service string `json:"service"`
	// Operation is the API action, empty when it could not be told.
	Operation string `json:"operation,omitempty"`
	// Region is the region of the credential scope.
	Region string `json:"region,omitempty"`
	// ErrorCode is the error the call was answered with, empty on success.
	ErrorCode string `json:"errorCode,omitempty"`
	// Duration is the wall-clock time spent answering, injected latency
	// included.
	Duration time.Duration `json:"duration"`
}

// callLog keeps the most recent calls and a count per operation.
type callLog struct {
	mu     sync.Mutex
	limit  int
	calls  []Call
	counts map[string]int
}

func newCallLog(limit int) *callLog {
	return &callLog{limit: limit, counts: make(map[string]int)}
}

func (l *callLog) add(c Call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) >= l.limit {
		// Drop the oldest tenth at once so trimming stays amortised O(1).
		drop := max(1, l.limit/10)
		l.calls = append(l.calls[:0], l.calls[drop:]...)
	}
	l.calls = append(l.calls, c)
	l.counts[c.Service+":"+c.Operation]++
}

// Calls returns the calls answered so far, oldest first.
func (e *Emulator) Calls() []Call {
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	out := make([]Call, len(e.calls.calls))
	copy(out, e.calls.calls)
	return out
}

// CallCount returns how many calls of service:operation were answered,
// whether they succeeded or not.
func (e *Emulator) CallCount(service, operation string) int {
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	return e.calls.counts[service+":"+operation]
}

// CallCounts returns the number of calls per "service:Operation".
func (e *Emulator) CallCounts() map[string]int {
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	return maps.Clone(e.calls.counts)
}

// record logs a finished call and, for an authenticated management call,
// writes its CloudTrail event and the key's last use.
func (e *Emulator) record(c *call, ae *apiError, took time.Duration) {
	rec := Call{Time: c.now, RequestID: c.id, Service: c.svc.name, Region: c.region, Duration: took}
	if c.op != nil {
		rec.Operation = c.op.name
	}
	if ae != nil {
		rec.ErrorCode = ae.Code
	}
	if c.who != nil {
		rec.Account = c.who.account
		rec.PrincipalARN = c.who.arn
		rec.AccessKeyID = c.who.cred.id
		if c.who.kind == principalUser && c.who.cred.key != nil {
			c.who.cred.key.markUsed(c.now, c.svc.name, c.region)
		}
	}
	e.calls.add(rec)
	e.log.Debug("awsemu: call", "service", rec.Service, "operation", rec.Operation, "account", rec.Account,
		"principal", rec.PrincipalARN, "error", rec.ErrorCode, "request_id", rec.RequestID)
	if c.who != nil && c.op != nil && !c.op.dataEvent && !c.trail.skip {
		e.recordEvent(c, ae)
	}
}
