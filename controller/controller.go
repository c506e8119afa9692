// Package controller is the composition root of the Firebreak controller:
// it builds every part (CA, task signer, store, fleet, dispatcher, operator
// API, health) and runs them until the context ends.
package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof" //nolint:gosec // G108: registered on the metrics mux only with --pprof, never on the default mux
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/cluster"
	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/route"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/rpcbuf"
	"github.com/firebreak-ir/firebreak/internal/statedir"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Files the controller keeps in its data directory.
const (
	SigningKeyFile = "task-signing.key"
	DatabaseFile   = store.DatabaseFile
	AdminCredsFile = "admin.creds"
	AddrFile       = "controller.addr"
)

// Config is the controller's configuration.
type Config struct {
	// DataDir holds the database and evidence, and, without PKIDir, the
	// CA, the task-signing key and the admin credential.
	DataDir string
	// PKIDir, when set, holds the cluster's identity that `controller
	// init` created (the CA, the task-signing key, admin.creds and
	// cluster.json), shared by every controller of the cluster and read
	// only: nothing there is created or changed.
	PKIDir string
	// Store is the PostgreSQL database the controllers of a cluster share,
	// postgres://USER@HOST/DB?sslmode=… (empty: SQLite in DataDir).
	Store string
	// StoreConnectTimeout bounds how long a start waits for an unreachable
	// PostgreSQL store, trying again with backoff (default 60s).
	StoreConnectTimeout time.Duration
	// Listen is the TCP address to serve on (HOST:PORT; port 0 picks one).
	Listen string
	// MetricsListen, when set, serves the controller's metrics in the
	// Prometheus format at /metrics on this HOST:PORT (plain HTTP: bind it
	// to a private address).
	MetricsListen string
	// Profiling, with MetricsListen, also serves Go's runtime profiles
	// (net/http/pprof) at /debug/pprof/ there: CPU, heap, goroutines,
	// mutex and block, for a controller under load. Off by default.
	Profiling bool
	// Listener, when set, is served instead of listening on Listen (the
	// lab makes it inside a network namespace).
	Listener net.Listener
	// Advertise is the address written into credentials; defaults to the
	// listen address.
	Advertise string
	// ServerNames are extra DNS names or IPs for the serving certificate.
	ServerNames []string
	// PeerAddress is the HOST:PORT the other controllers of a cluster dial
	// to route tasks to the agents this one holds (--peer-address). It is
	// recorded in the controller registry. Default: the listen address,
	// with an unspecified host (0.0.0.0, ::) replaced by the machine's
	// first non-loopback address.
	PeerAddress string
	// ApprovalThreshold is the target count above which a destructive run
	// waits for approval.
	ApprovalThreshold int
	// MaxWatchesPerOperator and MaxWatches cap the open run and playbook
	// run watches of one operator and of the whole controller (0: the
	// defaults of watchcap, 16 and 1,024).
	MaxWatchesPerOperator, MaxWatches int
	// EnrollLimits rate-limit enrollment per source address and overall,
	// and aggregate refused enrollments in the audit log (zero fields:
	// the defaults of fleet.EnrollLimits).
	EnrollLimits fleet.EnrollLimits
	// MaxAgentHandshakes bounds the agent enrollments and Connect
	// handshakes served at once (0: fleet.DefaultMaxHandshakes); beyond
	// it, and as many waiting, they are refused with RESOURCE_EXHAUSTED
	// and a retry-after.
	MaxAgentHandshakes int
	// Attestation lets agents enrol by AWS identity instead of a join
	// token (attestation.go).
	Attestation AttestationConfig
	// AgentCertTTL is the lifetime of agent certificates.
	AgentCertTTL time.Duration
	// AgentGoneAfter is how long an agent must be unseen before an admin
	// may forget it without revoking it (default 7 days).
	AgentGoneAfter time.Duration
	// TerminatedCheckEvery is how often the controller asks AWS (the EC2
	// API of each agent's account, as the responder role) whether the
	// instances its agents' certificates name are terminated, and marks
	// those agents terminated (0: never). A leased singleton: once in a
	// cluster.
	TerminatedCheckEvery time.Duration
	// ForgetTerminatedAfter forgets an agent that long after it was marked
	// terminated; its runs, evidence and audit records stay (0: never).
	ForgetTerminatedAfter time.Duration
	// OperatorCertTTL is the lifetime of operator credentials.
	OperatorCertTTL time.Duration
	// Heartbeat is how often agents report.
	Heartbeat time.Duration
	// Incident configures playbooks, cases and the findings intake.
	Incident IncidentConfig
	// Evidence is the evidence store: empty for DataDir/evidence, an
	// absolute directory, or s3://bucket/prefix.
	Evidence string
	// EvidenceRetention is the S3 Object Lock retention (compliance mode)
	// of new evidence; 0 sets none.
	EvidenceRetention time.Duration
	// EvidenceKMSKey is the KMS key for SSE-KMS of S3 evidence.
	EvidenceKMSKey string
	// EvidenceMaxBytes caps one evidence item (0: evidence.DefaultMaxBytes).
	EvidenceMaxBytes int64
	// StoreCheckInterval is how often the store is pinged for the health
	// service and the firebreak_store_up gauge (default
	// DefaultStoreCheckInterval).
	StoreCheckInterval time.Duration
	// Logger logs; defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Ready, when set, receives the bound address once serving.
	Ready func(addr string)
	// Actions are trusted descriptions of actions beyond the first-party
	// ones (in-process actions of the benchmarks and tests), added to the
	// action catalogue. They cannot redefine a first-party action.
	Actions []*pluginv1.ActionDescription
	// LeaseTTL is the TTL of the cluster leases of the jobs that run once
	// among the controllers sharing the store (0: cluster.DefaultTTL).
	LeaseTTL time.Duration
	// ReadinessEvery, when set, runs a readiness review of every known
	// account on that schedule and stores it (--readiness-every), as a
	// leased singleton: once in a cluster.
	ReadinessEvery time.Duration
	// Version is the build version the controller registers with.
	Version string
	// Console configures the web console (none without Console.Listen).
	Console ConsoleConfig
}

