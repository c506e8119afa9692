package awsec2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// Security groups the isolation manages, one of each per VPC.
const (
	// IsolationGroupName is the isolation group without allowed networks;
	// with allow_cidrs the name gains a digest of the networks, so each set
	// of networks has its own group.
	IsolationGroupName = "firebreak-isolation"
	// UntrackGroupName is the allow-all group ENIs pass through first, so
	// their connections become untracked and the isolation group then cuts
	// them.
	UntrackGroupName = "firebreak-untrack"
	// TagManaged marks the groups: its value is isolation or untrack.
	TagManaged = "firebreak:managed"
)

// Minimum prefix lengths of an allowed network: anything wider is not a
// forensics network and would defeat the isolation.
const (
	minAllowBitsV4 = 8
	minAllowBitsV6 = 32
)

// sgRule is one security-group rule with a single peer.
type sgRule struct {
	protocol   string
	from, to   int32
	cidr       string
	cidrV6     string
	group      string
	prefixList string
}

func (r sgRule) String() string {
	peer := r.cidr + r.cidrV6 + r.group + r.prefixList
	if r.protocol == "-1" {
		return "all traffic with " + peer
	}
	return fmt.Sprintf("%s %d-%d with %s", r.protocol, r.from, r.to, peer)
}

// flatten splits IpPermissions into single-peer rules.
func flatten(perms []ec2types.IpPermission) []sgRule {
	var out []sgRule
	for _, p := range perms {
		base := sgRule{protocol: aws.ToString(p.IpProtocol)}
		if base.protocol != "-1" {
			base.from, base.to = aws.ToInt32(p.FromPort), aws.ToInt32(p.ToPort)
		}
		for _, r := range p.IpRanges {
			x := base
			x.cidr = aws.ToString(r.CidrIp)
			out = append(out, x)
		}
		for _, r := range p.Ipv6Ranges {
			x := base
			x.cidrV6 = aws.ToString(r.CidrIpv6)
			out = append(out, x)
		}
		for _, r := range p.UserIdGroupPairs {
			x := base
			x.group = aws.ToString(r.GroupId)
			out = append(out, x)
		}
		for _, r := range p.PrefixListIds {
			x := base
			x.prefixList = aws.ToString(r.PrefixListId)
			out = append(out, x)
		}
	}
	return out
}

// permissions renders rules as IpPermissions, one per rule.
func permissions(rules []sgRule) []ec2types.IpPermission {
	out := make([]ec2types.IpPermission, 0, len(rules))
	for _, r := range rules {
		p := ec2types.IpPermission{IpProtocol: aws.String(r.protocol)}
		if r.protocol != "-1" {
			p.FromPort, p.ToPort = aws.Int32(r.from), aws.Int32(r.to)
		}
		switch {
		case r.cidr != "":
			p.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.cidr)}}
		case r.cidrV6 != "":
			p.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.cidrV6)}}
		case r.group != "":
			p.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(r.group)}}
		case r.prefixList != "":
			p.PrefixListIds = []ec2types.PrefixListId{{PrefixListId: aws.String(r.prefixList)}}
		}
		out = append(out, p)
	}
	return out
}

// allRules is all traffic with each network.
func allRules(nets []netip.Prefix) []sgRule {
	var out []sgRule
	for _, n := range nets {
		r := sgRule{protocol: "-1"}
		if n.Addr().Is4() {
			r.cidr = n.String()
		} else {
			r.cidrV6 = n.String()
		}
		out = append(out, r)
	}
	return out
}

// groupSpec is a managed group as it must be.
type groupSpec struct {
	name        string
	description string
	purpose     string // the TagManaged value
	ingress     []sgRule
	egress      []sgRule
}

