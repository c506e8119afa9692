package awsemu

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// builtAccount is an account made from a seed, with what must be indexed
// globally once it is inserted.
type builtAccount struct {
	acct      *account
	creds     []*credential
	buckets   []*bucket
	snapshots map[string]snapshotLocation
}

// Seed loads accounts, their resources and the organisation. It is
// all-or-nothing: on error nothing is added. Seeding an account id that
// already exists is an error.
func (e *Emulator) Seed(s *Seed) error {
	if s == nil {
		return errors.New("awsemu: nil seed")
	}
	now := e.now()
	built := make([]*builtAccount, 0, len(s.Accounts))
	seen := map[string]bool{}
	for i := range s.Accounts {
		as := &s.Accounts[i]
		if seen[as.ID] {
			return fmt.Errorf("awsemu: seed lists account %s twice", as.ID)
		}
		seen[as.ID] = true
		b, err := e.buildAccount(as, now)
		if err != nil {
			return fmt.Errorf("awsemu: seed account %s: %w", as.ID, err)
		}
		built = append(built, b)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.credMu.Lock()
	defer e.credMu.Unlock()
	keys := map[string]bool{}
	buckets := map[string]bool{}
	for _, b := range built {
		if e.accounts[b.acct.id] != nil {
			return fmt.Errorf("awsemu: account %s is already seeded", b.acct.id)
		}
		for _, c := range b.creds {
			if e.creds[c.id] != nil || keys[c.id] {
				return fmt.Errorf("awsemu: access key %s is used twice", c.id)
			}
			keys[c.id] = true
		}
		for _, bk := range b.buckets {
			if e.buckets[bk.name] != nil || buckets[bk.name] {
				return fmt.Errorf("awsemu: bucket name %s is already taken", bk.name)
			}
			buckets[bk.name] = true
		}
	}
	org, err := e.buildOrganization(s, built, now)
	if err != nil {
		return err
	}

	for _, b := range built {
		e.accounts[b.acct.id] = b.acct
		for _, c := range b.creds {
			e.creds[c.id] = c
		}
		for _, bk := range b.buckets {
			e.buckets[bk.name] = bk
		}
	}
	if org != nil {
		e.org = org
	}
	return nil
}

// buildOrganization makes the seeded organisation, or adds the new
// non-standalone accounts to the existing one under its root.
func (e *Emulator) buildOrganization(s *Seed, built []*builtAccount, now time.Time) (*organization, error) {
	if s.Organization == nil {
		if e.org == nil {
			return nil, nil
		}
		// The organisation is read without e.mu once fetched, so new members
		// go into a copy that replaces it.
		o := *e.org
		o.members = slices.Clone(o.members)
		o.parent = maps.Clone(o.parent)
		for _, b := range built {
			if !b.acct.standalone {
				o.members = append(o.members, b.acct.id)
				o.parent[b.acct.id] = o.rootID
			}
		}
		return &o, nil
	}
	if e.org != nil {
		return nil, errors.New("awsemu: the organisation is already seeded")
	}
	os := s.Organization
	ids := map[string]*account{}
	for _, b := range built {
		ids[b.acct.id] = b.acct
	}
	if ids[os.ManagementAccount] == nil {
		return nil, fmt.Errorf("awsemu: organisation management account %s is not among the seeded accounts", os.ManagementAccount)
	}
	o := &organization{id: os.ID, rootID: os.RootID, management: os.ManagementAccount, created: now,
		units: map[string]*orgUnit{}, parent: map[string]string{}}
	if o.id == "" {
		o.id = "o-" + e.ids.lowerAlnum("org", 10)
	}
	if o.rootID == "" {
		o.rootID = "r-" + e.ids.lowerAlnum("root", 4)
	}
	o.parent[o.management] = o.rootID
	var addUnits func(units []OrganizationalUnitSeed, parent string) error
	addUnits = func(units []OrganizationalUnitSeed, parent string) error {
		for _, us := range units {
			id := us.ID
			if id == "" {
				id = "ou-" + o.rootID[2:] + "-" + e.ids.lowerAlnum("ou", 8)
			}
			if o.units[id] != nil {
				return fmt.Errorf("awsemu: organisational unit %s is defined twice", id)
			}
			o.units[id] = &orgUnit{id: id, name: us.Name, parent: parent}
			o.parent[id] = parent
			for _, a := range us.Accounts {
				if ids[a] == nil {
					return fmt.Errorf("awsemu: organisational unit %s lists unknown account %s", us.Name, a)
				}
				o.parent[a] = id
			}
			if err := addUnits(us.Units, id); err != nil {
				return err
			}
		}
		return nil
	}
	if err := addUnits(os.Units, o.rootID); err != nil {
		return nil, err
	}
	if ts := os.Trail; ts != nil {
		seeded := e.buckets[ts.Bucket] != nil
		for _, b := range built {
			for _, bk := range b.buckets {
				seeded = seeded || bk.name == ts.Bucket
			}
		}
		if !seeded {
			return nil, fmt.Errorf("awsemu: the organisation trail's bucket %q is not among the seeded buckets", ts.Bucket)
		}
		o.trail = &orgTrail{name: orDefault(ts.Name, "organization-trail"), bucket: ts.Bucket}
	}
	for _, b := range built {
		a := b.acct
		if a.id == o.management || a.standalone {
			continue
		}
		o.members = append(o.members, a.id)
		if _, ok := o.parent[a.id]; !ok {
			o.parent[a.id] = o.rootID
		}
	}
	return o, nil
}

// buildAccount makes an account from its seed. It touches no shared state
// other than the identifier source.
func (e *Emulator) buildAccount(as *AccountSeed, now time.Time) (*builtAccount, error) {
	if !isAccountID(as.ID) {
		return nil, fmt.Errorf("account id %q is not 12 digits", as.ID)
	}
	a := newAccount(as.ID)
	a.name = orDefault(as.Name, "account-"+as.ID)
	a.email = orDefault(as.Email, "aws+"+as.ID+"@example.com")
	a.status = orDefault(as.Status, "ACTIVE")
	a.standalone = as.Standalone
	a.joined = now
	switch a.status {
	case "ACTIVE", "SUSPENDED", "PENDING_CLOSURE":
	default:
		return nil, fmt.Errorf("status %q is not ACTIVE, SUSPENDED or PENDING_CLOSURE", a.status)
	}
	a.enabled = slices.Clone(as.Regions)
	if len(a.enabled) == 0 {
		a.enabled = []string{"us-east-1"}
	}
	for _, r := range a.enabled {
		if !knownRegion(r) {
			return nil, fmt.Errorf("unknown region %q", r)
		}
	}
	if as.LambdaConcurrencyLimit > 0 {
		a.lambdaConcurrencyLimit = as.LambdaConcurrencyLimit
	}
	b := &builtAccount{acct: a, snapshots: map[string]snapshotLocation{}}

	if as.Root != nil {
		c := &credential{id: as.Root.ID, secret: as.Root.Secret, account: a.id, kind: principalRoot}
		if c.id == "" {
			c.id = e.ids.accessKeyID("AKIA")
		}
		if c.secret == "" {
			c.secret = e.ids.secret()
		}
		a.rootKey = c.id
		b.creds = append(b.creds, c)
	}
	if err := e.seedIAM(a, as, b, now); err != nil {
		return nil, err
	}
	for _, bs := range as.Buckets {
		bk, err := seedBucket(a, bs, now)
		if err != nil {
			return nil, err
		}
		b.buckets = append(b.buckets, bk)
	}
	for _, rs := range as.Resources {
		if !a.regionEnabled(rs.Region) {
			return nil, fmt.Errorf("resources in region %q, which the account has not enabled", rs.Region)
		}
		if err := e.seedRegion(a, a.region(rs.Region), &rs, now); err != nil {
			return nil, fmt.Errorf("region %s: %w", rs.Region, err)
		}
	}
	return b, nil
}

func normalisePath(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("path %q must begin and end with /", p)
	}
	return p, nil
}

