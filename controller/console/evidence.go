package console

import (
	"context"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// evidenceListCap is how many items the evidence list reads: the
// evidence service's own maximum.
const evidenceListCap = 10000

// errNoEvidence is the refusal when the controller has no evidence
// service (a console built without one).
var errNoEvidence = status.Error(codes.Unavailable, "this controller serves no evidence store")

// evidenceFilter narrows the evidence list.
type evidenceFilter struct{ Run, Task, Case, Agent string }

// evidenceList lists evidence items, filtered by run, task, case and
// agent, paged.
func (c *Console) evidenceList(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("EvidenceService/ListEvidence"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Evidence == nil {
		c.serviceError(w, r, errNoEvidence)
		return
	}
	q := r.URL.Query()
	f := evidenceFilter{Run: q.Get("run"), Task: q.Get("task"), Case: q.Get("case"), Agent: q.Get("agent")}
	resp, err := c.cfg.Evidence.ListEvidence(ctx, &operatorv1.ListEvidenceRequest{RunId: f.Run, TaskId: f.Task, CaseId: f.Case, AgentId: f.Agent,
		Limit: evidenceListCap})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	p := paginate(resp.GetItems(), (*operatorv1.EvidenceItem).GetId, nil, q.Get("after"), c.cfg.PageSize)
	p.Filtered = f != evidenceFilter{}
	p.link(r, "")
	if len(resp.GetItems()) >= evidenceListCap {
		p.Capped = fmt.Sprintf("only %d items are listed: narrow the list by run, case or agent", evidenceListCap)
	}
	c.render(w, r, http.StatusOK, "evidence", map[string]any{"Page": p, "Filter": f})
}

// evidencePage shows one item: its hash, where it is stored, its Object
// Lock retention, the run and task that collected it, and its whole
// custody chain with whether the chain verifies.
func (c *Console) evidencePage(w http.ResponseWriter, r *http.Request) {
	c.showEvidence(w, r, nil)
}

// showEvidence renders the item page, with the outcome of a verification
// just run when there is one.
func (c *Console) showEvidence(w http.ResponseWriter, r *http.Request, verified *operatorv1.EvidenceVerification) {
	ctx, err := c.authorize(r, method("EvidenceService/GetCustody"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Evidence == nil {
		c.serviceError(w, r, errNoEvidence)
		return
	}
	resp, err := c.cfg.Evidence.GetCustody(ctx, &operatorv1.GetCustodyRequest{EvidenceId: r.PathValue("id")})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "evidence_item", map[string]any{"Item": resp.GetItem(), "Custody": resp, "Verified": verified})
}

// verifyEvidence re-reads the item from the evidence store and checks it
// through the evidence service's VerifyEvidence, which records the
// verification in the item's custody record, then shows the item with
// the outcome.
func (c *Console) verifyEvidence(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("EvidenceService/VerifyEvidence"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Evidence == nil {
		c.serviceError(w, r, errNoEvidence)
		return
	}
	var result *operatorv1.EvidenceVerification
	stream := &localStream[operatorv1.VerifyEvidenceResponse]{ctx: withBrowserPeer(ctx, r), send: func(m *operatorv1.VerifyEvidenceResponse) error {
		if v := m.GetResult(); v != nil {
			result = v
		}
		return nil
	}}
	if err := c.cfg.Evidence.VerifyEvidence(&operatorv1.VerifyEvidenceRequest{EvidenceId: r.PathValue("id")}, stream); err != nil {
		c.serviceError(w, r, err)
		return
	}
	c.showEvidence(w, r, result)
}

// downloadEvidence sends an item's bytes through the evidence service's
// GetEvidence, which records the download in the item's custody record,
// naming the operator, before it sends the first byte: the response
// headers go out only when the service's first message (the item) comes,
// after that entry is stored. A download the service cannot finish
// (the stored copy no longer matches what was collected) is cut off, so
// the browser reports it failed instead of keeping a bad copy.
func (c *Console) downloadEvidence(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("EvidenceService/GetEvidence"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	if c.cfg.Evidence == nil {
		c.serviceError(w, r, errNoEvidence)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.renderError(w, r, http.StatusBadRequest, "give a reason: it is kept in the item's custody record")
		return
	}
	started := false
	stream := &localStream[operatorv1.GetEvidenceResponse]{ctx: withBrowserPeer(ctx, r), send: func(m *operatorv1.GetEvidenceResponse) error {
		switch msg := m.GetMsg().(type) {
		case *operatorv1.GetEvidenceResponse_Info:
			it := msg.Info
			h := w.Header()
			ct := it.GetMediaType()
			if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
				ct = "application/octet-stream"
			}
			// Security-critical: the bytes are collected from a possibly
			// compromised host; they are always an attachment, never a
			// page the console's origin renders.
			h.Set("Content-Type", ct)
			h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": downloadName(it)}))
			h.Set("Content-Length", strconv.FormatUint(it.GetSize(), 10))
			h.Set("X-Evidence-Sha256", it.GetSha256())
			w.WriteHeader(http.StatusOK)
			started = true
		case *operatorv1.GetEvidenceResponse_Data:
			if _, err := w.Write(msg.Data.GetData()); err != nil {
				return err
			}
		}
		return nil
	}}
	err = c.cfg.Evidence.GetEvidence(&operatorv1.GetEvidenceRequest{EvidenceId: r.PathValue("id"), Reason: reason}, stream)
	if err == nil {
		return
	}
	if !started {
		c.serviceError(w, r, err)
		return
	}
	c.cfg.Logger.Warn("console: an evidence download was cut off", "evidence", r.PathValue("id"), "error", err)
	panic(http.ErrAbortHandler)
}

// downloadName is the file name a download is saved as: the item's id
// and its artifact's name, reduced to safe characters.
func downloadName(it *operatorv1.EvidenceItem) string {
	name := it.GetId()
	if n := it.GetName(); n != "" {
		name += "-" + n
	}
	return safeFileName(name)
}

// withBrowserPeer puts the browser's address in ctx as the gRPC peer, so
// a custody entry names where the access came from, as it does for the
// CLI.
func withBrowserPeer(ctx context.Context, r *http.Request) context.Context {
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ctx
	}
	p, _ := strconv.Atoi(port)
	return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(host), Port: p}})
}
