package hostisolate_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// fixture is a host whose nf_tables is in memory: both actions run over
// real go-plugin gRPC against it, with a real state directory.
type fixture struct {
	kernel    *memnft.Kernel
	stateDir  string
	isolate   *sdk.Client
	unisolate *sdk.Client
	host      *pluginv1.HostContext
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{kernel: memnft.New(), stateDir: filepath.Join(t.TempDir(), "state")}
	opts := []hostisolate.Option{hostisolate.WithDialer(f.kernel.Conn)}
	f.isolate = sdktest.Start(t, hostisolate.NewIsolate(opts...))
	f.unisolate = sdktest.Start(t, hostisolate.NewUnisolate(opts...))
	f.host = &pluginv1.HostContext{
		ControllerAddresses: []string{"10.99.0.1"},
		ControllerPort:      8443,
		StateDir:            f.stateDir,
		Hostname:            "web-1",
		OnEc2:               true,
	}
	return f
}

func (f *fixture) run(t *testing.T, c *sdk.Client, params any) *sdktest.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sdktest.Execute(ctx, t, c, &pluginv1.ExecuteRequest{Host: f.host,
		Task: &pluginv1.TaskContext{TaskId: "task-1", RunId: "run-1", CaseId: "case-1", Operator: "alice", AgentId: "agent-1"}}, params)
}

func (f *fixture) isolated(t *testing.T, params any) hostisolate.IsolateResult {
	t.Helper()
	o := f.run(t, f.isolate, params)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("host-isolate: %v %s", o.Err, o.Result.GetError())
	}
	var res hostisolate.IsolateResult
	o.Output(t, &res)
	return res
}

func (f *fixture) unisolated(t *testing.T) hostisolate.UnisolateResult {
	t.Helper()
	o := f.run(t, f.unisolate, map[string]any{"reason": "contained"})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("host-unisolate: %v %s", o.Err, o.Result.GetError())
	}
	var res hostisolate.UnisolateResult
	o.Output(t, &res)
	return res
}

func (f *fixture) conn(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := f.kernel.Conn()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) files(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(f.stateDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		action      sdk.Action
		name        string
		destructive bool
		rollback    string
		describes   []string
	}{
		{hostisolate.NewIsolate(), "host-isolate", true, "host-unisolate", []string{"inet firebreak"}},
		{hostisolate.NewUnisolate(), "host-unisolate", true, "host-isolate", []string{"inet firebreak"}},
		{hostisolate.NewSimulated(), "host-isolate-sim", false, "", []string{"SIMULATED", "real host-isolate rule-building code", "in-memory netlink", "instead of the kernel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := sdktest.Start(t, tt.action).Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d.GetName() != tt.name || d.GetDomain() != pluginv1.Domain_DOMAIN_INFRASTRUCTURE || d.GetDestructive() != tt.destructive ||
				d.GetRollbackAction() != tt.rollback || !slices.Equal(d.GetRoles(), []string{"host"}) || d.GetVersion() == "" {
				t.Errorf("description %v", d)
			}
			for _, s := range tt.describes {
				if !strings.Contains(d.GetDescription(), s) {
					t.Errorf("description %q does not mention %q", d.GetDescription(), s)
				}
			}
		})
	}
}

