package playbook_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/playbooktest"
)

func ec2Evaluator(t *testing.T) (*playbook.Playbook, *playbook.Evaluator) {
	t.Helper()
	data, err := os.ReadFile("testdata/ec2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := playbook.Parse("ec2.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := playbook.NewEvaluator(pb, playbooktest.FirstParty())
	if err != nil {
		t.Fatal(err)
	}
	return pb, ev
}

func TestResolve(t *testing.T) {
	pb, ev := ec2Evaluator(t)
	inputs, err := pb.ParseInputs([]string{"instance_id=i-0abc", "allow_cidrs=10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	kase := playbook.Case{ID: "case-7", Title: "SSH brute force"}
	captured := map[string]playbook.StepResult{"capture": {Status: playbook.StatusSucceeded}}
	isolated := map[string]playbook.StepResult{
		"capture": {Status: playbook.StatusSucceeded},
		"isolate": {Status: playbook.StatusSucceeded, Outputs: map[string]any{"rollback_record": map[string]any{"groups": []any{"sg-1"}}}},
	}
	tests := []struct {
		name    string
		step    string
		scope   playbook.Scope
		want    *playbook.ResolvedStep
		wantErr string
	}{
		{
			name:  "condition true resolves params by schema type",
			step:  "capture",
			scope: playbook.Scope{Inputs: inputs, Finding: map[string]any{"severity": 8.0}, Case: kase},
			want: &playbook.ResolvedStep{
				ID: "capture", Phase: playbook.PhaseAnalyze, Action: "aws-ec2-capture", Selector: "role=worker",
				Params:  map[string]any{"instance_id": "i-0abc", "account": "", "case_id": "case case-7 instance i-0abc"},
				Timeout: 5 * time.Minute, OnFailure: playbook.OnFailureStop,
			},
		},
		{
			name:  "condition false skips",
			step:  "capture",
			scope: playbook.Scope{Inputs: inputs, Finding: map[string]any{"severity": 3}, Case: kase},
			want:  &playbook.ResolvedStep{ID: "capture", Phase: playbook.PhaseAnalyze, Action: "aws-ec2-capture", Skip: true},
		},
		{
			name:    "condition needs a finding",
			step:    "capture",
			scope:   playbook.Scope{Inputs: inputs, Case: kase},
			wantErr: `step "capture": ec2.yaml:28:11: ${{ finding.severity >= 7.0 }}: the playbook runs without a finding`,
		},
		{
			name:    "finding without the key",
			step:    "capture",
			scope:   playbook.Scope{Inputs: inputs, Finding: map[string]any{"type": "x"}, Case: kase},
			wantErr: `step "capture": ec2.yaml:28:11: ${{ finding.severity >= 7.0 }}: no such key: severity`,
		},
		{
			name:    "needs must have finished",
			step:    "isolate",
			scope:   playbook.Scope{Inputs: inputs, Case: kase},
			wantErr: `step "isolate" needs "capture", which has no result yet`,
		},
		{
			name:  "destructive step with approval and rollback",
			step:  "isolate",
			scope: playbook.Scope{Inputs: inputs, Case: kase, Steps: captured},
			want: &playbook.ResolvedStep{
				ID: "isolate", Phase: playbook.PhaseContain, Action: "aws-ec2-isolate", Destructive: true, Selector: "role=worker",
				Params:    map[string]any{"instance_id": "i-0abc", "allow_cidrs": []string{"10.1.0.0/16"}, "revoke_instance_profile": true},
				OnFailure: playbook.OnFailureRollback, ApprovalRequired: true, HasRollback: true,
			},
		},
		{
			name:  "interpolated selector and list elements",
			step:  "guest",
			scope: playbook.Scope{Inputs: inputs, Case: kase, Steps: isolated},
			want: &playbook.ResolvedStep{
				ID: "guest", Phase: playbook.PhaseContain, Action: "host-isolate", Destructive: true, Selector: "label.instance_id=i-0abc",
				Params:    map[string]any{"allow": []string{"10.0.0.0/8", "10.1.0.0/16"}, "reason": "isolated after succeeded capture"},
				OnFailure: playbook.OnFailureContinue, HasRollback: false,
			},
		},
		{
			name:    "input cannot widen an interpolated selector",
			step:    "guest",
			scope:   playbook.Scope{Inputs: map[string]any{"instance_id": "i-0abc,role=host"}, Case: kase, Steps: isolated},
			wantErr: `step "guest": ec2.yaml:52:35: ${{ inputs.instance_id }}: value "i-0abc,role=host" may hold only letters, digits and . _ : / @ + - inside a target`,
		},
		{
			name: "input cannot turn a selector into a glob",
			step: "collect",
			scope: playbook.Scope{Inputs: map[string]any{"instance_id": "*"}, Case: kase,
				Steps: map[string]playbook.StepResult{"guest": {Status: playbook.StatusFailed}}},
			wantErr: `step "collect": ec2.yaml:61:44: ${{ inputs.instance_id }}: value "*" may hold only letters, digits and . _ : / @ + - inside a target`,
		},
		{
			name:    "unknown step",
			step:    "eradicate",
			wantErr: `playbook ec2-instance-compromise has no step "eradicate"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ev.Resolve(tt.step, tt.scope)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestResolveRollback(t *testing.T) {
	pb, ev := ec2Evaluator(t)
	inputs, err := pb.BindInputs(map[string]any{"instance_id": "i-0abc"})
	if err != nil {
		t.Fatal(err)
	}
	record := map[string]any{"groups": []any{"sg-1", "sg-2"}, "eni": "eni-1"}
	sc := playbook.Scope{Inputs: inputs, Steps: map[string]playbook.StepResult{
		"capture": {Status: playbook.StatusSucceeded},
		"isolate": {Status: playbook.StatusSucceeded, Outputs: map[string]any{"rollback_record": record}},
	}}
	got, err := ev.ResolveRollback("isolate", sc)
	if err != nil {
		t.Fatal(err)
	}
	want := &playbook.ResolvedStep{
		ID: "isolate", Phase: playbook.PhaseContain, Action: "aws-ec2-unisolate", Destructive: true, Selector: "role=worker",
		Params:    map[string]any{"instance_id": "i-0abc", "rollback_record": `{"eni":"eni-1","groups":["sg-1","sg-2"]}`},
		OnFailure: playbook.OnFailureStop,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := ev.ResolveRollback("capture", sc); !errors.Is(err, playbook.ErrNoRollback) {
		t.Errorf("rollback of capture: %v, want ErrNoRollback", err)
	}
	delete(sc.Steps, "isolate")
	if _, err := ev.ResolveRollback("isolate", sc); err == nil || !strings.Contains(err.Error(), `step "isolate" has no result yet`) {
		t.Errorf("rollback without the step's result: %v", err)
	}
}

const dynPlaybook = header + `  - id: collect
    phase: analyze
    action: host-collect
    targets: {selector: role=host}
    when: ${{ finding.urgent }}
    params:
      pid: ${{ finding.pid }}
      artifacts: ${{ finding.artifacts }}
  - id: burn
    phase: analyze
    action: host-collect
    targets: {selector: role=host}
    when: ${{ finding.items.all(x, finding.items.all(y, x != y || x == y)) }}
  - id: org
    phase: contain
    action: aws-iam-contain
    targets:
      accounts: ${{ finding.accounts }}
      regions: "${{ finding.region }},eu-west-1"
    params: {access_key_id: AKIAEXAMPLE}
`

func TestResolveDynamicTypes(t *testing.T) {
	pb, err := playbook.Parse("dyn.yaml", []byte(dynPlaybook))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := playbook.NewEvaluator(pb, playbooktest.FirstParty())
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, 2000)
	for i := range items {
		items[i] = i
	}
	tests := []struct {
		name    string
		step    string
		finding map[string]any
		check   func(*playbook.ResolvedStep) bool
		wantErr string
	}{
		{
			name:    "JSON numbers fill int params",
			step:    "collect",
			finding: map[string]any{"urgent": true, "pid": 1234.0, "artifacts": []any{"processes", "sockets"}},
			check: func(rs *playbook.ResolvedStep) bool {
				return rs.Params["pid"] == int64(1234) && reflect.DeepEqual(rs.Params["artifacts"], []string{"processes", "sockets"})
			},
		},
		{
			name:    "condition of the wrong type at run time",
			step:    "collect",
			finding: map[string]any{"urgent": "yes"},
			wantErr: `step "collect": when: want a boolean, got a string`,
		},
		{
			name:    "param of the wrong type at run time",
			step:    "collect",
			finding: map[string]any{"urgent": true, "pid": "1234", "artifacts": []any{}},
			wantErr: `step "collect": param "pid": want an integer, got a string`,
		},
		{
			name:    "list element of the wrong type",
			step:    "collect",
			finding: map[string]any{"urgent": true, "pid": 1, "artifacts": []any{"x", 2}},
			wantErr: `step "collect": param "artifacts": element 1: want a string, got an integer`,
		},
		{
			name:    "cost limit stops runaway expressions",
			step:    "burn",
			finding: map[string]any{"items": items},
			wantErr: `step "burn": dyn.yaml:22:11: ${{ finding.items.all(x, finding.items.all(y, x != y || x == y)) }}: operation cancelled: actual cost limit exceeded`,
		},
		{
			name:    "accounts and regions from the finding",
			step:    "org",
			finding: map[string]any{"accounts": []any{"111111111111", "222222222222"}, "region": "us-east-1"},
			check: func(rs *playbook.ResolvedStep) bool {
				return rs.Accounts == "111111111111,222222222222" && reflect.DeepEqual(rs.Regions, []string{"us-east-1", "eu-west-1"})
			},
		},
		{
			name:    "accounts checked after evaluation",
			step:    "org",
			finding: map[string]any{"accounts": "ou=root", "region": "us-east-1"},
			wantErr: `step "org": targets.accounts "ou=root": "root" is not an organizational unit id such as ou-ab12-cdef3456`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := ev.Resolve(tt.step, playbook.Scope{Finding: tt.finding})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v\nwant    %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(rs) {
				t.Errorf("unexpected resolution %+v", rs)
			}
		})
	}
}

func TestBindInputs(t *testing.T) {
	src := strings.Replace(strings.Replace(header, "type: string\n", "type: string\n    required: true\n", 1), "steps:\n", `  - name: window
    type: duration
    default: 24h
  - name: dry
    type: bool
  - name: limit
    type: int
    default: 10
  - name: cidrs
    type: list
steps:
`, 1) + okStep
	pb, err := playbook.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if errs := playbook.Validate(pb, playbooktest.FirstParty()); len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name    string
		args    []string
		want    map[string]any
		wantErr string
	}{
		{
			name: "defaults and zero values",
			args: []string{"instance_id=i-1"},
			want: map[string]any{"instance_id": "i-1", "window": 24 * time.Hour, "dry": false, "limit": int64(10), "cidrs": []string{}},
		},
		{
			name: "typed by declaration, lists accumulate",
			args: []string{"instance_id=i-1", "window=90m", "dry=true", "limit=3", "cidrs=10.0.0.0/8,192.168.0.0/16", "cidrs=172.16.0.0/12"},
			want: map[string]any{"instance_id": "i-1", "window": 90 * time.Minute, "dry": true, "limit": int64(3),
				"cidrs": []string{"10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"}},
		},
		{name: "required missing", args: []string{"limit=3"}, wantErr: `input "instance_id" is required (a string)`},
		{name: "unknown input", args: []string{"instance_id=i-1", "instanceid=i-2"}, wantErr: `unknown input "instanceid" (declared inputs: instance_id, window, dry, limit, cidrs)`},
		{name: "bad int", args: []string{"instance_id=i-1", "limit=ten"}, wantErr: `input "limit": "ten" is not an integer`},
		{name: "bad duration", args: []string{"instance_id=i-1", "window=1 day"}, wantErr: `input "window": "1 day" is not a duration (use Go syntax such as 90s, 5m or 1h30m)`},
		{name: "bad bool", args: []string{"instance_id=i-1", "dry=maybe"}, wantErr: `input "dry": "maybe" is not true or false`},
		{name: "given twice", args: []string{"instance_id=i-1", "instance_id=i-2"}, wantErr: `input "instance_id" is given twice`},
		{name: "not name=value", args: []string{"instance_id"}, wantErr: `input "instance_id": want name=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pb.ParseInputs(tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
	if _, err := pb.BindInputs(map[string]any{"instance_id": 42}); err == nil || err.Error() != `input "instance_id": want a string, got an integer` {
		t.Errorf("typed mismatch: %v", err)
	}
}

func TestOrder(t *testing.T) {
	src := header + step("d", "needs: [b, c]") + step("b", "needs: [a]") + okStep + step("c", "needs: [a]") + step("e", "timeout: 1m")
	pb, errs := playbook.Load("t.yaml", []byte(src), playbooktest.FirstParty())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got [][]string
	for _, layer := range pb.Order() {
		var ids []string
		for _, s := range layer {
			ids = append(ids, s.ID)
		}
		got = append(got, ids)
	}
	want := [][]string{{"a", "e"}, {"b", "c"}, {"d"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Order() = %v, want %v", got, want)
	}
}

func TestPlan(t *testing.T) {
	pb, ev := ec2Evaluator(t)
	inputs, err := pb.ParseInputs([]string{"instance_id=i-0abc"})
	if err != nil {
		t.Fatal(err)
	}
	plan := ev.Plan(playbook.Scope{Inputs: inputs, Case: playbook.Case{ID: "case-7"}})
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Playbook string
		Version  int
		Steps    []map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Playbook != "ec2-instance-compromise" || got.Version != 3 || len(got.Steps) != 4 {
		t.Fatalf("plan header: %s", b)
	}
	checks := []struct {
		step  int
		path  string
		value any
	}{
		{0, "id", "capture"},
		{0, "pending", []any{"when"}},
		{0, "when", "${{ finding.severity >= 7.0 }}"},
		{0, "params.case_id", "case case-7 instance i-0abc"},
		{1, "id", "isolate"},
		{1, "layer", 1.0},
		{1, "params.allow_cidrs", []any{}},
		{1, "rollback.action", "aws-ec2-unisolate"},
		{1, "rollback.pending", []any{"rollback_record"}},
		{1, "rollback.params.rollback_record", "${{ steps.isolate.outputs.rollback_record }}"},
		{2, "selector", "label.instance_id=i-0abc"},
		{2, "params.allow", []any{"10.0.0.0/8", "192.168.0.0/16"}},
		{2, "params.reason", "isolated after ${{ steps.capture.status }} capture"},
		{2, "pending", []any{"params.reason"}},
		{3, "params.max_bytes", 1048576.0},
		{3, "pending", nil},
	}
	for _, c := range checks {
		var v any = got.Steps[c.step]
		for _, k := range strings.Split(c.path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if !reflect.DeepEqual(v, c.value) {
			t.Errorf("steps[%d].%s = %#v, want %#v", c.step, c.path, v, c.value)
		}
	}

	// Mid-run: with capture's result known, guest's reason resolves.
	plan = ev.Plan(playbook.Scope{Inputs: inputs, Finding: map[string]any{"severity": 9}, Steps: map[string]playbook.StepResult{
		"capture": {Status: playbook.StatusSucceeded},
	}})
	if r := plan.Steps[2].Params["reason"]; r != "isolated after succeeded capture" || len(plan.Steps[0].Pending) != 0 {
		t.Errorf("mid-run plan: reason %q, capture pending %v", r, plan.Steps[0].Pending)
	}
}