func (e *Emulator) seedIAM(a *account, as *AccountSeed, b *builtAccount, now time.Time) error {
	for _, ps := range as.Policies {
		path, err := normalisePath(ps.Path)
		if err != nil {
			return err
		}
		doc, err := parsePolicy(string(ps.Document), identityPolicy)
		if err != nil {
			return fmt.Errorf("managed policy %s: %v", ps.Name, err)
		}
		mp := &managedPolicy{arn: "arn:aws:iam::" + a.id + ":policy" + path + ps.Name, name: ps.Name, path: path,
			id: e.ids.uniqueID("ANPA"), created: now, doc: &storedPolicy{string(ps.Document), doc}}
		a.policies[mp.arn] = mp
	}
	attached := func(arns []string) ([]string, error) {
		for _, arn := range arns {
			if a.managedPolicy(arn) == nil {
				return nil, fmt.Errorf("policy %s does not exist", arn)
			}
		}
		return slices.Clone(arns), nil
	}
	inline := func(m map[string]PolicyText) (map[string]*storedPolicy, error) {
		out := map[string]*storedPolicy{}
		for name, text := range m {
			doc, err := parsePolicy(string(text), identityPolicy)
			if err != nil {
				return nil, fmt.Errorf("inline policy %s: %v", name, err)
			}
			out[name] = &storedPolicy{string(text), doc}
		}
		return out, nil
	}
	for _, us := range as.Users {
		if a.users[us.Name] != nil {
			return fmt.Errorf("user %s is defined twice", us.Name)
		}
		path, err := normalisePath(us.Path)
		if err != nil {
			return err
		}
		u := &iamUser{name: us.Name, path: path, id: e.ids.uniqueID("AIDA"), arn: userARN(a.id, path, us.Name), created: now, tags: tags(us.Tags).clone()}
		if u.inline, err = inline(us.InlinePolicies); err != nil {
			return fmt.Errorf("user %s: %w", us.Name, err)
		}
		if u.attached, err = attached(us.AttachedPolicies); err != nil {
			return fmt.Errorf("user %s: %w", us.Name, err)
		}
		if us.LoginProfile != nil {
			u.login = &loginProfile{created: now, resetRequired: us.LoginProfile.PasswordResetRequired}
		}
		for _, ks := range us.AccessKeys {
			k := &accessKey{id: ks.ID, secret: ks.Secret, account: a.id, user: u.name, created: now, status: orDefault(ks.Status, "Active")}
			if k.id == "" {
				k.id = e.ids.accessKeyID("AKIA")
			}
			if k.secret == "" {
				k.secret = e.ids.secret()
			}
			if k.status != "Active" && k.status != "Inactive" {
				return fmt.Errorf("user %s: access key status %q is not Active or Inactive", u.name, k.status)
			}
			u.keys = append(u.keys, k)
			b.creds = append(b.creds, &credential{id: k.id, secret: k.secret, account: a.id, kind: principalUser, key: k, user: u.name})
		}
		if len(u.keys) > 2 {
			return fmt.Errorf("user %s has more than two access keys", u.name)
		}
		a.users[u.name] = u
	}
	for _, rs := range as.Roles {
		if a.roles[rs.Name] != nil {
			return fmt.Errorf("role %s is defined twice", rs.Name)
		}
		path, err := normalisePath(rs.Path)
		if err != nil {
			return err
		}
		trust, err := parsePolicy(string(rs.TrustPolicy), trustPolicy)
		if err != nil {
			return fmt.Errorf("role %s trust policy: %v", rs.Name, err)
		}
		r := &iamRole{name: rs.Name, path: path, id: e.ids.uniqueID("AROA"), arn: roleARN(a.id, path, rs.Name), created: now,
			description: rs.Description, trust: &storedPolicy{string(rs.TrustPolicy), trust}, maxSession: rs.MaxSessionDuration, tags: tags(rs.Tags).clone()}
		if r.maxSession == 0 {
			r.maxSession = 3600
		}
		if r.maxSession < 3600 || r.maxSession > 43200 {
			return fmt.Errorf("role %s: maxSessionDuration %d is not between 3600 and 43200", rs.Name, r.maxSession)
		}
		if r.inline, err = inline(rs.InlinePolicies); err != nil {
			return fmt.Errorf("role %s: %w", rs.Name, err)
		}
		if r.attached, err = attached(rs.AttachedPolicies); err != nil {
			return fmt.Errorf("role %s: %w", rs.Name, err)
		}
		a.roles[r.name] = r
		if rs.InstanceProfile {
			a.instanceProfiles[r.name] = &instanceProfile{name: r.name, path: path, id: e.ids.uniqueID("AIPA"),
				arn: "arn:aws:iam::" + a.id + ":instance-profile" + path + r.name, created: now, roles: []string{r.name}}
		}
	}
	for _, ps := range as.InstanceProfiles {
		if a.instanceProfiles[ps.Name] != nil {
			return fmt.Errorf("instance profile %s is defined twice", ps.Name)
		}
		path, err := normalisePath(ps.Path)
		if err != nil {
			return err
		}
		if len(ps.Roles) > 1 {
			return fmt.Errorf("instance profile %s holds more than one role", ps.Name)
		}
		for _, r := range ps.Roles {
			if a.roles[r] == nil {
				return fmt.Errorf("instance profile %s names unknown role %s", ps.Name, r)
			}
		}
		a.instanceProfiles[ps.Name] = &instanceProfile{name: ps.Name, path: path, id: e.ids.uniqueID("AIPA"),
			arn: "arn:aws:iam::" + a.id + ":instance-profile" + path + ps.Name, created: now, roles: slices.Clone(ps.Roles)}
	}
	return nil
}

