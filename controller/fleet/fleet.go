// Package fleet is the controller's side of the agent protocol: enrollment,
// certificate renewal and the one long-lived Connect stream per agent, over
// which the dispatcher pushes tasks and the agent reports back.
package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/actionschema"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Dispatcher is what the fleet tells about agents and their reports.
type Dispatcher interface {
	AgentConnected(agentID string)
	AgentDisconnected(agentID string)
	TaskEvent(agentID string, ev *agentv1.TaskEvent)
	TaskResult(agentID string, res *agentv1.TaskResult)
}

// FactsNotifier is told when a connected agent's stored record changed
// while its stream stayed open (a heartbeat changed its reported state),
// so the other controllers of a cluster re-read it. A Dispatcher that is
// one (the cluster's router) is told.
type FactsNotifier interface {
	AgentFactsChanged(agentID string)
}

// EvidenceReceiver stores the evidence agents upload. The fleet has already
// authenticated the agent when it calls Receive.
type EvidenceReceiver interface {
	Receive(agent *store.Agent, id pki.Identity, stream agentv1.AgentService_UploadEvidenceServer) error
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the fleet's dependencies.
type Config struct {
	Store      store.Store
	CA         *pki.CA
	Signer     *tasksign.Signer
	Dispatcher Dispatcher
	Audit      AuditFunc
	Logger     *slog.Logger
	Clock      func() time.Time
	// CertTTL is the lifetime of agent certificates (default 24h); agents
	// renew at half of it.
	CertTTL time.Duration
	// Heartbeat is how often agents report (default 30s).
	Heartbeat time.Duration
	// Evidence receives uploads; nil refuses them.
	Evidence EvidenceReceiver
	// Actions is the trusted action catalogue that the actions reported in
	// each hello are compared with (see actions.go); nil compares nothing.
	Actions *actioncatalog.Catalogue
	// GoneAfter is how long an agent must be unseen before an admin may
	// forget it without revoking it first (default 7 days).
	GoneAfter time.Duration
	// EnrollLimits rate-limit enrollment and aggregate its refusals in
	// the audit log (see enrollguard.go); zero fields take the defaults.
	EnrollLimits EnrollLimits
	// Attest verifies AWS attestation proofs (attested.go); nil refuses
	// them, and only join tokens enrol.
	Attest *attest.Verifier
	// MaxHandshakes bounds the enrollments and Connect handshakes served
	// at once (admission.go; 0: DefaultMaxHandshakes). Beyond it, and as
	// many waiting, they are refused with RESOURCE_EXHAUSTED and a
	// retry-after.
	MaxHandshakes int
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "CA": c.CA != nil, "Signer": c.Signer != nil, "Dispatcher": c.Dispatcher != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("fleet: missing %s", strings.Join(missing, ", "))
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.CertTTL == 0 {
		c.CertTTL = 24 * time.Hour
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 30 * time.Second
	}
	if c.GoneAfter == 0 {
		c.GoneAfter = 7 * 24 * time.Hour
	}
	return nil
}

// Service implements agentv1.AgentServiceServer and holds the sessions of
// connected agents.
type Service struct {
	agentv1.UnimplementedAgentServiceServer
	cfg   Config
	guard *EnrollGuard
	// admission bounds the handshakes served at once.
	admission *Admission

	mu       sync.RWMutex
	sessions map[string]*session
	seen     map[string]time.Time
	// renewedOn is, per agent, the connection that made its latest
	// renewal: that connection still presents the superseded certificate
	// in its TLS session, and only it may go on using it.
	renewedOn map[string]string

	// known mirrors the agents table, so planning a run over thousands
	// of agents does not decode them all from the store each time.
	known     map[string]*store.Agent
	knownErr  error
	knownOnce sync.Once
}

type session struct {
	agentID string
	out     chan *agentv1.ConnectResponse
	cancel  context.CancelCauseFunc
	facts   *agentv1.AgentFacts
	// conn is the connection the stream runs on (auth.ConnectionKey).
	conn string
}

// New returns the fleet service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	guard, err := NewEnrollGuard(EnrollGuardConfig{Limits: cfg.EnrollLimits, Audit: cfg.Audit, Logger: cfg.Logger, Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	admission, err := NewAdmission(cfg.MaxHandshakes, cfg.Clock)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, guard: guard, admission: admission, sessions: map[string]*session{}, seen: map[string]time.Time{},
		renewedOn: map[string]string{}}, nil
}

