package awsemu

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// State is a snapshot of the emulator's resources, for tests to compare. It
// is JSON-serialisable and deterministic: every list is sorted and maps are
// written in key order. Secrets and generated rule ids are left out.
type State struct {
	Organization *OrganizationState `json:"organization,omitempty"`
	Accounts     []AccountState     `json:"accounts"`
}

// OrganizationState is the organisation's structure.
type OrganizationState struct {
	ID                string `json:"id"`
	RootID            string `json:"rootId"`
	ManagementAccount string `json:"managementAccount"`
	// Parents maps each account and OU id to its parent's id.
	Parents map[string]string `json:"parents"`
	// Units maps OU ids to names.
	Units map[string]string `json:"units,omitempty"`
}

// AccountState is one account.
type AccountState struct {
	ID               string                 `json:"id"`
	Name             string                 `json:"name"`
	Status           string                 `json:"status"`
	Regions          []string               `json:"regions"`
	Users            []UserState            `json:"users,omitempty"`
	Roles            []RoleState            `json:"roles,omitempty"`
	Policies         []ManagedPolicyState   `json:"policies,omitempty"`
	InstanceProfiles []InstanceProfileState `json:"instanceProfiles,omitempty"`
	Buckets          []BucketState          `json:"buckets,omitempty"`
	Resources        []RegionState          `json:"resources,omitempty"`
}

// UserState is an IAM user.
type UserState struct {
	Name             string            `json:"name"`
	Path             string            `json:"path"`
	ARN              string            `json:"arn"`
	Tags             map[string]string `json:"tags,omitempty"`
	InlinePolicies   map[string]string `json:"inlinePolicies,omitempty"`
	AttachedPolicies []string          `json:"attachedPolicies,omitempty"`
	AccessKeys       []AccessKeyState  `json:"accessKeys,omitempty"`
	LoginProfile     bool              `json:"loginProfile,omitempty"`
}

// AccessKeyState is an access key, without its secret.
type AccessKeyState struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`
	LastUsed    time.Time `json:"lastUsed,omitzero"`
	LastService string    `json:"lastService,omitempty"`
}

// RoleState is an IAM role.
type RoleState struct {
	Name             string            `json:"name"`
	Path             string            `json:"path"`
	ARN              string            `json:"arn"`
	TrustPolicy      string            `json:"trustPolicy"`
	InlinePolicies   map[string]string `json:"inlinePolicies,omitempty"`
	AttachedPolicies []string          `json:"attachedPolicies,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
}

// ManagedPolicyState is a customer-managed policy.
type ManagedPolicyState struct {
	ARN      string `json:"arn"`
	Document string `json:"document"`
}

// InstanceProfileState is an instance profile.
type InstanceProfileState struct {
	Name  string   `json:"name"`
	ARN   string   `json:"arn"`
	Roles []string `json:"roles,omitempty"`
}

// BucketState is an S3 bucket's access configuration.
type BucketState struct {
	Name              string                 `json:"name"`
	Region            string                 `json:"region"`
	Policy            string                 `json:"policy,omitempty"`
	PublicACL         bool                   `json:"publicAcl"`
	PublicAccessBlock *PublicAccessBlockSeed `json:"publicAccessBlock,omitempty"`
}

// RegionState is an account's resources in one region.
type RegionState struct {
	Region            string                  `json:"region"`
	VPCs              []VPCState              `json:"vpcs,omitempty"`
	Subnets           []SubnetState           `json:"subnets,omitempty"`
	SecurityGroups    []SecurityGroupState    `json:"securityGroups,omitempty"`
	Instances         []InstanceState         `json:"instances,omitempty"`
	NetworkInterfaces []NetworkInterfaceState `json:"networkInterfaces,omitempty"`
	Volumes           []VolumeState           `json:"volumes,omitempty"`
	Snapshots         []SnapshotState         `json:"snapshots,omitempty"`
	AutoScalingGroups []AutoScalingGroupState `json:"autoScalingGroups,omitempty"`
	TargetGroups      []TargetGroupState      `json:"targetGroups,omitempty"`
	Functions         []FunctionState         `json:"functions,omitempty"`
	Queues            []QueueState            `json:"queues,omitempty"`
}

