// Package store is the controller's persistent state, behind one
// interface (Store): agents, join tokens, operators, runs, tasks,
// approvals, the hash-chained audit log, accounts, cases with their
// timelines and findings (CaseStore), playbook runs (PlaybookRuns), and
// evidence items with their uploads and custody chains (EvidenceStore).
// No other package holds a database handle or writes SQL. One SQL store
// (SQL) serves two dialects: SQLite (pure Go, WAL), the embedded default,
// and PostgreSQL (pgx), which the controllers of a cluster share; Open
// picks one by its DSN.
package store

import (
	"context"
	"errors"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"regexp"
	"time"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrIdempotencyKeyUsed is returned by CreateRun when another run already
// holds the new run's idempotency key; nothing is stored then.
var ErrIdempotencyKeyUsed = errors.New("another run already has this idempotency key")

// Token refusals, each a precise reason an enrollment is refused.
var (
	ErrTokenUnknown   = errors.New("the join token is not known to this controller")
	ErrTokenExpired   = errors.New("the join token has expired: create a new one with `firebreak token create`")
	ErrTokenExhausted = errors.New("the join token has no uses left: create a new one with `firebreak token create`")
	ErrTokenRevoked   = errors.New("the join token has been revoked: ask an admin for a new one (`firebreak token create`)")
)

// Agent is an enrolled agent.
type Agent struct {
	ID           string
	Role         string
	Hostname     string
	Facts        *agentv1.AgentFacts
	Plugins      []*agentv1.PluginInfo
	EnrolledAt   time.Time
	LastSeen     time.Time
	CertSerial   string
	CertNotAfter time.Time
	Revoked      bool
	// TokenLabels are the labels the join token gave; they override the
	// labels the agent reports about itself.
	TokenLabels map[string]string
	// RevokedAt is when the agent was revoked, and RevokeReason the
	// reason the admin gave.
	RevokedAt    time.Time
	RevokeReason string
	// TerminatedAt is when the controller learnt from AWS (the EC2 API of
	// the agent's account, never the agent) that the agent's instance is
	// terminated; zero while it is not. A terminated agent is not counted
	// as offline, is no run's target, and its certificate is refused.
	TerminatedAt time.Time
}

// Terminated says AWS reported the agent's instance terminated.
func (a *Agent) Terminated() bool { return !a.TerminatedAt.IsZero() }

// JoinToken is a stored join token; only its hash is kept.
type JoinToken struct {
	Hash      string
	Role      string
	Uses      int
	UsesLeft  int
	ExpiresAt time.Time
	Labels    map[string]string
	CreatedBy string
	CreatedAt time.Time
	// Revoked tokens enroll nothing, whatever their uses and expiry.
	Revoked bool
}

// tokenIDRE is the form of a token id: see JoinToken.ID.
var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ID names a token in listings, the audit log and `token revoke`: the first
// 16 hex digits of its hash, which say nothing about the secret.
func (t *JoinToken) ID() string {
	if len(t.Hash) < 16 {
		return t.Hash
	}
	return t.Hash[:16]
}

// Operator is a person (or automation) holding a credential.
type Operator struct {
	Name       string
	Role       operatorv1.OperatorRole
	CertSerial string
	CreatedBy  string
	CreatedAt  time.Time
	Revoked    bool
}

// Run is one action over a set of targets.
type Run struct {
	ID             string
	Action         string
	Selector       string
	ParamsJSON     []byte
	Status         operatorv1.RunStatus
	CreatedBy      string
	CreatedAt      time.Time
	StartedAt      time.Time
	FinishedAt     time.Time
	Deadline       time.Time
	DeadlineAfter  time.Duration
	MaxConcurrency int
	MaxErrors      string
	Reason         string
	CaseID         string
	Destructive    bool
	Accounts       string
	Regions        string
	// UploadBPS caps each agent's evidence upload (bytes/second, 0: none).
	UploadBPS int64
	// MaxPerAccount caps tasks in flight per AWS account (0: none).
	MaxPerAccount int
	// OnBehalfOf is who CreatedBy acted for: the operator or rule that
	// started the playbook which created the run (empty: nobody else).
	OnBehalfOf string
	// IdempotencyKey, when set, names the request that created the run:
	// no two runs share one, so a creator that retries (a playbook step
	// after a controller restart) finds its run instead of making another.
	IdempotencyKey string
	// Owner is the id of the controller that drives the run (cluster.NewID):
	// the one it was created through, or the one that adopted it when its
	// owner died. Only the owner writes the run's task states
	// (SaveOwnedTasks refuses the others).
	Owner string
}

// Task is one action on one target.
type Task struct {
	ID           string
	RunID        string
	Seq          int
	AgentID      string
	Hostname     string
	Status       agentv1.TaskStatus
	Error        string
	OutputJSON   []byte
	SignedTask   []byte
	DispatchedAt time.Time
	StartedAt    time.Time
	FinishedAt   time.Time
	Account      string
	Region       string
	EvidenceIDs  []string
	LastMessage  string
}

// Approval is one approval decision on a run.
type Approval struct {
	RunID    string
	Operator string
	Approved bool
	At       time.Time
	Comment  string
}

// Account is one AWS account of the organisation, as last discovered.
type Account struct {
	ID       string
	Name     string
	Email    string
	Status   string
	OUPath   string
	Regions  []string
	SyncedAt time.Time
	// Unknown lists what the last discovery could not learn about the
	// account, and why: the account is kept without it.
	Unknown []AccountUnknown
}

// AccountUnknown is one fact about an account that discovery could not
// learn.
type AccountUnknown struct {
	// Field names what is missing: "regions".
	Field string `json:"field"`
	// Reason is the error that kept it from being learned.
	Reason string `json:"reason"`
	// Remediation is what to do so the next discovery learns it.
	Remediation string `json:"remediation"`
}

// AuditRecord is one entry of the audit log.
type AuditRecord struct {
	Seq      int64
	At       time.Time
	Actor    string
	Action   string
	Subject  string
	Detail   []byte
	PrevHash string
	Hash     string
}

// AuditCheck is the result of verifying the audit chain.
type AuditCheck struct {
	OK          bool
	Records     int64
	FirstBadSeq int64
	Problem     string
	HeadHash    string
	// Checkpoint is the newest signed checkpoint the chain was checked
	// against (nil: none is stored, or no checkpoint key is set).
	Checkpoint *Checkpoint
	// AnchorOK is true when an anchor was given and the log still holds it.
	AnchorOK bool
}

// Store is the controller's persistence.
type Store interface {
	CaseStore
	EvidenceStore
	PlaybookRuns
	Routing
	ConsoleStore
	ReadinessStore
	DrillStore
	EradicationStore

	// Close releases the store.
	Close() error
	// Ping reports whether the store can be reached now (the controller's
	// health check).
	Ping(ctx context.Context) error

	// PutAgent inserts or replaces an agent.
	PutAgent(ctx context.Context, a *Agent) error
	// GetAgent returns one agent or ErrNotFound.
	GetAgent(ctx context.Context, id string) (*Agent, error)
	// ListAgents returns every agent, ordered by hostname then id.
	ListAgents(ctx context.Context) ([]*Agent, error)
	// TouchAgents records last-seen times in one transaction.
	TouchAgents(ctx context.Context, seen map[string]time.Time) error
	// SetAgentFacts replaces an agent's facts and nothing else of its
	// record (a concurrent renewal's certificate serial stays), or returns
	// ErrNotFound.
	SetAgentFacts(ctx context.Context, id string, facts *agentv1.AgentFacts) error
	// AgentsOnInstance returns the agents whose certificate names the EC2
	// instance instanceID in account, ordered by id.
	AgentsOnInstance(ctx context.Context, account, instanceID string) ([]*Agent, error)
	// DeleteAgent removes an agent's record, or returns ErrNotFound. The
	// runs, tasks and evidence that name it are kept.
	DeleteAgent(ctx context.Context, id string) error

	// CreateJoinToken stores a token.
	CreateJoinToken(ctx context.Context, t *JoinToken) error
	// ConsumeJoinToken uses up one use of a token atomically, or returns
	// ErrTokenUnknown, ErrTokenExpired or ErrTokenExhausted.
	ConsumeJoinToken(ctx context.Context, hash string, now time.Time) (*JoinToken, error)
	// EnrollWithToken takes one use of a join token and stores the agent
	// build makes from it, in one transaction: an enrollment build refuses,
	// or whose write fails, spends no use. It fails as ConsumeJoinToken
	// does, without calling build, for a token that cannot be used. build
	// may run more than once (PostgreSQL runs an aborted transaction
	// again); the agent of its last run is stored and returned.
	EnrollWithToken(ctx context.Context, hash string, now time.Time, build func(*JoinToken) (*Agent, error)) (*JoinToken, *Agent, error)
	// ListJoinTokens returns every token, oldest first (hashes only).
	ListJoinTokens(ctx context.Context) ([]*JoinToken, error)
	// RevokeJoinToken marks the token with this id (JoinToken.ID) revoked
	// and returns it, or returns ErrNotFound.
	RevokeJoinToken(ctx context.Context, id string) (*JoinToken, error)

	// PutOperator inserts or replaces an operator.
	PutOperator(ctx context.Context, o *Operator) error
	// GetOperator returns one operator or ErrNotFound.
	GetOperator(ctx context.Context, name string) (*Operator, error)
	// ListOperators returns every operator by name.
	ListOperators(ctx context.Context) ([]*Operator, error)

	// CreateRun stores a run with its tasks in one transaction. A run whose
	// IdempotencyKey another run holds is not stored: the error wraps
	// ErrIdempotencyKeyUsed.
	CreateRun(ctx context.Context, r *Run, tasks []*Task) error
	// RunByIdempotencyKey returns the run created with a key, with its
	// tasks, or ErrNotFound.
	RunByIdempotencyKey(ctx context.Context, key string) (*Run, []*Task, error)
	// UpdateRun stores a run's mutable fields.
	UpdateRun(ctx context.Context, r *Run) error
	// GetRun returns a run and its tasks (ordered by seq).
	GetRun(ctx context.Context, id string) (*Run, []*Task, error)
	// ListRuns returns runs newest first.
	ListRuns(ctx context.Context, limit int) ([]*Run, error)
	// ListActiveRuns returns runs awaiting approval or running, with tasks.
	ListActiveRuns(ctx context.Context) ([]*Run, map[string][]*Task, error)
	// SaveTasks stores the mutable fields of many tasks, and optionally runs,
	// in one transaction.
	SaveTasks(ctx context.Context, tasks []*Task, runs []*Run) error

	// AddApproval records an approval decision.
	AddApproval(ctx context.Context, a *Approval) error
	// ListApprovals returns a run's approvals in order.
	ListApprovals(ctx context.Context, runID string) ([]*Approval, error)

	// AppendAudit appends a record, filling Seq, PrevHash and Hash.
	AppendAudit(ctx context.Context, rec *AuditRecord) error
	// ListAudit returns records after seq, in order.
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]*AuditRecord, error)
	// VerifyAudit re-computes the chain and checks it against the newest
	// signed checkpoint of its head: a chain shorter than the checkpoint
	// (a cut tail) or with another hash at its length (a recomputed
	// chain) does not verify.
	VerifyAudit(ctx context.Context) (*AuditCheck, error)
	// VerifyAuditAnchor is VerifyAudit that also checks the chain still
	// holds an anchor (a checkpoint exported earlier) at its position.
	VerifyAuditAnchor(ctx context.Context, anchor *Checkpoint) (*AuditCheck, error)
	// CheckpointKey is the key that signs and checks chain checkpoints
	// (nil: none are written or checked).
	CheckpointKey() *CheckpointKey
	// AuditCheckpoint returns the newest signed checkpoint of the audit
	// log's head, or nil when none is stored.
	AuditCheckpoint(ctx context.Context) (*Checkpoint, error)

	// ReplaceAccounts replaces the known accounts with a fresh discovery.
	ReplaceAccounts(ctx context.Context, accounts []*Account) error
	// ListAccounts returns the known accounts by id.
	ListAccounts(ctx context.Context) ([]*Account, error)

	// GetMeta and SetMeta hold small controller settings.
	GetMeta(ctx context.Context, key string) (string, error)
	// SetMeta stores a setting.
	SetMeta(ctx context.Context, key, value string) error
	// SetMetaIfAbsent stores a setting unless the key holds one already,
	// atomically, and returns the value the key holds afterwards: value,
	// or what another writer stored first.
	SetMetaIfAbsent(ctx context.Context, key, value string) (string, error)

	// Leases are the leased singletons and the controller registry.
	Leases

	// Attestations record how attested agents proved who they are.
	Attestations

	// AttestPolicies keep the cluster's attestation policy.
	AttestPolicies
}

