package agent

import (
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// shedError is a controller's refusal of an attempt it had no room for:
// RESOURCE_EXHAUSTED with a retry-after trailer. The agent waits about the
// retry-after (ctrladdr.Backoff.RetryAfter) and tries again; an
// enrollment shed so spent no join token.
type shedError struct {
	err   error
	after time.Duration
}

func (e *shedError) Error() string { return e.err.Error() }

func (e *shedError) Unwrap() error { return e.err }

// maxRetryAfterSeconds bounds the retry-after the agent reads; the
// backoff holds it to its cap anyway.
const maxRetryAfterSeconds = 3600

// shedFrom returns err as a *shedError when it is RESOURCE_EXHAUSTED and
// trailer carries a retry-after in whole seconds, and err unchanged
// otherwise (a RESOURCE_EXHAUSTED without one is an ordinary failure, met
// with the ordinary backoff).
func shedFrom(err error, trailer metadata.MD) error {
	if err == nil || status.Code(err) != codes.ResourceExhausted {
		return err
	}
	v := trailer.Get("retry-after")
	if len(v) != 1 {
		return err
	}
	secs, perr := strconv.ParseUint(v[0], 10, 32)
	if perr != nil || secs > maxRetryAfterSeconds {
		return err
	}
	return &shedError{err: err, after: time.Duration(secs) * time.Second}
}
