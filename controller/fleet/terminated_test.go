package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// instanceStates is a fake attest.InstanceReader: the state of each
// instance by account/region/id, or an error to return for it.
type instanceStates struct {
	mu     sync.Mutex
	states map[string]string
	errs   map[string]error
	asked  []string
}

func (s *instanceStates) set(account, region, id, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.states == nil {
		s.states = map[string]string{}
	}
	s.states[account+"/"+region+"/"+id] = state
}

func (s *instanceStates) fail(account, region, id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs == nil {
		s.errs = map[string]error{}
	}
	s.errs[account+"/"+region+"/"+id] = err
}

func (s *instanceStates) Instance(_ context.Context, account, region, id string) (*attest.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := account + "/" + region + "/" + id
	s.asked = append(s.asked, key)
	if err := s.errs[key]; err != nil {
		return nil, err
	}
	st, ok := s.states[key]
	if !ok {
		return nil, attest.ErrNoInstance
	}
	return &attest.Instance{State: st}, nil
}

// auditRecord is one audit call.
type auditRecord struct {
	actor, action, subject string
	detail                 any
}

// newAuditedFleet is newFleet whose audit records are kept.
func newAuditedFleet(t *testing.T) (*fleetUnderTest, *[]auditRecord) {
	t.Helper()
	f := newFleet(t)
	var (
		mu  sync.Mutex
		log []auditRecord
	)
	svc, err := fleet.New(fleet.Config{Store: f.store, CA: f.ca, Signer: f.signer, Dispatcher: nopDispatcher{},
		Clock: func() time.Time { return f.now }, CertTTL: certTTL,
		Audit: func(_ context.Context, actor, action, subject string, detail any) {
			mu.Lock()
			defer mu.Unlock()
			log = append(log, auditRecord{actor, action, subject, detail})
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f, &log
}

func putHost(t *testing.T, f *fleetUnderTest, id, account, region, instance string, edit func(*store.Agent)) {
	t.Helper()
	a := &store.Agent{ID: id, Role: "host", Hostname: id, EnrolledAt: f.now, LastSeen: f.now, CertSerial: "01",
		Facts: &agentv1.AgentFacts{Hostname: id, InstanceId: instance, Account: account, Region: region}}
	if edit != nil {
		edit(a)
	}
	if err := f.store.PutAgent(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// TestSweepTerminated: only an agent whose instance AWS reports in the
// terminated state is marked terminated, once, and audited as the system's.
func TestSweepTerminated(t *testing.T) {
	const acct, region = "111122223333", "eu-west-1"
	tests := []struct {
		name           string
		agent          func(*store.Agent)
		instance       string
		state          string
		lookupErr      error
		wantTerminated bool
		wantChecked    int
		wantFailed     int
	}{
		{name: "running", instance: "i-run", state: "running", wantChecked: 1},
		{name: "stopped", instance: "i-stop", state: "stopped", wantChecked: 1},
		{name: "shutting down is not yet terminated", instance: "i-down", state: "shutting-down", wantChecked: 1},
		{name: "terminated", instance: "i-term", state: "terminated", wantChecked: 1, wantTerminated: true},
		{name: "unknown to AWS proves nothing", instance: "i-gone", wantChecked: 1},
		{name: "a failed lookup is tried again later", instance: "i-err", lookupErr: errors.New("AccessDenied"), wantChecked: 1, wantFailed: 1},
		{name: "no instance in the certificate", instance: "", state: "terminated"},
		{name: "a revoked agent is not looked up", instance: "i-rev", state: "terminated",
			agent: func(a *store.Agent) { a.Revoked, a.RevokedAt = true, a.EnrolledAt }},
		{name: "no region in the certificate", instance: "i-noreg", state: "terminated",
			agent: func(a *store.Agent) { a.Facts.Region = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, audit := newAuditedFleet(t)
			ctx := context.Background()
			putHost(t, f, "agt_1", acct, region, tt.instance, tt.agent)
			aws := &instanceStates{}
			if tt.state != "" {
				aws.set(acct, region, tt.instance, tt.state)
			}
			if tt.lookupErr != nil {
				aws.fail(acct, region, tt.instance, tt.lookupErr)
			}
			sw, err := f.svc.SweepTerminated(ctx, aws, 0)
			if err != nil {
				t.Fatal(err)
			}
			if sw.Checked != tt.wantChecked || sw.Failed != tt.wantFailed {
				t.Fatalf("sweep checked %d, failed %d; want %d, %d", sw.Checked, sw.Failed, tt.wantChecked, tt.wantFailed)
			}
			got, err := f.store.GetAgent(ctx, "agt_1")
			if err != nil {
				t.Fatal(err)
			}
			if got.Terminated() != tt.wantTerminated {
				t.Fatalf("terminated = %v (at %v); want %v", got.Terminated(), got.TerminatedAt, tt.wantTerminated)
			}
			var marks []auditRecord
			for _, r := range *audit {
				if r.action == "agent.terminated" {
					marks = append(marks, r)
				}
			}
			if !tt.wantTerminated {
				if len(marks) != 0 || len(sw.Terminated) != 0 {
					t.Fatalf("audited %v, reported %v; want no termination", marks, sw.Terminated)
				}
				return
			}
			if !got.TerminatedAt.Equal(f.now) || fmt.Sprint(sw.Terminated) != "[agt_1]" {
				t.Fatalf("terminated at %v, reported %v; want now and [agt_1]", got.TerminatedAt, sw.Terminated)
			}
			if len(marks) != 1 || marks[0].actor != "system" || marks[0].subject != "agt_1" {
				t.Fatalf("audit %+v; want one agent.terminated by system for agt_1", marks)
			}
			d := marks[0].detail.(map[string]any)
			if d["instance_id"] != tt.instance || d["account"] != acct || d["instance_state"] != "terminated" {
				t.Fatalf("audit detail %v", d)
			}
			// A second sweep neither looks the instance up again nor
			// audits it twice.
			aws.asked = nil
			if sw, err := f.svc.SweepTerminated(ctx, aws, 0); err != nil || sw.Checked != 0 || len(aws.asked) != 0 {
				t.Fatalf("second sweep: %+v, %v, asked %v", sw, err, aws.asked)
			}
		})
	}
}

// TestForgetTerminatedAfter: a terminated agent is forgotten once it has
// been terminated for the period, audited as the system's with why
// "terminated", and never when the period is 0; others are kept.
func TestForgetTerminatedAfter(t *testing.T) {
	const acct, region = "111122223333", "eu-west-1"
	tests := []struct {
		name        string
		forgetAfter time.Duration
		elapsed     time.Duration
		wantForgot  bool
	}{
		{name: "period not over", forgetAfter: time.Hour, elapsed: 59 * time.Minute},
		{name: "period over", forgetAfter: time.Hour, elapsed: time.Hour, wantForgot: true},
		{name: "no period keeps it", forgetAfter: 0, elapsed: 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, audit := newAuditedFleet(t)
			ctx := context.Background()
			putHost(t, f, "agt_term", acct, region, "i-term", nil)
			putHost(t, f, "agt_live", acct, region, "i-live", nil)
			aws := &instanceStates{}
			aws.set(acct, region, "i-term", "terminated")
			aws.set(acct, region, "i-live", "running")
			if _, err := f.svc.SweepTerminated(ctx, aws, tt.forgetAfter); err != nil {
				t.Fatal(err)
			}
			if a, _ := f.store.GetAgent(ctx, "agt_term"); a == nil || !a.Terminated() {
				t.Fatalf("not marked terminated: %+v", a)
			}
			if why, err := f.svc.Forgettable(mustAgent(t, f, "agt_term")); err != nil || why != fleet.ForgetTerminated {
				t.Fatalf("Forgettable = %q, %v; want %q", why, err, fleet.ForgetTerminated)
			}
			f.now = f.now.Add(tt.elapsed)
			sw, err := f.svc.SweepTerminated(ctx, aws, tt.forgetAfter)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.store.GetAgent(ctx, "agt_term")
			if forgot := errors.Is(err, store.ErrNotFound); forgot != tt.wantForgot {
				t.Fatalf("forgotten = %v (%v), reported %v; want %v", forgot, err, sw.Forgotten, tt.wantForgot)
			}
			if _, err := f.store.GetAgent(ctx, "agt_live"); err != nil {
				t.Fatalf("the running instance's agent: %v", err)
			}
			var forgets []auditRecord
			for _, r := range *audit {
				if r.action == "agent.forget" {
					forgets = append(forgets, r)
				}
			}
			if !tt.wantForgot {
				if len(forgets) != 0 {
					t.Fatalf("audited %v; want no forget", forgets)
				}
				return
			}
			if len(forgets) != 1 || forgets[0].actor != "system" || forgets[0].subject != "agt_term" ||
				forgets[0].detail.(map[string]any)["why"] != fleet.ForgetTerminated {
				t.Fatalf("audit %+v; want one agent.forget by system, why terminated", forgets)
			}
		})
	}
}

func mustAgent(t *testing.T, f *fleetUnderTest, id string) *store.Agent {
	t.Helper()
	a, err := f.store.GetAgent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
