package playbook

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads a playbook file. It checks the file's structure: size and
// limits, YAML syntax, one document, no aliases, known fields only, and the
// YAML type of every field. It returns Errors, with file positions, when the
// structure is wrong. Parse does not check meaning; call Validate for that.
func Parse(filename string, data []byte) (*Playbook, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: filename, Msg: fmt.Sprintf("playbook is %d bytes; the limit is %d", len(data), MaxFileSize)}}
	}
	d := &decoder{file: filename, src: newSource(data)}
	root, ok := d.document(data)
	if !ok {
		sortErrors(d.errs)
		return nil, d.errs
	}
	pb := d.playbook(root)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	return pb, nil
}

// decoder walks the YAML node tree and builds a Playbook, collecting errors.
type decoder struct {
	file  string
	src   *source
	errs  Errors
	exprs int
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Column: n.Column} }

func (d *decoder) errorAt(p Pos, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(posOf(n), format, args...)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses the YAML text into one mapping node, refusing aliases and
// extra documents.
func (d *decoder) document(data []byte) (*yaml.Node, bool) {
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorAt(Pos{}, "file is empty; a playbook starts with apiVersion: %s", APIVersion)
			return nil, false
		}
		d.yamlError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "file holds more than one YAML document; put one playbook in each file")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		d.yamlError(err)
		return nil, false
	}
	if len(doc.Content) == 0 {
		d.errorAt(Pos{}, "file is empty; a playbook starts with apiVersion: %s", APIVersion)
		return nil, false
	}
	root := doc.Content[0]
	// Aliases are refused outright: expanding them is how "billion laughs"
	// documents exhaust memory, and a playbook has no need for them.
	stack := []*yaml.Node{root}
	aliases := 0
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			if aliases < 10 {
				d.errorf(n, "YAML aliases (*%s) are not allowed in playbooks; write the value out", n.Value)
			}
			aliases++
			continue
		}
		stack = append(stack, n.Content...)
	}
	if aliases > 0 {
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "a playbook must be a mapping with apiVersion, kind, metadata, inputs and steps, not %s", describeNode(root))
		return nil, false
	}
	return root, true
}

// yamlError turns a yaml.v3 syntax error into positioned errors.
func (d *decoder) yamlError(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			d.errorAt(Pos{}, "%s", e)
		}
		return
	}
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 numbers lines from 1 for scanner errors but from 0 for
		// parser errors; the parser's problems are these.
		for _, p := range []string{"did not find expected", "found duplicate %", "found incompatible", "found undefined tag"} {
			if strings.HasPrefix(m[2], p) {
				line++
				break
			}
		}
		text := "YAML syntax: " + m[2]
		if strings.Contains(d.src.line(line), "${{") {
			text += `; inside {…} or […] quote expressions: "${{ … }}"`
		}
		d.errorAt(Pos{Line: line, Column: 1}, "%s", text)
		return
	}
	d.errorAt(Pos{}, "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// describeNode names a node's YAML type for error messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a " + n.ShortTag() + " value"
	}
	return "nothing"
}

// fields walks a mapping, reporting keys that are not strings, unknown or
// repeated, and calls set for each known key.
func (d *decoder) fields(n *yaml.Node, what string, known []string, set func(key string, k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, not %s", what, describeNode(n))
		return false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k, "%s: keys must be strings, not %s", what, describeNode(k))
			continue
		}
		if !slices.Contains(known, k.Value) {
			d.errorf(k, "unknown field %q in %s (known fields: %s)", k.Value, what, strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "field %q appears twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		set(k.Value, k, v)
	}
	return true
}

// str reads a string scalar.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, "%s must be a string, not %s", field, describeNode(n))
		return "", false
	}
	return n.Value, true
}

// plainStr reads a string scalar that must not hold expressions.
func (d *decoder) plainStr(n *yaml.Node, field string) (string, bool) {
	s, ok := d.str(n, field)
	if ok && strings.Contains(s, "${{") {
		d.errorf(n, "%s cannot hold expressions", field)
		return "", false
	}
	return s, ok
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.errorf(n, "%s must be true or false, not %s", field, describeNode(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.errorf(n, "%s: %v", field, err)
		return false, false
	}
	return b, true
}

func (d *decoder) integer(n *yaml.Node, field string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n, "%s must be an integer, not %s", field, describeNode(n))
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		d.errorf(n, "%s: %q is not a 64-bit integer", field, n.Value)
		return 0, false
	}
	return i, true
}

