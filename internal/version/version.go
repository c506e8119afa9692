// Package version is the version of the firebreak binaries, for the
// places below the CLI that name it (the store's refusal of a newer
// schema).
package version

// Version is the firebreak release these binaries are.
const Version = "0.1.0"
