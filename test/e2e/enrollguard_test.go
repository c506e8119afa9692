package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// TestEnrollmentGuessingIsLimitedAndAggregated is finding 9 of issue 11:
// an unauthenticated caller guessing join tokens from one address is
// slowed down with RESOURCE_EXHAUSTED and a retry-after, its refusals land
// in the audit log as a couple of records carrying its address and the
// full count (the pending count is written when the controller stops),
// and a valid enrollment from the same address works once the budget
// refills.
func TestEnrollmentGuessingIsLimitedAndAggregated(t *testing.T) {
	b := Build(t)
	// A window longer than the test: the summary is written by the
	// controller's shutdown, which the test forces with a restart.
	c := StartController(t, b, ControllerOptions{Args: []string{"--enroll-refusal-window", "1h"}})

	caPEM, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := agentv1.NewAgentServiceClient(conn)

	const guesses = 200
	codesSeen := map[codes.Code]int{}
	for i := range guesses {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var trailer metadata.MD
		_, err := client.Enroll(ctx, &agentv1.EnrollRequest{JoinToken: "fbj_guess-" + string(rune('a'+i%26)) + strings.Repeat("x", i%7),
			CsrDer: []byte("not a csr"), Role: agentv1.AgentRole_AGENT_ROLE_HOST,
			Facts: &agentv1.AgentFacts{Hostname: "guesser", Os: "linux", Arch: "amd64"}}, grpc.Trailer(&trailer))
		cancel()
		code := status.Code(err)
		codesSeen[code]++
		switch code {
		case codes.Unauthenticated:
		case codes.ResourceExhausted:
			if ra := trailer.Get("retry-after"); len(ra) != 1 || ra[0] == "" || !strings.Contains(err.Error(), "retry after") {
				t.Fatalf("guess %d: %v with retry-after trailer %v, want a retry-after hint in both", i, err, ra)
			}
		default:
			t.Fatalf("guess %d: %v, want Unauthenticated or ResourceExhausted", i, err)
		}
	}
	if codesSeen[codes.Unauthenticated] == 0 || codesSeen[codes.ResourceExhausted] == 0 {
		t.Fatalf("refusals %v: want some bad tokens refused and the rest rate-limited", codesSeen)
	}
	t.Logf("guesses refused: %v", codesSeen)

	// A valid enrollment from the same address waits for the refill; the
	// waits it gets are refusals too.
	tok := c.Token(t, "host", 1)
	refused := guesses
	var enrolled *FakeAgent
	WaitFor(t, 60*time.Second, "a valid enrollment after the refill", func() bool {
		f, err := c.TryEnrollFake(tok, "host", &agentv1.AgentFacts{Hostname: "honest", Os: "linux", Arch: "amd64"})
		if status.Code(err) == codes.ResourceExhausted {
			refused++
			time.Sleep(200 * time.Millisecond)
			return false
		}
		if err != nil {
			t.Fatalf("the valid enrollment: %v", err)
		}
		enrolled = f
		return true
	})

	c.Restart(t)
	var audit []struct {
		Action  string          `json:"action"`
		Subject string          `json:"subject"`
		Detail  json.RawMessage `json:"detail"`
	}
	c.MustJSON(t, &audit, 0, "audit", "list", "--limit", "1000")
	var records, total int
	for _, rec := range audit {
		var d struct {
			Source      string    `json:"source"`
			Count       int       `json:"count"`
			WindowStart time.Time `json:"window_start"`
			WindowEnd   time.Time `json:"window_end"`
		}
		if err := json.Unmarshal(rec.Detail, &d); err != nil {
			t.Fatalf("audit detail %s: %v", rec.Detail, err)
		}
		switch rec.Action {
		case "agent.enroll_refused":
			records++
			total += d.Count
			if d.Source != "127.0.0.1" || d.Count < 1 || d.WindowStart.IsZero() {
				t.Errorf("refusal record %s lacks the source, count or window", rec.Detail)
			}
			if d.Count > 1 && d.WindowEnd.Before(d.WindowStart) {
				t.Errorf("summary %s ends before it starts", rec.Detail)
			}
		case "agent.enroll":
			if rec.Subject == enrolled.ID && d.Source != "127.0.0.1" {
				t.Errorf("enrollment record %s lacks the source", rec.Detail)
			}
		}
	}
	if records > 4 {
		t.Errorf("%d agent.enroll_refused records for %d refusals, want at most a few", records, refused)
	}
	if total != refused {
		t.Errorf("the refusal records count %d, want %d", total, refused)
	}
}