func seedBucket(a *account, bs BucketSeed, now time.Time) (*bucket, error) {
	if !validBucketName(bs.Name) {
		return nil, fmt.Errorf("bucket name %q is not valid", bs.Name)
	}
	bk := &bucket{name: bs.Name, owner: a.id, region: orDefault(bs.Region, a.enabled[0]), created: now}
	if bs.Policy != "" {
		if _, err := parsePolicy(string(bs.Policy), resourcePolicy); err != nil {
			return nil, fmt.Errorf("bucket %s policy: %v", bs.Name, err)
		}
		bk.policy = string(bs.Policy)
	}
	acl, err := cannedACL(orDefault(bs.ACL, "private"), a.id)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bs.Name, err)
	}
	bk.acl = acl
	if p := bs.PublicAccessBlock; p != nil {
		bk.pab = &publicAccessBlock{p.BlockPublicAcls, p.IgnorePublicAcls, p.BlockPublicPolicy, p.RestrictPublicBuckets}
	}
	switch bs.Versioning {
	case "", "Enabled", "Suspended":
		bk.versioning = bs.Versioning
	default:
		return nil, fmt.Errorf("bucket %s: versioning %q: want Enabled or Suspended", bs.Name, bs.Versioning)
	}
	if ol := bs.ObjectLock; ol != nil {
		if ol.Mode != "" && ol.Mode != "GOVERNANCE" && ol.Mode != "COMPLIANCE" || (ol.Mode != "") != (ol.Days > 0) {
			return nil, fmt.Errorf("bucket %s: object lock needs a mode GOVERNANCE or COMPLIANCE with days, or neither", bs.Name)
		}
		// Object Lock works only on versioned buckets, and enables versioning.
		bk.objectLock, bk.versioning = &objectLock{ol.Mode, ol.Days}, "Enabled"
	}
	if enc := bs.Encryption; enc != nil {
		switch enc.Algorithm {
		case "AES256", "aws:kms", "aws:kms:dsse":
		default:
			return nil, fmt.Errorf("bucket %s: encryption algorithm %q: want AES256, aws:kms or aws:kms:dsse", bs.Name, enc.Algorithm)
		}
		bk.encryption = &bucketEncryption{enc.Algorithm, enc.KMSKeyID}
	}
	return bk, nil
}

