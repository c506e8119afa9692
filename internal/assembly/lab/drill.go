package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Check is one containment check a drill makes after its playbook ends.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// StepResult is one playbook step in a drill's result.
type StepResult struct {
	ID         string `json:"id"`
	Phase      string `json:"phase"`
	Action     string `json:"action"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Targets    int    `json:"targets"`
}

// EvidenceRef is one evidence item a drill captured, re-verified.
type EvidenceRef struct {
	ID       string `json:"id"`
	SHA256   string `json:"sha256"`
	Size     uint64 `json:"size"`
	Verified bool   `json:"verified"`
}

// Result is a drill's outcome: what `lab demo --json` and `lab drill
// --json` print.
type Result struct {
	Scenario        string        `json:"scenario"`
	CaseID          string        `json:"case_id"`
	PlaybookRunID   string        `json:"playbook_run_id"`
	Playbook        string        `json:"playbook"`
	PlaybookStatus  string        `json:"playbook_status"`
	Contained       bool          `json:"contained"`
	TimeToDetectMS  int64         `json:"time_to_detect_ms"`
	TimeToContainMS int64         `json:"time_to_contain_ms"`
	Evidence        []EvidenceRef `json:"evidence"`
	Steps           []StepResult  `json:"steps"`
	StepsFailed     int           `json:"steps_failed"`
	Checks          []Check       `json:"checks"`
	SimulatedHosts  bool          `json:"simulated_hosts"`
	// Agents are the lab's agents and how each enrolled.
	Agents []AgentSummary `json:"agents"`
	Score  int            `json:"score"`
	WallMS int64          `json:"wall_ms"`
	// Eradication is set by the drills that score an eradication; its
	// fields join the result's.
	*Eradication
}

// Eradication scores a drill's eradication: what the attacker planted,
// what the case's scope found, and what is gone (or can do nothing) after
// the playbook.
type Eradication struct {
	Planted           int               `json:"planted"`
	Found             int               `json:"found"`
	Eradicated        int               `json:"eradicated"`
	TimeToEradicateMS int64             `json:"time_to_eradicate_ms"`
	Artifacts         []PlantedArtifact `json:"artifacts"`
}

// PlantedArtifact is one thing the attacker left, and how the drill found
// it afterwards.
type PlantedArtifact struct {
	Account    string `json:"account"`
	Kind       string `json:"kind"`
	ID         string `json:"id"`
	Found      bool   `json:"found"`
	Eradicated bool   `json:"eradicated"`
	// State says what the drill read of it in AWS afterwards.
	State string `json:"state"`
}

// Scenario is a game-day exercise: something bad happens in the emulated
// organisation, a finding arrives, a playbook answers, and checks prove
// whether the threat was really contained.
type Scenario struct {
	// Name is what `lab drill NAME` takes.
	Name string
	// Description says what happens.
	Description string
	// Playbook is the playbook the finding should start.
	Playbook string
	// setup acts out the attack and returns the finding event.
	setup func(ctx context.Context, e *Env) (*attack, error)
	// seed, when set, is the organisation the drill needs, unless the
	// options give one.
	seed func() *awsemu.Seed
	// approve has the lab's second operator approve the playbook's steps
	// that wait for an approval, through the approval RPC, as a responder
	// on call would.
	approve bool
}

// attack is what a scenario's setup leaves for its checks.
type attack struct {
	event  []byte
	verify func(ctx context.Context, e *Env, run *playbookrun.Run) []Check
	// eradication, when set, scores what the attacker left in the case.
	eradication func(ctx context.Context, e *Env, caseID string) *Eradication
}

// Scenarios are the drills, by name.
var Scenarios = map[string]*Scenario{}

func register(s *Scenario) { Scenarios[s.Name] = s }

// ScenarioNames lists the drills.
func ScenarioNames() []string {
	var out []string
	for n := range Scenarios {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Drill brings the lab up, runs one scenario to its end and tears the lab
// down. report, when not nil, receives the case report in Markdown.
func Drill(ctx context.Context, name string, o Options, report io.Writer) (*Result, error) {
	sc := Scenarios[name]
	if sc == nil {
		return nil, fmt.Errorf("unknown drill %q (drills: %s)", name, strings.Join(ScenarioNames(), ", "))
	}
	start := time.Now()
	if o.Seed == nil && sc.seed != nil {
		o.Seed = sc.seed()
	}
	e, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res, err := e.Run(ctx, sc, report)
	if err != nil {
		return nil, fmt.Errorf("%w (lab files: %s)", err, e.Dir)
	}
	res.WallMS = time.Since(start).Milliseconds()
	return res, nil
}

// Run runs one scenario in a running lab.
func (e *Env) Run(ctx context.Context, sc *Scenario, report io.Writer) (*Result, error) {
	e.say("drill %s: %s", sc.Name, sc.Description)
	at, err := sc.setup(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("setting up %s: %w", sc.Name, err)
	}
	outcomes, err := e.SendEvent(ctx, at.event)
	if err != nil {
		return nil, err
	}
	var o *intake.Outcome
	for _, x := range outcomes {
		if x.PlaybookRunID != "" {
			o = x
			break
		}
	}
	if o == nil {
		b, _ := json.Marshal(outcomes)
		return nil, fmt.Errorf("the finding started no playbook: %s", b)
	}
	e.say("finding %s → case %s, rule %s started playbook %s (run %s)", o.FindingID, o.CaseID, o.Rule, o.Playbook, o.PlaybookRunID)
	if sc.approve {
		actx, stop := context.WithCancel(ctx)
		defer stop()
		if err := e.approveSteps(actx, o.PlaybookRunID); err != nil {
			return nil, err
		}
	}
	run, err := e.follow(ctx, o.PlaybookRunID)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: sc.Name, CaseID: o.CaseID, PlaybookRunID: run.ID, Playbook: run.Playbook, PlaybookStatus: string(run.Status),
		SimulatedHosts: e.Simulated(), Evidence: []EvidenceRef{}}
	if res.Agents, err = e.Agents(ctx); err != nil {
		return nil, err
	}
	for _, st := range run.Steps {
		sr := StepResult{ID: st.ID, Phase: string(st.Phase), Action: st.Action, Status: string(st.Status), Error: st.Error, Targets: len(st.Targets)}
		if !st.StartedAt.IsZero() && !st.FinishedAt.IsZero() {
			sr.DurationMS = st.FinishedAt.Sub(st.StartedAt).Milliseconds()
		}
		if st.Status == playbookrun.StepFailed {
			res.StepsFailed++
		}
		res.Steps = append(res.Steps, sr)
		for _, id := range st.EvidenceIDs() {
			v, err := e.Controller.Evidence.Verify(ctx, id, "lab")
			ref := EvidenceRef{ID: id}
			if err == nil {
				ref.SHA256, ref.Size = v.GetSha256(), v.GetSize()
				ref.Verified = v.GetVerdict() == operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK
			}
			res.Evidence = append(res.Evidence, ref)
		}
	}
	c, err := e.Controller.Cases.Get(ctx, o.CaseID)
	if err != nil {
		return nil, err
	}
	if d, ok := c.Timings.TimeToDetect(); ok {
		res.TimeToDetectMS = d.Milliseconds()
	}
	if d, ok := c.Timings.TimeToContain(); ok {
		res.TimeToContainMS = d.Milliseconds()
	}
	res.Checks = at.verify(ctx, e, run)
	if at.eradication != nil {
		res.Eradication = at.eradication(ctx, e, o.CaseID)
		res.Checks = append(res.Checks, res.Eradication.checks()...)
	}
	res.Contained = c.Contained()
	for _, ch := range res.Checks {
		res.Contained = res.Contained && ch.OK
		mark := "ok  "
		if !ch.OK {
			mark = "FAIL"
		}
		e.say("check %s %s: %s", mark, ch.Name, ch.Detail)
	}
	res.Score = score(res)
	if report != nil {
		rep, err := e.Controller.Cases.Report(ctx, o.CaseID)
		if err != nil {
			return nil, err
		}
		if err := rep.Render(report, cases.FormatMarkdown); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// score grades a drill out of 100: containment is most of it; time,
// evidence and clean steps the rest.
func score(r *Result) int {
	if !r.Contained {
		return 0
	}
	s := 60
	switch {
	case r.TimeToContainMS <= 30_000:
		s += 20
	case r.TimeToContainMS <= 120_000:
		s += 10
	}
	verified := 0
	for _, ev := range r.Evidence {
		if ev.Verified {
			verified++
		}
	}
	if verified > 0 {
		s += 10
	}
	s += max(0, 10-5*r.StepsFailed)
	return s
}

// SendEvent posts an EventBridge event to the controller's HTTPS events
// endpoint with the shared secret, the way an EventBridge API destination
// does, and with ctx's W3C trace context, which the finding continues.
func (e *Env) SendEvent(ctx context.Context, event []byte) ([]*intake.Outcome, error) {
	caPEM, err := os.ReadFile(filepath.Join(e.Dir, "controller", pki.CACertFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: pki.ServerName, MinVersion: tls.VersionTLS13}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.EventsURL, bytes.NewReader(event))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(intake.SecretHeader, e.EventsSecret)
	// The finding continues the drill's trace, so the drill, the finding,
	// the playbook and the agents' work are one trace.
	if tp, ts := telemetry.InjectTraceContext(ctx); tp != "" {
		req.Header.Set("traceparent", tp)
		if ts != "" {
			req.Header.Set("tracestate", ts)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting the finding: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("the events endpoint answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var out struct {
		Outcomes []*intake.Outcome `json:"outcomes"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("reading the events endpoint's answer %q: %w", body, err)
	}
	return out.Outcomes, nil
}

// follow narrates a playbook run's steps until it ends.
func (e *Env) follow(ctx context.Context, id string) (*playbookrun.Run, error) {
	snap, sub, err := e.Controller.Playbooks.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	if sub == nil {
		return snap, nil
	}
	defer e.Controller.Playbooks.Unwatch(sub)
	last := map[string]playbookrun.StepStatus{}
	step := func(st *playbookrun.Step) {
		if last[st.ID] == st.Status {
			return
		}
		last[st.ID] = st.Status
		line := fmt.Sprintf("step %-14s %-13s %-20s %s", st.ID, "("+string(st.Phase)+")", st.Action, st.Status)
		if st.Error != "" {
			line += ": " + clip(st.Error, 160)
		}
		e.say("%s", line)
	}
	for ev := range sub.C {
		switch ev.Kind {
		case playbookrun.EventStep:
			step(ev.Step)
		case playbookrun.EventSnapshot:
			// The watch fell behind: the snapshot holds what it missed.
			for _, st := range ev.Run.Steps {
				step(st)
			}
		case playbookrun.EventDone:
			e.say("playbook %s %s", ev.Run.Playbook, ev.Run.Status)
			return ev.Run, nil
		}
	}
	return nil, errors.New("the playbook watch ended before the run")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
