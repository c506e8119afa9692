package sdk

import (
	"github.com/firebreak-ir/firebreak/internal/actionschema"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// MaxParamsBytes caps the encoded size of one task's parameters.
const MaxParamsBytes = actionschema.MaxParamsBytes

// ResolveParams checks parameters against an action's schema and returns
// the typed parameter object the action receives; see
// actionschema.ResolveParams, which the controller uses too.
func ResolveParams(d *pluginv1.ActionDescription, text map[string]string, typed map[string]any) (map[string]any, error) {
	return actionschema.ResolveParams(d, text, typed)
}

// CheckDescription refuses a description that could not be dispatched
// safely; see actionschema.CheckDescription.
func CheckDescription(d *pluginv1.ActionDescription) error {
	return actionschema.CheckDescription(d)
}
