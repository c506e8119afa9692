package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/rpcbuf"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Evidence upload tuning.
const (
	// evidenceWindow bounds the bytes of one artifact held in memory until
	// the controller has made them durable. A plugin that produces faster
	// than the upload drains waits (back-pressure through its stream). It
	// holds twice the controller's largest checkpoint (8 MiB, one S3 part
	// of an upload staged in S3), so sending goes on while a part is sent.
	evidenceWindow = 16 << 20
	// uploadWriteBuffer batches an upload's frames into few large writes.
	uploadWriteBuffer = 256 << 10
	// maxChunkRetries bounds the resumes after chunks the controller
	// refused as corrupted.
	maxChunkRetries = 3
)

// uploadProtocol is the upload protocol this agent speaks: a CRC32C per
// chunk, and the whole artifact's SHA-256 at finish.
const uploadProtocol = agentv1.UploadProtocol_UPLOAD_PROTOCOL_V2_CRC32C_CHUNKS

// castagnoli is the CRC32C table; hash/crc32 computes it with the CPU's
// CRC32 instructions where there are some (SSE 4.2, ARMv8).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// evidenceUploads is the agent's evidence state: the bandwidth cap all
// uploads share and the uploads of running tasks.
type evidenceUploads struct {
	once    sync.Once
	limiter *bandwidth.Limiter

	mu     sync.Mutex
	byTask map[string][]*evidenceUpload
}

// agentLimiter is the cap of --bandwidth, shared by every upload (nil: no
// cap).
func (a *Agent) agentLimiter() *bandwidth.Limiter {
	a.evidence.once.Do(func() { a.evidence.limiter = bandwidth.NewLimiter(a.cfg.Bandwidth) })
	return a.evidence.limiter
}

// uploadPacer paces one upload of a task: under the agent's --bandwidth,
// which all its uploads share, and the run's cap for this upload; the
// lower one sets the pace.
func (a *Agent) uploadPacer(spec *agentv1.TaskSpec) *bandwidth.Pacer {
	var run *bandwidth.Limiter
	// A cap past what an int64 holds is no cap (it is never reached).
	if bps := spec.GetUploadBytesPerSecond(); bps > 0 && bps < 1<<62 {
		run = bandwidth.NewLimiter(int64(bps))
	}
	return bandwidth.NewPacer(a.cfg.PaceClock, a.agentLimiter(), run)
}

// onArtifact receives artifact chunks from a plugin and streams them to
// the controller as they come. It returns once the chunk is in the upload's
// window, which may mean waiting for the controller to catch up.
func (a *Agent) onArtifact(ctx context.Context, spec *agentv1.TaskSpec, chunk *pluginv1.ArtifactChunk, res *agentv1.TaskResult) error {
	u, err := a.evidenceUploadFor(ctx, spec, chunk, res)
	if err != nil {
		return err
	}
	if len(chunk.GetData()) > 0 {
		if err := u.write(ctx, chunk.GetData()); err != nil {
			return fmt.Errorf("uploading evidence %q: %w", u.name, err)
		}
	}
	if chunk.GetEof() {
		u.end(a.cfg.Clock())
	}
	return nil
}

// evidenceUploadFor returns the task's upload of the chunk's artifact,
// starting it on the artifact's first chunk.
func (a *Agent) evidenceUploadFor(ctx context.Context, spec *agentv1.TaskSpec, chunk *pluginv1.ArtifactChunk, res *agentv1.TaskResult) (*evidenceUpload, error) {
	ev := &a.evidence
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, u := range ev.byTask[spec.GetTaskId()] {
		if u.name == chunk.GetName() {
			if u.isEnded() {
				return nil, fmt.Errorf("the action sent more of artifact %q after ending it", u.name)
			}
			return u, nil
		}
	}
	if chunk.GetName() == "" {
		return nil, errors.New("the action sent an artifact without a name")
	}
	started := a.cfg.Clock()
	if res.GetStartedAt() != nil {
		started = res.GetStartedAt().AsTime()
	}
	u := &evidenceUpload{a: a, taskID: spec.GetTaskId(), name: chunk.GetName(), mediaType: chunk.GetMediaType(), started: started,
		pacer: a.uploadPacer(spec), win: newWindow(evidenceWindow), whole: sha256.New(), data: make(chan struct{}, 1),
		space: make(chan struct{}, 1), abort: make(chan struct{}), done: make(chan struct{})}
	if ev.byTask == nil {
		ev.byTask = map[string][]*evidenceUpload{}
	}
	ev.byTask[spec.GetTaskId()] = append(ev.byTask[spec.GetTaskId()], u)
	go u.run(ctx)
	return u, nil
}

