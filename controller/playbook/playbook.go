// Package playbook loads, validates and evaluates Firebreak playbooks:
// versioned YAML files that describe an incident response as a graph of
// steps, each step one run of a response action.
//
// A playbook file looks like this:
//
//	apiVersion: firebreak/v1
//	kind: Playbook
//	metadata:
//	  name: ec2-instance-compromise
//	  version: 3
//	  description: Contain a compromised EC2 instance.
//	inputs:
//	  - name: instance_id
//	    type: string        # string|int|bool|duration|list
//	    required: true
//	steps:
//	  - id: capture
//	    phase: analyze      # detect|analyze|contain|eradicate|recover|post-incident
//	    action: aws-ec2-capture
//	    targets: {selector: "role=worker"}
//	    params:
//	      instance_id: ${{ inputs.instance_id }}
//	    when: ${{ finding.severity >= 7.0 }}
//	    timeout: 5m
//	    on_failure: stop    # stop|continue|rollback
//	  - id: scope
//	    phase: analyze
//	    operation: credential-scope   # instead of action: see Operations
//	    params:
//	      access_key_id: ${{ inputs.access_key_id }}
//
// Values may hold CEL expressions between "${{" and "}}". A value that is one
// expression keeps the expression's type; text around or between
// expressions makes a string. Expressions see inputs.<name> (typed by the
// input declarations), finding (a map), case.id and case.title, and, for the
// steps a step needs directly or transitively, steps.<id>.outputs (a map)
// and steps.<id>.status (a string). A rollback also sees its own step.
//
// Parse checks the file's structure, Validate checks its meaning against the
// action catalogue, and an Evaluator resolves steps to concrete runs.
package playbook

import "time"

// APIVersion and Kind are the only values a playbook's apiVersion and kind
// may take.
const (
	APIVersion = "firebreak/v1"
	Kind       = "Playbook"
)

// Limits that keep a hostile or careless playbook from exhausting the
// controller.
const (
	// MaxFileSize is the largest playbook file accepted, in bytes.
	MaxFileSize = 1 << 20
	// MaxSteps is the most steps one playbook may have.
	MaxSteps = 200
	// MaxInputs is the most inputs one playbook may declare.
	MaxInputs = 100
	// MaxExprLen is the longest expression accepted, in characters.
	MaxExprLen = 4096
	// MaxExprs is the most expressions one playbook may contain.
	MaxExprs = 2000
	// MaxValueDepth is the deepest nesting of lists and maps in a value.
	MaxValueDepth = 16
	// MaxEvalCost is the CEL cost budget of one expression evaluation.
	MaxEvalCost = 100_000
	// MaxTimeout is the longest step timeout accepted.
	MaxTimeout = 24 * time.Hour
)

// Phase is the NIST SP 800-61 phase a step belongs to.
type Phase string

// The phases a step may be labelled with.
const (
	PhaseDetect       Phase = "detect"
	PhaseAnalyze      Phase = "analyze"
	PhaseContain      Phase = "contain"
	PhaseEradicate    Phase = "eradicate"
	PhaseRecover      Phase = "recover"
	PhasePostIncident Phase = "post-incident"
)

// Phases lists the valid phases in process order.
var Phases = []Phase{PhaseDetect, PhaseAnalyze, PhaseContain, PhaseEradicate, PhaseRecover, PhasePostIncident}

// OnFailure says what the executor does when a step fails.
type OnFailure string

// The failure policies a step may choose.
const (
	// OnFailureStop stops the playbook; completed steps stay as they are.
	OnFailureStop OnFailure = "stop"
	// OnFailureContinue records the failure and goes on; steps that need
	// the failed one still run and can read steps.<id>.status.
	OnFailureContinue OnFailure = "continue"
	// OnFailureRollback stops the playbook and runs the rollback of this
	// step and of every completed step that has one, newest first.
	OnFailureRollback OnFailure = "rollback"
)

// InputType is the declared type of a playbook input.
type InputType string

// The input types a playbook may declare, with the Go type of their bound
// values.
const (
	InputString   InputType = "string"   // string
	InputInt      InputType = "int"      // int64
	InputBool     InputType = "bool"     // bool
	InputDuration InputType = "duration" // time.Duration
	InputList     InputType = "list"     // []string
)