// VPCState is a VPC.
type VPCState struct {
	ID      string            `json:"id"`
	CIDR    string            `json:"cidr"`
	Default bool              `json:"default,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// SubnetState is a subnet.
type SubnetState struct {
	ID               string            `json:"id"`
	VPC              string            `json:"vpc"`
	CIDR             string            `json:"cidr"`
	AvailabilityZone string            `json:"availabilityZone"`
	Tags             map[string]string `json:"tags,omitempty"`
}

// SecurityGroupState is a security group and its rules.
type SecurityGroupState struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	VPC         string            `json:"vpc"`
	Ingress     []RuleSeed        `json:"ingress,omitempty"`
	Egress      []RuleSeed        `json:"egress,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// InstanceState is an instance's response-relevant configuration.
type InstanceState struct {
	ID                    string             `json:"id"`
	Type                  string             `json:"type"`
	State                 string             `json:"state"`
	Subnet                string             `json:"subnet"`
	PrivateIP             string             `json:"privateIp"`
	SecurityGroups        []string           `json:"securityGroups,omitempty"`
	NetworkInterfaces     []string           `json:"networkInterfaces,omitempty"`
	BlockDevices          []BlockDeviceState `json:"blockDevices,omitempty"`
	Tags                  map[string]string  `json:"tags,omitempty"`
	DisableAPITermination bool               `json:"disableApiTermination,omitempty"`
	DisableAPIStop        bool               `json:"disableApiStop,omitempty"`
	ShutdownBehavior      string             `json:"shutdownBehavior"`
	InstanceProfile       string             `json:"instanceProfile,omitempty"`
	AutoScalingGroup      string             `json:"autoScalingGroup,omitempty"`
}

// BlockDeviceState is a volume attached to an instance.
type BlockDeviceState struct {
	Device              string `json:"device"`
	Volume              string `json:"volume"`
	DeleteOnTermination bool   `json:"deleteOnTermination"`
}

// NetworkInterfaceState is an ENI and the history of its security groups.
type NetworkInterfaceState struct {
	ID           string             `json:"id"`
	Instance     string             `json:"instance,omitempty"`
	Groups       []string           `json:"groups"`
	GroupHistory []GroupChangeState `json:"groupHistory,omitempty"`
	Tags         map[string]string  `json:"tags,omitempty"`
}

// GroupChangeState is one change of an ENI's security groups.
type GroupChangeState struct {
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
	Groups    []string  `json:"groups"`
}

// VolumeState is an EBS volume.
type VolumeState struct {
	ID        string            `json:"id"`
	Size      int32             `json:"size"`
	State     string            `json:"state"`
	Encrypted bool              `json:"encrypted"`
	KMSKeyID  string            `json:"kmsKeyId,omitempty"`
	Instance  string            `json:"instance,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// SnapshotState is an EBS snapshot.
type SnapshotState struct {
	ID          string            `json:"id"`
	Volume      string            `json:"volume"`
	Description string            `json:"description,omitempty"`
	Encrypted   bool              `json:"encrypted"`
	KMSKeyID    string            `json:"kmsKeyId,omitempty"`
	SharedWith  []string          `json:"sharedWith,omitempty"`
	Source      string            `json:"source,omitempty"`
	Started     time.Time         `json:"started"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// AutoScalingGroupState is an Auto Scaling group.
type AutoScalingGroupState struct {
	Name               string            `json:"name"`
	Min                int32             `json:"min"`
	Max                int32             `json:"max"`
	Desired            int32             `json:"desired"`
	Instances          map[string]string `json:"instances"`
	SuspendedProcesses []string          `json:"suspendedProcesses,omitempty"`
	TargetGroups       []string          `json:"targetGroups,omitempty"`
}

// TargetGroupState is a target group and its targets' states.
type TargetGroupState struct {
	Name    string        `json:"name"`
	ARN     string        `json:"arn"`
	Targets []TargetState `json:"targets,omitempty"`
}

// TargetState is one registered target.
type TargetState struct {
	ID    string `json:"id"`
	Port  int32  `json:"port"`
	State string `json:"state"`
}

// FunctionState is a Lambda function.
type FunctionState struct {
	Name                string `json:"name"`
	ReservedConcurrency *int32 `json:"reservedConcurrency,omitempty"`
}

// QueueState is an SQS queue.
type QueueState struct {
	Name     string `json:"name"`
	Messages int    `json:"messages"`
}

// Account returns the state of one account, or nil.
func (s *State) Account(id string) *AccountState {
	for i := range s.Accounts {
		if s.Accounts[i].ID == id {
			return &s.Accounts[i]
		}
	}
	return nil
}

// Region returns the account's state in one region, or nil.
func (a *AccountState) Region(name string) *RegionState {
	for i := range a.Resources {
		if a.Resources[i].Region == name {
			return &a.Resources[i]
		}
	}
	return nil
}

// Dump returns the current state.
func (e *Emulator) Dump() *State {
	e.mu.RLock()
	ids := slices.Sorted(maps.Keys(e.accounts))
	accts := make([]*account, len(ids))
	for i, id := range ids {
		accts[i] = e.accounts[id]
	}
	org := e.org
	bucketsByOwner := map[string][]*bucket{}
	for _, b := range e.buckets {
		bucketsByOwner[b.owner] = append(bucketsByOwner[b.owner], b)
	}
	e.mu.RUnlock()

	out := &State{Accounts: []AccountState{}}
	if org != nil {
		os := &OrganizationState{ID: org.id, RootID: org.rootID, ManagementAccount: org.management, Parents: maps.Clone(org.parent)}
		for id, u := range org.units {
			if os.Units == nil {
				os.Units = map[string]string{}
			}
			os.Units[id] = u.name
		}
		out.Organization = os
	}
	now := e.now()
	for _, a := range accts {
		a.mu.Lock()
		out.Accounts = append(out.Accounts, a.dump(bucketsByOwner[a.id], now))
		a.mu.Unlock()
	}
	return out
}

func policyTexts(m map[string]*storedPolicy) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.text
	}
	return out
}

