// Package awsorg is the aws-org-discover action: the accounts of an AWS
// Organization, where each sits in the OU tree, and which regions each has
// enabled, for the controller's `firebreak accounts sync` and account-
// targeted runs.
//
// It runs in the organisation's management account, through the same
// FirebreakResponder role as every other account: deploy/ installs that
// role in the management account with a stack of its own (StackSets skip
// the management account), and only there with the organisation reads.
// AWS Account Management's ListRegions reads another account's regions only
// when trusted access for account.amazonaws.com is enabled in the
// organisation.
package awsorg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/account"
	accounttypes "github.com/aws/aws-sdk-go-v2/service/account/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "aws-org-discover"

// Organizations is the part of the Organizations API the action calls.
type Organizations interface {
	DescribeOrganization(ctx context.Context, in *organizations.DescribeOrganizationInput, opts ...func(*organizations.Options)) (*organizations.DescribeOrganizationOutput, error)
	organizations.ListAccountsAPIClient
	organizations.ListRootsAPIClient
	organizations.ListOrganizationalUnitsForParentAPIClient
	organizations.ListAccountsForParentAPIClient
}

// AccountManagement is the part of the Account Management API the action
// calls.
type AccountManagement interface {
	account.ListRegionsAPIClient
}

// Clients are the AWS clients of one task.
type Clients struct {
	Organizations Organizations
	Account       AccountManagement
}

// ClientFactory builds a task's clients.
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients

// NewClients is the ClientFactory of the real SDK clients.
func NewClients(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients {
	return Clients{
		Organizations: organizations.NewFromConfig(cfg, func(o *organizations.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.Organization) }),
		Account:       account.NewFromConfig(cfg, func(o *account.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.Account) }),
	}
}

// Config configures the action.
type Config struct {
	// NewClients builds each task's clients. Defaults to NewClients.
	NewClients ClientFactory
	// Concurrency is how many accounts' regions are listed at once.
	// Defaults to 4.
	Concurrency int
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awsorg: nil Config")
	}
	if c.NewClients == nil {
		c.NewClients = NewClients
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Concurrency < 1 {
		return errors.New("awsorg: Concurrency must be positive")
	}
	return nil
}

// Params are aws-org-discover's parameters: only the target, which names
// the management account.
type Params struct {
	awsresponse.Target
}

