package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestWriteRetriesAreObserved checks what the Observer hears of a write
// transaction PostgreSQL aborts: one Retry per attempt run again, with its
// reason, and one Operation for the whole transaction whose outcome says
// whether it finally committed, failed, or ran out of attempts.
func TestWriteRetriesAreObserved(t *testing.T) {
	serialization := &pgconn.PgError{Code: pgSerializationFailure}
	deadlock := &pgconn.PgError{Code: pgDeadlockDetected}
	failure := errors.New("a constraint failed")
	many := slices.Repeat([]error{serialization}, maxTxAttempts)
	tests := []struct {
		name        string
		attempts    []error // what each attempt returns; past the end, nil
		wantRetries []string
		wantOutcome string
	}{
		{"first time", nil, nil, OutcomeOK},
		{"after a serialization failure", []error{serialization}, []string{RetrySerialization}, OutcomeOK},
		{"after a deadlock and a serialization failure", []error{deadlock, serialization},
			[]string{RetryDeadlock, RetrySerialization}, OutcomeOK},
		{"an error that is not retried", []error{failure}, nil, OutcomeError},
		{"aborted on every attempt", many, slices.Repeat([]string{RetrySerialization}, maxTxAttempts-1), OutcomeConflict},
	}
	s, err := OpenSQLite(context.Background(), t.TempDir()+"/db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var retries, outcomes []string
			s.obs = &Observer{
				Operation: func(kind, outcome string, _ time.Duration) { outcomes = append(outcomes, kind+" "+outcome) },
				Retry:     func(reason string) { retries = append(retries, reason) },
			}
			attempt := 0
			err := s.writeTx(context.Background(), func(*sql.Tx) error {
				attempt++
				if attempt <= len(tt.attempts) {
					return tt.attempts[attempt-1]
				}
				return nil
			})
			if (err == nil) != (tt.wantOutcome == OutcomeOK) {
				t.Fatalf("writeTx: %v", err)
			}
			if !slices.Equal(retries, tt.wantRetries) {
				t.Errorf("retries %v, want %v", retries, tt.wantRetries)
			}
			if want := []string{OpWrite + " " + tt.wantOutcome}; !slices.Equal(outcomes, want) {
				t.Errorf("operations %v, want %v", outcomes, want)
			}
		})
	}
}

// TestOutcome checks how an operation's error is classified.
func TestOutcome(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"none", nil, OutcomeOK},
		{"cancelled", context.Canceled, OutcomeCanceled},
		{"deadline", context.DeadlineExceeded, OutcomeCanceled},
		{"out of attempts", errors.Join(errConflict, &pgconn.PgError{Code: pgSerializationFailure}), OutcomeConflict},
		{"anything else", errors.New("disk full"), OutcomeError},
	}
	for _, tt := range tests {
		if got := outcome(tt.err); got != tt.want {
			t.Errorf("%s: outcome(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}
