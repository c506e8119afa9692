package hostcollect

import (
	"fmt"
	"slices"

	"github.com/firebreak-ir/firebreak/plugins/hostcollect/artifacts"
)

// Profiles.
const (
	// ProfileTriage is the default profile: what an examiner needs in the
	// first minutes, collected in seconds.
	ProfileTriage = artifacts.ProfileTriage
	// ProfileFull adds filesystem walks (set-id files, recent changes, a
	// bodyfile timeline, hashes) and process memory.
	ProfileFull = artifacts.ProfileFull
)

// ArtifactInfo describes one artifact of the catalogue.
type ArtifactInfo = artifacts.Info

type artifactDef struct {
	ArtifactInfo
	collect func(*collection, *artifact) error
}

// collectors holds the collector of each artifact of the catalogue
// (package artifacts), by name.
var collectors = map[string]func(*collection, *artifact) error{
	"processes":          collectProcesses,
	"process_environ":    collectEnviron,
	"process_fds":        collectFDs,
	"network_sockets":    collectSockets,
	"listening_services": collectListening,
	"process_memory":     collectMemory,
	"logins":             collectLogins,
	"lastlog":            collectLastlog,
	"users":              collectUsers,
	"persistence":        collectPersistence,
	"shell_history":      collectHistory,
	"logs":               collectLogs,
	"system":             collectSystem,
	"tmp_executables":    collectTmpExecutables,
	"suid_sgid":          collectSetID,
	"recently_modified":  collectRecent,
	"bodyfile":           collectBodyfile,
	"hashes":             collectHashes,
}

// catalogue is the artifacts catalogue in its order (volatile state first),
// each artifact with its collector.
var catalogue = withCollectors(artifacts.Catalogue())

// withCollectors pairs each artifact with its collector. An artifact
// without one is a build mistake, caught when the package loads.
func withCollectors(infos []ArtifactInfo) []artifactDef {
	out := make([]artifactDef, 0, len(infos))
	for _, a := range infos {
		collect, ok := collectors[a.Name]
		if !ok {
			panic(fmt.Sprintf("hostcollect: artifact %q of the catalogue has no collector", a.Name))
		}
		out = append(out, artifactDef{ArtifactInfo: a, collect: collect})
	}
	return out
}

// Catalogue returns the artifacts host-collect knows, in collection order,
// for `firebreak artifacts list` and for documentation.
func Catalogue() []ArtifactInfo { return artifacts.Catalogue() }

func lookupArtifact(name string) (artifactDef, bool) {
	for _, d := range catalogue {
		if d.Name == name {
			return d, true
		}
	}
	return artifactDef{}, false
}

// selectArtifacts returns the artifacts to collect: the named ones if any,
// else the profile's; process_memory is added whenever a pid is given.
func selectArtifacts(profile string, names []string, pid int) []artifactDef {
	var out []artifactDef
	for _, d := range catalogue {
		switch {
		case len(names) > 0:
			if !slices.Contains(names, d.Name) && !(d.Name == "process_memory" && pid > 0) {
				continue
			}
		case d.Name == "process_memory":
			if pid <= 0 {
				continue
			}
		case !slices.Contains(d.Profiles, profile):
			continue
		}
		out = append(out, d)
	}
	return out
}
