package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// NewEvidenceCmd is `firebreak evidence`: list, fetch and verify evidence.
func NewEvidenceCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "List, fetch and verify collected evidence and its chain of custody",
		Long: `Evidence is what collections (firebreak collect) uploaded: stored by the
controller content-addressed by SHA-256, locally or in S3, each item with a
hash-chained custody record. Fetching, exporting and verifying an item are
recorded in its custody record and in the audit log.

Exit codes: 0 ok · 1 error · 2 usage · 6 the stored evidence or its custody
record does not verify.`,
	}
	cmd.AddCommand(newEvidenceListCmd(g), newEvidenceGetCmd(g), newEvidenceVerifyCmd(g), newEvidenceCustodyCmd(g), newEvidenceHeadCmd(g))
	return cmd
}

func (c *client) evidence() operatorv1.EvidenceServiceClient {
	return operatorv1.NewEvidenceServiceClient(c.conn)
}

// evidenceJSON is one item in the --json output of the evidence commands.
type evidenceJSON struct {
	ID                   string      `json:"id"`
	TaskID               string      `json:"task_id"`
	RunID                string      `json:"run_id"`
	CaseID               string      `json:"case_id,omitempty"`
	Operator             string      `json:"operator"`
	AgentID              string      `json:"agent_id"`
	AgentCertSerial      string      `json:"agent_cert_serial"`
	AgentCertFingerprint string      `json:"agent_cert_fingerprint"`
	Hostname             string      `json:"hostname"`
	Name                 string      `json:"name"`
	MediaType            string      `json:"media_type"`
	Size                 uint64      `json:"size"`
	SHA256               string      `json:"sha256"`
	Backend              string      `json:"backend"`
	Location             string      `json:"location"`
	CollectionStartedAt  *time.Time  `json:"collection_started_at,omitempty"`
	CollectionFinishedAt *time.Time  `json:"collection_finished_at,omitempty"`
	StoredAt             *time.Time  `json:"stored_at,omitempty"`
	RetainUntil          *time.Time  `json:"retain_until,omitempty"`
	Resumes              uint32      `json:"upload_resumes"`
	LastVerifiedAt       *time.Time  `json:"last_verified_at,omitempty"`
	LastVerdict          string      `json:"last_verdict,omitempty"`
	Bundle               *bundleJSON `json:"bundle,omitempty"`
}

type bundleJSON struct {
	Valid            bool                                 `json:"valid"`
	Problem          string                               `json:"problem,omitempty"`
	Collector        string                               `json:"collector"`
	Profile          string                               `json:"profile"`
	Compression      string                               `json:"compression"`
	Members          uint32                               `json:"members"`
	PayloadBytes     uint64                               `json:"payload_bytes"`
	Truncated        bool                                 `json:"truncated"`
	TruncatedReasons []string                             `json:"truncated_reasons,omitempty"`
	ManifestTaskID   string                               `json:"manifest_task_id,omitempty"`
	Host             *operatorv1.EvidenceHost             `json:"host,omitempty"`
	Artifacts        []*operatorv1.EvidenceArtifactStatus `json:"artifacts,omitempty"`
}

// verdictName is a verdict as the evidence commands print it: "ok",
// "mismatch", …, and "" for none yet.
func verdictName(v operatorv1.EvidenceVerdict) string {
	if v == operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNSPECIFIED {
		return ""
	}
	return apiview.EnumName(v)
}

func toEvidenceJSON(it *operatorv1.EvidenceItem) evidenceJSON {
	out := evidenceJSON{ID: it.GetId(), TaskID: it.GetTaskId(), RunID: it.GetRunId(), CaseID: it.GetCaseId(), Operator: it.GetOperator(),
		AgentID: it.GetAgentId(), AgentCertSerial: it.GetAgentCertSerial(), AgentCertFingerprint: it.GetAgentCertFingerprint(),
		Hostname: it.GetHostname(), Name: it.GetName(), MediaType: it.GetMediaType(), Size: it.GetSize(), SHA256: it.GetSha256(),
		Backend: it.GetBackend(), Location: it.GetLocation(), CollectionStartedAt: apiview.Time(it.GetCollectionStartedAt()),
		CollectionFinishedAt: apiview.Time(it.GetCollectionFinishedAt()), StoredAt: apiview.Time(it.GetStoredAt()), RetainUntil: apiview.Time(it.GetRetainUntil()),
		Resumes: it.GetResumes(), LastVerifiedAt: apiview.Time(it.GetLastVerifiedAt()), LastVerdict: verdictName(it.GetLastVerdict())}
	if b := it.GetBundle(); b != nil {
		out.Bundle = &bundleJSON{Valid: b.GetValid(), Problem: b.GetProblem(), Collector: strings.TrimSpace(b.GetCollectorName() + " " + b.GetCollectorVersion()),
			Profile: b.GetProfile(), Compression: b.GetCompression(), Members: b.GetMembers(), PayloadBytes: b.GetPayloadBytes(),
			Truncated: b.GetTruncated(), TruncatedReasons: b.GetTruncatedReasons(), ManifestTaskID: b.GetManifestTaskId(), Host: b.GetHost(),
			Artifacts: b.GetArtifacts()}
	}
	return out
}

