// Package lab runs Firebreak's local incident lab: the AWS emulator with a
// seeded organisation, a controller on the embedded default (SQLite, local
// evidence), host agents and an API worker, and the drills that rehearse
// the built-in playbooks against them.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
)

// AWS is a running emulator with the lab organisation, and the SDK
// configuration a worker uses to reach it.
type AWS struct {
	// Emu is the emulator.
	Emu *awsemu.Emulator
	// Endpoint is its URL for workers.
	Endpoint string
	// LocalEndpoint is its URL on this machine's loopback, for the lab's
	// own calls (the attacker's): the same emulator as Endpoint.
	LocalEndpoint string
	// Seed is the organisation.
	Seed *awsemu.Seed
	// ConfigFile is an AWS shared config file whose profile
	// firebreak-worker assumes the security account's worker role from the
	// lab's controller user, as a deployed worker would from its instance
	// role.
	ConfigFile string
	srv        *http.Server
}

// WorkerProfile is the profile name in ConfigFile.
const WorkerProfile = "firebreak-worker"

// StartAWS starts the emulator on addr with the given seed and writes the
// worker's AWS config into dir.
func StartAWS(addr, dir string, seed *awsemu.Seed) (*AWS, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ServeAWS(lis, dir, seed)
}

// ServeAWS serves the emulator on a listener (the lab makes it inside a
// network namespace) and writes the worker's AWS config into dir.
func ServeAWS(lis net.Listener, dir string, seed *awsemu.Seed) (*AWS, error) {
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		lis.Close()
		return nil, err
	}
	a := &AWS{Emu: emu, Endpoint: "http://" + lis.Addr().String(), Seed: seed, ConfigFile: filepath.Join(dir, "aws-config"),
		srv: &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}}
	a.LocalEndpoint = a.Endpoint
	go func() { _ = a.srv.Serve(lis) }()
	key, err := a.ControllerKey()
	if err != nil {
		a.Stop()
		return nil, err
	}
	sec := awsemu.LabAccountID(1)
	cfg := fmt.Sprintf(`# Written by firebreak lab: the lab worker's AWS profile (EMULATED accounts).
[profile lab-controller-user]
aws_access_key_id = %s
aws_secret_access_key = %s
region = us-east-1

[profile %s]
role_arn = arn:aws:iam::%s:role/%s
source_profile = lab-controller-user
region = us-east-1
`, key.ID, key.Secret, WorkerProfile, sec, awsemu.LabWorkerRole)
	if err := os.WriteFile(a.ConfigFile, []byte(cfg), 0o600); err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// ServeLocal also serves the emulator on this machine's loopback, when the
// workers' listener is inside a network namespace.
func (a *AWS) ServeLocal() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	a.LocalEndpoint = "http://" + lis.Addr().String()
	go func() { _ = a.srv.Serve(lis) }()
	return nil
}

// Stop stops the emulator.
func (a *AWS) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ControllerKey is the security account's controller user key.
func (a *AWS) ControllerKey() (awsemu.AccessKeySeed, error) {
	return a.userKey(awsemu.LabAccountID(1), awsemu.LabControllerUser)
}

// userKey is the first access key of a user in the seed.
func (a *AWS) userKey(account, user string) (awsemu.AccessKeySeed, error) {
	for _, acct := range a.Seed.Accounts {
		if acct.ID != account {
			continue
		}
		for _, u := range acct.Users {
			if u.Name == user && len(u.AccessKeys) > 0 {
				return u.AccessKeys[0], nil
			}
		}
	}
	return awsemu.AccessKeySeed{}, fmt.Errorf("the lab seed has no user %s with a key in account %s", user, account)
}

// WorkerEnv is the environment of a worker process that reaches the
// emulator through the SDK's standard variables only.
func (a *AWS) WorkerEnv() []string {
	return []string{
		"AWS_CONFIG_FILE=" + a.ConfigFile,
		"AWS_SHARED_CREDENTIALS_FILE=" + a.ConfigFile + ".credentials-unused",
		"AWS_PROFILE=" + WorkerProfile,
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL=" + a.Endpoint,
		// The SDK builds a profile's assume-role STS client before it reads
		// AWS_ENDPOINT_URL; the per-service variable reaches it.
		"AWS_ENDPOINT_URL_STS=" + a.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
		"FIREBREAK_EXTERNAL_ID=" + awsemu.LabExternalID,
	}
}
