package awsemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"go.yaml.in/yaml/v3"
)

// Seed is an initial state for the emulator: an organisation and its
// accounts with their identities and resources. The package documentation
// describes its YAML form.
type Seed struct {
	// Organization, when set, makes the accounts members of an organisation.
	Organization *OrganizationSeed `yaml:"organization,omitempty" json:"organization,omitempty"`
	// Accounts are the accounts to create.
	Accounts []AccountSeed `yaml:"accounts" json:"accounts"`
}

// OrganizationSeed describes an AWS Organization.
type OrganizationSeed struct {
	// ID is the organisation id (o-…); generated when empty.
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// RootID is the root's id (r-…); generated when empty.
	RootID string `yaml:"rootId,omitempty" json:"rootId,omitempty"`
	// ManagementAccount is the management account's id; it must be one of
	// the seeded accounts.
	ManagementAccount string `yaml:"managementAccount" json:"managementAccount"`
	// Units are the organisational units under the root.
	Units []OrganizationalUnitSeed `yaml:"units,omitempty" json:"units,omitempty"`
	// Trail, when set, is an organisation trail delivering every member
	// account's events as log files into a bucket.
	Trail *OrganizationTrailSeed `yaml:"trail,omitempty" json:"trail,omitempty"`
}

// OrganizationalUnitSeed describes an OU and what it contains.
type OrganizationalUnitSeed struct {
	// ID is the OU id (ou-…); generated when empty.
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Name is the OU's name.
	Name string `yaml:"name" json:"name"`
	// Accounts are the ids of the accounts directly in this OU. Member
	// accounts no OU lists sit under the root.
	Accounts []string `yaml:"accounts,omitempty" json:"accounts,omitempty"`
	// Units are nested OUs.
	Units []OrganizationalUnitSeed `yaml:"units,omitempty" json:"units,omitempty"`
}

// AccountSeed describes one account.
type AccountSeed struct {
	// ID is the 12-digit account id.
	ID string `yaml:"id" json:"id"`
	// Name and Email are what Organizations reports.
	Name  string `yaml:"name,omitempty" json:"name,omitempty"`
	Email string `yaml:"email,omitempty" json:"email,omitempty"`
	// Status is ACTIVE (the default), SUSPENDED or PENDING_CLOSURE.
	Status string `yaml:"status,omitempty" json:"status,omitempty"`
	// Standalone keeps the account out of the organisation.
	Standalone bool `yaml:"standalone,omitempty" json:"standalone,omitempty"`
	// Regions are the regions the account has enabled; us-east-1 when empty.
	Regions []string `yaml:"regions,omitempty" json:"regions,omitempty"`
	// Root, when set, is an access key of the account root.
	Root *AccessKeySeed `yaml:"root,omitempty" json:"root,omitempty"`
	// Users, Roles, Policies and InstanceProfiles make up the account's IAM.
	Users            []UserSeed            `yaml:"users,omitempty" json:"users,omitempty"`
	Roles            []RoleSeed            `yaml:"roles,omitempty" json:"roles,omitempty"`
	Policies         []ManagedPolicySeed   `yaml:"policies,omitempty" json:"policies,omitempty"`
	InstanceProfiles []InstanceProfileSeed `yaml:"instanceProfiles,omitempty" json:"instanceProfiles,omitempty"`
	// Buckets are the account's S3 buckets.
	Buckets []BucketSeed `yaml:"buckets,omitempty" json:"buckets,omitempty"`
	// LambdaConcurrencyLimit is the account's Lambda concurrency quota;
	// 1000 when zero.
	LambdaConcurrencyLimit int32 `yaml:"lambdaConcurrencyLimit,omitempty" json:"lambdaConcurrencyLimit,omitempty"`
	// Resources are the account's regional resources, one entry per region.
	Resources []RegionSeed `yaml:"resources,omitempty" json:"resources,omitempty"`
}

