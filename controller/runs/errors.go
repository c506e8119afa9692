package runs

import (
	"errors"
	"fmt"
)

// The kinds of refusal the planner gives. Every refusal is an *Error of
// one of these kinds, so errors.Is(err, ErrNoTargets) and the like tell
// them apart; any other error from the planner is a failure of the store
// or the fleet that a retry may cure.
var (
	// ErrInvalidSpec: the request itself is not valid (no action, a reason
	// or deadline out of bounds, options that do not go together).
	ErrInvalidSpec = errors.New("the run request is not valid")
	// ErrInvalidSelector: the target selector, accounts or regions do not
	// parse, or name nothing that exists.
	ErrInvalidSelector = errors.New("the run's targets are not valid")
	// ErrUnknownAction: the action is not in the catalogue, or no matching
	// agent offers it.
	ErrUnknownAction = errors.New("unknown action")
	// ErrInvalidParams: the parameters do not fit the action's schema.
	ErrInvalidParams = errors.New("the run's parameters are not valid")
	// ErrNoTargets: the selector matches no agent that can be sent a task,
	// or no accounts are known for an account-targeted run.
	ErrNoTargets = errors.New("the run has no targets")
	// ErrPermission: the actor may not create this run.
	ErrPermission = errors.New("not permitted")
)

// Error is a refusal to plan a run: its kind (one of the Err* values
// above), the precise text the requester sees, and the cause when there is
// one.
type Error struct {
	// Kind is ErrInvalidSpec, ErrInvalidSelector, ErrUnknownAction,
	// ErrInvalidParams, ErrNoTargets or ErrPermission.
	Kind error
	// Msg is the whole message, as the requester sees it.
	Msg string
	// Cause is the error Msg was made from, if any.
	Cause error
}

// Error implements error: the precise message alone.
func (e *Error) Error() string { return e.Msg }

// Unwrap makes errors.Is match the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func refuse(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// refuseErr is a refusal whose message is cause's own.
func refuseErr(kind, cause error) *Error {
	return &Error{Kind: kind, Msg: cause.Error(), Cause: cause}
}
