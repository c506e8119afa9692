package playbook_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/playbooktest"
)

// header is the start of every test playbook; steps begin on line 10.
const header = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: t
  version: 1
inputs:
  - name: instance_id
    type: string
steps:
`

// load parses and validates, returning every problem as text.
func load(t *testing.T, src string) []string {
	t.Helper()
	_, errs := playbook.Load("t.yaml", []byte(src), playbooktest.FirstParty())
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "bad apiVersion",
			src:  strings.Replace(header, "firebreak/v1", "firebreak/v2", 1) + okStep,
			want: []string{`t.yaml:1:13: apiVersion must be "firebreak/v1", not "firebreak/v2"`},
		},
		{
			name: "bad kind",
			src:  strings.Replace(header, "kind: Playbook", "kind: Runbook", 1) + okStep,
			want: []string{`t.yaml:2:7: kind must be "Playbook", not "Runbook"`},
		},
		{
			name: "unknown top-level field",
			src:  header + okStep + "labels: {team: ir}\n",
			want: []string{`t.yaml:16:1: unknown field "labels" in the playbook (known fields: apiVersion, kind, metadata, inputs, steps)`},
		},
		{
			name: "unknown step field",
			src: header + `  - id: a
    phase: analyze
    acton: aws-ec2-capture
`,
			want: []string{`t.yaml:12:5: unknown field "acton" in step (known fields: id, description, phase, action, operation, needs, targets, params, when, timeout, on_failure, approval, rollback)`},
		},
		{
			name: "missing name",
			src:  strings.Replace(header, "  name: t\n", "", 1) + okStep,
			want: []string{`t.yaml:4:3: metadata.name is missing; name the playbook, e.g. ec2-instance-compromise`},
		},
		{
			name: "missing steps",
			src:  strings.TrimSuffix(header, "steps:\n"),
			want: []string{`t.yaml:1:1: steps is missing or empty; a playbook needs at least one step`},
		},
		{
			name: "duplicate step id",
			src:  header + okStep + okStep,
			want: []string{`t.yaml:16:9: step id "a" is used twice (first at line 10)`},
		},
		{
			name: "bad step id",
			src:  header + strings.Replace(okStep, "id: a", "id: block-key", 1),
			want: []string{`t.yaml:10:9: step id "block-key" must be lower-case letters, digits and underscores, starting with a letter, so expressions can name it as steps.<id>`},
		},
		{
			name: "unknown needs",
			src:  header + okStep + step("b", "needs: [a, snapshot]"),
			want: []string{`t.yaml:21:16: step "b" needs unknown step "snapshot"`},
		},
		{
			name: "cycle in needs",
			src:  header + step("a", "needs: [c]") + step("b", "needs: [a]") + step("c", "needs: [b]"),
			want: []string{`t.yaml:21:13: needs form a cycle: a → c → b → a`},
		},
		{
			name: "unknown phase",
			src:  header + strings.Replace(okStep, "phase: analyze", "phase: triage", 1),
			want: []string{`t.yaml:11:12: step "a": phase "triage" is unknown (use detect, analyze, contain, eradicate, recover, post-incident)`},
		},
		{
			name: "unknown action",
			src:  header + strings.Replace(okStep, "aws-ec2-capture", "aws-ec2-snapshot", 1),
			want: []string{`t.yaml:12:13: step "a": unknown action "aws-ec2-snapshot"`},
		},
		{
			name: "param not in schema",
			src:  header + okStep + "      volume: vol-1\n",
			want: []string{`t.yaml:16:7: step "a": action aws-ec2-capture has no param "volume" (its params: instance_id, account, region, case_id)`},
		},
		{
			name: "required param missing",
			src:  header + strings.Replace(okStep, "instance_id: i-1", "account: \"111111111111\"", 1),
			want: []string{`t.yaml:15:7: step "a": action aws-ec2-capture requires param "instance_id"`},
		},
		{
			name: "literal param of wrong type",
			src: header + step("a", `action: host-collect
    targets: {selector: role=host}
    params:
      pid: "1234"`),
			want: []string{`t.yaml:15:12: step "a": param "pid": want an integer, got a string`},
		},
		{
			name: "literal not among allowed values",
			src: header + step("a", `action: host-collect
    targets: {selector: role=host}
    params:
      profile: deep`),
			want: []string{`t.yaml:15:16: step "a": param "profile": "deep" is not one of triage, full`},
		},
		{
			name: "interpolated string for int param",
			src: header + step("a", `action: host-collect
    targets: {selector: role=host}
    params:
      pid: "${{ inputs.instance_id }}0"`),
			want: []string{`t.yaml:15:12: step "a": param "pid": want an integer, got an interpolated string`},
		},
		{
			name: "expression of wrong type",
			src: header + step("a", `action: host-collect
    targets: {selector: role=host}
    params:
      pid: ${{ inputs.instance_id }}`),
			want: []string{`t.yaml:15:12: step "a": param "pid": expression has type string; want int`},
		},
		{
			name: "unknown input",
			src:  header + strings.Replace(okStep, "instance_id: i-1", "instance_id: ${{ inputs.instance }}", 1),
			want: []string{`t.yaml:15:24: unknown input "instance" (declared inputs: instance_id)`},
		},
		{
			name: "unknown step referenced",
			src:  header + okStep + step("b", "needs: [a]\n    when: ${{ steps.capture.status == 'succeeded' }}"),
			want: []string{`t.yaml:22:15: unknown step "capture"`},
		},
		{
			name: "step not upstream",
			src:  header + okStep + step("b", "when: ${{ steps.a.status == 'succeeded' }}"),
			want: []string{`t.yaml:21:15: step "a" is not upstream of step "b"; add it to needs`},
		},
		{
			name: "step reads its own outputs",
			src:  header + okStep + "    when: ${{ steps.a.outputs.done }}\n",
			want: []string{`t.yaml:16:15: step "a" cannot read its own outputs or status; only its rollback can`},
		},
		{
			name: "CEL syntax error",
			src:  header + okStep + "    when: ${{ finding.severity >= }}\n",
			want: []string{`t.yaml:16:35: expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}`},
		},
		{
			name: "CEL type error",
			src:  header + okStep + "    when: ${{ inputs.instance_id > 3 }}\n",
			want: []string{`t.yaml:16:34: expression: found no matching overload for '_>_' applied to '(string, int)'`},
		},
		{
			name: "when not bool",
			src:  header + okStep + "    when: ${{ inputs.instance_id }}\n",
			want: []string{`t.yaml:16:11: step "a": when must be a bool expression, but it has type string`},
		},
		{
			name: "when literal not bool",
			src:  header + okStep + "    when: yes please\n",
			want: []string{`t.yaml:16:11: step "a": when must be true, false or a ${{ … }} expression, not a string`},
		},
		{
			name: "bad duration",
			src:  header + okStep + "    timeout: 5 minutes\n",
			want: []string{`t.yaml:16:14: step "a": timeout "5 minutes" is not a duration (use Go syntax such as 90s, 5m or 1h30m)`},
		},
		{
			name: "rollback on destructive step without rollback",
			src: header + step("a", `action: aws-ec2-isolate
    targets: {selector: role=worker}
    params: {instance_id: i-1}
    on_failure: rollback`),
			want: []string{`t.yaml:15:17: step "a": on_failure: rollback needs a rollback for destructive action aws-ec2-isolate; add rollback: {action: aws-ec2-unisolate, params: {…}}`},
		},
		{
			name: "rollback action unknown",
			src: header + step("a", `action: aws-ec2-isolate
    targets: {selector: role=worker}
    params: {instance_id: i-1}
    rollback: {action: aws-ec2-release}`),
			want: []string{`t.yaml:15:24: step "a": rollback action "aws-ec2-release" is unknown`},
		},
		{
			name: "rollback param not in schema",
			src: header + step("a", `action: aws-ec2-isolate
    targets: {selector: role=worker}
    params: {instance_id: i-1}
    rollback:
      action: aws-ec2-unisolate
      params: {instance_id: i-1, record: "${{ steps.a.outputs.rollback_record }}"}`),
			want: []string{`t.yaml:17:34: step "a" rollback: action aws-ec2-unisolate has no param "record" (its params: instance_id, account, region, rollback_record)`},
		},
		{
			name: "approval value",
			src:  header + okStep + "    approval: true\n",
			want: []string{`t.yaml:16:15: step "a": approval must be "required", not "a boolean true"`},
		},
		{
			name: "approval word",
			src:  header + okStep + "    approval: always\n",
			want: []string{`t.yaml:16:15: step "a": approval must be "required", not "always"`},
		},
		{
			name: "selector and accounts",
			src:  header + strings.Replace(okStep, "{selector: role=worker}", "{selector: role=worker, accounts: all}", 1),
			want: []string{`t.yaml:13:14: step "a": targets takes selector or accounts, not both`},
		},
		{
			name: "no targets",
			src:  header + strings.Replace(okStep, "    targets: {selector: role=worker}\n", "", 1),
			want: []string{`t.yaml:10:5: step "a" has no targets; set targets.selector or targets.accounts`},
		},
		{
			name: "invalid selector",
			src:  header + strings.Replace(okStep, "role=worker", "\"role=worker,env prod\"", 1),
			want: []string{`t.yaml:13:25: step "a": targets.selector: selector term 2 "env prod": want key=value or key!=value`},
		},
		{
			name: "selector role does not run the action",
			src:  header + strings.Replace(okStep, "role=worker", "role=host", 1),
			want: []string{`t.yaml:13:25: step "a": targets.selector picks role=host, but action aws-ec2-capture runs on worker agents`},
		},
		{
			name: "interpolated selector key",
			src:  header + strings.Replace(okStep, "{selector: role=worker}", `{selector: "${{ inputs.instance_id }}=x"}`, 1),
			want: []string{`t.yaml:13:25: step "a": targets.selector: selector key in "${{ inputs.instance_id }}=x" cannot be an expression`},
		},
		{
			name: "interpolated selector with unknown key",
			src:  header + strings.Replace(okStep, "{selector: role=worker}", `{selector: "role=worker,tag.id=${{ inputs.instance_id }}"}`, 1),
			want: []string{`t.yaml:13:25: step "a": targets.selector: selector term "tag.id=${{ inputs.instance_id }}": unknown key "tag.id" (keys: id, role, hostname, account, region, instance_id, connected, isolated, simulated, label.NAME)`},
		},
		{
			name: "bad accounts",
			src:  header + strings.Replace(okStep, "{selector: role=worker}", "{accounts: \"1234,111111111111\"}", 1),
			want: []string{`t.yaml:13:25: step "a": targets.accounts: "1234" is not a 12-digit AWS account id (or use all, ou=ou-…)`},
		},
		{
			name: "bad region",
			src:  header + strings.Replace(okStep, "{selector: role=worker}", "{accounts: all, regions: [eu-west-1, mars-1]}", 1),
			want: []string{`t.yaml:13:51: step "a": targets.regions: "mars-1" is not an AWS region name such as eu-west-1`},
		},
		{
			name: "accounts on in-guest action",
			src: header + step("a", `action: host-collect
    targets: {accounts: all}`),
			want: []string{`t.yaml:13:25: step "a": action host-collect runs on host agents; accounts targets need an action that workers run`},
		},
		{
			name: "YAML alias refused",
			src:  header + "  - &s\n    id: a\n  - *s\n",
			want: []string{`t.yaml:12:5: YAML aliases (*s) are not allowed in playbooks; write the value out`},
		},
		{
			name: "expression not closed",
			src:  header + strings.Replace(okStep, "instance_id: i-1", "instance_id: ${{ inputs.instance_id }", 1),
			want: []string{`t.yaml:15:20: parameter "instance_id": expression is not closed with "}}"`},
		},
		{
			name: "unquoted expression in flow mapping",
			src:  header + strings.Replace(okStep, "instance_id: i-1", "x: {instance_id: ${{ inputs.instance_id }}}", 1),
			want: []string{`t.yaml:15:1: YAML syntax: did not find expected ',' or '}'; inside {…} or […] quote expressions: "${{ … }}"`},
		},
		{
			name: "input default of wrong type",
			src:  strings.Replace(header, "    type: string\n", "    type: int\n    default: ten\n", 1) + okStep,
			want: []string{`t.yaml:9:14: input "instance_id": default "ten" is not an integer`},
		},
		{
			name: "unknown input type",
			src:  strings.Replace(header, "type: string", "type: map", 1) + okStep,
			want: []string{`t.yaml:8:11: input "instance_id": type "map" is unknown (use string, int, bool, duration or list)`},
		},
		{
			name: "field of wrong YAML type",
			src:  header + okStep + "    needs: a\n",
			want: []string{`t.yaml:16:12: needs must be a list of step ids, not a string`},
		},
		{
			name: "error inside a literal block keeps its column",
			src: header + okStep + `      case_id: |
        case ${{ case.number }}