func TestIsolateParamsResolve(t *testing.T) {
	d, err := hostisolate.NewIsolate().Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := sdk.ResolveParams(d, map[string]string{"allow": "10.0.0.0/8, [2001:db8::/32]:443", "reason": "case 7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if want := `{"allow":["10.0.0.0/8","[2001:db8::/32]:443"],"reason":"case 7","reconcile":false}`; string(b) != want {
		t.Errorf("resolved %s, want %s", b, want)
	}
}

func TestIsolateRefusesWithoutTouchingAnything(t *testing.T) {
	const refusal = "refusing to isolate: the controller's address is unknown, so isolation would cut the responder's channel"
	tests := []struct {
		name     string
		host     func(h *pluginv1.HostContext) *pluginv1.HostContext
		params   map[string]any
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "no host context", host: func(*pluginv1.HostContext) *pluginv1.HostContext { return nil },
			wantCode: codes.FailedPrecondition, wantMsg: refusal},
		{name: "no controller address", host: func(h *pluginv1.HostContext) *pluginv1.HostContext { h.ControllerAddresses = nil; return h },
			wantCode: codes.FailedPrecondition, wantMsg: refusal},
		{name: "controller port 0", host: func(h *pluginv1.HostContext) *pluginv1.HostContext { h.ControllerPort = 0; return h },
			wantCode: codes.FailedPrecondition, wantMsg: refusal},
		{name: "controller port out of range", host: func(h *pluginv1.HostContext) *pluginv1.HostContext { h.ControllerPort = 70000; return h },
			wantCode: codes.FailedPrecondition, wantMsg: refusal + " (the agent reported port 70000)"},
		{name: "controller address is a name", host: func(h *pluginv1.HostContext) *pluginv1.HostContext {
			h.ControllerAddresses = []string{"10.99.0.1", "controller.internal"}
			return h
		}, wantCode: codes.FailedPrecondition, wantMsg: refusal + ` (the agent reported "controller.internal", which is not an IP address)`},
		{name: "controller address unspecified", host: func(h *pluginv1.HostContext) *pluginv1.HostContext {
			h.ControllerAddresses = []string{"0.0.0.0"}
			return h
		}, wantCode: codes.FailedPrecondition, wantMsg: refusal + ` (the agent reported "0.0.0.0")`},
		{name: "controller address with a zone", host: func(h *pluginv1.HostContext) *pluginv1.HostContext {
			h.ControllerAddresses = []string{"fe80::1%eth0"}
			return h
		}, wantCode: codes.FailedPrecondition, wantMsg: "refusing to isolate: the controller address fe80::1%eth0 has an IPv6 zone, which nftables rules cannot match, so isolation would cut the responder's channel"},
		{name: "invalid allow entries", params: map[string]any{"allow": []string{"10.0.0.0/8", "10.0.0.0/33", "10.1.2.3:http"}},
			wantCode: codes.InvalidArgument,
			wantMsg:  `allow entry "10.0.0.0/33": not a CIDR: prefix length out of range; allow entry "10.1.2.3:http": port "http" is not a number`},
		{name: "allow everything", params: map[string]any{"allow": []string{"0.0.0.0/0"}},
			wantCode: codes.InvalidArgument, wantMsg: `allow entry "0.0.0.0/0": 0.0.0.0/0 allows every address, which would undo the isolation`},
		{name: "no state directory", host: func(h *pluginv1.HostContext) *pluginv1.HostContext { h.StateDir = ""; return h },
			wantCode: codes.FailedPrecondition, wantMsg: "refusing to isolate: the agent gave no state directory, so the isolation could not be recorded or restored after a reboot"},
		{name: "relative state directory", host: func(h *pluginv1.HostContext) *pluginv1.HostContext { h.StateDir = "state"; return h },
			wantCode: codes.FailedPrecondition, wantMsg: `refusing to isolate: the agent's state directory "state" is not an absolute path`},
		{name: "unknown parameter", params: map[string]any{"alow": []string{"10.0.0.0/8"}},
			wantCode: codes.InvalidArgument, wantMsg: `decoding parameters: json: unknown field "alow"`},
		{name: "reconcile with other parameters", params: map[string]any{"reconcile": true, "allow": []string{"10.0.0.0/8"}},
			wantCode: codes.InvalidArgument, wantMsg: "reconcile re-applies the recorded isolation and takes no other parameter; drop allow, allow_dhcp and reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.host != nil {
				f.host = tt.host(f.host)
			}
			params := tt.params
			if params == nil {
				params = map[string]any{"allow": []string{"10.0.0.0/8"}}
			}
			o := f.run(t, f.isolate, params)
			if o.Err == nil {
				t.Fatalf("host-isolate succeeded: %s", o.Result.GetOutputJson())
			}
			if st := status.Convert(o.Err); st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Fatalf("error %v %q\nwant  %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if n := f.kernel.Requests(); n != 0 {
				t.Errorf("the refusal sent %d netlink requests", n)
			}
			if files := f.files(t); len(files) != 0 {
				t.Errorf("the refusal wrote %v", files)
			}
		})
	}
}

