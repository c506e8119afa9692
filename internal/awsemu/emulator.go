package awsemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Emulator is an in-process AWS endpoint. It serves the wire protocols of
// the services it emulates on one HTTP handler, authenticates every request
// with SigV4, authorises it with IAM policies and records it in its call log
// and in CloudTrail.
type Emulator struct {
	cfg      Config
	log      *slog.Logger
	ids      *idSource
	services map[string]*service

	// mu guards the account map, the organisation and the bucket index.
	// Account state has its own lock, never taken while mu is held.
	mu       sync.RWMutex
	accounts map[string]*account
	org      *organization
	buckets  map[string]*bucket

	// snapMu guards where snapshots live and whom they are shared with, so
	// an account can find snapshots another account shared with it.
	snapMu        sync.RWMutex
	snapshotIndex map[string]snapshotLocation
	// sharedWith maps an account id, or "all" for public, to the snapshot
	// ids it may use.
	sharedWith map[string]map[string]bool

	credMu sync.RWMutex
	creds  map[string]*credential

	trail *trailStore
	// delivery buffers the organisation trail's log files.
	delivery trailDelivery
	calls    *callLog
	faults   *faultSet

	// iid signs the instance identity documents IMDS serves.
	iid identityAuthority
}

// snapshotLocation says where a snapshot lives, so an account it is shared
// with can find it.
type snapshotLocation struct {
	account string
	region  string
}

