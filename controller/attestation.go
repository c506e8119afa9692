package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
)

// AttestationConfig configures enrollment by AWS identity (docs/attestation.md).
type AttestationConfig struct {
	// PolicyFile seeds the attestation policy: it is stored when the
	// store holds none. A stored policy (firebreak attest policy set)
	// wins over it.
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
	// (default FirebreakResponder), for attestation and the terminated
	// sweep.
	InstanceRole string
	// ExternalID is passed when assuming InstanceRole.
	ExternalID string
	// PolicyPoll is how often the stored policy is read again, so a
	// policy set through another controller of the cluster is enforced
	// here too (default 5s).
	PolicyPoll time.Duration
	// AWS is the SDK configuration instance checks start from (nil: the
	// process's default chain, loaded at the first check). An embedding
	// program that must not read its own environment (the lab) gives one.
	AWS *aws.Config
	// STSClient sends workers' signed requests to STSEndpoint (nil: the
	// verifier's default, which follows no redirect). The lab gives one
	// that dials inside the network namespace its emulator serves in.
	STSClient *http.Client
}

// defaultPolicyPoll is AttestationConfig.PolicyPoll's default.
const defaultPolicyPoll = 5 * time.Second

// attestation builds the verifier. Its policy is the stored one; an
// --attest-policy file is stored first when the store holds none.
func (c *Controller) attestation(ctx context.Context) (*attest.Verifier, error) {
	ac := c.cfg.Attestation
	if ac.PolicyFile != "" {
		if err := c.seedAttestPolicy(ctx, ac.PolicyFile); err != nil {
			return nil, err
		}
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
	role := ac.InstanceRole
	if role == "" {
		role = "FirebreakResponder"
	}
	// The AWS configuration is loaded at the first instance check, so a
	// controller that never sees an iid policy never needs one.
	instances := &lazyInstances{load: func() (attest.InstanceReader, error) {
		if ac.AWS != nil {
			return &attest.AWSInstances{Base: ac.AWS.Copy(), RoleName: role, ExternalID: ac.ExternalID, Partition: ac.Partition}, nil
		}
		awsCfg, err := config.LoadDefaultConfig(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("the AWS configuration for instance checks: %w", err)
		}
		return &attest.AWSInstances{Base: awsCfg, RoleName: role, ExternalID: ac.ExternalID, Partition: ac.Partition}, nil
	}}
	c.instances = instances
	v, err := attest.New(attest.Config{Accounts: c.Store, Certs: certs, ServerID: serverID, STSEndpoint: ac.STSEndpoint,
		Partition: ac.Partition, Clock: c.cfg.Clock, Instances: instances, HTTPClient: ac.STSClient})
	if err != nil {
		return nil, err
	}
	if err := c.loadAttestPolicy(ctx, v); err != nil {
		return nil, err
	}
	pol, version := v.Policy()
	if pol != nil {
		c.cfg.Logger.Info("AWS attestation enabled", "policy_version", version, "iid", pol.IID != nil, "sts_rules", len(pol.STS),
			"aws_certificate_regions", certs.Regions(), "extra_certificates", len(ac.CertFiles), "server_id", serverID)
	}
	return v, nil
}

// seedAttestPolicy validates the --attest-policy file and stores it when
// the store holds no policy yet. A stored policy wins: the file is only
// the first one, and a controller restarted with an old file does not
// undo a `firebreak attest policy set`.
func (c *Controller) seedAttestPolicy(ctx context.Context, file string) error {
	b, err := os.ReadFile(file) //nolint:gosec // G304: the operator's --attest-policy file
	if err != nil {
		return fmt.Errorf("read the attestation policy: %w", err)
	}
	if _, err := attest.ParsePolicy(file, b); err != nil {
		return err
	}
	p := &store.AttestPolicy{YAML: b, Source: file, SetBy: "controller:" + c.id, SetAt: c.cfg.Clock()}
	stored, err := c.Store.SeedAttestPolicy(ctx, p)
	if err != nil {
		return fmt.Errorf("storing the --attest-policy file: %w", err)
	}
	if stored {
		c.Audit(ctx, "system", "attest.policy.set", file, map[string]any{"version": p.Version, "source": "--attest-policy"})
		return nil
	}
	c.cfg.Logger.Warn("--attest-policy is not applied: the store already holds an attestation policy, which wins (firebreak attest policy show; change it with firebreak attest policy set)",
		"file", file)
	return nil
}

// loadAttestPolicy puts the newest stored policy in force in v when its
// version is not the one v enforces.
func (c *Controller) loadAttestPolicy(ctx context.Context, v *attest.Verifier) error {
	sp, err := c.Store.GetAttestPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the stored attestation policy: %w", err)
	}
	if _, version := v.Policy(); version == sp.Version {
		return nil
	}
	pol, err := attest.ParsePolicy(fmt.Sprintf("stored policy version %d (%s)", sp.Version, sp.Source), sp.YAML)
	if err != nil {
		return err
	}
	return v.SetPolicy(sp.Version, pol)
}

// reloadAttestPolicy reads the stored policy every PolicyPoll, so every
// controller of a cluster enforces the newest one without a restart. A
// stored policy this binary cannot read keeps the one in force.
func (c *Controller) reloadAttestPolicy(ctx context.Context) error {
	every := c.cfg.Attestation.PolicyPoll
	if every <= 0 {
		every = defaultPolicyPoll
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, before := c.Attest.Policy()
		if err := c.loadAttestPolicy(ctx, c.Attest); err != nil {
			c.cfg.Logger.Warn("reloading the attestation policy failed; the one in force stays", "policy_version", before, "error", err)
			continue
		}
		if _, now := c.Attest.Policy(); now != before {
			c.cfg.Logger.Info("attestation policy reloaded", "policy_version", now)
		}
	}
}

// lazyInstances builds its instance reader at the first check, and again
// after a failure.
type lazyInstances struct {
	load func() (attest.InstanceReader, error)

	mu sync.Mutex
	r  attest.InstanceReader
}

// Instance implements attest.InstanceReader.
func (l *lazyInstances) Instance(ctx context.Context, account, region, instanceID string) (*attest.Instance, error) {
	l.mu.Lock()
	if l.r == nil {
		r, err := l.load()
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.r = r
	}
	r := l.r
	l.mu.Unlock()
	return r.Instance(ctx, account, region, instanceID)
}
