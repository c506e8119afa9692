package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Environment variables that carry the join token.
const (
	// JoinTokenEnv carries the join token itself. The agent removes it
	// from its environment as soon as it has read it.
	JoinTokenEnv = "FIREBREAK_JOIN_TOKEN"
	// JoinTokenFileEnv names a file holding the join token, the preferred
	// form: the token then never enters an environment or a command line.
	JoinTokenFileEnv = "FIREBREAK_JOIN_TOKEN_FILE"
)

// joinTokenFlag is the command-line flag that carries the join token.
const joinTokenFlag = "--join-token"

// maxJoinTokenBytes bounds a join token file; tokens are 47 bytes.
const maxJoinTokenBytes = 256

// takeJoinTokenEnv returns the join token from JoinTokenEnv and removes it
// from the process: from Go's environment, so no child inherits it, and
// from the environment block the kernel shows as /proc/PID/environ (which
// unsetenv does not change), where its value is overwritten with '*'. The
// error reports only a failure of the second step; the token is returned
// and removed from Go's environment whatever it says.
func takeJoinTokenEnv() (string, error) {
	tok, ok := os.LookupEnv(JoinTokenEnv)
	if !ok {
		return "", nil
	}
	// Go copies the environment at start, so tok does not share memory
	// with the block overwritten below.
	tok = strings.Clone(tok)
	_ = os.Unsetenv(JoinTokenEnv)
	err := scrubOwnMemory(procStatEnvStart, func(region []byte) bool {
		return overwriteValues(region, func(entry []byte) int {
			if bytes.HasPrefix(entry, []byte(JoinTokenEnv+"=")) {
				return len(JoinTokenEnv) + 1
			}
			return -1
		})
	})
	return tok, err
}

// cloneArgs copies the command-line arguments out of the memory the kernel
// shows as /proc/PID/cmdline, so that memory can be scrubbed afterwards.
func cloneArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.Clone(a)
	}
	return out
}

// scrubJoinTokenArg overwrites the value of --join-token with '*' in the
// memory the kernel shows as /proc/PID/cmdline. The arguments must have
// been copied first (cloneArgs): os.Args shares that memory.
func scrubJoinTokenArg() error {
	return scrubOwnMemory(procStatArgStart, func(region []byte) bool {
		valueNext := false
		return overwriteValues(region, func(entry []byte) int {
			switch {
			case valueNext:
				valueNext = false
				return 0
			case bytes.Equal(entry, []byte(joinTokenFlag)):
				valueNext = true
			case bytes.HasPrefix(entry, []byte(joinTokenFlag+"=")):
				return len(joinTokenFlag) + 1
			}
			return -1
		})
	})
}

// overwriteValues walks the NUL-separated entries of region; for each, from
// returns where the secret value starts (or -1 for none), and the rest of
// the entry is overwritten with '*'. It reports whether anything changed.
func overwriteValues(region []byte, from func(entry []byte) int) bool {
	changed := false
	for off := 0; off < len(region); {
		end := bytes.IndexByte(region[off:], 0)
		if end < 0 {
			end = len(region) - off
		}
		entry := region[off : off+end]
		if i := from(entry); i >= 0 && i < len(entry) {
			for j := i; j < len(entry); j++ {
				entry[j] = '*'
			}
			changed = true
		}
		off += end + 1
	}
	return changed
}

// Fields of /proc/PID/stat (proc(5), counted from 1) bounding the argument
// and environment blocks.
const (
	procStatArgStart = 48
	procStatEnvStart = 50
)

// scrubOwnMemory reads the block of this process's memory that
// /proc/self/stat bounds with fields startField and startField+1, lets fix
// change it in place, and writes it back through /proc/self/mem.
func scrubOwnMemory(startField int, fix func(region []byte) bool) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("reading /proc/self/stat: %w", err)
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return errors.New("/proc/self/stat has no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3.
	if len(f) < startField-1 {
		return fmt.Errorf("/proc/self/stat has %d fields, want %d", len(f)+2, startField+1)
	}
	start, err1 := strconv.ParseUint(f[startField-3], 10, 63)
	end, err2 := strconv.ParseUint(f[startField-2], 10, 63)
	if err := errors.Join(err1, err2); err != nil || end < start || end-start > 1<<24 {
		return fmt.Errorf("/proc/self/stat: fields %d and %d are not a memory range", startField, startField+1)
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening /proc/self/mem: %w", err)
	}
	defer mem.Close()
	region := make([]byte, end-start)
	if _, err := mem.ReadAt(region, int64(start)); err != nil {
		return fmt.Errorf("reading this process's memory: %w", err)
	}
	if !fix(region) {
		return nil
	}
	if _, err := mem.WriteAt(region, int64(start)); err != nil {
		return fmt.Errorf("writing this process's memory: %w", err)
	}
	return nil
}

// readJoinTokenFile reads a join token file: one token, surrounding white
// space ignored, in a file other users cannot read.
func readJoinTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the join token file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading the join token file: %w", err)
	}
	// Security-critical: a token other users can read is a leaked token.
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the join token file %s is readable by other users (mode %v): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("the join token file %s is not a regular file", path)
	}
	b := make([]byte, maxJoinTokenBytes+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("the join token file %s is empty: put the token from `firebreak token create` in it", path)
	}
	defer clear(b)
	if n > maxJoinTokenBytes {
		return "", fmt.Errorf("the join token file %s is longer than %d bytes: it should hold one token", path, maxJoinTokenBytes)
	}
	tok := string(bytes.TrimSpace(b[:n]))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("the join token file %s should hold one token (from `firebreak token create`) and nothing else", path)
	}
	return tok, nil
}
