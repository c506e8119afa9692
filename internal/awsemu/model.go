package awsemu

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// account is one AWS account: its IAM, its buckets and its regional
// resources. mu guards everything in it; the emulator never holds two
// account locks at once, so cross-account work copies what it needs out of
// one account before touching the next.
type account struct {
	mu sync.Mutex

	id     string
	name   string
	email  string
	status string // ACTIVE, SUSPENDED, PENDING_CLOSURE
	joined time.Time
	// standalone accounts stay out of the organisation.
	standalone bool

	// enabled lists the regions the account may use, in seed order.
	enabled []string
	regions map[string]*region

	// rootKey is the account root's access key, when the seed defines one.
	rootKey string

	users            map[string]*iamUser
	roles            map[string]*iamRole
	policies         map[string]*managedPolicy // by ARN
	instanceProfiles map[string]*instanceProfile

	// lambdaConcurrencyLimit is the account's concurrent executions quota.
	lambdaConcurrencyLimit int32

	// trails are the account's CloudTrail trails, by name.
	trails map[string]*trail
}

func newAccount(id string) *account {
	return &account{
		id:                     id,
		status:                 "ACTIVE",
		regions:                make(map[string]*region),
		users:                  make(map[string]*iamUser),
		roles:                  make(map[string]*iamRole),
		policies:               make(map[string]*managedPolicy),
		instanceProfiles:       make(map[string]*instanceProfile),
		lambdaConcurrencyLimit: 1000,
	}
}

// regionEnabled reports whether the account may use the region.
func (a *account) regionEnabled(name string) bool {
	return slices.Contains(a.enabled, name)
}

// region returns the state of an enabled region, creating it on first use.
// The caller holds a.mu.
func (a *account) region(name string) *region {
	r, ok := a.regions[name]
	if !ok {
		r = newRegion(name)
		a.regions[name] = r
	}
	return r
}

// region is an account's resources in one region.
type region struct {
	name string

	vpcs           map[string]*vpc
	subnets        map[string]*subnet
	securityGroups map[string]*securityGroup
	instances      map[string]*instance
	enis           map[string]*networkInterface
	volumes        map[string]*volume
	snapshots      map[string]*snapshot
	associations   map[string]*profileAssociation
	asgs           map[string]*autoScalingGroup
	targetGroups   map[string]*targetGroup // by ARN
	functions      map[string]*lambdaFunction
	queues         map[string]*queue
	keyPairs       map[string]*keyPair // by name
	// detector is the region's GuardDuty detector, nil when there is none.
	detector *gdDetector
	// hub is the region's Security Hub subscription, nil when not enabled.
	hub *securityHub
	// eventRules are the default event bus's rules, by name.
	eventRules map[string]*eventRule
	// apiDestinations are the EventBridge API destinations, by name.
	apiDestinations map[string]*apiDestination
}

func newRegion(name string) *region {
	return &region{
		name:           name,
		vpcs:           make(map[string]*vpc),
		subnets:        make(map[string]*subnet),
		securityGroups: make(map[string]*securityGroup),
		instances:      make(map[string]*instance),
		enis:           make(map[string]*networkInterface),
		volumes:        make(map[string]*volume),
		snapshots:      make(map[string]*snapshot),
		associations:   make(map[string]*profileAssociation),
		asgs:           make(map[string]*autoScalingGroup),
		targetGroups:   make(map[string]*targetGroup),
		functions:      make(map[string]*lambdaFunction),
		queues:         make(map[string]*queue),
		keyPairs:       make(map[string]*keyPair),
		eventRules:     make(map[string]*eventRule),
	}
}

// tags is a resource's tag set.
type tags map[string]string

// sortedKeys returns the tag keys in order, for deterministic output.
func (t tags) sortedKeys() []string {
	return slices.Sorted(maps.Keys(t))
}

func (t tags) clone() tags {
	if t == nil {
		return tags{}
	}
	return maps.Clone(t)
}

type vpc struct {
	id        string
	cidr      string
	isDefault bool
	tags      tags
}

type subnet struct {
	id                  string
	vpcID               string
	cidr                string
	az                  string
	mapPublicIPOnLaunch bool
	defaultForAZ        bool
	tags                tags
	// used holds the private addresses handed out in the subnet.
	used map[string]bool
}

// rule is one security-group permission with a single peer; the EC2 wire
// format groups rules sharing protocol and ports into one IpPermission.
type rule struct {
	protocol    string // tcp, udp, icmp, -1
	fromPort    int32
	toPort      int32
	cidr        string
	cidrV6      string
	groupID     string
	groupOwner  string
	prefixList  string
	description string
	id          string // sgr-…
}

// samePermission compares the parts of a rule that identify it.
func (r rule) samePermission(o rule) bool {
	return r.protocol == o.protocol && r.fromPort == o.fromPort && r.toPort == o.toPort &&
		r.cidr == o.cidr && r.cidrV6 == o.cidrV6 && r.groupID == o.groupID && r.prefixList == o.prefixList
}

type securityGroup struct {
	id          string
	name        string
	description string
	vpcID       string
	ingress     []rule
	egress      []rule
	tags        tags
}

type instance struct {
	id               string
	reservationID    string
	imageID          string
	instanceType     string
	state            string // pending, running, stopping, stopped, shutting-down, terminated
	subnetID         string
	vpcID            string
	az               string
	privateIP        string
	publicIP         string
	keyName          string
	architecture     string
	platform         string
	launchTime       time.Time
	rootDevice       string
	enis             []string // ENI ids by device index
	devices          []blockDevice
	tags             tags
	disableAPITerm   bool
	disableAPIStop   bool
	shutdownBehavior string // stop, terminate
	sourceDestCheck  bool
	ebsOptimized     bool
	consoleOutput    string
	asgName          string
}

