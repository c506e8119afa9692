package controller

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
)

// AttestationConfig configures enrollment by AWS identity (docs/attestation.md).
type AttestationConfig struct {
	// PolicyFile is the attestation policy; empty turns attestation off.
	PolicyFile string
	// CertFiles add identity-document certificates to the embedded AWS
	// ones, for every region (the emulator's, a new region's).
	CertFiles []string
	// ServerID is what workers sign in X-Firebreak-Server-Id (default:
	// the CA's SHA-256, stsproof.ServerIDFor).
	ServerID string
	// STSEndpoint, when set, is the only STS endpoint signed requests may
	// name; else the partition's public endpoints.
	STSEndpoint string
	// Partition is the AWS partition (default aws).
	Partition string
	// InstanceRole is the role assumed in an account to read its instances
	// (default FirebreakResponder).
	InstanceRole string
	// ExternalID is passed when assuming InstanceRole.
	ExternalID string
}

// attestation builds the verifier, or nil when no policy is configured.
func (c *Controller) attestation(ctx context.Context) (*attest.Verifier, error) {
	ac := c.cfg.Attestation
	if ac.PolicyFile == "" {
		if len(ac.CertFiles) > 0 {
			return nil, fmt.Errorf("--iid-cert-file needs --attest-policy")
		}
		return nil, nil
	}
	pol, err := attest.LoadPolicy(ac.PolicyFile)
	if err != nil {
		return nil, err
	}
	certs, err := iid.AWSCertificates()
	if err != nil {
		return nil, fmt.Errorf("the embedded AWS identity certificates: %w", err)
	}
	for _, f := range ac.CertFiles {
		b, err := os.ReadFile(f) //nolint:gosec // G304: the operator's --iid-cert-file
		if err != nil {
			return nil, fmt.Errorf("--iid-cert-file: %w", err)
		}
		extra, err := iid.ParseCertificatesPEM(b)
		if err != nil {
			return nil, fmt.Errorf("--iid-cert-file %s: %w", f, err)
		}
		certs.Add(extra...)
	}
	serverID := ac.ServerID
	if serverID == "" {
		serverID = stsproof.ServerIDFor(c.CA.Cert.Raw)
	}
	vc := attest.Config{Accounts: c.Store, Certs: certs, Policy: pol, ServerID: serverID, STSEndpoint: ac.STSEndpoint,
		Partition: ac.Partition, Clock: c.cfg.Clock}
	if pol.IID != nil {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("the AWS configuration for instance checks: %w", err)
		}
		role := ac.InstanceRole
		if role == "" {
			role = "FirebreakResponder"
		}
		vc.Instances = &attest.AWSInstances{Base: awsCfg, RoleName: role, ExternalID: ac.ExternalID, Partition: ac.Partition}
	}
	c.cfg.Logger.Info("AWS attestation enabled", "policy", ac.PolicyFile, "iid", pol.IID != nil, "sts_rules", len(pol.STS),
		"aws_certificate_regions", certs.Regions(), "extra_certificates", len(ac.CertFiles), "server_id", serverID)
	return attest.New(vc)
}
