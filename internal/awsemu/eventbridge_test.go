package awsemu

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
)

// TestEventBridgeRulesAndGuardDutyAdministrator reads, through the real
// SDK, the seeded rules with their targets (paged), an API destination,
// and a GuardDuty member's administrator account.
func TestEventBridgeRulesAndGuardDutyAdministrator(t *testing.T) {
	seed := LabSeed(4)
	sec := LabAccountID(1)
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		switch a.ID {
		case LabAccountID(2):
			r := &a.Resources[0]
			r.GuardDuty = &GuardDutySeed{Administrator: sec}
			r.APIDestinations = []APIDestinationSeed{{Name: "firebreak", Endpoint: "https://firebreak.example/v1/events"}}
			for n := range 3 {
				r.EventRules = append(r.EventRules, EventRuleSeed{Name: fmt.Sprintf("rule-%d", n), EventPattern: `{"source":["aws.guardduty"]}`,
					Targets: []string{APIDestinationARN(a.ID, r.Region, "firebreak")}, Disabled: n == 2})
			}
		case LabAccountID(3):
			a.Resources[0].GuardDuty = &GuardDutySeed{}
		}
	}
	l := newLabFrom(t, seed, false)

	cfg := l.assumeResponder(t, 2)
	eb := eventbridge.NewFromConfig(cfg)
	var names, states []string
	var token *string
	for {
		out, err := eb.ListRules(ctx(t), &eventbridge.ListRulesInput{Limit: aws.Int32(2), NextToken: token})
		ok(t, err)
		for _, r := range out.Rules {
			names, states = append(names, aws.ToString(r.Name)), append(states, string(r.State))
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if fmt.Sprint(names, states) != "[rule-0 rule-1 rule-2] [ENABLED ENABLED DISABLED]" {
		t.Fatalf("rules %v %v", names, states)
	}
	targets, err := eb.ListTargetsByRule(ctx(t), &eventbridge.ListTargetsByRuleInput{Rule: aws.String("rule-0")})
	ok(t, err)
	dest := APIDestinationARN(LabAccountID(2), "us-east-1", "firebreak")
	if len(targets.Targets) != 1 || aws.ToString(targets.Targets[0].Arn) != dest {
		t.Fatalf("targets %+v", targets.Targets)
	}
	_, err = eb.ListTargetsByRule(ctx(t), &eventbridge.ListTargetsByRuleInput{Rule: aws.String("missing")})
	wantCode(t, err, "ResourceNotFoundException")
	d, err := eb.DescribeApiDestination(ctx(t), &eventbridge.DescribeApiDestinationInput{Name: aws.String("firebreak")})
	ok(t, err)
	if aws.ToString(d.InvocationEndpoint) != "https://firebreak.example/v1/events" || aws.ToString(d.ApiDestinationArn) != dest {
		t.Fatalf("API destination %+v", d)
	}

	for _, tt := range []struct {
		member int
		admin  string
	}{{2, sec}, {3, ""}} {
		gd := guardduty.NewFromConfig(l.assumeResponder(t, tt.member))
		list, err := gd.ListDetectors(ctx(t), &guardduty.ListDetectorsInput{})
		ok(t, err)
		out, err := gd.GetAdministratorAccount(ctx(t), &guardduty.GetAdministratorAccountInput{DetectorId: aws.String(list.DetectorIds[0])})
		ok(t, err)
		got := ""
		if out.Administrator != nil {
			got = aws.ToString(out.Administrator.AccountId) + "/" + aws.ToString(out.Administrator.RelationshipStatus)
		}
		if want := map[bool]string{true: tt.admin + "/Enabled", false: ""}[tt.admin != ""]; got != want {
			t.Fatalf("member %d administrator %q, want %q", tt.member, got, want)
		}
	}
}