func tagMap(t tags) map[string]string {
	if len(t) == 0 {
		return nil
	}
	return maps.Clone(t)
}

func byKey[T any, K cmp.Ordered](items []T, key func(T) K) []T {
	slices.SortFunc(items, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return items
}

// dump renders the account. The caller holds a.mu.
func (a *account) dump(buckets []*bucket, now time.Time) AccountState {
	out := AccountState{ID: a.id, Name: a.name, Status: a.status, Regions: slices.Clone(a.enabled)}
	for _, u := range a.users {
		us := UserState{Name: u.name, Path: u.path, ARN: u.arn, Tags: tagMap(u.tags), InlinePolicies: policyTexts(u.inline),
			AttachedPolicies: slices.Clone(u.attached), LoginProfile: u.login != nil}
		for _, k := range u.keys {
			k.mu.Lock()
			us.AccessKeys = append(us.AccessKeys, AccessKeyState{k.id, k.status, k.lastUsed, k.lastService})
			k.mu.Unlock()
		}
		out.Users = append(out.Users, us)
	}
	byKey(out.Users, func(u UserState) string { return u.Name })
	for _, r := range a.roles {
		out.Roles = append(out.Roles, RoleState{Name: r.name, Path: r.path, ARN: r.arn, TrustPolicy: r.trust.text,
			InlinePolicies: policyTexts(r.inline), AttachedPolicies: slices.Clone(r.attached), Tags: tagMap(r.tags)})
	}
	byKey(out.Roles, func(r RoleState) string { return r.Name })
	for _, p := range a.policies {
		out.Policies = append(out.Policies, ManagedPolicyState{p.arn, p.doc.text})
	}
	byKey(out.Policies, func(p ManagedPolicyState) string { return p.ARN })
	for _, p := range a.instanceProfiles {
		out.InstanceProfiles = append(out.InstanceProfiles, InstanceProfileState{p.name, p.arn, slices.Clone(p.roles)})
	}
	byKey(out.InstanceProfiles, func(p InstanceProfileState) string { return p.Name })
	for _, b := range buckets {
		bs := BucketState{Name: b.name, Region: b.region, Policy: b.policy, PublicACL: aclIsPublic(b.acl)}
		if p := b.pab; p != nil {
			bs.PublicAccessBlock = &PublicAccessBlockSeed{p.BlockPublicAcls, p.IgnorePublicAcls, p.BlockPublicPolicy, p.RestrictPublicBuckets}
		}
		out.Buckets = append(out.Buckets, bs)
	}
	byKey(out.Buckets, func(b BucketState) string { return b.Name })
	for _, name := range slices.Sorted(maps.Keys(a.regions)) {
		out.Resources = append(out.Resources, a.regions[name].dump(a, now))
	}
	return out
}

func rulesState(rules []rule) []RuleSeed {
	var out []RuleSeed
	for _, r := range rules {
		out = append(out, RuleSeed{Protocol: r.protocol, FromPort: r.fromPort, ToPort: r.toPort, CIDR: r.cidr, CIDRv6: r.cidrV6,
			Group: r.groupID + r.prefixList, Description: r.description})
	}
	return out
}

func (rg *region) dump(a *account, now time.Time) RegionState { //nolint:unparam // every dump method takes its owner, for symmetry with account.dump
	out := RegionState{Region: rg.name}
	for _, v := range rg.vpcs {
		out.VPCs = append(out.VPCs, VPCState{v.id, v.cidr, v.isDefault, tagMap(v.tags)})
	}
	byKey(out.VPCs, func(v VPCState) string { return v.ID })
	for _, s := range rg.subnets {
		out.Subnets = append(out.Subnets, SubnetState{s.id, s.vpcID, s.cidr, s.az, tagMap(s.tags)})
	}
	byKey(out.Subnets, func(s SubnetState) string { return s.ID })
	for _, g := range rg.securityGroups {
		out.SecurityGroups = append(out.SecurityGroups, SecurityGroupState{g.id, g.name, g.description, g.vpcID, rulesState(g.ingress), rulesState(g.egress), tagMap(g.tags)})
	}
	byKey(out.SecurityGroups, func(g SecurityGroupState) string { return g.ID })
	for _, in := range rg.instances {
		is := InstanceState{ID: in.id, Type: in.instanceType, State: in.state, Subnet: in.subnetID, PrivateIP: in.privateIP,
			NetworkInterfaces: slices.Clone(in.enis), Tags: tagMap(in.tags), DisableAPITermination: in.disableAPITerm,
			DisableAPIStop: in.disableAPIStop, ShutdownBehavior: in.shutdownBehavior, AutoScalingGroup: in.asgName}
		if eni := rg.primaryENI(in); eni != nil {
			is.SecurityGroups = slices.Clone(eni.groups)
		}
		for _, d := range in.devices {
			is.BlockDevices = append(is.BlockDevices, BlockDeviceState{d.deviceName, d.volumeID, d.deleteOnTermination})
		}
		if assoc := rg.activeAssociation(in.id); assoc != nil {
			is.InstanceProfile = assoc.profileARN
		}
		out.Instances = append(out.Instances, is)
	}
	byKey(out.Instances, func(i InstanceState) string { return i.ID })
	for _, eni := range rg.enis {
		es := NetworkInterfaceState{ID: eni.id, Instance: eni.instanceID, Groups: slices.Clone(eni.groups), Tags: tagMap(eni.tags)}
		for _, h := range eni.history {
			es.GroupHistory = append(es.GroupHistory, GroupChangeState{h.at, h.operation, slices.Clone(h.groups)})
		}
		out.NetworkInterfaces = append(out.NetworkInterfaces, es)
	}
	byKey(out.NetworkInterfaces, func(n NetworkInterfaceState) string { return n.ID })
	for _, v := range rg.volumes {
		out.Volumes = append(out.Volumes, VolumeState{v.id, v.size, v.state, v.encrypted, v.kmsKeyID, v.instanceID, tagMap(v.tags)})
	}
	byKey(out.Volumes, func(v VolumeState) string { return v.ID })
	for _, s := range rg.snapshots {
		out.Snapshots = append(out.Snapshots, SnapshotState{s.id, s.volumeID, s.description, s.encrypted, s.kmsKeyID,
			slices.Clone(s.sharedWith), s.sourceID, s.started, tagMap(s.tags)})
	}
	byKey(out.Snapshots, func(s SnapshotState) string { return s.ID })
	for _, g := range rg.asgs {
		gs := AutoScalingGroupState{Name: g.name, Min: g.min, Max: g.max, Desired: g.desired, Instances: map[string]string{},
			TargetGroups: slices.Clone(g.targetGroups)}
		for _, m := range g.instances {
			gs.Instances[m.id] = m.lifecycle
		}
		for _, p := range scalingProcesses {
			if _, ok := g.suspended[p]; ok {
				gs.SuspendedProcesses = append(gs.SuspendedProcesses, p)
			}
		}
		out.AutoScalingGroups = append(out.AutoScalingGroups, gs)
	}
	byKey(out.AutoScalingGroups, func(g AutoScalingGroupState) string { return g.Name })
	for _, tg := range rg.targetGroups {
		ts := TargetGroupState{Name: tg.name, ARN: tg.arn}
		for _, t := range tg.targets {
			if !t.drainingUntil.IsZero() && !now.Before(t.drainingUntil) {
				continue
			}
			ts.Targets = append(ts.Targets, TargetState{t.id, t.port, rg.health(t).State})
		}
		byKey(ts.Targets, func(t TargetState) string { return fmt.Sprintf("%s:%05d", t.ID, t.Port) })
		out.TargetGroups = append(out.TargetGroups, ts)
	}
	byKey(out.TargetGroups, func(t TargetGroupState) string { return t.Name })
	for _, f := range rg.functions {
		fs := FunctionState{Name: f.name}
		if f.reserved != nil {
			v := *f.reserved
			fs.ReservedConcurrency = &v
		}
		out.Functions = append(out.Functions, fs)
	}
	byKey(out.Functions, func(f FunctionState) string { return f.Name })
	for _, q := range rg.queues {
		q.mu.Lock()
		out.Queues = append(out.Queues, QueueState{q.name, len(q.messages)})
		q.mu.Unlock()
	}
	byKey(out.Queues, func(q QueueState) string { return q.Name })
	return out
}