// closeArtifacts waits until every artifact of the task is stored and puts
// the evidence ids in the result. An artifact the action did not finish is
// abandoned: nothing incomplete is stored.
func (a *Agent) closeArtifacts(ctx context.Context, spec *agentv1.TaskSpec, res *agentv1.TaskResult) error {
	ev := &a.evidence
	ev.mu.Lock()
	ups := ev.byTask[spec.GetTaskId()]
	delete(ev.byTask, spec.GetTaskId())
	ev.mu.Unlock()
	var errs []error
	for _, u := range ups {
		if !u.isEnded() {
			u.stop()
			<-u.done
			errs = append(errs, fmt.Errorf("artifact %q was not finished by the action; it was not stored", u.name))
			continue
		}
		select {
		case <-u.done:
		case <-ctx.Done():
			u.stop()
			<-u.done
		}
		if err := u.failure(); err != nil {
			errs = append(errs, fmt.Errorf("uploading evidence %q: %w", u.name, err))
			continue
		}
		res.EvidenceIds = append(res.EvidenceIds, u.evidenceID)
	}
	return errors.Join(errs...)
}

// evidenceUpload streams one artifact to the controller. The plugin's
// chunks go into a bounded window; a sender goroutine reads them out in
// chunks, each with its CRC32C, under the bandwidth caps, and keeps them
// until the controller acknowledges them durable, so a dropped connection
// resumes from the controller's committed offset.
type evidenceUpload struct {
	a         *Agent
	taskID    string
	name      string
	mediaType string
	started   time.Time
	pacer     *bandwidth.Pacer

	mu       sync.Mutex
	win      *window
	whole    hash.Hash
	sum      []byte
	ended    bool
	finished time.Time
	err      error

	data  chan struct{} // new bytes or the end were produced
	space chan struct{} // acknowledgements freed window space
	abort chan struct{} // closed by stop
	once  sync.Once
	done  chan struct{} // closed when run returns

	evidenceID string
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (u *evidenceUpload) isEnded() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ended
}

func (u *evidenceUpload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *evidenceUpload) stop() { u.once.Do(func() { close(u.abort) }) }

