package awseradicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// jsonUnmarshalStrict decodes doc into v, refusing unknown fields.
func jsonUnmarshalStrict(doc string, v any) error {
	d := json.NewDecoder(strings.NewReader(doc))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// check refuses the whole task before any call when a step is not for the
// task's account or names a call the action does not make.
func check(steps []eradplan.Step, account string) error {
	if len(steps) == 0 {
		return sdk.Errorf(codes.InvalidArgument, "steps is empty: the account has no step in the plan")
	}
	for _, s := range steps {
		// Security-critical: a task acts only in the account its
		// credentials are for; a step for another account is refused
		// rather than skipped, since the plan was split wrongly.
		if s.Account != account {
			return sdk.Errorf(codes.PermissionDenied, "refusing to act: step %s is for account %s but the task's credentials are for account %s", s.ID, s.Account, account)
		}
		if !awsresponse.ValidRegion(s.Region) {
			return sdk.Errorf(codes.InvalidArgument, "step %s: region %q is not an AWS region name", s.ID, s.Region)
		}
		for _, c := range stepCalls(s) {
			// Security-critical: only the operations eradplan plans are
			// made, whatever the parameters name.
			if _, known := ops[c.Service+":"+c.Operation]; !known {
				return sdk.Errorf(codes.InvalidArgument, "step %s: aws-eradicate does not make %s:%s", s.ID, c.Service, c.Operation)
			}
			if c.EachOf != "" {
				if o, known := ops[c.EachOf]; !known || o.items == nil || c.Each == "" {
					return sdk.Errorf(codes.InvalidArgument, "step %s: %s:%s iterates over %q, which lists nothing aws-eradicate reads", s.ID, c.Service, c.Operation, c.EachOf)
				}
			}
		}
	}
	return nil
}

func stepCalls(s eradplan.Step) []eradplan.Call {
	out := append([]eradplan.Call{}, s.Before...)
	out = append(out, s.Calls...)
	return append(out, s.OnConfirm...)
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p Params
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, _, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(p.PlanID, "erp-") {
		return nil, sdk.Errorf(codes.InvalidArgument, "plan_id %q is not an eradication plan id (erp-…)", p.PlanID)
	}
	steps, err := planSteps(p.Steps)
	if err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "steps is not a JSON list of plan steps: %v", err)
	}
	if err := check(steps, account); err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	clients := map[string]*Clients{}
	clientsIn := func(region string) *Clients {
		if clients[region] == nil {
			clients[region] = a.cfg.NewClients(cfg, req.AWS, region)
		}
		return clients[region]
	}
	if p.Verify && p.ConfirmDeletes {
		return nil, sdk.Errorf(codes.InvalidArgument, "verify changes nothing: it cannot confirm deletions too")
	}
	res := &Result{Account: account, PlanID: p.PlanID, DryRun: p.DryRun, ConfirmDeletes: p.ConfirmDeletes, Verify: p.Verify, Outcomes: map[string]int{}, At: a.cfg.Clock().UTC()}
	if p.Verify {
		return a.verify(ctx, steps, clientsIn, journal, res, emit)
	}
	for i, s := range steps {
		_ = emit.Progress(i*100/len(steps), "step "+s.ID+": "+s.Action+" "+s.Resource)
		res.Steps = append(res.Steps, runStep(ctx, clientsIn(s.Region), s, p.DryRun))
	}
	// The quarantined principals are deleted after everything else, so
	// nothing the other steps still need is gone.
	for i, s := range steps {
		sr := &res.Steps[i]
		if len(s.OnConfirm) == 0 || sr.Outcome != OutcomeDone && sr.Outcome != OutcomeDryRun {
			continue
		}
		if !p.ConfirmDeletes {
			sr.Pending = "quarantined; deleting it waits for a run with confirm_deletes"
			if p.DryRun {
				sr.Calls = append(sr.Calls, listCalls(ctx, clientsIn(s.Region), s.OnConfirm)...)
			}
			continue
		}
		if p.DryRun {
			sr.Calls = append(sr.Calls, listCalls(ctx, clientsIn(s.Region), s.OnConfirm)...)
			continue
		}
		confirmDeletes(ctx, clientsIn(s.Region), s, sr)
	}
	denied := []string{}
	for _, sr := range res.Steps {
		res.Outcomes[sr.Outcome]++
		if sr.Outcome == OutcomeDenied || sr.Outcome == OutcomeFailed {
			denied = append(denied, sr.ID+" "+sr.Outcome+": "+sr.Error)
		}
	}
	res.APICalls = map[string]int{}
	for _, c := range journal.Calls() {
		res.APICalls[c.Operation] += c.Attempts
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if len(denied) > 0 {
		code := codes.Internal
		if res.Outcomes[OutcomeFailed] == 0 {
			code = codes.PermissionDenied
		}
		return res, sdk.Errorf(code, "%d of %d step(s) in account %s did not finish: %s", len(denied), len(res.Steps), account, strings.Join(denied, "; "))
	}
	_ = emit.Progress(100, fmt.Sprintf("%d step(s) in account %s: %v", len(res.Steps), account, res.Outcomes))
	return res, nil
}