// AccessKeySeed is an access key. Empty fields are generated.
type AccessKeySeed struct {
	ID     string `yaml:"id,omitempty" json:"id,omitempty"`
	Secret string `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Status is Active (the default) or Inactive.
	Status string `yaml:"status,omitempty" json:"status,omitempty"`
}

// PolicyText is a policy document. In YAML it may be written as a JSON
// string or as a mapping; it is kept as JSON text.
type PolicyText string

// UnmarshalYAML accepts a JSON string or a YAML mapping.
func (p *PolicyText) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*p = PolicyText(n.Value)
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("policy document: %w", err)
	}
	*p = PolicyText(b)
	return nil
}

// UserSeed describes an IAM user.
type UserSeed struct {
	Name string `yaml:"name" json:"name"`
	// Path defaults to "/".
	Path       string            `yaml:"path,omitempty" json:"path,omitempty"`
	Tags       map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	AccessKeys []AccessKeySeed   `yaml:"accessKeys,omitempty" json:"accessKeys,omitempty"`
	// InlinePolicies maps policy names to documents.
	InlinePolicies map[string]PolicyText `yaml:"inlinePolicies,omitempty" json:"inlinePolicies,omitempty"`
	// AttachedPolicies are managed policy ARNs.
	AttachedPolicies []string `yaml:"attachedPolicies,omitempty" json:"attachedPolicies,omitempty"`
	// LoginProfile gives the user a console password.
	LoginProfile *LoginProfileSeed `yaml:"loginProfile,omitempty" json:"loginProfile,omitempty"`
}

// LoginProfileSeed is a user's console login.
type LoginProfileSeed struct {
	PasswordResetRequired bool `yaml:"passwordResetRequired,omitempty" json:"passwordResetRequired,omitempty"`
}

// RoleSeed describes an IAM role.
type RoleSeed struct {
	Name string `yaml:"name" json:"name"`
	// Path defaults to "/"; "/aws-service-role/…" makes a service-linked
	// role that only AWS may modify.
	Path        string     `yaml:"path,omitempty" json:"path,omitempty"`
	Description string     `yaml:"description,omitempty" json:"description,omitempty"`
	TrustPolicy PolicyText `yaml:"trustPolicy" json:"trustPolicy"`
	// MaxSessionDuration in seconds, 3600 to 43200; 3600 when zero.
	MaxSessionDuration int32                 `yaml:"maxSessionDuration,omitempty" json:"maxSessionDuration,omitempty"`
	InlinePolicies     map[string]PolicyText `yaml:"inlinePolicies,omitempty" json:"inlinePolicies,omitempty"`
	AttachedPolicies   []string              `yaml:"attachedPolicies,omitempty" json:"attachedPolicies,omitempty"`
	Tags               map[string]string     `yaml:"tags,omitempty" json:"tags,omitempty"`
	// InstanceProfile creates an instance profile of the same name holding
	// the role.
	InstanceProfile bool `yaml:"instanceProfile,omitempty" json:"instanceProfile,omitempty"`
}

// ManagedPolicySeed is a customer-managed policy.
type ManagedPolicySeed struct {
	Name     string     `yaml:"name" json:"name"`
	Path     string     `yaml:"path,omitempty" json:"path,omitempty"`
	Document PolicyText `yaml:"document" json:"document"`
}

// InstanceProfileSeed is an instance profile and its role.
type InstanceProfileSeed struct {
	Name  string   `yaml:"name" json:"name"`
	Path  string   `yaml:"path,omitempty" json:"path,omitempty"`
	Roles []string `yaml:"roles,omitempty" json:"roles,omitempty"`
}

// BucketSeed is an S3 bucket.
type BucketSeed struct {
	Name string `yaml:"name" json:"name"`
	// Region defaults to the account's first region.
	Region string     `yaml:"region,omitempty" json:"region,omitempty"`
	Policy PolicyText `yaml:"policy,omitempty" json:"policy,omitempty"`
	// ACL is a canned ACL: private (the default), public-read,
	// public-read-write or authenticated-read.
	ACL               string                 `yaml:"acl,omitempty" json:"acl,omitempty"`
	PublicAccessBlock *PublicAccessBlockSeed `yaml:"publicAccessBlock,omitempty" json:"publicAccessBlock,omitempty"`
	// ObjectLock enables Object Lock, with a default retention when it has
	// a mode.
	ObjectLock *ObjectLockSeed `yaml:"objectLock,omitempty" json:"objectLock,omitempty"`
	// Versioning is "", Enabled or Suspended; Object Lock implies Enabled.
	Versioning string `yaml:"versioning,omitempty" json:"versioning,omitempty"`
	// Encryption is the default encryption; SSE-S3 when nil.
	Encryption *EncryptionSeed `yaml:"encryption,omitempty" json:"encryption,omitempty"`
}

// PublicAccessBlockSeed is a bucket's public access block.
type PublicAccessBlockSeed struct {
	BlockPublicAcls       bool `yaml:"blockPublicAcls,omitempty" json:"blockPublicAcls,omitempty"`
	IgnorePublicAcls      bool `yaml:"ignorePublicAcls,omitempty" json:"ignorePublicAcls,omitempty"`
	BlockPublicPolicy     bool `yaml:"blockPublicPolicy,omitempty" json:"blockPublicPolicy,omitempty"`
	RestrictPublicBuckets bool `yaml:"restrictPublicBuckets,omitempty" json:"restrictPublicBuckets,omitempty"`
}

// RegionSeed holds an account's resources in one region. Resources refer to
// each other by id, or by name when the referenced resource has no id in the
// seed (its Name tag, or a security group's group name).
type RegionSeed struct {
	Region            string                 `yaml:"region" json:"region"`
	VPCs              []VPCSeed              `yaml:"vpcs,omitempty" json:"vpcs,omitempty"`
	Subnets           []SubnetSeed           `yaml:"subnets,omitempty" json:"subnets,omitempty"`
	SecurityGroups    []SecurityGroupSeed    `yaml:"securityGroups,omitempty" json:"securityGroups,omitempty"`
	Instances         []InstanceSeed         `yaml:"instances,omitempty" json:"instances,omitempty"`
	TargetGroups      []TargetGroupSeed      `yaml:"targetGroups,omitempty" json:"targetGroups,omitempty"`
	AutoScalingGroups []AutoScalingGroupSeed `yaml:"autoScalingGroups,omitempty" json:"autoScalingGroups,omitempty"`
	Functions         []FunctionSeed         `yaml:"functions,omitempty" json:"functions,omitempty"`
	Queues            []QueueSeed            `yaml:"queues,omitempty" json:"queues,omitempty"`
	// GuardDuty is the region's detector; none when nil.
	GuardDuty *GuardDutySeed `yaml:"guardDuty,omitempty" json:"guardDuty,omitempty"`
	// SecurityHub enables Security Hub in the region when set.
	SecurityHub *SecurityHubSeed `yaml:"securityHub,omitempty" json:"securityHub,omitempty"`
	// Trails are the CloudTrail trails whose home is the region.
	Trails []TrailSeed `yaml:"trails,omitempty" json:"trails,omitempty"`
	// EventRules are the rules of the region's default event bus.
	EventRules []EventRuleSeed `yaml:"eventRules,omitempty" json:"eventRules,omitempty"`
	// APIDestinations are the region's EventBridge API destinations.
	APIDestinations []APIDestinationSeed `yaml:"apiDestinations,omitempty" json:"apiDestinations,omitempty"`
}

// VPCSeed is a VPC. Each VPC gets its "default" security group.
type VPCSeed struct {
	ID      string            `yaml:"id,omitempty" json:"id,omitempty"`
	Name    string            `yaml:"name,omitempty" json:"name,omitempty"`
	CIDR    string            `yaml:"cidr" json:"cidr"`
	Default bool              `yaml:"default,omitempty" json:"default,omitempty"`
	Tags    map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// SubnetSeed is a subnet.
type SubnetSeed struct {
	ID               string            `yaml:"id,omitempty" json:"id,omitempty"`
	Name             string            `yaml:"name,omitempty" json:"name,omitempty"`
	VPC              string            `yaml:"vpc" json:"vpc"`
	CIDR             string            `yaml:"cidr" json:"cidr"`
	AvailabilityZone string            `yaml:"availabilityZone,omitempty" json:"availabilityZone,omitempty"`
	Public           bool              `yaml:"public,omitempty" json:"public,omitempty"`
	Tags             map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// SecurityGroupSeed is a security group. Without Egress rules it gets AWS's
// default allow-all egress rule; set NoDefaultEgress to leave it empty.
type SecurityGroupSeed struct {
	ID              string            `yaml:"id,omitempty" json:"id,omitempty"`
	Name            string            `yaml:"name" json:"name"`
	Description     string            `yaml:"description,omitempty" json:"description,omitempty"`
	VPC             string            `yaml:"vpc" json:"vpc"`
	Ingress         []RuleSeed        `yaml:"ingress,omitempty" json:"ingress,omitempty"`
	Egress          []RuleSeed        `yaml:"egress,omitempty" json:"egress,omitempty"`
	NoDefaultEgress bool              `yaml:"noDefaultEgress,omitempty" json:"noDefaultEgress,omitempty"`
	Tags            map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// RuleSeed is one security group rule with one peer.
type RuleSeed struct {
	// Protocol is tcp, udp, icmp or -1 (all).
	Protocol    string `yaml:"protocol" json:"protocol"`
	FromPort    int32  `yaml:"fromPort,omitempty" json:"fromPort,omitempty"`
	ToPort      int32  `yaml:"toPort,omitempty" json:"toPort,omitempty"`
	CIDR        string `yaml:"cidr,omitempty" json:"cidr,omitempty"`
	CIDRv6      string `yaml:"cidrv6,omitempty" json:"cidrv6,omitempty"`
	Group       string `yaml:"group,omitempty" json:"group,omitempty"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
}

