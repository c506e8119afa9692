package hostisolate_test

import (
	"context"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/actionschema"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// TestHostState checks what each result tells the agent about the host:
// isolate and a reconcile that found a recorded isolation say isolated,
// unisolate says not, and a reconcile with nothing recorded or the
// simulated action say nothing.
func TestHostState(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name string
		got  *pluginv1.HostState
		want *bool
	}{
		{name: "isolate applied", got: (&hostisolate.IsolateResult{Applied: true, Recorded: true}).HostState(), want: &yes},
		{name: "already isolated", got: (&hostisolate.IsolateResult{AlreadyIsolated: true, Recorded: true}).HostState(), want: &yes},
		{name: "reconcile re-applied", got: (&hostisolate.IsolateResult{Reconcile: true, Recorded: true, Reapplied: true}).HostState(), want: &yes},
		{name: "reconcile, in place", got: (&hostisolate.IsolateResult{Reconcile: true, Recorded: true, AlreadyIsolated: true}).HostState(), want: &yes},
		{name: "reconcile, nothing recorded", got: (&hostisolate.IsolateResult{Reconcile: true}).HostState()},
		{name: "simulated", got: (&hostisolate.IsolateResult{Applied: true, Recorded: true, Simulated: true}).HostState()},
		{name: "unisolate", got: (&hostisolate.UnisolateResult{Removed: true}).HostState(), want: &no},
		{name: "unisolate, not isolated", got: (&hostisolate.UnisolateResult{NotIsolated: true}).HostState(), want: &no},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.want == nil && tc.got != nil:
				t.Fatalf("host state %v, want none", tc.got)
			case tc.want != nil && (tc.got == nil || tc.got.Isolated == nil || tc.got.GetIsolated() != *tc.want):
				t.Fatalf("host state %v, want isolated=%t", tc.got, *tc.want)
			}
		})
	}
}

// TestIsolateAsksToBeReconciled checks that host-isolate, and only it,
// asks agents to run it with reconcile=true at start.
func TestIsolateAsksToBeReconciled(t *testing.T) {
	ctx := context.Background()
	d, _ := hostisolate.NewIsolate().Describe(ctx)
	params, err := actionschema.ReconcileParams(d)
	if err != nil {
		t.Fatal(err)
	}
	if string(params) != `{"allow":[],"reconcile":true}` {
		t.Fatalf("reconcile params %s", params)
	}
	for _, a := range []interface {
		Describe(context.Context) (*pluginv1.ActionDescription, error)
	}{hostisolate.NewUnisolate(), hostisolate.NewSimulated()} {
		if d, _ := a.Describe(ctx); d.GetReconcileAtStart() != nil {
			t.Errorf("%s asks to be reconciled at start", d.GetName())
		}
	}
}
