package console

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// method is the full gRPC name of a method of the operator API, as the
// policy names it: "CreateRun" for an OperatorService method, or
// "EvidenceService/GetEvidence" for another service's.
func method(short string) string {
	if strings.Contains(short, "/") {
		return "/firebreak.operator.v1." + short
	}
	return "/firebreak.operator.v1.OperatorService/" + short
}

// runListCap is how many of the newest runs the runs list reads.
const runListCap = 1000

// runList lists runs, newest first, filtered by action, state, operator
// and case, paged.
func (c *Console) runList(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("ListRuns"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.ListRuns(ctx, &operatorv1.ListRunsRequest{Limit: runListCap})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := runFilter{Action: q.Get("action"), State: q.Get("state"), Operator: q.Get("operator"), Case: q.Get("case")}
	p := paginate(resp.GetRuns(), (*operatorv1.Run).GetId, f.keep, q.Get("after"), c.cfg.PageSize)
	p.Filtered = f != runFilter{}
	p.link(r, "")
	if len(resp.GetRuns()) >= runListCap {
		p.Capped = fmt.Sprintf("only the newest %d runs are listed", runListCap)
	}
	c.render(w, r, http.StatusOK, "runs", map[string]any{"Page": p, "Filter": f, "States": runStates()})
}

// runFilter narrows the runs list.
type runFilter struct{ Action, State, Operator, Case string }

func (f runFilter) keep(r *operatorv1.Run) bool {
	return (f.Action == "" || r.GetAction() == f.Action) &&
		(f.State == "" || apiview.EnumName(r.GetStatus()) == f.State) &&
		(f.Operator == "" || r.GetCreatedBy() == f.Operator || r.GetOnBehalfOf() == f.Operator) &&
		(f.Case == "" || r.GetCaseId() == f.Case)
}

// runStates are the run states a filter may name.
func runStates() []string {
	var out []string
	for i := 1; i < len(operatorv1.RunStatus_name); i++ {
		out = append(out, apiview.EnumName(operatorv1.RunStatus(i)))
	}
	return out
}

// counter is one per-state counter of a run page.
type counter struct {
	// Name is the state's name, ID its element id.
	Name, ID string
	N        int
}

// taskCounters counts tasks by state into the run page's counters:
// queued, dispatched, running, succeeded, failed (with refused and
// unreachable), timed out, offline, cancelled.
func taskCounters(statuses map[string]agentv1.TaskStatus) []counter {
	n := map[agentv1.TaskStatus]int{}
	for _, s := range statuses {
		n[s]++
	}
	return []counter{
		{"queued", "queued", n[agentv1.TaskStatus_TASK_STATUS_PENDING] + n[agentv1.TaskStatus_TASK_STATUS_UNSPECIFIED]},
		{"dispatched", "dispatched", n[agentv1.TaskStatus_TASK_STATUS_DISPATCHED]},
		{"running", "running", n[agentv1.TaskStatus_TASK_STATUS_RUNNING]},
		{"succeeded", "succeeded", n[agentv1.TaskStatus_TASK_STATUS_SUCCEEDED]},
		{"failed", "failed", n[agentv1.TaskStatus_TASK_STATUS_FAILED] + n[agentv1.TaskStatus_TASK_STATUS_REFUSED] + n[agentv1.TaskStatus_TASK_STATUS_UNREACHABLE]},
		{"timed out", "timed-out", n[agentv1.TaskStatus_TASK_STATUS_TIMED_OUT]},
		{"offline", "offline", n[agentv1.TaskStatus_TASK_STATUS_OFFLINE]},
		{"cancelled", "cancelled", n[agentv1.TaskStatus_TASK_STATUS_CANCELLED]},
	}
}

// statusesOf maps each task of a run to its state.
func statusesOf(run *operatorv1.Run) map[string]agentv1.TaskStatus {
	m := make(map[string]agentv1.TaskStatus, len(run.GetTasks()))
	for _, t := range run.GetTasks() {
		m[t.GetId()] = t.GetStatus()
	}
	return m
}

// liveState is what the run page's live part shows.
type liveState struct {
	RunID    string
	State    string
	Targets  int
	Counters []counter
	Ended    bool
}

func liveOf(run *operatorv1.Run, statuses map[string]agentv1.TaskStatus) liveState {
	st := run.GetStatus()
	return liveState{RunID: run.GetId(), State: apiview.EnumName(st), Targets: len(statuses), Counters: taskCounters(statuses),
		Ended: st != operatorv1.RunStatus_RUN_STATUS_RUNNING && st != operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL}
}

// targetsPage is one page of a run's per-target table.
func (c *Console) targetsPage(r *http.Request, run *operatorv1.Run) (listPage[*operatorv1.Task], string) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	keep := func(t *operatorv1.Task) bool {
		return q == "" || strings.Contains(strings.ToLower(t.GetHostname()), q) || strings.Contains(strings.ToLower(t.GetAgentId()), q) ||
			strings.Contains(strings.ToLower(t.GetError()), q) || strings.Contains(strings.ToLower(string(t.GetOutputJson())), q) ||
			strings.Contains(strings.ToLower(apiview.EnumName(t.GetStatus())), q) || strings.Contains(t.GetAccount(), q)
	}
	p := paginate(run.GetTasks(), (*operatorv1.Task).GetId, keep, r.URL.Query().Get("after"), c.cfg.PageSize)
	p.Filtered = q != ""
	p.link(r, "/runs/"+url.PathEscape(run.GetId()))
	return p, q
}

