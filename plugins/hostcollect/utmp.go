package hostcollect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// UtmpSize is the size of one glibc struct utmp record on Linux (the same on
// 32- and 64-bit: glibc keeps ut_tv as two int32 for compatibility).
const UtmpSize = 384

// utmp record types (utmp.h).
var utmpTypes = map[int16]string{
	0: "EMPTY", 1: "RUN_LVL", 2: "BOOT_TIME", 3: "NEW_TIME", 4: "OLD_TIME", 5: "INIT_PROCESS",
	6: "LOGIN_PROCESS", 7: "USER_PROCESS", 8: "DEAD_PROCESS", 9: "ACCOUNTING",
}

// UtmpRecord is one parsed utmp, wtmp or btmp record.
type UtmpRecord struct {
	Source  string    `json:"source"`
	Index   int       `json:"index"`
	Type    string    `json:"type"`
	PID     int32     `json:"pid"`
	Line    string    `json:"line"`
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Host    string    `json:"host"`
	Address string    `json:"address,omitempty"`
	Session int32     `json:"session"`
	Time    time.Time `json:"time"`
	Exit    [2]int16  `json:"exit"`
}

// ParseUtmpRecord parses one 384-byte utmp record (little-endian, as on
// x86_64 and arm64):
//
//	0 ut_type int16, 4 ut_pid int32, 8 ut_line [32], 40 ut_id [4],
//	44 ut_user [32], 76 ut_host [256], 332 ut_exit {int16,int16},
//	336 ut_session int32, 340 ut_tv {int32 sec, int32 usec},
//	348 ut_addr_v6 [4]int32, 364 unused [20]
func ParseUtmpRecord(b []byte) (UtmpRecord, error) {
	if len(b) != UtmpSize {
		return UtmpRecord{}, fmt.Errorf("record of %d bytes, want %d", len(b), UtmpSize)
	}
	le := binary.LittleEndian
	t := int16(le.Uint16(b[0:]))
	r := UtmpRecord{
		Type:    utmpTypes[t],
		PID:     int32(le.Uint32(b[4:])),
		Line:    cString(b[8:40]),
		ID:      cString(b[40:44]),
		User:    cString(b[44:76]),
		Host:    cString(b[76:332]),
		Exit:    [2]int16{int16(le.Uint16(b[332:])), int16(le.Uint16(b[334:]))},
		Session: int32(le.Uint32(b[336:])),
	}
	if r.Type == "" {
		r.Type = fmt.Sprintf("UNKNOWN_%d", t)
	}
	sec, usec := int64(int32(le.Uint32(b[340:]))), int64(int32(le.Uint32(b[344:])))
	r.Time = time.Unix(sec, usec*1000).UTC()
	addr := b[348:364]
	switch {
	case bytes.Equal(addr, make([]byte, 16)):
	case bytes.Equal(addr[4:], make([]byte, 12)):
		r.Address = netip.AddrFrom4([4]byte(addr[:4])).String()
	default:
		r.Address = netip.AddrFrom16([16]byte(addr)).String()
	}
	return r, nil
}

// ReadUtmp reads consecutive utmp records from r and calls fn for each
// non-empty one. A trailing partial record is reported as an error after
// the whole records.
func ReadUtmp(r io.Reader, fn func(UtmpRecord) error) error {
	buf := make([]byte, UtmpSize)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		switch {
		case err == io.EOF:
			return nil
		case err == io.ErrUnexpectedEOF:
			return fmt.Errorf("trailing partial record of %d bytes after record %d", n, i)
		case err != nil:
			return err
		}
		rec, _ := ParseUtmpRecord(buf)
		if rec.Type == "EMPTY" {
			continue
		}
		rec.Index = i
		if err := fn(rec); err != nil {
			return err
		}
	}
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return validUTF8(string(b))
}

// LastlogSize is the size of one struct lastlog record (int32 time, 32-byte
// line, 256-byte host), indexed by uid.
const LastlogSize = 292

// LastlogRecord is the last login of one account.
type LastlogRecord struct {
	UID  int       `json:"uid"`
	User string    `json:"user"`
	Time time.Time `json:"time"`
	Line string    `json:"line"`
	Host string    `json:"host"`
}

