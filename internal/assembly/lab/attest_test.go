package lab

import (
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
)

// TestBootInstances: the lab's copy of the seed launches the member's
// instances now, tagged for Firebreak (so their identity documents are
// fresh and pass the policy's tag check), and leaves the caller's seed and
// the other accounts as they were.
func TestBootInstances(t *testing.T) {
	seed := awsemu.LabSeed(4)
	member := awsemu.LabAccountID(2)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	booted := bootInstances(seed, member, now)
	tests := []struct {
		name      string
		seed      *awsemu.Seed
		account   string
		wantTag   bool
		wantFresh bool
	}{
		{name: "member, booted", seed: booted, account: member, wantTag: true, wantFresh: true},
		{name: "member, caller's seed untouched", seed: seed, account: member},
		{name: "another member account, booted copy untouched", seed: booted, account: awsemu.LabAccountID(3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			for _, a := range tt.seed.Accounts {
				if a.ID != tt.account {
					continue
				}
				for _, rs := range a.Resources {
					for _, in := range rs.Instances {
						n++
						if got := in.Tags["firebreak"] == "enabled"; got != tt.wantTag {
							t.Errorf("%s: tag firebreak=enabled %v, want %v", in.Name, got, tt.wantTag)
						}
						if got := in.LaunchTime.Equal(now); got != tt.wantFresh {
							t.Errorf("%s: launched %v, want launched now: %v", in.Name, in.LaunchTime, tt.wantFresh)
						}
					}
				}
			}
			if n == 0 {
				t.Fatalf("the lab seed's account %s has no instances", tt.account)
			}
		})
	}
}
