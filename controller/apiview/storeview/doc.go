// Package storeview converts the controller's store models (runs, tasks,
// approvals, agents) to the operator wire format. It is the half of the
// conversion layer that knows the store; package apiview, the other half,
// holds the wire helpers (enum names, timestamps, task counts) that the
// CLI shares with the adapters, and links no server package.
package storeview