// ParseLastlogRecord parses one lastlog record. ok is false for an account
// that never logged in (an all-zero record).
func ParseLastlogRecord(b []byte) (LastlogRecord, bool, error) {
	if len(b) != LastlogSize {
		return LastlogRecord{}, false, fmt.Errorf("record of %d bytes, want %d", len(b), LastlogSize)
	}
	t := int64(int32(binary.LittleEndian.Uint32(b)))
	if t == 0 && b[4] == 0 && b[36] == 0 {
		return LastlogRecord{}, false, nil
	}
	return LastlogRecord{Time: time.Unix(t, 0).UTC(), Line: cString(b[4:36]), Host: cString(b[36:292])}, true, nil
}

func collectLogins(c *collection, a *artifact) error {
	sources := []string{"/var/run/utmp", "/run/utmp", "/var/log/wtmp", "/var/log/btmp"}
	sources = append(sources, globSorted("/var/log/wtmp.*")...)
	sources = append(sources, globSorted("/var/log/btmp.*")...)
	seen := map[string]bool{}
	for _, path := range sources {
		if err := a.stop(); err != nil {
			return err
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		f, err := openRegular(real)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				a.Skip(path, describeOpenError(path, err))
			}
			continue
		}
		if filepath.Ext(real) == ".gz" || filepath.Ext(real) == ".xz" {
			// Compressed rotations are kept raw; they are not parsed.
			_, err := a.addOpen(real, f, bundle.FileOptions{})
			f.Close()
			if err != nil {
				return err
			}
			continue
		}
		if _, err := a.addOpen(real, f, bundle.FileOptions{MaxBytes: c.p.MaxLogBytes, Tail: true}); err != nil {
			f.Close()
			return err
		}
		fi, _ := f.Stat()
		// Parse what was copied: the newest records when the file is over
		// the cap, starting on a record boundary.
		size := fi.Size()
		start := max(size-c.p.MaxLogBytes, 0)
		start += (UtmpSize - start%UtmpSize) % UtmpSize
		err = ReadUtmp(io.NewSectionReader(f, start, size-start), func(r UtmpRecord) error {
			r.Source = real
			r.Index += int(start / UtmpSize)
			return a.Record(r)
		})
		f.Close()
		if errors.Is(err, bundle.ErrCapReached) {
			return err
		}
		if err != nil {
			a.Skip(real, err.Error())
		}
	}
	// Newer distributions keep login history in SQLite (wtmpdb); it is
	// copied raw for the examiner's tools.
	for _, db := range []string{"/var/lib/wtmpdb/wtmp.db"} {
		if _, err := a.copyFile(db, bundle.FileOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func collectLastlog(c *collection, a *artifact) error {
	const path = "/var/log/lastlog"
	f, err := openRegular(path)
	if err == nil {
		defer f.Close()
		buf := make([]byte, LastlogSize)
		// lastlog is sparse and indexed by uid: read the accounts' slots
		// rather than the whole, possibly huge, file.
		for _, u := range c.loadAccounts() {
			if u.UID < 0 {
				continue
			}
			if _, err := f.ReadAt(buf, int64(u.UID)*LastlogSize); err != nil {
				continue
			}
			rec, ok, err := ParseLastlogRecord(buf)
			if err != nil || !ok {
				continue
			}
			rec.UID, rec.User = u.UID, u.Name
			if err := a.Record(rec); err != nil {
				return err
			}
		}
		if fi, err := f.Stat(); err == nil && fi.Size() <= c.p.MaxFileBytes {
			if _, err := a.addOpen(path, f, bundle.FileOptions{}); err != nil {
				return err
			}
		} else if err == nil {
			a.Skip(path, fmt.Sprintf("sparse file of %d bytes over the per-file cap: parsed, not copied", fi.Size()))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		a.Skip(path, describeOpenError(path, err))
	}
	// lastlog2 (util-linux) keeps the same in SQLite.
	_, err = a.copyFile("/var/lib/lastlog/lastlog2.db", bundle.FileOptions{})
	return err
}
