package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Audit log reading.
const (
	// auditBatch is how many records one ListAudit call returns (the
	// operator service's maximum).
	auditBatch = 10000
	// auditScanCap is how many of the newest records the audit page
	// searches.
	auditScanCap = 100000
)

// auditFilter narrows the audit log.
type auditFilter struct {
	// Actor and Action match exactly ("operator:alice", "run.create");
	// Action may end in "*" to match a prefix ("console.*").
	Actor, Action string
	// Subject matches exactly; Q is text anywhere in the subject or the
	// detail.
	Subject, Q string
}

func (f auditFilter) keep(r *operatorv1.AuditRecord) bool {
	if f.Actor != "" && r.GetActor() != f.Actor || f.Subject != "" && r.GetSubject() != f.Subject {
		return false
	}
	if a, ok := strings.CutSuffix(f.Action, "*"); ok {
		if !strings.HasPrefix(r.GetAction(), a) {
			return false
		}
	} else if f.Action != "" && r.GetAction() != f.Action {
		return false
	}
	q := strings.ToLower(f.Q)
	return q == "" || strings.Contains(strings.ToLower(r.GetSubject()), q) || strings.Contains(strings.ToLower(string(r.GetDetailJson())), q)
}

// newestAudit reads the audit log through ListAudit and returns its
// newest records, newest first, at most auditScanCap of them, and
// whether older ones were left out.
func (c *Console) newestAudit(ctx context.Context) ([]*operatorv1.AuditRecord, bool, error) {
	var recs []*operatorv1.AuditRecord
	dropped := false
	var after uint64
	for {
		resp, err := c.cfg.Operator.ListAudit(ctx, &operatorv1.ListAuditRequest{AfterSeq: after, Limit: auditBatch})
		if err != nil {
			return nil, false, err
		}
		batch := resp.GetRecords()
		recs = append(recs, batch...)
		if over := len(recs) - auditScanCap; over > 0 {
			recs, dropped = append(recs[:0:0], recs[over:]...), true
		}
		if len(batch) < auditBatch {
			break
		}
		after = batch[len(batch)-1].GetSeq()
	}
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs, dropped, nil
}

// auditLog shows the audit log, newest first, filtered by actor, action,
// subject and text, paged.
func (c *Console) auditLog(w http.ResponseWriter, r *http.Request) {
	c.showAudit(w, r, nil)
}

// showAudit renders the audit page, with the outcome of a chain check
// just run when there is one.
func (c *Console) showAudit(w http.ResponseWriter, r *http.Request, verified *operatorv1.VerifyAuditResponse) {
	ctx, err := c.authorize(r, method("ListAudit"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	recs, dropped, err := c.newestAudit(ctx)
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := auditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")), Subject: strings.TrimSpace(q.Get("subject")),
		Q: strings.TrimSpace(q.Get("q"))}
	key := func(r *operatorv1.AuditRecord) string { return strconv.FormatUint(r.GetSeq(), 10) }
	p := paginate(recs, key, f.keep, q.Get("after"), c.cfg.PageSize)
	p.Filtered = f != auditFilter{}
	p.link(r, "/audit")
	if dropped {
		p.Capped = fmt.Sprintf("only the newest %d records are searched", auditScanCap)
	}
	c.render(w, r, http.StatusOK, "audit", map[string]any{"Page": p, "Filter": f, "Verified": verified})
}

// verifyAudit checks the audit log's hash chain through the operator
// service's VerifyAudit, as `firebreak audit verify` does, and shows the
// outcome above the log.
func (c *Console) verifyAudit(w http.ResponseWriter, r *http.Request) {
	ctx, err := c.authorize(r, method("VerifyAudit"))
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	resp, err := c.cfg.Operator.VerifyAudit(ctx, &operatorv1.VerifyAuditRequest{})
	if err != nil {
		c.serviceError(w, r, err)
		return
	}
	c.showAudit(w, r, resp)
}
