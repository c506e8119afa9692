// Package artifacts is host-collect's artifact catalogue as data: each
// artifact's name, description, profiles and sources, and the profiles. It
// imports only the standard library, so the operator CLI lists the catalogue and checks
// --artifact and --profile without linking the collectors.
package artifacts

import "slices"

// Profiles.
const (
	// ProfileTriage is the default profile: what an examiner needs in the
	// first minutes, collected in seconds.
	ProfileTriage = "triage"
	// ProfileFull adds filesystem walks (set-id files, recent changes, a
	// bodyfile timeline, hashes) and process memory.
	ProfileFull = "full"
)

// Info describes one artifact of the catalogue.
type Info struct {
	// Name is the artifact's name, used in the artifacts parameter and as
	// artifacts/<name>.jsonl in the bundle.
	Name string `json:"name"`
	// Description says what the artifact holds.
	Description string `json:"description"`
	// Profiles lists the profiles that collect the artifact.
	Profiles []string `json:"profiles"`
	// Sources lists where on the host it reads from.
	Sources []string `json:"sources"`
}

var both = []string{ProfileTriage, ProfileFull}
var fullOnly = []string{ProfileFull}

// catalogue is the ordered list of artifacts. Volatile state comes first,
// in order of volatility (RFC 3227), so the time budget spends itself on
// what disappears soonest.
var catalogue = []Info{
	{"processes", "Running processes: pid, ppid, user, absolute start time, command line, cwd, executable path and SHA-256 (read through /proc/PID/exe, so a deleted binary still hashes), deleted and suspicious-location flags; deleted or /tmp-resident executables are copied", both,
		[]string{"/proc/PID/{stat,status,cmdline,cwd,exe}", "/proc/stat"}},
	{"process_environ", "Environment of every process", both, []string{"/proc/PID/environ"}},
	{"process_fds", "Open file descriptors of every process with their targets and offsets", both, []string{"/proc/PID/fd", "/proc/PID/fdinfo"}},
	{"network_sockets", "TCP, UDP (IPv4 and IPv6) and Unix sockets of every network namespace, with state and owning processes", both,
		[]string{"/proc/PID/net/{tcp,tcp6,udp,udp6,unix}", "/proc/PID/fd"}},
	{"listening_services", "Listening TCP and bound UDP sockets with the owning process and executable", both, []string{"derived from network_sockets"}},
	{"process_memory", "Readable memory regions of the process given by the pid parameter, one member per region, with address range, permissions and pathname in the manifest", fullOnly,
		[]string{"/proc/PID/maps", "/proc/PID/mem"}},
	{"logins", "Sessions now (utmp), login history (wtmp) and failed logins (btmp), parsed from the binary records; raw files copied", both,
		[]string{"/var/run/utmp", "/var/log/wtmp", "/var/log/btmp", "/var/lib/wtmpdb"}},
	{"lastlog", "Last login of every account, parsed from the binary lastlog", both, []string{"/var/log/lastlog", "/var/lib/lastlog"}},
	{"users", "Accounts (passwd), password state and ageing (shadow, without hashes), groups, sudoers rules including sudoers.d", both,
		[]string{"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "/etc/sudoers.d"}},
	{"persistence", "Cron and at jobs in every location, systemd units and timers outside the vendor directories, rc and init scripts, authorized_keys of every user, ld.so.preload, shell start-up files; parsed entries plus raw copies", both,
		[]string{"/etc/crontab", "/etc/cron.*", "/var/spool/cron", "/etc/systemd", "/run/systemd", "~/.config/systemd/user", "/etc/rc.local", "/etc/init.d", "~/.ssh/authorized_keys", "/etc/ld.so.preload", "/etc/profile*", "~/.bashrc"}},
	{"shell_history", "Shell and interpreter histories of every user (bash, zsh, sh, fish, python, mysql, psql, less, …), line by line with timestamps where recorded; raw copies", both,
		[]string{"~/.bash_history", "~/.zsh_history", "~/.python_history", "~/.mysql_history", "~/.lesshst"}},
	{"logs", "Authentication, system, audit and cloud-init logs (newest bytes kept when over the cap) and systemd journal files", both,
		[]string{"/var/log/{auth.log,secure,syslog,messages,kern.log}", "/var/log/audit", "/var/log/cloud-init*.log", "/var/log/journal", "/run/log/journal"}},
	{"system", "Kernel modules, mounts, OS release, hostname, uptime, kernel command line and taint, network interfaces, and on EC2 the instance metadata (IMDSv2)", both,
		[]string{"/proc/modules", "/proc/self/mountinfo", "/etc/os-release", "/proc/cmdline", "IMDS"}},
	{"tmp_executables", "Executables and ELF or script files under /tmp, /dev/shm and /var/tmp, hashed and copied", both,
		[]string{"/tmp", "/dev/shm", "/var/tmp"}},
	{"suid_sgid", "Set-user-id and set-group-id files on local filesystems, hashed", fullOnly, []string{"/"}},
	{"recently_modified", "Files under /etc, /bin, /sbin, /usr/bin, /usr/sbin and /lib* modified or changed within recent_days", fullOnly,
		[]string{"/etc", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/lib*"}},
	{"bodyfile", "Timeline of the paths roots in The Sleuth Kit 3.x bodyfile format (artifacts/bodyfile.body, for mactime) and as records", fullOnly, []string{"paths (default /)"}},
	{"hashes", "SHA-256 of every regular file under the paths roots", fullOnly, []string{"paths (default the system binary directories)"}},
}

// Catalogue returns the artifacts host-collect knows, in collection order,
// for `firebreak artifacts list` and for documentation.
func Catalogue() []Info {
	out := make([]Info, len(catalogue))
	for i, a := range catalogue {
		out[i] = a
		out[i].Profiles = slices.Clone(a.Profiles)
		out[i].Sources = slices.Clone(a.Sources)
	}
	return out
}

// Known reports whether name is an artifact of the catalogue.
func Known(name string) bool {
	return slices.ContainsFunc(catalogue, func(a Info) bool { return a.Name == name })
}
