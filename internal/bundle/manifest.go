// Package bundle is Firebreak's evidence bundle format: one compressed tar
// archive that carries what an in-guest collection found, with a manifest
// that hashes every member so the controller, an examiner or a court can
// check that nothing was added, dropped or changed after collection.
//
// Layout of an archive (tar, compressed with gzip or zstd):
//
//	artifacts/<name>.jsonl          records of one artifact, one JSON object a line
//	artifacts/<name>.<n>.jsonl      further parts of a large artifact (n = 2, 3, …)
//	artifacts/<name>.<ext>          an artifact's rendering in a tool's own format (e.g. a TSK bodyfile)
//	files/<absolute source path>    a raw copy of a file from the host
//	memory/<pid>/<start>-<end>.bin  one region of a process's memory
//	manifest.json                   always the last member
//
// The [Writer] streams an archive: it never holds a whole member or the whole
// archive in memory. [Verify] streams it back once and refuses anything that
// does not match its manifest or that could harm the machine reading it.
package bundle

import (
	"encoding/json"
	"fmt"
	"time"
)

// FormatVersion is the version of the manifest schema written by this package.
// A reader refuses a manifest with a version it does not know.
const FormatVersion = 1

// ManifestName is the archive path of the manifest, always the last member.
const ManifestName = "manifest.json"

// Compression is the compression of the whole archive stream.
type Compression string

// The compressions a bundle can use.
const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// Extension returns the archive file extension for the compression.
func (c Compression) Extension() string {
	if c == Zstd {
		return ".tar.zst"
	}
	return ".tar.gz"
}

// MediaType returns the media type of an archive with the compression.
func (c Compression) MediaType() string {
	if c == Zstd {
		return "application/zstd"
	}
	return "application/gzip"
}

// Member kinds.
const (
	// KindRecords is a JSON Lines member holding an artifact's records.
	KindRecords = "records"
	// KindRendering is an artifact rendered in another tool's format.
	KindRendering = "rendering"
	// KindFile is a raw copy of a file from the host.
	KindFile = "file"
	// KindMemory is one region of a process's memory.
	KindMemory = "memory"
)

// Artifact statuses.
const (
	// StatusOK means the artifact was collected completely.
	StatusOK = "ok"
	// StatusPartial means some items were skipped or a cap or the time
	// budget cut the artifact short; the reasons are recorded.
	StatusPartial = "partial"
	// StatusError means the artifact could not be collected at all.
	StatusError = "error"
)

// Manifest describes a whole bundle. It is the last member of the archive.
type Manifest struct {
	// FormatVersion is the manifest schema version ([FormatVersion]).
	FormatVersion int `json:"format_version"`
	// Collector names the program that wrote the bundle.
	Collector Collector `json:"collector"`
	// Profile is the collection profile (e.g. "triage", "full").
	Profile string `json:"profile"`
	// Compression is the compression of the archive stream.
	Compression Compression `json:"compression"`
	// Host identifies the host the evidence came from.
	Host HostIdentity `json:"host"`
	// Task ties the bundle to the task, run, case and operator that asked for it.
	Task TaskIdentity `json:"task"`
	// StartedAt and FinishedAt bound the collection (UTC).
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Limits are the caps the collection ran under.
	Limits Limits `json:"limits"`
	// Truncated is true when a cap or the time budget cut the collection
	// short; TruncatedReasons says which.
	Truncated        bool     `json:"truncated"`
	TruncatedReasons []string `json:"truncated_reasons,omitempty"`
	// Redaction states the collector's redaction policy when it removes
	// secrets from what it records; artifacts and members then count what
	// was replaced, in their Redactions.
	Redaction string `json:"redaction,omitempty"`
	// Artifacts is the status of each artifact, in collection order.
	Artifacts []ArtifactStatus `json:"artifacts"`
	// Members lists every archive member except the manifest, in archive order.
	Members []Member `json:"members"`
}

// Collector names the program that wrote a bundle.
type Collector struct {
	// Name is the collector's name, e.g. "host-collect".
	Name string `json:"name"`
	// Version is the collector's version.
	Version string `json:"version"`
}

// HostIdentity identifies the host evidence was collected from.
type HostIdentity struct {
	// Hostname is the host's name as the kernel reports it.
	Hostname string `json:"hostname"`
	// AgentID is the Firebreak agent that ran the collection.
	AgentID string `json:"agent_id,omitempty"`
	// InstanceID is the EC2 instance id, when on EC2.
	InstanceID string `json:"instance_id,omitempty"`
	// BootID changes at every boot (/proc/sys/kernel/random/boot_id), so it
	// ties process and memory evidence to one boot.
	BootID string `json:"boot_id,omitempty"`
	// MachineID is /etc/machine-id.
	MachineID string `json:"machine_id,omitempty"`
	// Kernel is the kernel release.
	Kernel string `json:"kernel,omitempty"`
	// Addresses are the host's IP addresses in CIDR form.
	Addresses []string `json:"addresses,omitempty"`
}

// TaskIdentity ties a bundle to the response task that produced it.
type TaskIdentity struct {
	// TaskID, RunID, CaseID and Operator come from the signed task.
	TaskID   string `json:"task_id,omitempty"`
	RunID    string `json:"run_id,omitempty"`
	CaseID   string `json:"case_id,omitempty"`
	Operator string `json:"operator,omitempty"`
}

