package auth

import (
	"context"
	"errors"
	"testing"
)

func TestStreamsClose(t *testing.T) {
	tests := []struct {
		name       string
		closeName  string
		keep       string
		wantClosed int
		wantAlive  []string // serials of bob's streams still open
	}{
		{name: "revoke closes every stream of the operator", closeName: "bob", wantClosed: 2},
		{name: "rotate keeps the new serial's streams", closeName: "bob", keep: "new", wantClosed: 1, wantAlive: []string{"new"}},
		{name: "another operator's streams are untouched", closeName: "carol", wantClosed: 0, wantAlive: []string{"old", "new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewStreams()
			ctxs := map[string]context.Context{}
			for _, serial := range []string{"old", "new"} {
				ctx, cancel := context.WithCancelCause(context.Background())
				t.Cleanup(func() { cancel(nil) })
				t.Cleanup(r.add("bob", serial, cancel))
				ctxs[serial] = ctx
			}
			if n := r.Close(tt.closeName, tt.keep, ErrCredentialRevoked); n != tt.wantClosed {
				t.Fatalf("closed %d streams, want %d", n, tt.wantClosed)
			}
			alive := map[string]bool{}
			for _, s := range tt.wantAlive {
				alive[s] = true
			}
			for serial, ctx := range ctxs {
				if open := ctx.Err() == nil; open != alive[serial] {
					t.Errorf("stream on serial %s open = %v, want %v", serial, open, alive[serial])
				}
				if !alive[serial] && !errors.Is(context.Cause(ctx), ErrCredentialRevoked) {
					t.Errorf("stream on serial %s closed with %v, want the revocation cause", serial, context.Cause(ctx))
				}
			}
		})
	}
}

func TestStreamsUnregister(t *testing.T) {
	r := NewStreams()
	_, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	remove := r.add("bob", "s1", cancel)
	remove()
	if n := r.Close("bob", "", ErrCredentialRevoked); n != 0 {
		t.Fatalf("a finished stream was closed again (%d)", n)
	}
}