// runStep records the step's before-state and, unless dry, makes its calls.
func runStep(ctx context.Context, c *Clients, s eradplan.Step, dry bool) StepResult {
	sr := StepResult{ID: s.ID, Action: s.Action, Kind: s.Kind, Resource: s.Resource, Region: s.Region, Calls: []CallResult{}}
	if s.Manual {
		sr.Outcome, sr.Error = OutcomeManual, s.Summary
		return sr
	}
	sr.Before = map[string]any{}
	for i, b := range s.Before {
		out, err := ops[b.Service+":"+b.Operation].call(ctx, c, b.Params)
		if err != nil {
			code := awsclient.ErrorCode(err)
			sr.Before[b.String()] = map[string]string{"error": code}
			// The first read names the step's resource: when it is gone,
			// the attacker (or someone) already removed it.
			if i == 0 && notFound(code) {
				sr.Outcome = OutcomeAlreadyGone
				return sr
			}
			continue
		}
		sr.Before[b.String()] = outputJSON(out)
	}
	if dry {
		sr.Outcome = OutcomeDryRun
		sr.Calls = listCalls(ctx, c, s.Calls)
		return sr
	}
	for i, call := range s.Calls {
		for _, cc := range expand(ctx, c, call) {
			cr := do(ctx, c, cc)
			sr.Calls = append(sr.Calls, cr)
			switch {
			case cr.Error == "":
				continue
			case notFound(cr.Error) && i == 0:
				// The resource went between the read and the change.
				sr.Outcome = OutcomeAlreadyGone
			case denied(cr.Error):
				sr.Outcome, sr.Error = OutcomeDenied, cr.Call+": "+cr.Error+": the responder role may not make this call"
			default:
				sr.Outcome, sr.Error = OutcomeFailed, cr.Call+": "+cr.Error+" "+cr.Message
			}
			return sr
		}
	}
	sr.Outcome = OutcomeDone
	return sr
}

// confirmDeletes makes a quarantine step's deletions. A subordinate that
// is already gone (no password, a key removed meanwhile) is not an error.
func confirmDeletes(ctx context.Context, c *Clients, s eradplan.Step, sr *StepResult) {
	for _, call := range s.OnConfirm {
		for _, cc := range expand(ctx, c, call) {
			cr := do(ctx, c, cc)
			sr.Calls = append(sr.Calls, cr)
			switch {
			case cr.Error == "" || notFound(cr.Error):
				continue
			case denied(cr.Error):
				sr.Outcome, sr.Error = OutcomeDenied, cr.Call+": "+cr.Error+": the responder role may not make this call"
			default:
				sr.Outcome, sr.Error = OutcomeFailed, cr.Call+": "+cr.Error+" "+cr.Message
			}
			return
		}
	}
	sr.Deleted = true
}

// expand turns an each-of call into one call per listed item; a list that
// cannot be read yields no call (the read's error shows in the result of
// the step's before-state).
func expand(ctx context.Context, c *Clients, call eradplan.Call) []eradplan.Call {
	if call.EachOf == "" {
		return []eradplan.Call{call}
	}
	src := ops[call.EachOf]
	out, err := src.call(ctx, c, call.Params)
	if err != nil {
		return nil
	}
	var calls []eradplan.Call
	for _, item := range src.items(out) {
		cc := call
		cc.Params = maps.Clone(call.Params)
		cc.Params[call.Each] = item
		cc.EachOf, cc.Each = "", ""
		calls = append(calls, cc)
	}
	return calls
}

// listCalls renders the calls a dry run would make, each-of items read.
func listCalls(ctx context.Context, c *Clients, calls []eradplan.Call) []CallResult {
	out := []CallResult{}
	for _, call := range calls {
		for _, cc := range expand(ctx, c, call) {
			out = append(out, CallResult{Call: cc.String()})
		}
	}
	return out
}

func do(ctx context.Context, c *Clients, call eradplan.Call) CallResult {
	cr := CallResult{Call: call.String()}
	if _, err := ops[call.Service+":"+call.Operation].call(ctx, c, call.Params); err != nil {
		cr.Error = awsclient.ErrorCode(err)
		if cr.Error == "" {
			cr.Error = "Error"
		}
		cr.Message = err.Error()
	}
	return cr
}

// notFound reports whether an AWS error code says the resource does not
// exist.
func notFound(code string) bool {
	return strings.HasPrefix(code, "NoSuch") || strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, "NotFoundException") ||
		code == "ResourceNotFoundException"
}

// denied reports whether an AWS error code is an authorisation refusal.
func denied(code string) bool {
	return strings.Contains(code, "AccessDenied") || code == "UnauthorizedOperation" || code == "AuthorizationError"
}

// outputJSON is an SDK output as the result records it: its members,
// without the SDK's request metadata.
func outputJSON(out any) any {
	doc, err := json.Marshal(out)
	if err != nil {
		return map[string]string{"error": "unrecordable: " + err.Error()}
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if d.Decode(&m) != nil {
		return json.RawMessage(doc)
	}
	delete(m, "ResultMetadata")
	return m
}

// verify reads every step's resource live and fails the task when one of
// the attacker's artifacts is still in effect.
func (a *Action) verify(ctx context.Context, steps []eradplan.Step, clientsIn func(string) *Clients, journal *awsresponse.Journal,
	res *Result, emit sdk.Emitter) (*Result, error) {
	var live []string
	for i, s := range steps {
		_ = emit.Progress(i*100/len(steps), "verify "+s.ID+": "+s.Kind+" "+s.Resource)
		sr := verifyStep(ctx, clientsIn(s.Region), s)
		res.Steps = append(res.Steps, sr)
		res.Outcomes[sr.Outcome]++
		if sr.Outcome == OutcomeLive {
			live = append(live, s.ID+" "+s.Kind+" "+s.Resource+": "+sr.Error)
		}
	}
	res.APICalls = map[string]int{}
	for _, c := range journal.Calls() {
		res.APICalls[c.Operation] += c.Attempts
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if len(live) > 0 {
		return res, sdk.Errorf(codes.FailedPrecondition, "%d of %d artifact(s) in account %s are still live: %s", len(live), len(steps), res.Account, strings.Join(live, "; "))
	}
	_ = emit.Progress(100, fmt.Sprintf("verified %d step(s) in account %s: %v", len(steps), res.Account, res.Outcomes))
	return res, nil
}
