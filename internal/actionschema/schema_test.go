package actionschema_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/actionschema"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

func testDescription() *pluginv1.ActionDescription {
	return &pluginv1.ActionDescription{
		Name: "demo",
		Params: []*pluginv1.ParamSpec{
			{Name: "instance_id", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the instance"},
			{Name: "count", Type: pluginv1.ParamType_PARAM_TYPE_INT, DefaultJson: "3"},
			{Name: "dry", Type: pluginv1.ParamType_PARAM_TYPE_BOOL},
			{Name: "wait", Type: pluginv1.ParamType_PARAM_TYPE_DURATION},
			{Name: "allow", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]"},
			{Name: "profile", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Allowed: []string{"triage", "full"}},
		},
	}
}

func TestResolveParams(t *testing.T) {
	tests := []struct {
		name    string
		text    map[string]string
		typed   map[string]any
		want    map[string]any
		wantErr string
	}{
		{
			name: "text values converted and defaults applied",
			text: map[string]string{"instance_id": "i-1", "dry": "true", "wait": "30s", "allow": "10.0.0.0/8, 192.168.1.1:22"},
			want: map[string]any{"instance_id": "i-1", "count": int64(3), "dry": true, "wait": "30s",
				"allow": []string{"10.0.0.0/8", "192.168.1.1:22"}},
		},
		{
			name:  "typed values checked; text wins",
			typed: map[string]any{"instance_id": "i-typed", "count": float64(7), "allow": []any{"a"}},
			text:  map[string]string{"instance_id": "i-text"},
			want:  map[string]any{"instance_id": "i-text", "count": int64(7), "allow": []string{"a"}},
		},
		{name: "unknown parameter", text: map[string]string{"instance_id": "i", "bogus": "1"}, wantErr: `action "demo" has no parameter "bogus" (it takes: allow, count, dry, instance_id, profile, wait)`},
		{name: "missing required", text: map[string]string{}, wantErr: `action "demo" needs parameter "instance_id"`},
		{name: "bad int", text: map[string]string{"instance_id": "i", "count": "x"}, wantErr: `parameter "count" of action "demo": want an integer, got "x"`},
		{name: "fractional int", typed: map[string]any{"instance_id": "i", "count": 1.5}, wantErr: "want an integer, got 1.5"},
		{name: "bad bool", text: map[string]string{"instance_id": "i", "dry": "maybe"}, wantErr: `want true or false, got "maybe"`},
		{name: "bad duration", text: map[string]string{"instance_id": "i", "wait": "soon"}, wantErr: "want a duration"},
		{name: "not allowed", text: map[string]string{"instance_id": "i", "profile": "deep"}, wantErr: `"deep" is not one of triage, full`},
		{name: "wrong JSON type", typed: map[string]any{"instance_id": 5.0}, wantErr: "want a string, got a number"},
		{name: "list item not a string", typed: map[string]any{"instance_id": "i", "allow": []any{"a", 1.0}}, wantErr: "item 1: want a string, got a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := actionschema.ResolveParams(testDescription(), tt.text, tt.typed)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}
