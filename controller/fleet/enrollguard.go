package fleet

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// Enrollment is the one RPC anyone may call without a certificate, so it is
// guarded here: by token buckets per source address and over all sources,
// checked before any token is hashed or the store is touched, and by an
// audit of refusals that writes the first refusal of a source at once and
// folds the rest of its window into one summary record.

// Defaults of EnrollLimits. A legitimate herd enrolls once per agent: an
// auto-scaling group of 200 instances behind one NAT address enrolls in the
// per-source burst, and a fleet of 10,000 agents coming up at once enrolls
// in about 16 s at the overall rate. An attacker guessing tokens from one
// address gets RefusalBurst guesses and then one a second.
const (
	DefaultEnrollPerSource      rate.Limit = 20
	DefaultEnrollPerSourceBurst            = 200
	DefaultEnrollOverall        rate.Limit = 500
	DefaultEnrollOverallBurst              = 2000
	DefaultEnrollRefusals       rate.Limit = 1
	DefaultEnrollRefusalBurst              = 20
	DefaultEnrollRefusalWindow             = time.Minute
	DefaultEnrollMaxSources                = 10000
)

// EnrollLimits are the rate limits on enrollment and the aggregation of its
// refusals in the audit log. A zero field takes its default; rate.Inf lifts
// a limit.
type EnrollLimits struct {
	// PerSource and PerSourceBurst bound every enrollment from one source
	// address.
	PerSource      rate.Limit
	PerSourceBurst int
	// Overall and OverallBurst bound every enrollment from all sources.
	Overall      rate.Limit
	OverallBurst int
	// Refusals and RefusalBurst bound the refused enrollments (bad
	// tokens, bad requests) of one source: once spent, every enrollment
	// from that source waits, since a call cannot be known to be bad
	// before its token is checked.
	Refusals     rate.Limit
	RefusalBurst int
	// RefusalWindow is how long the refusals of one source are folded
	// into one audit record after the first.
	RefusalWindow time.Duration
	// MaxSources caps the source addresses tracked; the least recently
	// seen is evicted (its pending refusals written) to make room.
	MaxSources int
}

// CheckAndSetDefaults sets the defaults and refuses negative values.
func (l *EnrollLimits) CheckAndSetDefaults() error {
	for name, v := range map[string]float64{"per-source rate": float64(l.PerSource), "overall rate": float64(l.Overall),
		"refusal rate": float64(l.Refusals), "per-source burst": float64(l.PerSourceBurst), "overall burst": float64(l.OverallBurst),
		"refusal burst": float64(l.RefusalBurst), "refusal window": float64(l.RefusalWindow), "max sources": float64(l.MaxSources)} {
		if v < 0 || math.IsNaN(v) {
			return fmt.Errorf("enrollment limits: the %s must not be negative", name)
		}
	}
	setRate := func(r *rate.Limit, b *int, dr rate.Limit, db int) {
		if *r == 0 {
			*r = dr
		}
		if *b == 0 {
			*b = db
		}
	}
	setRate(&l.PerSource, &l.PerSourceBurst, DefaultEnrollPerSource, DefaultEnrollPerSourceBurst)
	setRate(&l.Overall, &l.OverallBurst, DefaultEnrollOverall, DefaultEnrollOverallBurst)
	setRate(&l.Refusals, &l.RefusalBurst, DefaultEnrollRefusals, DefaultEnrollRefusalBurst)
	if l.RefusalWindow == 0 {
		l.RefusalWindow = DefaultEnrollRefusalWindow
	}
	if l.MaxSources == 0 {
		l.MaxSources = DefaultEnrollMaxSources
	}
	return nil
}

