package playbook

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// ActionCatalog looks up the description of a response action by name, as
// the fleet's plugins describe themselves.
type ActionCatalog interface {
	// Lookup returns the action's description and whether it exists.
	Lookup(name string) (*pluginv1.ActionDescription, bool)
}

// Option adjusts validation and evaluation.
type Option func(*options)

type options struct {
	selectorCheck func(string) error
}

// WithSelectorCheck replaces CheckSelector as the check applied to target
// selectors, for example with the dispatcher's own selector parser.
func WithSelectorCheck(check func(selector string) error) Option {
	return func(o *options) { o.selectorCheck = check }
}

func buildOptions(opts []Option) options {
	o := options{selectorCheck: CheckSelector}
	for _, opt := range opts {
		opt(&o)
	}
	if o.selectorCheck == nil {
		o.selectorCheck = CheckSelector
	}
	return o
}

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	identRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// celReserved are words CEL refuses as field names, so inputs and steps
// cannot be called by them.
var celReserved = []string{"as", "break", "const", "continue", "else", "false", "for", "function", "if",
	"import", "in", "let", "loop", "package", "namespace", "null", "return", "true", "var", "void", "while"}

// Validate checks a parsed playbook's meaning against the action catalogue:
// metadata and inputs, step ids and the needs graph, phases, actions and
// their parameter schemas, targets, conditions, timeouts, failure policies,
// approvals and rollbacks, and every expression, which it compiles and
// type-checks. It returns the problems sorted by position; none means the
// playbook is valid. With a nil catalogue, action checks are skipped.
func Validate(pb *Playbook, catalog ActionCatalog, opts ...Option) []Error {
	_, errs := compile(pb, catalog, buildOptions(opts))
	return errs
}

// Load parses and validates a playbook file in one call.
func Load(filename string, data []byte, catalog ActionCatalog, opts ...Option) (*Playbook, []Error) {
	pb, err := Parse(filename, data)
	if err != nil {
		var es Errors
		if errors.As(err, &es) {
			return nil, es
		}
		return nil, []Error{{File: filename, Msg: err.Error()}}
	}
	if errs := Validate(pb, catalog, opts...); len(errs) > 0 {
		return pb, errs
	}
	return pb, nil
}

// compiler checks a playbook and compiles its expressions.
type compiler struct {
	pb       *Playbook
	catalog  ActionCatalog
	opts     options
	errs     []Error
	inputs   map[string]*Input
	exprs    map[*Expr]*compiledExpr
	actions  map[string]*pluginv1.ActionDescription
	upstream map[string]map[string]bool
}

// compiled is a validated playbook with its expressions ready to evaluate.
type compiled struct {
	pb       *Playbook
	opts     options
	exprs    map[*Expr]*compiledExpr
	actions  map[string]*pluginv1.ActionDescription
	upstream map[string]map[string]bool
}

func compile(pb *Playbook, catalog ActionCatalog, opts options) (*compiled, []Error) {
	c := &compiler{
		pb: pb, catalog: catalog, opts: opts,
		inputs:   map[string]*Input{},
		exprs:    map[*Expr]*compiledExpr{},
		actions:  map[string]*pluginv1.ActionDescription{},
		upstream: map[string]map[string]bool{},
	}
	if pb == nil {
		return nil, []Error{{Msg: "no playbook"}}
	}
	c.header()
	c.checkInputs()
	base, err := baseEnv(c.validInputs())
	if err != nil {
		c.errorAt(pb.rootPos, "building the expression environment: %v", err)
		return nil, c.errs
	}
	c.checkSteps(base)
	sortErrors(c.errs)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return &compiled{pb: pb, opts: opts, exprs: c.exprs, actions: c.actions, upstream: c.upstream}, nil
}

