package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Files the agent keeps in its data directory.
const (
	keyFile      = "agent.key"
	certFile     = "agent.pem"
	caFile       = "ca.pem"
	signingFile  = "task-signing.pub"
	identityFile = "identity.json"
	journalFile  = "journal.jsonl"
)

// identity is the agent's enrolled identity and credentials.
type identity struct {
	AgentID string `json:"agent_id"`
	Role    string `json:"role"`

	key        crypto.Signer
	caPool     *x509.CertPool
	caCert     *x509.Certificate
	signingKey ed25519.PublicKey

	mu   sync.RWMutex
	cert *tls.Certificate
	leaf *x509.Certificate
}

func (id *identity) current() (*tls.Certificate, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert, nil
}

func (id *identity) notAfter() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leaf.NotAfter
}

func (id *identity) notBefore() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leaf.NotBefore
}

func (id *identity) setCert(der []byte) error {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	id.mu.Lock()
	id.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.key, Leaf: leaf}
	id.leaf = leaf
	id.mu.Unlock()
	return nil
}

func (a *Agent) path(name string) string { return filepath.Join(a.cfg.DataDir, name) }

// loadCA reads the pinned controller CA: the data dir's copy once enrolled,
// else --ca-file.
func (a *Agent) loadCA() (*x509.Certificate, error) {
	p := a.path(caFile)
	if _, err := os.Stat(p); err != nil {
		if a.cfg.CAFile == "" {
			return nil, errors.New("no controller CA: pass --ca-file (the controller's DATA_DIR/ca.pem)")
		}
		p = a.cfg.CAFile
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading the controller CA: %w", err)
	}
	return pki.ParseCertPEM(b)
}

// loadOrEnroll returns the stored identity, or enrolls with the join token.
func (a *Agent) loadOrEnroll(ctx context.Context) (*identity, error) {
	ca, err := a.loadCA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if a.cfg.DataDir == "" {
		// A simulated agent keeps its identity in memory only.
		if !a.haveJoinToken() {
			return nil, errors.New("an agent without a data dir needs a join token")
		}
		return a.enroll(ctx, ca, pool)
	}
	if id, err := a.loadIdentity(ca, pool); err == nil {
		if a.cfg.Clock().Before(id.notAfter()) {
			return id, nil
		}
		if !a.haveJoinToken() {
			return nil, fmt.Errorf("the agent certificate expired at %s while the agent was stopped: enroll again with a new join token (--join-token-file)", id.notAfter().Format(time.RFC3339))
		}
		a.cfg.Logger.Warn("the agent certificate expired; enrolling again with the join token", "expired", id.notAfter())
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if !a.haveJoinToken() {
		return nil, errors.New("the agent is not enrolled: give it a join token from `firebreak token create` (--join-token-file, or " + JoinTokenEnv + ")")
	}
	return a.enroll(ctx, ca, pool)
}

// haveJoinToken reports whether the agent can enrol: a join token was
// given, in memory or as a file, or it proves itself by AWS attestation.
func (a *Agent) haveJoinToken() bool {
	return a.cfg.JoinToken != "" || a.cfg.JoinTokenFile != "" || a.attested()
}

// joinToken returns the join token, reading the token file if one was
// given; the caller uses it for one Enroll call and drops it.
func (a *Agent) joinToken() (string, error) {
	if a.cfg.JoinToken != "" {
		return a.cfg.JoinToken, nil
	}
	return readJoinTokenFile(a.cfg.JoinTokenFile)
}

func (a *Agent) loadIdentity(ca *x509.Certificate, pool *x509.CertPool) (*identity, error) {
	b, err := os.ReadFile(a.path(identityFile))
	if err != nil {
		return nil, err
	}
	id := &identity{caPool: pool, caCert: ca}
	if err := json.Unmarshal(b, id); err != nil {
		return nil, fmt.Errorf("%s: %w", a.path(identityFile), err)
	}
	keyPEM, err := os.ReadFile(a.path(keyFile))
	if err != nil {
		return nil, err
	}
	if id.key, err = pki.ParseKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", a.path(keyFile), err)
	}
	certPEM, err := os.ReadFile(a.path(certFile))
	if err != nil {
		return nil, err
	}
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.path(certFile), err)
	}
	if err := id.setCert(leaf.Raw); err != nil {
		return nil, err
	}
	sk, err := os.ReadFile(a.path(signingFile))
	if err != nil {
		return nil, err
	}
	if len(sk) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s is not an ed25519 public key", a.path(signingFile))
	}
	id.signingKey = sk
	return id, nil
}