func newEvidenceListCmd(g *Globals) *cobra.Command {
	var req operatorv1.ListEvidenceRequest
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List evidence items, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			req.Limit = limit
			resp, err := c.evidence().ListEvidence(ctx, &req)
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				out := []evidenceJSON{}
				for _, it := range resp.GetItems() {
					out = append(out, toEvidenceJSON(it))
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "EVIDENCE\tHOSTNAME\tNAME\tSIZE\tSHA256\tSTORED\tRUN\tVERIFIED")
			for _, it := range resp.GetItems() {
				verified := "-"
				if it.GetLastVerifiedAt() != nil {
					verified = verdictName(it.GetLastVerdict()) + " " + it.GetLastVerifiedAt().AsTime().Local().Format(time.RFC3339)
				}
				name := it.GetName()
				if b := it.GetBundle(); b != nil && !b.GetValid() {
					name += " (INVALID BUNDLE)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s…\t%s\t%s\t%s\n", it.GetId(), clean(it.GetHostname()), clean(name), humanize.IBytes(it.GetSize()),
					it.GetSha256()[:min(16, len(it.GetSha256()))], it.GetStoredAt().AsTime().Local().Format(time.RFC3339), it.GetRunId(), verified)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.RunId, "run", "", "only the evidence of this run")
	f.StringVar(&req.TaskId, "task", "", "only the evidence of this task")
	f.StringVar(&req.CaseId, "case", "", "only the evidence of this case")
	f.StringVar(&req.AgentId, "agent", "", "only the evidence this agent uploaded")
	f.Uint32Var(&limit, "limit", 100, "most items to show")
	return cmd
}