// CheckAndSetDefaults checks the configuration and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.DataDir == "" {
		return errors.New("controller: --data-dir is required")
	}
	if c.PKIDir != "" {
		pkiDir, err1 := filepath.Abs(c.PKIDir)
		dataDir, err2 := filepath.Abs(c.DataDir)
		// The pki dir is read only and shared; the data dir is this
		// controller's own and written.
		if err1 == nil && err2 == nil && pkiDir == dataDir {
			return errors.New("controller: --pki-dir and --data-dir must be different directories: the pki dir holds the cluster's shared identity and is never written, the data dir holds this controller's database")
		}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7443"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.ApprovalThreshold == 0 {
		c.ApprovalThreshold = 10
	}
	if c.AgentCertTTL == 0 {
		c.AgentCertTTL = 24 * time.Hour
	}
	if c.StoreCheckInterval == 0 {
		c.StoreCheckInterval = DefaultStoreCheckInterval
	}
	if c.StoreConnectTimeout == 0 {
		c.StoreConnectTimeout = 60 * time.Second
	}
	if c.StoreConnectTimeout < 0 {
		return errors.New("controller: --store-connect-timeout must not be negative")
	}
	if err := store.CheckOptions(c.storeOptions()); err != nil {
		return fmt.Errorf("controller: --store: %w", err)
	}
	if c.Store != "" && !strings.HasPrefix(c.Evidence, "s3://") {
		return fmt.Errorf("controller: with a PostgreSQL store (--store %s) the evidence must be in S3 (--evidence s3://BUCKET/PREFIX), "+
			"not in a local directory (%s): every controller of the cluster must reach every item, and a directory is on one machine",
			store.RedactDSN(c.Store), c.localEvidence())
	}
	return nil
}