func (a *Agent) enroll(ctx context.Context, ca *x509.Certificate, pool *x509.CertPool) (*identity, error) {
	req := &agentv1.EnrollRequest{Facts: a.facts, Role: roleEnum(a.cfg.Role)}
	if a.attested() {
		if err := a.attest(ctx, ca, req); err != nil {
			return nil, err
		}
	} else {
		token, err := a.joinToken()
		if err != nil {
			return nil, err
		}
		req.JoinToken = token
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(key, a.facts.GetHostname())
	if err != nil {
		return nil, err
	}
	req.CsrDer = csr
	resp, err := a.enrollAny(ctx, req, pool)
	// A controller at its limit of handshakes refused the enrollment
	// before spending the token, and said when to come back: the same
	// request goes again then, for as long as the agent runs.
	var backoff ctrladdr.Backoff
	for shed := (*shedError)(nil); errors.As(err, &shed); {
		wait := backoff.RetryAfter(shed.after)
		a.cfg.Logger.Info("the controller is at its limit of enrollments; trying again as it asked", "retry_after", shed.after.String(),
			"in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("enrolling: %w (the controller was at its limit of enrollments)", ctx.Err())
		case <-time.After(wait):
		}
		resp, err = a.enrollAny(ctx, req, pool)
	}
	if err != nil {
		return nil, err
	}
	// Security-critical: the CA the controller returns must be the one we
	// pinned, or a different controller is answering.
	if !bytes.Equal(resp.GetCaDer(), ca.Raw) {
		return nil, errors.New("the controller returned a CA other than the pinned one: refusing to enroll")
	}
	if len(resp.GetTaskSigningKey()) != ed25519.PublicKeySize {
		return nil, errors.New("the controller returned no task-signing key")
	}
	id := &identity{AgentID: resp.GetAgentId(), Role: a.cfg.Role, key: key, caPool: pool, caCert: ca, signingKey: resp.GetTaskSigningKey()}
	if err := id.setCert(resp.GetCertificateDer()); err != nil {
		return nil, err
	}
	if a.cfg.DataDir == "" {
		return id, nil
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	idJSON, _ := json.MarshalIndent(id, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{keyFile, keyPEM, 0o600},
		{certFile, pki.EncodeCertPEM(resp.GetCertificateDer()), 0o600},
		{caFile, pki.EncodeCertPEM(ca.Raw), 0o600},
		{signingFile, resp.GetTaskSigningKey(), 0o600},
		{identityFile, idJSON, 0o600},
	} {
		if err := pki.WriteFileAtomic(a.path(f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("saving the enrollment: %w", err)
		}
	}
	// A fresh identity starts with an empty journal.
	_ = os.Remove(a.path(journalFile))
	a.cfg.Logger.Info("enrolled", "agent", id.AgentID, "controllers", a.controllers.List().String(), "cert_not_after", id.notAfter())
	return id, nil
}

// enrollAny sends the enrollment to the controllers in a random order,
// moving to the next only while none could be reached (Unavailable): any
// answer from a controller, a refusal included, is final, so a join token
// is never spent twice by the agent's own retries.
func (a *Agent) enrollAny(ctx context.Context, req *agentv1.EnrollRequest, pool *x509.CertPool) (*agentv1.EnrollResponse, error) {
	targets, err := a.controllers.Order(ctx)
	if err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	var errs []error
	for _, t := range targets {
		resp, err := a.enrollAt(ctx, t, req, pool)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("enrolling with %s: %w", t.Addr, err))
		if status.Code(err) != codes.Unavailable {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// enrollAt sends the enrollment to one controller address.
func (a *Agent) enrollAt(ctx context.Context, t ctrladdr.Target, req *agentv1.EnrollRequest, pool *x509.CertPool) (*agentv1.EnrollResponse, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))),
	}
	if a.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(a.cfg.Dialer))
	}
	conn, err := grpc.NewClient("passthrough:///"+t.Addr, opts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var trailer metadata.MD
	resp, err := agentv1.NewAgentServiceClient(conn).Enroll(ctx, req, grpc.Trailer(&trailer))
	return resp, shedFrom(err, trailer)
}

// renewLoop renews the certificate when half its life has passed.
func (a *Agent) renewLoop(ctx context.Context, conn func() *grpc.ClientConn) error { //nolint:unparam // it is one of the agent's run-group loops, which all return an error
	for {
		nb, na := a.id.notBefore(), a.id.notAfter()
		at := nb.Add(na.Sub(nb) / 2)
		wait := time.Until(at)
		if wait < 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if err := a.renew(ctx, conn()); err != nil {
			a.cfg.Logger.Warn("certificate renewal failed; retrying in a minute", "error", err, "expires", na)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Minute):
			}
		}
	}
}

func (a *Agent) renew(ctx context.Context, conn *grpc.ClientConn) error {
	if conn == nil {
		return errors.New("not connected")
	}
	csr, err := pki.NewCSR(a.id.key, a.facts.GetHostname())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := agentv1.NewAgentServiceClient(conn).Renew(ctx, &agentv1.RenewRequest{CsrDer: csr})
	if err != nil {
		return err
	}
	if err := a.id.setCert(resp.GetCertificateDer()); err != nil {
		return err
	}
	if a.cfg.DataDir != "" {
		if err := pki.WriteFileAtomic(a.path(certFile), pki.EncodeCertPEM(resp.GetCertificateDer()), 0o600); err != nil {
			return err
		}
	}
	a.cfg.Logger.Info("certificate renewed", "not_after", a.id.notAfter())
	return nil
}

func roleEnum(r string) agentv1.AgentRole {
	switch r {
	case "worker":
		return agentv1.AgentRole_AGENT_ROLE_WORKER
	default:
		return agentv1.AgentRole_AGENT_ROLE_HOST
	}
}
