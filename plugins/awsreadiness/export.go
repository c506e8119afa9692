package awsreadiness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
)

// CheckFindingsExport is the check that GuardDuty findings reach the
// controller's intake.
const CheckFindingsExport = "detection.findings_export"

// EventBridge is the part of the EventBridge API the checks call.
type EventBridge interface {
	ListRules(ctx context.Context, in *eventbridge.ListRulesInput, opts ...func(*eventbridge.Options)) (*eventbridge.ListRulesOutput, error)
	ListTargetsByRule(ctx context.Context, in *eventbridge.ListTargetsByRuleInput, opts ...func(*eventbridge.Options)) (*eventbridge.ListTargetsByRuleOutput, error)
	DescribeApiDestination(ctx context.Context, in *eventbridge.DescribeApiDestinationInput, opts ...func(*eventbridge.Options)) (*eventbridge.DescribeApiDestinationOutput, error)
}

// Intake is where the controller takes findings in, as the controller
// tells the task: its SQS queue and whether its HTTPS events endpoint
// listens.
type Intake struct {
	// QueueURL is the SQS queue the controller polls; empty for none.
	QueueURL string
	// HTTPS is true when the controller's events endpoint (POST
	// /v1/events, for EventBridge API destinations) listens.
	HTTPS bool
}

// intakeEventsPath is the path of the controller's HTTPS events endpoint
// (controller/intake.EventsPath; a plugin does not import the controller).
const intakeEventsPath = "/v1/events"

var sqsHostRe = regexp.MustCompile(`^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$`)

