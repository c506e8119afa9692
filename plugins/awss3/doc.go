// Package awss3 is the aws-s3-contain and aws-s3-uncontain response
// actions: close an exposed bucket and reopen it exactly as it was.
//
// Containment reads the bucket's policy, ACL and Block Public Access
// settings into the rollback record before changing anything. It then
// optionally merges a deny for everyone but the allowed principals into the
// bucket policy (statement FirebreakContain; the responder role is always
// spared so that the rollback can run), and turns on all four Block Public
// Access settings. The ACL is not changed: IgnorePublicAcls voids its
// public grants.
//
// Rollback puts back the prior Block Public Access settings (or deletes
// them) and then the prior policy (or deletes it), each only if it is still
// what containment left; anything changed since is left alone and
// reported.
package awss3