// Admission returns the controller's handshake admission.
func (s *Service) Admission() *Admission { return s.admission }

// Agents returns every enrolled agent, ordered by hostname then id, with
// the last-seen time of this controller's own bookkeeping. The records are
// shared: callers must not modify them.
func (s *Service) Agents(ctx context.Context) ([]*store.Agent, error) {
	s.knownOnce.Do(func() {
		all, err := s.cfg.Store.ListAgents(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.knownErr = err
			return
		}
		if s.known == nil {
			s.known = map[string]*store.Agent{}
		}
		for _, a := range all {
			if _, newer := s.known[a.ID]; !newer {
				s.known[a.ID] = a
			}
		}
	})
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.knownErr != nil {
		return nil, s.knownErr
	}
	out := make([]*store.Agent, 0, len(s.known))
	for _, a := range s.known {
		if t, ok := s.seen[a.ID]; ok && t.After(a.LastSeen) {
			c := *a
			c.LastSeen = t
			a = &c
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Refresh re-reads agents from the store into the mirror: agents that
// enrolled or said hello to another controller of the cluster since this
// one read them. With more than a few hundred it reads them all at once.
func (s *Service) Refresh(ctx context.Context, agentIDs []string) {
	var got []*store.Agent
	if len(agentIDs) > 256 {
		all, err := s.cfg.Store.ListAgents(ctx)
		if err != nil {
			s.cfg.Logger.Warn("re-reading agents from the store failed", "agents", len(agentIDs), "error", err)
			return
		}
		got = all
	} else {
		for _, id := range agentIDs {
			a, err := s.cfg.Store.GetAgent(ctx, id)
			if err != nil {
				s.cfg.Logger.Warn("re-reading an agent from the store failed", "agent", id, "error", err)
				continue
			}
			got = append(got, a)
		}
	}
	var revoked, terminated []string
	s.mu.Lock()
	if s.known == nil {
		s.known = map[string]*store.Agent{}
	}
	for _, a := range got {
		s.known[a.ID] = a
		switch {
		case a.Revoked && s.sessions[a.ID] != nil:
			revoked = append(revoked, a.ID)
		case a.Terminated() && s.sessions[a.ID] != nil:
			terminated = append(terminated, a.ID)
		}
	}
	s.mu.Unlock()
	// Security-critical: an agent revoked (or found terminated) through
	// another controller of the cluster loses the stream it holds here as
	// soon as this one learns of it; the store says so, not the message
	// that woke us.
	for _, id := range revoked {
		s.Disconnect(id, errRevoked)
		s.cfg.Logger.Info("closed the stream of an agent revoked through another controller", "agent", id)
	}
	for _, id := range terminated {
		s.Disconnect(id, errTerminated)
		s.cfg.Logger.Info("closed the stream of an agent whose instance another controller found terminated", "agent", id)
	}
}

// samePlugins reports whether two plugin lists are equal, in order.
func samePlugins(a, b []*agentv1.PluginInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// putAgent stores an agent and updates the mirror.
func (s *Service) putAgent(ctx context.Context, a *store.Agent) error {
	if err := s.cfg.Store.PutAgent(ctx, a); err != nil {
		return err
	}
	s.remember(a)
	return nil
}

// Push implements dispatch.Pusher: it never blocks the dispatcher. A full
// queue means the agent is not reading; the task waits for a reconnect.
func (s *Service) Push(agentID string, msg *agentv1.ConnectResponse) bool {
	s.mu.RLock()
	sess := s.sessions[agentID]
	s.mu.RUnlock()
	if sess == nil {
		return false
	}
	select {
	case sess.out <- msg:
		return true
	default:
		s.cfg.Logger.Warn("agent stream queue is full; dropping the connection so the agent reconnects", "agent", agentID)
		sess.cancel(nil)
		return false
	}
}

// CloseSessions ends every agent's stream (the controller is stopping).
func (s *Service) CloseSessions() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sess := range s.sessions {
		sess.cancel(nil)
	}
}

// Connected reports whether an agent holds a stream now.
func (s *Service) Connected(agentID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[agentID] != nil
}

// ConnectedCount returns the number of connected agents.
func (s *Service) ConnectedCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}

// Facts returns the facts a connected agent reported in its hello.
func (s *Service) Facts(agentID string) *agentv1.AgentFacts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sess := s.sessions[agentID]; sess != nil {
		return sess.facts
	}
	return nil
}

// RunSeenWriter stores last-seen times every interval until ctx ends. It is
// bookkeeping of what agents already sent, not a poll of the agents.
func (s *Service) RunSeenWriter(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushSeen(context.Background())
			return nil
		case <-t.C:
			s.flushSeen(ctx)
		}
	}
}

