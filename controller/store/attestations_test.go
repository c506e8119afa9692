package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

func TestEnrollAttestedClaimsAnInstanceOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openFresh(t)
		now := time.Unix(1_800_000_000, 0)
		agent := func(id string) *store.Agent {
			return &store.Agent{ID: id, Role: "host", Hostname: "web-1", Facts: &agentv1.AgentFacts{Hostname: "web-1"}, EnrolledAt: now, LastSeen: now}
		}
		iidOf := func(id string) *store.Attestation {
			return &store.Attestation{AgentID: id, Method: store.AttestAWSIID, Subject: "i-0123456789abcdef0", InstanceID: "i-0123456789abcdef0",
				Account: "123456789012", Region: "eu-west-1", At: now}
		}
		if err := s.EnrollAttested(ctx, agent("agt-1"), iidOf("agt-1")); err != nil {
			t.Fatal(err)
		}
		var taken *store.InstanceEnrolledError
		if err := s.EnrollAttested(ctx, agent("agt-2"), iidOf("agt-2")); !errors.As(err, &taken) || taken.AgentID != "agt-1" || taken.Revoked {
			t.Fatalf("second enrollment of the instance: %v", err)
		}
		if _, err := s.GetAgent(ctx, "agt-2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused enrollment left agent agt-2 behind: %v", err)
		}
		a, err := s.GetAgent(ctx, "agt-1")
		if err != nil {
			t.Fatal(err)
		}
		a.Revoked = true
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.EnrollAttested(ctx, agent("agt-3"), iidOf("agt-3")); !errors.As(err, &taken) || !taken.Revoked {
			t.Fatalf("enrollment of a revoked agent's instance: %v", err)
		}
		// STS attestations name no instance and never collide.
		for _, id := range []string{"agt-w1", "agt-w2"} {
			if err := s.EnrollAttested(ctx, agent(id), &store.Attestation{AgentID: id, Method: store.AttestAWSSTS,
				Subject: "arn:aws:sts::123456789012:assumed-role/W/i", Account: "123456789012", At: now}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.ListAttestations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 || all["agt-1"].InstanceID != "i-0123456789abcdef0" || all["agt-w2"].Method != store.AttestAWSSTS || !all["agt-1"].At.Equal(now) {
			t.Fatalf("attestations %+v", all)
		}
	})
}