// Result is aws-org-discover's result.
type Result struct {
	// ManagementAccount is the organisation's management account.
	ManagementAccount string `json:"management_account"`
	// Organization is the organisation's id.
	Organization string `json:"organization"`
	// Accounts are the ACTIVE accounts, by id.
	Accounts []Account `json:"accounts"`
	// Skipped describes the accounts left out, one line each:
	// "ID (NAME): STATUS".
	Skipped []string `json:"skipped"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// Account is one account of the organisation.
type Account struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Status string `json:"status"`
	// OUPath is the account's place in the tree, each level by id and by
	// name: r-ROOT/Root/ou-…/Workloads/…, so that the controller's
	// --accounts ou=NAME-OR-ID finds a level by either.
	OUPath string `json:"ou_path"`
	// OUNames is the path by name: Root/Workloads/….
	OUNames string `json:"ou_names"`
	// OrgPath is the path in the form of the aws:PrincipalOrgPaths
	// condition key, for policies: o-ORG/r-ROOT/ou-…/.
	OrgPath string `json:"org_path"`
	// Regions are the enabled regions (opted in or enabled by default).
	Regions []string `json:"regions"`
	// Unknown lists what could not be learned about the account and why;
	// the account is kept all the same.
	Unknown []Unknown `json:"unknown"`
}

// Unknown is one fact about an account that discovery could not learn.
type Unknown struct {
	// Field names what is missing: "regions".
	Field string `json:"field"`
	// Reason is the error that kept it from being learned.
	Reason string `json:"reason"`
	// Remediation is what to do so the next sync learns it.
	Remediation string `json:"remediation"`
}

// RegionsRemediation is the fix for an account whose enabled regions could
// not be read.
const RegionsRemediation = "enable trusted access for AWS Account Management in the management account " +
	"(aws organizations enable-aws-service-access --service-principal account.amazonaws.com), check that the responder role there may call " +
	"account:ListRegions (deploy/cloudformation/member-account.yaml grants it where ManagementAccountId is the account), then run `firebreak accounts sync` again"

// Action is the aws-org-discover action.
type Action struct{ cfg Config }

// New returns aws-org-discover.
func New(cfg Config) (*Action, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Action{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Lists the AWS Organization's accounts (ACTIVE ones kept, others listed as skipped), each account's OU path and its enabled regions; " +
			"run it in the management account (--param account=MANAGEMENT_ACCOUNT)",
		Roles:  awsresponse.Roles,
		Params: awsresponse.TargetParams(),
	}, nil
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p Params
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	self, _, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := a.cfg.NewClients(cfg, req.AWS)
	res := &Result{Accounts: []Account{}, Skipped: []string{}}
	err = a.discover(ctx, c, self, res, emit)
	res.APICalls = journal.Calls()
	if err != nil && len(res.Accounts) == 0 {
		return nil, err
	}
	return res, err
}

func (a *Action) discover(ctx context.Context, c Clients, self string, res *Result, emit sdk.Emitter) error {
	org, err := c.Organizations.DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{})
	if err != nil {
		switch awsclient.ErrorCode(err) {
		case "AWSOrganizationsNotInUseException":
			return sdk.Errorf(codes.FailedPrecondition, "account %s is not in an AWS Organization: there is nothing to discover", self)
		case "AccessDeniedException":
			return sdk.Errorf(codes.PermissionDenied, "account %s's responder role may not read the organisation: run aws-org-discover in the management account "+
				"(--param account=MANAGEMENT_ACCOUNT_ID), where deploy/ grants the responder role the organisation reads", self)
		}
		return awsclient.APIError("organizations:DescribeOrganization", err)
	}
	res.ManagementAccount, res.Organization = aws.ToString(org.Organization.MasterAccountId), aws.ToString(org.Organization.Id)
	if res.ManagementAccount != self {
		// A delegated administrator may read the organisation too, so this
		// is not refused; but the regions of other accounts need the
		// management account's trusted access.
		_ = emit.Log("warn", fmt.Sprintf("running in account %s, not the management account %s", self, res.ManagementAccount))
	}

	var all []orgtypes.Account
	pages := organizations.NewListAccountsPaginator(c.Organizations, &organizations.ListAccountsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if awsclient.ErrorCode(err) == "AccessDeniedException" {
				return sdk.Errorf(codes.PermissionDenied, "account %s may not list the organisation's accounts: run aws-org-discover in the management account %s (--param account=%s), "+
					"or in a delegated administrator account", self, res.ManagementAccount, res.ManagementAccount)
			}
			return awsclient.APIError("organizations:ListAccounts", err)
		}
		all = append(all, page.Accounts...)
	}
	_ = emit.Progress(20, fmt.Sprintf("%d accounts listed", len(all)))

	paths, err := ouPaths(ctx, c.Organizations, res.Organization)
	if err != nil {
		return err
	}
	_ = emit.Progress(40, "organisational units read")

	for _, acct := range all {
		id := aws.ToString(acct.Id)
		status := string(acct.State)
		if status == "" {
			status = string(acct.Status) //nolint:staticcheck // older organisations report Status only
		}
		path := paths[id]
		if status != "ACTIVE" {
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s (%s): %s", id, aws.ToString(acct.Name), status))
			continue
		}
		res.Accounts = append(res.Accounts, Account{ID: id, Name: aws.ToString(acct.Name), Email: aws.ToString(acct.Email), Status: status,
			OUPath: path.both, OUNames: path.names, OrgPath: path.ids, Regions: []string{}, Unknown: []Unknown{}})
	}
	slices.SortFunc(res.Accounts, func(x, y Account) int { return strings.Compare(x.ID, y.ID) })
	return a.regions(ctx, c.Account, self, res, emit)
}

// ouPath is an account's place in the tree.
type ouPath struct{ ids, names, both string }

// ouPaths walks the OU tree from the roots and returns each account's
// path.
func ouPaths(ctx context.Context, c Organizations, orgID string) (map[string]ouPath, error) {
	out := map[string]ouPath{}
	var walk func(parentID string, at ouPath) error
	walk = func(parentID string, at ouPath) error {
		accounts := organizations.NewListAccountsForParentPaginator(c, &organizations.ListAccountsForParentInput{ParentId: aws.String(parentID)})
		for accounts.HasMorePages() {
			page, err := accounts.NextPage(ctx)
			if err != nil {
				return awsclient.APIError("organizations:ListAccountsForParent "+parentID, err)
			}
			for _, a := range page.Accounts {
				out[aws.ToString(a.Id)] = at
			}
		}
		units := organizations.NewListOrganizationalUnitsForParentPaginator(c, &organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String(parentID)})
		for units.HasMorePages() {
			page, err := units.NextPage(ctx)
			if err != nil {
				return awsclient.APIError("organizations:ListOrganizationalUnitsForParent "+parentID, err)
			}
			for _, u := range page.OrganizationalUnits {
				child := ouPath{ids: at.ids + aws.ToString(u.Id) + "/", names: at.names + "/" + aws.ToString(u.Name),
					both: at.both + "/" + aws.ToString(u.Id) + "/" + aws.ToString(u.Name)}
				if err := walk(aws.ToString(u.Id), child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	roots := organizations.NewListRootsPaginator(c, &organizations.ListRootsInput{})
	for roots.HasMorePages() {
		page, err := roots.NextPage(ctx)
		if err != nil {
			return nil, awsclient.APIError("organizations:ListRoots", err)
		}
		for _, r := range page.Roots {
			root := ouPath{ids: orgID + "/" + aws.ToString(r.Id) + "/", names: aws.ToString(r.Name), both: aws.ToString(r.Id) + "/" + aws.ToString(r.Name)}
			if err := walk(aws.ToString(r.Id), root); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// regions lists each active account's enabled regions, a few accounts at
// a time. An account whose regions cannot be read stays in the result
// without regions, with the reason and the fix in its Unknown list: one
// account's refusal (trusted access for account.amazonaws.com not enabled,
// a permission boundary) must not throw away the whole discovery, and runs
// that name no regions need none.
func (a *Action) regions(ctx context.Context, c AccountManagement, self string, res *Result, emit sdk.Emitter) error {
	var mu sync.Mutex
	failed := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Concurrency)
	for i := range res.Accounts {
		acct := &res.Accounts[i]
		g.Go(func() error {
			in := &account.ListRegionsInput{RegionOptStatusContains: []accounttypes.RegionOptStatus{accounttypes.RegionOptStatusEnabled, accounttypes.RegionOptStatusEnabledByDefault}}
			// The calling account names no AccountId: AWS refuses the
			// management account's own id there.
			if acct.ID != self {
				in.AccountId = aws.String(acct.ID)
			}
			var regions []string
			pages := account.NewListRegionsPaginator(c, in)
			for pages.HasMorePages() {
				page, err := pages.NextPage(gctx)
				if err != nil {
					mu.Lock()
					failed++
					acct.Unknown = append(acct.Unknown, Unknown{Field: "regions", Reason: awsclient.APIError("account:ListRegions", err).Error(), Remediation: RegionsRemediation})
					mu.Unlock()
					return nil
				}
				for _, r := range page.Regions {
					regions = append(regions, aws.ToString(r.RegionName))
				}
			}
			slices.Sort(regions)
			mu.Lock()
			acct.Regions = append(acct.Regions, regions...)
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if failed > 0 {
		_ = emit.Log("warn", fmt.Sprintf("the enabled regions of %d account(s) could not be read; they are kept without regions: %s", failed, RegionsRemediation))
	}
	_ = emit.Progress(100, fmt.Sprintf("%d active accounts, %d skipped, %d without known regions", len(res.Accounts), len(res.Skipped), failed))
	return nil
}