`,
			want: []string{`t.yaml:17:18: case has no field "number" (use case.id or case.title)`},
		},
		{
			name: "error inside a quoted string after escapes",
			src:  header + okStep + `      case_id: "tab\there ${{ inputs.nope }}"` + "\n",
			want: []string{`t.yaml:16:31: unknown input "nope" (declared inputs: instance_id)`},
		},
		{
			name: "unknown operation",
			src:  header + "  - id: a\n    phase: analyze\n    operation: credential-sweep\n",
			want: []string{`t.yaml:12:16: step "a": unknown operation "credential-sweep" (operations: credential-scope, eradicate, eradication-plan, eradication-verify)`},
		},
		{
			name: "action and operation",
			src:  header + "  - id: a\n    phase: analyze\n    action: aws-ec2-capture\n    operation: credential-scope\n",
			want: []string{`t.yaml:13:16: step "a" names action "aws-ec2-capture" and operation "credential-scope": a step runs one action or one operation`},
		},
		{
			name: "neither action nor operation",
			src:  header + "  - id: a\n    phase: analyze\n",
			want: []string{`t.yaml:10:5: step "a" has no action (or operation: credential-scope, eradicate, eradication-plan, eradication-verify)`,
				`t.yaml:10:5: step "a" has no targets; set targets.selector or targets.accounts`},
		},
		{
			name: "operation with targets",
			src:  header + "  - id: a\n    phase: analyze\n    operation: eradication-plan\n    targets: {accounts: all}\n",
			want: []string{`t.yaml:13:14: step "a": operation eradication-plan runs on the controller and takes no targets: its runs pick their own accounts`},
		},
		{
			name: "eradicate without approval",
			src:  header + "  - id: a\n    phase: eradicate\n    operation: eradicate\n    params: {plan_id: erp-1}\n",
			want: []string{`t.yaml:10:5: step "a": operation eradicate changes the accounts and must wait for a second operator: add approval: required`},
		},
		{
			name: "operation param not in its schema",
			src:  header + "  - id: a\n    phase: eradicate\n    operation: eradication-verify\n    params: {plan_id: erp-1, dry_run: true}\n",
			want: []string{`t.yaml:13:30: step "a": operation eradication-verify has no param "dry_run" (its params: plan_id)`},
		},
		{
			name: "operation required param missing",
			src:  header + "  - id: a\n    phase: eradicate\n    operation: eradication-verify\n",
			want: []string{`t.yaml:10:5: step "a": operation eradication-verify requires param "plan_id"`},
		},
		{
			name: "operation literal key not an access key",
			src:  header + "  - id: a\n    phase: analyze\n    operation: credential-scope\n    params: {access_key_id: 'AKIA../../etc'}\n",
			want: []string{`t.yaml:13:29: step "a": param "access_key_id": "AKIA../../etc" is not an AWS access key id (AKIA… or ASIA…)`},
		},
		{
			name: "operation literal plan id",
			src:  header + "  - id: a\n    phase: eradicate\n    operation: eradication-verify\n    params: {plan_id: case-1}\n",
			want: []string{`t.yaml:13:23: step "a": param "plan_id": "case-1" is not an eradication plan id (erp-…)`},
		},
		{
			name: "operation trail bucket without log archive",
			src:  header + "  - id: a\n    phase: analyze\n    operation: credential-scope\n    params: {access_key_id: AKIAIOSFODNN7EXAMPLE, trail_bucket: logs}\n",
			want: []string{`t.yaml:13:13: step "a": params trail_bucket and log_archive go together: the bucket is read in the account that holds it`},
		},
		{
			name: "operation with rollback",
			src:  header + "  - id: a\n    phase: eradicate\n    operation: eradication-plan\n    rollback: {action: aws-iam-uncontain}\n",
			want: []string{
				`t.yaml:13:15: step "a": operation eradication-plan has no rollback; each eradication step's before-state is recorded for undoing it by hand`,
			},
		},
		{
			name: "several errors, in file order",
			src:  header + strings.Replace(okStep, "analyze", "triage", 1) + "    timeout: soon\n" + step("b", "needs: [zz]"),
			want: []string{
				`t.yaml:11:12: step "a": phase "triage" is unknown (use detect, analyze, contain, eradicate, recover, post-incident)`,
				`t.yaml:16:14: step "a": timeout "soon" is not a duration (use Go syntax such as 90s, 5m or 1h30m)`,
				`t.yaml:22:13: step "b" needs unknown step "zz"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := load(t, tt.src)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got: %s\nwant: %s\nsource:\n%s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "), numbered(tt.src))
			}
		})
	}
}

// okStep is a valid step with id a, lines 10–14 after the header.
const okStep = `  - id: a
    phase: analyze
    action: aws-ec2-capture
    targets: {selector: role=worker}
    params:
      instance_id: i-1
`

// step returns a valid aws-ec2-capture step with the given id, changed by
// extra lines (which replace the action and targets when they name them).
func step(id, extra string) string {
	s := "  - id: " + id + "\n    phase: analyze\n"
	if !strings.Contains(extra, "action:") {
		s += "    action: aws-ec2-capture\n    targets: {selector: role=worker}\n    params: {instance_id: i-1}\n"
	}
	return s + "    " + extra + "\n"
}

func numbered(src string) string {
	var b strings.Builder
	for i, l := range strings.Split(src, "\n") {
		fmt.Fprintf(&b, "%3d %s\n", i+1, l)
	}
	return b.String()
}

func TestValidateLimits(t *testing.T) {
	big := header + okStep + "      case_id: \"" + strings.Repeat("x", playbook.MaxFileSize) + "\"\n"
	var many strings.Builder
	many.WriteString(header)
	for i := range playbook.MaxSteps + 1 {
		many.WriteString(step(fmt.Sprintf("s%d", i), "timeout: 1m"))
	}
	longExpr := header + okStep + "    when: ${{ " + strings.Repeat("true && ", 600) + "true }}\n"
	deep := header + okStep + "      case_id: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"
	tests := []struct {
		name, src, want string
	}{
		{"file too large", big, fmt.Sprintf("t.yaml: playbook is %d bytes; the limit is 1048576", len(big))},
		{"too many steps", many.String(), "t.yaml:10:3: playbook has 201 steps; the limit is 200"},
		{"expression too long", longExpr, "t.yaml:16:11: when: expression is 4806 characters long; the limit is 4096"},
		{"value nested too deep", deep, `t.yaml:16:33: parameter "case_id" is nested deeper than 16 levels`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := load(t, tt.src)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAliasBombRefused(t *testing.T) {
	src := header + `  - id: a
    phase: analyze
    action: aws-ec2-capture
    targets: {selector: role=worker}
    params:
      instance_id: i-1
      case_id: &a ["x","x","x","x","x","x","x","x","x"]
      account: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      region: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
`
	got := load(t, src)
	if len(got) == 0 || !strings.Contains(got[0], "YAML aliases (*a) are not allowed") {
		t.Fatalf("alias bomb not refused: %q", got)
	}
}

func TestValidateNilCatalogSkipsActions(t *testing.T) {
	pb, err := playbook.Parse("t.yaml", []byte(header+strings.Replace(okStep, "aws-ec2-capture", "custom-action", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if errs := playbook.Validate(pb, nil); len(errs) != 0 {
		t.Fatalf("Validate with nil catalogue: %v", errs)
	}
}

func TestWithSelectorCheck(t *testing.T) {
	pb, err := playbook.Parse("t.yaml", []byte(header+okStep))
	if err != nil {
		t.Fatal(err)
	}
	check := func(sel string) error { return fmt.Errorf("dispatcher refuses %q", sel) }
	errs := playbook.Validate(pb, playbooktest.FirstParty(), playbook.WithSelectorCheck(check))
	want := `t.yaml:13:25: step "a": targets.selector: dispatcher refuses "role=worker"`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("got %v, want %s", errs, want)
	}
}
