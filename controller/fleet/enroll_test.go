package fleet_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// enrollRequest is a well-formed enrollment of host name with token.
func enrollRequest(t *testing.T, token, name string) *agentv1.EnrollRequest {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	return &agentv1.EnrollRequest{JoinToken: token, CsrDer: csr, Role: agentv1.AgentRole_AGENT_ROLE_HOST,
		Facts: &agentv1.AgentFacts{Hostname: name, Os: "linux", Arch: "amd64"}}
}

// TestOneUseTokenEnrollsOneAgent checks that a join token with one use is
// spent by the agent it enrolls: a second agent is refused, whether it
// comes after the first or at the same moment.
func TestOneUseTokenEnrollsOneAgent(t *testing.T) {
	c := playbookruntest.StartController(t, playbookruntest.Options{})
	ctx := context.Background()
	newToken := func(t *testing.T, uses int) string {
		t.Helper()
		tok := fmt.Sprintf("fbj_test-%s-%d", t.Name(), time.Now().UnixNano())
		if err := c.Store.CreateJoinToken(ctx, &store.JoinToken{Hash: fleet.HashToken(tok), Role: "host", Uses: uses, UsesLeft: uses,
			ExpiresAt: time.Now().Add(time.Hour), CreatedBy: "test", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Each call comes from its own address, so this test of token use is
	// not also a test of the per-source enrollment limits.
	var addrs atomic.Int32
	ctxFrom := func() context.Context {
		n := addrs.Add(1)
		return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, byte(n>>8), byte(n)), Port: 4000}})
	}
	refusedAsSpent := func(err error) bool {
		return status.Code(err) == codes.Unauthenticated
	}

	t.Run("one after the other", func(t *testing.T) {
		tok := newToken(t, 1)
		if _, err := c.Fleet.Enroll(ctxFrom(), enrollRequest(t, tok, "first")); err != nil {
			t.Fatalf("the first agent: %v", err)
		}
		_, err := c.Fleet.Enroll(ctxFrom(), enrollRequest(t, tok, "second"))
		if !refusedAsSpent(err) {
			t.Fatalf("the second agent: %v, want Unauthenticated", err)
		}
	})

	t.Run("at the same moment", func(t *testing.T) {
		const racers = 8
		for round := 0; round < 5; round++ {
			tok := newToken(t, 1)
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, racers)
			for i := range racers {
				req := enrollRequest(t, tok, fmt.Sprintf("racer-%d", i))
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = c.Fleet.Enroll(ctxFrom(), req)
				}()
			}
			close(start)
			wg.Wait()
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !refusedAsSpent(err):
					t.Fatalf("round %d racer %d: %v, want success or Unauthenticated", round, i, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d agents enrolled with a one-use token, want exactly 1 (%v)", round, ok, errs)
			}
		}
	})

	t.Run("a counted token is spent after its uses", func(t *testing.T) {
		tok := newToken(t, 3)
		for i := range 3 {
			if _, err := c.Fleet.Enroll(ctxFrom(), enrollRequest(t, tok, fmt.Sprintf("counted-%d", i))); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		if _, err := c.Fleet.Enroll(ctxFrom(), enrollRequest(t, tok, "counted-4")); !refusedAsSpent(err) {
			t.Fatalf("a fourth use: %v, want Unauthenticated", err)
		}
	})
}