// New returns an emulator, loaded with cfg.Seed when set.
func New(cfg Config) (*Emulator, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	e := &Emulator{
		cfg:           cfg,
		log:           cfg.Logger,
		ids:           newIDSource(cfg.IDSalt),
		accounts:      make(map[string]*account),
		buckets:       make(map[string]*bucket),
		snapshotIndex: make(map[string]snapshotLocation),
		sharedWith:    make(map[string]map[string]bool),
		creds:         make(map[string]*credential),
		trail:         newTrailStore(cfg.TrailEventLimit, cfg.LookupEventsPerSecond),
		calls:         newCallLog(cfg.CallLogLimit),
		faults:        newFaultSet(cfg.IDSalt),
	}
	e.services = e.buildServices()
	if cfg.Seed != nil {
		if err := e.Seed(cfg.Seed); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Emulator) now() time.Time { return e.cfg.Clock().UTC() }

func (e *Emulator) account(id string) *account {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.accounts[id]
}

// Start serves the emulator on addr (host:port; port 0 picks one) until
// stop is called. It returns the endpoint URL to give the SDK.
func (e *Emulator) Start(addr string) (endpoint string, stop func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("awsemu: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stop = func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		return err
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// call is one API request in flight.
type call struct {
	ctx    context.Context
	r      *http.Request
	svc    *service
	op     *operation
	id     string
	now    time.Time
	region string
	body   []byte
	// trailers are the headers an aws-chunked body carried after its data.
	trailers http.Header
	form     *params
	who      *principal
	acct     *account
	// path holds the labels a REST route matched.
	path map[string]string

	identity        []*policyDocument
	sessionPolicies []*policyDocument
	principalTags   map[string]string
	keys            map[string][]string
	policiesLoaded  bool

	// trail carries what the CloudTrail event records beyond the request.
	trail trailNotes
}

// trailNotes lets a handler shape the CloudTrail event of its call.
type trailNotes struct {
	resources []trailResource
	response  any
	// alsoIn lists further accounts that record the event (AssumeRole is
	// recorded in the role's account too).
	alsoIn []string
	skip   bool
}

// ServeHTTP answers one AWS API request, or an admin request under /_emu/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		e.serveAdmin(w, r)
		return
	}
	start := time.Now()
	c := &call{ctx: r.Context(), r: r, now: e.now(), id: e.ids.uuid("request")}

	body, err := io.ReadAll(io.LimitReader(r.Body, e.cfg.MaxBodyBytes+1))
	sig, sigErr := parseSignature(r)
	c.svc = e.serviceOf(r, sig, body)
	if err == nil && int64(len(body)) > e.cfg.MaxBodyBytes {
		err = errors.New("request body too large")
	}
	if err != nil {
		e.finish(w, c, start, nil, errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body could not be read: %v", err))
		return
	}
	c.body = body

	opName, path, opErr := c.svc.route(r, body)
	if opErr == nil {
		c.op = c.svc.ops[opName]
		c.path = path
		if c.op == nil {
			opErr = c.svc.errs.clone(c.svc.errs.unknownOperation)
			opErr.Message = c.svc.unknownOperationMessage(opName)
		}
	}

	switch {
	case errors.Is(sigErr, errNoSignature):
		e.finish(w, c, start, nil, c.svc.errs.clone(c.svc.errs.missingAuth))
		return
	case sigErr != nil:
		ae := c.svc.errs.clone(c.svc.errs.badSignature)
		ae.Message = sigErr.Error()
		e.finish(w, c, start, nil, ae)
		return
	}
	c.region = sig.Region
	who, payload, failure, detail := e.authenticate(r, sig, body, c.svc.name == "s3")
	if failure != authOK {
		e.finish(w, c, start, nil, c.svc.authError(failure, detail))
		return
	}
	c.who = who
	c.acct = e.account(who.account)
	c.body, c.trailers = payload.Body, payload.Trailers
	if opErr != nil {
		e.finish(w, c, start, nil, opErr)
		return
	}
	if c.acct == nil || c.acct.status == "SUSPENDED" {
		e.finish(w, c, start, nil, c.svc.authError(authUnknownKey, ""))
		return
	}
	if !c.svc.global && !c.acct.regionEnabled(c.region) {
		// Credentials are not valid in regions the account has not enabled.
		e.finish(w, c, start, nil, c.svc.authError(authUnknownKey, ""))
		return
	}
	if c.svc.protocol == protoQuery || c.svc.protocol == protoEC2 {
		c.form, err = parseForm(r, c.body)
		if err != nil {
			e.finish(w, c, start, nil, c.svc.errs.invalid("%v", err))
			return
		}
	}

	if ae := e.faults.apply(c.ctx, c.svc.name, c.op.name); ae != nil {
		if ae == errFaultCanceled {
			// The client gave up during the injected delay: nobody reads an
			// answer, but the call is logged.
			c.trail.skip = true
			e.record(c, ae, time.Since(start))
			return
		}
		e.finish(w, c, start, nil, c.svc.errs.clone(c.svc.errs.throttled))
		return
	}
	if c.op.action != "" {
		if ae := e.authorize(c, c.op.action, c.op.resourcesOf(e, c)...); ae != nil {
			e.finish(w, c, start, nil, ae)
			return
		}
	}
	if c.svc.protocol == protoEC2 && c.form.boolean("DryRun") {
		e.finish(w, c, start, nil, errorf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."))
		return
	}
	result, herr := c.op.handle(e, c)
	var ae *apiError
	if herr != nil && (!errors.As(herr, &ae) || ae == nil) {
		e.log.Error("awsemu: handler failed", "service", c.svc.name, "operation", c.op.name, "error", herr)
		ae = &apiError{Code: "InternalFailure", Status: http.StatusInternalServerError, Message: "The request processing has failed because of an unknown error.", Receiver: true}
	}
	e.finish(w, c, start, result, ae)
}

// finish writes the answer and records the call.
func (e *Emulator) finish(w http.ResponseWriter, c *call, start time.Time, result any, ae *apiError) {
	if wait := e.cfg.MinResponseTime - time.Since(start); wait > 0 && len(c.body) > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
	}
	// The call is logged before it is answered, so a client that has its
	// answer always finds the call in the log.
	e.record(c, ae, time.Since(start))
	if ae != nil {
		c.svc.writeError(w, c, ae)
	} else {
		c.svc.writeResult(w, c, result)
	}
}

// parseForm decodes a query-protocol request: the form body, or the query
// string of a GET.
func parseForm(r *http.Request, body []byte) (*params, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("the query string is malformed: %w", err)
	}
	if len(body) > 0 {
		bv, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("the request body is not a valid form: %w", err)
		}
		for k, v := range bv {
			values[k] = append(values[k], v...)
		}
	}
	return parseParams(values)
}

// clientIP returns the caller's address without port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serviceOf picks the service a request is for: the credential scope's
// service name when signed, or the protocol's own markers when not.
func (e *Emulator) serviceOf(r *http.Request, sig *signature, body []byte) *service {
	if sig != nil {
		if s, ok := e.services[sig.Service]; ok {
			return s
		}
		return e.unknownService(sig.Service)
	}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		prefix, _, _ := strings.Cut(t, ".")
		for _, s := range e.services {
			if s.target != "" && s.target == prefix {
				return s
			}
		}
	}
	version := r.URL.Query().Get("Version")
	if version == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			version = form.Get("Version")
		}
	}
	if version != "" {
		for _, s := range e.services {
			if s.version == version {
				return s
			}
		}
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/2015-03-31/") || strings.HasPrefix(r.URL.Path, "/2017-10-31/") || strings.HasPrefix(r.URL.Path, "/2019-09-30/"):
		return e.services["lambda"]
	case r.URL.Path == "/listRegions":
		return e.services["account"]
	}
	return e.services["s3"]
}
