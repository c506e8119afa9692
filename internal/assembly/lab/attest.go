package lab

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// AgentSummary is one lab agent as the controller knows it: how it proved
// itself at enrollment.
type AgentSummary struct {
	Hostname string `json:"hostname"`
	Role     string `json:"role"`
	// Attestation is aws-iid (an EC2 instance identity document), aws-sts
	// (a signed sts:GetCallerIdentity) or token.
	Attestation string `json:"attestation"`
}

// labRegion is the region of the lab's instances and worker.
const labRegion = "us-east-1"

// labAttestPolicy is the attestation policy the lab's controller starts
// with: the member account's tagged instances enrol as hosts by their
// identity documents, and the security account's worker role as a worker
// serving every account.
const labAttestPolicy = `# Written by firebreak lab: who enrols without a join token (docs/attestation.md).
iid:
  accounts: [%s]
  regions: [%s]
  required_tags: {firebreak: enabled}
  max_age: 15m
  label_tags: [Service, Environment]
sts:
  - role_arn: "arn:aws:iam::%s:role/%s"
    accounts: [all]
`

// bootInstances returns a copy of seed whose instances in account member
// launched at now and carry the tag firebreak=enabled.
func bootInstances(seed *awsemu.Seed, member string, now time.Time) *awsemu.Seed {
	out := *seed
	out.Accounts = append([]awsemu.AccountSeed(nil), seed.Accounts...)
	for i := range out.Accounts {
		a := &out.Accounts[i]
		if a.ID != member {
			continue
		}
		a.Resources = append([]awsemu.RegionSeed(nil), a.Resources...)
		for j := range a.Resources {
			rs := &a.Resources[j]
			rs.Instances = append([]awsemu.InstanceSeed(nil), rs.Instances...)
			for k := range rs.Instances {
				in := &rs.Instances[k]
				in.LaunchTime = now
				in.Tags = maps.Clone(in.Tags)
				if in.Tags == nil {
					in.Tags = map[string]string{}
				}
				in.Tags["firebreak"] = "enabled"
			}
		}
	}
	return &out
}

// attestation writes the lab's attestation policy and the emulator's
// identity certificate, and returns the controller's attestation
// configuration: documents signed by the emulator's CA are trusted, signed
// STS requests may name only the emulator, and instance checks go to the
// emulator as the worker role, then each account's responder role.
func (e *Env) attestation(real bool) (controller.AttestationConfig, error) {
	certPEM, err := e.AWS.Emu.IdentityCertificatePEM()
	if err != nil {
		return controller.AttestationConfig{}, err
	}
	certFile := filepath.Join(e.Dir, "emulator-iid.pem")
	policyFile := filepath.Join(e.Dir, "attest.yaml")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return controller.AttestationConfig{}, err
	}
	policy := fmt.Sprintf(labAttestPolicy, e.Member, labRegion, awsemu.LabAccountID(1), awsemu.LabWorkerRole)
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return controller.AttestationConfig{}, err
	}
	key, err := e.AWS.ControllerKey()
	if err != nil {
		return controller.AttestationConfig{}, err
	}
	// The controller's own AWS path, as a deployed one has it from its
	// instance role: the lab's controller user assumes the worker role. It
	// is built here rather than read from this process's environment.
	base := aws.Config{Region: labRegion, BaseEndpoint: aws.String(e.AWS.LocalEndpoint),
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(key.ID, key.Secret, ""))}
	workerARN := "arn:aws:iam::" + awsemu.LabAccountID(1) + ":role/" + awsemu.LabWorkerRole
	base.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), workerARN,
		func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "firebreak-lab-controller" }))
	// Security-critical: the STS client follows no redirect, like the
	// verifier's default, so a signed request is only ever sent where it
	// names.
	stsClient := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if real {
		// The workers reach the emulator inside the controller's namespace,
		// and sign for that address; the controller sends their requests
		// there from the same namespace.
		stsClient.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := e.Net.Do("ctl", func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}
	}
	return controller.AttestationConfig{PolicyFile: policyFile, CertFiles: []string{certFile}, STSEndpoint: e.AWS.Endpoint,
		ExternalID: awsemu.LabExternalID, AWS: &base, STSClient: stsClient}, nil
}

// serveIMDS serves a host's instance metadata (IMDSv2, with its signed
// identity document) on the loopback of the host's namespace (ns, or this
// machine's for a simulated host) and returns its endpoint.
func (e *Env) serveIMDS(h *Host, ns string) (string, error) {
	listen := func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	var lis net.Listener
	var err error
	if ns != "" {
		err = e.Net.Do(ns, func() error {
			var err error
			lis, err = listen()
			return err
		})
	} else {
		lis, err = listen()
	}
	if err != nil {
		return "", fmt.Errorf("serving %s's instance metadata: %w", h.Name, err)
	}
	srv := &http.Server{Handler: e.AWS.Emu.IMDS(e.Member, h.InstanceID), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	e.stops = append(e.stops, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + lis.Addr().String() + "/", nil
}

// Agents lists the lab's agents as the controller knows them, ordered by
// hostname.
func (e *Env) Agents(ctx context.Context) ([]AgentSummary, error) {
	resp, err := e.Controller.Operator.ListAgents(e.admin, &operatorv1.ListAgentsRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing the lab's agents: %w", err)
	}
	out := []AgentSummary{}
	for _, a := range resp.GetAgents() {
		out = append(out, AgentSummary{Hostname: a.GetFacts().GetHostname(), Role: apiview.AgentRoleName(a.GetRole()), Attestation: a.GetAttestation()})
	}
	return out, ctx.Err()
}
