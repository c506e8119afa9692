package failoverbench

// The aws-iid herd of `firebreak bench enroll --join aws-iid`: the agents
// enrol by their EC2 instance identity documents, signed by the AWS
// emulator's CA, with no join token, against a controller that checks each
// document and each instance as it does in AWS.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
)

// iidRegion is the region of the herd's instances.
const iidRegion = "us-east-1"

// iidPolicy is the attestation policy the aws-iid herd sets: the member
// account's tagged instances enrol as hosts, the security account's worker
// role as a worker, as in `firebreak lab`. max_age is the herd's own
// bound: every instance launched when the bench started.
const iidPolicy = `# Written by firebreak bench enroll --join aws-iid (docs/attestation.md).
iid:
  accounts: [%s]
  regions: [%s]
  required_tags: {firebreak: enabled}
  max_age: %s
sts:
  - role_arn: "arn:aws:iam::%s:role/%s"
    accounts: [all]
`

// iidHerd is the AWS side of an aws-iid herd: the emulator holding one
// running, tagged instance per agent, and the IMDS every agent reads its
// own document from.
type iidHerd struct {
	aws       *lab.AWS
	member    string
	instances []string
	// imdsURL serves every instance's metadata (awsemu.IMDSFleet); each
	// agent's IMDS client names its instance in awsemu.InstanceHeader.
	imdsURL string
	imdsSrv *http.Server
	// transport is the IMDS clients' shared connection pool.
	transport *http.Transport
	worker    *exec.Cmd
	workerLog *os.File
}

// startIIDEmulator starts the emulator with a three-account organisation
// whose member account holds n instances, launched now and tagged
// firebreak=enabled, and serves their instance metadata.
func startIIDEmulator(dir string, n int, now time.Time) (*iidHerd, error) {
	seed := awsemu.Lab{Accounts: 3, InstancesPerAccount: n}.Seed()
	member := awsemu.LabAccountID(2)
	var ids []string
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		if a.ID != member {
			continue
		}
		for j := range a.Resources {
			// The lab's two /24 subnets hold about 500 instances; the herd's
			// split the VPC's /16 in two halves.
			for k := range a.Resources[j].Subnets {
				sn := &a.Resources[j].Subnets[k]
				sn.CIDR = [2]string{"10.0.0.0/17", "10.0.128.0/17"}[k%2]
			}
			for k := range a.Resources[j].Instances {
				in := &a.Resources[j].Instances[k]
				in.LaunchTime = now
				if in.Tags == nil {
					in.Tags = map[string]string{}
				}
				in.Tags["firebreak"] = "enabled"
				ids = append(ids, in.ID)
			}
		}
	}
	if len(ids) < n {
		return nil, fmt.Errorf("the emulator's seed has %d instances in account %s, want %d", len(ids), member, n)
	}
	a, err := lab.StartAWS("127.0.0.1:0", dir, seed)
	if err != nil {
		return nil, fmt.Errorf("starting the AWS emulator: %w", err)
	}
	h := &iidHerd{aws: a, member: member, instances: ids[:n]}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = a.Stop()
		return nil, err
	}
	h.imdsURL = "http://" + lis.Addr().String()
	h.imdsSrv = &http.Server{Handler: a.Emu.IMDSFleet(member), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.imdsSrv.Serve(lis) }()
	// The agents' IMDS reads share one pool of connections, bounded so that
	// the herd's start does not spend a file descriptor per agent on both
	// ends of its IMDS connection while its controller connection is open.
	h.transport = &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	return h, nil
}

// files writes the emulator's identity certificate and the policy, and
// returns their paths.
func (h *iidHerd) files(dir string, maxAge time.Duration) (certFile, policyFile string, err error) {
	certPEM, err := h.aws.Emu.IdentityCertificatePEM()
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(dir, "emulator-iid.pem")
	policyFile = filepath.Join(dir, "attest.yaml")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", err
	}
	policy := fmt.Sprintf(iidPolicy, h.member, iidRegion, maxAge.Round(time.Minute), awsemu.LabAccountID(1), awsemu.LabWorkerRole)
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return "", "", err
	}
	return certFile, policyFile, nil
}

// controllerArgs turn on attestation against the emulator: its CA is
// trusted for identity documents, signed STS requests may name only it,
// and the controller reads instances through it (with controllerEnv).
func (h *iidHerd) controllerArgs(certFile string) []string {
	return []string{"--iid-cert-file", certFile, "--attest-sts-endpoint", h.aws.Endpoint, "--iid-external-id", awsemu.LabExternalID}
}

// controllerEnv is the controller's AWS path, as a deployed one has it
// from its instance role: the lab's controller user assumes the worker
// role, then each account's responder role to read an instance.
func (h *iidHerd) controllerEnv() []string { return h.aws.WorkerEnv() }

// startWorker starts the API worker as `firebreak lab` does: a
// firebreak-agent process enrolling by a signed sts:GetCallerIdentity.
func (h *iidHerd) startWorker(binDir, dir, ctlAddr, caFile string) error {
	agentBin := filepath.Join(binDir, "firebreak-agent")
	pluginDir := filepath.Join(binDir, "plugins")
	for _, p := range []string{agentBin, filepath.Join(pluginDir, "manifest.json")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("--join aws-iid starts an API worker from --bin-dir, which needs %s and %s (run `make build`): %w", agentBin, pluginDir, err)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "worker.log"))
	if err != nil {
		return err
	}
	//nolint:gosec // G204: the firebreak-agent of --bin-dir, with arguments the benchmark builds
	cmd := exec.Command(agentBin, "--controller", ctlAddr, "--ca-file", caFile, "--data-dir", filepath.Join(dir, "worker"),
		"--hostname", "bench-worker", "--role", "worker", "--plugin-dir", pluginDir, "--join", "aws-sts")
	cmd.Env = append(os.Environ(), h.aws.WorkerEnv()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The worker dies with the benchmark.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting the worker: %w", err)
	}
	h.worker, h.workerLog = cmd, logf
	return nil
}

