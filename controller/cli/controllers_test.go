package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fakeRegistry is an operator service whose ListControllers answers with
// a fixed registry.
type fakeRegistry struct {
	fakeOperator
	controllers []*operatorv1.ControllerInfo
}

func (f *fakeRegistry) ListControllers(context.Context, *operatorv1.ListControllersRequest) (*operatorv1.ListControllersResponse, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	return &operatorv1.ListControllersResponse{Controllers: f.controllers}, nil
}

func TestControllersList(t *testing.T) {
	two := []*operatorv1.ControllerInfo{
		{Id: "ctl-0a1b", Address: "10.0.1.5:7443", Agents: 1200, Leases: []string{"playbook-executor", "sqs-poller"}, Version: "0.1.0",
			HeartbeatAt: timestamppb.New(t0), StartedAt: timestamppb.New(t0)},
		{Id: "ctl-9f8e", Address: "10.0.2.7:7443", Agents: 1187, Version: "0.1.0", HeartbeatAt: timestamppb.New(t1)},
	}
	tests := []struct {
		name        string
		controllers []*operatorv1.ControllerInfo
		args        []string
		check       func(t *testing.T, stdout string)
	}{
		{"json", two, []string{"controllers", "list", "--json"}, func(t *testing.T, stdout string) {
			var got []map[string]any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, stdout)
			}
			want := []map[string]any{
				{"id": "ctl-0a1b", "address": "10.0.1.5:7443", "agents": 1200, "leases": []any{"playbook-executor", "sqs-poller"}, "version": "0.1.0",
					"heartbeat_at": "2026-12-07T03:00:00Z"},
				{"id": "ctl-9f8e", "address": "10.0.2.7:7443", "agents": 1187, "leases": []any{}, "version": "0.1.0",
					"heartbeat_at": "2026-12-07T03:00:01.5Z"},
			}
			if len(got) != len(want) {
				t.Fatalf("%d controllers, want %d", len(got), len(want))
			}
			for i := range want {
				if len(got[i]) != len(want[i]) {
					t.Errorf("controller %d has keys %v", i, got[i])
				}
				for k, v := range want[i] {
					if !jsonEqual(got[i][k], v) {
						t.Errorf("controller %d %s = %v, want %v", i, k, got[i][k], v)
					}
				}
			}
		}},
		{"table", two, []string{"controllers", "list"}, func(t *testing.T, stdout string) {
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
				t.Fatalf("table:\n%s", stdout)
			}
			for i, want := range [][]string{{"ctl-0a1b", "10.0.1.5:7443", "1200", "playbook-executor,sqs-poller", "0.1.0", "2026-12-07T03:00:00Z"},
				{"ctl-9f8e", "10.0.2.7:7443", "1187", "-", "0.1.0", "2026-12-07T03:00:01Z"}} {
				if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("row %d: %q, want %q", i, got, want)
				}
			}
		}},
		{"none live, json", nil, []string{"controllers", "list", "--json"}, func(t *testing.T, stdout string) {
			if strings.TrimSpace(stdout) != "[]" {
				t.Fatalf("stdout %q, want []", stdout)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, serve(t, &fakeRegistry{controllers: tc.controllers}), tc.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			tc.check(t, r.stdout)
		})
	}
}