// Limits are the caps a collection ran under.
type Limits struct {
	// MaxBytes caps the uncompressed size of all members but the manifest.
	MaxBytes int64 `json:"max_bytes"`
	// MaxFileBytes caps one copied file or memory region.
	MaxFileBytes int64 `json:"max_file_bytes"`
	// MaxLogBytes caps one copied log file (its newest bytes are kept).
	MaxLogBytes int64 `json:"max_log_bytes,omitempty"`
	// TimeBudget is the collection's time budget, as a Go duration.
	TimeBudget string `json:"time_budget,omitempty"`
	// RecentDays is the window for recently modified files.
	RecentDays int `json:"recent_days,omitempty"`
}

// ArtifactStatus is how the collection of one artifact went.
type ArtifactStatus struct {
	// Name is the artifact's catalogue name.
	Name string `json:"name"`
	// Status is StatusOK, StatusPartial or StatusError.
	Status string `json:"status"`
	// Reason says why the status is not ok.
	Reason string `json:"reason,omitempty"`
	// Items counts the records written.
	Items int64 `json:"items"`
	// Files counts the raw files and memory regions copied.
	Files int64 `json:"files"`
	// Bytes counts the uncompressed bytes of the artifact's members.
	Bytes int64 `json:"bytes"`
	// Skipped lists items that could not be read, with the reason (at most
	// [MaxSkippedListed]); SkippedCount counts all of them.
	Skipped      []SkippedItem `json:"skipped,omitempty"`
	SkippedCount int64         `json:"skipped_count,omitempty"`
	// Truncated is true when a cap or the time budget cut the artifact short.
	Truncated       bool   `json:"truncated,omitempty"`
	TruncatedReason string `json:"truncated_reason,omitempty"`
	// Members lists the archive paths of the artifact's members.
	Members []string `json:"members,omitempty"`
	// Redactions counts the secrets overwritten in the artifact's records
	// and copies, by kind (see Manifest.Redaction).
	Redactions map[string]int64 `json:"redactions,omitempty"`
}

// MaxSkippedListed caps the skipped items listed per artifact, so a host
// with millions of unreadable files cannot blow up the manifest.
const MaxSkippedListed = 1000

// SkippedItem is one item that could not be collected.
type SkippedItem struct {
	// Item is what was skipped, usually a path.
	Item string `json:"item"`
	// Reason says why.
	Reason string `json:"reason"`
}

// Member is one archive member.
type Member struct {
	// Path is the member's archive path.
	Path string `json:"path"`
	// Kind is KindRecords, KindRendering, KindFile or KindMemory.
	Kind string `json:"kind"`
	// Artifact is the artifact the member belongs to.
	Artifact string `json:"artifact"`
	// Source is the path on the host the bytes came from (for files and
	// memory), as valid UTF-8; Path holds the exact bytes, escaped.
	Source string `json:"source,omitempty"`
	// Size is the member's size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the member's bytes.
	SHA256 string `json:"sha256"`
	// Mode is the source file's mode in octal, including set-id and sticky bits.
	Mode string `json:"mode,omitempty"`
	// ModTime is the source file's modification time.
	ModTime *time.Time `json:"mtime,omitempty"`
	// CollectedAt is when the member was written.
	CollectedAt time.Time `json:"collected_at"`
	// SourceSize is the source's size when it was opened.
	SourceSize int64 `json:"source_size,omitempty"`
	// Offset is where in the source the copy starts (non-zero when only the
	// newest bytes of a log were kept).
	Offset int64 `json:"offset,omitempty"`
	// Truncated is true when the member holds less than the whole source;
	// TruncatedReason says why.
	Truncated       bool   `json:"truncated,omitempty"`
	TruncatedReason string `json:"truncated_reason,omitempty"`
	// ZeroFilled counts bytes that could not be read and were written as
	// zeros (the source shrank during the copy, or memory pages were
	// unreadable).
	ZeroFilled int64 `json:"zero_filled,omitempty"`
	// Region describes a process memory region (KindMemory only).
	Region *MemoryRegion `json:"region,omitempty"`
	// Redactions counts the secrets overwritten in this member, by kind:
	// its bytes, and so its SHA256, differ from the source's there.
	Redactions map[string]int64 `json:"redactions,omitempty"`
}

// MemoryRegion is one mapping of a process, as /proc/PID/maps shows it.
type MemoryRegion struct {
	// PID is the process.
	PID int `json:"pid"`
	// Start and End are the region's virtual addresses; Perms, Offset,
	// Device, Inode and Pathname are the other fields of its maps line.
	Start    uint64 `json:"start"`
	End      uint64 `json:"end"`
	Perms    string `json:"perms"`
	Offset   uint64 `json:"offset"`
	Device   string `json:"device,omitempty"`
	Inode    uint64 `json:"inode,omitempty"`
	Pathname string `json:"pathname,omitempty"`
}

// DecodeManifest parses and checks a manifest. It refuses unknown fields, an
// unknown format version and members that are listed twice or whose path is
// not a safe archive path.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedManifest, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this reader knows %d", ErrMalformedManifest, m.FormatVersion, FormatVersion)
	}
	seen := make(map[string]bool, len(m.Members))
	for i, mem := range m.Members {
		if err := CheckName(mem.Path); err != nil {
			return nil, fmt.Errorf("%w: member %d: %v", ErrMalformedManifest, i, err)
		}
		if mem.Path == ManifestName {
			return nil, fmt.Errorf("%w: member %d lists the manifest itself", ErrMalformedManifest, i)
		}
		if seen[mem.Path] {
			return nil, fmt.Errorf("%w: member %q is listed twice", ErrMalformedManifest, mem.Path)
		}
		seen[mem.Path] = true
		if mem.Size < 0 || len(mem.SHA256) != 64 {
			return nil, fmt.Errorf("%w: member %q has size %d and digest %q", ErrMalformedManifest, mem.Path, mem.Size, mem.SHA256)
		}
	}
	return &m, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}