// InstanceSeed is an EC2 instance with its primary network interface and
// volumes.
type InstanceSeed struct {
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Name becomes the Name tag.
	Name           string   `yaml:"name,omitempty" json:"name,omitempty"`
	Type           string   `yaml:"type,omitempty" json:"type,omitempty"`
	Image          string   `yaml:"image,omitempty" json:"image,omitempty"`
	Subnet         string   `yaml:"subnet" json:"subnet"`
	SecurityGroups []string `yaml:"securityGroups,omitempty" json:"securityGroups,omitempty"`
	PrivateIP      string   `yaml:"privateIp,omitempty" json:"privateIp,omitempty"`
	PublicIP       string   `yaml:"publicIp,omitempty" json:"publicIp,omitempty"`
	// State is running (the default) or stopped.
	State string            `yaml:"state,omitempty" json:"state,omitempty"`
	Tags  map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// InstanceProfile is the name of the instance profile to associate.
	InstanceProfile string `yaml:"instanceProfile,omitempty" json:"instanceProfile,omitempty"`
	// Volumes are attached in order; the first is the root volume. An
	// instance without volumes gets an 8 GiB root volume.
	Volumes []VolumeSeed `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	// Interfaces are network interfaces attached after the primary one, at
	// device index 1 and up.
	Interfaces            []NetworkInterfaceSeed `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
	ConsoleOutput         string                 `yaml:"consoleOutput,omitempty" json:"consoleOutput,omitempty"`
	LaunchTime            time.Time              `yaml:"launchTime,omitempty" json:"launchTime,omitzero"`
	DisableAPITermination bool                   `yaml:"disableApiTermination,omitempty" json:"disableApiTermination,omitempty"`
	KeyName               string                 `yaml:"keyName,omitempty" json:"keyName,omitempty"`
}