func (s *Service) flushSeen(ctx context.Context) {
	s.mu.Lock()
	seen := s.seen
	s.seen = map[string]time.Time{}
	s.mu.Unlock()
	if err := s.cfg.Store.TouchAgents(ctx, seen); err != nil {
		s.cfg.Logger.Warn("recording last-seen times failed", "error", err)
	}
}

func (s *Service) touch(agentID string) {
	now := s.cfg.Clock()
	s.mu.Lock()
	s.seen[agentID] = now
	s.mu.Unlock()
}

// Input limits for what agents report about themselves.
var (
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@+*=-]{0,256}$`)
	hostnameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,253}$`)
)

const maxLabels = 64

// CheckLabels validates labels from a token, an agent or an operator.
func CheckLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels; the limit is %d", len(labels), maxLabels)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return fmt.Errorf("label key %q is not valid (letters, digits, _ . : / -, up to 128)", k)
		}
		if !labelValueRE.MatchString(v) {
			return fmt.Errorf("label %s has an invalid value %q", k, v)
		}
	}
	return nil
}

func checkFacts(f *agentv1.AgentFacts) error {
	if f == nil {
		return errors.New("the agent sent no facts")
	}
	if !hostnameRE.MatchString(f.GetHostname()) {
		return fmt.Errorf("hostname %q is not valid", f.GetHostname())
	}
	if err := CheckLabels(f.GetLabels()); err != nil {
		return err
	}
	f.Degraded = cleanDegraded(f.GetDegraded())
	for name, v := range map[string]string{"agent_version": f.GetAgentVersion(), "os": f.GetOs(), "arch": f.GetArch(), "boot_id": f.GetBootId(),
		"instance_id": f.GetInstanceId(), "account": f.GetAccount(), "region": f.GetRegion()} {
		if len(v) > 128 || strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("fact %s is not valid", name)
		}
	}
	return nil
}

// maxDegraded bounds the reason an agent gives for being degraded.
const maxDegraded = 1024

// cleanDegraded keeps an agent's degraded reason displayable: one line,
// no control characters, at most maxDegraded bytes. Being the agent's own
// word, it is never refused: it only ever makes the agent a target for
// less.
func cleanDegraded(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxDegraded {
		s = strings.ToValidUTF8(s[:maxDegraded], "")
	}
	return s
}

// HashToken is how join tokens are stored: never in the clear.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// RunEnrollGuard writes the enrollment refusals counted in each window
// until ctx ends, then those still pending.
func (s *Service) RunEnrollGuard(ctx context.Context) error { return s.guard.Run(ctx) }