// write puts p into the window, waiting while it is full.
func (u *evidenceUpload) write(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		u.mu.Lock()
		if u.err != nil {
			err := u.err
			u.mu.Unlock()
			return err
		}
		n, end := min(u.win.free(), int64(len(p))), u.win.end
		u.mu.Unlock()
		if n == 0 {
			select {
			case <-u.space:
			case <-u.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		// Copying and hashing happen outside the lock, so the sender keeps
		// sending meanwhile: only this goroutine writes, and only past end,
		// where the sender does not read.
		u.win.fill(end, p[:n])
		u.whole.Write(p[:n])
		u.mu.Lock()
		u.win.end += n
		u.mu.Unlock()
		notify(u.data)
		p = p[n:]
	}
	return nil
}

// end records that the artifact is complete.
func (u *evidenceUpload) end(at time.Time) {
	u.mu.Lock()
	u.ended, u.finished, u.sum = true, at, u.whole.Sum(nil)
	u.mu.Unlock()
	notify(u.data)
}

// release frees the window up to the controller's committed offset.
func (u *evidenceUpload) release(committed int64) {
	u.mu.Lock()
	u.win.release(committed)
	u.mu.Unlock()
	notify(u.space)
}

// errPermanent marks an upload failure that another attempt cannot fix.
type errPermanent struct{ err error }

func (e *errPermanent) Error() string { return e.err.Error() }
func (e *errPermanent) Unwrap() error { return e.err }

// retryable reports whether an upload that failed with err may resume.
func retryable(err error, chunkFailures int) bool {
	var perm *errPermanent
	if errors.As(err, &perm) {
		return false
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition,
		codes.ResourceExhausted, codes.Unimplemented:
		return false
	case codes.DataLoss:
		// A chunk the controller refused left nothing behind; sending it
		// again from the window may succeed.
		return chunkFailures <= maxChunkRetries
	}
	return true
}

// run uploads until the artifact is stored, resuming after failures that
// allow it, until the task's context ends.
func (u *evidenceUpload) run(ctx context.Context) {
	defer close(u.done)
	log := u.a.cfg.Logger.With("task", u.taskID, "artifact", u.name)
	// One span for the whole upload, resumes included: its bytes, how many
	// times it resumed (each an event with the reason), and its outcome.
	ctx, span := telemetry.Tracer().Start(ctx, "evidence.upload", trace.WithAttributes(
		telemetry.AttrTaskID.String(u.taskID), attribute.String("firebreak.evidence.name", u.name)))
	resumes := 0
	defer func() {
		u.mu.Lock()
		bytes, err := u.win.end, u.err
		u.mu.Unlock()
		span.SetAttributes(telemetry.AttrBytes.Int64(bytes), telemetry.AttrResumes.Int(resumes))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}()
	backoff := 250 * time.Millisecond
	chunkFailures := 0
	for attempt := 1; ; attempt++ {
		committed, err := u.session(ctx, attempt)
		if err == nil {
			return
		}
		if status.Code(err) == codes.DataLoss {
			chunkFailures++
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (the task ended: %v)", err, ctx.Err())
		}
		select {
		case <-u.abort:
			err = errors.New("the upload was abandoned")
		default:
		}
		if ctx.Err() != nil || !retryable(err, chunkFailures) || u.isAborted() {
			u.mu.Lock()
			u.err = err
			u.mu.Unlock()
			log.Error("evidence upload failed", "error", err)
			return
		}
		if committed > 0 {
			backoff = 250 * time.Millisecond
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn("evidence upload interrupted; resuming from the controller's committed offset", "error", err, "attempt", attempt, "in", wait.Round(time.Millisecond))
		resumes++
		span.AddEvent("evidence.resume", trace.WithAttributes(attribute.Int("firebreak.evidence.attempt", attempt),
			attribute.String("error", err.Error()), attribute.Int64("firebreak.evidence.committed", committed)))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		case <-u.abort:
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (u *evidenceUpload) isAborted() bool {
	select {
	case <-u.abort:
		return true
	default:
		return false
	}
}

// session is one UploadEvidence stream. It returns the bytes the
// controller newly committed during it, and nil once the artifact is stored.
func (u *evidenceUpload) session(ctx context.Context, attempt int) (int64, error) {
	conn, err := u.a.dialUpload()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-u.abort:
			cancel()
		case <-sctx.Done():
		}
	}()
	stream, err := agentv1.NewAgentServiceClient(conn).UploadEvidence(sctx)
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Open{Open: &agentv1.EvidenceOpen{
		TaskId: u.taskID, Name: u.name, MediaType: u.mediaType, Protocol: uploadProtocol}}}); err != nil {
		return 0, recvStatus(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	opened := first.GetOpened()
	if opened == nil {
		return 0, &errPermanent{errors.New("the controller did not answer open with opened")}
	}
	if p := opened.GetProtocol(); p != uploadProtocol {
		// A controller of version 1 states no protocol and would refuse
		// every chunk for want of its SHA-256.
		return 0, &errPermanent{fmt.Errorf("the controller speaks upload protocol %d, this agent %d (a CRC32C per chunk): upgrade the controller",
			max(int32(p), 1), int32(uploadProtocol))}
	}
	committed := int64(opened.GetCommittedOffset())
	u.mu.Lock()
	base, produced := u.win.base, u.win.end
	if committed < base || committed > produced {
		u.mu.Unlock()
		// The controller lost bytes it had acknowledged, or holds more than
		// this artifact has: the upload cannot be completed consistently.
		return 0, &errPermanent{fmt.Errorf("the controller resumes at offset %d, but this agent holds bytes %d to %d only: run the collection again", committed, base, produced)}
	}
	u.mu.Unlock()
	u.release(committed)
	startCommitted := committed
	if attempt > 1 {
		u.a.cfg.Logger.Info("evidence upload resumed", "task", u.taskID, "artifact", u.name, "offset", committed)
	}

	type stored struct {
		msg *agentv1.EvidenceStored
	}
	acks := make(chan stored, 1)
	recvErr := make(chan error, 1)
	// drained receives the stream's end after Stored: the stream is read to
	// its end, so a stored upload's RPC ends OK rather than cancelled.
	drained := make(chan error, 1)
	var mu sync.Mutex
	lastCommitted := committed
	go func() {
		storedSeen := false
		for {
			m, err := stream.Recv()
			if err != nil {
				if storedSeen {
					drained <- err
				} else {
					recvErr <- err
				}
				return
			}
			switch msg := m.GetMsg().(type) {
			case *agentv1.UploadEvidenceResponse_Ack:
				c := int64(msg.Ack.GetCommittedOffset())
				mu.Lock()
				lastCommitted = max(lastCommitted, c)
				mu.Unlock()
				u.release(c)
			case *agentv1.UploadEvidenceResponse_Stored:
				storedSeen = true
				acks <- stored{msg.Stored}
			}
		}
	}()
	progress := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return lastCommitted - startCommitted
	}

	sent := committed
	for {
		u.mu.Lock()
		avail, ended := u.win.end-sent, u.ended
		u.mu.Unlock()
		if avail == 0 {
			if ended {
				break
			}
			select {
			case <-u.data:
				continue
			case err := <-recvErr:
				return progress(), err
			case <-sctx.Done():
				return progress(), sctx.Err()
			}
		}
		// The chunk is sent straight from the window: the bytes from sent on
		// stay until the controller acknowledges them, which it cannot do
		// before this Send has returned, and gRPC has serialised the
		// message by then.
		u.mu.Lock()
		chunk := u.win.slice(sent, min(avail, int64(u.pacer.Chunk())))
		u.mu.Unlock()
		n := len(chunk)
		if err := u.pacer.Wait(sctx, n); err != nil {
			return progress(), err
		}
		if err := stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Chunk{Chunk: &agentv1.EvidenceChunk{
			Offset: uint64(sent), Data: chunk, Crc32C: crc32.Checksum(chunk, castagnoli)}}}); err != nil {
			return progress(), recvStatus(stream, err)
		}
		sent += int64(n)
	}
	u.mu.Lock()
	size, sum, finished := u.win.end, u.sum, u.finished
	u.mu.Unlock()
	if err := stream.Send(&agentv1.UploadEvidenceRequest{Msg: &agentv1.UploadEvidenceRequest_Finish{Finish: &agentv1.EvidenceFinish{
		Size: uint64(size), Sha256: sum, StartedAt: timestamppb.New(u.started), FinishedAt: timestamppb.New(finished)}}}); err != nil {
		return progress(), recvStatus(stream, err)
	}
	select {
	case s := <-acks:
		if s.msg.GetSha256() != hex.EncodeToString(sum) || s.msg.GetSize() != uint64(size) {
			return progress(), &errPermanent{fmt.Errorf("the controller stored %d bytes with SHA-256 %s, not the %d bytes with %x this agent sent",
				s.msg.GetSize(), s.msg.GetSha256(), size, sum)}
		}
		u.mu.Lock()
		u.evidenceID = s.msg.GetEvidenceId()
		u.mu.Unlock()
		u.a.cfg.Logger.Info("evidence stored", "task", u.taskID, "artifact", u.name, "evidence", s.msg.GetEvidenceId(), "bytes", size,
			"sha256", s.msg.GetSha256(), "seconds", u.a.cfg.Clock().Sub(u.started).Round(time.Millisecond).Seconds())
		// The evidence is stored whatever happens next; read the stream to
		// the controller's end of it (briefly), so the RPC ends OK.
		_ = stream.CloseSend()
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case err := <-drained:
			if !errors.Is(err, io.EOF) {
				u.a.cfg.Logger.Debug("the evidence upload stream ended with an error after the evidence was stored", "task", u.taskID, "artifact", u.name, "error", err)
			}
		case <-t.C:
		case <-sctx.Done():
		}
		return progress(), nil
	case err := <-recvErr:
		if status.Code(err) == codes.DataLoss {
			// At finish, DataLoss means the whole upload did not match:
			// the controller refused it, and sending it again cannot help.
			return progress(), &errPermanent{err}
		}
		return progress(), err
	case <-sctx.Done():
		return progress(), sctx.Err()
	}
}

