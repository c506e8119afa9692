package playbook

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// compiledExpr is a type-checked expression ready to evaluate.
type compiledExpr struct {
	expr    *Expr
	prg     cel.Program
	out     *cel.Type
	steps   []string // steps whose outputs or status the expression reads
	finding bool     // whether it reads the finding
}

// exprScope says what an expression may refer to.
type exprScope struct {
	step    string          // the step the expression belongs to
	visible map[string]bool // steps it may read: its transitive needs
	self    bool            // whether it may read its own step (rollbacks)
}

// celType maps an input type to its CEL type.
func (t InputType) celType() *cel.Type {
	switch t {
	case InputString:
		return cel.StringType
	case InputInt:
		return cel.IntType
	case InputBool:
		return cel.BoolType
	case InputDuration:
		return cel.DurationType
	case InputList:
		return cel.ListType(cel.StringType)
	}
	return cel.DynType
}

// baseEnv declares the variables every expression sees.
func baseEnv(inputs []*Input) (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.Variable("finding", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("case.id", cel.StringType),
		cel.Variable("case.title", cel.StringType),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxExprLen),
		cel.ParserRecursionLimit(64),
		cel.ExpressionNodeLimit(2000),
	}
	for _, in := range inputs {
		opts = append(opts, cel.Variable("inputs."+in.Name, in.Type.celType()))
	}
	return cel.NewEnv(opts...)
}

