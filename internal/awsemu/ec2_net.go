package awsemu

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// regionInfo is a commercial AWS region and whether accounts must opt in.
type regionInfo struct {
	name  string
	optIn bool
}

// knownRegions are the commercial regions the emulator knows.
var knownRegions = []regionInfo{
	{"af-south-1", true}, {"ap-east-1", true}, {"ap-northeast-1", false}, {"ap-northeast-2", false},
	{"ap-northeast-3", false}, {"ap-south-1", false}, {"ap-south-2", true}, {"ap-southeast-1", false},
	{"ap-southeast-2", false}, {"ap-southeast-3", true}, {"ap-southeast-4", true}, {"ap-southeast-5", true},
	{"ap-southeast-7", true}, {"ca-central-1", false}, {"ca-west-1", true}, {"eu-central-1", false},
	{"eu-central-2", true}, {"eu-north-1", false}, {"eu-south-1", true}, {"eu-south-2", true},
	{"eu-west-1", false}, {"eu-west-2", false}, {"eu-west-3", false}, {"il-central-1", true},
	{"me-central-1", true}, {"me-south-1", true}, {"mx-central-1", true}, {"sa-east-1", false},
	{"us-east-1", false}, {"us-east-2", false}, {"us-west-1", false}, {"us-west-2", false},
}

func knownRegion(name string) bool {
	return slices.ContainsFunc(knownRegions, func(r regionInfo) bool { return r.name == name })
}

type ec2VPC struct {
	VpcID           string   `xml:"vpcId"`
	OwnerID         string   `xml:"ownerId"`
	State           string   `xml:"state"`
	CidrBlock       string   `xml:"cidrBlock"`
	DhcpOptionsID   string   `xml:"dhcpOptionsId"`
	InstanceTenancy string   `xml:"instanceTenancy"`
	IsDefault       bool     `xml:"isDefault"`
	Tags            []ec2Tag `xml:"tagSet>item"`
}

