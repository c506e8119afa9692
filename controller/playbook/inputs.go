package playbook

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// BindInputs checks and converts the values a playbook starts with. Values
// may be typed (string, int64, bool, time.Duration, []string) or strings,
// which are parsed by the declared type; a list given as a string is split
// at commas. Undeclared names and missing required inputs are errors;
// absent optional inputs take their default, or the zero value of their
// type. The result maps every declared input to a value of its Go type.
func (pb *Playbook) BindInputs(values map[string]any) (map[string]any, error) {
	var errs []error
	for name := range values {
		if pb.Input(name) == nil {
			errs = append(errs, fmt.Errorf("unknown input %q (%s)", name, declaredInputs(pb)))
		}
	}
	out := make(map[string]any, len(pb.Inputs))
	for _, in := range pb.Inputs {
		v, given := values[in.Name]
		switch {
		case given:
			bound, err := in.Type.convert(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("input %q: %w", in.Name, err))
				continue
			}
			out[in.Name] = bound
		case in.Required:
			errs = append(errs, fmt.Errorf("input %q is required (%s)", in.Name, in.Type.describe()))
		case in.Default != nil:
			bound, err := in.Type.convert(literalGo(in.Default))
			if err != nil {
				errs = append(errs, fmt.Errorf("input %q: default %w", in.Name, err))
				continue
			}
			out[in.Name] = bound
		default:
			out[in.Name] = in.Type.zero()
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(sortedErrs(errs)...)
	}
	return out, nil
}

// ParseInputs binds inputs given as name=value strings, as from repeated
// --input flags. A list input may be given several times, each value
// comma-separated; other inputs may be given once.
func (pb *Playbook) ParseInputs(args []string) (map[string]any, error) {
	values := map[string]any{}
	for _, arg := range args {
		name, val, ok := strings.Cut(arg, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("input %q: want name=value", arg)
		}
		prev, seen := values[name]
		in := pb.Input(name)
		switch {
		case in != nil && in.Type == InputList:
			list, _ := prev.([]string)
			values[name] = append(list, splitList(val)...)
		case seen:
			return nil, fmt.Errorf("input %q is given twice", name)
		default:
			values[name] = val
		}
	}
	return pb.BindInputs(values)
}

func declaredInputs(pb *Playbook) string {
	if len(pb.Inputs) == 0 {
		return "the playbook declares no inputs"
	}
	names := make([]string, len(pb.Inputs))
	for i, in := range pb.Inputs {
		names[i] = in.Name
	}
	return "declared inputs: " + strings.Join(names, ", ")
}

func sortedErrs(errs []error) []error {
	// Unknown-input errors come from map iteration; sort for stable output.
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