// imdsClient is agent i's instance metadata client: IMDSv2 (a session
// token, then the document and its rsa2048 signature) to the emulator,
// for its own instance.
func (h *iidHerd) imdsClient(i int) *imds.Client {
	return imds.New(imds.Options{Endpoint: h.imdsURL, EnableFallback: aws.FalseTernary,
		HTTPClient: instanceClient{id: h.instances[i], c: &http.Client{Transport: h.transport, Timeout: 30 * time.Second}}})
}

// presign has the emulator sign every instance's document before the
// herd starts, as AWS has an instance's signatures before its agent reads
// them: an RSA signature per variant is the emulator's work, not the
// herd's. It reads each document once through IMDSv2 with a client of
// its own, so each agent still makes its own session token and reads.
func (h *iidHerd) presign(ctx context.Context) error {
	ids := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				if _, err := readDocument(ctx, h.imdsClient(i)); err != nil {
					select {
					case errs <- fmt.Errorf("signing the identity document of %s: %w", h.instances[i], err):
					default:
					}
				}
			}
		}()
	}
	for i := range h.instances {
		select {
		case ids <- i:
		case err := <-errs:
			close(ids)
			wg.Wait()
			return err
		case <-ctx.Done():
			close(ids)
			wg.Wait()
			return ctx.Err()
		}
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// readDocument reads an instance's rsa2048 signature (which carries its
// document) over IMDSv2.
func readDocument(ctx context.Context, c *imds.Client) ([]byte, error) {
	out, err := c.GetDynamicData(ctx, &imds.GetDynamicDataInput{Path: "instance-identity/rsa2048"})
	if err != nil {
		return nil, err
	}
	defer out.Content.Close()
	return io.ReadAll(out.Content)
}

// configure makes agent i enrol by its instance's identity document.
func (h *iidHerd) configure(i int, cfg *agent.Config) {
	cfg.Join = agent.JoinAWSIID
	cfg.IMDS = h.imdsClient(i)
}

// stop stops the worker, the IMDS and the emulator.
func (h *iidHerd) stop() {
	if h.worker != nil {
		_ = h.worker.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = h.worker.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = h.worker.Process.Kill()
			<-done
		}
		h.workerLog.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.imdsSrv.Shutdown(ctx)
	h.transport.CloseIdleConnections()
	_ = h.aws.Stop()
}

// instanceClient names its instance on every IMDS request (see
// awsemu.IMDSFleet).
type instanceClient struct {
	id string
	c  *http.Client
}

// Do implements imds.HTTPClient.
func (c instanceClient) Do(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(awsemu.InstanceHeader, c.id)
	return c.c.Do(r) //nolint:gosec // G704: the emulator's IMDS address the benchmark serves itself
}

// agentListed is an agent as `agents list --json` prints it.
type agentListed struct {
	Role        string `json:"role"`
	Hostname    string `json:"hostname"`
	Connected   bool   `json:"connected"`
	Attestation string `json:"attestation"`
	InstanceID  string `json:"instance_id"`
}

// prepareIID does what an operator does before a fleet enrols by instance
// identity, as `firebreak lab` does: sets the attestation policy, starts
// the API worker (enrolled by STS) and registers the organisation's
// accounts through it, since an instance enrols only from an account of
// the organisation.
func (h *herd) prepareIID(ctx context.Context, o HerdOptions, policyFile, caFile string) error {
	if err := h.b.cliJSON(ctx, h.ctl.addr, nil, "attest", "policy", "set", policyFile); err != nil {
		return err
	}
	if err := h.iid.startWorker(o.BinDir, h.b.root, h.ctl.addr, caFile); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var agents []agentListed
		if err := h.b.cliJSON(ctx, h.ctl.addr, &agents, "agents", "list"); err != nil {
			return err
		}
		up := false
		for _, a := range agents {
			up = up || (a.Role == "worker" && a.Connected && a.Attestation == agent.JoinAWSSTS)
		}
		if up {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API worker did not enrol by aws-sts and connect within 2 minutes: see %s", filepath.Join(h.b.root, "worker.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	fmt.Fprintf(o.Progress, "API worker enrolled by aws-sts; registering the organisation's accounts…\n")
	return h.b.cliJSON(ctx, h.ctl.addr, nil, "accounts", "sync", "--management-account", awsemu.LabAccountID(0))
}

// attested counts, from `agents list --json`, the herd's agents listed
// connected with attestation aws-iid and the instance id of their own
// document, and how many of those that connected are not.
func (h *herd) attested(ctx context.Context) (attested, wrong int, err error) {
	var agents []agentListed
	if err := h.b.cliJSON(ctx, h.ctl.addr, &agents, "agents", "list"); err != nil {
		return 0, 0, err
	}
	want := make(map[string]string, len(h.iid.instances))
	for i, id := range h.iid.instances {
		want[herdHostname(i)] = id
	}
	for _, a := range agents {
		if id, ok := want[a.Hostname]; ok && a.Role == "host" && a.Connected && a.Attestation == agent.JoinAWSIID && a.InstanceID == id {
			attested++
			delete(want, a.Hostname)
		}
	}
	return attested, max(0, len(h.fleet.since(h.start))-attested), nil
}