// storeOptions are the options that open the controller's store.
func (c *Config) storeOptions() store.Options {
	return store.Options{DSN: c.Store, DataDir: c.DataDir,
		Observer: store.Observer{Operation: telemetry.StoreOperation, Retry: telemetry.StoreRetried}}
}

// localEvidence names the local evidence store Evidence asks for.
func (c *Config) localEvidence() string {
	if c.Evidence == "" {
		return filepath.Join(c.DataDir, "evidence")
	}
	return c.Evidence
}

// Controller is a built, not yet running, controller.
type Controller struct {
	cfg        Config
	Store      store.Store
	CA         *pki.CA
	Signer     *tasksign.Signer
	Fleet      *fleet.Service
	Dispatcher *dispatch.Dispatcher
	Operator   *operator.Service
	Evidence   *evidence.Service
	// Attest verifies attested enrollments against the stored policy.
	Attest *attest.Verifier
	// instances reads instance states and tags from AWS, as the role
	// assumed in each account: for attestation and the terminated sweep.
	instances attest.InstanceReader
	grpc      *grpc.Server
	health    *health.Server
	// storeHealth sets the health status from the store's reachability.
	storeHealth *storeHealth
	lis         net.Listener
	// streams holds open operator streams, for revocation to close.
	streams *auth.Streams
	// Incident holds the cases, the playbook executor and the intake.
	Incident

	// Actions is the trusted action catalogue.
	Actions *actioncatalog.Catalogue
	// Planner creates every run: the operator API's and the playbooks'.
	Planner *runs.Planner
	// Singletons runs the jobs that run once among the controllers that
	// share the store, each under its lease.
	Singletons *cluster.Runner
	// registry keeps this controller's entry in the controller registry.
	registry *cluster.Registry
	// id is this controller's id in the cluster (cluster.NewID): the
	// owner of the runs it drives and the holder of its leases.
	id string
	// Router routes tasks and reports between the controllers of a
	// cluster; with one controller it passes everything through.
	Router *route.Router
	// console is the web console, when one is served.
	console consoleParts
}

// New builds the controller: on first start it creates the CA, the
// task-signing key, the database and the admin credential in DataDir; on
// later starts it reuses them. With PKIDir it loads the CA, the key and
// the admin credential from there instead, creating none. Either way it
// refuses a CA or key other than the one its store recorded.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	// Security-critical: the data dir holds the CA key, the task-signing
	// key and the database; it is created 0700, or tightened to it.
	if err := statedir.Prepare(cfg.DataDir); err != nil {
		return nil, err
	}
	ca, signer, err := loadIdentity(&cfg)
	if err != nil {
		return nil, err
	}
	ca.Now = cfg.Clock
	// The store is open and migrated before the controller listens: no
	// agent is taken by a controller that could not keep its state.
	st, err := OpenStore(ctx, cfg.storeOptions(), cfg.StoreConnectTimeout, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := checkClusterIdentity(ctx, st, ca.Fingerprint(), signer.Fingerprint()); err != nil {
		st.Close()
		return nil, err
	}
	// Files an earlier version or an operator left readable by others
	// (the CA certificate was 0644) become private too.
	if err := statedir.Tighten(cfg.DataDir); err != nil {
		st.Close()
		return nil, err
	}
	// The audit log and every custody record are checkpointed with a key
	// derived from the task-signing key, so each controller of a cluster
	// holds it and the database alone cannot forge a checkpoint.
	ckey, err := signer.DeriveKey("chain checkpoint")
	if err != nil {
		st.Close()
		return nil, err
	}
	st.SetCheckpointKey(store.NewCheckpointKey(ckey))
	c := &Controller{cfg: cfg, Store: st, CA: ca, Signer: signer}
	lis := cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			st.Close()
			return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
		}
	}
	c.lis = lis
	if cfg.Advertise == "" {
		c.cfg.Advertise = lis.Addr().String()
	}
	if err := c.build(ctx); err != nil {
		if c.console.lis != nil {
			c.console.lis.Close()
		}
		lis.Close()
		st.Close()
		return nil, err
	}
	return c, nil
}