// parseAllowed canonicalises the allowed networks and refuses any wide
// enough to defeat the isolation.
func parseAllowed(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, sdk.Errorf(codes.InvalidArgument, "allow_cidrs: %q is not a CIDR such as 10.9.0.0/16 or an address", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		// Security-critical: a wide network would turn the isolation group
		// into an open one.
		if (p.Addr().Is4() && p.Bits() < minAllowBitsV4) || (p.Addr().Is6() && p.Bits() < minAllowBitsV6) {
			return nil, sdk.Errorf(codes.InvalidArgument, "allow_cidrs: %s is wider than /%d (IPv4) or /%d (IPv6); an isolated instance may only reach a forensics network",
				p, minAllowBitsV4, minAllowBitsV6)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// isolationSpec is the isolation group: nothing in or out but the allowed
// networks.
func isolationSpec(allow []netip.Prefix) groupSpec {
	spec := groupSpec{name: IsolationGroupName, purpose: "isolation", description: "Firebreak isolation: no traffic in or out",
		ingress: allRules(allow), egress: allRules(allow)}
	if len(allow) > 0 {
		names := make([]string, len(allow))
		for i, p := range allow {
			names[i] = p.String()
		}
		sum := sha256.Sum256([]byte(strings.Join(names, " ")))
		spec.name += "-" + hex.EncodeToString(sum[:4])
		spec.description = "Firebreak isolation: traffic only with " + strings.Join(names, ", ")
		if len(spec.description) > 255 {
			spec.description = fmt.Sprintf("Firebreak isolation: traffic only with %d networks (%s ...)", len(names), names[0])
		}
	}
	return spec
}

// untrackSpec is the allow-all group: AWS does not track connections that
// security-group rules allow to and from everywhere, so moving an ENI here
// first and then to the isolation group cuts established sessions, which a
// direct move would leave open.
func untrackSpec() groupSpec {
	everywhere := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	return groupSpec{name: UntrackGroupName, purpose: "untrack",
		description: "Firebreak isolation: allow-all step that untracks connections before the isolation group",
		ingress:     allRules(everywhere), egress: allRules(everywhere)}
}

// groupKey identifies a managed group.
type groupKey struct{ vpc, name string }

// findGroups reads the groups with the given names in the VPCs.
func (s *scope) findGroups(ctx context.Context, step string, vpcs, names []string) (map[groupKey]ec2types.SecurityGroup, error) {
	op := "ec2:DescribeSecurityGroups"
	found := map[groupKey]ec2types.SecurityGroup{}
	err := s.j.call(ctx, step, op, strings.Join(names, ",")+" in "+strings.Join(vpcs, ","), func(ctx context.Context) error {
		p := ec2.NewDescribeSecurityGroupsPaginator(s.c.EC2, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: vpcs}, {Name: aws.String("group-name"), Values: names}}})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, g := range out.SecurityGroups {
				found[groupKey{aws.ToString(g.VpcId), aws.ToString(g.GroupName)}] = g
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.explain(op, strings.Join(vpcs, ","), err)
	}
	return found, nil
}

// ensureGroup returns the id of the spec's group in the VPC, creating it
// or correcting its rules as needed. Several isolations may race on the
// same VPC: a duplicate group or rule means another one got there first,
// and the group is read back and checked.
func (s *scope) ensureGroup(ctx context.Context, step, vpc string, spec groupSpec, have *ec2types.SecurityGroup) (string, error) {
	if have == nil {
		op := "ec2:CreateSecurityGroup"
		var out *ec2.CreateSecurityGroupOutput
		err := s.j.call(ctx, step, op, spec.name+" in "+vpc, func(ctx context.Context) (err error) {
			out, err = s.c.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(spec.name), Description: aws.String(spec.description),
				VpcId: aws.String(vpc), TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{
					{Key: aws.String("Name"), Value: aws.String(spec.name)}, {Key: aws.String(TagManaged), Value: aws.String(spec.purpose)}}}}})
			return err
		}, "InvalidGroup.Duplicate")
		if err != nil {
			return "", s.explain(op, spec.name+" in "+vpc, err)
		}
		if out != nil {
			// A new group has AWS's default egress rule, all traffic out.
			have = &ec2types.SecurityGroup{GroupId: out.GroupId, VpcId: aws.String(vpc), GroupName: aws.String(spec.name),
				IpPermissionsEgress: []ec2types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}
		}
	}
	for attempt := 0; ; attempt++ {
		if have == nil {
			groups, err := s.findGroups(ctx, step, []string{vpc}, []string{spec.name})
			if err != nil {
				return "", err
			}
			g, ok := groups[groupKey{vpc, spec.name}]
			if !ok {
				return "", sdk.Errorf(codes.Aborted, "security group %s in %s vanished while the isolation set it up (was it deleted by another task?); rerun the isolation", spec.name, vpc)
			}
			have = &g
		}
		id := aws.ToString(have.GroupId)
		raced, err := s.reconcileRules(ctx, step, id, spec, have)
		if err != nil {
			return "", err
		}
		if !raced {
			return id, nil
		}
		if attempt == 2 {
			return "", sdk.Errorf(codes.Aborted, "the rules of security group %s (%s) kept changing while the isolation set them; rerun the isolation", id, spec.name)
		}
		have = nil
	}
}

// reconcileRules makes the group's rules exactly the spec's. It reports
// raced when AWS answered that a rule was already added or removed, which
// means another task changed the group concurrently.
func (s *scope) reconcileRules(ctx context.Context, step, id string, spec groupSpec, have *ec2types.SecurityGroup) (raced bool, err error) {
	for _, dir := range []struct {
		egress bool
		have   []sgRule
		want   []sgRule
	}{{false, flatten(have.IpPermissions), spec.ingress}, {true, flatten(have.IpPermissionsEgress), spec.egress}} {
		var extra, missing []sgRule
		for _, r := range dir.have {
			if !slices.Contains(dir.want, r) {
				extra = append(extra, r)
			}
		}
		for _, r := range dir.want {
			if !slices.Contains(dir.have, r) {
				missing = append(missing, r)
			}
		}
		if len(extra) > 0 {
			op, already := "ec2:RevokeSecurityGroupIngress", "InvalidPermission.NotFound"
			target := fmt.Sprintf("%s inbound %s", id, rulesText(extra))
			if dir.egress {
				op, target = "ec2:RevokeSecurityGroupEgress", fmt.Sprintf("%s outbound %s", id, rulesText(extra))
			}
			outcome, err := s.j.do(ctx, step, op, target, func(ctx context.Context) error {
				if dir.egress {
					_, err := s.c.EC2.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: &id, IpPermissions: permissions(extra)})
					return err
				}
				_, err := s.c.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: &id, IpPermissions: permissions(extra)})
				return err
			}, already)
			if err != nil {
				return false, s.explain(op, target, err)
			}
			raced = raced || outcome == OutcomeAlready
		}
		if len(missing) > 0 {
			op, already := "ec2:AuthorizeSecurityGroupIngress", "InvalidPermission.Duplicate"
			target := fmt.Sprintf("%s inbound %s", id, rulesText(missing))
			if dir.egress {
				op, target = "ec2:AuthorizeSecurityGroupEgress", fmt.Sprintf("%s outbound %s", id, rulesText(missing))
			}
			outcome, err := s.j.do(ctx, step, op, target, func(ctx context.Context) error {
				if dir.egress {
					_, err := s.c.EC2.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: &id, IpPermissions: permissions(missing)})
					return err
				}
				_, err := s.c.EC2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: &id, IpPermissions: permissions(missing)})
				return err
			}, already)
			if err != nil {
				return false, s.explain(op, target, err)
			}
			raced = raced || outcome == OutcomeAlready
		}
	}
	return raced, nil
}

func rulesText(rules []sgRule) string {
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}
