package awsemu

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault makes matching calls slow or throttled. Throttled calls are answered
// with the service's own throttling error (RequestLimitExceeded for EC2,
// Throttling for the query services, ThrottlingException and its kin for the
// JSON ones, SlowDown for S3), so the SDK's retryers treat them as AWS's.
type Fault struct {
	// Service is the signing name (ec2, iam, …); empty matches every service.
	Service string `json:"service,omitempty"`
	// Operation is the action name; empty matches every operation.
	Operation string `json:"operation,omitempty"`
	// ThrottleNext throttles this many of the next matching calls.
	ThrottleNext int `json:"throttleNext,omitempty"`
	// ThrottleRatio throttles this fraction (0 to 1) of matching calls once
	// ThrottleNext is used up. The choice is pseudo-random but reproducible.
	ThrottleRatio float64 `json:"throttleRatio,omitempty"`
	// Latency delays every matching call before it is answered.
	Latency time.Duration `json:"latency,omitempty"`
}

func (f Fault) matches(svc, op string) bool {
	return (f.Service == "" || f.Service == svc) && (f.Operation == "" || f.Operation == op)
}

// faultSet holds the active faults.
type faultSet struct {
	mu     sync.Mutex
	faults []*Fault
	rng    *rand.Rand
}

func newFaultSet(salt string) *faultSet {
	h := fnv.New64a()
	h.Write([]byte(salt))
	return &faultSet{rng: rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))}
}

// errFaultCanceled means the client went away during injected latency.
var errFaultCanceled = &apiError{Code: "RequestCanceled", Status: 499}

// apply delays the call as the faults say and reports whether to throttle
// it. No lock is held while sleeping.
func (s *faultSet) apply(ctx context.Context, svc, op string) *apiError {
	s.mu.Lock()
	var delay time.Duration
	throttle := false
	for _, f := range s.faults {
		if !f.matches(svc, op) {
			continue
		}
		delay = max(delay, f.Latency)
		switch {
		case f.ThrottleNext > 0:
			f.ThrottleNext--
			throttle = true
		case f.ThrottleRatio > 0 && s.rng.Float64() < f.ThrottleRatio:
			throttle = true
		}
	}
	s.faults = slices.DeleteFunc(s.faults, func(f *Fault) bool {
		return f.ThrottleNext == 0 && f.ThrottleRatio == 0 && f.Latency == 0
	})
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errFaultCanceled
		}
	}
	if throttle {
		return &apiError{Code: "Throttled", Status: http.StatusTooManyRequests}
	}
	return nil
}

// SetFault installs a fault, replacing any with the same service and
// operation. A fault with nothing to do removes it.
func (e *Emulator) SetFault(f Fault) {
	s := e.faults
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = slices.DeleteFunc(s.faults, func(x *Fault) bool {
		return x.Service == f.Service && x.Operation == f.Operation
	})
	if f.ThrottleNext > 0 || f.ThrottleRatio > 0 || f.Latency > 0 {
		s.faults = append(s.faults, &f)
	}
}

// ThrottleNext throttles the next n calls of service:operation (empty
// strings match everything).
func (e *Emulator) ThrottleNext(service, operation string, n int) {
	e.SetFault(Fault{Service: service, Operation: operation, ThrottleNext: n})
}

// SetLatency delays every call of service:operation by d.
func (e *Emulator) SetLatency(service, operation string, d time.Duration) {
	e.SetFault(Fault{Service: service, Operation: operation, Latency: d})
}

// Faults returns the active faults, with what is left of ThrottleNext.
func (e *Emulator) Faults() []Fault {
	s := e.faults
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Fault) int {
		return strings.Compare(a.Service+"\x00"+a.Operation, b.Service+"\x00"+b.Operation)
	})
	return out
}

// ClearFaults removes every fault.
func (e *Emulator) ClearFaults() {
	s := e.faults
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}
