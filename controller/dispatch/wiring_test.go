package dispatch_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// dropPusher reaches no agent.
type dropPusher struct{}

func (dropPusher) Push(string, *agentv1.ConnectResponse) bool { return false }

// TestSetDeps checks the composition root's contract with the dispatcher:
// the dependencies built after it are set exactly once, and a dispatcher
// that never got a pusher refuses to start instead of dropping every task.
func TestSetDeps(t *testing.T) {
	evidence := func(context.Context, string) ([]string, error) { return nil, nil }
	tests := []struct {
		name string
		// inConfig gives the pusher in Config instead of SetDeps.
		inConfig bool
		// calls are the SetDeps calls made before Run.
		calls []dispatch.Deps
		// wantSet are the errors of those calls, in order (nil for success).
		wantSet []error
		// wantRun is Run's error; nil means it starts.
		wantRun error
	}{
		{name: "once", calls: []dispatch.Deps{{Pusher: dropPusher{}, TaskEvidence: evidence}}, wantSet: []error{nil}},
		{name: "never", wantRun: dispatch.ErrNotWired},
		{name: "twice", calls: []dispatch.Deps{{Pusher: dropPusher{}}, {Pusher: dropPusher{}}}, wantSet: []error{nil, dispatch.ErrWiredTwice}},
		{name: "after a pusher in Config", inConfig: true, calls: []dispatch.Deps{{Pusher: dropPusher{}}}, wantSet: []error{dispatch.ErrWiredTwice}},
		{name: "pusher in Config alone", inConfig: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "d.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			cfg := dispatch.Config{Store: st, Signer: tasksign.NewSigner(key)}
			if tc.inConfig {
				cfg.Pusher = dropPusher{}
			}
			d, err := dispatch.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, deps := range tc.calls {
				if err := d.SetDeps(deps); !errors.Is(err, tc.wantSet[i]) {
					t.Fatalf("SetDeps call %d: %v, want %v", i+1, err, tc.wantSet[i])
				}
			}
			if err := d.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a started loop returns at once
			if err := d.Run(ctx); !errors.Is(err, tc.wantRun) {
				t.Fatalf("Run: %v, want %v", err, tc.wantRun)
			}
		})
	}
}

// TestSetDepsNeedsPusher checks that SetDeps without a pusher wires nothing.
func TestSetDepsNeedsPusher(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "d.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	d, err := dispatch.New(dispatch.Config{Store: st, Signer: tasksign.NewSigner(key)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetDeps(dispatch.Deps{}); err == nil {
		t.Fatal("SetDeps without a pusher succeeded")
	}
	if err := d.Run(context.Background()); !errors.Is(err, dispatch.ErrNotWired) {
		t.Fatalf("Run: %v, want ErrNotWired", err)
	}
}
