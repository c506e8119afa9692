package awsreadiness_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// TestFindingsExport runs the findings-export check against emulator
// states: GuardDuty findings reach the controller's intake through an
// EventBridge rule to its queue or to an API destination on its events
// endpoint, through another account's bus, or through the GuardDuty
// administrator account (ok); to somewhere else (warn); nowhere (fail);
// and a denied read is unknown, naming the action.
func TestFindingsExport(t *testing.T) {
	sec := awsemu.LabAccountID(1)
	const pattern = `{"source":["aws.guardduty"],"detail-type":["GuardDuty Finding"]}`
	intakeQueue := "arn:aws:sqs:" + awstest.Region + ":" + sec + ":" + awsemu.LabFindingsQueue
	queueURL := "https://sqs." + awstest.Region + ".amazonaws.com/" + sec + "/" + awsemu.LabFindingsQueue
	both := map[string]any{"findings_queue_url": queueURL, "findings_https": true}
	rule := func(pattern string, disabled bool, targets ...string) func(_, m *awsemu.AccountSeed) {
		return func(_, m *awsemu.AccountSeed) {
			m.Resources[0].EventRules = append(m.Resources[0].EventRules, awsemu.EventRuleSeed{Name: "findings", EventPattern: pattern, Disabled: disabled, Targets: targets})
		}
	}
	apiDest := func(endpoint string) func(_, m *awsemu.AccountSeed) {
		return func(_, m *awsemu.AccountSeed) {
			m.Resources[0].APIDestinations = []awsemu.APIDestinationSeed{{Name: "firebreak", Endpoint: endpoint}}
			rule(pattern, false, awsemu.APIDestinationARN(m.ID, awstest.Region, "firebreak"))(nil, m)
		}
	}
	tests := []struct {
		name     string
		seed     *awsemu.Seed
		params   map[string]any
		status   awsreadiness.Status
		evidence string
		fix      string
	}{
		{"rule to the intake queue", mutate(rule(pattern, false, intakeQueue)), both, awsreadiness.StatusOK, "to the controller's intake queue " + intakeQueue, ""},
		{"rule to the events endpoint", mutate(apiDest("https://firebreak.example.com/v1/events")), both, awsreadiness.StatusOK,
			"API destination firebreak at https://firebreak.example.com/v1/events (the controller's HTTPS intake)", ""},
		{"rule forwarding to the security account's bus", mutate(rule(`{"source":["aws.guardduty"]}`, false, "arn:aws:events:"+awstest.Region+":"+sec+":event-bus/default")),
			both, awsreadiness.StatusOK, "forwards GuardDuty findings to account " + sec, ""},
		{"guardduty administrator", mutate(func(_, m *awsemu.AccountSeed) { m.Resources[0].GuardDuty = &awsemu.GuardDutySeed{Administrator: sec} }),
			both, awsreadiness.StatusOK, "aggregated in the GuardDuty administrator account " + sec, ""},
		{"rule to another queue", mutate(rule(pattern, false, "arn:aws:sqs:"+awstest.Region+":"+sec+":other")), both, awsreadiness.StatusWarn,
			"not the controller's intake queue", "aws events put-targets"},
		{"queue but the controller polls none", mutate(rule(pattern, false, intakeQueue)), map[string]any{}, awsreadiness.StatusWarn,
			"the controller polls no SQS queue", "--sqs-queue"},
		{"events endpoint off", mutate(apiDest("https://firebreak.example.com/v1/events")), map[string]any{"findings_queue_url": queueURL},
			awsreadiness.StatusWarn, "the controller's events endpoint is off", "put-rule"},
		{"API destination elsewhere", mutate(apiDest("https://siem.example.com/ingest")), both, awsreadiness.StatusWarn, "not a controller's https://…/v1/events endpoint", "put-rule"},
		{"no rule", ready(), both, awsreadiness.StatusFail, "no enabled EventBridge rule sends us-east-1's GuardDuty findings", "enable-organization-admin-account"},
		{"disabled rule", mutate(rule(pattern, true, intakeQueue)), both, awsreadiness.StatusFail, "no enabled EventBridge rule", "aws events put-rule --name firebreak-findings --region us-east-1"},
		{"rule for other findings", mutate(rule(`{"source":["aws.securityhub"]}`, false, intakeQueue)), both, awsreadiness.StatusFail, "no enabled EventBridge rule", "put-rule"},
		{"no detector", mutate(func(_, m *awsemu.AccountSeed) { m.Resources[0].GuardDuty = nil }), both, awsreadiness.StatusWarn,
			"no GuardDuty detector in us-east-1, so no findings to export", "enable GuardDuty in us-east-1"},
		{"rules unreadable", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"events:ListRules"`) }), both, awsreadiness.StatusUnknown,
			"events:ListRules was denied", "allow events:ListRules"},
		{"targets unreadable", mutate(func(mg, m *awsemu.AccountSeed) {
			rule(pattern, false, intakeQueue)(mg, m)
			denyResponder(m, `"events:ListTargetsByRule"`)
		}), both, awsreadiness.StatusUnknown, "events:ListTargetsByRule was denied", ""},
		{"administrator unreadable", mutate(func(_, m *awsemu.AccountSeed) { denyResponder(m, `"guardduty:GetAdministratorAccount"`) }), both,
			awsreadiness.StatusUnknown, "guardduty:GetAdministratorAccount was denied", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := find(run(t, tt.seed, tt.params), awsreadiness.CheckFindingsExport)
			if c == nil {
				t.Fatal("no findings export check")
			}
			if c.Status != tt.status || !strings.Contains(c.Evidence, tt.evidence) || !strings.Contains(c.Remediation, tt.fix) {
				t.Fatalf("%s %q, fix %q; want %s with %q and fix %q", c.Status, c.Evidence, c.Remediation, tt.status, tt.evidence, tt.fix)
			}
			if c.Status != awsreadiness.StatusOK && c.Remediation == "" {
				t.Fatalf("%s without a remediation", c.Status)
			}
		})
	}
}

// TestFindingsQueueURLRefused: a findings_queue_url that is no URL is
// refused before any AWS call.
func TestFindingsQueueURLRefused(t *testing.T) {
	lab := awsresponsetest.StartLab(t, ready(), awsresponsetest.NewClock())
	a, err := awsreadiness.New(awsreadiness.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := sdktest.Execute(context.Background(), t, sdktest.Start(t, a), lab.Request(t, member), map[string]any{"findings_queue_url": "firebreak-findings"})
	if msg := fmt.Sprint(o.Err, o.Result.GetError()); !strings.Contains(msg, "findings_queue_url \"firebreak-findings\" is not an SQS queue URL") {
		t.Fatalf("error %s", msg)
	}
}