// loadIdentity loads the CA and the task-signing key: from PKIDir, read
// only, when set (adding the cluster's names to cfg), else from DataDir,
// creating them on first start.
func loadIdentity(cfg *Config) (*pki.CA, *tasksign.Signer, error) {
	if cfg.PKIDir == "" {
		ca, err := pki.LoadOrCreateCA(cfg.DataDir)
		if err != nil {
			return nil, nil, fmt.Errorf("loading the CA: %w", err)
		}
		signer, err := tasksign.LoadOrCreateKey(filepath.Join(cfg.DataDir, SigningKeyFile))
		if err != nil {
			return nil, nil, fmt.Errorf("loading the task-signing key: %w", err)
		}
		return ca, signer, nil
	}
	cp, err := loadPKIDir(cfg.PKIDir)
	if err != nil {
		return nil, nil, err
	}
	if err := checkDataDirCA(cfg.DataDir, cp.ca); err != nil {
		return nil, nil, err
	}
	// The load balancer's name is in every controller's serving
	// certificate, and credentials issued anywhere name it.
	cfg.ServerNames = slices.Concat(cfg.ServerNames, cp.names.ServerNames)
	if cfg.Advertise == "" {
		cfg.Advertise = cp.names.Advertise
	}
	return cp.ca, cp.signer, nil
}

// Audit appends to the audit log; a failure is logged, never silent.
func (c *Controller) Audit(ctx context.Context, actor, action, subject string, detail any) {
	b, err := json.Marshal(detail)
	if err != nil || detail == nil {
		b = []byte("{}")
	}
	if err := c.Store.AppendAudit(ctx, &store.AuditRecord{At: c.cfg.Clock(), Actor: actor, Action: action, Subject: subject, Detail: b}); err != nil {
		c.cfg.Logger.Error("audit append failed", "action", action, "subject", subject, "error", err)
	}
}

