// Package actionschema checks response-action descriptions and resolves a
// task's parameters against an action's parameter schema. It is a leaf: it
// depends on the plugin protocol's messages only, not on go-plugin, so the
// controller's server packages check schemas without linking the plugin
// runtime, and the plugin SDK uses the same code.
package actionschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// MaxParamsBytes caps the encoded size of one task's parameters.
const MaxParamsBytes = 64 << 10

// ResolveParams checks parameters against an action's schema and returns
// the typed parameter object the action receives. Text values (from the
// command line) are converted by the declared type; typed values (from JSON,
// e.g. playbooks) are checked; text wins on a key given in both. Defaults are
// applied, and an unknown parameter, a missing required one or a value of the
// wrong type is an error naming the parameter.
func ResolveParams(d *pluginv1.ActionDescription, text map[string]string, typed map[string]any) (map[string]any, error) {
	specs := make(map[string]*pluginv1.ParamSpec, len(d.GetParams()))
	for _, p := range d.GetParams() {
		specs[p.GetName()] = p
	}
	out := make(map[string]any, len(specs))
	for _, k := range sortedKeys(typed) {
		p, ok := specs[k]
		if !ok {
			return nil, unknownParam(d, k)
		}
		v, err := checkTyped(p, typed[k])
		if err != nil {
			return nil, fmt.Errorf("parameter %q of action %q: %w", k, d.GetName(), err)
		}
		out[k] = v
	}
	for _, k := range sortedKeys(text) {
		p, ok := specs[k]
		if !ok {
			return nil, unknownParam(d, k)
		}
		v, err := convertText(p, text[k])
		if err != nil {
			return nil, fmt.Errorf("parameter %q of action %q: %w", k, d.GetName(), err)
		}
		out[k] = v
	}
	for _, p := range d.GetParams() {
		if _, ok := out[p.GetName()]; ok {
			continue
		}
		if p.GetRequired() {
			return nil, fmt.Errorf("action %q needs parameter %q (%s): add --param %s=…", d.GetName(), p.GetName(), p.GetDescription(), p.GetName())
		}
		if p.GetDefaultJson() != "" {
			var v any
			if err := json.Unmarshal([]byte(p.GetDefaultJson()), &v); err != nil {
				return nil, fmt.Errorf("action %q: default of parameter %q is not JSON: %w", d.GetName(), p.GetName(), err)
			}
			cv, err := checkTyped(p, v)
			if err != nil {
				return nil, fmt.Errorf("action %q: default of parameter %q: %w", d.GetName(), p.GetName(), err)
			}
			out[p.GetName()] = cv
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxParamsBytes {
		return nil, fmt.Errorf("parameters of action %q are %d bytes; the limit is %d", d.GetName(), len(b), MaxParamsBytes)
	}
	return out, nil
}

func unknownParam(d *pluginv1.ActionDescription, k string) error {
	names := make([]string, 0, len(d.GetParams()))
	for _, p := range d.GetParams() {
		names = append(names, p.GetName())
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("action %q takes no parameters, but %q was given", d.GetName(), k)
	}
	return fmt.Errorf("action %q has no parameter %q (it takes: %s)", d.GetName(), k, strings.Join(names, ", "))
}

func convertText(p *pluginv1.ParamSpec, s string) (any, error) {
	switch p.GetType() {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		return s, checkAllowed(p, s)
	case pluginv1.ParamType_PARAM_TYPE_INT:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer, got %q", s)
		}
		return n, nil
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("want true or false, got %q", s)
		}
		return b, nil
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		if _, err := time.ParseDuration(strings.TrimSpace(s)); err != nil {
			return nil, fmt.Errorf("want a duration such as 30s or 5m, got %q", s)
		}
		return strings.TrimSpace(s), nil
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		var items []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				items = append(items, f)
			}
		}
		if items == nil {
			items = []string{}
		}
		for _, it := range items {
			if err := checkAllowed(p, it); err != nil {
				return nil, err
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("unsupported parameter type %v", p.GetType())
}

func checkTyped(p *pluginv1.ParamSpec, v any) (any, error) {
	switch p.GetType() {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
		}
		return s, checkAllowed(p, s)
	case pluginv1.ParamType_PARAM_TYPE_INT:
		switch n := v.(type) {
		case float64:
			if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return nil, fmt.Errorf("want an integer, got %v", n)
			}
			return int64(n), nil
		case int:
			return int64(n), nil
		case int64:
			return n, nil
		case json.Number:
			i, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("want an integer, got %s", n)
			}
			return i, nil
		case string:
			return convertText(p, n)
		}
		return nil, fmt.Errorf("want an integer, got %s", jsonKind(v))
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			return convertText(p, b)
		}
		return nil, fmt.Errorf("want true or false, got %s", jsonKind(v))
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration string, got %s", jsonKind(v))
		}
		return convertText(p, s)
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		switch l := v.(type) {
		case []string:
			for _, s := range l {
				if err := checkAllowed(p, s); err != nil {
					return nil, err
				}
			}
			return slices.Clone(l), nil
		case []any:
			out := make([]string, 0, len(l))
			for i, it := range l {
				s, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: want a string, got %s", i, jsonKind(it))
				}
				if err := checkAllowed(p, s); err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			return out, nil
		case string:
			return convertText(p, l)
		}
		return nil, fmt.Errorf("want a list of strings, got %s", jsonKind(v))
	}
	return nil, fmt.Errorf("unsupported parameter type %v", p.GetType())
}