// NetworkInterfaceSeed is a secondary network interface of an instance. Its
// subnet must be in the instance's availability zone.
type NetworkInterfaceSeed struct {
	ID             string   `yaml:"id,omitempty" json:"id,omitempty"`
	Subnet         string   `yaml:"subnet" json:"subnet"`
	SecurityGroups []string `yaml:"securityGroups,omitempty" json:"securityGroups,omitempty"`
	PrivateIP      string   `yaml:"privateIp,omitempty" json:"privateIp,omitempty"`
	Description    string   `yaml:"description,omitempty" json:"description,omitempty"`
}

// VolumeSeed is an EBS volume attached to an instance.
type VolumeSeed struct {
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Device defaults to /dev/xvda for the root volume, /dev/sdf… after.
	Device string `yaml:"device,omitempty" json:"device,omitempty"`
	// Size in GiB; 8 when zero.
	Size int32 `yaml:"size,omitempty" json:"size,omitempty"`
	// Type defaults to gp3.
	Type      string `yaml:"type,omitempty" json:"type,omitempty"`
	Encrypted bool   `yaml:"encrypted,omitempty" json:"encrypted,omitempty"`
	// KMSKeyID is the key ARN; an encrypted volume without one uses the
	// account's default aws/ebs key.
	KMSKeyID string `yaml:"kmsKeyId,omitempty" json:"kmsKeyId,omitempty"`
	// KeepOnTermination clears DeleteOnTermination (set for the root volume
	// otherwise).
	KeepOnTermination bool              `yaml:"keepOnTermination,omitempty" json:"keepOnTermination,omitempty"`
	Tags              map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// AutoScalingGroupSeed is an Auto Scaling group over seeded instances.
type AutoScalingGroupSeed struct {
	Name string `yaml:"name" json:"name"`
	Min  int32  `yaml:"min" json:"min"`
	Max  int32  `yaml:"max" json:"max"`
	// Desired defaults to the number of instances.
	Desired   int32    `yaml:"desired,omitempty" json:"desired,omitempty"`
	Instances []string `yaml:"instances,omitempty" json:"instances,omitempty"`
	// TargetGroups are names of target groups of the same region.
	TargetGroups []string `yaml:"targetGroups,omitempty" json:"targetGroups,omitempty"`
	// Subnets default to the instances' subnets.
	Subnets            []string          `yaml:"subnets,omitempty" json:"subnets,omitempty"`
	SuspendedProcesses []string          `yaml:"suspendedProcesses,omitempty" json:"suspendedProcesses,omitempty"`
	Tags               map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// TargetGroupSeed is an ELBv2 target group of instance targets.
type TargetGroupSeed struct {
	Name string `yaml:"name" json:"name"`
	// Protocol defaults to HTTP, Port to 80.
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Port     int32  `yaml:"port,omitempty" json:"port,omitempty"`
	VPC      string `yaml:"vpc" json:"vpc"`
	// Targets are instances registered on the group's port.
	Targets []string `yaml:"targets,omitempty" json:"targets,omitempty"`
	// DeregistrationDelay in seconds; 300 when zero.
	DeregistrationDelay int32 `yaml:"deregistrationDelay,omitempty" json:"deregistrationDelay,omitempty"`
}

// FunctionSeed is a Lambda function.
type FunctionSeed struct {
	Name string `yaml:"name" json:"name"`
	// Runtime defaults to python3.12, Handler to index.handler.
	Runtime string `yaml:"runtime,omitempty" json:"runtime,omitempty"`
	Handler string `yaml:"handler,omitempty" json:"handler,omitempty"`
	// Role is the execution role's name or ARN.
	Role                string            `yaml:"role,omitempty" json:"role,omitempty"`
	Description         string            `yaml:"description,omitempty" json:"description,omitempty"`
	MemorySize          int32             `yaml:"memorySize,omitempty" json:"memorySize,omitempty"`
	Timeout             int32             `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	ReservedConcurrency *int32            `yaml:"reservedConcurrency,omitempty" json:"reservedConcurrency,omitempty"`
	Tags                map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// QueueSeed is an SQS queue.
type QueueSeed struct {
	Name string `yaml:"name" json:"name"`
	// VisibilityTimeout in seconds; 30 when zero.
	VisibilityTimeout int32 `yaml:"visibilityTimeout,omitempty" json:"visibilityTimeout,omitempty"`
}

// LoadSeedYAML reads a YAML seed and loads it.
func (e *Emulator) LoadSeedYAML(r io.Reader) error {
	s, err := ParseSeedYAML(r)
	if err != nil {
		return err
	}
	return e.Seed(s)
}

// ParseSeedYAML reads a YAML seed. Unknown fields are errors, so a typo does
// not silently drop a resource.
func ParseSeedYAML(r io.Reader) (*Seed, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var s Seed
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return &s, nil
		}
		return nil, fmt.Errorf("awsemu: parse seed: %w", err)
	}
	return &s, nil
}

// YAML renders the seed as YAML that ParseSeedYAML reads back to an equal
// seed.
func (s *Seed) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("awsemu: render seed: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("awsemu: render seed: %w", err)
	}
	return buf.Bytes(), nil
}