func (c *Controller) build(ctx context.Context) error {
	cfg := c.cfg
	// The first-party descriptions are embedded, generated from the
	// actions themselves (make catalog): the controller links no action.
	firstParty, err := actioncatalog.FirstParty()
	if err != nil {
		return fmt.Errorf("reading the embedded first-party action descriptions: %w", err)
	}
	if c.Actions, err = actioncatalog.New(firstParty); err != nil {
		return err
	}
	for _, d := range cfg.Actions {
		if err := c.Actions.Register(d, actioncatalog.SourceRegistered); err != nil {
			return err
		}
	}
	c.streams = auth.NewStreams()
	c.id = cluster.NewID()
	if c.Router, err = c.buildRouter(); err != nil {
		return err
	}
	// Built in dependency order. The dispatcher and the fleet need each
	// other (it pushes through the fleet, the fleet reports to it), and the
	// evidence service checks uploads against the dispatcher's runs while
	// the dispatcher checks results against stored evidence: the
	// dispatcher is built first and given both with SetDeps, which it
	// requires before it runs.
	if c.Dispatcher, err = dispatch.New(dispatch.Config{Store: c.Store, Signer: c.Signer, Audit: c.Audit,
		Logger: cfg.Logger, Clock: cfg.Clock, Owner: c.id, LiveWithin: cluster.LiveWithin}); err != nil {
		return err
	}
	backend, err := evidence.OpenBackend(ctx, cfg.Evidence, evidence.BackendOptions{DataDir: cfg.DataDir, Retention: cfg.EvidenceRetention,
		KMSKeyID: cfg.EvidenceKMSKey, Clock: cfg.Clock})
	if err != nil {
		return fmt.Errorf("opening the evidence store: %w", err)
	}
	if c.Evidence, err = evidence.New(evidence.Config{Store: c.Store, Backend: backend, StagingDir: filepath.Join(cfg.DataDir, "evidence", "uploads"),
		Runs: c.Dispatcher, Audit: c.Audit, Logger: cfg.Logger, Clock: cfg.Clock, MaxBytes: cfg.EvidenceMaxBytes}); err != nil {
		return err
	}
	if c.Attest, err = c.attestation(ctx); err != nil {
		return err
	}
	if c.Fleet, err = fleet.New(fleet.Config{Store: c.Store, CA: c.CA, Signer: c.Signer, Dispatcher: c.Router, Audit: c.Audit,
		Logger: cfg.Logger, Clock: cfg.Clock, CertTTL: cfg.AgentCertTTL, GoneAfter: cfg.AgentGoneAfter, Heartbeat: cfg.Heartbeat, Evidence: c.Evidence,
		Actions: c.Actions, EnrollLimits: cfg.EnrollLimits, Attest: c.Attest, MaxHandshakes: cfg.MaxAgentHandshakes}); err != nil {
		return err
	}
	if err := c.Dispatcher.SetDeps(dispatch.Deps{Pusher: c.Router, TaskEvidence: c.Evidence.TaskEvidenceIDs}); err != nil {
		return err
	}
	c.Router.Wire(c.Fleet, c.Dispatcher)
	fl := c.Fleet
	watches := watchcap.New(cfg.MaxWatchesPerOperator, cfg.MaxWatches)
	// The planner sees every agent of the cluster as connected wherever
	// its stream is held: the router knows.
	c.Planner, err = runs.New(runs.Config{Store: c.Store, Fleet: c.Router, Actions: c.Actions, Dispatcher: c.Dispatcher, Audit: c.Audit,
		Logger: cfg.Logger, Clock: cfg.Clock, ApprovalThreshold: cfg.ApprovalThreshold, Owner: c.id})
	if err != nil {
		return err
	}
	c.Operator, err = operator.New(operator.Config{Store: c.Store, CA: c.CA, Fleet: fl, Dispatcher: c.Dispatcher, Audit: c.Audit, Watches: watches,
		Logger: cfg.Logger, Clock: cfg.Clock, Planner: c.Planner, OperatorCertTTL: cfg.OperatorCertTTL,
		Advertise: c.cfg.Advertise, Actions: c.Actions, Streams: c.streams, ControllersLiveWithin: cluster.LiveWithin, Owners: c.Router, Attest: c.Attest,
		FindingsQueueURL: cfg.Incident.SQSQueue, FindingsHTTPS: cfg.Incident.EventsListen != "", Evidence: evidenceProber(c.Evidence),
		Playbooks: c.playbookLibrary()})
	if err != nil {
		return err
	}
	c.Router.SetRunService(c.Operator)
	if err := c.buildIncident(ctx); err != nil {
		return err
	}
	c.Incident.parts.playbookServer.ShareWatchLimit(watches)
	if err := c.buildSingletons(); err != nil {
		return err
	}
	if err := c.ensureAdmin(ctx); err != nil {
		return err
	}
	if err := c.Dispatcher.Load(ctx); err != nil {
		return err
	}

	host, _, _ := net.SplitHostPort(c.lis.Addr().String())
	names := append([]string{host}, cfg.ServerNames...)
	if h, _, err := net.SplitHostPort(c.cfg.Advertise); err == nil {
		names = append(names, h)
	}
	if hn, err := os.Hostname(); err == nil {
		names = append(names, hn)
	}
	names = append(names, c.consoleNames()...)
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	// The serving certificate is re-issued at every start, so a change of
	// address or names needs nothing but a restart.
	srvCert, err := c.CA.IssueServer(key.Public(), names, 365*24*time.Hour)
	if err != nil {
		return err
	}
	tlsCert := tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: key, Leaf: srvCert}
	if err := c.listenEvents(tlsCert); err != nil {
		return err
	}
	if err := c.buildConsole(ctx, tlsCert); err != nil {
		return err
	}

	policy := rpcPolicy()
	authn := &auth.Authenticator{Policy: policy, Store: c.Store, Streams: c.streams}
	c.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(pki.ServerTLS(c.CA, tlsCert))),
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ChainUnaryInterceptor(authn.Unary()),
		grpc.ChainStreamInterceptor(authn.Stream()),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(8<<20),
		// No read buffer of gRPC's own on each connection: crypto/tls
		// already holds the connection's decrypted record, and gRPC reads
		// frames out of it; a 16 KiB buffer on top of it cost every one
		// of thousands of idle agent streams 16 KiB and copied each byte
		// once more. (The write buffer is already borrowed from a pool
		// for each flush and given back: gRPC's default in 1.85.)
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(16<<10),
		// Evidence arrives through this server: a pool that does not clear
		// the buffers it lends saves writing every byte twice.
		experimental.BufferPool(rpcbuf.Shared),
	)
	agentv1.RegisterAgentServiceServer(c.grpc, fl)
	operatorv1.RegisterOperatorServiceServer(c.grpc, c.Operator)
	c.registerIncident(c.grpc)
	operatorv1.RegisterEvidenceServiceServer(c.grpc, c.Evidence)
	clusterv1.RegisterPeerServiceServer(c.grpc, c.Router.Server())
	operatorv1.RegisterConsoleServiceServer(c.grpc, &console.LoginService{Console: c.console.console})
	c.health = health.NewServer()
	healthpb.RegisterHealthServer(c.grpc, c.health)
	c.storeHealth = &storeHealth{ping: c.Store.Ping, health: c.health, interval: cfg.StoreCheckInterval, logger: cfg.Logger}
	return nil
}

