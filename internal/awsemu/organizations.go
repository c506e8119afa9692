package awsemu

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// organization is the AWS Organization the seeded accounts belong to. It is
// fixed once seeded, apart from accounts joining, and guarded by e.mu.
type organization struct {
	id         string
	rootID     string
	management string
	created    time.Time
	units      map[string]*orgUnit
	// parent maps an account or OU id to its parent's id.
	parent map[string]string
	// members are the member account ids in the order they joined.
	members []string
	// trail is the organisation trail, when one is seeded.
	trail *orgTrail
}

type orgUnit struct {
	id     string
	name   string
	parent string
}

func (o *organization) arn() string {
	return "arn:aws:organizations::" + o.management + ":organization/" + o.id
}

func (e *Emulator) organizationsService() *service {
	s := &service{
		name:        "organizations",
		eventSource: "organizations.amazonaws.com",
		protocol:    protoJSON,
		target:      "AWSOrganizationsV20161128",
		jsonVersion: "1.1",
		global:      true,
		errs:        jsonErrors("TooManyRequestsException", http.StatusBadRequest, http.StatusBadRequest),
	}
	ops := []*operation{
		{name: "DescribeOrganization", readOnly: true, handle: (*Emulator).orgDescribeOrganization},
		{name: "ListAccounts", readOnly: true, handle: (*Emulator).orgListAccounts},
		{name: "ListRoots", readOnly: true, handle: (*Emulator).orgListRoots},
		{name: "ListOrganizationalUnitsForParent", readOnly: true, handle: (*Emulator).orgListUnitsForParent},
		{name: "ListAccountsForParent", readOnly: true, handle: (*Emulator).orgListAccountsForParent},
		{name: "ListParents", readOnly: true, handle: (*Emulator).orgListParents},
		{name: "DescribeAccount", readOnly: true, handle: (*Emulator).orgDescribeAccount},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "organizations:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func orgError(code, msg string) *apiError {
	return &apiError{Code: code, Status: http.StatusBadRequest, Message: msg}
}

// orgFor returns the caller's organisation; management demands the caller
// be its management account, as every read but DescribeOrganization does.
func (e *Emulator) orgFor(c *call, management bool) (*organization, *apiError) {
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	if o == nil || (c.who.account != o.management && !slices.Contains(o.members, c.who.account)) {
		return nil, orgError("AWSOrganizationsNotInUseException", "Your account is not a member of an organization.")
	}
	if management && c.who.account != o.management {
		return nil, orgError("AccessDeniedException", "You don't have permissions to access this resource.")
	}
	return o, nil
}

type orgAccountOut struct {
	ID              string    `json:"Id"`
	Arn             string    `json:"Arn"`
	Email           string    `json:"Email"`
	Name            string    `json:"Name"`
	Status          string    `json:"Status"`
	State           string    `json:"State"`
	JoinedMethod    string    `json:"JoinedMethod"`
	JoinedTimestamp epochTime `json:"JoinedTimestamp"`
}

func (e *Emulator) renderOrgAccount(o *organization, id string) orgAccountOut {
	out := orgAccountOut{ID: id, Arn: "arn:aws:organizations::" + o.management + ":account/" + o.id + "/" + id, JoinedMethod: "CREATED"}
	if a := e.account(id); a != nil {
		// Name, email, status and join time are fixed at seeding.
		out.Email, out.Name, out.Status, out.State = a.email, a.name, a.status, a.status
		out.JoinedTimestamp = epochTime(a.joined)
	}
	if id == o.management {
		out.JoinedMethod = "INVITED"
	}
	return out
}

// orgAccounts lists the management account first, then members in joining
// order.
func (o *organization) accounts() []string {
	return append([]string{o.management}, o.members...)
}

func (e *Emulator) orgDescribeOrganization(c *call) (any, error) {
	o, ae := e.orgFor(c, false)
	if ae != nil {
		return nil, ae
	}
	mgmt := e.renderOrgAccount(o, o.management)
	type policyType struct{ Type, Status string }
	return map[string]any{"Organization": map[string]any{
		"Id": o.id, "Arn": o.arn(), "FeatureSet": "ALL",
		"MasterAccountArn": mgmt.Arn, "MasterAccountId": o.management, "MasterAccountEmail": mgmt.Email,
		"AvailablePolicyTypes": []policyType{{"SERVICE_CONTROL_POLICY", "ENABLED"}},
	}}, nil
}

type orgPageInput struct {
	NextToken  string `json:"NextToken"`
	MaxResults int    `json:"MaxResults"`
	ParentID   string `json:"ParentId"`
	ChildID    string `json:"ChildId"`
	AccountID  string `json:"AccountId"`
}

// jsonPage cuts items into a page starting at the opaque token. The token
// is the index of the page's first item.
func jsonPage[T any](items []T, token string, maxResults, limit int, invalid func(string) *apiError) ([]T, string, *apiError) {
	if maxResults == 0 {
		maxResults = limit
	}
	if maxResults < 1 || maxResults > limit {
		return nil, "", invalid("MaxResults must be between 1 and " + strconv.Itoa(limit) + ".")
	}
	start := 0
	if token != "" {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		n, err2 := strconv.Atoi(string(raw))
		if err != nil || err2 != nil || n < 0 || n > len(items) {
			return nil, "", invalid("The specified pagination token is not valid.")
		}
		start = n
	}
	end := min(len(items), start+maxResults)
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return items[start:end], next, nil
}

func orgInvalid(msg string) *apiError { return orgError("InvalidInputException", msg) }

func (e *Emulator) orgListAccounts(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	page, next, ae := jsonPage(o.accounts(), in.NextToken, in.MaxResults, 20, orgInvalid)
	if ae != nil {
		return nil, ae
	}
	out := make([]orgAccountOut, 0, len(page))
	for _, id := range page {
		out = append(out, e.renderOrgAccount(o, id))
	}
	return map[string]any{"Accounts": out, "NextToken": nilIfEmpty(next)}, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (e *Emulator) orgListRoots(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	type policyType struct{ Type, Status string }
	root := map[string]any{
		"Id": o.rootID, "Arn": "arn:aws:organizations::" + o.management + ":root/" + o.id + "/" + o.rootID, "Name": "Root",
		"PolicyTypes": []policyType{{"SERVICE_CONTROL_POLICY", "ENABLED"}},
	}
	return map[string]any{"Roots": []any{root}}, nil
}

// parentExists reports whether id is the root or an OU.
func (o *organization) parentExists(id string) bool {
	return id == o.rootID || o.units[id] != nil
}

func (e *Emulator) orgListUnitsForParent(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	if !o.parentExists(in.ParentID) {
		return nil, orgError("ParentNotFoundException", "We can't find a root or OU with the ParentId that you specified.")
	}
	var ids []string
	for id, u := range o.units {
		if u.parent == in.ParentID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	page, next, ae := jsonPage(ids, in.NextToken, in.MaxResults, 20, orgInvalid)
	if ae != nil {
		return nil, ae
	}
	type unitOut struct{ Id, Arn, Name string }
	out := make([]unitOut, 0, len(page))
	for _, id := range page {
		out = append(out, unitOut{id, "arn:aws:organizations::" + o.management + ":ou/" + o.id + "/" + id, o.units[id].name})
	}
	return map[string]any{"OrganizationalUnits": out, "NextToken": nilIfEmpty(next)}, nil
}

func (e *Emulator) orgListAccountsForParent(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	if !o.parentExists(in.ParentID) {
		return nil, orgError("ParentNotFoundException", "We can't find a root or OU with the ParentId that you specified.")
	}
	var ids []string
	for _, id := range o.accounts() {
		if o.parent[id] == in.ParentID {
			ids = append(ids, id)
		}
	}
	page, next, ae := jsonPage(ids, in.NextToken, in.MaxResults, 20, orgInvalid)
	if ae != nil {
		return nil, ae
	}
	out := make([]orgAccountOut, 0, len(page))
	for _, id := range page {
		out = append(out, e.renderOrgAccount(o, id))
	}
	return map[string]any{"Accounts": out, "NextToken": nilIfEmpty(next)}, nil
}

func (e *Emulator) orgListParents(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	p, ok := o.parent[in.ChildID]
	if !ok {
		return nil, orgError("ChildNotFoundException", "We can't find an organizational unit (OU) or AWS account with the ChildId that you specified.")
	}
	typ := "ORGANIZATIONAL_UNIT"
	if p == o.rootID {
		typ = "ROOT"
	}
	return map[string]any{"Parents": []map[string]string{{"Id": p, "Type": typ}}}, nil
}

func (e *Emulator) orgDescribeAccount(c *call) (any, error) {
	var in orgPageInput
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	o, ae := e.orgFor(c, true)
	if ae != nil {
		return nil, ae
	}
	if in.AccountID != o.management && !slices.Contains(o.members, in.AccountID) {
		return nil, orgError("AccountNotFoundException", "You specified an account that doesn't exist.")
	}
	return map[string]any{"Account": e.renderOrgAccount(o, in.AccountID)}, nil
}
