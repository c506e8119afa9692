package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// TestPlacementFromCertificate checks that the hello of an agent whose
// facts lack its instance id, account or region claims those of its
// certificate (an agent enrolled by its instance identity document), that
// what its facts already say is sent as it is (the controller compares the
// two and audits a difference, so the agent never hides one), and that
// the agent's own facts are left as they were.
func TestPlacementFromCertificate(t *testing.T) {
	ca, err := pki.CreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id pki.Identity) *identity {
		t.Helper()
		id.Kind, id.Name, id.Role = pki.KindAgent, "agt-1", "host"
		c, err := ca.IssueClientForKey(key.Public(), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out := &identity{key: key}
		if err := out.setCert(c.Raw); err != nil {
			t.Fatal(err)
		}
		return out
	}
	attested := pki.Identity{Account: "210987654302", Region: "us-east-1", InstanceID: "i-0123456789abcdef0"}
	tests := []struct {
		name  string
		cert  pki.Identity
		facts *agentv1.AgentFacts
		want  [3]string
	}{
		{name: "attested, facts empty", cert: attested, facts: &agentv1.AgentFacts{},
			want: [3]string{"i-0123456789abcdef0", "210987654302", "us-east-1"}},
		{name: "token, nothing in the certificate", cert: pki.Identity{}, facts: &agentv1.AgentFacts{}},
		{name: "facts from labels are kept", cert: attested, facts: &agentv1.AgentFacts{InstanceId: "i-fedcba9876543210f", Account: "111111111111"},
			want: [3]string{"i-fedcba9876543210f", "111111111111", "us-east-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := proto.Clone(tt.facts)
			a := &Agent{id: issue(tt.cert), facts: tt.facts}
			a.placementFromCertificate()
			hello := a.helloFacts()
			got := [3]string{hello.GetInstanceId(), hello.GetAccount(), hello.GetRegion()}
			if got != tt.want {
				t.Fatalf("hello claims instance, account, region %q, want %q", got, tt.want)
			}
			if !proto.Equal(a.facts, own) {
				t.Fatalf("the agent's own facts changed: %v, were %v", a.facts, own)
			}
		})
	}
}
