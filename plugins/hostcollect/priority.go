package hostcollect

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CPU and IO priority the collector runs at: as far down as it goes without
// starving the collection on a busy host, whose time budget still runs.
const (
	collectorNice    = 15
	ioprioClassBE    = 2
	ioprioLowest     = 7
	ioprioClassShift = 13
	ioprioWhoProcess = 1
)

// Priority is the CPU and IO priority the collector ran at.
type Priority struct {
	// Nice is the CPU nice value set on every thread.
	Nice int `json:"nice"`
	// IO is the IO scheduling class and level, e.g. "best-effort/7".
	IO string `json:"io"`
	// Errors lists what could not be lowered.
	Errors []string `json:"errors,omitempty"`
}

// lowerPriority lowers the CPU and IO priority of the whole process so the
// collection does not compete with the workload it is examining. Both
// setpriority and ioprio_set act on one thread on Linux, so every thread is
// lowered; threads created later inherit the setting from the thread that
// creates them.
func lowerPriority() Priority {
	p := Priority{Nice: collectorNice, IO: fmt.Sprintf("best-effort/%d", ioprioLowest)}
	tids := []int{0}
	if ents, err := os.ReadDir("/proc/self/task"); err == nil {
		tids = tids[:0]
		for _, e := range ents {
			if tid, err := strconv.Atoi(e.Name()); err == nil {
				tids = append(tids, tid)
			}
		}
	}
	prio := ioprioClassBE<<ioprioClassShift | ioprioLowest
	var niceErr, ioErr error
	for _, tid := range tids {
		// Never raise a priority that is already lower.
		if cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err != nil || 20-cur < collectorNice {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, collectorNice); err != nil && niceErr == nil {
				niceErr = err
			}
		}
		if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(prio)); errno != 0 && ioErr == nil {
			ioErr = errno
		}
	}
	if niceErr != nil {
		p.Errors = append(p.Errors, "setpriority: "+niceErr.Error())
	}
	if ioErr != nil {
		p.Errors = append(p.Errors, "ioprio_set: "+ioErr.Error())
	}
	return p
}
