package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// statingController answers every evidence upload's open with opened,
// stating the upload protocol it was built with, and records what the
// agent sent after that.
type statingController struct {
	agentv1.UnimplementedAgentServiceServer
	protocol agentv1.UploadProtocol
	opens    chan *agentv1.EvidenceOpen
	chunks   chan int
}

func (c *statingController) UploadEvidence(stream agentv1.AgentService_UploadEvidenceServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	c.opens <- m.GetOpen()
	if err := stream.Send(&agentv1.UploadEvidenceResponse{Msg: &agentv1.UploadEvidenceResponse_Opened{Opened: &agentv1.EvidenceOpened{Protocol: c.protocol}}}); err != nil {
		return err
	}
	n := 0
	for {
		m, err := stream.Recv()
		if err != nil {
			c.chunks <- n
			return nil
		}
		if m.GetChunk() != nil {
			n++
		}
	}
}

// TestUploadRefusesAControllerOfAnotherProtocol: the agent states its
// protocol in open, and a controller that answers with another one (a
// version-1 controller states none) is refused for good, before any chunk
// is sent, with an error that says which side to upgrade.
func TestUploadRefusesAControllerOfAnotherProtocol(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stated    agentv1.UploadProtocol
		wantError string
	}{
		{name: "version 1 states none", stated: agentv1.UploadProtocol_UPLOAD_PROTOCOL_UNSPECIFIED, wantError: "speaks upload protocol 1"},
		{name: "version 1 stated", stated: agentv1.UploadProtocol_UPLOAD_PROTOCOL_V1_SHA256_CHUNKS, wantError: "speaks upload protocol 1"},
		{name: "a later version", stated: agentv1.UploadProtocol(3), wantError: "speaks upload protocol 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl := &statingController{protocol: tc.stated, opens: make(chan *agentv1.EvidenceOpen, 1), chunks: make(chan int, 1)}
			addr, id := serveController(t, "agt-test", func(srv *grpc.Server) { agentv1.RegisterAgentServiceServer(srv, ctl) })
			a := &Agent{cfg: Config{}, id: id, target: ctrladdr.Target{Addr: addr}}
			u := &evidenceUpload{a: a, taskID: "tsk-1", name: "triage.tar.gz", mediaType: "application/gzip", started: time.Now(),
				pacer: a.uploadPacer(&agentv1.TaskSpec{}), win: newWindow(evidenceWindow), whole: sha256.New(),
				data: make(chan struct{}, 1), space: make(chan struct{}, 1), abort: make(chan struct{}), done: make(chan struct{})}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := u.session(ctx, 1)
			var permanent *errPermanent
			if !errors.As(err, &permanent) || !strings.Contains(err.Error(), tc.wantError) || !strings.Contains(err.Error(), "upgrade the controller") {
				t.Fatalf("session against a controller stating %v: %v; want a permanent error containing %q and the upgrade advice", tc.stated, err, tc.wantError)
			}
			if retryable(err, 0) {
				t.Fatalf("a protocol mismatch is retried: %v", err)
			}
			if open := <-ctl.opens; open.GetProtocol() != uploadProtocol {
				t.Fatalf("the agent stated protocol %v in open, want %v", open.GetProtocol(), uploadProtocol)
			}
			if n := <-ctl.chunks; n != 0 {
				t.Fatalf("the agent sent %d chunks to a controller of another protocol", n)
			}
		})
	}
}