// runPage shows one run: its live counters, approvals and actions, and a
// page of its per-target table.
func (c *Console) runPage(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("GetRun"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: r.PathValue("id")})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	run := resp.GetRun()
	targets, q := c.targetsPage(r, run)
	c.render(w, r, http.StatusOK, "run", map[string]any{"Run": run, "Live": liveOf(run, statusesOf(run)), "Targets": targets, "Q": q,
		"Awaiting": run.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL,
		"Active":   run.GetStatus() == operatorv1.RunStatus_RUN_STATUS_RUNNING || run.GetStatus() == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL})
}

// runTargets is the per-target table alone (htmx swaps it in when the
// run ends, or on a search).
func (c *Console) runTargets(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("GetRun"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: r.PathValue("id")})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	targets, q := c.targetsPage(r, resp.GetRun())
	b, err := c.renderFragment("run", "targets", map[string]any{"Run": resp.GetRun(), "Targets": targets, "Q": q})
	if err != nil {
		c.cfg.Logger.Error("console: rendering targets", "error", err)
		http.Error(w, "internal error rendering the table", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

// sseFlushEvery is the shortest gap between two counter updates on one
// stream: a burst of results is sent as one update.
const sseFlushEvery = 50 * time.Millisecond

// sseKeepAlive is how often an idle stream gets a comment, so proxies and
// load balancers keep it open.
const sseKeepAlive = 15 * time.Second

// runEvents streams a run's live counters as Server-Sent Events. It
// watches the run through the operator service's WatchRun (the same watch
// limits and the same events as `firebreak run --wait`), and sends the
// counters fragment as event "counts", then "done" when the run ends.
func (c *Console) runEvents(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("WatchRun"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported by this connection", http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws := &watchStream{ctx: ctx, wake: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- c.cfg.Operator.WatchRun(&operatorv1.WatchRunRequest{RunId: r.PathValue("id")}, ws) }()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	send := func(event string, data []byte) error {
		var b bytes.Buffer
		fmt.Fprintf(&b, "event: %s\n", event)
		for _, line := range bytes.Split(data, []byte("\n")) {
			b.WriteString("data: ")
			b.Write(line)
			b.WriteString("\n")
		}
		b.WriteString("\n")
		if _, err := w.Write(b.Bytes()); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	flush := func() error {
		live, ok := ws.take()
		if !ok {
			return nil
		}
		b, err := c.renderFragment("run", "live", live)
		if err != nil {
			return err
		}
		return send("counts", b)
	}
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-done:
			_ = flush()
			msg := "the run has ended"
			if err != nil {
				msg = err.Error()
			}
			_ = send("done", []byte(html.EscapeString(msg)))
			return
		case <-keepAlive.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			flusher.Flush()
		case <-ws.wake:
			if wait := sseFlushEvery - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
			last = time.Now()
			if err := flush(); err != nil {
				c.cfg.Logger.Debug("console: run events stream ended", "error", err)
				return
			}
		}
	}
}

// watchStream receives WatchRun's events in process and keeps the latest
// live state for the SSE loop; the operator service sees an ordinary
// server stream.
type watchStream struct {
	ctx  context.Context
	wake chan struct{}

	mu       sync.Mutex
	run      *operatorv1.Run
	statuses map[string]agentv1.TaskStatus
	dirty    bool
}

// Send implements operatorv1.OperatorService_WatchRunServer.
func (s *watchStream) Send(m *operatorv1.WatchRunResponse) error {
	s.mu.Lock()
	switch ev := m.GetEvent().(type) {
	case *operatorv1.WatchRunResponse_Snapshot:
		s.run, s.statuses = ev.Snapshot, statusesOf(ev.Snapshot)
	case *operatorv1.WatchRunResponse_Done:
		s.run, s.statuses = ev.Done, statusesOf(ev.Done)
	case *operatorv1.WatchRunResponse_Run:
		if s.run != nil {
			tasks := s.run.GetTasks()
			s.run = ev.Run
			s.run.Tasks = tasks
		}
	case *operatorv1.WatchRunResponse_Task:
		if s.statuses != nil {
			s.statuses[ev.Task.GetId()] = ev.Task.GetStatus()
		}
	}
	s.dirty = s.run != nil
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return s.ctx.Err()
}

// take returns the live state when it changed since the last take.
func (s *watchStream) take() (liveState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return liveState{}, false
	}
	s.dirty = false
	return liveOf(s.run, s.statuses), true
}