func (c *compiler) errorAt(p Pos, format string, args ...any) {
	c.errs = append(c.errs, Error{File: c.pb.File, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

// or returns p, or fallback when p is unset.
func or(p, fallback Pos) Pos {
	if p.Line == 0 {
		return fallback
	}
	return p
}

func (c *compiler) header() {
	pb := c.pb
	switch pb.APIVersion {
	case APIVersion:
	case "":
		c.errorAt(or(pb.apiVersionPos, pb.rootPos), "apiVersion is missing; write apiVersion: %s", APIVersion)
	default:
		c.errorAt(pb.apiVersionPos, "apiVersion must be %q, not %q", APIVersion, pb.APIVersion)
	}
	switch pb.Kind {
	case Kind:
	case "":
		c.errorAt(or(pb.kindPos, pb.rootPos), "kind is missing; write kind: %s", Kind)
	default:
		c.errorAt(pb.kindPos, "kind must be %q, not %q", Kind, pb.Kind)
	}
	m := pb.Metadata
	switch {
	case m.Name == "":
		c.errorAt(or(m.namePos, or(pb.metadataPos, pb.rootPos)), "metadata.name is missing; name the playbook, e.g. ec2-instance-compromise")
	case !nameRe.MatchString(m.Name):
		c.errorAt(m.namePos, "metadata.name %q must be lower-case letters, digits and hyphens, at most 63 characters", m.Name)
	}
	if m.Version == 0 && m.versionPos.Line == 0 {
		c.errorAt(or(pb.metadataPos, pb.rootPos), "metadata.version is missing; number the playbook's versions from 1")
	}
}

func (c *compiler) checkInputs() {
	for _, in := range c.pb.Inputs {
		switch {
		case in.Name == "":
			c.errorAt(in.Pos, "input has no name")
			continue
		case !identRe.MatchString(in.Name) || slices.Contains(celReserved, in.Name):
			c.errorAt(in.namePos, "input name %q must be lower-case letters, digits and underscores, start with a letter and not be a CEL keyword", in.Name)
			continue
		case c.inputs[in.Name] != nil:
			c.errorAt(in.namePos, "input %q is declared twice", in.Name)
			continue
		}
		c.inputs[in.Name] = in
		switch in.Type {
		case InputString, InputInt, InputBool, InputDuration, InputList:
		case "":
			c.errorAt(in.Pos, "input %q has no type (use string, int, bool, duration or list)", in.Name)
			continue
		default:
			c.errorAt(in.typePos, "input %q: type %q is unknown (use string, int, bool, duration or list)", in.Name, in.Type)
			continue
		}
		if in.Default != nil {
			if in.Required {
				c.errorAt(in.Default.Pos, "input %q is required and has a default; drop one of them", in.Name)
			} else if _, err := in.Type.convert(literalGo(in.Default)); err != nil {
				c.errorAt(in.Default.Pos, "input %q: default %v", in.Name, err)
			}
		}
	}
}

// validInputs returns the inputs with a usable name and type, for the
// expression environment.
func (c *compiler) validInputs() []*Input {
	var out []*Input
	for _, in := range c.pb.Inputs {
		if c.inputs[in.Name] == in && in.Type.celType() != cel.DynType {
			out = append(out, in)
		}
	}
	return out
}

func (c *compiler) checkSteps(base *cel.Env) {
	pb := c.pb
	if len(pb.Steps) == 0 {
		c.errorAt(or(pb.stepsPos, pb.rootPos), "steps is missing or empty; a playbook needs at least one step")
		return
	}
	ids := map[string]*Step{}
	for _, s := range pb.Steps {
		switch {
		case s.ID == "":
			c.errorAt(s.Pos, "step has no id")
		case !identRe.MatchString(s.ID) || slices.Contains(celReserved, s.ID):
			c.errorAt(s.idPos, "step id %q must be lower-case letters, digits and underscores, starting with a letter, so expressions can name it as steps.<id>", s.ID)
		case ids[s.ID] != nil:
			c.errorAt(s.idPos, "step id %q is used twice (first at line %d)", s.ID, ids[s.ID].idPos.Line)
		default:
			ids[s.ID] = s
		}
	}
	c.checkNeeds(ids)
	for _, s := range pb.Steps {
		if ids[s.ID] != s {
			continue
		}
		c.upstream[s.ID] = upstreamOf(s, ids)
	}
	for _, s := range pb.Steps {
		if ids[s.ID] != s {
			continue
		}
		c.checkStep(base, s)
	}
}

func (c *compiler) checkNeeds(ids map[string]*Step) {
	for _, s := range c.pb.Steps {
		if ids[s.ID] != s {
			continue
		}
		seen := map[string]bool{}
		for i, n := range s.Needs {
			switch {
			case n == s.ID:
				c.errorAt(s.needsPos[i], "step %q needs itself", s.ID)
			case ids[n] == nil:
				c.errorAt(s.needsPos[i], "step %q needs unknown step %q", s.ID, n)
			case seen[n]:
				c.errorAt(s.needsPos[i], "step %q lists %q in needs twice", s.ID, n)
			}
			seen[n] = true
		}
	}
	// Depth-first search; a needs edge to a step still on the stack closes
	// a cycle, reported once, at the edge that closes it.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(s *Step)
	visit = func(s *Step) {
		color[s.ID] = grey
		stack = append(stack, s.ID)
		for i, n := range s.Needs {
			next := ids[n]
			if next == nil || n == s.ID {
				continue
			}
			switch color[n] {
			case white:
				visit(next)
			case grey:
				start := slices.Index(stack, n)
				cycle := append(slices.Clone(stack[start:]), n)
				c.errorAt(s.needsPos[i], "needs form a cycle: %s", strings.Join(cycle, " → "))
			}
		}
		stack = stack[:len(stack)-1]
		color[s.ID] = black
	}
	for _, s := range c.pb.Steps {
		if ids[s.ID] == s && color[s.ID] == white {
			visit(s)
		}
	}
}

// upstreamOf returns every step s needs directly or transitively.
func upstreamOf(s *Step, ids map[string]*Step) map[string]bool {
	up := map[string]bool{}
	stack := slices.Clone(s.Needs)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if up[n] || n == s.ID || ids[n] == nil {
			continue
		}
		up[n] = true
		stack = append(stack, ids[n].Needs...)
	}
	return up
}

func (c *compiler) checkStep(base *cel.Env, s *Step) {
	visible := c.upstream[s.ID]
	names := make([]string, 0, len(visible)+1)
	for id := range visible {
		names = append(names, id)
	}
	slices.Sort(names)
	env, err := stepEnv(base, names)
	if err != nil {
		c.errorAt(s.Pos, "building the expression environment: %v", err)
		return
	}
	scope := exprScope{step: s.ID, visible: visible}
	for _, v := range []*Value{s.When, s.Targets.Selector, s.Targets.Accounts, s.Targets.Regions} {
		c.compileValue(v, env, scope)
	}
	for _, p := range s.Params {
		c.compileValue(p.Value, env, scope)
	}

	switch {
	case s.Phase == "":
		c.errorAt(s.Pos, "step %q has no phase (use %s)", s.ID, phaseList())
	case !slices.Contains(Phases, s.Phase):
		c.errorAt(s.phasePos, "step %q: phase %q is unknown (use %s)", s.ID, s.Phase, phaseList())
	}

	var action *pluginv1.ActionDescription
	switch {
	case s.Action != "" && s.Operation != "":
		c.errorAt(s.operationPos, "step %q names action %q and operation %q: a step runs one action or one operation", s.ID, s.Action, s.Operation)
	case s.Operation != "":
		if action = c.checkOperation(s); action != nil {
			c.actions[OperationKey(s.Operation)] = action
		}
	case s.Action == "":
		c.errorAt(s.Pos, "step %q has no action (or operation: %s)", s.ID, strings.Join(OperationNames(), ", "))
	case c.catalog != nil:
		var ok bool
		if action, ok = c.lookup(s.Action); !ok {
			c.errorAt(s.actionPos, "step %q: unknown action %q", s.ID, s.Action)
		}
	}
	if action != nil {
		c.checkParams(fmt.Sprintf("step %q", s.ID), action, s.Params, or(s.paramsPos, s.Pos))
	}
	if s.Operation == "" {
		c.checkTargets(s, action)
	}
	c.checkWhen(s)

	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		switch {
		case err != nil:
			c.errorAt(s.timeoutPos, "step %q: timeout %q is not a duration (use Go syntax such as 90s, 5m or 1h30m)", s.ID, s.Timeout)
		case d <= 0:
			c.errorAt(s.timeoutPos, "step %q: timeout must be positive, not %s", s.ID, s.Timeout)
		case d > MaxTimeout:
			c.errorAt(s.timeoutPos, "step %q: timeout %s exceeds the limit of %s", s.ID, s.Timeout, MaxTimeout)
		}
	}
	switch s.OnFailure {
	case "", OnFailureStop, OnFailureContinue, OnFailureRollback:
	default:
		c.errorAt(s.onFailurePos, "step %q: on_failure must be stop, continue or rollback, not %q", s.ID, s.OnFailure)
	}
	if s.Approval != "" && s.Approval != ApprovalRequired {
		c.errorAt(s.approvalPos, "step %q: approval must be %q, not %q", s.ID, ApprovalRequired, s.Approval)
	}
	if s.OnFailure == OnFailureRollback && s.Rollback == nil && action != nil && action.GetDestructive() {
		if action.GetRollbackAction() != "" {
			c.errorAt(s.onFailurePos, "step %q: on_failure: rollback needs a rollback for destructive action %s; add rollback: {action: %s, params: {…}}",
				s.ID, s.Action, action.GetRollbackAction())
		} else {
			c.errorAt(s.onFailurePos, "step %q: on_failure: rollback needs a rollback, and destructive action %s names no rollback action; use on_failure: stop or continue",
				s.ID, s.Action)
		}
	}
	if s.Rollback != nil {
		c.checkRollback(base, s, names)
	}
}

func (c *compiler) lookup(name string) (*pluginv1.ActionDescription, bool) {
	if a, ok := c.actions[name]; ok {
		return a, a != nil
	}
	a, ok := c.catalog.Lookup(name)
	if !ok || a == nil {
		c.actions[name] = nil
		return nil, false
	}
	c.actions[name] = a
	return a, true
}

func phaseList() string {
	names := make([]string, len(Phases))
	for i, p := range Phases {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

func (c *compiler) compileValue(v *Value, env *cel.Env, scope exprScope) {
	for _, e := range v.Exprs() {
		c.compileExpr(e, env, scope)
	}
}

func (c *compiler) checkRollback(base *cel.Env, s *Step, upstream []string) {
	rb := s.Rollback
	env, err := stepEnv(base, append(slices.Clone(upstream), s.ID))
	if err != nil {
		c.errorAt(rb.Pos, "building the expression environment: %v", err)
		return
	}
	scope := exprScope{step: s.ID, visible: c.upstream[s.ID], self: true}
	for _, p := range rb.Params {
		c.compileValue(p.Value, env, scope)
	}
	if rb.Action == "" {
		c.errorAt(rb.Pos, "step %q: rollback has no action", s.ID)
		return
	}
	if c.catalog == nil {
		return
	}
	action, ok := c.lookup(rb.Action)
	if !ok {
		c.errorAt(rb.actionPos, "step %q: rollback action %q is unknown", s.ID, rb.Action)
		return
	}
	c.checkParams(fmt.Sprintf("step %q rollback", s.ID), action, rb.Params, or(rb.paramsPos, rb.Pos))
}

// checkParams checks parameters against an action's schema.
func (c *compiler) checkParams(owner string, action *pluginv1.ActionDescription, params []*Param, pos Pos) {
	given := map[string]bool{}
	for _, p := range params {
		given[p.Name] = true
		spec := paramSpec(action, p.Name)
		if spec == nil {
			c.errorAt(p.namePos, "%s: %s has no param %q (%s)", owner, describeAction(action), p.Name, paramNames(action))
			continue
		}
		if msg := c.valueFits(p.Value, spec); msg != "" {
			c.errorAt(p.Value.errPos(), "%s: param %q: %s", owner, p.Name, msg)
		}
	}
	for _, spec := range action.GetParams() {
		if spec.GetRequired() && !given[spec.GetName()] {
			c.errorAt(pos, "%s: %s requires param %q", owner, describeAction(action), spec.GetName())
		}
	}
}

// errPos is where a problem with the value as a whole is reported: at the
// expression itself for whole-value expressions.
func (v *Value) errPos() Pos {
	if v.Kind == ValueExpr {
		return v.Expr.Pos
	}
	return v.Pos
}

// describeAction names an action, or an operation, in an error.
func describeAction(action *pluginv1.ActionDescription) string {
	if Operations[action.GetName()] == action {
		return "operation " + action.GetName()
	}
	return "action " + action.GetName()
}

func paramSpec(action *pluginv1.ActionDescription, name string) *pluginv1.ParamSpec {
	for _, p := range action.GetParams() {
		if p.GetName() == name {
			return p
		}
	}
	return nil
}

func paramNames(action *pluginv1.ActionDescription) string {
	if len(action.GetParams()) == 0 {
		return "it takes no params"
	}
	names := make([]string, 0, len(action.GetParams()))
	for _, p := range action.GetParams() {
		names = append(names, p.GetName())
	}
	return "its params: " + strings.Join(names, ", ")
}

// paramTypeName describes a parameter type for messages.
func paramTypeName(t pluginv1.ParamType) string {
	switch t {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		return "a string"
	case pluginv1.ParamType_PARAM_TYPE_INT:
		return "an integer"
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		return "a boolean"
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		return `a duration such as "5m"`
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		return "a list of strings"
	}
	return "a value of type " + t.String()
}

// celParamType is the CEL type that matches a parameter type.
func celParamType(t pluginv1.ParamType) string {
	switch t {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		return "string"
	case pluginv1.ParamType_PARAM_TYPE_INT:
		return "int"
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		return "bool"
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		return "duration or string"
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		return "list(string)"
	}
	return t.String()
}

// valueFits checks a value as written against a parameter's type and
// returns what is wrong, or "".
func (c *compiler) valueFits(v *Value, spec *pluginv1.ParamSpec) string {
	pt := spec.GetType()
	switch v.Kind {
	case ValueLiteral:
		if _, err := convertParam(v.Literal, spec); err != nil {
			return err.Error()
		}
	case ValueExpr:
		ce := c.exprs[v.Expr]
		if ce == nil {
			return ""
		}
		if !exprFits(ce.out, pt) {
			return fmt.Sprintf("expression has type %s; want %s", typeName(ce.out), celParamType(pt))
		}
	case ValueTemplate:
		if pt != pluginv1.ParamType_PARAM_TYPE_STRING && pt != pluginv1.ParamType_PARAM_TYPE_DURATION {
			return fmt.Sprintf("want %s, got an interpolated string", paramTypeName(pt))
		}
		return c.templateFits(v)
	case ValueList:
		if pt != pluginv1.ParamType_PARAM_TYPE_STRING_LIST {
			return fmt.Sprintf("want %s, got a list", paramTypeName(pt))
		}
		for i, el := range v.List {
			switch el.Kind {
			case ValueLiteral:
				if _, ok := el.Literal.(string); !ok {
					return fmt.Sprintf("element %d: want a string, got %s", i, describeGo(el.Literal))
				}
			case ValueExpr:
				if ce := c.exprs[el.Expr]; ce != nil && !isDyn(ce.out) && ce.out.Kind() != types.StringKind {
					return fmt.Sprintf("element %d: expression has type %s; want string", i, typeName(ce.out))
				}
			case ValueTemplate:
				if msg := c.templateFits(el); msg != "" {
					return msg
				}
			default:
				return fmt.Sprintf("element %d: want a string, got %s", i, el.describe())
			}
		}
	case ValueMap:
		return fmt.Sprintf("want %s, got a mapping", paramTypeName(pt))
	}
	return ""
}

func (c *compiler) templateFits(v *Value) string {
	for _, p := range v.Parts {
		if p.Expr == nil {
			continue
		}
		if ce := c.exprs[p.Expr]; ce != nil && !interpolable(ce.out) {
			return fmt.Sprintf("cannot interpolate a value of type %s into text", typeName(ce.out))
		}
	}
	return ""
}

// exprFits reports whether an expression's static type can fill a
// parameter. Dynamic types are checked at evaluation; maps and lists fill
// string parameters as their JSON text.
func exprFits(t *cel.Type, pt pluginv1.ParamType) bool {
	if isDyn(t) {
		return true
	}
	switch pt {
	case pluginv1.ParamType_PARAM_TYPE_STRING:
		k := t.Kind()
		return k == types.StringKind || k == types.MapKind || k == types.ListKind
	case pluginv1.ParamType_PARAM_TYPE_INT:
		return t.Kind() == types.IntKind || t.Kind() == types.UintKind
	case pluginv1.ParamType_PARAM_TYPE_BOOL:
		return t.Kind() == types.BoolKind
	case pluginv1.ParamType_PARAM_TYPE_DURATION:
		return t.Kind() == types.DurationKind || t.Kind() == types.StringKind
	case pluginv1.ParamType_PARAM_TYPE_STRING_LIST:
		if t.Kind() != types.ListKind || len(t.Parameters()) != 1 {
			return false
		}
		el := t.Parameters()[0]
		return isDyn(el) || el.Kind() == types.StringKind
	}
	return false
}

func (c *compiler) checkWhen(s *Step) {
	w := s.When
	if w == nil {
		return
	}
	switch w.Kind {
	case ValueLiteral:
		if _, ok := w.Literal.(bool); !ok {
			c.errorAt(w.Pos, "step %q: when must be true, false or a ${{ … }} expression, not %s", s.ID, describeGo(w.Literal))
		}
	case ValueExpr:
		if ce := c.exprs[w.Expr]; ce != nil && !isDyn(ce.out) && ce.out.Kind() != types.BoolKind {
			c.errorAt(w.Expr.Pos, "step %q: when must be a bool expression, but it has type %s", s.ID, typeName(ce.out))
		}
	case ValueTemplate:
		c.errorAt(w.Pos, "step %q: when must be a single ${{ … }} expression; text around it makes a string", s.ID)
	default:
		c.errorAt(w.Pos, "step %q: when must be a bool expression, not %s", s.ID, w.describe())
	}
}

func (c *compiler) checkTargets(s *Step, action *pluginv1.ActionDescription) {
	t := s.Targets
	switch {
	case !t.set || (t.Selector == nil && t.Accounts == nil):
		c.errorAt(or(t.pos, s.Pos), "step %q has no targets; set targets.selector or targets.accounts", s.ID)
		return
	case t.Selector != nil && t.Accounts != nil:
		c.errorAt(t.pos, "step %q: targets takes selector or accounts, not both", s.ID)
		return
	case t.Regions != nil && t.Accounts == nil:
		c.errorAt(t.Regions.Pos, "step %q: targets.regions needs targets.accounts", s.ID)
		return
	}
	if t.Selector != nil {
		c.checkSelectorValue(s, t.Selector, action)
	}
	if t.Accounts != nil {
		c.checkAccountsValue(s, t.Accounts, action)
	}
	if t.Regions != nil {
		c.checkRegionsValue(s, t.Regions)
	}
}

func (c *compiler) checkSelectorValue(s *Step, v *Value, action *pluginv1.ActionDescription) {
	switch v.Kind {
	case ValueLiteral:
		sel, ok := v.Literal.(string)
		if !ok {
			c.errorAt(v.Pos, "step %q: targets.selector must be a string, not %s", s.ID, describeGo(v.Literal))
			return
		}
		if err := c.opts.selectorCheck(sel); err != nil {
			c.errorAt(v.Pos, "step %q: targets.selector: %v", s.ID, err)
			return
		}
		if roles := selectorRoles(sel); roles != nil && action != nil && len(action.GetRoles()) > 0 && !rolesMeet(roles, action.GetRoles()) {
			c.errorAt(v.Pos, "step %q: targets.selector picks role=%s, but action %s runs on %s agents", s.ID, strings.Join(roles, "|"), action.GetName(), strings.Join(action.GetRoles(), " or "))
		}
	case ValueTemplate:
		if err := checkSelectorTemplate(v.Parts); err != nil {
			c.errorAt(v.Pos, "step %q: targets.selector: %v", s.ID, err)
			return
		}
		c.stringTemplate(s, v, "targets.selector")
	case ValueExpr:
		if ce := c.exprs[v.Expr]; ce != nil && !isDyn(ce.out) && ce.out.Kind() != types.StringKind {
			c.errorAt(v.Expr.Pos, "step %q: targets.selector expression has type %s; want string", s.ID, typeName(ce.out))
		}
	default:
		c.errorAt(v.Pos, "step %q: targets.selector must be a string, not %s", s.ID, v.describe())
	}
}

func (c *compiler) stringTemplate(s *Step, v *Value, field string) {
	if msg := c.templateFits(v); msg != "" {
		c.errorAt(v.Pos, "step %q: %s: %s", s.ID, field, msg)
	}
}

// selectorRoles returns the values of a literal selector's role=… term.
func selectorRoles(sel string) []string {
	for _, term := range strings.Split(sel, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(term), "="); ok && strings.TrimSpace(k) == "role" {
			return strings.Split(strings.TrimSpace(v), "|")
		}
	}
	return nil
}

// rolesMeet reports whether any selected role (possibly a glob) can run
// an action that runs on the given roles.
func rolesMeet(selected, runs []string) bool {
	for _, sel := range selected {
		for _, r := range runs {
			if ok, _ := path.Match(strings.TrimSpace(sel), r); ok {
				return true
			}
		}
	}
	return false
}

func (c *compiler) checkAccountsValue(s *Step, v *Value, action *pluginv1.ActionDescription) {
	if action != nil && len(action.GetRoles()) > 0 && !slices.Contains(action.GetRoles(), "worker") {
		c.errorAt(v.Pos, "step %q: action %s runs on %s agents; accounts targets need an action that workers run", s.ID, action.GetName(), strings.Join(action.GetRoles(), " or "))
		return
	}
	switch v.Kind {
	case ValueLiteral:
		acc, ok := v.Literal.(string)
		if !ok {
			c.errorAt(v.Pos, "step %q: targets.accounts must be a string such as all, ou=ou-… or 111111111111,222222222222, not %s", s.ID, describeGo(v.Literal))
			return
		}
		if err := CheckAccounts(acc); err != nil {
			c.errorAt(v.Pos, "step %q: targets.%v", s.ID, err)
		}
	case ValueTemplate:
		if err := checkAccountsTemplate(v.Parts); err != nil {
			c.errorAt(v.Pos, "step %q: targets.%v", s.ID, err)
			return
		}
		c.stringTemplate(s, v, "targets.accounts")
	case ValueExpr:
		if ce := c.exprs[v.Expr]; ce != nil && !isDyn(ce.out) && ce.out.Kind() != types.StringKind && !exprFits(ce.out, pluginv1.ParamType_PARAM_TYPE_STRING_LIST) {
			c.errorAt(v.Expr.Pos, "step %q: targets.accounts expression has type %s; want string or list(string)", s.ID, typeName(ce.out))
		}
	default:
		c.errorAt(v.Pos, "step %q: targets.accounts must be a string such as all, ou=ou-… or 111111111111,222222222222, not %s", s.ID, v.describe())
	}
}

func (c *compiler) checkRegionsValue(s *Step, v *Value) {
	switch v.Kind {
	case ValueLiteral:
		r, ok := v.Literal.(string)
		if !ok {
			c.errorAt(v.Pos, "step %q: targets.regions must be all, a comma-separated string or a list, not %s", s.ID, describeGo(v.Literal))
			return
		}
		if err := CheckRegions(splitList(r)); err != nil {
			c.errorAt(v.Pos, "step %q: targets.%v", s.ID, err)
		}
	case ValueList:
		if len(v.List) == 0 {
			c.errorAt(v.Pos, "step %q: targets.regions is empty; write \"all\" or region names", s.ID)
			return
		}
		for i, el := range v.List {
			switch el.Kind {
			case ValueLiteral:
				r, ok := el.Literal.(string)
				switch {
				case !ok:
					c.errorAt(el.Pos, "step %q: targets.regions element %d must be a string, not %s", s.ID, i, describeGo(el.Literal))
				case r == "all" && len(v.List) > 1:
					c.errorAt(el.Pos, "step %q: targets.regions: \"all\" cannot be combined with other regions", s.ID)
				default:
					if err := CheckRegions([]string{r}); err != nil {
						c.errorAt(el.Pos, "step %q: targets.%v", s.ID, err)
					}
				}
			case ValueExpr, ValueTemplate:
				if msg := c.valueFits(el, &pluginv1.ParamSpec{Type: pluginv1.ParamType_PARAM_TYPE_STRING}); msg != "" {
					c.errorAt(el.errPos(), "step %q: targets.regions element %d: %s", s.ID, i, msg)
				}
			default:
				c.errorAt(el.Pos, "step %q: targets.regions element %d must be a string, not %s", s.ID, i, el.describe())
			}
		}
	case ValueTemplate:
		c.stringTemplate(s, v, "targets.regions")
	case ValueExpr:
		if ce := c.exprs[v.Expr]; ce != nil && !isDyn(ce.out) && ce.out.Kind() != types.StringKind && !exprFits(ce.out, pluginv1.ParamType_PARAM_TYPE_STRING_LIST) {
			c.errorAt(v.Expr.Pos, "step %q: targets.regions expression has type %s; want string or list(string)", s.ID, typeName(ce.out))
		}
	default:
		c.errorAt(v.Pos, "step %q: targets.regions must be all, a comma-separated string or a list, not %s", s.ID, v.describe())
	}
}

// splitList splits a comma-separated string, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// literalGo converts a literal-only value (no expressions) to plain Go
// values: strings, int64, float64, bool, nil, []any and map[string]any.
func literalGo(v *Value) any {
	switch v.Kind {
	case ValueLiteral:
		return v.Literal
	case ValueList:
		out := make([]any, len(v.List))
		for i, el := range v.List {
			out[i] = literalGo(el)
		}
		return out
	case ValueMap:
		out := make(map[string]any, len(v.Map))
		for _, p := range v.Map {
			out[p.Name] = literalGo(p.Value)
		}
		return out
	}
	return v.Text
}
