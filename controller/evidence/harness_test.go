package evidence_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Fixtures: two agents, a run with an open task for each, and one task
// that has ended.
const (
	agentA     = "agt-aaaaaaaaaaaaaaaa"
	agentB     = "agt-bbbbbbbbbbbbbbbb"
	runID      = "run-0000000000000001"
	taskA      = "tsk-000000000000000a"
	taskB      = "tsk-000000000000000b"
	taskClosed = "tsk-00000000000000cc"
	caseID     = "case-7"
)

// harness is an evidence service on a real SQLite store, served over an
// in-memory gRPC connection: the agent side speaks AgentService as the
// fleet would hand it over, the operator side speaks EvidenceService as
// operator "alice".
type harness struct {
	t       *testing.T
	dir     string
	st      *store.SQL
	rawDB   *sql.DB
	backend evidence.Backend
	cfg     evidence.Config
	svc     *evidence.Service
	srv     *grpc.Server
	conn    *grpc.ClientConn

	mu    sync.Mutex
	audit []string
}

type harnessOptions struct {
	backend  evidence.Backend
	maxBytes int64
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, dir: t.TempDir()}
	st, err := store.OpenSQLite(ctx, filepath.Join(h.dir, "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// As the controller does: custody heads are signed with every append.
	st.SetCheckpointKey(store.NewCheckpointKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))))
	h.st = st
	now := time.Now()
	for _, id := range []string{agentA, agentB} {
		if err := st.PutAgent(ctx, &store.Agent{ID: id, Role: "host", Hostname: "host-" + id[4:5], Facts: &agentv1.AgentFacts{Hostname: "host-" + id[4:5]},
			EnrolledAt: now, LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	running := agentv1.TaskStatus_TASK_STATUS_RUNNING
	if err := st.CreateRun(ctx, &store.Run{ID: runID, Action: "host-collect", Selector: "all", ParamsJSON: []byte("{}"),
		Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", CreatedAt: now, StartedAt: now, Deadline: now.Add(time.Hour), CaseID: caseID},
		[]*store.Task{
			{ID: taskA, RunID: runID, Seq: 0, AgentID: agentA, Hostname: "host-a", Status: running},
			{ID: taskB, RunID: runID, Seq: 1, AgentID: agentB, Hostname: "host-b", Status: running},
			{ID: taskClosed, RunID: runID, Seq: 2, AgentID: agentA, Hostname: "host-a", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED},
		}); err != nil {
		t.Fatal(err)
	}
	h.backend = o.backend
	if h.backend == nil {
		if h.backend, err = evidence.NewLocal(filepath.Join(h.dir, "evidence")); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg = evidence.Config{Store: st, Backend: h.backend, StagingDir: filepath.Join(h.dir, "evidence", "uploads"), Audit: h.recordAudit,
		MaxBytes: o.maxBytes, CheckpointBytes: 64 << 10, CheckpointInterval: time.Hour}
	h.start()
	return h
}

func (h *harness) recordAudit(ctx context.Context, actor, action, subject string, detail any) {
	b, _ := json.Marshal(detail)
	if err := h.st.AppendAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: actor, Action: action, Subject: subject, Detail: b}); err != nil {
		h.t.Errorf("audit: %v", err)
	}
	h.mu.Lock()
	h.audit = append(h.audit, action+" "+subject+" "+string(b))
	h.mu.Unlock()
}

// auditedWith counts the audit records of action whose line (action,
// subject, JSON detail) holds each of parts.
func (h *harness) auditedWith(action string, parts ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.audit {
		if !strings.HasPrefix(a, action+" ") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(a, p)
		}
		if all {
			n++
		}
	}
	return n
}

func (h *harness) audited(action string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.audit {
		if len(a) > len(action) && a[:len(action)+1] == action+" " {
			n++
		}
	}
	return n
}

// fleetStub hands uploads to the service as the fleet does, for the agent
// named in the x-agent header.
type fleetStub struct {
	agentv1.UnimplementedAgentServiceServer
	h   *harness
	svc *evidence.Service
}

func (f *fleetStub) UploadEvidence(stream agentv1.AgentService_UploadEvidenceServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	id := md.Get("x-agent")
	if len(id) != 1 {
		return status.Error(codes.Unauthenticated, "no agent")
	}
	a, err := f.h.st.GetAgent(stream.Context(), id[0])
	if err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return f.svc.Receive(a, pki.Identity{Kind: pki.KindAgent, Name: a.ID, Role: "host", Serial: "5e71a1", Fingerprint: fmt.Sprintf("%064x", 0xf1)}, stream)
}

// start serves a fresh service on the harness's store and directories; a
// second call is a controller restart.
func (h *harness) start() {
	h.t.Helper()
	if h.srv != nil {
		h.srv.Stop()
		h.conn.Close()
	}
	svc, err := evidence.New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.svc = svc
	lis := bufconn.Listen(4 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		return next(auth.WithOperator(ctx, &store.Operator{Name: "alice", Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER}), req)
	}), grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		return next(s, &opStream{ServerStream: ss})
	}), grpc.MaxRecvMsgSize(8<<20))
	agentv1.RegisterAgentServiceServer(srv, &fleetStub{h: h, svc: svc})
	operatorv1.RegisterEvidenceServiceServer(srv, svc)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.conn = srv, conn
	h.t.Cleanup(func() {
		srv.Stop()
		conn.Close()
	})
}

