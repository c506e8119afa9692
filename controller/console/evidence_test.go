package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/console"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fakeEvidence is an evidence service over items in memory with a
// custody record per item, as the evidence service keeps: a download or
// verification appends an entry naming the operator before anything is
// sent.
type fakeEvidence struct {
	operatorv1.UnimplementedEvidenceServiceServer
	mu      sync.Mutex
	items   map[string]*operatorv1.EvidenceItem
	data    map[string][]byte
	custody map[string][]*operatorv1.CustodyRecord
	// tampered, when set, ends a download with DATA_LOSS after its bytes.
	tampered bool
}

func newFakeEvidence() *fakeEvidence {
	f := &fakeEvidence{items: map[string]*operatorv1.EvidenceItem{}, data: map[string][]byte{}, custody: map[string][]*operatorv1.CustodyRecord{}}
	for i := range 120 {
		id := fmt.Sprintf("evd-%03d", i)
		b := []byte(fmt.Sprintf("memory of host %d", i))
		sum := sha256.Sum256(b)
		f.items[id] = &operatorv1.EvidenceItem{Id: id, Name: "mem.lime", MediaType: "application/octet-stream", Size: uint64(len(b)),
			Sha256: hex.EncodeToString(sum[:]), Backend: "s3", Location: "s3://evidence/" + hex.EncodeToString(sum[:]), RunId: "iso", TaskId: "iso-t1",
			AgentId: "agent-001", Hostname: hostile, RetainUntil: timestamppb.New(timestamppb.Now().AsTime().AddDate(1, 0, 0))}
		f.data[id] = b
		f.custody[id] = []*operatorv1.CustodyRecord{{Seq: 1, Actor: "agent:agent-001", Action: "collected", DetailJson: []byte(`{"note":"` + "\\u003cscript\\u003e" + `"}`)}}
	}
	return f
}

func (f *fakeEvidence) append(ctx context.Context, id, action string) {
	op, _ := auth.OperatorFrom(ctx)
	from := ""
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.custody[id] = append(f.custody[id], &operatorv1.CustodyRecord{Seq: uint64(len(f.custody[id]) + 1), Actor: "operator:" + op.Name, Action: action,
		DetailJson: []byte(fmt.Sprintf(`{"from":%q}`, from))})
}

func (f *fakeEvidence) ListEvidence(_ context.Context, req *operatorv1.ListEvidenceRequest) (*operatorv1.ListEvidenceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &operatorv1.ListEvidenceResponse{}
	for i := range 120 {
		it := f.items[fmt.Sprintf("evd-%03d", i)]
		if req.GetRunId() != "" && it.GetRunId() != req.GetRunId() || req.GetAgentId() != "" && it.GetAgentId() != req.GetAgentId() {
			continue
		}
		out.Items = append(out.Items, it)
	}
	return out, nil
}

func (f *fakeEvidence) GetCustody(_ context.Context, req *operatorv1.GetCustodyRequest) (*operatorv1.GetCustodyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[req.GetEvidenceId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "evidence %s not found", req.GetEvidenceId())
	}
	return &operatorv1.GetCustodyResponse{Item: it, Records: append([]*operatorv1.CustodyRecord(nil), f.custody[it.GetId()]...), ChainOk: true}, nil
}

func (f *fakeEvidence) GetEvidence(req *operatorv1.GetEvidenceRequest, stream operatorv1.EvidenceService_GetEvidenceServer) error {
	f.mu.Lock()
	it, ok := f.items[req.GetEvidenceId()]
	data := f.data[req.GetEvidenceId()]
	tampered := f.tampered
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "evidence %s not found", req.GetEvidenceId())
	}
	f.append(stream.Context(), it.GetId(), "download")
	if err := stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_Info{Info: it}}); err != nil {
		return err
	}
	if err := stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_Data{Data: &operatorv1.EvidenceData{Data: data}}}); err != nil {
		return err
	}
	if tampered {
		return status.Error(codes.DataLoss, "the stored copy was altered")
	}
	return stream.Send(&operatorv1.GetEvidenceResponse{Msg: &operatorv1.GetEvidenceResponse_End{End: &operatorv1.EvidenceEnd{Size: it.GetSize(), Sha256: it.GetSha256()}}})
}

func (f *fakeEvidence) VerifyEvidence(req *operatorv1.VerifyEvidenceRequest, stream operatorv1.EvidenceService_VerifyEvidenceServer) error {
	f.mu.Lock()
	it, ok := f.items[req.GetEvidenceId()]
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "evidence %s not found", req.GetEvidenceId())
	}
	f.append(stream.Context(), it.GetId(), "verify")
	if err := stream.Send(&operatorv1.VerifyEvidenceResponse{Msg: &operatorv1.VerifyEvidenceResponse_Started{Started: &operatorv1.VerifyStarted{Total: 1}}}); err != nil {
		return err
	}
	return stream.Send(&operatorv1.VerifyEvidenceResponse{Msg: &operatorv1.VerifyEvidenceResponse_Result{Result: &operatorv1.EvidenceVerification{
		EvidenceId: it.GetId(), Verdict: operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK, Size: it.GetSize(), Sha256: it.GetSha256(), CustodyOk: true,
		Location: it.GetLocation(), VerifiedAt: timestamppb.Now()}}})
}

