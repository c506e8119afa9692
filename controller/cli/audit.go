package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// maxAnchorBytes caps an anchor file; a real one is well under 1 KiB.
const maxAnchorBytes = 64 << 10

// printAnchor writes a signed checkpoint as the JSON an anchor file holds.
func (g *Globals) printAnchor(cp *operatorv1.ChainCheckpoint) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(cp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(g.out, "%s\n", b)
	return err
}

// readAnchor reads an anchor file written by `audit head` or `evidence head`.
func readAnchor(path string) (*operatorv1.ChainCheckpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, ExitWith(ExitUsage, fmt.Errorf("reading the anchor: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAnchorBytes+1))
	if err != nil {
		return nil, ExitWith(ExitUsage, fmt.Errorf("reading the anchor %s: %w", path, err))
	}
	if len(b) > maxAnchorBytes {
		return nil, ExitWith(ExitUsage, fmt.Errorf("the anchor %s is over %d bytes: it is not an exported head", path, maxAnchorBytes))
	}
	cp := &operatorv1.ChainCheckpoint{}
	if err := protojson.Unmarshal(b, cp); err != nil {
		return nil, ExitWith(ExitUsage, fmt.Errorf("the anchor %s is not a head exported by `firebreak audit head` or `firebreak evidence head`: %w", path, err))
	}
	return cp, nil
}

// describeCheckpoint is one line about a signed checkpoint.
func describeCheckpoint(cp *operatorv1.ChainCheckpoint) string {
	return fmt.Sprintf("entry %d, head %s, signed %s by key %s", cp.GetLength(), cp.GetHeadHash(),
		cp.GetAt().AsTime().Local().Format(time.RFC3339), cp.GetKeyId())
}

func newAuditVerifyCmd(g *Globals) *cobra.Command {
	var anchorFile string
	cmd := &cobra.Command{
		Use:   "verify [--anchor FILE]",
		Short: "Recompute the audit hash chain and check it against its signed head; exit 6 if any record was edited or removed",
		Long: `Recompute the audit log's hash chain and check it against the newest
checkpoint of its head the controller signed: a record edited or removed
inside the log, a tail cut off (the log is shorter than the checkpoint), or
a chain rewritten with recomputed hashes (another hash at the checkpoint's
position) is tampering, and the command exits 6. With --anchor FILE, the
log must also still hold the head exported earlier by ` + "`firebreak audit head`" + `
at its position, which catches a cut even when the checkpoints were deleted
from the database too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &operatorv1.VerifyAuditRequest{}
			if anchorFile != "" {
				var err error
				if req.Anchor, err = readAnchor(anchorFile); err != nil {
					return err
				}
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.VerifyAudit(ctx, req)
			if err != nil {
				return rpcError(err)
			}
			if g.json {
				out := map[string]any{"ok": resp.GetOk(), "records": resp.GetRecords(), "first_bad_seq": resp.GetFirstBadSeq(),
					"problem": resp.GetProblem(), "head_hash": resp.GetHeadHash()}
				if cp := resp.GetCheckpoint(); cp != nil {
					out["checkpoint"] = map[string]any{"length": cp.GetLength(), "head_hash": cp.GetHeadHash(), "at": cp.GetAt().AsTime(), "key_id": cp.GetKeyId()}
				}
				if req.Anchor != nil {
					out["anchor_ok"] = resp.GetAnchorOk()
				}
				if err := g.PrintJSON(out); err != nil {
					return err
				}
			} else if resp.GetOk() {
				fmt.Fprintf(g.out, "audit log intact: %d records, head %s\n", resp.GetRecords(), resp.GetHeadHash())
				if cp := resp.GetCheckpoint(); cp != nil {
					fmt.Fprintf(g.out, "signed checkpoint holds: %s\n", describeCheckpoint(cp))
				} else {
					fmt.Fprintln(g.out, "no signed checkpoint is stored: a cut tail is caught only with --anchor")
				}
				if resp.GetAnchorOk() {
					fmt.Fprintf(g.out, "anchor holds: %s\n", describeCheckpoint(req.Anchor))
				}
			}
			if !resp.GetOk() {
				return ExitWith(ExitVerifyFailed, fmt.Errorf("audit log TAMPERED at record %d: %s", resp.GetFirstBadSeq(), resp.GetProblem()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&anchorFile, "anchor", "", "a head exported earlier by `firebreak audit head` that the log must still hold")
	return cmd
}

func newAuditHeadCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "head",
		Short: "Export the audit log's signed head (an anchor) as JSON; exit 6 if the log does not verify",
		Long: `Verify the audit log, record the export in it, and print the controller's
signed checkpoint of its head as JSON. Keep the output outside the
controller (a ticket, a WORM bucket, a printout); a later
` + "`firebreak audit verify --anchor FILE`" + ` checks that the log still holds
that record with that hash, so records cut off after it are reported even
by someone who also deleted the controller's stored checkpoints.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.GetAuditHead(ctx, &operatorv1.GetAuditHeadRequest{})
			if err != nil {
				// DATA_LOSS (the log does not verify) exits ExitVerifyFailed.
				return rpcError(err)
			}
			if err := g.printAnchor(resp.GetHead()); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "audit head: %s\n", describeCheckpoint(resp.GetHead()))
			return nil
		},
	}
}
