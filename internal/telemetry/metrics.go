package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names. docs/observability.md lists them with their Prometheus
// names (dots become underscores, units and _total are appended).
const (
	MetricAgentsConnected  = "firebreak.agents.connected"
	MetricTasksDispatched  = "firebreak.tasks.dispatched"
	MetricTasksFinished    = "firebreak.tasks.finished"
	MetricTaskLatency      = "firebreak.task.duration"
	MetricEvidenceBytes    = "firebreak.evidence.received"
	MetricEvidenceFailures = "firebreak.evidence.upload.failures"
	MetricFindings         = "firebreak.findings.received"
	MetricRunsFinished     = "firebreak.runs.finished"
	// MetricRunsAwaitingApproval and MetricApprovalWaitOldest say how many
	// runs wait for an approver and how long the oldest has waited.
	MetricRunsAwaitingApproval = "firebreak.runs.awaiting_approval"
	MetricApprovalWaitOldest   = "firebreak.approval.wait.oldest"
	// MetricStoreUp is 1 while the controller's store answers, 0 while it
	// does not.
	MetricStoreUp = "firebreak.store.up"
	// MetricLeaseHeld is 1 for each cluster lease this controller holds
	// and 0 for those it runs but does not hold; MetricLeaseChanges counts
	// the times it took or lost one.
	MetricLeaseHeld    = "firebreak.lease.held"
	MetricLeaseChanges = "firebreak.lease.changes"
	// MetricStoreDuration is the latency of the store's operations, by
	// kind (read, write) and outcome; MetricStoreRetries counts the write
	// transactions PostgreSQL aborted and the store ran again.
	MetricStoreDuration = "firebreak.store.duration"
	MetricStoreRetries  = "firebreak.store.retries"
	// MetricTasksActive is the tasks of this controller's dispatcher that
	// are not final yet, by state (pending, dispatched, running).
	MetricTasksActive = "firebreak.tasks.active"
	// MetricRouteMessages counts what this controller sent to the other
	// controllers of its cluster (deliveries to agents they hold, reports
	// to the owners of runs, presence), by kind and outcome: the wakes of
	// cross-controller routing.
	MetricRouteMessages = "firebreak.route.messages"
	// MetricRouteSweeps counts the routing catch-up sweeps, and
	// MetricRouteCorrections what they found that a lost message had left
	// wrong (an agent's location, a run without a live owner).
	MetricRouteSweeps      = "firebreak.route.sweeps"
	MetricRouteCorrections = "firebreak.route.corrections"
)

// Attributes of the store and task-state metrics.
var (
	AttrStoreOperation = attribute.Key("firebreak.store.operation")
	AttrStoreOutcome   = attribute.Key("firebreak.store.outcome")
	AttrStoreRetry     = attribute.Key("firebreak.store.retry.reason")
	AttrTaskState      = attribute.Key("firebreak.task.state")
	AttrRouteKind      = attribute.Key("firebreak.route.kind")
	AttrRouteOutcome   = attribute.Key("firebreak.route.outcome")
)

// AttrLease names a cluster lease (a singleton job) on the lease metrics.
var AttrLease = attribute.Key("firebreak.lease")

// Lease changes, the values of firebreak.lease.change on MetricLeaseChanges.
const (
	LeaseAcquired = "acquired"
	LeaseLost     = "lost"
	LeaseReleased = "released"
)

