package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/internal/iid"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// NewAttestCmd builds `firebreak attest`: offline checks for enrollment by
// AWS identity (docs/attestation.md).
func NewAttestCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "attest", Short: "Check AWS attestation proofs offline"}
	var docFile, sigFile, variant string
	var certFiles []string
	check := &cobra.Command{
		Use:   "check-iid --document FILE --signature FILE [--variant rsa2048|pkcs7|signature]",
		Short: "Verify an EC2 instance identity document's signature against the embedded AWS certificates",
		Long: `Verify an instance identity document and its signature as IMDS serves them
(/latest/dynamic/instance-identity/document and /rsa2048, /pkcs7 or
/signature), against the AWS certificates embedded in this binary and any
--cert-file. Freshness and reuse are not checked: enrollment does that.
With rsa2048 and pkcs7, which carry the document, the given document must be
byte-identical to the signed one. Prints the account, region and instance
id; exits 0 for a valid signature and 6 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := iid.ParseVariant(variant)
			if err != nil {
				return ExitWith(ExitUsage, err)
			}
			if sigFile == "" || (docFile == "" && v == iid.Signature) {
				return ExitWith(ExitUsage, errors.New("--signature is required, and --document too with --variant signature"))
			}
			sig, err := os.ReadFile(sigFile)
			if err != nil {
				return err
			}
			var doc []byte
			if docFile != "" {
				if doc, err = os.ReadFile(docFile); err != nil {
					return err
				}
			}
			certs, err := iid.AWSCertificates()
			if err != nil {
				return err
			}
			for _, f := range certFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				extra, err := iid.ParseCertificatesPEM(b)
				if err != nil {
					return ExitWith(ExitUsage, fmt.Errorf("--cert-file %s: %w", f, err))
				}
				certs.Add(extra...)
			}
			d, verr := iid.Verify(certs, v, doc, sig)
			if g.json {
				out := map[string]any{"valid": verr == nil, "variant": string(v)}
				if verr != nil {
					out["error"] = verr.Error()
				} else {
					out["account"], out["region"], out["instance_id"], out["availability_zone"], out["pending_time"] =
						d.AccountID, d.Region, d.InstanceID, d.AvailabilityZone, d.PendingTime
				}
				if err := g.PrintJSON(out); err != nil {
					return err
				}
			} else if verr == nil {
				fmt.Fprintf(g.out, "valid %s signature\naccount      %s\nregion       %s\ninstance id  %s\nzone         %s\npending time %s\n",
					v, d.AccountID, d.Region, d.InstanceID, d.AvailabilityZone, d.PendingTime.Format("2006-01-02T15:04:05Z07:00"))
			}
			if verr != nil {
				return ExitWith(ExitVerifyFailed, fmt.Errorf("the identity document does NOT verify: %w", verr))
			}
			return nil
		},
	}
	check.Flags().StringVar(&docFile, "document", "", "the identity document (instance-identity/document)")
	check.Flags().StringVar(&sigFile, "signature", "", "its signature: base64 as IMDS serves it, PEM or DER")
	check.Flags().StringVar(&variant, "variant", "rsa2048", "the signature's variant: rsa2048, pkcs7 or signature")
	check.Flags().StringArrayVar(&certFiles, "cert-file", nil, "another PEM certificate to trust for every region (repeatable; the emulator's, a new region's)")
	cmd.AddCommand(check, newAttestPolicyCmd(g))
	return cmd
}

// attestPolicyJSON is a stored attestation policy as --json prints it.
type attestPolicyJSON struct {
	Version   int64     `json:"version"`
	Source    string    `json:"source"`
	SetBy     string    `json:"set_by"`
	SetAt     time.Time `json:"set_at"`
	AllowsIID bool      `json:"allows_iid"`
	STSRules  uint32    `json:"sts_rules"`
	Policy    string    `json:"policy"`
}

func toAttestPolicyJSON(p *operatorv1.AttestPolicyInfo) attestPolicyJSON {
	return attestPolicyJSON{Version: p.GetVersion(), Source: p.GetSource(), SetBy: p.GetSetBy(), SetAt: p.GetSetAt().AsTime(),
		AllowsIID: p.GetAllowsIid(), STSRules: p.GetStsRules(), Policy: string(p.GetPolicyYaml())}
}

// newAttestPolicyCmd builds `firebreak attest policy set|show`.
func newAttestPolicyCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Set or show the attestation policy every controller of the cluster enforces"}
	set := &cobra.Command{
		Use:   "set FILE",
		Short: "Validate an attestation policy and store it as the one in force (admin)",
		Long: `Validate an attestation policy (YAML, docs/attestation.md) and store it as
the newest version. Every controller sharing the store enforces it within
seconds, without a restart; the change is audited (attest.policy.set). An
invalid file is refused with file:line:column errors and exits 2. The stored
policy wins over a controller's --attest-policy file, which only seeds an
empty store.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return ExitWith(ExitUsage, err)
			}
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.SetAttestPolicy(ctx, &operatorv1.SetAttestPolicyRequest{PolicyYaml: b, FileName: args[0]})
			if err != nil {
				return rpcError(err)
			}
			p := resp.GetPolicy()
			if g.json {
				return g.PrintJSON(toAttestPolicyJSON(p))
			}
			fmt.Fprintf(g.out, "attestation policy version %d stored (iid %v, %d sts rules); every controller enforces it within seconds\n",
				p.GetVersion(), p.GetAllowsIid(), p.GetStsRules())
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the attestation policy in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.GetAttestPolicy(ctx, &operatorv1.GetAttestPolicyRequest{})
			if err != nil {
				return rpcError(err)
			}
			p := resp.GetPolicy()
			if p == nil {
				if g.json {
					return g.PrintJSON(nil)
				}
				fmt.Fprintln(g.out, "no attestation policy is stored: agents enrol with join tokens only (firebreak attest policy set FILE)")
				return nil
			}
			if g.json {
				return g.PrintJSON(toAttestPolicyJSON(p))
			}
			fmt.Fprintf(g.out, "# version %d, from %s, set by %s at %s\n%s", p.GetVersion(), p.GetSource(), p.GetSetBy(),
				p.GetSetAt().AsTime().UTC().Format(time.RFC3339), p.GetPolicyYaml())
			return nil
		},
	}
	cmd.AddCommand(set, show)
	return cmd
}