// refs resolves seed references (an id, or a name when the target has no id
// in the seed) to ids.
type refs map[string]string

func (r refs) add(id, name string) {
	r[id] = id
	if name != "" {
		if _, taken := r[name]; !taken {
			r[name] = id
		}
	}
}

func (r refs) get(kind, ref string) (string, error) {
	if id, ok := r[ref]; ok {
		return id, nil
	}
	return "", fmt.Errorf("unknown %s %q", kind, ref)
}

func (e *Emulator) seedRegion(a *account, rg *region, rs *RegionSeed, now time.Time) error {
	if err := e.seedPosture(a, rg, rs, now); err != nil {
		return err
	}
	if err := seedEvents(a.id, rg, rs, now); err != nil {
		return err
	}
	vpcs, subnets, groups, insts := refs{}, refs{}, refs{}, refs{}
	for _, vs := range rs.VPCs {
		if _, err := netip.ParsePrefix(vs.CIDR); err != nil {
			return fmt.Errorf("vpc %s: cidr %q: %v", vs.Name, vs.CIDR, err)
		}
		v := &vpc{id: vs.ID, cidr: vs.CIDR, isDefault: vs.Default, tags: tags(vs.Tags).clone()}
		if v.id == "" {
			v.id = e.ids.resource("vpc")
		}
		if vs.Name != "" {
			v.tags["Name"] = vs.Name
		}
		rg.vpcs[v.id] = v
		vpcs.add(v.id, vs.Name)
		def := e.newSecurityGroup("default", "default VPC security group", v.id, nil)
		def.ingress = []rule{{protocol: "-1", groupID: def.id, groupOwner: a.id, id: e.ids.resource("sgr")}}
		rg.securityGroups[def.id] = def
	}
	for _, ss := range rs.Subnets {
		vpcID, err := vpcs.get("vpc", ss.VPC)
		if err != nil {
			return fmt.Errorf("subnet %s: %w", ss.Name, err)
		}
		sn := &subnet{id: ss.ID, vpcID: vpcID, cidr: ss.CIDR, az: orDefault(ss.AvailabilityZone, rg.name+"a"),
			mapPublicIPOnLaunch: ss.Public, tags: tags(ss.Tags).clone(), used: map[string]bool{}}
		if !parseAZ(rg.name, sn.az) {
			return fmt.Errorf("subnet %s: availability zone %q is not in %s", ss.Name, sn.az, rg.name)
		}
		if sn.id == "" {
			sn.id = e.ids.resource("subnet")
		}
		if ss.Name != "" {
			sn.tags["Name"] = ss.Name
		}
		if _, err := netip.ParsePrefix(ss.CIDR); err != nil {
			return fmt.Errorf("subnet %s: cidr %q: %v", ss.Name, ss.CIDR, err)
		}
		rg.subnets[sn.id] = sn
		subnets.add(sn.id, ss.Name)
	}
	for _, sg := range rg.securityGroups {
		groups.add(sg.id, "")
	}
	// Groups first, rules second: rules may refer to groups defined later.
	seeded := make([]*securityGroup, len(rs.SecurityGroups))
	for i, gs := range rs.SecurityGroups {
		vpcID, err := vpcs.get("vpc", gs.VPC)
		if err != nil {
			return fmt.Errorf("security group %s: %w", gs.Name, err)
		}
		sg := e.newSecurityGroup(gs.Name, orDefault(gs.Description, gs.Name), vpcID, tags(gs.Tags))
		if gs.ID != "" {
			sg.id = gs.ID
		}
		if len(gs.Egress) > 0 || gs.NoDefaultEgress {
			sg.egress = nil
		}
		rg.securityGroups[sg.id] = sg
		groups.add(sg.id, gs.Name)
		seeded[i] = sg
	}
	for i, gs := range rs.SecurityGroups {
		sg := seeded[i]
		for _, dir := range []struct {
			rules []RuleSeed
			dst   *[]rule
		}{{gs.Ingress, &sg.ingress}, {gs.Egress, &sg.egress}} {
			for _, r := range dir.rules {
				proto, ok := normaliseProtocol(r.Protocol)
				if !ok {
					return fmt.Errorf("security group %s: protocol %q", gs.Name, r.Protocol)
				}
				x := rule{protocol: proto, fromPort: r.FromPort, toPort: r.ToPort, cidr: r.CIDR, cidrV6: r.CIDRv6, description: r.Description, id: e.ids.resource("sgr")}
				if proto == "-1" {
					x.fromPort, x.toPort = 0, 0
				}
				if r.Group != "" {
					gid, err := groups.get("security group", r.Group)
					if err != nil {
						return fmt.Errorf("security group %s: %w", gs.Name, err)
					}
					x.groupID, x.groupOwner = gid, a.id
				}
				if x.cidr == "" && x.cidrV6 == "" && x.groupID == "" {
					return fmt.Errorf("security group %s: a rule needs a cidr, cidrv6 or group", gs.Name)
				}
				*dir.dst = append(*dir.dst, x)
			}
		}
	}
	for _, is := range rs.Instances {
		snID, err := subnets.get("subnet", is.Subnet)
		if err != nil {
			return fmt.Errorf("instance %s: %w", is.Name, err)
		}
		sn := rg.subnets[snID]
		var gids []string
		for _, g := range is.SecurityGroups {
			gid, err := groups.get("security group", g)
			if err != nil {
				return fmt.Errorf("instance %s: %w", is.Name, err)
			}
			if rg.securityGroups[gid].vpcID != sn.vpcID {
				return fmt.Errorf("instance %s: security group %s is not in vpc %s", is.Name, g, sn.vpcID)
			}
			gids = append(gids, gid)
		}
		if len(gids) == 0 {
			for _, sg := range rg.securityGroups {
				if sg.vpcID == sn.vpcID && sg.name == "default" {
					gids = []string{sg.id}
				}
			}
		}
		var prof *instanceProfile
		if is.InstanceProfile != "" {
			if prof = a.instanceProfiles[is.InstanceProfile]; prof == nil {
				return fmt.Errorf("instance %s: unknown instance profile %q", is.Name, is.InstanceProfile)
			}
		}
		var extra []secondaryInterface
		for _, ns := range is.Interfaces {
			sid, err := subnets.get("subnet", ns.Subnet)
			if err != nil {
				return fmt.Errorf("instance %s interface: %w", is.Name, err)
			}
			si := secondaryInterface{id: ns.ID, subnet: rg.subnets[sid], privateIP: ns.PrivateIP, description: ns.Description}
			for _, g := range ns.SecurityGroups {
				gid, err := groups.get("security group", g)
				if err != nil {
					return fmt.Errorf("instance %s interface: %w", is.Name, err)
				}
				si.groups = append(si.groups, gid)
			}
			if len(si.groups) == 0 {
				si.groups = gids
			}
			extra = append(extra, si)
		}
		launched := is.LaunchTime
		if launched.IsZero() {
			launched = now
		}
		state := orDefault(is.State, "running")
		if state != "running" && state != "stopped" {
			return fmt.Errorf("instance %s: state %q is not running or stopped", is.Name, state)
		}
		in, err := e.launchInstance(a.id, rg, launchRequest{
			id: is.ID, name: is.Name, instanceType: is.Type, imageID: is.Image, subnet: sn, groups: gids,
			privateIP: is.PrivateIP, publicIP: is.PublicIP, state: state, tags: tags(is.Tags), volumes: is.Volumes,
			consoleOutput: is.ConsoleOutput, launchTime: launched, disableAPITerm: is.DisableAPITermination, keyName: is.KeyName, profile: prof,
			interfaces: extra,
		})
		if err != nil {
			return err
		}
		insts.add(in.id, is.Name)
	}
	for _, ts := range rs.TargetGroups {
		vpcID, err := vpcs.get("vpc", ts.VPC)
		if err != nil {
			return fmt.Errorf("target group %s: %w", ts.Name, err)
		}
		tg := &targetGroup{name: ts.Name, protocol: orDefault(ts.Protocol, "HTTP"), port: ts.Port, vpcID: vpcID, targetType: "instance",
			healthPath: "/", deregistrationDelay: time.Duration(ts.DeregistrationDelay) * time.Second}
		if tg.port == 0 {
			tg.port = 80
		}
		if tg.deregistrationDelay == 0 {
			tg.deregistrationDelay = 300 * time.Second
		}
		tg.arn = "arn:aws:elasticloadbalancing:" + rg.name + ":" + a.id + ":targetgroup/" + ts.Name + "/" + e.ids.hexString("tg", 16)
		for _, t := range ts.Targets {
			id, err := insts.get("instance", t)
			if err != nil {
				return fmt.Errorf("target group %s: %w", ts.Name, err)
			}
			tg.targets = append(tg.targets, &target{id: id, port: tg.port, az: rg.instances[id].az, registered: now})
		}
		for _, other := range rg.targetGroups {
			if other.name == tg.name {
				return fmt.Errorf("target group %s is defined twice", tg.name)
			}
		}
		rg.targetGroups[tg.arn] = tg
	}
	for _, gs := range rs.AutoScalingGroups {
		if err := e.seedAutoScalingGroup(a, rg, gs, insts, subnets, now); err != nil {
			return err
		}
	}
	for _, fs := range rs.Functions {
		if rg.functions[fs.Name] != nil {
			return fmt.Errorf("function %s is defined twice", fs.Name)
		}
		role := fs.Role
		if role != "" && !strings.HasPrefix(role, "arn:") {
			r := a.roles[role]
			if r == nil {
				return fmt.Errorf("function %s: unknown role %q", fs.Name, role)
			}
			role = r.arn
		}
		f := &lambdaFunction{name: fs.Name, arn: "arn:aws:lambda:" + rg.name + ":" + a.id + ":function:" + fs.Name,
			runtime: orDefault(fs.Runtime, "python3.12"), handler: orDefault(fs.Handler, "index.handler"), role: role,
			description: fs.Description, memory: fs.MemorySize, timeout: fs.Timeout, lastModified: now, tags: tags(fs.Tags).clone(),
			architecture: "x86_64", codeSize: 1024, codeSHA256: e.ids.hexString("code", 43) + "=", revisionID: e.ids.uuid("revision")}
		if f.memory == 0 {
			f.memory = 128
		}
		if f.timeout == 0 {
			f.timeout = 3
		}
		if fs.ReservedConcurrency != nil {
			v := *fs.ReservedConcurrency
			if v < 0 || v > a.lambdaConcurrencyLimit-100 {
				return fmt.Errorf("function %s: reserved concurrency %d leaves less than 100 unreserved", fs.Name, v)
			}
			f.reserved = &v
		}
		rg.functions[f.name] = f
	}
	for _, qs := range rs.Queues {
		if rg.queues[qs.Name] != nil {
			return fmt.Errorf("queue %s is defined twice", qs.Name)
		}
		q := newQueue(qs.Name, a.id, rg.name, now)
		if qs.VisibilityTimeout > 0 {
			q.visibility = time.Duration(qs.VisibilityTimeout) * time.Second
		}
		rg.queues[q.name] = q
	}
	return nil
}

