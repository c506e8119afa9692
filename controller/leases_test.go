package controller_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/cluster"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestSingleControllerHoldsEveryLease starts one controller on its SQLite
// store: it takes every singleton's lease (the playbook executor and run
// resumption; no SQS queue is set) and lists itself, with them, as the one
// live controller; once stopped, it has released them.
func TestSingleControllerHoldsEveryLease(t *testing.T) {
	c := playbookruntest.StartController(t, playbookruntest.Options{})
	ctx := context.Background()
	want := []string{cluster.LeasePlaybooks, cluster.LeaseRuns}
	var resp *operatorv1.ListControllersResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		resp, err = c.Operator.ListControllers(playbookruntest.As(ctx, "viewer", operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER),
			&operatorv1.ListControllersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetControllers()) == 1 && len(resp.GetControllers()[0].GetLeases()) == len(want) && slices.Equal(c.Singletons.HeldLeases(), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry never showed this controller with its leases: %v", resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := resp.GetControllers()[0]
	if got.GetId() != c.ID() || got.GetAddress() != c.Addr || !slices.Equal(got.GetLeases(), want) {
		t.Fatalf("registry entry %v; controller %s at %s", got, c.ID(), c.Addr)
	}

	c.Stop(t)
	st, err := store.OpenSQLite(ctx, filepath.Join(c.DataDir, controller.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	leases, err := st.ListLeases(ctx)
	if err != nil || len(leases) != len(want) {
		t.Fatalf("leases %+v %v", leases, err)
	}
	if live, err := st.ListControllers(ctx, time.Now().Add(-time.Minute)); err != nil || len(live) != 0 {
		t.Errorf("after a clean stop, the registry still lists %+v (%v)", live, err)
	}
	for _, l := range leases {
		if l.Holder != c.ID() || l.Token != 1 || !l.ExpiresAt.IsZero() {
			t.Errorf("after a clean stop, lease %+v is still held", l)
		}
	}
}