// ensureAdmin creates the admin operator on the store's first start: from
// PKIDir/admin.creds when PKIDir is set, else with a new credential written
// to DataDir/admin.creds.
func (c *Controller) ensureAdmin(ctx context.Context) error {
	path := filepath.Join(c.cfg.DataDir, AdminCredsFile)
	if _, err := c.Store.GetOperator(ctx, "admin"); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if c.cfg.PKIDir != "" {
		return c.registerClusterAdmin(ctx)
	}
	ttl := c.cfg.OperatorCertTTL
	if ttl == 0 {
		ttl = 365 * 24 * time.Hour
	}
	creds, serial, err := operator.IssueCreds(c.CA, "admin", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, ttl, c.cfg.Advertise)
	if err != nil {
		return err
	}
	if err := creds.Save(path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := c.Store.PutOperator(ctx, &store.Operator{Name: "admin", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, CertSerial: serial,
		CreatedBy: "system", CreatedAt: c.cfg.Clock()}); err != nil {
		return err
	}
	c.Audit(ctx, "system", "operator.add", "admin", map[string]string{"role": "admin", "cert_serial": serial, "file": path})
	c.cfg.Logger.Info("created the admin credential", "file", path)
	return nil
}

// Addr is the address the controller listens on.
func (c *Controller) Addr() string { return c.lis.Addr().String() }

// Run serves until ctx ends, then stops gracefully: it stops accepting,
// lets the dispatcher persist what it holds, and closes the store.
func (c *Controller) Run(ctx context.Context) error {
	if c.cfg.MetricsListen != "" {
		stopMetrics, err := c.serveMetrics()
		if err != nil {
			_ = c.Store.Close()
			return err
		}
		defer stopMetrics()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	dispCtx, dispCancel := context.WithCancel(context.Background())
	dispDone := make(chan error, 1)
	go func() {
		// The dispatcher runs until the very end; it returns early only
		// when it refuses to start (never wired), which stops the
		// controller rather than leaving it serving without dispatch.
		err := c.Dispatcher.Run(dispCtx)
		if err != nil {
			errs <- fmt.Errorf("dispatcher: %w", err)
			cancel()
		}
		dispDone <- err
	}()
	// The leases are tried for once before serving, so a playbook started
	// by the first request finds its executor running (with one
	// controller, this one holds every lease).
	c.Singletons.Step(ctx)
	run("last-seen writer", func(ctx context.Context) error { return c.Fleet.RunSeenWriter(ctx, 5*time.Second) })
	c.runIncident(run)
	run("leased singletons", c.Singletons.Run)
	run("controller registry", c.registry.Run)
	run("cluster routing", c.Router.Run)
	run("evidence janitor", c.Evidence.Run)
	run("enrollment refusal audit", c.Fleet.RunEnrollGuard)
	run("attestation policy reload", c.reloadAttestPolicy)
	run("store health", c.storeHealth.run)
	c.runConsole(run)

	// The registry entry is written before serving, so no run created
	// through this controller is ever taken for a dead controller's.
	if err := c.registry.Heartbeat(ctx); err != nil {
		c.cfg.Logger.Warn("recording the controller's registry entry failed; retrying with the heartbeat", "error", err)
	}
	addr := c.lis.Addr().String()
	_ = pki.WriteFileAtomic(filepath.Join(c.cfg.DataDir, AddrFile), []byte(addr+"\n"), 0o600)
	// The health service says SERVING only once the store has answered.
	c.storeHealth.check(ctx)
	c.cfg.Logger.Info("controller serving", "addr", addr, "data_dir", c.cfg.DataDir, "pki_dir", c.cfg.PKIDir, "ca_sha256", c.CA.Fingerprint(), "approval_threshold", c.cfg.ApprovalThreshold)
	if c.cfg.Ready != nil {
		c.cfg.Ready(addr)
	}
	c.Audit(ctx, "system", "controller.start", addr, map[string]string{"data_dir": c.cfg.DataDir})
	serveErr := make(chan error, 1)
	go func() { serveErr <- c.grpc.Serve(c.lis) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-errs:
	}
	c.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		c.grpc.GracefulStop()
		close(stopped)
	}()
	// Agent streams never end on their own: close them, so the agents
	// reconnect to the next controller. Evidence uploads resume from their
	// committed offset, so they get only a short grace.
	c.Fleet.CloseSessions()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		c.grpc.Stop()
	}
	cancel()
	wg.Wait()
	dispCancel()
	<-dispDone
	c.Audit(context.Background(), "system", "controller.stop", addr, nil)
	if cerr := c.Store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	c.cfg.Logger.Info("controller stopped")
	if err != nil && strings.Contains(err.Error(), "use of closed network connection") {
		err = nil
	}
	return err
}