func (d *decoder) playbook(root *yaml.Node) *Playbook {
	pb := &Playbook{File: d.file, rootPos: posOf(root)}
	d.fields(root, "the playbook", []string{"apiVersion", "kind", "metadata", "inputs", "steps"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "apiVersion":
			pb.apiVersionPos = posOf(v)
			pb.APIVersion, _ = d.str(v, "apiVersion")
		case "kind":
			pb.kindPos = posOf(v)
			pb.Kind, _ = d.str(v, "kind")
		case "metadata":
			pb.metadataPos = posOf(v)
			d.metadata(v, &pb.Metadata)
		case "inputs":
			if v.Kind != yaml.SequenceNode {
				d.errorf(v, "inputs must be a list, not %s", describeNode(v))
				return
			}
			if len(v.Content) > MaxInputs {
				d.errorf(v, "playbook declares %d inputs; the limit is %d", len(v.Content), MaxInputs)
				return
			}
			for _, n := range v.Content {
				if in := d.input(n); in != nil {
					pb.Inputs = append(pb.Inputs, in)
				}
			}
		case "steps":
			pb.stepsPos = posOf(v)
			if v.Kind != yaml.SequenceNode {
				d.errorf(v, "steps must be a list, not %s", describeNode(v))
				return
			}
			if len(v.Content) > MaxSteps {
				d.errorf(v, "playbook has %d steps; the limit is %d", len(v.Content), MaxSteps)
				return
			}
			for _, n := range v.Content {
				if s := d.step(n); s != nil {
					pb.Steps = append(pb.Steps, s)
				}
			}
		}
	})
	return pb
}

func (d *decoder) metadata(n *yaml.Node, m *Metadata) {
	d.fields(n, "metadata", []string{"name", "version", "description"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			m.namePos = posOf(v)
			m.Name, _ = d.plainStr(v, "metadata.name")
		case "version":
			m.versionPos = posOf(v)
			i, ok := d.integer(v, "metadata.version")
			if ok && (i < 1 || i > math.MaxInt32) {
				d.errorf(v, "metadata.version must be a positive integer, not %d", i)
				return
			}
			m.Version = int(i)
		case "description":
			m.Description, _ = d.plainStr(v, "metadata.description")
		}
	})
}

func (d *decoder) input(n *yaml.Node) *Input {
	in := &Input{Pos: posOf(n), namePos: posOf(n), typePos: posOf(n)}
	ok := d.fields(n, "input", []string{"name", "type", "required", "default", "description"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			in.namePos = posOf(v)
			in.Name, _ = d.plainStr(v, "input name")
		case "type":
			in.typePos = posOf(v)
			t, _ := d.plainStr(v, "input type")
			in.Type = InputType(t)
		case "required":
			in.Required, _ = d.boolean(v, "required")
		case "default":
			in.Default = d.value(v, "default", 0)
			if in.Default != nil && len(in.Default.Exprs()) > 0 {
				d.errorf(v, "an input default cannot hold expressions")
			}
		case "description":
			in.Description, _ = d.plainStr(v, "input description")
		}
	})
	if !ok {
		return nil
	}
	return in
}

func (d *decoder) step(n *yaml.Node) *Step {
	s := &Step{Pos: posOf(n), idPos: posOf(n), phasePos: posOf(n), actionPos: posOf(n), operationPos: posOf(n), paramsPos: posOf(n)}
	ok := d.fields(n, "step", []string{"id", "description", "phase", "action", "operation", "needs", "targets", "params", "when", "timeout", "on_failure", "approval", "rollback"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			s.idPos = posOf(v)
			s.ID, _ = d.plainStr(v, "step id")
		case "description":
			s.Description, _ = d.plainStr(v, "step description")
		case "phase":
			s.phasePos = posOf(v)
			p, _ := d.plainStr(v, "phase")
			s.Phase = Phase(p)
		case "action":
			s.actionPos = posOf(v)
			s.Action, _ = d.plainStr(v, "action")
		case "operation":
			s.operationPos = posOf(v)
			s.Operation, _ = d.plainStr(v, "operation")
		case "needs":
			if v.Kind != yaml.SequenceNode {
				d.errorf(v, "needs must be a list of step ids, not %s", describeNode(v))
				return
			}
			for _, e := range v.Content {
				if id, ok := d.plainStr(e, "a needs entry"); ok {
					s.Needs = append(s.Needs, id)
					s.needsPos = append(s.needsPos, posOf(e))
				}
			}
		case "targets":
			s.Targets.pos = posOf(v)
			s.Targets.set = true
			d.fields(v, "targets", []string{"selector", "accounts", "regions"}, func(key string, k, v *yaml.Node) {
				switch key {
				case "selector":
					s.Targets.Selector = d.value(v, "targets.selector", 0)
				case "accounts":
					s.Targets.Accounts = d.value(v, "targets.accounts", 0)
				case "regions":
					s.Targets.Regions = d.value(v, "targets.regions", 0)
				}
			})
		case "params":
			s.paramsPos = posOf(v)
			s.Params = d.params(v, "params")
		case "when":
			s.When = d.value(v, "when", 0)
		case "timeout":
			s.timeoutPos = posOf(v)
			s.Timeout, _ = d.plainStr(v, "timeout")
		case "on_failure":
			s.onFailurePos = posOf(v)
			f, _ := d.plainStr(v, "on_failure")
			s.OnFailure = OnFailure(f)
		case "approval":
			s.approvalPos = posOf(v)
			if v.Kind != yaml.ScalarNode {
				d.errorf(v, "approval must be %q, not %s", ApprovalRequired, describeNode(v))
				return
			}
			s.Approval = v.Value
			if v.ShortTag() != "!!str" {
				s.Approval = describeNode(v) + " " + v.Value
			}
		case "rollback":
			s.Rollback = &Rollback{Pos: posOf(v), actionPos: posOf(v), paramsPos: posOf(v)}
			d.fields(v, "rollback", []string{"action", "params"}, func(key string, k, v *yaml.Node) {
				switch key {
				case "action":
					s.Rollback.actionPos = posOf(v)
					s.Rollback.Action, _ = d.plainStr(v, "rollback action")
				case "params":
					s.Rollback.paramsPos = posOf(v)
					s.Rollback.Params = d.params(v, "rollback params")
				}
			})
		}
	})
	if !ok {
		return nil
	}
	return s
}

