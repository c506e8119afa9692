// Package awsec2 holds the EC2 actions of the service domain, run by API
// workers with short-lived credentials for exactly one account and region:
//
//   - aws-ec2-isolate cuts an instance off at the AWS layer and keeps a
//     rollback record of everything it changes, in its result and in the
//     instance's firebreak:pre-isolation tags;
//   - aws-ec2-unisolate restores exactly what that record says;
//   - aws-ebs-snapshot takes crash-consistent snapshots of all the
//     instance's volumes, optionally re-encrypted and shared;
//   - aws-ec2-capture stores the instance's metadata and console as
//     evidence.
//
// Every action lists every AWS call it made in its result (operation,
// target, outcome, attempts), is idempotent, and on a failure part-way
// returns what it did together with the error.
//
// # Isolation order
//
// aws-ec2-isolate first inspects the instance and writes the rollback
// record into its tags, so that even an interrupted isolation can be
// rolled back. Then, in this order:
//
//  1. it suspends the Auto Scaling processes HealthCheck, ReplaceUnhealthy
//     and Terminate, before anything can make the instance look unhealthy
//     (the security-group swap fails its load balancer's health checks, and
//     a group with ELB health checks would replace and terminate it);
//  2. it sets DisableApiTermination, shutdown behaviour stop and
//     DeleteOnTermination=false on every volume;
//  3. it moves every ENI to the allow-all firebreak-untrack group of its VPC
//     and then to the firebreak-isolation group. AWS does not track
//     connections that rules allow to and from everywhere, and removing the
//     rules that allow an untracked flow cuts it at once, whereas a tracked
//     flow survives the removal of the rule that allowed it;
//  4. it puts the instance in Standby with ShouldDecrementDesiredCapacity,
//     or detaches it when that would take the group below its minimum size;
//  5. it deregisters the instance from every ELBv2 target group (standby
//     and detach already did so for the group's own target groups);
//  6. with revoke_instance_profile, it disassociates the instance profile
//     and puts an inline deny on the profile's roles for sessions issued to
//     this instance (ec2:SourceInstanceARN) before now (aws:TokenIssueTime);
//  7. it tags the instance with firebreak:case, firebreak:run and, last,
//     firebreak:isolated-at.
//
// Each step checks the state first and changes only what is not yet so. A
// second isolation therefore changes nothing and reports already_isolated,
// and an isolation that failed part-way is finished by a rerun, which keeps
// the first record.
package awsec2