// buildSingletons builds the runner of the jobs that must run once among
// the controllers sharing the store, and the registry heartbeat:
//   - the playbook executor, which resumes the playbook runs a crash
//     interrupted (cluster.LeasePlaybooks);
//   - the SQS findings poller, when a queue is set (cluster.LeaseSQS).
//
// With one controller it holds every lease, so each job runs as it did
// before leases. The dispatcher's deadline and offline sweep is not among
// them: each dispatcher sweeps the runs it holds in memory, and a run is
// held by the controller it was created through until runs are routed
// between controllers (docs/operators.md, the store).
func (c *Controller) buildSingletons() error {
	jobs := []cluster.Job{
		{Lease: cluster.LeasePlaybooks, Run: c.Playbooks.Run},
		{Lease: cluster.LeaseRuns, Run: c.adoptRuns},
	}
	if c.Incident.parts.sqs != nil {
		jobs = append(jobs, cluster.Job{Lease: cluster.LeaseSQS, Run: c.Incident.parts.sqs.Run})
	}
	if c.cfg.ReadinessEvery > 0 {
		jobs = append(jobs, cluster.Job{Lease: cluster.LeaseReadiness, Run: c.readinessSchedule})
	}
	if c.cfg.TerminatedCheckEvery > 0 {
		jobs = append(jobs, cluster.Job{Lease: cluster.LeaseTerminated, Run: func(ctx context.Context) error {
			return c.Fleet.RunTerminatedSweep(ctx, c.cfg.TerminatedCheckEvery, c.instances, c.cfg.ForgetTerminatedAfter)
		}})
	}
	var err error
	if c.Singletons, err = cluster.NewRunner(cluster.Config{Store: c.Store, ID: c.id, TTL: c.leaseTTL(), StoppedAfter: cluster.LiveWithin, Jobs: jobs,
		Logger: c.cfg.Logger, Clock: c.cfg.Clock}); err != nil {
		return err
	}
	c.cfg.Logger.Info("controller id", "controller_id", c.Singletons.ID())
	c.registry, err = cluster.NewRegistry(cluster.RegistryConfig{Store: c.Store, ID: c.Singletons.ID(), Address: peerAddress(c.cfg.PeerAddress, c.lis.Addr()),
		Version: c.cfg.Version, Agents: c.Fleet.ConnectedCount, Leases: c.Singletons.HeldLeases, Logger: c.cfg.Logger, Clock: c.cfg.Clock})
	return err
}