// dialUpload opens a connection of its own for an upload, so bulk data
// never delays the task stream, with buffers sized for bulk transfer
// rather than for an idle stream.
// It goes to the controller that holds the agent's stream; while the agent
// has none, the upload waits and resumes.
func (a *Agent) dialUpload() (*grpc.ClientConn, error) {
	a.mu.Lock()
	t := a.target
	a.mu.Unlock()
	if t.Addr == "" {
		return nil, errors.New("not connected to a controller; the upload resumes once the agent reconnects")
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(a.id.caPool, a.id.current))),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithWriteBufferSize(uploadWriteBuffer),
		grpc.WithReadBufferSize(16 << 10),
		experimental.WithBufferPool(rpcbuf.Shared),
	}
	if a.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(a.cfg.Dialer))
	}
	return grpc.NewClient("passthrough:///"+t.Addr, opts...)
}

// recvStatus turns the io.EOF a client stream's Send returns when the
// server has ended the stream into the server's status.
func recvStatus(stream agentv1.AgentService_UploadEvidenceClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if _, rerr := stream.Recv(); rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return errors.New("the controller ended the upload stream")
			}
			return rerr
		}
	}
}

// window is a ring buffer over an artifact's byte stream: it holds the
// bytes from base (the first byte the controller has not made durable) to
// end (the last byte produced).
type window struct {
	buf       []byte
	base, end int64
}

func newWindow(size int) *window { return &window{buf: make([]byte, size)} }

func (w *window) free() int64 { return int64(len(w.buf)) - (w.end - w.base) }

// fill copies p into the ring at offset off, which must be end, without
// moving end; p must fit in the free space.
func (w *window) fill(off int64, p []byte) {
	size := int64(len(w.buf))
	for len(p) > 0 {
		i := off % size
		n := copy(w.buf[i:], p)
		off += int64(n)
		p = p[n:]
	}
}

// slice returns up to n bytes at off without copying: as many as lie
// contiguously in the ring.
func (w *window) slice(off, n int64) []byte {
	size := int64(len(w.buf))
	i := off % size
	return w.buf[i : i+min(n, size-i)]
}

// release forgets the bytes before off.
func (w *window) release(off int64) {
	w.base = max(w.base, min(off, w.end))
}
