// Package awsemu is an in-process AWS endpoint for Firebreak's end-to-end
// tests, for `firebreak lab demo` and for `firebreak lab aws`. It speaks the
// real wire protocols, so the unmodified aws-sdk-go-v2 clients talk to it
// through one endpoint (AWS_ENDPOINT_URL or each client's BaseEndpoint):
//
//	ec2                    EC2 query protocol
//	iam, sts, autoscaling,
//	elasticloadbalancing   awsQuery
//	organizations,
//	cloudtrail, events     awsJson1_1
//	sqs                    awsJson1_0 (with awsQuery-compatible error codes)
//	lambda, account,
//	guardduty, securityhub restJson1
//	s3                     restXml, path style or virtual-hosted
//
// Besides the response actions' operations it answers what a readiness
// review reads: GuardDuty ListDetectors/GetDetector/GetAdministratorAccount,
// EventBridge ListRules/ListTargetsByRule/DescribeApiDestination, Security Hub
// DescribeHub, CloudTrail DescribeTrails/GetTrailStatus (a member sees the
// management account's organisation trails), S3 HeadBucket, GetObjectLockConfiguration,
// GetBucketVersioning and GetBucketEncryption, IAM SimulatePrincipalPolicy
// (the emulator's own policy evaluation over a user's or role's identity
// policies), and DryRun on every EC2 call (DryRunOperation once authorised).
//
// For the attacker's persistence and its eradication it answers IAM
// CreateUser/DeleteUser, CreateRole/DeleteRole and UpdateAssumeRolePolicy
// (deletes refused with DeleteConflict while keys, a password or policies
// remain, as IAM does), Lambda CreateFunction/DeleteFunction (recorded as
// CreateFunction20150331 and DeleteFunction20150331), EventBridge
// PutRule/DescribeRule/ListRules/EnableRule/DisableRule/DeleteRule and
// ListTargetsByRule/RemoveTargets (rules have no targets) on the
// default bus, EC2 ImportKeyPair/DescribeKeyPairs/DeleteKeyPair,
// CreateSnapshot and StopInstances, CloudTrail StartLogging/StopLogging on the
// account's own trails, and GuardDuty UpdateDetector. CloudTrail records the
// requestParameters of JSON services in lower camel case and their
// responseElements as AWS writes them (the new user, role, key pair, rule or
// function), never a function's code.
//
// A request is routed by the service of its SigV4 credential scope, then by
// the protocol's own marker (the Action form field, the X-Amz-Target header
// or the REST path). Every request is authenticated by recomputing its
// signature with the secret the emulator holds (header and presigned
// signatures, UNSIGNED-PAYLOAD and the aws-chunked streaming payloads S3
// uses), then authorised by evaluating the caller's IAM policies, then
// recorded in the call log and, for management events, in CloudTrail's
// event history of the caller's account and region.
//
// # Identity and authorisation
//
// Each access key belongs to an account and a principal: an IAM user, the
// account root, or a role session made by sts:AssumeRole (or by
// IssueInstanceCredentials). An IAM user's sts:GetSessionToken credentials
// act as the user and, as in AWS, outlive the deactivation of the key that
// minted them; without MFA (which is not emulated) they may not call IAM.
// Policies are evaluated as IAM does, simplified
// but honest: an explicit Deny in any identity or session policy wins, else
// an Allow is needed, else the call is refused with the service's own
// access-denied error. Inline and attached managed policies count
// (customer-managed ones from the seed, and the AWS managed
// AdministratorAccess, ReadOnlyAccess, SecurityAudit and AWSDenyAll).
// Conditions support the String*, Arn*, Date*, Numeric*, Bool, IpAddress and
// Null operators with IfExists and ForAnyValue/ForAllValues, and policy
// variables. The keys include aws:CurrentTime, aws:EpochTime,
// aws:TokenIssueTime, aws:PrincipalArn, aws:PrincipalAccount,
// aws:PrincipalType, aws:userid, aws:username, aws:SourceIdentity,
// aws:SourceIp, aws:RequestedRegion, aws:PrincipalTag/*,
// ec2:SourceInstanceARN, iam:PolicyARN (on Attach and Detach) and, on the
// iam:PassRole that AssociateIamInstanceProfile checks for the profile's
// role, iam:PassedToService and iam:AssociatedResourceArn; in trust
// policies, sts:ExternalId,
// sts:RoleSessionName, sts:SourceIdentity and aws:RequestTag/*. A deny
// policy put on a user or role takes effect on the next call of every
// credential of that principal. The account root bypasses identity
// policies. Resource-based policies other than trust policies, permission
// boundaries and SCPs are not evaluated.
//
// # Seed format
//
// A seed is YAML (see Seed and ParseSeedYAML). Policy documents may be
// written as JSON strings or as YAML mappings. Resources refer to each
// other by id, or by name when the target has no id in the seed.
//
//	organization:
//	  managementAccount: "210987654300"
//	  trail: {name: organization-trail, bucket: org-trail-logs}  # optional
//	  units:
//	    - name: Workloads
//	      accounts: ["210987654302"]
//	accounts:
//	  - id: "210987654302"
//	    name: workload-01
//	    status: ACTIVE            # or SUSPENDED, PENDING_CLOSURE
//	    regions: [us-east-1, us-west-2]
//	    root: {id: AKIA..., secret: ...}
//	    users:
//	      - name: ci-deployer
//	        accessKeys: [{id: AKIA..., secret: ..., status: Active}]
//	        inlinePolicies:
//	          deploy: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "s3:*", Resource: "*"}]}
//	        attachedPolicies: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
//	        loginProfile: {passwordResetRequired: false}
//	    roles:
//	      - name: FirebreakResponder
//	        trustPolicy: '{"Version":"2012-10-17","Statement":[...]}'
//	        maxSessionDuration: 3600
//	        inlinePolicies: {...}
//	        instanceProfile: true  # an instance profile of the same name
//	    policies: [{name: ..., path: /, document: {...}}]
//	    buckets:
//	      - name: lab-public-assets
//	        acl: public-read       # private, public-read, public-read-write, authenticated-read
//	        policy: {...}
//	        publicAccessBlock: {blockPublicAcls: true, ...}
//	      - name: evidence
//	        objectLock: {mode: COMPLIANCE, days: 365}   # enables versioning too
//	        versioning: Enabled                          # or Suspended
//	        encryption: {algorithm: aws:kms, kmsKeyId: arn:aws:kms:...}
//	    resources:
//	      - region: us-east-1
//	        vpcs: [{name: prod, cidr: 10.0.0.0/16}]
//	        subnets: [{name: prod-a, vpc: prod, cidr: 10.0.1.0/24, availabilityZone: us-east-1a}]
//	        securityGroups:
//	          - name: web
//	            vpc: prod
//	            ingress: [{protocol: tcp, fromPort: 443, toPort: 443, cidr: 0.0.0.0/0}]
//	        instances:
//	          - name: web-1
//	            subnet: prod-a
//	            securityGroups: [web]
//	            instanceProfile: AppInstanceRole
//	            volumes: [{size: 8, encrypted: true}, {size: 20, encrypted: true, kmsKeyId: arn:aws:kms:...}]
//	            consoleOutput: "..."
//	        targetGroups: [{name: web-http, port: 80, vpc: prod, targets: [web-1]}]
//	        autoScalingGroups: [{name: web-asg, min: 1, max: 4, desired: 2, instances: [web-1], targetGroups: [web-http]}]
//	        functions: [{name: order-processor, reservedConcurrency: 20}]
//	        queues: [{name: firebreak-findings, visibilityTimeout: 60}]
//	        guardDuty: {status: ENABLED, findingPublishingFrequency: SIX_HOURS}   # or DISABLED (suspended)
//	        securityHub: {autoEnableControls: true}
//	        trails: [{name: org-trail, bucket: org-trail-logs, organization: true, multiRegion: true, stopped: false}]
//
// Identifiers left out are generated: they look like AWS's
// (i-0123456789abcdef0, sg-…, AKIA…) and depend only on Config.IDSalt and on
// the order of seeding and calls, so dumps of two runs compare. LabSeed
// builds a ready organisation.
//
// # Pointing the SDK at it
//
// Set AWS_ENDPOINT_URL to the emulator's URL (or each client's
// BaseEndpoint), a region the account has enabled, and static credentials
// from the seed. With an IP address as endpoint the S3 client falls back to
// path style by itself; with a host name set UsePathStyle, or let the Host
// header carry the bucket (virtual-hosted style works when the name
// resolves to the emulator). Answers take at least Config.MinResponseTime,
// because the SDK cannot cope with answers that arrive within
// microseconds.
//
// # Organisation trail
//
// With organization.trail set, every member account's management events
// also go, as CloudTrail delivers them, into log files in the trail's
// bucket: AWSLogs/<org id>/<account>/CloudTrail/<region>/YYYY/MM/DD/
// <account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<unique>.json.gz, each a
// gzipped {"Records":[…]}. A file closes when its first event is five
// emulated minutes old, when it holds 1000 events, or on DeliverTrailLogs.
// The bucket serves ListObjectsV2, GetObject and HeadObject (data events,
// kept out of the event history). AssumeRole into another account is
// recorded in both accounts with one sharedEventID, and its
// responseElements carry the new credentials' access key id.
//
// # Control API
//
// Go methods: Seed, LoadSeedYAML, Dump, Calls, CallCount, CallCounts,
// SetFault, ThrottleNext, SetLatency, ClearFaults, SendQueueMessage,
// IssueInstanceCredentials, DeliverTrailLogs, WriteTrailLogFile and
// AddEventHistory. The same control is served over HTTP under /_emu/
// (dump, seed, calls, counters, operations, faults, messages,
// trail/deliver) to loopback clients only.
package awsemu
