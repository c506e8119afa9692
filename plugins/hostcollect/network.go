package hostcollect

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Socket is one record of the network_sockets artifact.
type Socket struct {
	// Protocol is tcp, tcp6, udp, udp6 or unix.
	Protocol      string        `json:"protocol"`
	LocalAddress  string        `json:"local_address,omitempty"`
	LocalPort     int           `json:"local_port,omitempty"`
	RemoteAddress string        `json:"remote_address,omitempty"`
	RemotePort    int           `json:"remote_port,omitempty"`
	State         string        `json:"state"`
	UID           int           `json:"uid"`
	User          string        `json:"user,omitempty"`
	Inode         uint64        `json:"inode"`
	NetNS         string        `json:"net_ns,omitempty"`
	Path          string        `json:"path,omitempty"`
	UnixType      string        `json:"unix_type,omitempty"`
	Owners        []SocketOwner `json:"owners"`
}

// SocketOwner is a process holding a socket open.
type SocketOwner struct {
	PID  int    `json:"pid"`
	FD   int    `json:"fd"`
	Name string `json:"name"`
	Exe  string `json:"exe,omitempty"`
}

// tcpStates are the kernel's TCP states (include/net/tcp_states.h).
var tcpStates = map[uint64]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
	7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

// ParseProcNetLine parses one socket line of /proc/net/{tcp,tcp6,udp,udp6}.
// Addresses are printed by the kernel as 32-bit words in host byte order.
func ParseProcNetLine(proto, line string) (Socket, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return Socket{}, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	s := Socket{Protocol: proto, Owners: []SocketOwner{}}
	var err error
	if s.LocalAddress, s.LocalPort, err = parseHexAddr(f[1]); err != nil {
		return Socket{}, fmt.Errorf("local address: %w", err)
	}
	if s.RemoteAddress, s.RemotePort, err = parseHexAddr(f[2]); err != nil {
		return Socket{}, fmt.Errorf("remote address: %w", err)
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return Socket{}, fmt.Errorf("state: %w", err)
	}
	s.State = tcpStates[st]
	if strings.HasPrefix(proto, "udp") {
		// UDP reuses the TCP codes: 7 is an unconnected socket, 1 a connected one.
		switch st {
		case 7:
			s.State = "UNCONN"
		case 1:
			s.State = "ESTABLISHED"
		}
	}
	if s.State == "" {
		s.State = "UNKNOWN_" + f[3]
	}
	if s.UID, err = strconv.Atoi(f[7]); err != nil {
		return Socket{}, fmt.Errorf("uid: %w", err)
	}
	if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return Socket{}, fmt.Errorf("inode: %w", err)
	}
	return s, nil
}

func parseHexAddr(s string) (string, int, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return "", 0, fmt.Errorf("%q has no port", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return "", 0, fmt.Errorf("address %q is not 8 or 32 hex digits", host)
	}
	var b [16]byte
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	if len(raw) == 4 {
		return netip.AddrFrom4([4]byte(b[:4])).String(), int(p), nil
	}
	return netip.AddrFrom16(b).String(), int(p), nil
}

var unixTypes = map[string]string{"0001": "STREAM", "0002": "DGRAM", "0005": "SEQPACKET"}
var unixStates = map[string]string{"01": "UNCONNECTED", "02": "CONNECTING", "03": "CONNECTED", "04": "DISCONNECTING"}

// ParseUnixLine parses one line of /proc/net/unix:
// "Num RefCount Protocol Flags Type St Inode [Path]". The path is the rest of
// the line and may hold spaces; an abstract socket's starts with '@'.
func ParseUnixLine(line string) (Socket, error) {
	f := strings.Fields(line)
	if len(f) < 7 {
		return Socket{}, fmt.Errorf("%d fields, want at least 7", len(f))
	}
	s := Socket{Protocol: "unix", UID: -1, Owners: []SocketOwner{}}
	flags, err := strconv.ParseUint(f[3], 16, 32)
	if err != nil {
		return Socket{}, fmt.Errorf("flags: %w", err)
	}
	s.UnixType = unixTypes[f[4]]
	if s.UnixType == "" {
		s.UnixType = "TYPE_" + f[4]
	}
	s.State = unixStates[f[5]]
	if flags&0x10000 != 0 { // __SO_ACCEPTCON
		s.State = "LISTEN"
	}
	if s.State == "" {
		s.State = "UNKNOWN_" + f[5]
	}
	if s.Inode, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return Socket{}, fmt.Errorf("inode: %w", err)
	}
	if len(f) > 7 {
		idx := 0
		for i := 0; i < 7; i++ {
			idx += strings.Index(line[idx:], f[i]) + len(f[i])
		}
		s.Path = validUTF8(strings.TrimSpace(line[idx:]))
	}
	return s, nil
}