// instruments are made from the global meter provider, which forwards to
// the one Setup installs whenever that happens; without Setup they cost a
// no-op call.
var instruments = func() (in struct {
	dispatched, finished, evidenceBytes, evidenceFailures, findings, runs, leaseChanges, storeRetries metric.Int64Counter
	routeMessages, routeSweeps, routeCorrections                                                      metric.Int64Counter
	latency, storeLatency                                                                             metric.Float64Histogram
}) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	in.dispatched, _ = m.Int64Counter(MetricTasksDispatched, metric.WithUnit("{task}"), metric.WithDescription("Tasks signed and pushed to an agent."))
	in.finished, _ = m.Int64Counter(MetricTasksFinished, metric.WithUnit("{task}"), metric.WithDescription("Tasks that reached a final state, by status."))
	in.latency, _ = m.Float64Histogram(MetricTaskLatency, metric.WithUnit("s"), metric.WithDescription("Time from a task's dispatch to its stored result, by action and status."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
	in.evidenceBytes, _ = m.Int64Counter(MetricEvidenceBytes, metric.WithUnit("By"), metric.WithDescription("Evidence bytes received and stored."))
	in.evidenceFailures, _ = m.Int64Counter(MetricEvidenceFailures, metric.WithUnit("{upload}"), metric.WithDescription("Evidence uploads that ended in an error."))
	in.findings, _ = m.Int64Counter(MetricFindings, metric.WithUnit("{finding}"), metric.WithDescription("Findings taken in, by source and outcome."))
	in.runs, _ = m.Int64Counter(MetricRunsFinished, metric.WithUnit("{run}"), metric.WithDescription("Runs that reached a final status, by status."))
	in.leaseChanges, _ = m.Int64Counter(MetricLeaseChanges, metric.WithUnit("{change}"),
		metric.WithDescription("Cluster leases this controller took, lost or released, by lease and change."))
	in.storeLatency, _ = m.Float64Histogram(MetricStoreDuration, metric.WithUnit("s"),
		metric.WithDescription("Time the store took for a read query or a write transaction (its retries included), by operation and outcome."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	in.storeRetries, _ = m.Int64Counter(MetricStoreRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Write transactions PostgreSQL aborted for concurrent writers and the store ran again, by reason."))
	in.routeMessages, _ = m.Int64Counter(MetricRouteMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Messages sent to the other controllers of the cluster, by kind (deliver, report, presence) and outcome."))
	in.routeSweeps, _ = m.Int64Counter(MetricRouteSweeps, metric.WithUnit("{sweep}"), metric.WithDescription("Routing catch-up sweeps run."))
	in.routeCorrections, _ = m.Int64Counter(MetricRouteCorrections, metric.WithUnit("{correction}"),
		metric.WithDescription("What a routing catch-up sweep corrected, by kind (agent location, run adopted)."))
	return in
}()

// RouteSent counts n messages of kind sent to another controller, with
// their outcome ("ok" or "error").
func RouteSent(kind, outcome string, n int) {
	instruments.routeMessages.Add(context.Background(), int64(n), metric.WithAttributes(AttrRouteKind.String(kind), AttrRouteOutcome.String(outcome)))
}

// RouteSwept counts one catch-up sweep.
func RouteSwept() { instruments.routeSweeps.Add(context.Background(), 1) }

// RouteCorrected counts n corrections of kind by a catch-up sweep.
func RouteCorrected(kind string, n int) {
	if n > 0 {
		instruments.routeCorrections.Add(context.Background(), int64(n), metric.WithAttributes(AttrRouteKind.String(kind)))
	}
}

// StoreOperation records how long one store operation (kind "read" or
// "write") took and how it ended. It fits store.Observer's Operation.
func StoreOperation(kind, outcome string, took time.Duration) {
	instruments.storeLatency.Record(context.Background(), took.Seconds(),
		metric.WithAttributes(AttrStoreOperation.String(kind), AttrStoreOutcome.String(outcome)))
}

// StoreRetried counts a write transaction run again, and why. It fits
// store.Observer's Retry.
func StoreRetried(reason string) {
	instruments.storeRetries.Add(context.Background(), 1, metric.WithAttributes(AttrStoreRetry.String(reason)))
}

// ObserveActiveTasks reports, at each collection, the tasks not final yet
// by state, as active returns them (state to count; it must not query the
// store). It returns a function that stops the observation.
func ObserveActiveTasks(active func() map[string]int64) (func(), error) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	g, err := m.Int64ObservableGauge(MetricTasksActive, metric.WithUnit("{task}"),
		metric.WithDescription("Tasks of this controller's dispatcher that are not final yet, by state."))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for state, n := range active() {
			o.ObserveInt64(g, n, metric.WithAttributes(AttrTaskState.String(state)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

// LeaseChanged counts a lease this controller took (LeaseAcquired), lost
// (LeaseLost) or gave up (LeaseReleased).
func LeaseChanged(lease, change string) {
	instruments.leaseChanges.Add(context.Background(), 1, metric.WithAttributes(AttrLease.String(lease), attribute.String("firebreak.lease.change", change)))
}

// ObserveLeases reports, at each collection, 1 for each lease held reports
// held and 0 for the others. It returns a function that stops the
// observation.
func ObserveLeases(held func() map[string]bool) (func(), error) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	g, err := m.Int64ObservableGauge(MetricLeaseHeld, metric.WithUnit("{lease}"),
		metric.WithDescription("1 when this controller holds the cluster lease, 0 when another does."))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for name, h := range held() {
			v := int64(0)
			if h {
				v = 1
			}
			o.ObserveInt64(g, v, metric.WithAttributes(AttrLease.String(name)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

// TaskDispatched counts tasks pushed to agents.
func TaskDispatched(action string, n int) {
	instruments.dispatched.Add(context.Background(), int64(n), metric.WithAttributes(AttrAction.String(action)))
}

// TaskFinished counts a final task and records its dispatch-to-result
// latency (when it was dispatched).
func TaskFinished(action, status string, sinceDispatch time.Duration) {
	attrs := metric.WithAttributes(AttrAction.String(action), AttrStatus.String(status))
	instruments.finished.Add(context.Background(), 1, attrs)
	if sinceDispatch > 0 {
		instruments.latency.Record(context.Background(), sinceDispatch.Seconds(), attrs)
	}
}

// EvidenceReceived counts stored evidence bytes, or a failed upload.
func EvidenceReceived(bytes int64, err error) {
	if err != nil {
		instruments.evidenceFailures.Add(context.Background(), 1)
		return
	}
	instruments.evidenceBytes.Add(context.Background(), bytes)
}

// FindingReceived counts a finding taken in.
func FindingReceived(source, outcome string) {
	instruments.findings.Add(context.Background(), 1, metric.WithAttributes(attribute.String("firebreak.finding.source", source),
		attribute.String("firebreak.finding.outcome", outcome)))
}

// RunFinished counts a run that reached a final status.
func RunFinished(action, status string) {
	instruments.runs.Add(context.Background(), 1, metric.WithAttributes(AttrAction.String(action), attribute.String("firebreak.run.status", status)))
}

// ObserveAgentsConnected reports the connected agents at each collection.
// It returns a function that stops the observation.
func ObserveAgentsConnected(count func() int) (func(), error) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	g, err := m.Int64ObservableGauge(MetricAgentsConnected, metric.WithUnit("{agent}"), metric.WithDescription("Agents holding a stream to this controller."))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, int64(count()))
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

// ObserveApprovals reports, at each collection, the runs waiting for an
// approver and the oldest wait. It returns a function that stops the
// observation.
func ObserveApprovals(awaiting func() (int, time.Duration)) (func(), error) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	n, err := m.Int64ObservableGauge(MetricRunsAwaitingApproval, metric.WithUnit("{run}"),
		metric.WithDescription("Runs waiting for an approver."))
	if err != nil {
		return nil, err
	}
	oldest, err := m.Float64ObservableGauge(MetricApprovalWaitOldest, metric.WithUnit("s"),
		metric.WithDescription("How long the run that has waited longest for an approver has waited; 0 when none waits."))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		count, wait := awaiting()
		o.ObserveInt64(n, int64(count))
		o.ObserveFloat64(oldest, wait.Seconds())
		return nil
	}, n, oldest)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

// ObserveStoreUp reports, at each collection, 1 while the store answered
// the controller's last check and 0 otherwise. It returns a function that
// stops the observation.
func ObserveStoreUp(up func() bool) (func(), error) {
	m := otel.Meter("github.com/firebreak-ir/firebreak")
	g, err := m.Int64ObservableGauge(MetricStoreUp,
		metric.WithDescription("1 while the controller's store answers its health check, 0 while it does not."))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		v := int64(0)
		if up() {
			v = 1
		}
		o.ObserveInt64(g, v)
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}