type opStream struct{ grpc.ServerStream }

func (s *opStream) Context() context.Context {
	return auth.WithOperator(s.ServerStream.Context(), &store.Operator{Name: "alice", Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER})
}

func (h *harness) operator() operatorv1.EvidenceServiceClient {
	return operatorv1.NewEvidenceServiceClient(h.conn)
}

// upload is one agent-side UploadEvidence stream, driven step by step.
type upload struct {
	t         *testing.T
	stream    agentv1.AgentService_UploadEvidenceClient
	cancel    context.CancelFunc
	committed uint64
	uploadID  string
}

// open starts a stream as agentID, speaking the controller's upload
// protocol, and returns it after opened.
func (h *harness) open(agentID, taskID, name string) (*upload, error) {
	return h.openSpeaking(agentID, taskID, name, evidence.Protocol)
}

// openSpeaking starts a stream as agentID speaking upload protocol p, and
// returns it after opened.
func (h *harness) openSpeaking(agentID, taskID, name string, p agentv1.UploadProtocol) (*upload, error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "x-agent", agentID))
	stream, err := agentv1.NewAgentServiceClient(h.conn).UploadEvidence(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	h.t.Cleanup(cancel)
	u := &upload{t: h.t, stream: stream, cancel: cancel}
	if err := stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Open{Open: &agentv1.EvidenceOpen{
		TaskId: taskID, Name: name, MediaType: mediaTypeOf(name), Protocol: p}}}); err != nil {
		return nil, err
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if m.GetOpened() == nil || m.GetOpened().GetProtocol() != evidence.Protocol {
		return nil, fmt.Errorf("first answer %v", m)
	}
	u.committed, u.uploadID = m.GetOpened().GetCommittedOffset(), m.GetOpened().GetUploadId()
	return u, nil
}

func mediaTypeOf(name string) string {
	if filepath.Ext(name) == ".gz" {
		return "application/gzip"
	}
	return "application/octet-stream"
}

// chunk sends data at off with its CRC32C, or with the CRC32C of claimed
// when that is not nil (as a chunk corrupted after it was checked).
func (u *upload) chunk(off int, data []byte, claimed []byte) error {
	if claimed == nil {
		claimed = data
	}
	err := u.stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Chunk{Chunk: &agentv1.EvidenceChunk{
		Offset: uint64(off), Data: data, Crc32C: crc32c(claimed)}}})
	if errors.Is(err, io.EOF) {
		return u.outcome()
	}
	return err
}

// sendAll sends data from the committed offset in chunks of size n.
func (u *upload) sendAll(data []byte, n int) error {
	for off := int(u.committed); off < len(data); off += n {
		if err := u.chunk(off, data[off:min(off+n, len(data))], nil); err != nil {
			return err
		}
	}
	return nil
}

// finish ends the upload claiming size and sum, and returns what was stored.
func (u *upload) finish(size int, sum []byte) (*agentv1.EvidenceStored, error) {
	if err := u.stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Finish{Finish: &agentv1.EvidenceFinish{
		Size: uint64(size), Sha256: sum}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	for {
		m, err := u.stream.Recv()
		if err != nil {
			return nil, err
		}
		if s := m.GetStored(); s != nil {
			return s, nil
		}
	}
}

// outcome reads until the server ends the stream and returns its status.
func (u *upload) outcome() error {
	for {
		if _, err := u.stream.Recv(); err != nil {
			return err
		}
	}
}

// drop cuts the stream as a lost connection would.
func (u *upload) drop() { u.cancel() }

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func sum256(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// store uploads data completely as agent A for task A and returns the item.
func (h *harness) store(name string, data []byte) *evidence.Item {
	h.t.Helper()
	u, err := h.open(agentA, taskA, name)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := u.sendAll(data, 100<<10); err != nil {
		h.t.Fatal(err)
	}
	st, err := u.finish(len(data), sum256(data))
	if err != nil {
		h.t.Fatal(err)
	}
	it, err := h.svc.GetItem(context.Background(), st.GetEvidenceId())
	if err != nil {
		h.t.Fatal(err)
	}
	return it
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// raw is a connection of the test's own to the controller's database, as
// someone with the database file (not the controller) would open it.
func (h *harness) raw() *sql.DB {
	h.t.Helper()
	if h.rawDB == nil {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(h.dir, "firebreak.db")+"?_pragma=busy_timeout(10000)")
		if err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { db.Close() })
		h.rawDB = db
	}
	return h.rawDB
}