// Enroll implements agentv1.AgentServiceServer.
func (s *Service) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	src := SourceOf(ctx)
	// Security-critical: anyone may call Enroll, so the rate limits are
	// checked before any token is hashed or the store is touched.
	if wait, ok := s.guard.Admit(ctx, src); !ok {
		secs := int64(math.Ceil(wait.Seconds()))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.FormatInt(secs, 10)))
		return nil, status.Errorf(codes.ResourceExhausted, "enrollment refused: too many enrollment attempts from %s; retry after %ds", src, secs)
	}
	if err := checkFacts(req.GetFacts()); err != nil {
		s.guard.Refused(ctx, src, src, "invalid facts")
		return nil, status.Errorf(codes.InvalidArgument, "enrollment refused: %v", err)
	}
	// A herd of enrollments beyond what the controller works on at once
	// is shed before any token is spent, so the agent may try again.
	release, err := s.admitHandshake(ctx, "enrollment")
	if err != nil {
		return nil, err
	}
	defer release()
	// An agent that gave up while its enrollment waited for a slot would
	// never receive the certificate: no token use is spent on it.
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if req.GetAwsIid() != nil || req.GetAwsSts() != nil {
		return s.enrollAttested(ctx, src, req)
	}
	if len(req.GetJoinToken()) == 0 || len(req.GetJoinToken()) > 256 {
		s.guard.Refused(ctx, src, req.GetFacts().GetHostname(), "no join token")
		return nil, status.Error(codes.Unauthenticated, "enrollment refused: no join token given (use --join-token)")
	}
	// Security-critical: an instance whose agent was revoked stays out
	// until an admin forgets that agent; a new enrollment would otherwise
	// undo the revocation.
	if old, err := s.revokedOnInstance(ctx, req.GetFacts().GetAccount(), req.GetFacts().GetInstanceId()); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "enrollment: looking up the instance's agents")
	} else if old != nil {
		// Audited through the guard, so a flood of such attempts is one
		// record per window; the reason names the revoked agent.
		s.guard.Refused(ctx, src, req.GetFacts().GetHostname(), "instance of revoked agent "+old.ID)
		return nil, status.Errorf(codes.PermissionDenied, "enrollment refused: instance %s belongs to a revoked agent; an admin must forget that agent first "+
			"(`firebreak agents list --revoked`, then `firebreak agents forget ID`)", req.GetFacts().GetInstanceId())
	}
	now := s.cfg.Clock()
	facts := req.GetFacts()
	if facts == nil {
		facts = &agentv1.AgentFacts{}
	}
	var cert *x509.Certificate
	// Security-critical: the token is checked, one use consumed and the
	// agent stored in one transaction, so a counted token cannot be
	// over-used by racing agents, and an enrollment refused here (another
	// role, a bad certificate request) or not stored spends no use.
	tok, a, err := s.cfg.Store.EnrollWithToken(ctx, HashToken(req.GetJoinToken()), now, func(tok *store.JoinToken) (*store.Agent, error) {
		role := apiview.AgentRoleName(req.GetRole())
		if req.GetRole() == agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED {
			role = tok.Role
		}
		if role != tok.Role {
			return nil, &enrollRefusal{reason: "role mismatch", err: status.Errorf(codes.PermissionDenied, "enrollment refused: the token enrolls %s agents, not %s", tok.Role, role)}
		}
		id := ids.New("agt")
		c, err := s.cfg.CA.IssueClient(req.GetCsrDer(), pki.Identity{Kind: pki.KindAgent, Name: id, Role: role,
			Account: facts.GetAccount(), Region: facts.GetRegion(), InstanceID: facts.GetInstanceId()}, s.cfg.CertTTL)
		if err != nil {
			return nil, &enrollRefusal{reason: "invalid certificate request", err: status.Errorf(codes.InvalidArgument, "enrollment refused: %v", err)}
		}
		cert = c
		a := &store.Agent{ID: id, Role: role, Hostname: facts.GetHostname(), Facts: proto.Clone(facts).(*agentv1.AgentFacts), EnrolledAt: now, LastSeen: now,
			CertSerial: c.SerialNumber.Text(16), CertNotAfter: c.NotAfter, TokenLabels: tok.Labels}
		a.Facts.Labels = mergeLabels(facts.GetLabels(), tok.Labels)
		return a, nil
	})
	var refusal *enrollRefusal
	switch {
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrTokenExpired), errors.Is(err, store.ErrTokenExhausted), errors.Is(err, store.ErrTokenRevoked):
		s.guard.Refused(ctx, src, facts.GetHostname(), err.Error())
		return nil, status.Errorf(codes.Unauthenticated, "enrollment refused: %v", err)
	case errors.As(err, &refusal):
		s.guard.Refused(ctx, src, facts.GetHostname(), refusal.reason)
		return nil, refusal.err
	case err != nil:
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "enrollment: storing the agent")
	}
	s.remember(a)
	id, role := a.ID, a.Role
	s.cfg.Audit(ctx, "agent:"+id, "agent.enroll", id, map[string]any{"hostname": facts.GetHostname(), "role": role,
		"instance_id": facts.GetInstanceId(), "cert_serial": a.CertSerial, "token_uses_left": tok.UsesLeft, "source": src})
	s.cfg.Logger.Info("agent enrolled", "agent", id, "hostname", facts.GetHostname(), "role", role)
	return &agentv1.EnrollResponse{AgentId: id, CertificateDer: cert.Raw, CaDer: s.cfg.CA.Cert.Raw,
		TaskSigningKey: s.cfg.Signer.PublicKey(), Labels: tok.Labels}, nil
}