// RunCounts tallies a run's tasks by outcome.
type RunCounts struct {
	Targets, Pending, Running, Succeeded, Failed, Cancelled, Offline int
}

// Add counts one task in state s, as apiview.CountTask classifies it;
// Targets is the caller's to set.
func (c *RunCounts) Add(s agentv1.TaskStatus) {
	var w operatorv1.RunCounts
	apiview.CountTask(&w, s)
	c.Pending += int(w.Pending)
	c.Running += int(w.Running)
	c.Succeeded += int(w.Succeeded)
	c.Failed += int(w.Failed)
	c.Cancelled += int(w.Cancelled)
	c.Offline += int(w.Offline)
}

// CountTasks tallies tasks; Targets is their number.
func CountTasks(tasks []*Task) RunCounts {
	c := RunCounts{Targets: len(tasks)}
	for _, t := range tasks {
		c.Add(t.Status)
	}
	return c
}

// CaseStore keeps cases, their timelines and the findings taken into them.
type CaseStore interface {
	// CreateCase stores a case with its first timeline entries (each with
	// a key) in one transaction.
	CreateCase(ctx context.Context, c *Case, entries []*CaseEntry) error
	// GetCase returns one case or ErrNotFound.
	GetCase(ctx context.Context, id string) (*Case, error)
	// ListCases returns up to limit cases, newest first; only open ones
	// unless includeClosed.
	ListCases(ctx context.Context, includeClosed bool, limit int) ([]*Case, error)
	// Timeline returns a case's entries in seq order: all of them, or
	// those of the given kinds.
	Timeline(ctx context.Context, caseID string, kinds ...string) ([]*CaseEntry, error)
	// RecordCaseEntry adds an entry unless one with its key exists, and
	// reports whether it did; then (which may be nil) may move the case
	// to a later phase in the same transaction (see SQLite.RecordCaseEntry).
	RecordCaseEntry(ctx context.Context, e *CaseEntry, then func(c *Case, e *CaseEntry) *CaseEntry) (bool, error)
	// SetCasePhase moves an open case to phase, with a timeline entry.
	SetCasePhase(ctx context.Context, caseID, phase string, e *CaseEntry) error
	// CloseCase closes an open case, which enters phase, with a timeline
	// entry; ErrCaseClosed when it is not open.
	CloseCase(ctx context.Context, caseID, phase, actor string, at time.Time, e *CaseEntry) error
	// RecordCaseFinding takes a finding version into its case, opening
	// the case when needed; a version seen before is a duplicate.
	RecordCaseFinding(ctx context.Context, nf *NewCaseFinding) (*CaseFindingResult, error)
	// CaseFindings returns the finding versions of a case in the order
	// they were received.
	CaseFindings(ctx context.Context, caseID string) ([]*CaseFinding, error)
	// LinkCaseFinding records the rule a finding version matched and the
	// playbook run it started or proposed.
	LinkCaseFinding(ctx context.Context, dedupKey, rule, playbookRunID string) error
	// RunsOfCase returns the ids of the runs linked to a case, oldest
	// first.
	RunsOfCase(ctx context.Context, caseID string) ([]string, error)
	// PlaybookRunsOfCase returns the playbook runs named on a case's
	// timeline.
	PlaybookRunsOfCase(ctx context.Context, caseID string) ([]string, error)
}

