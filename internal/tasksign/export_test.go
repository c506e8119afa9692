package tasksign

import (
	"crypto/ed25519"
	"testing"
)

// SignerKey exposes the private key to the package's tests only.
func SignerKey(_ testing.TB, s *Signer) ed25519.PrivateKey { return s.key }
