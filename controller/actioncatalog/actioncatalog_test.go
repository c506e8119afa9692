package actioncatalog_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

func isolate() *pluginv1.ActionDescription {
	return &pluginv1.ActionDescription{Name: "host-isolate", Version: "1.2.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "isolate", Destructive: true, RollbackAction: "host-unisolate", Roles: []string{"host"},
		Params: []*pluginv1.ParamSpec{
			{Name: "allow", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]"},
			{Name: "reason", Type: pluginv1.ParamType_PARAM_TYPE_STRING},
		}}
}

func TestReview(t *testing.T) {
	cat, err := actioncatalog.New(map[string]*pluginv1.ActionDescription{"host-isolate": isolate()})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(d *pluginv1.ActionDescription)) *agentv1.PluginInfo {
		d := isolate()
		f(d)
		return &agentv1.PluginInfo{Description: d, Sha256: "x"}
	}
	for _, tc := range []struct {
		name     string
		plugins  []*agentv1.PluginInfo
		accepted bool
		refused  []string // differences of the one refusal, or nil for none
		reason   string
		role     string // the agent's enrolled role; host when empty
	}{
		{name: "exact description", plugins: []*agentv1.PluginInfo{edit(func(*pluginv1.ActionDescription) {})}, accepted: true},
		{name: "higher version, not destructive, permissive default", plugins: []*agentv1.PluginInfo{edit(func(d *pluginv1.ActionDescription) {
			d.Version, d.Destructive = "9.9.9", false
			d.Params[0].DefaultJson = `["0.0.0.0/1","128.0.0.0/1"]`
		})}, refused: []string{"version", "destructive", "params.allow"}},
		{name: "extra parameter", plugins: []*agentv1.PluginInfo{edit(func(d *pluginv1.ActionDescription) {
			d.Params = append(d.Params, &pluginv1.ParamSpec{Name: "x", Type: pluginv1.ParamType_PARAM_TYPE_BOOL})
		})}, refused: []string{"params.x"}},
		{name: "parameters reordered", plugins: []*agentv1.PluginInfo{edit(func(d *pluginv1.ActionDescription) {
			d.Params[0], d.Params[1] = d.Params[1], d.Params[0]
		})}, refused: []string{"params"}},
		{name: "roles", plugins: []*agentv1.PluginInfo{edit(func(d *pluginv1.ActionDescription) { d.Roles = nil })}, refused: []string{"roles"}},
		{name: "reported twice", plugins: []*agentv1.PluginInfo{edit(func(*pluginv1.ActionDescription) {}), edit(func(*pluginv1.ActionDescription) {})},
			refused: []string{}, reason: "reported more than once"},
		{name: "claimed by an agent of another role", role: "worker", plugins: []*agentv1.PluginInfo{edit(func(*pluginv1.ActionDescription) {})},
			refused: []string{}, reason: "the catalogue runs host-isolate on host agents; this agent is enrolled as worker"},
		{name: "uncatalogued action", plugins: []*agentv1.PluginInfo{{Description: &pluginv1.ActionDescription{Name: "steal",
			Domain: pluginv1.Domain_DOMAIN_SERVICE}}}, refused: []string{}, reason: "not in the controller's action catalogue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role := tc.role
			if role == "" {
				role = "host"
			}
			accepted, refused := cat.Review(role, tc.plugins)
			if accepted["host-isolate"] != tc.accepted {
				t.Errorf("accepted = %v, want %v", accepted["host-isolate"], tc.accepted)
			}
			if tc.refused == nil {
				if len(refused) != 0 {
					t.Errorf("refused %+v, want none", refused)
				}
				return
			}
			if len(refused) != 1 {
				t.Fatalf("refused %+v, want one refusal", refused)
			}
			if len(tc.refused) > 0 && !slices.Equal(refused[0].Differences, tc.refused) {
				t.Errorf("differences %v, want %v", refused[0].Differences, tc.refused)
			}
			if tc.reason != "" && refused[0].Reason != tc.reason {
				t.Errorf("reason %q, want %q", refused[0].Reason, tc.reason)
			}
		})
	}
}

func TestRegisterCannotRedefine(t *testing.T) {
	cat, err := actioncatalog.New(map[string]*pluginv1.ActionDescription{"host-isolate": isolate()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Register(isolate(), actioncatalog.SourceRegistered); err != nil {
		t.Errorf("registering the same description again: %v", err)
	}
	other := isolate()
	other.Destructive = false
	if err := cat.Register(other, actioncatalog.SourceRegistered); err == nil {
		t.Error("a registration redefined a first-party action")
	}
	if d, _ := cat.Lookup("host-isolate"); !proto.Equal(d, isolate()) || cat.Entry("host-isolate").Source != actioncatalog.SourceFirstParty {
		t.Errorf("the catalogue's description changed: %v", d)
	}
	// The catalogue keeps its own copy: changing the caller's does nothing.
	mine := &pluginv1.ActionDescription{Name: "extra", Domain: pluginv1.Domain_DOMAIN_SERVICE}
	if err := cat.Register(mine, actioncatalog.SourceRegistered); err != nil {
		t.Fatal(err)
	}
	mine.Destructive = true
	if d, _ := cat.Lookup("extra"); d.GetDestructive() {
		t.Error("the catalogue shares the registered description")
	}
}