// EvidenceStore keeps evidence items, their uploads in progress and their
// hash-chained custody records.
type EvidenceStore interface {
	// GetUpload returns one upload or ErrNotFound, as of its last
	// checkpoint.
	GetUpload(ctx context.Context, id string) (*EvidenceUpload, error)
	// PutUpload inserts an upload or stores its mutable fields.
	PutUpload(ctx context.Context, u *EvidenceUpload) error
	// CheckpointUpload records how much of an upload is committed, its
	// hash state and its staging in the backend (zero for local staging).
	CheckpointUpload(ctx context.Context, id string, committed int64, state []byte, staging UploadStaging, now time.Time) error
	// SetUploadState sets an upload's state and the item it stored.
	SetUploadState(ctx context.Context, id, state, evidenceID string, now time.Time) error
	// UploadsIn returns the uploads in a state.
	UploadsIn(ctx context.Context, state string) ([]*EvidenceUpload, error)
	// GetEvidence returns one item or ErrNotFound.
	GetEvidence(ctx context.Context, id string) (*EvidenceItem, error)
	// ListEvidence returns items, newest first (Limit defaults to 100).
	ListEvidence(ctx context.Context, f EvidenceFilter) ([]*EvidenceItem, error)
	// TaskEvidenceIDs returns the ids of the items stored for a task,
	// oldest first.
	TaskEvidenceIDs(ctx context.Context, taskID string) ([]string, error)
	// AllEvidenceIDs returns every item id, oldest first.
	AllEvidenceIDs(ctx context.Context) ([]string, error)
	// SetEvidenceVerified records an item's last verification.
	SetEvidenceVerified(ctx context.Context, id string, at time.Time, v operatorv1.EvidenceVerdict) error
	// InsertEvidence stores a new item with its first custody entry, and
	// marks its upload stored, in one transaction.
	InsertEvidence(ctx context.Context, it *EvidenceItem, first *CustodyEntry) error
	// AppendCustody appends to an item's custody chain, filling Seq,
	// PrevHash and Hash, and signs the new head when a checkpoint key is
	// set; two appends to one item never fork the chain.
	AppendCustody(ctx context.Context, e *CustodyEntry) error
	// Custody returns an item's custody entries in order.
	Custody(ctx context.Context, evidenceID string) ([]*CustodyEntry, error)
	// TaskOwnerOf reads a stored task and its run, or returns ErrNotFound.
	TaskOwnerOf(ctx context.Context, taskID string) (*TaskOwner, error)
	// CustodyCheckpoint returns the newest signed checkpoint of an item's
	// custody head, or nil when none is stored.
	CustodyCheckpoint(ctx context.Context, evidenceID string) (*Checkpoint, error)
}
