// Package library holds Firebreak's built-in playbooks: YAML files in the
// controller/playbook format, embedded in the binary.
//
//   - ec2-instance-compromise: capture, snapshot, isolate at the AWS layer
//     and in the guest, collect triage.
//   - iam-credential-compromise: deactivate a stolen key organisation-wide,
//     revoke a role's sessions, pull the key's CloudTrail events.
//   - s3-public-exposure: block public access on a bucket, pull its
//     CloudTrail events.
//   - cryptomining-instance: capture, snapshot, isolate, collect triage.
package library

import (
	"embed"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// FS returns the playbook files, one "<name>.yaml" per playbook.
func FS() fs.FS { return files }

// All returns every built-in playbook's file contents by playbook name.
func All() map[string][]byte {
	entries, err := files.ReadDir(".")
	if err != nil {
		panic("playbook library: reading the embedded files: " + err.Error())
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		data, err := files.ReadFile(e.Name())
		if err != nil {
			panic("playbook library: reading the embedded file " + e.Name() + ": " + err.Error())
		}
		out[strings.TrimSuffix(e.Name(), ".yaml")] = data
	}
	return out
}

// Get returns one built-in playbook's file contents.
func Get(name string) ([]byte, bool) {
	data, err := files.ReadFile(name + ".yaml")
	return data, err == nil
}

// Names returns the built-in playbooks' names, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(All()))
}
