package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// observed records what a store's Observer is told.
type observed struct {
	mu      sync.Mutex
	ops     []string
	retries []string
}

func (o *observed) observer() store.Observer {
	return store.Observer{
		Operation: func(kind, outcome string, took time.Duration) {
			o.mu.Lock()
			defer o.mu.Unlock()
			if took < 0 {
				outcome += " (negative duration)"
			}
			o.ops = append(o.ops, kind+" "+outcome)
		},
		Retry: func(reason string) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.retries = append(o.retries, reason)
		},
	}
}

// take returns what was observed since the last take.
func (o *observed) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := o.ops
	o.ops = nil
	return ops
}

// TestObserverSeesEachOperationOnce checks, on both backends, that a store
// opened with an Observer reports each write transaction and each read
// query once, with its kind and outcome: a read that finds nothing is a
// successful read, a cancelled one is "canceled".
func TestObserverSeesEachOperationOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		o := b.database(t)
		var got observed
		o.Observer = got.observer()
		s, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if ops := got.take(); len(ops) != 0 {
			t.Fatalf("opening the store was observed: %v", ops)
		}
		ctx := context.Background()
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		tests := []struct {
			name string
			do   func() error
			want []string
		}{
			{"a write", func() error {
				return s.AppendAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: "operator:alice", Action: "test", Subject: "s"})
			}, []string{"write ok"}},
			{"a read of rows", func() error {
				_, err := s.ListOperators(ctx)
				return err
			}, []string{"read ok"}},
			{"a read that finds nothing", func() error {
				if _, err := s.GetOperator(ctx, "nobody"); err != store.ErrNotFound {
					t.Errorf("GetOperator(nobody) = %v, want ErrNotFound", err)
				}
				return nil
			}, []string{"read ok"}},
			{"a cancelled read", func() error {
				if _, err := s.ListOperators(cancelled); err == nil {
					t.Error("a read with a cancelled context succeeded")
				}
				return nil
			}, []string{"read canceled"}},
			{"a cancelled write", func() error {
				if err := s.AppendAudit(cancelled, &store.AuditRecord{At: time.Now(), Actor: "operator:alice", Action: "test"}); err == nil {
					t.Error("a write with a cancelled context succeeded")
				}
				return nil
			}, []string{"write canceled"}},
		}
		for _, tt := range tests {
			if err := tt.do(); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if ops := got.take(); !slices.Equal(ops, tt.want) {
				t.Errorf("%s: observed %v, want %v", tt.name, ops, tt.want)
			}
		}
	})
}
