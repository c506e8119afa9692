// Package watchcap bounds the live watches (server streams of run
// progress) a controller serves, per operator and overall, so a viewer
// cannot grow the controller's memory by opening streams.
package watchcap

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults for the limits.
const (
	// DefaultPerOperator is how many watches one operator may hold open.
	DefaultPerOperator = 16
	// DefaultTotal is how many watches the controller serves at once.
	DefaultTotal = 1024
)

// Limiter counts open watches. The zero value is not usable; call New.
type Limiter struct {
	perOperator, total int
	mu                 sync.Mutex
	open               map[string]int
	all                int
}

// New returns a Limiter; a limit of 0 takes its default.
func New(perOperator, total int) *Limiter {
	if perOperator <= 0 {
		perOperator = DefaultPerOperator
	}
	if total <= 0 {
		total = DefaultTotal
	}
	return &Limiter{perOperator: perOperator, total: total, open: map[string]int{}}
}

// Acquire takes a watch slot for operator and returns the function that
// gives it back (call it once, when the stream ends), or a
// RESOURCE_EXHAUSTED error saying which limit was reached.
func (l *Limiter) Acquire(operator string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Security-critical: each open watch holds a buffer and a goroutine;
	// without a cap a viewer grows the controller's memory without bound.
	if l.open[operator] >= l.perOperator {
		return nil, status.Errorf(codes.ResourceExhausted,
			"operator %q already has %d watches open, the limit (--max-watches-per-operator): end one and watch again", operator, l.perOperator)
	}
	if l.all >= l.total {
		return nil, status.Errorf(codes.ResourceExhausted,
			"the controller already serves %d watches, its limit (--max-watches): try again when one ends", l.total)
	}
	l.open[operator]++
	l.all++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.all--
			if l.open[operator]--; l.open[operator] <= 0 {
				delete(l.open, operator)
			}
		})
	}, nil
}

// Open reports how many watches are open, overall and for operator.
func (l *Limiter) Open(operator string) (total, forOperator int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all, l.open[operator]
}

// String describes the limits, for logs.
func (l *Limiter) String() string {
	return fmt.Sprintf("%d per operator, %d overall", l.perOperator, l.total)
}