type blockDevice struct {
	deviceName          string
	volumeID            string
	deleteOnTermination bool
	attachTime          time.Time
}

// groupChange is one change of an ENI's security groups, kept so a test can
// check the order of a connection-tracking-aware isolation.
type groupChange struct {
	at        time.Time
	operation string
	groups    []string
}

type networkInterface struct {
	id              string
	subnetID        string
	vpcID           string
	az              string
	privateIP       string
	publicIP        string
	mac             string
	description     string
	instanceID      string
	deviceIndex     int32
	attachmentID    string
	attachTime      time.Time
	deleteOnTerm    bool
	groups          []string
	history         []groupChange
	sourceDestCheck bool
	tags            tags
}

type volume struct {
	id         string
	az         string
	size       int32
	volumeType string
	iops       int32
	state      string // available, in-use
	encrypted  bool
	kmsKeyID   string
	snapshotID string
	created    time.Time
	instanceID string
	device     string
	attachTime time.Time
	deleteOnT  bool
	tags       tags
}

type snapshot struct {
	id          string
	volumeID    string
	volumeSize  int32
	description string
	started     time.Time
	encrypted   bool
	kmsKeyID    string
	owner       string
	tags        tags
	// sharedWith lists the accounts given createVolumePermission; "all"
	// stands for the public.
	sharedWith []string
	sourceID   string // the snapshot this one was copied from
}

type profileAssociation struct {
	id         string
	instanceID string
	profileARN string
	profileID  string
	state      string // associated, disassociated
	at         time.Time
}

type asgInstance struct {
	id        string
	az        string
	lifecycle string // InService, Standby, Pending, …
	health    string // Healthy, Unhealthy
	protected bool
	itype     string
}

// launchSpec is what an Auto Scaling group launches replacement instances
// from.
type launchSpec struct {
	templateID      string
	templateName    string
	version         string
	imageID         string
	instanceType    string
	securityGroups  []string
	instanceProfile string
	volumeSize      int32
	encrypted       bool
	kmsKeyID        string
}

type autoScalingGroup struct {
	name              string
	arn               string
	min, max, desired int32
	defaultCooldown   int32
	healthCheckType   string
	healthGrace       int32
	created           time.Time
	subnets           []string
	azs               []string
	targetGroups      []string
	instances         []*asgInstance
	suspended         map[string]string // process → reason
	launch            launchSpec
	tags              tags
	activities        int
}

func (g *autoScalingGroup) member(id string) *asgInstance {
	for _, m := range g.instances {
		if m.id == id {
			return m
		}
	}
	return nil
}

type target struct {
	id            string
	port          int32
	az            string
	registered    time.Time
	drainingUntil time.Time // zero while registered
}

type targetGroup struct {
	arn                 string
	name                string
	protocol            string
	port                int32
	vpcID               string
	targetType          string
	healthPath          string
	loadBalancers       []string
	deregistrationDelay time.Duration
	targets             []*target
}

func (tg *targetGroup) find(id string, port int32) *target {
	for _, t := range tg.targets {
		if t.id == id && t.port == port {
			return t
		}
	}
	return nil
}

type lambdaFunction struct {
	name         string
	arn          string
	runtime      string
	handler      string
	role         string
	description  string
	codeSize     int64
	codeSHA256   string
	memory       int32
	timeout      int32
	lastModified time.Time
	reserved     *int32
	tags         tags
	architecture string
	revisionID   string
}

// iamUser is an IAM user.
type iamUser struct {
	name       string
	path       string
	id         string
	arn        string
	created    time.Time
	tags       tags
	inline     map[string]*storedPolicy
	attached   []string // managed policy ARNs, in attachment order
	keys       []*accessKey
	login      *loginProfile
	passwordAt time.Time
}

type loginProfile struct {
	created       time.Time
	resetRequired bool
}

// storedPolicy keeps a policy as written and as parsed.
type storedPolicy struct {
	text string
	doc  *policyDocument
}

type iamRole struct {
	name        string
	path        string
	id          string
	arn         string
	created     time.Time
	description string
	trust       *storedPolicy
	maxSession  int32
	tags        tags
	inline      map[string]*storedPolicy
	attached    []string
	lastUsed    time.Time
	lastRegion  string
}

// serviceLinked reports whether AWS owns the role (path /aws-service-role/).
func (r *iamRole) serviceLinked() bool {
	return len(r.path) >= len("/aws-service-role/") && r.path[:len("/aws-service-role/")] == "/aws-service-role/"
}

type managedPolicy struct {
	arn     string
	name    string
	path    string
	id      string
	created time.Time
	doc     *storedPolicy
}

type instanceProfile struct {
	name    string
	path    string
	id      string
	arn     string
	created time.Time
	roles   []string
}

// bucket is an S3 bucket. Its fields are guarded by the owning account's
// lock.
type bucket struct {
	name    string
	owner   string
	region  string
	created time.Time
	policy  string
	acl     []grant
	pab     *publicAccessBlock
	// objects are created on first use; see store.
	objectsOnce sync.Once
	objects     *objectStore
	// objectLock is nil when Object Lock is not enabled.
	objectLock *objectLock
	// versioning is "", Enabled or Suspended.
	versioning string
	// encryption is nil for the default SSE-S3.
	encryption *bucketEncryption
}

// grant is one ACL grant.
type grant struct {
	granteeType string // CanonicalUser, Group
	granteeID   string // canonical id, or group URI
	permission  string
}

type publicAccessBlock struct {
	BlockPublicAcls       bool
	IgnorePublicAcls      bool
	BlockPublicPolicy     bool
	RestrictPublicBuckets bool
}