// enrollRefusal is a token enrollment refused after the token was read:
// the transaction is rolled back, so no use is spent.
type enrollRefusal struct {
	reason string // for the enrollment guard's audit
	err    error  // the answer
}

func (e *enrollRefusal) Error() string { return e.err.Error() }

// mergeLabels lets token labels, which an admin set, override the ones an
// agent reports about itself.
func mergeLabels(agent, token map[string]string) map[string]string {
	out := maps.Clone(agent)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, token)
	return out
}

func (s *Service) agentFrom(ctx context.Context) (*store.Agent, pki.Identity, error) {
	id, ok := auth.IdentityFrom(ctx)
	if !ok || id.Kind != pki.KindAgent {
		return nil, id, status.Error(codes.Unauthenticated, "an agent certificate is required")
	}
	a, err := s.cfg.Store.GetAgent(ctx, id.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, id, status.Errorf(codes.PermissionDenied, "agent %s is not enrolled with this controller: enroll again with a join token", id.Name)
	}
	if err != nil {
		return nil, id, rpcerr.Error(ctx, s.cfg.Logger, err, "looking up the agent")
	}
	// Security-critical: a revoked agent's certificate stops working at once.
	if a.Revoked {
		s.cfg.Audit(ctx, "agent:"+id.Name, "agent.refused", id.Name, map[string]string{"reason": "revoked", "cert_serial": id.Serial})
		return nil, id, status.Errorf(codes.PermissionDenied, "agent %s has been revoked", id.Name)
	}
	// Security-critical: AWS reports the agent's instance terminated, so
	// whoever presents its certificate is not that instance.
	if a.Terminated() {
		s.cfg.Audit(ctx, "agent:"+id.Name, "agent.refused", id.Name, map[string]string{"reason": "instance terminated", "cert_serial": id.Serial,
			"instance_id": a.Facts.GetInstanceId()})
		return nil, id, status.Errorf(codes.PermissionDenied, "agent %s is on instance %s, which AWS reports terminated (at %s)", id.Name,
			a.Facts.GetInstanceId(), a.TerminatedAt.UTC().Format(time.RFC3339))
	}
	// Security-critical: only the current certificate works. A superseded
	// one (its holder renewed, or someone holding a copy of the key did)
	// is refused, except on the very connection that renewed it, whose TLS
	// session still carries the old certificate until it reconnects.
	if id.Serial != a.CertSerial {
		s.mu.RLock()
		renewer := s.renewedOn[a.ID]
		s.mu.RUnlock()
		if conn := auth.ConnectionKey(ctx); conn == "" || conn != renewer {
			s.cfg.Audit(ctx, "agent:"+id.Name, "agent.refused", id.Name, map[string]string{"reason": "superseded certificate",
				"cert_serial": id.Serial, "current_serial": a.CertSerial})
			return nil, id, status.Errorf(codes.PermissionDenied, "agent %s presented a superseded certificate (serial %s): only the current one may renew or connect", id.Name, id.Serial)
		}
	}
	return a, id, nil
}