func (f *fakeEvidence) setTampered(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tampered = v
}

func (f *fakeEvidence) actions(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.custody[id] {
		out = append(out, r.GetActor()+" "+r.GetAction())
	}
	return out
}

func TestEvidenceListIsPagedAndFiltered(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	tests := []struct {
		path, wantTotal string
		wantFiltered    bool
	}{
		{"/evidence", "120", false},
		{"/evidence?run=iso", "120", true},
		{"/evidence?agent=agent-999", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, vic, tc.srv.URL+tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			m := totalRE.FindStringSubmatch(body)
			if tt.wantTotal == "" && (m != nil || !strings.Contains(body, "Nothing to show")) || tt.wantTotal != "" && (m == nil || m[1] != tt.wantTotal) {
				t.Fatalf("total = %v, want %q", m, tt.wantTotal)
			}
			if got := strings.Contains(body, "(filtered)"); got != tt.wantFiltered {
				t.Fatalf("says filtered = %v, want %v", got, tt.wantFiltered)
			}
			if strings.Count(body, `<a href="/evidence/evd-`) > console.DefaultPageSize {
				t.Fatalf("more rows than a page")
			}
			if strings.Contains(body, "<script>document") {
				t.Fatalf("hostile text reached the page as markup")
			}
		})
	}
}

func TestEvidenceItemShowsHashLocationLockAndCustody(t *testing.T) {
	tc := newTestConsole(t)
	_, body := get(t, tc.signIn(t, "vic"), tc.srv.URL+"/evidence/evd-007")
	it := tc.ev.items["evd-007"]
	for _, want := range []string{it.GetSha256(), it.GetLocation(), "compliance mode, retained until", `<a href="/runs/iso">iso</a>`, "iso-t1",
		"agent:agent-001", "The chain verifies", `id="verify"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the item page lacks %q", want)
		}
	}
	// A viewer may verify but not read the bytes.
	if strings.Contains(body, `id="download"`) {
		t.Errorf("a viewer is offered the download")
	}
	for _, p := range domProblems(t, body) {
		t.Error(p)
	}
}

func TestEvidenceDownloadIsInTheCustodyChainBeforeItsBytes(t *testing.T) {
	tc := newTestConsole(t)
	alice, vic := tc.signIn(t, "alice"), tc.signIn(t, "vic")
	aliceToken, vicToken := tc.csrf(t, alice), tc.csrf(t, vic)
	tests := []struct {
		name        string
		client      *http.Client
		form        url.Values
		wantCode    int
		wantCustody string
	}{
		{"without the token", alice, url.Values{"reason": {"case 7"}}, http.StatusForbidden, ""},
		{"a viewer's forged download", vic, url.Values{"reason": {"x"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"without a reason", alice, url.Values{"csrf": {aliceToken}}, http.StatusBadRequest, ""},
		{"a responder downloads", alice, url.Values{"reason": {"case 7"}, "csrf": {aliceToken}}, http.StatusOK, "operator:alice download"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tc.ev.actions("evd-003"))
			resp, body := post(t, tt.client, tc.srv.URL+"/evidence/evd-003/download", tt.form)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tt.wantCode)
			}
			after := tc.ev.actions("evd-003")[before:]
			if tt.wantCustody == "" {
				if len(after) != 0 {
					t.Fatalf("a refused download reached the custody record: %v", after)
				}
				return
			}
			if len(after) != 1 || after[0] != tt.wantCustody {
				t.Fatalf("custody entries = %v, want %q", after, tt.wantCustody)
			}
			if body != string(tc.ev.data["evd-003"]) || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") ||
				resp.Header.Get("X-Evidence-Sha256") != tc.ev.items["evd-003"].GetSha256() {
				t.Fatalf("download: %q with %v", body, resp.Header)
			}
			// The item page shows the new entry.
			_, page := get(t, vic, tc.srv.URL+"/evidence/evd-003")
			if !strings.Contains(page, `<td class="actor">operator:alice</td><td class="custody-action">download</td>`) {
				t.Fatalf("the custody chain on the page lacks the download")
			}
		})
	}
	t.Run("a copy that no longer matches is cut off", func(t *testing.T) {
		tc.ev.setTampered(true)
		t.Cleanup(func() { tc.ev.setTampered(false) })
		resp, err := alice.PostForm(tc.srv.URL+"/evidence/evd-004/download", url.Values{"reason": {"x"}, "csrf": {aliceToken}})
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatalf("the download of an altered copy ended as if complete")
		}
	})
	t.Run("an unknown item", func(t *testing.T) {
		resp, _ := post(t, alice, tc.srv.URL+"/evidence/evd-nope/download", url.Values{"reason": {"x"}, "csrf": {aliceToken}})
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}

func TestEvidenceVerifyIsRecorded(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	resp, body := post(t, vic, tc.srv.URL+"/evidence/evd-009/verify", url.Values{"csrf": {tc.csrf(t, vic)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<strong id="verify-verdict">ok</strong>`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := tc.ev.actions("evd-009"); len(got) != 2 || got[1] != "operator:vic verify" {
		t.Fatalf("custody = %v, want the verification by vic", got)
	}
	if resp, _ := post(t, vic, tc.srv.URL+"/evidence/evd-009/verify", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a verify without the token: %d", resp.StatusCode)
	}
}
