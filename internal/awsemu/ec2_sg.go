package awsemu

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

type ec2IPRange struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type ec2IPv6Range struct {
	CidrIPv6    string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type ec2GroupPair struct {
	GroupID     string `xml:"groupId"`
	UserID      string `xml:"userId"`
	Description string `xml:"description,omitempty"`
}

type ec2PrefixList struct {
	PrefixListID string `xml:"prefixListId"`
	Description  string `xml:"description,omitempty"`
}

type ec2Permission struct {
	IPProtocol  string          `xml:"ipProtocol"`
	FromPort    *int32          `xml:"fromPort,omitempty"`
	ToPort      *int32          `xml:"toPort,omitempty"`
	Groups      []ec2GroupPair  `xml:"groups>item"`
	IPRanges    []ec2IPRange    `xml:"ipRanges>item"`
	IPv6Ranges  []ec2IPv6Range  `xml:"ipv6Ranges>item"`
	PrefixLists []ec2PrefixList `xml:"prefixListIds>item"`
}

type ec2SecurityGroup struct {
	OwnerID          string          `xml:"ownerId"`
	GroupID          string          `xml:"groupId"`
	GroupName        string          `xml:"groupName"`
	GroupDescription string          `xml:"groupDescription"`
	VpcID            string          `xml:"vpcId"`
	SecurityGroupARN string          `xml:"securityGroupArn"`
	Ingress          []ec2Permission `xml:"ipPermissions>item"`
	Egress           []ec2Permission `xml:"ipPermissionsEgress>item"`
	Tags             []ec2Tag        `xml:"tagSet>item"`
}

// renderPermissions groups single-peer rules back into IpPermissions, in
// the order their (protocol, ports) first appear.
func renderPermissions(rules []rule) []ec2Permission {
	var out []ec2Permission
	index := map[string]int{}
	for _, r := range rules {
		key := r.protocol + "/" + strconv.Itoa(int(r.fromPort)) + "/" + strconv.Itoa(int(r.toPort))
		i, ok := index[key]
		if !ok {
			p := ec2Permission{IPProtocol: r.protocol}
			if r.protocol != "-1" {
				from, to := r.fromPort, r.toPort
				p.FromPort, p.ToPort = &from, &to
			}
			out = append(out, p)
			i = len(out) - 1
			index[key] = i
		}
		p := &out[i]
		switch {
		case r.cidr != "":
			p.IPRanges = append(p.IPRanges, ec2IPRange{r.cidr, r.description})
		case r.cidrV6 != "":
			p.IPv6Ranges = append(p.IPv6Ranges, ec2IPv6Range{r.cidrV6, r.description})
		case r.groupID != "":
			p.Groups = append(p.Groups, ec2GroupPair{r.groupID, r.groupOwner, r.description})
		case r.prefixList != "":
			p.PrefixLists = append(p.PrefixLists, ec2PrefixList{r.prefixList, r.description})
		}
	}
	return out
}

func (rg *region) renderGroup(account string, sg *securityGroup) ec2SecurityGroup {
	return ec2SecurityGroup{
		OwnerID: account, GroupID: sg.id, GroupName: sg.name, GroupDescription: sg.description, VpcID: sg.vpcID,
		SecurityGroupARN: "arn:aws:ec2:" + rg.name + ":" + account + ":security-group/" + sg.id,
		Ingress:          renderPermissions(sg.ingress), Egress: renderPermissions(sg.egress), Tags: ec2Tags(sg.tags),
	}
}

type describeSecurityGroupsResponse struct {
	ec2Envelope
	SecurityGroups []ec2SecurityGroup `xml:"securityGroupInfo>item"`
	NextToken      string             `xml:"nextToken,omitempty"`
}

func (e *Emulator) ec2DescribeSecurityGroups(c *call) (any, error) {
	ids := c.form.strings("GroupId")
	names := c.form.strings("GroupName")
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	candidates := map[string]bool{}
	for _, id := range ids {
		if rg.securityGroups[id] == nil {
			if !validEC2ID(id, "sg") {
				return nil, errorf(http.StatusBadRequest, "InvalidGroupId.Malformed", "Invalid id: \"%s\" (expecting \"sg-...\")", id)
			}
			return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
		candidates[id] = true
	}
	for _, name := range names {
		found := false
		for id, sg := range rg.securityGroups {
			if sg.name == name {
				candidates[id] = true
				found = true
			}
		}
		if !found {
			return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist in default VPC '%s'", name, rg.defaultVPC())
		}
	}
	if len(ids) == 0 && len(names) == 0 {
		for id := range rg.securityGroups {
			candidates[id] = true
		}
	}
	var matched []string
	for id := range candidates {
		sg := rg.securityGroups[id]
		ok, ae := matchEC2Filters(filters, sg.tags, func(name string) ([]string, bool) {
			switch name {
			case "group-id":
				return []string{sg.id}, true
			case "group-name":
				return []string{sg.name}, true
			case "vpc-id":
				return []string{sg.vpcID}, true
			case "description":
				return []string{sg.description}, true
			case "owner-id":
				return []string{c.who.account}, true
			case "ip-permission.cidr":
				var v []string
				for _, r := range sg.ingress {
					v = append(v, r.cidr)
				}
				return v, true
			case "ip-permission.group-id":
				var v []string
				for _, r := range sg.ingress {
					v = append(v, r.groupID)
				}
				return v, true
			case "egress.ip-permission.cidr":
				var v []string
				for _, r := range sg.egress {
					v = append(v, r.cidr)
				}
				return v, true
			}
			return nil, false
		})
		if ae != nil {
			return nil, ae
		}
		if ok {
			matched = append(matched, id)
		}
	}
	page, next, ae := ec2Page(matched, c.form, 5, 1000)
	if ae != nil {
		return nil, ae
	}
	out := &describeSecurityGroupsResponse{NextToken: next}
	for _, id := range page {
		out.SecurityGroups = append(out.SecurityGroups, rg.renderGroup(c.who.account, rg.securityGroups[id]))
	}
	return out, nil
}

func (rg *region) defaultVPC() string {
	for id, v := range rg.vpcs {
		if v.isDefault {
			return id
		}
	}
	return ""
}

// tagSpecifications reads TagSpecification.N for the resource type, and
// rejects tags aimed at resource types the action does not create.
func tagSpecifications(p *params, resourceType string) (tags, *apiError) {
	out := tags{}
	for _, spec := range p.list("TagSpecification") {
		if rt := spec.str("ResourceType"); rt != resourceType {
			return nil, ec2Invalid("'%s' is not a valid taggable resource type for this operation.", rt)
		}
		for _, t := range spec.list("Tag") {
			if ae := validateTag(t.str("Key"), t.str("Value")); ae != nil {
				return nil, ae
			}
			out[t.str("Key")] = t.str("Value")
		}
	}
	return out, nil
}

// Limits on EC2 tags.
const (
	maxTagKeyLength   = 128
	maxTagValueLength = 256
	maxTagsPerObject  = 50
)

func validateTag(key, value string) *apiError {
	switch {
	case key == "":
		return ec2Invalid("Tag key cannot be empty")
	case len([]rune(key)) > maxTagKeyLength:
		return ec2Invalid("Tag key exceeds the maximum length of %d characters", maxTagKeyLength)
	case len([]rune(value)) > maxTagValueLength:
		return ec2Invalid("Tag value exceeds the maximum length of %d characters", maxTagValueLength)
	case strings.HasPrefix(strings.ToLower(key), "aws:"):
		return ec2Invalid("Tag keys starting with 'aws:' are reserved for internal use")
	}
	return nil
}

type createSecurityGroupResponse struct {
	ec2Envelope
	Return           bool     `xml:"return"`
	GroupID          string   `xml:"groupId"`
	SecurityGroupARN string   `xml:"securityGroupArn"`
	Tags             []ec2Tag `xml:"tagSet>item"`
}

// maxGroupsPerVPC is EC2's default security group quota per VPC.
const maxGroupsPerVPC = 2500

func (e *Emulator) ec2CreateSecurityGroup(c *call) (any, error) {
	p := c.form
	name, desc, vpcID := p.str("GroupName"), p.str("GroupDescription"), p.str("VpcId")
	switch {
	case name == "":
		return nil, ec2Missing("GroupName")
	case desc == "":
		return nil, ec2Missing("GroupDescription")
	case len(name) > 255 || len(desc) > 255:
		return nil, ec2Invalid("Value for parameter GroupName or GroupDescription is too long; the maximum length is 255 characters")
	case strings.HasPrefix(name, "sg-"):
		return nil, ec2Invalid("Group names may not be in the format sg-*")
	}
	t, ae := tagSpecifications(p, "security-group")
	if ae != nil {
		return nil, ae
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	if vpcID == "" {
		vpcID = rg.defaultVPC()
		if vpcID == "" {
			return nil, errorf(http.StatusBadRequest, "VPCIdNotSpecified", "No default VPC for this user")
		}
	}
	if rg.vpcs[vpcID] == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", vpcID)
	}
	inVPC := 0
	for _, sg := range rg.securityGroups {
		if sg.vpcID != vpcID {
			continue
		}
		inVPC++
		if sg.name == name {
			return nil, errorf(http.StatusBadRequest, "InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpcID)
		}
	}
	if inVPC >= maxGroupsPerVPC {
		return nil, errorf(http.StatusBadRequest, "SecurityGroupLimitExceeded", "The maximum number of security groups for VPC '%s' has been reached.", vpcID)
	}
	sg := e.newSecurityGroup(name, desc, vpcID, t)
	rg.securityGroups[sg.id] = sg
	out := &createSecurityGroupResponse{Return: true, GroupID: sg.id, SecurityGroupARN: rg.renderGroup(c.who.account, sg).SecurityGroupARN, Tags: ec2Tags(sg.tags)}
	c.trail.response = map[string]any{"groupId": sg.id}
	return out, nil
}

// newSecurityGroup makes a group with AWS's default egress rule: all
// traffic to anywhere.
func (e *Emulator) newSecurityGroup(name, desc, vpcID string, t tags) *securityGroup {
	return &securityGroup{
		id: e.ids.resource("sg"), name: name, description: desc, vpcID: vpcID, tags: t.clone(),
		egress: []rule{{protocol: "-1", cidr: "0.0.0.0/0", id: e.ids.resource("sgr")}},
	}
}

func (e *Emulator) ec2DeleteSecurityGroup(c *call) (any, error) {
	id, name := c.form.str("GroupId"), c.form.str("GroupName")
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	var sg *securityGroup
	switch {
	case id != "":
		sg = rg.securityGroups[id]
		if sg == nil {
			if !validEC2ID(id, "sg") {
				return nil, errorf(http.StatusBadRequest, "InvalidGroupId.Malformed", "Invalid id: \"%s\" (expecting \"sg-...\")", id)
			}
			return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	case name != "":
		def := rg.defaultVPC()
		for _, g := range rg.securityGroups {
			if g.name == name && g.vpcID == def {
				sg = g
			}
		}
		if sg == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist in default VPC '%s'", name, def)
		}
	default:
		return nil, ec2Missing("GroupId")
	}
	if sg.name == "default" {
		return nil, errorf(http.StatusBadRequest, "CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", sg.id)
	}
	for _, eni := range rg.enis {
		if slices.Contains(eni.groups, sg.id) {
			return nil, errorf(http.StatusBadRequest, "DependencyViolation", "resource %s has a dependent object", sg.id)
		}
	}
	for _, other := range rg.securityGroups {
		if other.id == sg.id {
			continue
		}
		refers := func(r rule) bool { return r.groupID == sg.id }
		if slices.ContainsFunc(other.ingress, refers) || slices.ContainsFunc(other.egress, refers) {
			return nil, errorf(http.StatusBadRequest, "DependencyViolation", "resource %s has a dependent object", sg.id)
		}
	}
	delete(rg.securityGroups, sg.id)
	return &struct {
		ec2Envelope
		Return  bool   `xml:"return"`
		GroupID string `xml:"groupId"`
	}{Return: true, GroupID: sg.id}, nil
}

// normaliseProtocol maps protocol names and numbers to EC2's spelling.
func normaliseProtocol(p string) (string, bool) {
	switch strings.ToLower(p) {
	case "tcp", "6":
		return "tcp", true
	case "udp", "17":
		return "udp", true
	case "icmp", "1":
		return "icmp", true
	case "icmpv6", "58":
		return "icmpv6", true
	case "-1", "all":
		return "-1", true
	}
	if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 255 {
		return p, true
	}
	return "", false
}

// parsePermissions reads IpPermissions.N (or the legacy top-level CidrIp
// form of ingress calls) into single-peer rules.
func (rg *region) parsePermissions(p *params, account string) ([]rule, *apiError) {
	var out []rule
	perms := p.list("IpPermissions")
	if len(perms) == 0 && p.has("IpProtocol") {
		legacy := &params{children: map[string]*params{}}
		for _, k := range []string{"IpProtocol", "FromPort", "ToPort"} {
			if c := p.child(k); c != nil {
				legacy.children[k] = c
			}
		}
		if cidr := p.str("CidrIp"); cidr != "" {
			legacy.children["IpRanges"] = &params{children: map[string]*params{"1": {children: map[string]*params{"CidrIp": {value: cidr, set: true}}}}}
		}
		perms = []*params{legacy}
	}
	for _, perm := range perms {
		proto, ok := normaliseProtocol(perm.str("IpProtocol"))
		if !ok {
			return nil, ec2Invalid("Invalid value '%s' for IP protocol. Unknown protocol.", perm.str("IpProtocol"))
		}
		var from, to int32
		if proto != "-1" {
			f, _, err1 := perm.integer("FromPort")
			t, _, err2 := perm.integer("ToPort")
			if err1 != nil || err2 != nil {
				return nil, ec2Invalid("Invalid port range")
			}
			from, to = int32(f), int32(t)
			if (proto == "tcp" || proto == "udp") && (from < 0 || to > 65535 || from > to) {
				return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.")
			}
		}
		base := rule{protocol: proto, fromPort: from, toPort: to}
		n := 0
		for _, r := range perm.list("IpRanges") {
			pfx, err := netip.ParsePrefix(r.str("CidrIp"))
			if err != nil || !pfx.Addr().Is4() {
				return nil, ec2Invalid("CIDR block %s is malformed", r.str("CidrIp"))
			}
			x := base
			x.cidr, x.description = pfx.Masked().String(), r.str("Description")
			out = append(out, x)
			n++
		}
		for _, r := range perm.list("Ipv6Ranges") {
			pfx, err := netip.ParsePrefix(r.str("CidrIpv6"))
			if err != nil || !pfx.Addr().Is6() {
				return nil, ec2Invalid("CIDR block %s is malformed", r.str("CidrIpv6"))
			}
			x := base
			x.cidrV6, x.description = pfx.Masked().String(), r.str("Description")
			out = append(out, x)
			n++
		}
		for _, r := range perm.list("Groups") {
			gid := r.str("GroupId")
			if gid == "" && r.str("GroupName") != "" {
				for _, sg := range rg.securityGroups {
					if sg.name == r.str("GroupName") {
						gid = sg.id
					}
				}
			}
			owner := r.str("UserId")
			if owner == "" {
				owner = account
			}
			if owner == account && rg.securityGroups[gid] == nil {
				return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist", gid)
			}
			x := base
			x.groupID, x.groupOwner, x.description = gid, owner, r.str("Description")
			out = append(out, x)
			n++
		}
		for _, r := range perm.list("PrefixListIds") {
			x := base
			x.prefixList, x.description = r.str("PrefixListId"), r.str("Description")
			out = append(out, x)
			n++
		}
		if n == 0 {
			return nil, ec2Missing("IpPermissions.IpRanges or Groups")
		}
	}
	if len(out) == 0 {
		return nil, ec2Missing("IpPermissions")
	}
	return out, nil
}

func describeRule(r rule) string {
	peer := r.cidr + r.cidrV6 + r.groupID + r.prefixList
	proto := strings.ToUpper(r.protocol)
	if r.protocol == "-1" {
		return fmt.Sprintf("peer: %s, ALL, ALLOW", peer)
	}
	return fmt.Sprintf("peer: %s, %s, from port: %d, to port: %d, ALLOW", peer, proto, r.fromPort, r.toPort)
}

// groupFor finds the group of an authorize or revoke call.
func (rg *region) groupFor(p *params) (*securityGroup, *apiError) {
	id := p.str("GroupId")
	if id == "" && p.str("GroupName") != "" {
		def := rg.defaultVPC()
		for _, sg := range rg.securityGroups {
			if sg.name == p.str("GroupName") && sg.vpcID == def {
				return sg, nil
			}
		}
		return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist in default VPC '%s'", p.str("GroupName"), def)
	}
	if id == "" {
		return nil, ec2Missing("GroupId")
	}
	sg := rg.securityGroups[id]
	if sg == nil {
		if !validEC2ID(id, "sg") {
			return nil, errorf(http.StatusBadRequest, "InvalidGroupId.Malformed", "Invalid id: \"%s\" (expecting \"sg-...\")", id)
		}
		return nil, errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return sg, nil
}

type ec2RuleOut struct {
	SecurityGroupRuleID string `xml:"securityGroupRuleId"`
	GroupID             string `xml:"groupId"`
	GroupOwnerID        string `xml:"groupOwnerId"`
	IsEgress            bool   `xml:"isEgress"`
	IPProtocol          string `xml:"ipProtocol"`
	FromPort            int32  `xml:"fromPort"`
	ToPort              int32  `xml:"toPort"`
	CidrIPv4            string `xml:"cidrIpv4,omitempty"`
	CidrIPv6            string `xml:"cidrIpv6,omitempty"`
	PrefixListID        string `xml:"prefixListId,omitempty"`
	Description         string `xml:"description,omitempty"`
	ReferencedGroup     *struct {
		GroupID string `xml:"groupId"`
		UserID  string `xml:"userId"`
	} `xml:"referencedGroupInfo,omitempty"`
}

func ruleOut(account, groupID string, egress bool, r rule) ec2RuleOut {
	o := ec2RuleOut{SecurityGroupRuleID: r.id, GroupID: groupID, GroupOwnerID: account, IsEgress: egress, IPProtocol: r.protocol,
		FromPort: r.fromPort, ToPort: r.toPort, CidrIPv4: r.cidr, CidrIPv6: r.cidrV6, PrefixListID: r.prefixList, Description: r.description}
	if r.protocol == "-1" {
		o.FromPort, o.ToPort = -1, -1
	}
	if r.groupID != "" {
		o.ReferencedGroup = &struct {
			GroupID string `xml:"groupId"`
			UserID  string `xml:"userId"`
		}{r.groupID, r.groupOwner}
	}
	return o
}

// maxRulesPerDirection is EC2's default quota of rules per group and
// direction.
const maxRulesPerDirection = 60

func (e *Emulator) authorizeGroup(c *call, egress bool) (any, error) {
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	sg, ae := rg.groupFor(c.form)
	if ae != nil {
		return nil, ae
	}
	rules, ae := rg.parsePermissions(c.form, c.who.account)
	if ae != nil {
		return nil, ae
	}
	existing := &sg.ingress
	if egress {
		existing = &sg.egress
	}
	for i, r := range rules {
		dup := func(o rule) bool { return o.samePermission(r) }
		if slices.ContainsFunc(*existing, dup) || slices.ContainsFunc(rules[:i], dup) {
			return nil, errorf(http.StatusBadRequest, "InvalidPermission.Duplicate", "the specified rule \"%s\" already exists", describeRule(r))
		}
	}
	if len(*existing)+len(rules) > maxRulesPerDirection {
		return nil, errorf(http.StatusBadRequest, "RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.")
	}
	out := &struct {
		ec2Envelope
		Return bool         `xml:"return"`
		Rules  []ec2RuleOut `xml:"securityGroupRuleSet>item"`
	}{Return: true}
	for _, r := range rules {
		r.id = e.ids.resource("sgr")
		*existing = append(*existing, r)
		out.Rules = append(out.Rules, ruleOut(c.who.account, sg.id, egress, r))
	}
	return out, nil
}

func (e *Emulator) revokeGroup(c *call, egress bool) (any, error) {
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	sg, ae := rg.groupFor(c.form)
	if ae != nil {
		return nil, ae
	}
	existing := &sg.ingress
	if egress {
		existing = &sg.egress
	}
	var targets []rule
	if ruleIDs := c.form.strings("SecurityGroupRuleId"); len(ruleIDs) > 0 {
		for _, id := range ruleIDs {
			i := slices.IndexFunc(*existing, func(r rule) bool { return r.id == id })
			if i < 0 {
				return nil, errorf(http.StatusBadRequest, "InvalidSecurityGroupRuleId.NotFound", "The security group rule ID '%s' does not exist", id)
			}
			targets = append(targets, (*existing)[i])
		}
	} else {
		targets, ae = rg.parsePermissions(c.form, c.who.account)
		if ae != nil {
			return nil, ae
		}
	}
	var revoked []ec2RuleOut
	var unknown []rule
	for _, t := range targets {
		i := slices.IndexFunc(*existing, func(r rule) bool { return r.samePermission(t) })
		if i < 0 {
			unknown = append(unknown, t)
			continue
		}
		revoked = append(revoked, ruleOut(c.who.account, sg.id, egress, (*existing)[i]))
		*existing = slices.Delete(*existing, i, i+1)
	}
	if len(revoked) == 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
	}
	return &struct {
		ec2Envelope
		Return  bool            `xml:"return"`
		Unknown []ec2Permission `xml:"unknownIpPermissionSet>item"`
		Revoked []ec2RuleOut    `xml:"revokedSecurityGroupRuleSet>item"`
	}{Return: true, Unknown: renderPermissions(unknown), Revoked: revoked}, nil
}

func (e *Emulator) ec2AuthorizeIngress(c *call) (any, error) { return e.authorizeGroup(c, false) }
func (e *Emulator) ec2AuthorizeEgress(c *call) (any, error)  { return e.authorizeGroup(c, true) }
func (e *Emulator) ec2RevokeIngress(c *call) (any, error)    { return e.revokeGroup(c, false) }
func (e *Emulator) ec2RevokeEgress(c *call) (any, error)     { return e.revokeGroup(c, true) }

// taggable returns the tag set of a resource by id, and its type as
// DescribeTags names it.
func (rg *region) taggable(id string) (*tags, string, *apiError) { //nolint:unparam // the resource type is part of the lookup's answer for callers that report it
	prefix, _, _ := strings.Cut(id, "-")
	notFound := func(code, what string) *apiError {
		return errorf(http.StatusBadRequest, code, "The %s ID '%s' does not exist", what, id)
	}
	switch prefix {
	case "i":
		if x := rg.instances[id]; x != nil {
			return &x.tags, "instance", nil
		}
		return nil, "", notFound("InvalidInstanceID.NotFound", "instance")
	case "sg":
		if x := rg.securityGroups[id]; x != nil {
			return &x.tags, "security-group", nil
		}
		return nil, "", errorf(http.StatusBadRequest, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	case "vol":
		if x := rg.volumes[id]; x != nil {
			return &x.tags, "volume", nil
		}
		return nil, "", errorf(http.StatusBadRequest, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	case "snap":
		if x := rg.snapshots[id]; x != nil {
			return &x.tags, "snapshot", nil
		}
		return nil, "", errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	case "eni":
		if x := rg.enis[id]; x != nil {
			return &x.tags, "network-interface", nil
		}
		return nil, "", notFound("InvalidNetworkInterfaceID.NotFound", "networkInterface")
	case "vpc":
		if x := rg.vpcs[id]; x != nil {
			return &x.tags, "vpc", nil
		}
		return nil, "", notFound("InvalidVpcID.NotFound", "vpc")
	case "subnet":
		if x := rg.subnets[id]; x != nil {
			return &x.tags, "subnet", nil
		}
		return nil, "", notFound("InvalidSubnetID.NotFound", "subnet")
	}
	return nil, "", errorf(http.StatusBadRequest, "InvalidID", "The ID '%s' is not valid", id)
}

func (e *Emulator) ec2CreateTags(c *call) (any, error) {
	ids := c.form.strings("ResourceId")
	if len(ids) == 0 {
		return nil, ec2Missing("ResourceId")
	}
	var pairs [][2]string
	for _, t := range c.form.list("Tag") {
		if ae := validateTag(t.str("Key"), t.str("Value")); ae != nil {
			return nil, ae
		}
		pairs = append(pairs, [2]string{t.str("Key"), t.str("Value")})
	}
	if len(pairs) == 0 {
		return nil, ec2Missing("Tag")
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	sets := make([]*tags, 0, len(ids))
	for _, id := range ids {
		t, _, ae := rg.taggable(id)
		if ae != nil {
			return nil, ae
		}
		n := len(*t)
		for _, kv := range pairs {
			if _, ok := (*t)[kv[0]]; !ok {
				n++
			}
		}
		if n > maxTagsPerObject {
			return nil, errorf(http.StatusBadRequest, "TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
		}
		sets = append(sets, t)
	}
	for _, t := range sets {
		if *t == nil {
			*t = tags{}
		}
		for _, kv := range pairs {
			(*t)[kv[0]] = kv[1]
		}
	}
	return &ec2Return{Return: true}, nil
}

func (e *Emulator) ec2DeleteTags(c *call) (any, error) {
	ids := c.form.strings("ResourceId")
	if len(ids) == 0 {
		return nil, ec2Missing("ResourceId")
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	sets := make([]*tags, 0, len(ids))
	for _, id := range ids {
		t, _, ae := rg.taggable(id)
		if ae != nil {
			return nil, ae
		}
		sets = append(sets, t)
	}
	specs := c.form.list("Tag")
	for _, t := range sets {
		if len(specs) == 0 {
			*t = tags{}
			continue
		}
		for _, s := range specs {
			k := s.str("Key")
			// A given value, even empty, deletes the tag only when it matches.
			if s.has("Value") && (*t)[k] != s.str("Value") {
				continue
			}
			delete(*t, k)
		}
	}
	return &ec2Return{Return: true}, nil
}

type ec2TagDescription struct {
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Key          string `xml:"key"`
	Value        string `xml:"value"`
}

func (e *Emulator) ec2DescribeTags(c *call) (any, error) {
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	type entry struct {
		id, typ string
		t       tags
	}
	var all []entry
	add := func(id, typ string, t tags) {
		if len(t) > 0 {
			all = append(all, entry{id, typ, t})
		}
	}
	for id, x := range rg.instances {
		add(id, "instance", x.tags)
	}
	for id, x := range rg.securityGroups {
		add(id, "security-group", x.tags)
	}
	for id, x := range rg.volumes {
		add(id, "volume", x.tags)
	}
	for id, x := range rg.snapshots {
		add(id, "snapshot", x.tags)
	}
	for id, x := range rg.enis {
		add(id, "network-interface", x.tags)
	}
	for id, x := range rg.vpcs {
		add(id, "vpc", x.tags)
	}
	for id, x := range rg.subnets {
		add(id, "subnet", x.tags)
	}
	byKey := map[string]ec2TagDescription{}
	var keys []string
	for _, en := range all {
		for _, k := range en.t.sortedKeys() {
			d := ec2TagDescription{en.id, en.typ, k, en.t[k]}
			ok, ae := matchEC2Filters(filters, en.t, func(name string) ([]string, bool) {
				switch name {
				case "resource-id":
					return []string{d.ResourceID}, true
				case "resource-type":
					return []string{d.ResourceType}, true
				case "key":
					return []string{d.Key}, true
				case "value":
					return []string{d.Value}, true
				}
				return nil, false
			})
			if ae != nil {
				return nil, ae
			}
			if ok {
				key := d.ResourceID + "\x00" + d.Key
				byKey[key] = d
				keys = append(keys, key)
			}
		}
	}
	page, next, ae := ec2Page(keys, c.form, 5, 1000)
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		ec2Envelope
		Tags      []ec2TagDescription `xml:"tagSet>item"`
		NextToken string              `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, k := range page {
		out.Tags = append(out.Tags, byKey[k])
	}
	return out, nil
}