// Renew implements agentv1.AgentServiceServer.
func (s *Service) Renew(ctx context.Context, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	a, id, err := s.agentFrom(ctx)
	if err != nil {
		return nil, err
	}
	cert, err := s.cfg.CA.IssueClient(req.GetCsrDer(), pki.Identity{Kind: pki.KindAgent, Name: a.ID, Role: a.Role,
		Account: id.Account, Region: id.Region, InstanceID: id.InstanceID}, s.cfg.CertTTL)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "renewal refused: %v", err)
	}
	old := a.CertSerial
	a.CertSerial, a.CertNotAfter = cert.SerialNumber.Text(16), cert.NotAfter
	if err := s.putAgent(ctx, a); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "renewal")
	}
	conn := auth.ConnectionKey(ctx)
	s.mu.Lock()
	s.renewedOn[a.ID] = conn
	sess := s.sessions[a.ID]
	s.mu.Unlock()
	detail := map[string]any{"old_serial": old, "cert_serial": a.CertSerial, "not_after": cert.NotAfter}
	// Security-critical: a stream on the superseded certificate that is not
	// on the renewing connection belongs to another holder of the key, or
	// to the agent whose key was copied; either way it ends now.
	if sess != nil && (conn == "" || sess.conn != conn) {
		sess.cancel(errSuperseded)
		detail["closed_stream"] = true
	}
	s.cfg.Audit(ctx, "agent:"+a.ID, "agent.renew", a.ID, detail)
	s.cfg.Logger.Info("agent certificate renewed", "agent", a.ID, "not_after", cert.NotAfter)
	return &agentv1.RenewResponse{CertificateDer: cert.Raw}, nil
}