func newEvidenceGetCmd(g *Globals) *cobra.Command {
	var out, reason, exportTo string
	var force bool
	cmd := &cobra.Command{
		Use:   "get EVIDENCE_ID -o FILE",
		Short: "Download an evidence item, verifying its SHA-256 while writing",
		Long: `Download an evidence item to FILE. The bytes are hashed as they are written;
FILE appears only once they match the SHA-256 recorded at collection (until
then they are in FILE.partial). The download is recorded in the item's
custody record, with --reason; --export-to records it as an export to that
recipient instead. A mismatch exits 6 and leaves no FILE.`,
		Example: `  firebreak evidence get evd-0123456789abcdef -o web-1-triage.tar.gz --reason "case 42 triage"
  firebreak evidence get evd-0123456789abcdef -o copy.tar.gz --export-to "Acme Forensics (J. Doe)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return ExitWith(ExitUsage, errors.New("give the file to write with -o FILE"))
			}
			if _, err := os.Lstat(out); err == nil && !force {
				return ExitWith(ExitUsage, fmt.Errorf("%s exists: choose another -o FILE, or pass --force to replace it", out))
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := g.download(cmd.Context(), c, &operatorv1.GetEvidenceRequest{EvidenceId: args[0], Reason: reason, ExportTo: exportTo}, out)
			if err != nil {
				return err
			}
			if g.json {
				return g.PrintJSON(res)
			}
			fmt.Fprintf(g.out, "%s  %s\n", res.SHA256, res.File)
			fmt.Fprintf(g.errOut, "evidence %s: %s written to %s, SHA-256 verified; recorded as custody entry %d\n", res.EvidenceID,
				humanize.IBytes(res.Size), res.File, res.CustodySeq)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "file to write (required)")
	f.StringVar(&reason, "reason", "", "why, for the custody record")
	f.StringVar(&exportTo, "export-to", "", "recipient outside the organisation; records an export instead of a download")
	f.BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

// downloadJSON is the --json output of `evidence get`.
type downloadJSON struct {
	EvidenceID string `json:"evidence_id"`
	File       string `json:"file"`
	Size       uint64 `json:"size"`
	SHA256     string `json:"sha256"`
	Verified   bool   `json:"verified"`
	CustodySeq uint64 `json:"custody_seq"`
}

// download streams an item into file through file.partial, renaming it
// only once the SHA-256 matches what was collected.
func (g *Globals) download(ctx context.Context, c *client, req *operatorv1.GetEvidenceRequest, file string) (*downloadJSON, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.evidence().GetEvidence(ctx, req)
	if err != nil {
		return nil, rpcError(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, rpcError(err)
	}
	info := first.GetInfo()
	if info == nil {
		return nil, errors.New("the controller did not start the download with the item's record")
	}
	partial := file + ".partial"
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(partial)
		}
	}()
	var bar *progressbar.ProgressBar
	if !g.json && isTerminal(g.progressOut()) {
		bar = progressbar.NewOptions64(int64(info.GetSize()), progressbar.OptionSetWriter(g.progressOut()), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(info.GetId()), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(), progressbar.OptionShowCount())
	}
	h := sha256.New()
	var n uint64
	var end *operatorv1.EvidenceEnd
	for end == nil {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the download of %s ended after %d of %d bytes without its end message", info.GetId(), n, info.GetSize())
		}
		if err != nil {
			return nil, rpcError(err)
		}
		switch msg := m.GetMsg().(type) {
		case *operatorv1.GetEvidenceResponse_Data:
			if msg.Data.GetOffset() != n {
				return nil, fmt.Errorf("the controller sent bytes at offset %d, expected %d", msg.Data.GetOffset(), n)
			}
			if _, err := f.Write(msg.Data.GetData()); err != nil {
				return nil, fmt.Errorf("writing %s: %w", partial, err)
			}
			h.Write(msg.Data.GetData())
			n += uint64(len(msg.Data.GetData()))
			if bar != nil {
				_ = bar.Set64(int64(n))
			}
		case *operatorv1.GetEvidenceResponse_End:
			end = msg.End
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	sum := hex.EncodeToString(h.Sum(nil))
	// The bytes are checked against what was recorded at collection, not
	// only against what the controller says it sent.
	if sum != info.GetSha256() || n != info.GetSize() {
		return nil, ExitWith(ExitVerifyFailed, fmt.Errorf("evidence %s MISMATCH: received %d bytes with SHA-256 %s; %d bytes with %s were collected; nothing was written to %s",
			info.GetId(), n, sum, info.GetSize(), info.GetSha256(), file))
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	keep = true
	if err := os.Rename(partial, file); err != nil {
		os.Remove(partial)
		return nil, err
	}
	abs, _ := filepath.Abs(file)
	return &downloadJSON{EvidenceID: info.GetId(), File: abs, Size: n, SHA256: sum, Verified: true, CustodySeq: end.GetCustodySeq()}, nil
}

// verifyJSON is the --json output of `evidence verify`.
type verifyJSON struct {
	OK      bool               `json:"ok"`
	Total   uint32             `json:"total"`
	Failed  int                `json:"failed"`
	Results []verifyResultJSON `json:"results"`
}

type verifyResultJSON struct {
	EvidenceID      string    `json:"evidence_id"`
	Verdict         string    `json:"verdict"`
	Problem         string    `json:"problem,omitempty"`
	Size            uint64    `json:"size"`
	SHA256          string    `json:"sha256"`
	MembersVerified uint32    `json:"members_verified"`
	CustodyOK       bool      `json:"custody_ok"`
	Location        string    `json:"location"`
	VerifiedAt      time.Time `json:"verified_at"`
}

func newEvidenceVerifyCmd(g *Globals) *cobra.Command {
	var all bool
	var anchorFile string
	cmd := &cobra.Command{
		Use:   "verify EVIDENCE_ID [--anchor FILE] | --all",
		Short: "Re-hash evidence from the store, re-check bundle manifests and custody; exit 6 on any mismatch",
		Long: `Read each item back from the evidence store, re-compute its SHA-256 and
compare it with the one recorded at collection, check every member of a
bundle against its manifest, and re-compute the item's custody chain. Each
verification is recorded in the item's custody record, and the controller
signs a checkpoint of the custody head it reached. The custody chain is
checked against the newest such checkpoint, so a cut-off tail or a chain
rewritten with recomputed hashes is broken custody. With --anchor FILE (a
head exported by ` + "`firebreak evidence head`" + `), the record must also still
hold that head at its position. Exit 6 when any item does not verify
(altered, missing, invalid bundle, broken custody).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) || len(args) > 1 {
				return ExitWith(ExitUsage, errors.New("give one EVIDENCE_ID or --all"))
			}
			if all && anchorFile != "" {
				return ExitWith(ExitUsage, errors.New("--anchor checks one item: give its EVIDENCE_ID, not --all"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &operatorv1.VerifyEvidenceRequest{All: all}
			if !all {
				req.EvidenceId = args[0]
			}
			if anchorFile != "" {
				var err error
				if req.Anchor, err = readAnchor(anchorFile); err != nil {
					return err
				}
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			stream, err := c.evidence().VerifyEvidence(cmd.Context(), req)
			if err != nil {
				return rpcError(err)
			}
			out := verifyJSON{OK: true, Results: []verifyResultJSON{}}
			var bar *progressbar.ProgressBar
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			if !g.json {
				fmt.Fprintln(tw, "EVIDENCE\tVERDICT\tSIZE\tSHA256\tMEMBERS\tCUSTODY\tPROBLEM")
			}
			unreadable := 0
			for {
				m, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return rpcError(err)
				}
				switch msg := m.GetMsg().(type) {
				case *operatorv1.VerifyEvidenceResponse_Started:
					out.Total = msg.Started.GetTotal()
					if !g.json && isTerminal(g.progressOut()) && out.Total > 1 {
						bar = progressbar.NewOptions(int(out.Total), progressbar.OptionSetWriter(g.progressOut()), progressbar.OptionShowCount(),
							progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(), progressbar.OptionSetDescription("verifying"))
					}
				case *operatorv1.VerifyEvidenceResponse_Result:
					r := msg.Result
					v := verifyResultJSON{EvidenceID: r.GetEvidenceId(), Verdict: verdictName(r.GetVerdict()), Problem: r.GetProblem(),
						Size: r.GetSize(), SHA256: r.GetSha256(), MembersVerified: r.GetMembersVerified(), CustodyOK: r.GetCustodyOk(),
						Location: r.GetLocation(), VerifiedAt: r.GetVerifiedAt().AsTime()}
					if r.GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
						out.OK = false
						out.Failed++
						if r.GetVerdict() == operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNREADABLE {
							unreadable++
						}
					}
					out.Results = append(out.Results, v)
					if bar != nil {
						_ = bar.Add(1)
					}
					if !g.json {
						custody := "ok"
						if !v.CustodyOK {
							custody = "BROKEN"
						}
						verdict := v.Verdict
						if verdict != "ok" {
							verdict = strings.ToUpper(verdict)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.EvidenceID, verdict, humanize.IBytes(v.Size), v.SHA256, v.MembersVerified, custody, clean(v.Problem))
					}
				}
			}
			if bar != nil {
				_ = bar.Finish()
			}
			if g.json {
				if err := g.PrintJSON(out); err != nil {
					return err
				}
			} else if err := tw.Flush(); err != nil {
				return err
			}
			switch {
			case out.Failed > unreadable:
				return ExitWith(ExitVerifyFailed, fmt.Errorf("%d of %d evidence items FAILED verification", out.Failed, out.Total))
			case unreadable > 0:
				return fmt.Errorf("%d of %d evidence items could not be read from the store; retry", unreadable, out.Total)
			}
			if !g.json {
				fmt.Fprintf(g.errOut, "%d evidence item(s) verified: hashes, bundle manifests and custody records intact\n", out.Total)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "verify every evidence item")
	cmd.Flags().StringVar(&anchorFile, "anchor", "", "a custody head exported earlier by `firebreak evidence head` that the record must still hold")
	return cmd
}

// custodyJSON is the --json output of `evidence custody`.
type custodyJSON struct {
	Evidence    evidenceJSON        `json:"evidence"`
	ChainOK     bool                `json:"chain_ok"`
	FirstBadSeq uint64              `json:"first_bad_seq,omitempty"`
	Problem     string              `json:"problem,omitempty"`
	Records     []custodyRecordJSON `json:"records"`
	// Checkpoint is the newest signed checkpoint of the custody head.
	Checkpoint *checkpointJSON `json:"checkpoint,omitempty"`
}

// checkpointJSON summarises a signed checkpoint in --json output.
type checkpointJSON struct {
	Length   uint64    `json:"length"`
	HeadHash string    `json:"head_hash"`
	At       time.Time `json:"at"`
	KeyID    string    `json:"key_id"`
}

type custodyRecordJSON struct {
	Seq      uint64          `json:"seq"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Detail   json.RawMessage `json:"detail"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

func newEvidenceCustodyCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "custody EVIDENCE_ID",
		Short: "Show an item's chain of custody and check its hash chain; exit 6 if it was tampered with",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.evidence().GetCustody(ctx, &operatorv1.GetCustodyRequest{EvidenceId: args[0]})
			if err != nil {
				return rpcError(err)
			}
			out := custodyJSON{Evidence: toEvidenceJSON(resp.GetItem()), ChainOK: resp.GetChainOk(), FirstBadSeq: resp.GetFirstBadSeq(),
				Problem: resp.GetProblem(), Records: []custodyRecordJSON{}}
			if cp := resp.GetCheckpoint(); cp != nil {
				out.Checkpoint = &checkpointJSON{Length: cp.GetLength(), HeadHash: cp.GetHeadHash(), At: cp.GetAt().AsTime(), KeyID: cp.GetKeyId()}
			}
			for _, r := range resp.GetRecords() {
				detail := json.RawMessage(r.GetDetailJson())
				if !json.Valid(detail) {
					detail = json.RawMessage("null")
				}
				out.Records = append(out.Records, custodyRecordJSON{Seq: r.GetSeq(), At: r.GetAt().AsTime(), Actor: r.GetActor(), Action: r.GetAction(),
					Detail: detail, PrevHash: r.GetPrevHash(), Hash: r.GetHash()})
			}
			if g.json {
				if err := g.PrintJSON(out); err != nil {
					return err
				}
			} else {
				it := resp.GetItem()
				fmt.Fprintf(g.out, "evidence %s  %s  %s  SHA-256 %s\n", it.GetId(), it.GetName(), humanize.IBytes(it.GetSize()), it.GetSha256())
				fmt.Fprintf(g.out, "collected from %s (agent %s, certificate %s) for task %s of run %s by %s\n",
					it.GetHostname(), it.GetAgentId(), it.GetAgentCertFingerprint(), it.GetTaskId(), it.GetRunId(), it.GetOperator())
				fmt.Fprintf(g.out, "stored at %s\n\n", it.GetLocation())
				tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tHASH\tDETAIL")
				for _, r := range out.Records {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s…\t%s\n", r.Seq, r.At.Local().Format(time.RFC3339), r.Actor, r.Action, r.Hash[:min(16, len(r.Hash))],
						clipText(string(r.Detail), 120))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if !resp.GetChainOk() {
				return ExitWith(ExitVerifyFailed, fmt.Errorf("custody record of %s TAMPERED at entry %d: %s", args[0], resp.GetFirstBadSeq(), resp.GetProblem()))
			}
			if !g.json {
				fmt.Fprintf(g.errOut, "custody chain intact: %d entries\n", len(out.Records))
				if cp := resp.GetCheckpoint(); cp != nil {
					fmt.Fprintf(g.errOut, "signed checkpoint holds: %s\n", describeCheckpoint(cp))
				}
			}
			return nil
		},
	}
}

func newEvidenceHeadCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "head EVIDENCE_ID",
		Short: "Export the signed head of an item's custody record (an anchor) as JSON; exit 6 if the record does not verify",
		Long: `Check an item's custody record and print the controller's signed checkpoint
of its head as JSON. Keep the output outside the controller (with the case
file, for instance); a later ` + "`firebreak evidence verify EVIDENCE_ID --anchor FILE`" + `
checks that the record still holds that entry with that hash.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.evidence().GetCustody(ctx, &operatorv1.GetCustodyRequest{EvidenceId: args[0]})
			if err != nil {
				return rpcError(err)
			}
			if !resp.GetChainOk() {
				return ExitWith(ExitVerifyFailed, fmt.Errorf("custody record of %s TAMPERED at entry %d: %s; no head is exported", args[0],
					resp.GetFirstBadSeq(), resp.GetProblem()))
			}
			if resp.GetCheckpoint() == nil {
				return fmt.Errorf("the custody record of %s has no signed checkpoint yet: run `firebreak evidence verify %s`, which writes one", args[0], args[0])
			}
			if err := g.printAnchor(resp.GetCheckpoint()); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "custody head of %s: %s\n", args[0], describeCheckpoint(resp.GetCheckpoint()))
			return nil
		},
	}
}
