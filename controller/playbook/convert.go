package playbook

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// describeValue names the type of a plain Go value for messages.
func describeValue(v any) string {
	switch v.(type) {
	case []any, []string:
		return "a list"
	case map[string]any:
		return "a mapping"
	case time.Duration:
		return "a duration"
	case time.Time:
		return "a timestamp"
	case int, uint64:
		return "an integer"
	}
	return describeGo(v)
}

// convertParam converts a plain Go value to a parameter's type: string,
// int64, bool, a duration string, or []string. Maps and lists given to a
// string parameter become their JSON text, which is how rollback records
// travel from one action's output to its undoing action.
func convertParam(v any, spec *pluginv1.ParamSpec) (any, error) {
	if v == nil {
		return nil, fmt.Errorf("want %s, got null", paramTypeName(spec.GetType()))
	}
	switch spec.GetType() {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		switch s := v.(type) {
		case string:
			return s, checkAllowed(s, spec)
		case map[string]any, []any, []string:
			b, err := json.Marshal(s)
			if err != nil {
				return nil, fmt.Errorf("cannot encode %s as JSON: %v", describeValue(v), err)
			}
			return string(b), nil
		}
	case pluginv1.ParamType_PARAM_TYPE_INT:
		if i, ok := toInt(v); ok {
			return i, nil
		}
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		switch d := v.(type) {
		case time.Duration:
			return d.String(), nil
		case string:
			if _, err := time.ParseDuration(d); err != nil {
				return nil, fmt.Errorf("%q is not a duration (use Go syntax such as 90s, 5m or 1h30m)", d)
			}
			return d, nil
		}
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		list, err := toStringList(v)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			if err := checkAllowed(s, spec); err != nil {
				return nil, err
			}
		}
		return list, nil
	default:
		return nil, fmt.Errorf("the action declares unsupported type %s", spec.GetType())
	}
	return nil, fmt.Errorf("want %s, got %s", paramTypeName(spec.GetType()), describeValue(v))
}

func checkAllowed(s string, spec *pluginv1.ParamSpec) error {
	if len(spec.GetAllowed()) > 0 && !slices.Contains(spec.GetAllowed(), s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(spec.GetAllowed(), ", "))
	}
	return nil
}

// toInt accepts integers and integral floats, as JSON outputs carry numbers
// as floats.
func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

func toStringList(v any) ([]string, error) {
	switch l := v.(type) {
	case []string:
		return slices.Clone(l), nil
	case []any:
		out := make([]string, len(l))
		for i, el := range l {
			s, ok := el.(string)
			if !ok {
				return nil, fmt.Errorf("element %d: want a string, got %s", i, describeValue(el))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %s", describeValue(v))
}

// convert converts a value to the input type's Go type. Strings, as given
// on the command line, are parsed.
func (t InputType) convert(v any) (any, error) {
	if v == nil {
		return nil, fmt.Errorf("is null; want %s", t.describe())
	}
	s, isString := v.(string)
	switch t {
	case InputString:
		if isString {
			return s, nil
		}
	case InputInt:
		if isString {
			i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", s)
			}
			return i, nil
		}
		if i, ok := toInt(v); ok {
			return i, nil
		}
	case InputBool:
		if isString {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false", s)
			}
			return b, nil
		}
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case InputDuration:
		if isString {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (use Go syntax such as 90s, 5m or 1h30m)", s)
			}
			return d, nil
		}
		if d, ok := v.(time.Duration); ok {
			return d, nil
		}
	case InputList:
		if isString {
			return splitList(s), nil
		}
		l, err := toStringList(v)
		if err != nil {
			return nil, err
		}
		return l, nil
	default:
		return nil, fmt.Errorf("has unknown type %q", string(t))
	}
	return nil, fmt.Errorf("want %s, got %s", t.describe(), describeValue(v))
}

func (t InputType) describe() string {
	switch t {
	case InputString:
		return "a string"
	case InputInt:
		return "an integer"
	case InputBool:
		return "a boolean"
	case InputDuration:
		return "a duration"
	case InputList:
		return "a list of strings"
	}
	return string(t)
}

// zero is the value an optional input without default takes.
func (t InputType) zero() any {
	switch t {
	case InputInt:
		return int64(0)
	case InputBool:
		return false
	case InputDuration:
		return time.Duration(0)
	case InputList:
		return []string{}
	}
	return ""
}

// celToGo converts a CEL result to plain Go values: string, int64, uint64,
// float64, bool, nil, time.Duration, time.Time, []any and map[string]any.
func celToGo(val ref.Val) (any, error) {
	switch v := val.(type) {
	case types.String:
		return string(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		return uint64(v), nil
	case types.Double:
		return float64(v), nil
	case types.Bool:
		return bool(v), nil
	case types.Null:
		return nil, nil
	case types.Duration:
		return v.Duration, nil
	case types.Timestamp:
		return v.Time, nil
	case *types.Err:
		return nil, v
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("list of unknown size")
		}
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			el, err := celToGo(v.Get(i))
			if err != nil {
				return nil, err
			}
			out = append(out, el)
		}
		return out, nil
	case traits.Mapper:
		out := map[string]any{}
		it := v.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k)
			}
			el, err := celToGo(v.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = el
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value of type %s", val.Type().TypeName())
}

// textOf writes a scalar value into interpolated text.
func textOf(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Duration:
		return x.String(), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case nil:
		return "", fmt.Errorf("cannot interpolate null into text")
	}
	return "", fmt.Errorf("cannot interpolate %s into text", describeValue(v))
}