// Connect implements agentv1.AgentServiceServer.
func (s *Service) Connect(stream agentv1.AgentService_ConnectServer) error {
	ctx := stream.Context()
	a, id, err := s.agentFrom(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	// The controller's part of the handshake (the hello checked and
	// stored, the session registered, the welcome sent) holds an
	// admission slot. Waiting for the agent's hello does not, so an agent
	// that never sends one holds nothing.
	release, err := s.admitHandshake(ctx, "connection")
	if err != nil {
		return err
	}
	var releaseOnce sync.Once
	admitted := func() { releaseOnce.Do(release) }
	defer admitted()
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message on Connect must be hello")
	}
	if err := checkFacts(hello.GetFacts()); err != nil {
		return status.Errorf(codes.InvalidArgument, "hello refused: %v", err)
	}
	for _, p := range hello.GetPlugins() {
		if err := actionschema.CheckDescription(p.GetDescription()); err != nil {
			return status.Errorf(codes.InvalidArgument, "hello refused: %v", err)
		}
	}
	if len(hello.GetPlugins()) > 256 {
		return status.Error(codes.InvalidArgument, "hello refused: too many plugins")
	}
	now := s.cfg.Clock()
	facts := s.trustedFacts(ctx, a, id, hello.GetFacts())
	unchanged := a.Hostname == facts.GetHostname() && proto.Equal(a.Facts, facts) && samePlugins(a.Plugins, hello.GetPlugins())
	a.Facts, a.Plugins, a.Hostname, a.LastSeen = facts, hello.GetPlugins(), facts.GetHostname(), now
	if unchanged {
		// The store already holds what this hello says: the reconnect
		// writes nothing now, and its last-seen time goes with the
		// others (RunSeenWriter), so a herd of agents coming back costs
		// the store one read each, not a write each.
		s.remember(a)
		s.touch(a.ID)
	} else if err := s.putAgent(ctx, a); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "recording the agent")
	}
	s.reviewActions(ctx, a)

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The queue holds what the dispatcher pushes while the sender writes;
	// a few hundred messages cover a burst, and each slot costs memory on
	// every one of thousands of idle sessions.
	sess := &session{agentID: a.ID, out: make(chan *agentv1.ConnectResponse, 256), cancel: cancel, facts: facts, conn: auth.ConnectionKey(ctx)}
	s.mu.Lock()
	if old := s.sessions[a.ID]; old != nil {
		// A newer stream from the same agent replaces the old one.
		old.cancel(nil)
	}
	s.sessions[a.ID] = sess
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.sessions[a.ID] == sess {
			delete(s.sessions, a.ID)
			s.mu.Unlock()
			s.cfg.Dispatcher.AgentDisconnected(a.ID)
		} else {
			s.mu.Unlock()
		}
		s.touch(a.ID)
		s.cfg.Logger.Info("agent disconnected", "agent", a.ID, "hostname", a.Hostname)
	}()

	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Welcome{Welcome: &agentv1.Welcome{
		AgentId: a.ID, ServerTime: timestamppb.New(now), HeartbeatSeconds: uint32(s.cfg.Heartbeat / time.Second)}}}); err != nil {
		return err
	}
	admitted()
	s.cfg.Logger.Info("agent connected", "agent", a.ID, "hostname", a.Hostname, "plugins", len(a.Plugins), "isolated", facts.GetIsolated())
	s.cfg.Dispatcher.AgentConnected(a.ID)

	// Two goroutines per stream, not three: this one sends, one more
	// receives. Each goroutine costs every one of thousands of idle
	// sessions its stack.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				cancel(&recvError{err: err})
				return
			}
			s.handle(a.ID, m)
		}
	}()
	for {
		select {
		case <-sctx.Done():
			cause := context.Cause(sctx)
			var re *recvError
			switch {
			case errors.As(cause, &re):
				if status.Code(re.err) == codes.Canceled {
					return nil
				}
				return re.err
			case errors.Is(cause, errRevoked) || errors.Is(cause, errSuperseded) || errors.Is(cause, errTerminated):
				return status.Error(codes.PermissionDenied, cause.Error())
			}
			return status.Error(codes.Aborted, "the stream was replaced or closed by the controller")
		case m := <-sess.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// recvError is why a stream ended when its receiving side failed (the
// agent closed it, or the connection broke).
type recvError struct{ err error }

func (e *recvError) Error() string { return "receiving from the agent: " + e.err.Error() }

func (s *Service) handle(agentID string, m *agentv1.ConnectRequest) {
	switch msg := m.GetMsg().(type) {
	case *agentv1.ConnectRequest_Heartbeat:
		s.touch(agentID)
		s.heartbeat(agentID, msg.Heartbeat)
	case *agentv1.ConnectRequest_TaskEvent:
		s.cfg.Dispatcher.TaskEvent(agentID, msg.TaskEvent)
	case *agentv1.ConnectRequest_TaskResult:
		s.touch(agentID)
		s.cfg.Dispatcher.TaskResult(agentID, msg.TaskResult)
	}
}

// heartbeat applies the state an agent reports in a heartbeat to its
// session and, when its isolation or degraded state changed, to its stored
// record, so that `agents list` through any controller of a cluster, and
// this one after a restart, shows it. The state is the agent's report,
// shown as such; no security decision rests on it.
func (s *Service) heartbeat(agentID string, hb *agentv1.Heartbeat) {
	isolated, degraded := hb.GetIsolated(), cleanDegraded(hb.GetDegraded())
	s.mu.Lock()
	sess := s.sessions[agentID]
	if sess == nil || sess.facts == nil || (sess.facts.GetIsolated() == isolated && sess.facts.GetDegraded() == degraded) {
		s.mu.Unlock()
		return
	}
	// The session's facts are shared with readers (Facts): they are
	// replaced, never changed in place.
	facts := proto.CloneOf(sess.facts)
	facts.Isolated, facts.Degraded = isolated, degraded
	sess.facts = facts
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Store.SetAgentFacts(ctx, agentID, facts); err != nil {
		s.cfg.Logger.Warn("recording the agent's reported state failed; this controller shows it, the others show it at its next connection",
			"agent", agentID, "isolated", isolated, "error", err)
		return
	}
	s.mu.Lock()
	if k := s.known[agentID]; k != nil {
		c := *k
		c.Facts = facts
		s.known[agentID] = &c
	}
	s.mu.Unlock()
	if n, ok := s.cfg.Dispatcher.(FactsNotifier); ok {
		n.AgentFactsChanged(agentID)
	}
}

// UploadEvidence implements agentv1.AgentServiceServer.
func (s *Service) UploadEvidence(stream agentv1.AgentService_UploadEvidenceServer) error {
	a, id, err := s.agentFrom(stream.Context())
	if err != nil {
		return err
	}
	if s.cfg.Evidence == nil {
		return status.Error(codes.Unavailable, "this controller has no evidence store configured")
	}
	return s.cfg.Evidence.Receive(a, id, stream)
}
