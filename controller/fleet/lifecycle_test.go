package fleet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// enrollHost enrolls a host agent on instance in account 111122223333.
func (f *fleetUnderTest) enrollHost(t *testing.T, instance string) (string, error) {
	t.Helper()
	resp, err := f.svc.Enroll(f.from(), &agentv1.EnrollRequest{JoinToken: f.token(t, store.JoinToken{Role: "host"}), CsrDer: csr(t),
		Facts: &agentv1.AgentFacts{Hostname: "web-1", Os: "linux", Arch: "amd64", InstanceId: instance, Account: "111122223333", Region: "eu-west-1"}})
	return resp.GetAgentId(), err
}

// TestRevokedInstanceCannotEnrollUntilForgotten: once an instance's agent
// is revoked, a new enrollment from that instance is refused, without
// using up the token, until the revoked agent is forgotten; other
// instances are not affected.
func TestRevokedInstanceCannotEnrollUntilForgotten(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	id, err := f.enrollHost(t, "i-0aaa")
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.Revoke(ctx, id, "host compromised")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Revoked || a.RevokeReason != "host compromised" || !a.RevokedAt.Equal(f.now) {
		t.Fatalf("revoked agent %+v; want revoked now for the reason given", a)
	}
	// A second revoke keeps the first reason.
	if a, _ := f.svc.Revoke(ctx, id, "again"); a.RevokeReason != "host compromised" {
		t.Fatalf("a second revoke replaced the reason with %q", a.RevokeReason)
	}
	secret := f.token(t, store.JoinToken{Role: "host"})
	req := &agentv1.EnrollRequest{JoinToken: secret, CsrDer: csr(t),
		Facts: &agentv1.AgentFacts{Hostname: "web-1", Os: "linux", InstanceId: "i-0aaa", Account: "111122223333"}}
	if _, err := f.svc.Enroll(f.from(), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("re-enrolling the revoked instance: %v, want PermissionDenied", err)
	}
	if _, err := f.enrollHost(t, "i-0bbb"); err != nil {
		t.Fatalf("another instance: %v", err)
	}
	if _, err := f.svc.Forgettable(a); err != nil {
		t.Fatalf("a revoked agent is not forgettable: %v", err)
	}
	if err := f.svc.Forget(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.GetAgent(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the forgotten agent is still stored: %v", err)
	}
	// The token the refused attempt presented was not used up.
	if _, err := f.svc.Enroll(f.from(), req); err != nil {
		t.Fatalf("enrolling the instance after its revoked agent was forgotten: %v", err)
	}
}

func TestForgettable(t *testing.T) {
	tests := []struct {
		name string
		edit func(f *fleetUnderTest, a *store.Agent)
		want string
	}{
		{name: "revoked", edit: func(f *fleetUnderTest, a *store.Agent) { a.Revoked = true }, want: fleet.ForgetRevoked},
		{name: "unseen for eight days", edit: func(f *fleetUnderTest, a *store.Agent) { a.LastSeen = f.now.Add(-8 * 24 * time.Hour) }, want: fleet.ForgetGone},
		{name: "seen yesterday", edit: func(f *fleetUnderTest, a *store.Agent) { a.LastSeen = f.now.Add(-24 * time.Hour) }},
		{name: "seen now", edit: func(f *fleetUnderTest, a *store.Agent) { a.LastSeen = f.now }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			a := &store.Agent{ID: "agt_1", Role: "host", Hostname: "web-1", Facts: &agentv1.AgentFacts{Hostname: "web-1"}}
			tt.edit(f, a)
			why, err := f.svc.Forgettable(a)
			if tt.want == "" {
				if !errors.Is(err, fleet.ErrNotForgettable) {
					t.Fatalf("Forgettable = %q, %v; want ErrNotForgettable", why, err)
				}
				return
			}
			if err != nil || why != tt.want {
				t.Fatalf("Forgettable = %q, %v; want %q", why, err, tt.want)
			}
		})
	}
}