func checkAllowed(p *pluginv1.ParamSpec, s string) error {
	if len(p.GetAllowed()) == 0 || slices.Contains(p.GetAllowed(), s) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(p.GetAllowed(), ", "))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CheckDescription refuses a description that could not be dispatched safely.
func CheckDescription(d *pluginv1.ActionDescription) error {
	if d == nil {
		return errors.New("the plugin returned no description")
	}
	if !validName(d.GetName()) {
		return fmt.Errorf("the plugin's action name %q is not valid: use lower-case letters, digits and dashes", d.GetName())
	}
	if d.GetDomain() == pluginv1.Domain_DOMAIN_UNSPECIFIED {
		return fmt.Errorf("action %q does not say its domain", d.GetName())
	}
	seen := map[string]bool{}
	for _, p := range d.GetParams() {
		if p.GetName() == "" || seen[p.GetName()] {
			return fmt.Errorf("action %q: parameter name %q is empty or repeated", d.GetName(), p.GetName())
		}
		seen[p.GetName()] = true
		if p.GetType() == pluginv1.ParamType_PARAM_TYPE_UNSPECIFIED {
			return fmt.Errorf("action %q: parameter %q has no type", d.GetName(), p.GetName())
		}
	}
	if d.GetReconcileAtStart() != nil {
		if _, err := ReconcileParams(d); err != nil {
			return err
		}
	}
	return nil
}

// ReconcileParams returns the parameters an agent passes when it runs the
// action at start (the description's reconcile_at_start), resolved against
// the action's schema with defaults applied. It is an error when the
// description does not ask to be reconciled, or its parameters are not a
// JSON object the schema accepts.
func ReconcileParams(d *pluginv1.ActionDescription) ([]byte, error) {
	r := d.GetReconcileAtStart()
	if r == nil {
		return nil, fmt.Errorf("action %q does not ask to be reconciled at start", d.GetName())
	}
	var typed map[string]any
	if err := json.Unmarshal([]byte(r.GetParamsJson()), &typed); err != nil || typed == nil {
		return nil, fmt.Errorf("action %q: reconcile_at_start.params_json is not a JSON object", d.GetName())
	}
	params, err := ResolveParams(d, nil, typed)
	if err != nil {
		return nil, fmt.Errorf("action %q: reconcile_at_start: %w", d.GetName(), err)
	}
	return json.Marshal(params)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
