// Package awsiam is the aws-iam-contain and aws-iam-uncontain response
// actions: contain a leaked access key, a user or an abused role in one
// account, and undo exactly that.
//
// In an organisation-wide run every account's task gets the same key id.
// Each asks STS which account owns the key (sts:GetAccessKeyInfo) and, in
// the owning account, IAM which user (iam:GetAccessKeyLastUsed, which only
// the owner can read; a search of the users when that is refused). Every
// other account reports not_found_in_account and changes nothing.
//
// Containment deactivates keys and may delete the console password, attach
// AWS's managed AWSDenyAll (deny everything; the responder role may attach
// no other policy) and put AWSRevokeOlderSessions (deny
// everything to sessions whose aws:TokenIssueTime is before now, which is
// how role sessions and a user's GetSessionToken sessions are revoked:
// deactivating a key does not end the sessions minted from it). Service-
// linked roles and the responder role itself are refused.
//
// The result's rollback_record lists what the task changed and what was
// there before; aws-iam-uncontain reactivates those keys and removes (or
// puts back) exactly those inline policies, leaving alone anything changed
// since, and detaches the AWSDenyAll it attached.
package awsiam
