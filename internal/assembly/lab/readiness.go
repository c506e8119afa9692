package lab

import (
	"context"
	"fmt"
	"slices"

	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/readiness"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// EvidenceBucket is the lab organisation's evidence bucket, in the
// security account.
const EvidenceBucket = "firebreak-evidence-lab"

// FindingsEndpoint is the HTTPS events endpoint the lab organisation's
// EventBridge API destination names. EventBridge in the lab posts
// nowhere (the lab sends its findings itself); the readiness review reads
// the rule and the destination.
const FindingsEndpoint = "https://firebreak-controller.lab.internal/v1/events"

// findingsExport gives a region of the security account, the GuardDuty
// administrator, the rule that sends GuardDuty findings to the
// controller's events endpoint through an API destination.
func findingsExport(account string, r *awsemu.RegionSeed) {
	r.APIDestinations = append(r.APIDestinations, awsemu.APIDestinationSeed{Name: "firebreak-controller", Endpoint: FindingsEndpoint})
	r.EventRules = append(r.EventRules, awsemu.EventRuleSeed{Name: "firebreak-findings",
		EventPattern: `{"source":["aws.guardduty","aws.securityhub"],"detail-type":["GuardDuty Finding","Security Hub Findings - Imported"]}`,
		Targets:      []string{awsemu.APIDestinationARN(account, r.Region, "firebreak-controller")}})
}

// ReadinessSeed is the lab organisation for `firebreak lab readiness`:
// ready in every way but the deliberate gaps, which the report must show
// (the security account is the GuardDuty administrator, whose rule sends
// every account's findings to the controller):
//   - an account without the responder role (LabAccountID(4));
//   - GuardDuty off in us-west-2 of LabAccountID(3);
//   - three running instances without agents (LabAccountID(3)'s);
//   - an evidence bucket without Object Lock (the security account's);
//   - one approver (the controller's admin, alone).
func ReadinessSeed() *awsemu.Seed {
	seed := awsemu.LabSeed(5)
	sec := awsemu.LabAccountID(1)
	on := func(region string) awsemu.RegionSeed {
		return awsemu.RegionSeed{Region: region, GuardDuty: &awsemu.GuardDutySeed{Administrator: sec}, SecurityHub: &awsemu.SecurityHubSeed{}}
	}
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		switch a.ID {
		case awsemu.LabAccountID(0):
			r := on(a.Regions[0])
			r.Trails = []awsemu.TrailSeed{{Name: "org-trail", Bucket: "org-trail-logs", Organization: true}}
			a.Resources = append(a.Resources, r)
		case sec:
			a.Resources[0].GuardDuty, a.Resources[0].SecurityHub = &awsemu.GuardDutySeed{}, &awsemu.SecurityHubSeed{}
			findingsExport(sec, &a.Resources[0])
			a.Buckets = append(a.Buckets, awsemu.BucketSeed{Name: EvidenceBucket, Versioning: "Enabled",
				Encryption: &awsemu.EncryptionSeed{Algorithm: "aws:kms", KMSKeyID: "arn:aws:kms:us-east-1:" + sec + ":key/evidence"}})
		case awsemu.LabAccountID(2), awsemu.LabAccountID(3):
			r := &a.Resources[0]
			r.GuardDuty, r.SecurityHub = &awsemu.GuardDutySeed{Administrator: sec}, &awsemu.SecurityHubSeed{}
			// Isolation can use Standby in every group.
			for j := range r.AutoScalingGroups {
				r.AutoScalingGroups[j].Min = 0
			}
			west := on("us-west-2")
			if a.ID == awsemu.LabAccountID(3) {
				west.GuardDuty = nil
			}
			a.Resources = append(a.Resources, west)
		case awsemu.LabAccountID(4):
			a.Roles = slices.DeleteFunc(a.Roles, func(r awsemu.RoleSeed) bool { return r.Name == awsemu.LabResponderRole })
		}
	}
	return seed
}

// Readiness starts the lab on ReadinessSeed, reviews its readiness in
// every account and enabled region, and returns the report.
func Readiness(ctx context.Context, o Options) (*readiness.Report, error) {
	o.Seed = ReadinessSeed()
	e, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	e.say("readiness: reviewing every account and enabled region through the worker")
	r, err := e.Controller.Operator.ReviewReadiness(e.Admin(), runs.Actor{Name: "lab", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN},
		&operatorv1.ReadinessRequest{Accounts: "all", Regions: "all", EvidenceBucket: EvidenceBucket, EvidenceAccount: awsemu.LabAccountID(1)})
	if err != nil {
		return nil, fmt.Errorf("readiness review: %w", err)
	}
	return r, nil
}

// ReadinessProto is the wire form of a report, for the CLI's printers.
func ReadinessProto(r *readiness.Report) *operatorv1.ReadinessReport {
	return operator.ReadinessProto(r)
}