// stepEnv extends the base environment with the steps an expression may read.
func stepEnv(base *cel.Env, steps []string) (*cel.Env, error) {
	if len(steps) == 0 {
		return base, nil
	}
	opts := make([]cel.EnvOption, 0, 2*len(steps))
	for _, id := range steps {
		opts = append(opts,
			cel.Variable("steps."+id+".outputs", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("steps."+id+".status", cel.StringType))
	}
	return base.Extend(opts...)
}

// compileExpr parses, checks references of, and type-checks one expression.
// It reports problems through c and returns nil when there are any.
func (c *compiler) compileExpr(e *Expr, env *cel.Env, scope exprScope) *compiledExpr {
	if ce, ok := c.exprs[e]; ok {
		return ce
	}
	parsed, iss := env.Parse(e.Source)
	if iss.Err() != nil {
		c.celIssues(e, iss)
		c.exprs[e] = nil
		return nil
	}
	ce := &compiledExpr{expr: e}
	if !c.checkReferences(e, parsed.NativeRep(), scope, ce) {
		c.exprs[e] = nil
		return nil
	}
	checked, iss := env.Check(parsed)
	if iss.Err() != nil {
		c.celIssues(e, iss)
		c.exprs[e] = nil
		return nil
	}
	prg, err := env.Program(checked, cel.CostLimit(MaxEvalCost), cel.InterruptCheckFrequency(100))
	if err != nil {
		c.errorAt(e.Pos, "expression: %v", err)
		c.exprs[e] = nil
		return nil
	}
	ce.prg = prg
	ce.out = checked.OutputType()
	c.exprs[e] = ce
	return ce
}

func (c *compiler) celIssues(e *Expr, iss *cel.Issues) {
	for _, ce := range iss.Errors() {
		c.errorAt(e.posAt(offsetOf(e.Source, ce.Location)), "expression: %s", ce.Message)
	}
}

// offsetOf converts a CEL location (1-based line, 0-based column in code
// points) to a byte offset in the expression source.
func offsetOf(src string, loc common.Location) int {
	if loc == nil || loc.Line() < 1 {
		return 0
	}
	off := 0
	for line := 1; line < loc.Line(); line++ {
		i := strings.IndexByte(src[off:], '\n')
		if i < 0 {
			return 0
		}
		off += i + 1
	}
	for col := 0; col < loc.Column() && off < len(src) && src[off] != '\n'; col++ {
		_, size := utf8.DecodeRuneInString(src[off:])
		off += size
	}
	return off
}

// checkReferences walks a parsed expression and reports references to
// inputs, steps and case fields that do not exist or are out of reach. The
// type checker would reject them too, but only as "undeclared reference";
// these messages say what is wrong in the playbook's terms.
func (c *compiler) checkReferences(e *Expr, a *celast.AST, scope exprScope, ce *compiledExpr) bool {
	ok := true
	report := func(id int64, format string, args ...any) {
		ok = false
		c.errorAt(e.posAt(offsetOf(e.Source, a.SourceInfo().GetStartLocation(id))), format, args...)
	}
	var walk func(x celast.Expr, shadow map[string]bool)
	walk = func(x celast.Expr, shadow map[string]bool) {
		switch x.Kind() {
		case celast.IdentKind:
			name := x.AsIdent()
			if shadow[name] {
				return
			}
			switch name {
			case "finding":
				ce.finding = true
			case "inputs":
				report(x.ID(), "inputs must be followed by an input name, as in inputs.%s", c.exampleInput())
			case "steps":
				report(x.ID(), "steps must be followed by a step id and a field, as in steps.<id>.outputs or steps.<id>.status")
			case "case":
				report(x.ID(), "case must be followed by a field: case.id or case.title")
			}
		case celast.SelectKind:
			path, root := selectPath(x)
			if root == nil || shadow[path[0]] {
				walk(x.AsSelect().Operand(), shadow)
				return
			}
			switch path[0] {
			case "finding":
				ce.finding = true
			case "inputs":
				if c.inputs[path[1]] == nil {
					report(root.ID(), "unknown input %q (%s)", path[1], c.declaredInputs())
				}
			case "case":
				if path[1] != "id" && path[1] != "title" {
					report(root.ID(), "case has no field %q (use case.id or case.title)", path[1])
				}
			case "steps":
				id := path[1]
				switch {
				case c.pb.Step(id) == nil:
					report(root.ID(), "unknown step %q", id)
				case id == scope.step && !scope.self:
					report(root.ID(), "step %q cannot read its own outputs or status; only its rollback can", id)
				case id != scope.step && !scope.visible[id]:
					report(root.ID(), "step %q is not upstream of step %q; add it to needs", id, scope.step)
				case len(path) < 3:
					report(root.ID(), "steps.%s must be followed by .outputs or .status", id)
				case path[2] != "outputs" && path[2] != "status":
					report(root.ID(), "steps.%s has no field %q (use steps.%s.outputs or steps.%s.status)", id, path[2], id, id)
				default:
					if !slices.Contains(ce.steps, id) {
						ce.steps = append(ce.steps, id)
					}
				}
			default:
				walk(x.AsSelect().Operand(), shadow)
			}
		case celast.CallKind:
			call := x.AsCall()
			if call.IsMemberFunction() {
				walk(call.Target(), shadow)
			}
			for _, arg := range call.Args() {
				walk(arg, shadow)
			}
		case celast.ListKind:
			for _, el := range x.AsList().Elements() {
				walk(el, shadow)
			}
		case celast.MapKind:
			for _, entry := range x.AsMap().Entries() {
				walk(entry.AsMapEntry().Key(), shadow)
				walk(entry.AsMapEntry().Value(), shadow)
			}
		case celast.StructKind:
			for _, f := range x.AsStruct().Fields() {
				walk(f.AsStructField().Value(), shadow)
			}
		case celast.ComprehensionKind:
			comp := x.AsComprehension()
			walk(comp.IterRange(), shadow)
			walk(comp.AccuInit(), shadow)
			inner := make(map[string]bool, len(shadow)+3)
			for k := range shadow {
				inner[k] = true
			}
			inner[comp.IterVar()] = true
			inner[comp.AccuVar()] = true
			if comp.HasIterVar2() {
				inner[comp.IterVar2()] = true
			}
			walk(comp.LoopCondition(), inner)
			walk(comp.LoopStep(), inner)
			walk(comp.Result(), inner)
		}
	}
	walk(a.Expr(), nil)
	return ok
}

// selectPath returns the names of a chain of field selections rooted at an
// identifier, outermost last, with the root identifier's node; root is nil
// when the chain does not start at an identifier.
func selectPath(x celast.Expr) (path []string, root celast.Expr) {
	for x.Kind() == celast.SelectKind {
		path = append(path, x.AsSelect().FieldName())
		x = x.AsSelect().Operand()
	}
	if x.Kind() != celast.IdentKind {
		return nil, nil
	}
	path = append(path, x.AsIdent())
	slices.Reverse(path)
	return path, x
}

func (c *compiler) declaredInputs() string {
	if len(c.pb.Inputs) == 0 {
		return "the playbook declares no inputs"
	}
	names := make([]string, 0, len(c.pb.Inputs))
	for _, in := range c.pb.Inputs {
		names = append(names, in.Name)
	}
	return "declared inputs: " + strings.Join(names, ", ")
}

func (c *compiler) exampleInput() string {
	if len(c.pb.Inputs) > 0 {
		return c.pb.Inputs[0].Name
	}
	return "<name>"
}

// typeName formats a CEL type for messages.
func typeName(t *cel.Type) string { return cel.FormatCELType(t) }

// isDyn reports whether a type is only known at evaluation.
func isDyn(t *cel.Type) bool {
	return t.Kind() == types.DynKind || t.Kind() == types.AnyKind
}

// interpolable reports whether values of type t can be written into text.
func interpolable(t *cel.Type) bool {
	switch t.Kind() {
	case types.DynKind, types.AnyKind, types.StringKind, types.IntKind, types.UintKind,
		types.DoubleKind, types.BoolKind, types.DurationKind, types.TimestampKind:
		return true
	}
	return false
}

func (k InputType) String() string { return string(k) }
