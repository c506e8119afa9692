package awsec2

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"

	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
)

// Outcomes of an API call.
const (
	// OutcomeOK means the call succeeded.
	OutcomeOK = "ok"
	// OutcomeAlready means AWS refused the call because what it asked for
	// was already so (a duplicate rule, a target already gone), which
	// counts as done.
	OutcomeAlready = "already"
	// OutcomeFailed means the call failed.
	OutcomeFailed = "failed"
)

// APICall is one AWS API call an action made, for the result: every call,
// reads included, in the order made.
type APICall struct {
	// Step is the action's step the call belongs to.
	Step string `json:"step"`
	// Operation is the IAM action name, e.g. ec2:ModifyNetworkInterfaceAttribute.
	Operation string `json:"operation"`
	// Target names what the call read or changed (ids, ARNs, names).
	Target string `json:"target"`
	// Outcome is ok, already or failed.
	Outcome string `json:"outcome"`
	// Error is AWS's error code and message when the outcome is not ok.
	Error string `json:"error,omitempty"`
	// Attempts counts the HTTP attempts, more than 1 when the SDK retried
	// (throttling, transient errors).
	Attempts int `json:"attempts"`
	// ElapsedMS is the call's duration, retries included.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// readOnly reports whether an operation only reads.
func readOnly(op string) bool {
	_, name, _ := strings.Cut(op, ":")
	return strings.HasPrefix(name, "Describe") || strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")
}

// journal records the calls of one task. It is safe for concurrent use.
type journal struct {
	mu      sync.Mutex
	calls   []APICall
	changes int
	now     func() time.Time
}

func newJournal(now func() time.Time) *journal { return &journal{now: now} }

// call runs one API call, recording it. Errors whose AWS code is among
// already mean the wanted state is in place: they are recorded as such and
// call returns nil.
func (j *journal) call(ctx context.Context, step, op, target string, fn func(context.Context) error, already ...string) error {
	_, err := j.do(ctx, step, op, target, fn, already...)
	return err
}

// do is call that also returns the outcome, to tell ok from already.
func (j *journal) do(ctx context.Context, step, op, target string, fn func(context.Context) error, already ...string) (string, error) {
	ctx, span := telemetry.Tracer().Start(ctx, op)
	span.SetAttributes(attribute.String("firebreak.step", step), attribute.String("aws.target", target))
	defer span.End()
	var attempts atomic.Int32
	start := j.now()
	err := fn(context.WithValue(ctx, attemptsKey{}, &attempts))
	c := APICall{Step: step, Operation: op, Target: target, Outcome: OutcomeOK, Attempts: int(attempts.Load()),
		ElapsedMS: millis(j.now().Sub(start))}
	if err != nil {
		c.Outcome, c.Error = OutcomeFailed, awsclient.APIError(op, err).Error()
		if code := awsclient.ErrorCode(err); code != "" && slices.Contains(already, code) {
			c.Outcome = OutcomeAlready
			err = nil
		} else {
			span.SetStatus(otelcodes.Error, c.Error)
		}
	}
	j.mu.Lock()
	j.calls = append(j.calls, c)
	if c.Outcome == OutcomeOK && !readOnly(op) {
		j.changes++
	}
	j.mu.Unlock()
	return c.Outcome, err
}

// snapshot returns the calls so far and the number of successful changes.
func (j *journal) snapshot() ([]APICall, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.calls), j.changes
}

// millis is a duration in milliseconds with microsecond precision.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// isCode reports whether err is an AWS error with one of the codes.
func isCode(err error, codes ...string) bool {
	if err == nil {
		return false
	}
	return slices.Contains(codes, awsclient.ErrorCode(err))
}

// errorMessage is the AWS message of err, or its text.
func errorMessage(err error) string {
	var ae interface{ ErrorMessage() string }
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return err.Error()
}