// ApprovalRequired is the only value of a step's approval field.
const ApprovalRequired = "required"

// Playbook is a parsed playbook file.
type Playbook struct {
	// File is the file name given to Parse, used in error positions.
	File string
	// APIVersion must be "firebreak/v1".
	APIVersion string
	// Kind must be "Playbook".
	Kind string
	// Metadata names and versions the playbook.
	Metadata Metadata
	// Inputs are the declared inputs, in file order.
	Inputs []*Input
	// Steps are the steps, in file order.
	Steps []*Step

	apiVersionPos, kindPos, metadataPos, stepsPos, rootPos Pos
}

// Metadata identifies a playbook.
type Metadata struct {
	// Name is the playbook's name: lower-case letters, digits and hyphens.
	Name string
	// Version is a positive integer, raised on every change.
	Version int
	// Description says what incident the playbook answers.
	Description string

	namePos, versionPos Pos
}

// Input is one declared playbook input.
type Input struct {
	// Name is how expressions refer to the input: inputs.<Name>.
	Name string
	// Type is the input's type.
	Type InputType
	// Required inputs must be given when the playbook starts.
	Required bool
	// Default is the value used when the input is not given; nil if none.
	Default *Value
	// Description says what the input is, for operators.
	Description string
	// Pos is the position of the input's entry.
	Pos Pos

	namePos, typePos Pos
}

// Step is one step of a playbook: one run of an action.
type Step struct {
	// ID names the step; expressions refer to it as steps.<ID>.
	ID string
	// Description says what the step is for.
	Description string
	// Phase is the step's NIST phase.
	Phase Phase
	// Action is the response action the step runs; a step names an action
	// or an operation, never both.
	Action string
	// Operation is the controller operation the step runs instead of one
	// action (see Operations): several runs the controller orders itself.
	Operation string
	// Needs lists the steps that must finish before this one starts.
	Needs []string
	// Targets says where the action runs.
	Targets Targets
	// Params are the action's parameters, in file order.
	Params []*Param
	// When, if set, is a boolean condition; the step is skipped when false.
	When *Value
	// Timeout is the step's time limit as written (a Go duration); empty
	// means the run's default.
	Timeout string
	// OnFailure is the failure policy; empty means stop.
	OnFailure OnFailure
	// Approval is "required" when the step waits for an approver.
	Approval string
	// Rollback undoes the step; nil if the step has none.
	Rollback *Rollback
	// Pos is the position of the step's entry.
	Pos Pos

	idPos, phasePos, actionPos, operationPos, timeoutPos, onFailurePos, approvalPos, paramsPos Pos
	needsPos                                                                                   []Pos
}

// ActionName is what the step runs, as its runs and records name it: the
// action, or "operation:NAME" for an operation step.
func (s *Step) ActionName() string {
	if s.Operation != "" {
		return OperationKey(s.Operation)
	}
	return s.Action
}

// Targets says where a step's action runs: agents picked by a selector, or
// AWS accounts and regions served by worker agents.
type Targets struct {
	// Selector picks agents: "all" or comma-joined terms such as role=host,
	// label.env=prod, id=…, hostname=….
	Selector *Value
	// Accounts picks AWS accounts: "all", "ID,ID" or "ou=ou-…".
	Accounts *Value
	// Regions picks regions: "all", a comma-joined string or a list.
	Regions *Value

	pos Pos
	set bool
}

// Param is one action parameter of a step or rollback.
type Param struct {
	// Name is the parameter's name in the action's schema.
	Name string
	// Value is the parameter's value as written.
	Value *Value

	namePos Pos
}

// Rollback is the action that undoes a step, with its parameters. It runs
// on the step's targets.
type Rollback struct {
	// Action is the undoing action.
	Action string
	// Params are its parameters, in file order.
	Params []*Param
	// Pos is the position of the rollback mapping.
	Pos Pos

	actionPos, paramsPos Pos
}

// Step returns the step with the given id, or nil.
func (pb *Playbook) Step(id string) *Step {
	for _, s := range pb.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Input returns the input with the given name, or nil.
func (pb *Playbook) Input(name string) *Input {
	for _, in := range pb.Inputs {
		if in.Name == name {
			return in
		}
	}
	return nil
}