// foreignTable adds "table inet other" with a chain and a rule, like
// another firewall manager on the host.
func foreignTable(t *testing.T, conn *nftables.Conn) {
	t.Helper()
	other := conn.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	c := conn.AddChain(&nftables.Chain{Name: "audit", Table: other})
	conn.AddRule(&nftables.Rule{Table: other, Chain: c, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
}

func foreignRules(t *testing.T, conn *nftables.Conn) int {
	t.Helper()
	rules, err := conn.GetRules(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet}, &nftables.Chain{Name: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	return len(rules)
}

func TestIsolateLifecycle(t *testing.T) {
	f := newFixture(t)
	foreignTable(t, f.conn(t))
	batchesBefore := len(f.kernel.Batches())

	first := f.isolated(t, map[string]any{"allow": []string{"10.20.0.0/16", "192.0.2.10:22/tcp"}, "reason": "GuardDuty: crypto mining"})
	if !first.Applied || first.AlreadyIsolated || first.Replaced || !first.Recorded || first.Table != "inet firebreak" ||
		!slices.Equal(first.Controller, []string{"10.99.0.1"}) || first.ControllerPort != 8443 ||
		!slices.Equal(first.Allow, []string{"10.20.0.0/16", "192.0.2.10/32:22/tcp"}) || !first.DHCP || first.RuleCount == 0 ||
		first.Record != hostisolate.RecordPath(f.stateDir) || first.AppliedAt.IsZero() || first.ElapsedMS < 0 {
		t.Fatalf("first isolation: %+v", first)
	}
	batches := f.kernel.Batches()[batchesBefore:]
	if len(batches) != 1 || batches[0].Err != nil || batches[0].Ops[0].String() != "newtable inet firebreak" || len(batches[0].Ops) != 4+first.RuleCount {
		t.Fatalf("first isolation sent %v", batches)
	}
	rec, err := hostisolate.ReadRecord(f.stateDir)
	if err != nil || rec == nil {
		t.Fatalf("record: %v %v", rec, err)
	}
	if rec.RuleDigest != first.RuleDigest || rec.Reason != "GuardDuty: crypto mining" || rec.RuleCount != first.RuleCount ||
		!slices.Equal(rec.ControllerAddresses, first.Controller) || rec.Task == nil || rec.Task.TaskID != "task-1" || rec.Task.CaseID != "case-1" || !rec.AppliedAt.Equal(first.AppliedAt) {
		t.Errorf("record %+v", rec)
	}

	t.Run("the same isolation again changes nothing", func(t *testing.T) {
		n := len(f.kernel.Batches())
		again := f.isolated(t, map[string]any{"allow": []string{"192.0.2.10:22/tcp", "10.20.0.0/16"}, "reason": "again"})
		if !again.AlreadyIsolated || again.Applied || again.RuleDigest != first.RuleDigest || again.Stopped == nil ||
			again.Reason != "GuardDuty: crypto mining" || !again.AppliedAt.Equal(first.AppliedAt) {
			t.Errorf("second isolation: %+v", again)
		}
		if len(f.kernel.Batches()) != n {
			t.Errorf("the second isolation sent a batch")
		}
	})

	t.Run("a different isolation replaces it in one batch", func(t *testing.T) {
		n := len(f.kernel.Batches())
		other := f.isolated(t, map[string]any{"allow": []string{"10.30.0.0/16"}, "allow_dhcp": false})
		if !other.Applied || !other.Replaced || other.AlreadyIsolated || other.DHCP || other.RuleDigest == first.RuleDigest {
			t.Errorf("replacement: %+v", other)
		}
		batches := f.kernel.Batches()[n:]
		if len(batches) != 1 || batches[0].Ops[0].String() != "deltable inet firebreak" || batches[0].Ops[1].String() != "newtable inet firebreak" {
			t.Errorf("replacement sent %v", batches)
		}
		if rec, _ := hostisolate.ReadRecord(f.stateDir); rec == nil || rec.RuleDigest != other.RuleDigest {
			t.Errorf("record after replacement: %+v", rec)
		}
	})

	t.Run("unisolate deletes exactly the firebreak table and the record", func(t *testing.T) {
		res := f.unisolated(t)
		if !res.Removed || res.NotIsolated || !res.RecordRemoved || res.RuleCount == 0 || res.Stopped == nil ||
			!slices.Equal(res.Allow, []string{"10.30.0.0/16"}) || res.IsolatedSince.IsZero() || res.Reason != "contained" {
			t.Errorf("unisolate: %+v", res)
		}
		last := f.kernel.Batches()[len(f.kernel.Batches())-1]
		if len(last.Ops) != 1 || last.Ops[0].String() != "deltable inet firebreak" {
			t.Errorf("unisolate sent %v", last.Ops)
		}
		if got := f.kernel.Tables(); !slices.Equal(got, []string{"inet other"}) {
			t.Errorf("tables after unisolate: %v", got)
		}
		if n := foreignRules(t, f.conn(t)); n != 1 {
			t.Errorf("table inet other has %d rules, want its 1", n)
		}
		if ok, err := hostisolate.Recorded(f.stateDir); ok || err != nil {
			t.Errorf("Recorded after unisolate: %t %v", ok, err)
		}
	})

	t.Run("unisolate when not isolated succeeds and says so", func(t *testing.T) {
		res := f.unisolated(t)
		if !res.NotIsolated || res.Removed || res.RecordRemoved {
			t.Errorf("second unisolate: %+v", res)
		}
		if got := f.kernel.Tables(); !slices.Equal(got, []string{"inet other"}) {
			t.Errorf("tables: %v", got)
		}
	})
}

func TestAllowDHCPDefault(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name  string
		onEC2 bool
		param *bool
		want  bool
	}{
		{"absent on EC2", true, nil, true},
		{"absent elsewhere", false, nil, false},
		{"refused on EC2", true, &no, false},
		{"asked for elsewhere", false, &yes, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.host.OnEc2 = tt.onEC2
			params := map[string]any{}
			if tt.param != nil {
				params["allow_dhcp"] = *tt.param
			}
			if got := f.isolated(t, params); got.DHCP != tt.want {
				t.Errorf("dhcp = %t, want %t", got.DHCP, tt.want)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name          string
		isolate       bool
		tamper        func(t *testing.T, f *fixture)
		wantReapplied bool
		wantReplaced  bool
		wantAlready   bool
	}{
		{name: "nothing recorded"},
		{name: "recorded and in place", isolate: true, wantAlready: true},
		{name: "table deleted behind the plugin's back", isolate: true, wantReapplied: true, tamper: func(t *testing.T, f *fixture) {
			conn := f.conn(t)
			conn.DelTable(&nftables.Table{Name: "firebreak", Family: nftables.TableFamilyINet})
			if err := conn.Flush(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "rule inserted behind the plugin's back", isolate: true, wantReapplied: true, wantReplaced: true, tamper: func(t *testing.T, f *fixture) {
			conn := f.conn(t)
			conn.InsertRule(&nftables.Rule{Table: &nftables.Table{Name: "firebreak", Family: nftables.TableFamilyINet},
				Chain: &nftables.Chain{Name: "input"}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
			if err := conn.Flush(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var applied hostisolate.IsolateResult
			if tt.isolate {
				applied = f.isolated(t, map[string]any{"allow": []string{"10.20.0.0/16"}, "reason": "case 9"})
			}
			if tt.tamper != nil {
				tt.tamper(t, f)
			}
			requests, batches := f.kernel.Requests(), len(f.kernel.Batches())

			res := f.isolated(t, map[string]any{"reconcile": true})
			if !res.Reconcile || res.Reapplied != tt.wantReapplied || res.Replaced != tt.wantReplaced ||
				res.AlreadyIsolated != tt.wantAlready || res.Recorded != tt.isolate {
				t.Fatalf("reconcile: %+v", res)
			}
			if !tt.isolate {
				if n := f.kernel.Requests() - requests; n != 0 {
					t.Errorf("reconcile with nothing recorded sent %d netlink requests", n)
				}
				if files := f.files(t); len(files) != 0 {
					t.Errorf("reconcile with nothing recorded wrote %v", files)
				}
				return
			}
			if res.RuleDigest != applied.RuleDigest || !slices.Equal(res.Allow, applied.Allow) || res.Reason != "case 9" {
				t.Errorf("reconcile restored %+v, want what was applied: %+v", res, applied)
			}
			sent := f.kernel.Batches()[batches:]
			if tt.wantReapplied != (len(sent) == 1) {
				t.Errorf("reconcile sent %v", sent)
			}
			if tt.wantReapplied {
				rec, err := hostisolate.ReadRecord(f.stateDir)
				if err != nil || rec.ReappliedAt == nil || !rec.AppliedAt.Equal(applied.AppliedAt) {
					t.Errorf("record after reconcile: %+v %v", rec, err)
				}
			}
			// The reconciled table is the recorded one: isolating again with
			// the same parameters finds it in place.
			if again := f.isolated(t, map[string]any{"allow": []string{"10.20.0.0/16"}}); !again.AlreadyIsolated {
				t.Errorf("after reconcile, isolating again: %+v", again)
			}
		})
	}
}

func TestReconcileWarnsWhenTheControllerMoved(t *testing.T) {
	f := newFixture(t)
	f.isolated(t, map[string]any{})
	f.host.ControllerAddresses = []string{"10.99.0.9"}
	o := f.run(t, f.isolate, map[string]any{"reconcile": true})
	var res hostisolate.IsolateResult
	o.Output(t, &res)
	if !slices.Equal(res.Controller, []string{"10.99.0.1"}) {
		t.Errorf("reconcile kept %v, want the recorded controller", res.Controller)
	}
	if !slices.ContainsFunc(o.Logs, func(l *pluginv1.LogLine) bool {
		return l.GetLevel() == "warn" && strings.Contains(l.GetMessage(), "10.99.0.9") && strings.Contains(l.GetMessage(), "run host-isolate again")
	}) {
		t.Errorf("no warning about the new controller address in %v", o.Logs)
	}
}

func TestIsolateRecordsAnUnrecordedIsolation(t *testing.T) {
	f := newFixture(t)
	first := f.isolated(t, map[string]any{})
	if err := os.Remove(hostisolate.RecordPath(f.stateDir)); err != nil {
		t.Fatal(err)
	}
	n := len(f.kernel.Batches())
	again := f.isolated(t, map[string]any{})
	if !again.AlreadyIsolated || !again.Recorded || again.Applied {
		t.Errorf("isolating again: %+v", again)
	}
	if len(f.kernel.Batches()) != n {
		t.Errorf("recording an isolation in place sent a batch")
	}
	if rec, err := hostisolate.ReadRecord(f.stateDir); err != nil || rec == nil || rec.RuleDigest != first.RuleDigest {
		t.Errorf("record: %+v %v", rec, err)
	}
}

func TestIsolateKernelRefusal(t *testing.T) {
	f := newFixture(t)
	f.kernel.FailBatches(syscall.EPERM)
	o := f.run(t, f.isolate, map[string]any{})
	st := status.Convert(o.Err)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "nothing changed") || !strings.Contains(st.Message(), "CAP_NET_ADMIN") {
		t.Fatalf("error %v %q", st.Code(), st.Message())
	}
	if ok, _ := hostisolate.Recorded(f.stateDir); ok {
		t.Errorf("a refused isolation was recorded")
	}
	if tables := f.kernel.Tables(); len(tables) != 0 {
		t.Errorf("tables after a refused batch: %v", tables)
	}
}

func TestSimulated(t *testing.T) {
	sim := hostisolate.NewSimulated()
	c := sdktest.Start(t, sim)
	host := &pluginv1.HostContext{ControllerAddresses: []string{"10.99.0.1"}, ControllerPort: 8443, Hostname: "sim-1"}
	run := func(agent string) hostisolate.IsolateResult {
		t.Helper()
		o := sdktest.Execute(context.Background(), t, c, &pluginv1.ExecuteRequest{Host: host, Task: &pluginv1.TaskContext{AgentId: agent}},
			map[string]any{"allow": []string{"10.20.0.0/16"}})
		var res hostisolate.IsolateResult
		o.Output(t, &res)
		return res
	}
	first := run("agent-a")
	if !first.Simulated || !first.Applied || first.RuleCount == 0 || first.Record != "memory:agent-a" {
		t.Errorf("first: %+v", first)
	}
	if again := run("agent-a"); !again.AlreadyIsolated || again.RuleDigest != first.RuleDigest {
		t.Errorf("again: %+v", again)
	}
	if other := run("agent-b"); !other.Applied || other.AlreadyIsolated {
		t.Errorf("another simulated host: %+v", other)
	}
	if got := sim.Kernel("agent-a").Tables(); !slices.Equal(got, []string{"inet firebreak"}) {
		t.Errorf("simulated tables: %v", got)
	}
	// The real rule-building code produced the table: it matches what
	// BuildRuleset makes for the same spec.
	rs, err := hostisolate.BuildRuleset(mustSpec(t, 8443, []string{"10.99.0.1"}, false, "10.20.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Digest != first.RuleDigest || len(rs.Rules) != first.RuleCount {
		t.Errorf("simulated digest %s (%d rules), BuildRuleset %s (%d rules)", first.RuleDigest, first.RuleCount, rs.Digest, len(rs.Rules))
	}
}
