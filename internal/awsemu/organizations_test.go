package awsemu

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	accountapi "github.com/aws/aws-sdk-go-v2/service/account"
	accounttypes "github.com/aws/aws-sdk-go-v2/service/account/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func (l *lab) orgReader(t *testing.T) aws.Config {
	t.Helper()
	out, err := sts.NewFromConfig(l.assumeWorker(t)).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + LabAccountID(0) + ":role/" + LabOrgReaderRole), RoleSessionName: aws.String("org"),
		ExternalId: aws.String(LabExternalID),
	})
	ok(t, err)
	c := out.Credentials
	return l.cfg(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
}

func TestOrganizations(t *testing.T) {
	seed := LabSeed(8)
	seed.Accounts[5].Status = "SUSPENDED"
	seed.Accounts[6].Status = "PENDING_CLOSURE"
	seed.Accounts[2].Roles[0].InlinePolicies["orgs"] = policy(`{"Effect":"Allow","Action":"organizations:*","Resource":"*"}`)
	l := newLabFrom(t, seed, false)
	c := organizations.NewFromConfig(l.orgReader(t))

	org, err := c.DescribeOrganization(ctx(t), &organizations.DescribeOrganizationInput{})
	ok(t, err)
	if aws.ToString(org.Organization.MasterAccountId) != LabAccountID(0) {
		t.Fatalf("organization %+v", org.Organization)
	}

	var accounts []orgtypes.Account
	pages := 0
	p := organizations.NewListAccountsPaginator(c, &organizations.ListAccountsInput{MaxResults: aws.Int32(3)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		ok(t, err)
		pages++
		accounts = append(accounts, out.Accounts...)
	}
	if pages != 3 || len(accounts) != 8 {
		t.Fatalf("pages %d accounts %d", pages, len(accounts))
	}
	status := map[string]orgtypes.AccountStatus{}
	for _, a := range accounts {
		status[aws.ToString(a.Id)] = a.Status
	}
	if status[LabAccountID(5)] != orgtypes.AccountStatusSuspended || status[LabAccountID(6)] != orgtypes.AccountStatusPendingClosure || status[LabAccountID(2)] != orgtypes.AccountStatusActive {
		t.Fatalf("statuses %v", status)
	}

	roots, err := c.ListRoots(ctx(t), &organizations.ListRootsInput{})
	ok(t, err)
	root := aws.ToString(roots.Roots[0].Id)
	ous, err := c.ListOrganizationalUnitsForParent(ctx(t), &organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String(root)})
	ok(t, err)
	var workloads string
	for _, ou := range ous.OrganizationalUnits {
		if aws.ToString(ou.Name) == "Workloads" {
			workloads = aws.ToString(ou.Id)
		}
	}
	if len(ous.OrganizationalUnits) != 2 || workloads == "" {
		t.Fatalf("OUs %+v", ous.OrganizationalUnits)
	}
	inOU, err := c.ListAccountsForParent(ctx(t), &organizations.ListAccountsForParentInput{ParentId: aws.String(workloads)})
	ok(t, err)
	if len(inOU.Accounts) != 6 {
		t.Fatalf("workload accounts %d", len(inOU.Accounts))
	}
	parents, err := c.ListParents(ctx(t), &organizations.ListParentsInput{ChildId: aws.String(LabAccountID(3))})
	ok(t, err)
	if aws.ToString(parents.Parents[0].Id) != workloads || parents.Parents[0].Type != orgtypes.ParentTypeOrganizationalUnit {
		t.Fatalf("parents %+v", parents.Parents)
	}
	_, err = c.ListParents(ctx(t), &organizations.ListParentsInput{ChildId: aws.String("999999999999")})
	wantCode(t, err, "ChildNotFoundException")
	_, err = c.ListOrganizationalUnitsForParent(ctx(t), &organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String("ou-zzzz-zzzzzzzz")})
	wantCode(t, err, "ParentNotFoundException")

	// A member account may describe the organisation but not list it.
	member := organizations.NewFromConfig(l.assumeResponder(t, 2))
	_, err = member.DescribeOrganization(ctx(t), &organizations.DescribeOrganizationInput{})
	ok(t, err)
	_, err = member.ListAccounts(ctx(t), &organizations.ListAccountsInput{})
	wantCode(t, err, "AccessDeniedException")
}

func TestOrganizationsOutsideAnOrganization(t *testing.T) {
	seed := LabSeed(3)
	seed.Accounts[2].Standalone = true
	seed.Accounts[2].Roles[0].InlinePolicies["orgs"] = policy(`{"Effect":"Allow","Action":"organizations:*","Resource":"*"}`)
	l := newLabFrom(t, seed, false)
	_, err := organizations.NewFromConfig(l.assumeResponder(t, 2)).ListAccounts(ctx(t), &organizations.ListAccountsInput{})
	wantCode(t, err, "AWSOrganizationsNotInUseException")
}

func TestListRegions(t *testing.T) {
	l := newLab(t, 3)
	c := accountapi.NewFromConfig(l.orgReader(t))
	enabled := []accounttypes.RegionOptStatus{accounttypes.RegionOptStatusEnabled, accounttypes.RegionOptStatusEnabledByDefault}
	tests := []struct {
		name    string
		account *string
		want    []string
		code    string
	}{
		{"own account", nil, []string{"us-east-1"}, ""},
		{"member from the management account", aws.String(LabAccountID(2)), []string{"us-east-1", "us-west-2"}, ""},
		{"account outside the organisation", aws.String("999999999999"), nil, "AccessDeniedException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			p := accountapi.NewListRegionsPaginator(c, &accountapi.ListRegionsInput{AccountId: tt.account, RegionOptStatusContains: enabled, MaxResults: aws.Int32(1)})
			for p.HasMorePages() {
				out, err := p.NextPage(ctx(t))
				if tt.code != "" {
					wantCode(t, err, tt.code)
					return
				}
				ok(t, err)
				for _, r := range out.Regions {
					got = append(got, aws.ToString(r.RegionName))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("regions %v, want %v", got, tt.want)
			}
		})
	}
}
