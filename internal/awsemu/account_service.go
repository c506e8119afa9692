package awsemu

import (
	"net/http"
	"slices"
)

func (e *Emulator) accountService() *service {
	s := &service{
		name:        "account",
		eventSource: "account.amazonaws.com",
		protocol:    protoRestJSON,
		global:      true,
		errs:        jsonErrors("TooManyRequestsException", http.StatusTooManyRequests, http.StatusForbidden),
		routes: []restRoute{
			route(http.MethodPost, "/listRegions", "ListRegions"),
			route(http.MethodPost, "/getRegionOptStatus", "GetRegionOptStatus"),
		},
	}
	s.errs.unknownOperation = errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation")
	ops := []*operation{
		{name: "ListRegions", readOnly: true, handle: (*Emulator).accountListRegions, resources: accountARN},
		{name: "GetRegionOptStatus", readOnly: true, handle: (*Emulator).accountGetRegionOptStatus, resources: accountARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "account:" + op.name
		s.ops[op.name] = op
	}
	return s
}

// accountARN is the resource an Account Management call is authorised
// against, as AWS forms it: arn:aws:account::ACCOUNT:account for the
// caller's own account, and for a member named by AccountId
// arn:aws:account::MANAGEMENT:account/o-ORG/MEMBER, so that a policy can
// allow or deny reading one member.
func accountARN(e *Emulator, c *call) []string {
	var in struct {
		AccountID string `json:"AccountId"`
	}
	// An unreadable body is refused by the handler's own decoding.
	_ = c.decodeJSON(&in)
	if in.AccountID == "" || in.AccountID == c.who.account {
		return []string{"arn:aws:account::" + c.who.account + ":account"}
	}
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	org := ""
	if o != nil {
		org = o.id
	}
	return []string{"arn:aws:account::" + c.who.account + ":account/" + org + "/" + in.AccountID}
}

func accountValidation(msg string) *apiError {
	return &apiError{Code: "ValidationException", Status: http.StatusBadRequest, Message: msg}
}

// targetAccount resolves the AccountId parameter: the caller's own account,
// or, for the organisation's management account, one of its members.
func (e *Emulator) targetAccount(c *call, id string) (*account, *apiError) {
	if id == "" || id == c.who.account {
		return c.acct, nil
	}
	if !isAccountID(id) {
		return nil, accountValidation("1 validation error detected: Value '" + id + "' at 'accountId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\d{12}$")
	}
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	if o == nil || o.management != c.who.account || !slices.Contains(o.members, id) {
		return nil, &apiError{Code: "AccessDeniedException", Status: http.StatusForbidden,
			Message: "User: " + c.who.arn + " is not authorized to perform: account:" + c.op.name + " on resource: arn:aws:account::" + c.who.account + ":account/" + id}
	}
	a := e.account(id)
	if a == nil {
		return nil, &apiError{Code: "ResourceNotFoundException", Status: http.StatusNotFound, Message: "The account " + id + " was not found."}
	}
	return a, nil
}

// regionOptStatus is Account's view of a region of an account.
func regionOptStatus(r regionInfo, enabled []string) string {
	switch {
	case !slices.Contains(enabled, r.name):
		return "DISABLED"
	case r.optIn:
		return "ENABLED"
	default:
		return "ENABLED_BY_DEFAULT"
	}
}

func (e *Emulator) accountListRegions(c *call) (any, error) {
	var in struct {
		AccountID               string   `json:"AccountId"`
		MaxResults              int      `json:"MaxResults"`
		NextToken               string   `json:"NextToken"`
		RegionOptStatusContains []string `json:"RegionOptStatusContains"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	for _, s := range in.RegionOptStatusContains {
		switch s {
		case "ENABLED", "ENABLING", "DISABLING", "DISABLED", "ENABLED_BY_DEFAULT":
		default:
			return nil, accountValidation("1 validation error detected: Value '" + s + "' at 'regionOptStatusContains' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, ENABLING, DISABLING, DISABLED, ENABLED_BY_DEFAULT]")
		}
	}
	a, ae := e.targetAccount(c, in.AccountID)
	if ae != nil {
		return nil, ae
	}
	a.mu.Lock()
	enabled := slices.Clone(a.enabled)
	a.mu.Unlock()
	type regionOut struct {
		RegionName      string `json:"RegionName"`
		RegionOptStatus string `json:"RegionOptStatus"`
	}
	var all []regionOut
	for _, r := range knownRegions {
		st := regionOptStatus(r, enabled)
		if len(in.RegionOptStatusContains) > 0 && !slices.Contains(in.RegionOptStatusContains, st) {
			continue
		}
		all = append(all, regionOut{r.name, st})
	}
	page, next, ae := jsonPage(all, in.NextToken, in.MaxResults, 50, accountValidation)
	if ae != nil {
		return nil, ae
	}
	if page == nil {
		page = []regionOut{}
	}
	return map[string]any{"Regions": page, "NextToken": nilIfEmpty(next)}, nil
}

func (e *Emulator) accountGetRegionOptStatus(c *call) (any, error) {
	var in struct {
		AccountID  string `json:"AccountId"`
		RegionName string `json:"RegionName"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	i := slices.IndexFunc(knownRegions, func(r regionInfo) bool { return r.name == in.RegionName })
	if i < 0 {
		return nil, accountValidation("The region " + in.RegionName + " is not valid.")
	}
	a, ae := e.targetAccount(c, in.AccountID)
	if ae != nil {
		return nil, ae
	}
	a.mu.Lock()
	enabled := slices.Clone(a.enabled)
	a.mu.Unlock()
	return map[string]string{"RegionName": in.RegionName, "RegionOptStatus": regionOptStatus(knownRegions[i], enabled)}, nil
}
