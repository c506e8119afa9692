package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// scripted is an action whose behaviour each test case sets.
type scripted struct {
	run func(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error)
}

func (s scripted) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{Name: "scripted", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE}, nil
}

func (s scripted) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	return s.run(ctx, req, emit)
}

func TestExecuteOverGRPC(t *testing.T) {
	big := bytes.Repeat([]byte("evidence"), sdk.ChunkSize/4) // two chunks
	tests := []struct {
		name      string
		run       func(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error)
		wantOut   string
		wantErr   string
		wantRes   string
		wantBytes []byte
		wantLogs  int
	}{
		{
			name: "result with progress and logs",
			run: func(_ context.Context, _ *sdk.Request, emit sdk.Emitter) (any, error) {
				_ = emit.Progress(50, "half")
				_ = emit.Log("info", "working")
				return map[string]int{"n": 1}, nil
			},
			wantOut: `{"n":1}`, wantLogs: 1,
		},
		{
			name: "artifact reassembled in order and closed",
			run: func(_ context.Context, _ *sdk.Request, emit sdk.Emitter) (any, error) {
				w := emit.Artifact("a.bin", "application/octet-stream")
				if _, err := io.Copy(w, bytes.NewReader(big)); err != nil {
					return nil, err
				}
				return map[string]bool{"ok": true}, w.Close()
			},
			wantOut: `{"ok":true}`, wantBytes: big,
		},
		{
			name: "plain error becomes the call's error",
			run: func(context.Context, *sdk.Request, sdk.Emitter) (any, error) {
				return nil, errors.New("instance not found: check the region")
			},
			wantErr: "instance not found: check the region",
		},
		{
			name: "failure with output reports both",
			run: func(context.Context, *sdk.Request, sdk.Emitter) (any, error) {
				return map[string]string{"applied": "step1"}, errors.New("step2 failed")
			},
			wantOut: `{"applied":"step1"}`, wantRes: "step2 failed",
		},
		{
			name: "panic is contained",
			run: func(context.Context, *sdk.Request, sdk.Emitter) (any, error) {
				var m map[string]int
				m["x"] = 1
				return nil, nil
			},
			wantErr: "action panicked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sdktest.Start(t, scripted{run: tt.run})
			o := sdktest.Execute(context.Background(), t, c, nil, map[string]any{})
			if tt.wantErr != "" {
				if o.Err == nil || !strings.Contains(o.Err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", o.Err, tt.wantErr)
				}
				return
			}
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if got := string(o.Result.GetOutputJson()); got != tt.wantOut {
				t.Fatalf("output %s, want %s", got, tt.wantOut)
			}
			if o.Result.GetError() != tt.wantRes {
				t.Fatalf("result error %q, want %q", o.Result.GetError(), tt.wantRes)
			}
			if len(o.Logs) != tt.wantLogs {
				t.Fatalf("%d logs, want %d", len(o.Logs), tt.wantLogs)
			}
			if tt.wantBytes != nil {
				if !bytes.Equal(o.Artifacts["a.bin"], tt.wantBytes) || len(o.Closed) != 1 {
					t.Fatalf("artifact: %d bytes, closed %v", len(o.Artifacts["a.bin"]), o.Closed)
				}
			}
		})
	}
}

func TestDecodeRefusesUnknownParams(t *testing.T) {
	c := sdktest.Start(t, noop.Action{})
	o := sdktest.Execute(context.Background(), t, c, nil, map[string]any{"mesage": "typo"})
	if o.Err == nil || !strings.Contains(o.Err.Error(), `unknown field "mesage"`) {
		t.Fatalf("err = %v, want the unknown field named", o.Err)
	}
}

func TestServeInMemory(t *testing.T) {
	c, stop, err := sdk.ServeInMemory(noop.Action{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	d, err := c.Describe(context.Background())
	if err != nil || d.GetName() != "noop" {
		t.Fatalf("describe: %v %v", d, err)
	}
	o := sdktest.Execute(context.Background(), t, c, nil, map[string]any{"message": "hi"})
	var res noop.Result
	o.Output(t, &res)
	if !res.OK || res.Message != "hi" {
		t.Fatalf("result %+v", res)
	}
}