func (e *Emulator) seedAutoScalingGroup(a *account, rg *region, gs AutoScalingGroupSeed, insts, subnets refs, now time.Time) error {
	if rg.asgs[gs.Name] != nil {
		return fmt.Errorf("auto scaling group %s is defined twice", gs.Name)
	}
	g := &autoScalingGroup{name: gs.Name, min: gs.Min, max: gs.Max, desired: gs.Desired, defaultCooldown: 300,
		healthCheckType: "EC2", healthGrace: 300, created: now, suspended: map[string]string{}, tags: tags(gs.Tags).clone()}
	g.arn = "arn:aws:autoscaling:" + rg.name + ":" + a.id + ":autoScalingGroup:" + e.ids.uuid("asg") + ":autoScalingGroupName/" + gs.Name
	for _, ref := range gs.Instances {
		id, err := insts.get("instance", ref)
		if err != nil {
			return fmt.Errorf("auto scaling group %s: %w", gs.Name, err)
		}
		in := rg.instances[id]
		if in.asgName != "" {
			return fmt.Errorf("auto scaling group %s: instance %s is already in group %s", gs.Name, id, in.asgName)
		}
		in.asgName = g.name
		in.tags["aws:autoscaling:groupName"] = g.name
		g.instances = append(g.instances, &asgInstance{id: id, az: in.az, lifecycle: "InService", health: "Healthy", itype: in.instanceType})
		if !slices.Contains(g.subnets, in.subnetID) && len(gs.Subnets) == 0 {
			g.subnets = append(g.subnets, in.subnetID)
		}
	}
	for _, ref := range gs.Subnets {
		id, err := subnets.get("subnet", ref)
		if err != nil {
			return fmt.Errorf("auto scaling group %s: %w", gs.Name, err)
		}
		g.subnets = append(g.subnets, id)
	}
	for _, sn := range g.subnets {
		if az := rg.subnets[sn].az; !slices.Contains(g.azs, az) {
			g.azs = append(g.azs, az)
		}
	}
	if g.desired == 0 {
		g.desired = int32(len(g.instances))
	}
	if g.min < 0 || g.min > g.max || g.desired < g.min || g.desired > g.max {
		return fmt.Errorf("auto scaling group %s: sizes min=%d desired=%d max=%d are inconsistent", gs.Name, g.min, g.desired, g.max)
	}
	for _, name := range gs.TargetGroups {
		var arn string
		for _, tg := range rg.targetGroups {
			if tg.name == name {
				arn = tg.arn
			}
		}
		if arn == "" {
			return fmt.Errorf("auto scaling group %s: unknown target group %q", gs.Name, name)
		}
		g.targetGroups = append(g.targetGroups, arn)
	}
	for _, p := range gs.SuspendedProcesses {
		if !slices.Contains(scalingProcesses, p) {
			return fmt.Errorf("auto scaling group %s: unknown process %q", gs.Name, p)
		}
		g.suspended[p] = "User suspended at " + now.UTC().Format(time.RFC3339)
	}
	if len(g.instances) > 0 {
		first := rg.instances[g.instances[0].id]
		spec := launchSpec{templateID: "lt-" + e.ids.hexString("lt", 17), templateName: gs.Name + "-template", version: "1",
			imageID: first.imageID, instanceType: first.instanceType}
		if eni := rg.primaryENI(first); eni != nil {
			spec.securityGroups = slices.Clone(eni.groups)
		}
		if assoc := rg.activeAssociation(first.id); assoc != nil {
			for _, p := range a.instanceProfiles {
				if p.arn == assoc.profileARN {
					spec.instanceProfile = p.name
				}
			}
		}
		if len(first.devices) > 0 {
			if v := rg.volumes[first.devices[0].volumeID]; v != nil {
				spec.volumeSize, spec.encrypted, spec.kmsKeyID = v.size, v.encrypted, v.kmsKeyID
			}
		}
		g.launch = spec
	}
	rg.asgs[g.name] = g
	return nil
}