// leaseTTL is the TTL of the cluster leases.
func (c *Controller) leaseTTL() time.Duration {
	if c.cfg.LeaseTTL > 0 {
		return c.cfg.LeaseTTL
	}
	return cluster.DefaultTTL
}

// ID is this controller's id in the cluster: random for each process
// start, the holder of its leases and its key in the registry.
func (c *Controller) ID() string { return c.Singletons.ID() }

// serveMetrics serves /metrics on MetricsListen and observes the connected
// agents; the returned function stops both.
func (c *Controller) serveMetrics() (func(), error) {
	lis, err := net.Listen("tcp", c.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", c.cfg.MetricsListen, err)
	}
	unobserveAgents, err := telemetry.ObserveAgentsConnected(c.Fleet.ConnectedCount)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("observing connected agents: %w", err)
	}
	unobserveApprovals, err := telemetry.ObserveApprovals(c.Dispatcher.AwaitingApproval)
	if err != nil {
		unobserveAgents()
		_ = lis.Close()
		return nil, fmt.Errorf("observing approval waits: %w", err)
	}
	unobserveStore, err := telemetry.ObserveStoreUp(c.storeHealth.Up)
	if err != nil {
		unobserveAgents()
		unobserveApprovals()
		_ = lis.Close()
		return nil, fmt.Errorf("observing the store: %w", err)
	}
	unobserveLeases, err := telemetry.ObserveLeases(c.Singletons.Held)
	if err != nil {
		unobserveAgents()
		unobserveApprovals()
		unobserveStore()
		_ = lis.Close()
		return nil, fmt.Errorf("observing lease holders: %w", err)
	}
	unobserveTasks, err := telemetry.ObserveActiveTasks(c.Dispatcher.ActiveTasks)
	if err != nil {
		unobserveAgents()
		unobserveApprovals()
		unobserveStore()
		unobserveLeases()
		_ = lis.Close()
		return nil, fmt.Errorf("observing active tasks: %w", err)
	}
	unobserve := func() { unobserveAgents(); unobserveApprovals(); unobserveStore(); unobserveLeases(); unobserveTasks() }
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.MetricsHandler())
	mux.HandleFunc("GET /healthz", c.serveHealthz)
	if c.cfg.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	_ = pki.WriteFileAtomic(filepath.Join(c.cfg.DataDir, MetricsAddrFile), []byte(lis.Addr().String()+"\n"), 0o600)
	c.cfg.Logger.Info("serving metrics", "addr", lis.Addr().String(), "path", "/metrics", "profiling", c.cfg.Profiling)
	return func() {
		unobserve()
		_ = srv.Close()
	}, nil
}

// serveHealthz answers a load balancer's HTTP health check with the gRPC
// health service's overall status, which a Network Load Balancer cannot
// ask itself: 200 while SERVING, 503 otherwise.
func (c *Controller) serveHealthz(w http.ResponseWriter, r *http.Request) {
	resp, err := c.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, "NOT_SERVING", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "SERVING")
}

// MetricsAddrFile, in the data directory, holds the address /metrics is
// served on (useful with port 0).
const MetricsAddrFile = "metrics.addr"