func (e *Emulator) ec2DescribeVpcs(c *call) (any, error) {
	ids := c.form.strings("VpcId")
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	for _, id := range ids {
		if rg.vpcs[id] == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
		}
	}
	var matched []string
	for id, v := range rg.vpcs {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, ae := matchEC2Filters(filters, v.tags, func(name string) ([]string, bool) {
			switch name {
			case "vpc-id":
				return []string{v.id}, true
			case "cidr", "cidr-block-association.cidr-block":
				return []string{v.cidr}, true
			case "is-default", "isDefault":
				return []string{strconv.FormatBool(v.isDefault)}, true
			case "state":
				return []string{"available"}, true
			case "owner-id":
				return []string{c.who.account}, true
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
	out := &struct {
		ec2Envelope
		VPCs      []ec2VPC `xml:"vpcSet>item"`
		NextToken string   `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		v := rg.vpcs[id]
		out.VPCs = append(out.VPCs, ec2VPC{v.id, c.who.account, "available", v.cidr, "dopt-" + v.id[4:12], "default", v.isDefault, ec2Tags(v.tags)})
	}
	return out, nil
}

type ec2Subnet struct {
	SubnetID                string   `xml:"subnetId"`
	SubnetARN               string   `xml:"subnetArn"`
	State                   string   `xml:"state"`
	VpcID                   string   `xml:"vpcId"`
	OwnerID                 string   `xml:"ownerId"`
	CidrBlock               string   `xml:"cidrBlock"`
	AvailableIPAddressCount int32    `xml:"availableIpAddressCount"`
	AvailabilityZone        string   `xml:"availabilityZone"`
	DefaultForAz            bool     `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool     `xml:"mapPublicIpOnLaunch"`
	Tags                    []ec2Tag `xml:"tagSet>item"`
}

func (e *Emulator) ec2DescribeSubnets(c *call) (any, error) {
	ids := c.form.strings("SubnetId")
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	for _, id := range ids {
		if rg.subnets[id] == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
		}
	}
	var matched []string
	for id, s := range rg.subnets {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, ae := matchEC2Filters(filters, s.tags, func(name string) ([]string, bool) {
			switch name {
			case "subnet-id":
				return []string{s.id}, true
			case "vpc-id":
				return []string{s.vpcID}, true
			case "availability-zone":
				return []string{s.az}, true
			case "cidr-block", "cidr":
				return []string{s.cidr}, true
			case "default-for-az":
				return []string{strconv.FormatBool(s.defaultForAZ)}, true
			case "state":
				return []string{"available"}, true
			case "map-public-ip-on-launch":
				return []string{strconv.FormatBool(s.mapPublicIPOnLaunch)}, true
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
	out := &struct {
		ec2Envelope
		Subnets   []ec2Subnet `xml:"subnetSet>item"`
		NextToken string      `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		s := rg.subnets[id]
		out.Subnets = append(out.Subnets, ec2Subnet{
			SubnetID: s.id, SubnetARN: "arn:aws:ec2:" + rg.name + ":" + c.who.account + ":subnet/" + s.id, State: "available",
			VpcID: s.vpcID, OwnerID: c.who.account, CidrBlock: s.cidr, AvailableIPAddressCount: s.freeAddresses(),
			AvailabilityZone: s.az, DefaultForAz: s.defaultForAZ, MapPublicIPOnLaunch: s.mapPublicIPOnLaunch, Tags: ec2Tags(s.tags),
		})
	}
	return out, nil
}

// freeAddresses counts the subnet's unallocated addresses, less the five
// AWS reserves.
func (sn *subnet) freeAddresses() int32 {
	pfx, err := netip.ParsePrefix(sn.cidr)
	if err != nil || pfx.Bits() > 28 {
		return 0
	}
	total := int32(1) << (32 - pfx.Bits())
	return max(0, total-5-int32(len(sn.used)))
}

type ec2RegionOut struct {
	RegionName     string `xml:"regionName"`
	RegionEndpoint string `xml:"regionEndpoint"`
	OptInStatus    string `xml:"optInStatus"`
}

func (e *Emulator) ec2DescribeRegions(c *call) (any, error) {
	names := c.form.strings("RegionName")
	all := c.form.boolean("AllRegions")
	filters := parseEC2Filters(c.form)
	c.acct.mu.Lock()
	enabled := slices.Clone(c.acct.enabled)
	c.acct.mu.Unlock()
	for _, n := range names {
		if !knownRegion(n) {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid region: %s", n)
		}
	}
	out := &struct {
		ec2Envelope
		Regions []ec2RegionOut `xml:"regionInfo>item"`
	}{}
	for _, r := range knownRegions {
		on := slices.Contains(enabled, r.name)
		if len(names) > 0 && !slices.Contains(names, r.name) {
			continue
		}
		if !on && !all && len(names) == 0 {
			continue
		}
		status := "not-opted-in"
		switch {
		case on && !r.optIn:
			status = "opt-in-not-required"
		case on:
			status = "opted-in"
		}
		ok, ae := matchEC2Filters(filters, nil, func(name string) ([]string, bool) {
			switch name {
			case "region-name":
				return []string{r.name}, true
			case "opt-in-status":
				return []string{status}, true
			case "endpoint":
				return []string{"ec2." + r.name + ".amazonaws.com"}, true
			}
			return nil, false
		})
		if ae != nil {
			return nil, ae
		}
		if ok {
			out.Regions = append(out.Regions, ec2RegionOut{r.name, "ec2." + r.name + ".amazonaws.com", status})
		}
	}
	return out, nil
}

type ec2Association struct {
	AssociationID      string        `xml:"associationId"`
	InstanceID         string        `xml:"instanceId"`
	IAMInstanceProfile ec2ProfileRef `xml:"iamInstanceProfile"`
	State              string        `xml:"state"`
	Timestamp          string        `xml:"timestamp"`
}

func renderAssociation(a *profileAssociation) ec2Association {
	return ec2Association{a.id, a.instanceID, ec2ProfileRef{a.profileARN, a.profileID}, a.state, xmlTime(a.at)}
}

func (e *Emulator) ec2DescribeProfileAssociations(c *call) (any, error) {
	ids := c.form.strings("AssociationId")
	filters := parseEC2Filters(c.form)
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	for _, id := range ids {
		if rg.associations[id] == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidAssociationID.NotFound", "An association ID '%s' does not exist", id)
		}
	}
	var matched []string
	for id, a := range rg.associations {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, ae := matchEC2Filters(filters, nil, func(name string) ([]string, bool) {
			switch name {
			case "instance-id":
				return []string{a.instanceID}, true
			case "state":
				return []string{a.state}, true
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
	out := &struct {
		ec2Envelope
		Associations []ec2Association `xml:"iamInstanceProfileAssociationSet>item"`
		NextToken    string           `xml:"nextToken,omitempty"`
	}{NextToken: next}
	for _, id := range page {
		out.Associations = append(out.Associations, renderAssociation(rg.associations[id]))
	}
	return out, nil
}

func (e *Emulator) ec2AssociateProfile(c *call) (any, error) {
	arn, name := c.form.str("IamInstanceProfile.Arn"), c.form.str("IamInstanceProfile.Name")
	if arn == "" && name == "" {
		return nil, ec2Missing("IamInstanceProfile")
	}
	// Associating a profile passes its role to EC2 for this instance.
	instance := "arn:aws:ec2:" + c.region + ":" + c.acct.id + ":instance/" + c.form.str("InstanceId")
	for _, role := range profileRoleARNs(c.acct, arn, name) {
		if ae := e.authorizePassRole(c, role, "ec2.amazonaws.com", instance); ae != nil {
			return nil, ae
		}
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	in, ae := rg.instanceFor(c.form.str("InstanceId"))
	if ae != nil {
		return nil, ae
	}
	var prof *instanceProfile
	for _, p := range c.acct.instanceProfiles {
		if (arn != "" && p.arn == arn) || (arn == "" && p.name == name) {
			prof = p
		}
	}
	if prof == nil {
		if arn != "" {
			return nil, ec2Invalid("Value (%s) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN", arn)
		}
		return nil, ec2Invalid("Value (%s) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name", name)
	}
	if rg.activeAssociation(in.id) != nil {
		return nil, errorf(http.StatusBadRequest, "IncorrectState", "There is an existing association for instance %s", in.id)
	}
	a := &profileAssociation{id: e.ids.resource("iip-assoc"), instanceID: in.id, profileARN: prof.arn, profileID: prof.id, state: "associated", at: c.now}
	rg.associations[a.id] = a
	out := renderAssociation(a)
	out.State = "associating"
	return &struct {
		ec2Envelope
		Association ec2Association `xml:"iamInstanceProfileAssociation"`
	}{Association: out}, nil
}

func (e *Emulator) ec2DisassociateProfile(c *call) (any, error) {
	id := c.form.str("AssociationId")
	if id == "" {
		return nil, ec2Missing("AssociationId")
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	a := rg.associations[id]
	if a == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidAssociationID.NotFound", "An association ID '%s' does not exist", id)
	}
	delete(rg.associations, id)
	out := renderAssociation(a)
	out.State = "disassociating"
	return &struct {
		ec2Envelope
		Association ec2Association `xml:"iamInstanceProfileAssociation"`
	}{Association: out}, nil
}

// parseAZ checks an availability zone belongs to the region.
func parseAZ(region, az string) bool {
	return strings.HasPrefix(az, region) && len(az) == len(region)+1
}

// profileRoleARNs returns the ARNs of the roles in the instance profile
// named by ARN, or by name when arn is empty; none when there is no such
// profile (the caller then refuses the profile itself).
func profileRoleARNs(a *account, arn, name string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var roles []string
	for _, p := range a.instanceProfiles {
		if (arn != "" && p.arn == arn) || (arn == "" && p.name == name) {
			for _, rn := range p.roles {
				if r := a.roles[rn]; r != nil {
					roles = append(roles, r.arn)
				}
			}
		}
	}
	return roles
}