// EnrollGuardConfig holds an enrollment guard's limits and dependencies.
type EnrollGuardConfig struct {
	Limits EnrollLimits
	// Audit records refusals; required.
	Audit  AuditFunc
	Logger *slog.Logger
	Clock  func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *EnrollGuardConfig) CheckAndSetDefaults() error {
	if c.Audit == nil {
		return fmt.Errorf("enrollment guard: missing Audit")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c.Limits.CheckAndSetDefaults()
}

// EnrollGuard rate-limits enrollment and aggregates its refusals.
type EnrollGuard struct {
	cfg EnrollGuardConfig

	mu      sync.Mutex
	overall *rate.Limiter
	sources map[string]*list.Element // of *enrollSource
	lru     *list.List               // front: most recently seen
}

// enrollSource is what the guard keeps about one source address.
type enrollSource struct {
	addr     string
	calls    *rate.Limiter
	refusals *rate.Limiter
	// window is the open refusal window, nil when none is.
	window *refusalWindow
}

// refusalWindow counts the refusals of one source after the first, which
// was written at once.
type refusalWindow struct {
	start   time.Time
	count   int
	reasons map[string]int
}

// auditRecord is a refusal record to write once the lock is released.
type auditRecord struct {
	subject string
	detail  map[string]any
}

// NewEnrollGuard returns an enrollment guard.
func NewEnrollGuard(cfg EnrollGuardConfig) (*EnrollGuard, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	l := cfg.Limits
	return &EnrollGuard{cfg: cfg, overall: rate.NewLimiter(l.Overall, l.OverallBurst), sources: map[string]*list.Element{}, lru: list.New()}, nil
}

// SourceOf returns the address an RPC came from, without its port, or
// "unknown".
func SourceOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// source returns the state of addr, creating it and evicting the least
// recently seen source if the cap is reached; g.mu is held.
func (g *EnrollGuard) source(addr string, now time.Time, flush *[]auditRecord) *enrollSource {
	if e, ok := g.sources[addr]; ok {
		g.lru.MoveToFront(e)
		return e.Value.(*enrollSource)
	}
	for g.lru.Len() >= g.cfg.Limits.MaxSources {
		old := g.lru.Back()
		s := old.Value.(*enrollSource)
		if r, ok := g.closeWindow(s, now); ok {
			*flush = append(*flush, r)
		}
		g.lru.Remove(old)
		delete(g.sources, s.addr)
	}
	l := g.cfg.Limits
	s := &enrollSource{addr: addr, calls: rate.NewLimiter(l.PerSource, l.PerSourceBurst), refusals: rate.NewLimiter(l.Refusals, l.RefusalBurst)}
	g.sources[addr] = g.lru.PushFront(s)
	return s
}

// Admit decides whether an enrollment from addr may proceed. If not, it
// returns how long the caller should wait and counts the call as a refusal.
// It touches neither the store nor the token.
func (g *EnrollGuard) Admit(ctx context.Context, addr string) (time.Duration, bool) {
	now := g.cfg.Clock()
	var flush []auditRecord
	g.mu.Lock()
	s := g.source(addr, now, &flush)
	wait := max(waitFor(s.refusals, now), waitFor(s.calls, now), waitFor(g.overall, now))
	if wait == 0 {
		s.calls.AllowN(now, 1)
		g.overall.AllowN(now, 1)
	} else {
		flush = append(flush, g.countRefusal(s, now, addr, "rate limited")...)
	}
	g.mu.Unlock()
	g.write(ctx, flush)
	return wait, wait == 0
}

// Refused records a refused enrollment from addr: it spends the source's
// refusal budget, and is written to the audit log at once if it opens a
// window, or counted into the window's summary otherwise. subject names
// what was refused (a hostname the request gave, or the source).
func (g *EnrollGuard) Refused(ctx context.Context, addr, subject, reason string) {
	now := g.cfg.Clock()
	var flush []auditRecord
	g.mu.Lock()
	s := g.source(addr, now, &flush)
	// Reserving, unlike Allow, puts a racing burst of refusals in debt.
	s.refusals.ReserveN(now, 1)
	flush = append(flush, g.countRefusal(s, now, subject, reason)...)
	g.mu.Unlock()
	g.write(ctx, flush)
}

// countRefusal counts a refusal into the source's window, returning the
// records to write: the closed window's summary and, for the first
// refusal of a new window, the refusal itself. g.mu is held.
func (g *EnrollGuard) countRefusal(s *enrollSource, now time.Time, subject, reason string) []auditRecord {
	var out []auditRecord
	if s.window != nil && !now.Before(s.window.start.Add(g.cfg.Limits.RefusalWindow)) {
		if r, ok := g.closeWindow(s, now); ok {
			out = append(out, r)
		}
	}
	if s.window == nil {
		s.window = &refusalWindow{start: now, reasons: map[string]int{}}
		return append(out, auditRecord{subject: subject, detail: map[string]any{"source": s.addr, "reason": reason, "count": 1,
			"window_start": now}})
	}
	s.window.count++
	s.window.reasons[reason]++
	return out
}

// closeWindow ends the source's window, returning its summary if it
// counted any refusal. g.mu is held.
func (g *EnrollGuard) closeWindow(s *enrollSource, now time.Time) (auditRecord, bool) {
	w := s.window
	s.window = nil
	if w == nil || w.count == 0 {
		return auditRecord{}, false
	}
	end := w.start.Add(g.cfg.Limits.RefusalWindow)
	if now.Before(end) {
		end = now
	}
	reasons := make([]string, 0, len(w.reasons))
	for r := range w.reasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	return auditRecord{subject: s.addr, detail: map[string]any{"source": s.addr, "count": w.count, "window_start": w.start,
		"window_end": end, "reasons": reasons, "reason_counts": w.reasons}}, true
}

// Flush writes the summaries of the windows that have ended, or of every
// open window if all is set, and forgets sources that hold nothing.
func (g *EnrollGuard) Flush(ctx context.Context, all bool) {
	now := g.cfg.Clock()
	var flush []auditRecord
	g.mu.Lock()
	for e := g.lru.Back(); e != nil; {
		prev := e.Prev()
		s := e.Value.(*enrollSource)
		if s.window != nil && (all || !now.Before(s.window.start.Add(g.cfg.Limits.RefusalWindow))) {
			if r, ok := g.closeWindow(s, now); ok {
				flush = append(flush, r)
			}
		}
		// A source with full buckets and no window is the same as one
		// never seen.
		if s.window == nil && full(s.calls, now) && full(s.refusals, now) {
			g.lru.Remove(e)
			delete(g.sources, s.addr)
		}
		e = prev
	}
	g.mu.Unlock()
	g.write(ctx, flush)
}

// Run flushes ended windows until ctx ends, then flushes every pending
// one, so no counted refusal is lost at shutdown.
func (g *EnrollGuard) Run(ctx context.Context) error {
	every := min(max(g.cfg.Limits.RefusalWindow/4, 100*time.Millisecond), 15*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.Flush(context.WithoutCancel(ctx), true)
			return nil
		case <-t.C:
			g.Flush(ctx, false)
		}
	}
}

// Sources returns the number of source addresses tracked.
func (g *EnrollGuard) Sources() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lru.Len()
}

func (g *EnrollGuard) write(ctx context.Context, recs []auditRecord) {
	for _, r := range recs {
		g.cfg.Audit(ctx, "system", "agent.enroll_refused", r.subject, r.detail)
	}
}

// waitFor is how long until lim has a token at now (0: it has one).
func waitFor(lim *rate.Limiter, now time.Time) time.Duration {
	if lim.Limit() == rate.Inf {
		return 0
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	if lim.Limit() <= 0 {
		return time.Hour
	}
	return max(time.Duration((1-tokens)/float64(lim.Limit())*float64(time.Second)), time.Nanosecond)
}

func full(lim *rate.Limiter, now time.Time) bool {
	return lim.Limit() == rate.Inf || lim.TokensAt(now) >= float64(lim.Burst())
}