// queueARNMatches says whether an SQS queue ARN is the queue at queueURL:
// the same account and name, and the same region when the URL names one.
func queueARNMatches(arn, queueURL string) bool {
	u, err := url.Parse(queueURL)
	if err != nil {
		return false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	a := strings.Split(arn, ":")
	if len(parts) != 2 || len(a) != 6 || a[2] != "sqs" {
		return false
	}
	if m := sqsHostRe.FindStringSubmatch(u.Hostname()); m != nil && m[1] != a[3] {
		return false
	}
	return a[4] == parts[0] && a[5] == parts[1]
}

// matchesGuardDuty says whether a rule's event pattern takes GuardDuty's
// findings: its source lists aws.guardduty.
func matchesGuardDuty(pattern string) bool {
	var p struct {
		Source     []any `json:"source"`
		DetailType []any `json:"detail-type"`
	}
	if json.Unmarshal([]byte(pattern), &p) != nil || !slices.Contains(p.Source, any("aws.guardduty")) {
		return false
	}
	return len(p.DetailType) == 0 || slices.Contains(p.DetailType, any("GuardDuty Finding"))
}

// exportFix is the remediation of a region whose findings go nowhere.
func exportFix(in *inputs) string {
	target := "the controller's intake queue ARN (--sqs-queue) or an API destination to its https://…/v1/events endpoint"
	if in.intake.QueueURL != "" {
		target = "arn:aws:sqs:REGION:ACCOUNT:NAME of --sqs-queue " + in.intake.QueueURL
	}
	return fmt.Sprintf("make the security account the GuardDuty delegated administrator (aws guardduty enable-organization-admin-account --admin-account-id SECURITY_ACCOUNT_ID, deploy/README.md step 0), "+
		"whose FindingsRule (deploy/cloudformation/security-account.yaml) sends every account's findings to the controller; or, in this account: "+
		"aws events put-rule --name firebreak-findings --region %s --event-pattern '{\"source\":[\"aws.guardduty\"],\"detail-type\":[\"GuardDuty Finding\"]}' "+
		"and aws events put-targets --rule firebreak-findings --region %s --targets Id=firebreak,Arn=%s", in.region, in.region, target)
}

// checkFindingsExport wants the region's GuardDuty findings to reach the
// controller's intake: an enabled EventBridge rule that takes them and
// sends them to the controller's SQS queue or to an API destination on its
// HTTPS events endpoint (or forwards them to another account's event bus),
// or a GuardDuty administrator account that aggregates them, whose own
// export its task checks.
func checkFindingsExport(ctx context.Context, in *inputs) Check {
	const id = CheckFindingsExport
	var ok, warn []string
	var token *string
	for {
		page, err := in.c.EventBridge.ListRules(ctx, &eventbridge.ListRulesInput{NextToken: token})
		if err != nil {
			return denied(id, "events:ListRules", err)
		}
		for _, r := range page.Rules {
			if r.State != "ENABLED" || !matchesGuardDuty(aws.ToString(r.EventPattern)) {
				continue
			}
			good, bad, failed := ruleTargets(ctx, in, aws.ToString(r.Name))
			if failed != nil {
				return *failed
			}
			ok, warn = append(ok, good...), append(warn, bad...)
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	if len(ok) > 0 {
		return Check{ID: id, Status: StatusOK, Evidence: strings.Join(ok, "; ")}
	}
	if in.detectorID != "" {
		admin, err := in.c.GuardDuty.GetAdministratorAccount(ctx, &guardduty.GetAdministratorAccountInput{DetectorId: aws.String(in.detectorID)})
		if err != nil {
			return denied(id, "guardduty:GetAdministratorAccount", err)
		}
		if a := admin.Administrator; a != nil && aws.ToString(a.RelationshipStatus) == "Enabled" {
			return Check{ID: id, Status: StatusOK, Evidence: fmt.Sprintf("GuardDuty findings of %s are aggregated in the GuardDuty administrator account %s, whose export its own check shows",
				in.region, aws.ToString(a.AccountId))}
		}
	}
	if len(warn) > 0 {
		return Check{ID: id, Status: StatusWarn, Evidence: strings.Join(warn, "; "), Remediation: exportFix(in)}
	}
	if in.detectorID == "" {
		// detection.guardduty already fails for the missing detector.
		return Check{ID: id, Status: StatusWarn, Evidence: "no GuardDuty detector in " + in.region + ", so no findings to export, and no EventBridge rule takes them",
			Remediation: "enable GuardDuty in " + in.region + " (detection.guardduty), then " + exportFix(in)}
	}
	return Check{ID: id, Status: StatusFail, Evidence: "no enabled EventBridge rule sends " + in.region + "'s GuardDuty findings to the controller, and no GuardDuty administrator account aggregates them",
		Remediation: exportFix(in)}
}

// ruleTargets sorts a GuardDuty rule's targets into those that reach the
// controller's intake and those that do not, each with its evidence.
// failed is set when a read was refused.
func ruleTargets(ctx context.Context, in *inputs, rule string) (ok, warn []string, failed *Check) {
	out, err := in.c.EventBridge.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(rule)})
	if err != nil {
		c := denied(CheckFindingsExport, "events:ListTargetsByRule", err)
		return nil, nil, &c
	}
	for _, t := range out.Targets {
		arn := aws.ToString(t.Arn)
		parts := strings.SplitN(arn, ":", 6)
		if len(parts) != 6 {
			warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to %q, not an ARN", rule, arn))
			continue
		}
		service, account, resource := parts[2], parts[4], parts[5]
		switch {
		case service == "sqs" && in.intake.QueueURL != "" && queueARNMatches(arn, in.intake.QueueURL):
			ok = append(ok, fmt.Sprintf("rule %s sends GuardDuty findings to the controller's intake queue %s", rule, arn))
		case service == "sqs" && in.intake.QueueURL == "":
			warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to queue %s, but the controller polls no SQS queue (--sqs-queue)", rule, arn))
		case service == "sqs":
			warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to queue %s, not the controller's intake queue %s", rule, arn, in.intake.QueueURL))
		case service == "events" && strings.HasPrefix(resource, "api-destination/"):
			name := strings.SplitN(strings.TrimPrefix(resource, "api-destination/"), "/", 2)[0]
			d, err := in.c.EventBridge.DescribeApiDestination(ctx, &eventbridge.DescribeApiDestinationInput{Name: aws.String(name)})
			if err != nil {
				c := denied(CheckFindingsExport, "events:DescribeApiDestination", err)
				return nil, nil, &c
			}
			endpoint := aws.ToString(d.InvocationEndpoint)
			u, perr := url.Parse(endpoint)
			switch {
			case perr != nil || u.Scheme != "https" || u.Path != intakeEventsPath:
				warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to API destination %s at %s, not a controller's https://…%s endpoint", rule, name, endpoint, intakeEventsPath))
			case !in.intake.HTTPS:
				warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to API destination %s at %s, but the controller's events endpoint is off (--events-listen)", rule, name, endpoint))
			default:
				ok = append(ok, fmt.Sprintf("rule %s sends GuardDuty findings to API destination %s at %s (the controller's HTTPS intake)", rule, name, endpoint))
			}
		case service == "events" && strings.HasPrefix(resource, "event-bus/") && account != in.account:
			ok = append(ok, fmt.Sprintf("rule %s forwards GuardDuty findings to account %s's event bus %s, whose export its own check shows", rule, account, arn))
		default:
			warn = append(warn, fmt.Sprintf("rule %s sends GuardDuty findings to %s, which is not the controller's intake", rule, arn))
		}
	}
	return ok, warn, nil
}