func (d *decoder) params(n *yaml.Node, what string) []*Param {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping of parameter names to values, not %s", what, describeNode(n))
		return nil
	}
	var out []*Param
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k, "%s: parameter names must be strings, not %s", what, describeNode(k))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "parameter %q appears twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		if val := d.value(v, "parameter "+strconv.Quote(k.Value), 0); val != nil {
			out = append(out, &Param{Name: k.Value, Value: val, namePos: posOf(k)})
		}
	}
	return out
}

// value reads a parameter-like value, finding the expressions in its strings.
func (d *decoder) value(n *yaml.Node, what string, depth int) *Value {
	if depth > MaxValueDepth {
		d.errorf(n, "%s is nested deeper than %d levels", what, MaxValueDepth)
		return nil
	}
	v := &Value{Pos: posOf(n)}
	switch n.Kind {
	case yaml.SequenceNode:
		v.Kind = ValueList
		for _, e := range n.Content {
			ev := d.value(e, what, depth+1)
			if ev == nil {
				return nil
			}
			v.List = append(v.List, ev)
		}
		return v
	case yaml.MappingNode:
		v.Kind = ValueMap
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, e := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
				d.errorf(k, "%s: mapping keys must be strings, not %s", what, describeNode(k))
				return nil
			}
			ev := d.value(e, what, depth+1)
			if ev == nil {
				return nil
			}
			v.Map = append(v.Map, &Param{Name: k.Value, Value: ev, namePos: posOf(k)})
		}
		return v
	case yaml.ScalarNode:
	default:
		d.errorf(n, "%s: unsupported YAML node", what)
		return nil
	}
	v.Text = n.Value
	v.Kind = ValueLiteral
	switch n.ShortTag() {
	case "!!str":
		return d.stringValue(n, v, what)
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			d.errorf(n, "%s: %q is not a 64-bit integer", what, n.Value)
			return nil
		}
		v.Literal = i
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			d.errorf(n, "%s: %q is not a number", what, n.Value)
			return nil
		}
		v.Literal = f
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			d.errorf(n, "%s: %q is not a boolean", what, n.Value)
			return nil
		}
		v.Literal = b
	case "!!null":
		v.Literal = nil
	case "!!timestamp":
		v.Literal = n.Value
	default:
		d.errorf(n, "%s: YAML tag %s is not supported", what, n.Tag)
		return nil
	}
	return v
}

func (d *decoder) stringValue(n *yaml.Node, v *Value, what string) *Value {
	s := n.Value
	parts, starts, badOff, msg := splitTemplate(s)
	if msg != "" {
		d.errorAt(d.src.scalarPos(n, badOff), "%s: %s", what, msg)
		return nil
	}
	nexprs := 0
	for i := range parts {
		e := parts[i].Expr
		if e == nil {
			continue
		}
		nexprs++
		e.node, e.start, e.src = n, starts[i], d.src
		e.Pos = d.src.scalarPos(n, starts[i]-len("${{"))
		if n := len([]rune(e.Source)); n > MaxExprLen {
			d.errorAt(e.Pos, "%s: expression is %d characters long; the limit is %d", what, n, MaxExprLen)
			return nil
		}
	}
	d.exprs += nexprs
	if d.exprs > MaxExprs {
		if d.exprs-nexprs <= MaxExprs {
			d.errorf(n, "playbook holds more than %d expressions", MaxExprs)
		}
		return nil
	}
	switch {
	case nexprs == 0:
		v.Literal = s
	case len(parts) == 1:
		v.Kind = ValueExpr
		v.Expr = parts[0].Expr
	default:
		v.Kind = ValueTemplate
		v.Parts = parts
	}
	return v
}
