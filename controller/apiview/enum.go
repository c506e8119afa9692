// Package apiview is the one conversion layer between the controller's
// store models and the operator wire format (operatorv1), and the helpers
// every adapter shares: enum names as text, and timestamps.
//
// It imports the store's model types and the generated protos, nothing
// else of the controller, so the CLI, the gRPC adapters and the console
// convert the same way.
package apiview

import (
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// EnumName returns an enum value's name as text for people and JSON: lower
// case, without the type's prefix. RunStatus RUN_STATUS_SUCCEEDED is
// "succeeded"; AgentRole AGENT_ROLE_HOST is "host". An unknown number is
// its decimal form, as protobuf prints it.
func EnumName(e protoreflect.Enum) string {
	v := e.Descriptor().Values().ByNumber(e.Number())
	if v == nil {
		return strconv.Itoa(int(e.Number()))
	}
	return strings.ToLower(strings.TrimPrefix(string(v.Name()), enumPrefix(e.Descriptor())))
}

// EnumUpper is EnumName in upper case ("SUCCEEDED"), the form the audit
// log has always recorded.
func EnumUpper(e protoreflect.Enum) string { return strings.ToUpper(EnumName(e)) }

// ParseEnum returns the number of the value of enum type d whose EnumName
// is name (case-insensitive). The zero (UNSPECIFIED) value is never
// returned: ok is false for it and for unknown names.
func ParseEnum(d protoreflect.EnumDescriptor, name string) (protoreflect.EnumNumber, bool) {
	if name == "" {
		return 0, false
	}
	v := d.Values().ByName(protoreflect.Name(enumPrefix(d) + strings.ToUpper(name)))
	if v == nil || v.Number() == 0 {
		return 0, false
	}
	return v.Number(), true
}

// enumPrefix is the value prefix that buf's ENUM_VALUE_PREFIX rule gives
// enum type d: RunStatus -> "RUN_STATUS_".
func enumPrefix(d protoreflect.EnumDescriptor) string {
	name := string(d.Name())
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) && !unicode.IsUpper(rune(name[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	b.WriteByte('_')
	return b.String()
}

// Timestamp is t on the wire; the zero time is nil ("not yet"), never
// 1970 or year 1.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Time is a wire timestamp back as a pointer: nil when it is unset, so a
// JSON field is omitted or null rather than year 1.
func Time(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}
