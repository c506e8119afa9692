package finding

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Error is a refusal of an event, naming the JSON path of the bad value.
type Error struct {
	// Path is the JSON path of the bad value, e.g. "detail.severity"; empty
	// for problems with the event as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats the refusal as "path: message".
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// maxDepth bounds the nesting of event JSON.
const maxDepth = 64

// decodeStrict decodes one JSON value into maps, slices, strings,
// json.Number, bools and nil. It refuses duplicate object keys, nesting
// deeper than maxDepth and trailing data. Duplicate keys are refused
// because two parsers may keep different copies, and a finding must mean
// one thing to everything that reads it.
func decodeStrict(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, &Error{Msg: fmt.Sprintf("invalid JSON at byte %d: %v", max(syn.Offset-1, 0), err)}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, &Error{Msg: "invalid JSON: unexpected end of input"}
		}
		return nil, &Error{Msg: fmt.Sprintf("invalid JSON: %v", err)}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &Error{Msg: fmt.Sprintf("unexpected data after the JSON value, which ends at byte %d", end)}
	}
	if err := checkStructure(data[:end]); err != nil {
		return nil, err
	}
	return v, nil
}

// checkStructure scans syntactically valid JSON for duplicate object keys
// and nesting deeper than maxDepth, naming the path of the offence.
func checkStructure(data []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		key       string
		index     int
		keys      map[string]struct{}
	}
	var stack []*frame
	path := func(frames []*frame, extra string) string {
		var b strings.Builder
		for _, f := range frames {
			if f.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			} else {
				fmt.Fprintf(&b, "[%d]", f.index)
			}
		}
		if extra != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(extra)
		}
		return b.String()
	}
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) >= maxDepth+1 {
				return errorf(path(stack, ""), "nested deeper than %d levels", maxDepth)
			}
			stack = append(stack, &frame{object: c == '{', expectKey: c == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			top := stack[len(stack)-1]
			if top.object {
				top.expectKey = true
			} else {
				top.index++
			}
		case ':':
			stack[len(stack)-1].expectKey = false
		case '"':
			j := i + 1
			escaped := false
			for ; data[j] != '"'; j++ {
				if data[j] == '\\' {
					escaped = true
					j++
				}
			}
			if len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].expectKey {
				top := stack[len(stack)-1]
				key := string(data[i+1 : j])
				if escaped {
					if err := json.Unmarshal(data[i:j+1], &key); err != nil {
						return &Error{Msg: fmt.Sprintf("invalid JSON at byte %d: %v", i, err)}
					}
				}
				if top.keys == nil {
					top.keys = map[string]struct{}{}
				}
				if _, dup := top.keys[key]; dup {
					return errorf(path(stack[:len(stack)-1], key), "duplicate key")
				}
				top.keys[key] = struct{}{}
				top.key = key
			}
			i = j
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonType names a decoded value's JSON type for messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// object is a decoded JSON object with its path, read through typed
// accessors that refuse values of the wrong type.
type object struct {
	path string
	m    map[string]any
}

func asObject(v any, path string) (object, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return object{}, errorf(path, "want object, got %s", jsonType(v))
	}
	return object{path: path, m: m}, nil
}

func (o object) at(key string) string { return join(o.path, key) }

// get returns the value at key; absent and null are the same, as AWS
// omits or nulls optional fields alike.
func (o object) get(key string, required bool) (any, bool, error) {
	v, ok := o.m[key]
	if !ok || v == nil {
		if required {
			return nil, false, errorf(o.at(key), "missing")
		}
		return nil, false, nil
	}
	return v, true, nil
}

// maxString bounds any one string field.
const maxString = 4096

func (o object) str(key string, required bool) (string, error) {
	v, ok, err := o.get(key, required)
	if err != nil || !ok {
		return "", err
	}
	s, isStr := v.(string)
	if !isStr {
		return "", errorf(o.at(key), "want string, got %s", jsonType(v))
	}
	if required && strings.TrimSpace(s) == "" {
		return "", errorf(o.at(key), "empty")
	}
	if len(s) > maxString {
		return "", errorf(o.at(key), "string of %d bytes; the limit is %d", len(s), maxString)
	}
	return s, nil
}

func (o object) num(key string, required bool) (float64, bool, error) {
	v, ok, err := o.get(key, required)
	if err != nil || !ok {
		return 0, false, err
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, false, errorf(o.at(key), "want number, got %s", jsonType(v))
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, false, errorf(o.at(key), "number %s is out of range", n)
	}
	return f, true, nil
}

func (o object) obj(key string, required bool) (object, bool, error) {
	v, ok, err := o.get(key, required)
	if err != nil || !ok {
		return object{}, false, err
	}
	sub, err := asObject(v, o.at(key))
	return sub, err == nil, err
}

func (o object) array(key string, required bool) ([]any, error) {
	v, ok, err := o.get(key, required)
	if err != nil || !ok {
		return nil, err
	}
	list, isList := v.([]any)
	if !isList {
		return nil, errorf(o.at(key), "want array, got %s", jsonType(v))
	}
	return list, nil
}

func (o object) strings(key string) ([]string, error) {
	list, err := o.array(key, false)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, errorf(fmt.Sprintf("%s[%d]", o.at(key), i), "want string, got %s", jsonType(v))
		}
		out[i] = s
	}
	return out, nil
}

func (o object) time(key string, required bool) (time.Time, error) {
	s, err := o.str(key, required)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errorf(o.at(key), "%q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

var accountRe = regexp.MustCompile(`^[0-9]{12}$`)

func (o object) account(key string, required bool) (string, error) {
	s, err := o.str(key, required)
	if err != nil || s == "" {
		return s, err
	}
	if !accountRe.MatchString(s) {
		return "", errorf(o.at(key), "%q is not a 12-digit AWS account id", s)
	}
	return s, nil
}
