package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestWatchesPastTheCapAreRefused: with --max-watches-per-operator 2, an
// operator's third open watch of a run is refused with RESOURCE_EXHAUSTED
// naming the flag, and a watch is allowed again once one ends.
func TestWatchesPastTheCapAreRefused(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--max-watches-per-operator", "2"}})
	facts := &agentv1.AgentFacts{Hostname: "fake-watch", Os: "linux"}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", facts)
	// The fake agent takes the task and never answers: the run stays open.
	if _, err := f.Connect(t, &agentv1.Hello{Facts: facts, Plugins: e2e.HonestPlugins(t, "noop")}, false); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID)

	creds, err := pki.LoadCreds(c.Creds)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	op := operatorv1.NewOperatorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() (context.CancelFunc, error) {
		wctx, wcancel := context.WithCancel(ctx)
		stream, err := op.WatchRun(wctx, &operatorv1.WatchRunRequest{RunId: run.RunID})
		if err == nil {
			_, err = stream.Recv() // the snapshot, or the refusal
		}
		return wcancel, err
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err != nil {
		t.Fatal(err)
	}
	_, err = open()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-watches-per-operator") {
		t.Fatalf("third watch: %v, want RESOURCE_EXHAUSTED naming --max-watches-per-operator", err)
	}
	first()
	e2e.WaitFor(t, 30*time.Second, "a watch slot to free up", func() bool {
		cancelIt, err := open()
		if err == nil {
			cancelIt()
		}
		return err == nil
	})
}