func (s *watchStream) Context() context.Context     { return s.ctx }
func (s *watchStream) SetHeader(metadata.MD) error  { return nil }
func (s *watchStream) SendHeader(metadata.MD) error { return nil }
func (s *watchStream) SetTrailer(metadata.MD)       {}
func (s *watchStream) SendMsg(m any) error {
	if r, ok := m.(*operatorv1.WatchRunResponse); ok {
		return s.Send(r)
	}
	return fmt.Errorf("console: unexpected message %T on a run watch", m)
}
func (s *watchStream) RecvMsg(any) error { return fmt.Errorf("console: a run watch receives nothing") }

// decide approves, rejects or cancels a run through the operator service,
// then shows the run again; a refusal (the two-person rule, a role, a run
// that has ended) is shown with the service's reason. A request htmx sent
// from the run page (the cancel button) gets the decision's fragment
// instead, so the page, and its live counters, stay where they are.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, short string, call func(ctx context.Context, id, comment string) error) {
	ctx, err := c.authorize(r, method(short))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := call(ctx, id, strings.TrimSpace(r.PostFormValue("reason"))); err != nil {
		c.serviceError(w, r, err)
		return
	}
	if r.Header.Get("HX-Request") == "true" {
		// The header only picks the response's form: the request passed
		// the same session, CSRF and role checks as any other.
		b, err := c.renderFragment("run", "decided", map[string]any{"Method": short, "Operator": viewerFrom(r.Context()).op.Name})
		if err != nil {
			c.cfg.Logger.Error("console: rendering a decision", "error", err)
			http.Error(w, "internal error rendering the decision", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id), http.StatusSeeOther)
}

func (c *Console) approveRun(w http.ResponseWriter, r *http.Request) {
	c.decide(w, r, "ApproveRun", func(ctx context.Context, id, comment string) error {
		_, err := c.cfg.Operator.ApproveRun(ctx, &operatorv1.ApproveRunRequest{RunId: id, Comment: comment})
		return err
	})
}

func (c *Console) rejectRun(w http.ResponseWriter, r *http.Request) {
	c.decide(w, r, "RejectRun", func(ctx context.Context, id, comment string) error {
		_, err := c.cfg.Operator.RejectRun(ctx, &operatorv1.RejectRunRequest{RunId: id, Comment: comment})
		return err
	})
}

func (c *Console) cancelRun(w http.ResponseWriter, r *http.Request) {
	c.decide(w, r, "CancelRun", func(ctx context.Context, id, reason string) error {
		_, err := c.cfg.Operator.CancelRun(ctx, &operatorv1.CancelRunRequest{RunId: id, Reason: reason})
		return err
	})
}