// loadSockets reads the sockets of every network namespace, once per
// collection, and maps each to the processes that hold it.
func (c *collection) loadSockets(skip func(string, string)) ([]Socket, error) {
	if c.socketsLoaded {
		return c.sockets, nil
	}
	owners := map[uint64][]SocketOwner{}
	comms := map[int]string{}
	exes := map[int]string{}
	nsReader := map[string]int{} // network namespace → a pid inside it
	err := forEachFD(c, func(pid, fd int, target string) error {
		if _, ok := comms[pid]; !ok {
			b, _, _ := readBounded(procPath(pid, "comm"), 64)
			comms[pid] = validUTF8(strings.TrimSpace(string(b)))
			exe, _ := os.Readlink(procPath(pid, "exe"))
			exes[pid] = validUTF8(exe)
			if ns, err := os.Readlink(procPath(pid, "ns/net")); err == nil {
				if _, ok := nsReader[ns]; !ok {
					nsReader[ns] = pid
				}
			}
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
				owners[n] = append(owners[n], SocketOwner{PID: pid, FD: fd, Name: comms[pid], Exe: exes[pid]})
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	if _, ok := nsReader[self]; !ok || self == "" {
		nsReader[self] = os.Getpid()
	}
	namespaces := make([]string, 0, len(nsReader))
	for ns := range nsReader {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	names := c.userNames()
	var out []Socket
	for _, ns := range namespaces {
		for _, proto := range []string{"tcp", "tcp6", "udp", "udp6", "unix"} {
			path := procPath(nsReader[ns], "net/"+proto)
			f, err := os.Open(path)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) && skip != nil {
					skip(path, err.Error())
				}
				continue
			}
			lr := newLineReader(io.LimitReader(f, 1<<30), 4096)
			first := true
			for {
				line, _, err := lr.next()
				if err != nil {
					break
				}
				if first {
					first = false
					continue
				}
				var s Socket
				if proto == "unix" {
					s, err = ParseUnixLine(line)
				} else {
					s, err = ParseProcNetLine(proto, line)
				}
				if err != nil {
					if skip != nil {
						skip(path, fmt.Sprintf("unparsed line %q: %v", truncate(line, 200), err))
					}
					continue
				}
				s.NetNS = ns
				if s.UID >= 0 {
					s.User = names[s.UID]
				}
				if o := owners[s.Inode]; o != nil && s.Inode != 0 {
					s.Owners = o
				}
				out = append(out, s)
			}
			f.Close()
		}
	}
	c.sockets, c.socketsLoaded = out, true
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func collectSockets(c *collection, a *artifact) error {
	socks, err := c.loadSockets(a.Skip)
	if err != nil {
		return err
	}
	for _, s := range socks {
		if err := a.Record(s); err != nil {
			return err
		}
	}
	return nil
}

// ListeningService is one record of the listening_services artifact.
type ListeningService struct {
	Protocol string        `json:"protocol"`
	Address  string        `json:"address"`
	Port     int           `json:"port"`
	NetNS    string        `json:"net_ns,omitempty"`
	UID      int           `json:"uid"`
	User     string        `json:"user,omitempty"`
	Inode    uint64        `json:"inode"`
	Owners   []SocketOwner `json:"owners"`
	AllHosts bool          `json:"all_interfaces"`
}

func collectListening(c *collection, a *artifact) error {
	socks, err := c.loadSockets(a.Skip)
	if err != nil {
		return err
	}
	for _, s := range socks {
		tcpListen := strings.HasPrefix(s.Protocol, "tcp") && s.State == "LISTEN"
		udpBound := strings.HasPrefix(s.Protocol, "udp") && s.State == "UNCONN" && s.RemotePort == 0
		if !tcpListen && !udpBound {
			continue
		}
		l := ListeningService{Protocol: s.Protocol, Address: s.LocalAddress, Port: s.LocalPort, NetNS: s.NetNS,
			UID: s.UID, User: s.User, Inode: s.Inode, Owners: s.Owners,
			AllHosts: s.LocalAddress == "0.0.0.0" || s.LocalAddress == "::"}
		if err := a.Record(l); err != nil {
			return err
		}
	}
	return nil
}
