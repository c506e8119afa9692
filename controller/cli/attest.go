package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/internal/iid"
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
	cmd.AddCommand(check)
	return cmd
}
