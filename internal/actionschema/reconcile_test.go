package actionschema_test

import (
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/actionschema"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// TestReconcileParams checks the parameters an agent passes to an action
// that asks to be reconciled at start: resolved against the schema with
// defaults, and a description whose reconcile parameters the schema refuses
// is itself refused.
func TestReconcileParams(t *testing.T) {
	tests := []struct {
		name    string
		params  string // reconcile_at_start.params_json; "-" for none
		want    string
		wantErr string
	}{
		{name: "with defaults", params: `{"reconcile":true}`, want: `{"allow":[],"reconcile":true}`},
		{name: "not asked", params: "-", wantErr: "does not ask"},
		{name: "not an object", params: `[true]`, wantErr: "not a JSON object"},
		{name: "empty", params: ``, wantErr: "not a JSON object"},
		{name: "null", params: `null`, wantErr: "not a JSON object"},
		{name: "unknown parameter", params: `{"force":true}`, wantErr: `no parameter "force"`},
		{name: "wrong type", params: `{"reconcile":"maybe"}`, wantErr: "want true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &pluginv1.ActionDescription{Name: "fence", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Params: []*pluginv1.ParamSpec{
				{Name: "reconcile", Type: pluginv1.ParamType_PARAM_TYPE_BOOL},
				{Name: "allow", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]"},
			}}
			if tc.params != "-" {
				d.ReconcileAtStart = &pluginv1.ReconcileAtStart{ParamsJson: tc.params}
			}
			got, err := actionschema.ReconcileParams(d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReconcileParams: %v, want an error containing %q", err, tc.wantErr)
				}
				if tc.params != "-" {
					if err := actionschema.CheckDescription(d); err == nil {
						t.Fatal("CheckDescription accepted reconcile parameters the schema refuses")
					}
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ReconcileParams = %s, %v; want %s", got, err, tc.want)
			}
			if err := actionschema.CheckDescription(d); err != nil {
				t.Fatalf("CheckDescription: %v", err)
			}
		})
	}
}
