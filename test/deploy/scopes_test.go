package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMemberRoleScopes checks the scope of the responder role's grants that
// an attacker holding Firebreak's credentials could turn into more
// privilege, not only that the action is granted: iam:PassRole is held to
// EC2, this account's instances and the instance-role path, and the role
// can neither change nor pass itself. The grants that stay broad are each
// explained in deploy/README.md.
func TestMemberRoleScopes(t *testing.T) {
	tpl := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	role := resourcesOfType(tpl, "AWS::IAM::Role")[0]
	sts := tpl.roleStatements(t, role)
	readme, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	broadSection := ""
	if _, after, ok := strings.Cut(string(readme), "## The grants that stay broad"); ok {
		broadSection, _, _ = strings.Cut(after, "\n## ")
	}
	if broadSection == "" {
		t.Fatal(`deploy/README.md has no "## The grants that stay broad" section`)
	}
	self := `{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ResponderRoleName}"}`
	// of returns the statements with the given effect that name action.
	of := func(action, effect string) []statement {
		var out []statement
		for _, s := range sts {
			if s.effect() == effect && slices.Contains(s.actions(), action) {
				out = append(out, s)
			}
		}
		return out
	}
	deniedOnSelf := func(t *testing.T, action string) {
		t.Helper()
		for _, s := range of(action, "Deny") {
			if js(s.raw["Resource"]) == self {
				return
			}
		}
		t.Errorf("%s is not denied on the responder role itself (%s)", action, self)
	}
	// attachesDenyAllOnly: a managed policy is attached only when it is
	// AWS's AWSDenyAll (quarantine), never one that grants.
	attachesDenyAllOnly := func(t *testing.T, allows []statement) {
		t.Helper()
		for _, s := range allows {
			got := js(s.raw["Condition"])
			if want := `{"ArnEquals":{"iam:PolicyARN":{"Fn::Sub":"arn:${AWS::Partition}:iam::aws:policy/AWSDenyAll"}}}`; got != want {
				t.Errorf("%s: attach condition %s, want only AWSDenyAll: %s", s.where, got, want)
			}
		}
	}
	tests := []struct {
		action string
		// broad: the grant covers resources beyond what containment
		// needs, and deploy/README.md must say why.
		broad bool
		check func(t *testing.T, allows []statement)
	}{
		{action: "iam:PassRole", check: func(t *testing.T, allows []statement) {
			deniedOnSelf(t, "iam:PassRole")
			for _, s := range allows {
				if got, want := js(s.raw["Resource"]), `{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role${InstanceRolePath}*"}`; got != want {
					t.Errorf("%s: PassRole on %s, want only roles under the InstanceRolePath parameter: %s", s.where, got, want)
				}
				got := js(s.raw["Condition"])
				want := `{"ArnLike":{"iam:AssociatedResourceArn":{"Fn::Sub":"arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:instance/*"}},` +
					`"StringEquals":{"iam:PassedToService":"ec2.amazonaws.com"}}`
				if got != want {
					t.Errorf("%s: PassRole condition %s, want only to EC2 for this account's instances: %s", s.where, got, want)
				}
			}
		}},
		{action: "iam:AttachUserPolicy", check: attachesDenyAllOnly},
		{action: "iam:AttachRolePolicy", check: func(t *testing.T, allows []statement) {
			deniedOnSelf(t, "iam:AttachRolePolicy")
			attachesDenyAllOnly(t, allows)
		}},
		{action: "iam:PutRolePolicy", broad: true, check: func(t *testing.T, _ []statement) { deniedOnSelf(t, "iam:PutRolePolicy") }},
		{action: "iam:PutUserPolicy", broad: true},
		{action: "ec2:ModifyInstanceAttribute", broad: true},
		{action: "s3:PutBucketPolicy", broad: true},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			allows := of(tt.action, "Allow")
			if len(allows) == 0 {
				t.Fatalf("the responder role does not grant %s", tt.action)
			}
			for _, s := range allows {
				if r := js(s.raw["Resource"]); r == `"*"` && !tt.broad {
					t.Errorf("%s: %s on every resource", s.where, tt.action)
				}
			}
			if tt.broad && !strings.Contains(broadSection, "`"+tt.action+"`") {
				t.Errorf("%s stays broad, and deploy/README.md's \"The grants that stay broad\" does not say what it is for", tt.action)
			}
			if tt.check != nil {
				tt.check(t, allows)
			}
		})
	}
}
