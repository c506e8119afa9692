package actioncatalog_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/plugins/catalog"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// TestEmbeddedDescriptionsMatchTheActions keeps the descriptions the
// controller embeds in step with the first-party actions: the catalogue
// is the authority agents are compared with, so a stale file would refuse
// every agent that runs the current actions. `make catalog` regenerates it.
func TestEmbeddedDescriptionsMatchTheActions(t *testing.T) {
	want, err := catalog.Descriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := actioncatalog.FirstParty()
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range want {
		if g := got[name]; !proto.Equal(g, d) {
			t.Errorf("%s: the embedded description differs from the action's (%v): run 'make catalog'", name, actioncatalog.Differences(d, g))
		}
	}
	for name := range got {
		if want[name] == nil {
			t.Errorf("%s is embedded but is no first-party action: run 'make catalog'", name)
		}
	}
	fresh, err := actioncatalog.EncodeDescriptions(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, actioncatalog.FirstPartyJSON()) {
		t.Errorf("%s is not as 'make catalog' writes it: run 'make catalog'", actioncatalog.DescriptionsFile)
	}
	if _, err := actioncatalog.New(got); err != nil {
		t.Fatalf("the embedded descriptions do not make a catalogue: %v", err)
	}
}

// TestDecodeDescriptionsRefuses checks that a damaged file is refused
// rather than read in part.
func TestDecodeDescriptionsRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not an array":  `{"name":"noop"}`,
		"unknown field": `[{"name":"noop","domain":"DOMAIN_SERVICE","trusted":true}]`,
		"twice":         `[{"name":"noop","domain":"DOMAIN_SERVICE"},{"name":"noop","domain":"DOMAIN_SERVICE"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := actioncatalog.DecodeDescriptions([]byte(in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestReviewNamesAReconcileDifference checks that the catalogue's exact
// comparison covers reconcile_at_start: an agent whose action would run
// at start with other parameters is refused for it, and told which field.
func TestReviewNamesAReconcileDifference(t *testing.T) {
	descs, err := actioncatalog.FirstParty()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actioncatalog.New(descs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(d *pluginv1.ActionDescription)
	}{
		{name: "other parameters", edit: func(d *pluginv1.ActionDescription) {
			d.ReconcileAtStart = &pluginv1.ReconcileAtStart{ParamsJson: `{"reconcile":true,"allow":["0.0.0.0/1"]}`}
		}},
		{name: "not asked", edit: func(d *pluginv1.ActionDescription) { d.ReconcileAtStart = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := proto.Clone(descs["host-isolate"]).(*pluginv1.ActionDescription)
			tc.edit(d)
			accepted, refused := cat.Review("host", []*agentv1.PluginInfo{{Description: d, Sha256: "x"}})
			if accepted["host-isolate"] || len(refused) != 1 || !slices.Equal(refused[0].Differences, []string{"reconcile_at_start"}) {
				t.Fatalf("accepted %v, refused %+v", accepted, refused)
			}
		})
	}
}
