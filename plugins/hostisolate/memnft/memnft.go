// Package memnft is an in-memory stand-in for the kernel's nf_tables netlink
// interface. It lets code written against github.com/google/nftables run
// unchanged, without root and without touching the machine's firewall: the
// nftables.Conn from [Kernel.Conn] sends its netlink messages to a Kernel
// instead of a socket.
//
// A Kernel keeps tables, chains and rules as the messages describe them and
// answers the listing requests (tables, chains, rules) from that state. A
// batch is applied like the kernel applies it: entirely, or, when one of its
// messages fails (a table that already exists for an exclusive create, a
// missing table or chain), not at all, with that message's errno. No packet
// ever passes, so counters stay where they were created.
//
// It serves the host-isolate-sim action of `firebreak bench fleet` and the
// unit tests of package hostisolate.
package memnft

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftaTableHandle is NFTA_TABLE_HANDLE, which golang.org/x/sys/unix lacks.
const nftaTableHandle = 4

// Op is one message of a batch as the Kernel received it.
type Op struct {
	// Type is the message: "newtable", "deltable", "newchain", "delchain",
	// "newrule" or "delrule".
	Type string
	// Family, Table and Chain say what the message addresses; Chain is
	// empty for table messages.
	Family nftables.TableFamily
	Table  string
	Chain  string
}

// String formats the op like "newrule inet firebreak input".
func (o Op) String() string {
	s := fmt.Sprintf("%s %s %s", o.Type, familyName(o.Family), o.Table)
	if o.Chain != "" {
		s += " " + o.Chain
	}
	return s
}

// Batch is one netlink batch: its messages in order and, when the kernel
// refused it, the errno of the message that failed.
type Batch struct {
	Ops []Op
	Err error
}

// Kernel is the in-memory nf_tables. Its methods are safe for concurrent
// use; each nftables.Conn it hands out serialises its own calls.
type Kernel struct {
	mu         sync.Mutex
	tables     []*table
	nextHandle uint64
	batches    []Batch
	requests   int
	failErrno  syscall.Errno
}

type table struct {
	family byte
	name   string
	handle uint64
	chains []*chain
}

type chain struct {
	name   string
	handle uint64
	hook   []byte // the nested NFTA_CHAIN_HOOK payload, nil for a regular chain
	policy []byte // NFTA_CHAIN_POLICY, nil when not given
	typ    []byte // NFTA_CHAIN_TYPE, nil when not given
	rules  []*rule
}

type rule struct {
	handle   uint64
	exprs    []byte // the nested NFTA_RULE_EXPRESSIONS payload
	userdata []byte
}

// New returns an empty Kernel.
func New() *Kernel { return &Kernel{nextHandle: 1} }

// Conn returns an nftables connection to the Kernel.
func (k *Kernel) Conn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithTestDial(k.Dial))
}

// Batches returns every batch received so far, applied or refused.
func (k *Kernel) Batches() []Batch {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.batches)
}

// Requests counts the netlink requests received: batches and look-ups.
func (k *Kernel) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// FailBatches makes every following batch fail with errno, as the kernel
// does when, say, the caller lacks CAP_NET_ADMIN. Zero restores normal
// behaviour.
func (k *Kernel) FailBatches(errno syscall.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failErrno = errno
}

// Tables lists the tables as nft(8) names them, e.g. "inet firebreak".
func (k *Kernel) Tables() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.tables))
	for _, t := range k.tables {
		out = append(out, familyName(nftables.TableFamily(t.family))+" "+t.name)
	}
	return out
}

// Dial is the nltest.Func behind Conn: it receives each request and
// returns the kernel's replies.
func (k *Kernel) Dial(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) == 0 {
		// The connection is draining replies that are all delivered.
		return nil, io.EOF
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.requests++
	if req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		end := len(req)
		if req[end-1].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_END) {
			end--
		}
		return k.batch(req[1:end]), nil
	}
	var out []netlink.Message
	for _, m := range req {
		if isQuery(m) {
			out = append(out, k.query(m)...)
		} else {
			out = append(out, k.batch([]netlink.Message{m})...)
		}
	}
	return out, nil
}

// batch applies msgs to a copy of the state and keeps the copy only if
// every message succeeded.
func (k *Kernel) batch(msgs []netlink.Message) []netlink.Message {
	work := k.clone()
	b := Batch{}
	var acks []netlink.Message
	for i, m := range msgs {
		op, errno := work.apply(m)
		b.Ops = append(b.Ops, op)
		if errno == 0 && i == 0 && k.failErrno != 0 {
			errno = k.failErrno
		}
		if errno != 0 {
			b.Err = errno
			k.batches = append(k.batches, b)
			return []netlink.Message{errorReply(m, errno)}
		}
		if m.Header.Flags&netlink.Acknowledge != 0 {
			acks = append(acks, errorReply(m, 0))
		}
	}
	k.tables, k.nextHandle = work.tables, work.nextHandle
	k.batches = append(k.batches, b)
	return acks
}

// clone copies the tables and chains, which apply changes; rules are
// never changed once made and are shared.
func (k *Kernel) clone() *Kernel {
	c := &Kernel{nextHandle: k.nextHandle, failErrno: k.failErrno}
	for _, t := range k.tables {
		nt := *t
		nt.chains = nil
		for _, ch := range t.chains {
			nc := *ch
			nc.rules = slices.Clone(ch.rules)
			nt.chains = append(nt.chains, &nc)
		}
		c.tables = append(c.tables, &nt)
	}
	return c
}

func (k *Kernel) handle() uint64 {
	h := k.nextHandle
	k.nextHandle++
	return h
}

// apply performs one mutation and returns the op and an errno.
func (k *Kernel) apply(m netlink.Message) (Op, syscall.Errno) {
	if len(m.Data) < 4 || m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return Op{Type: fmt.Sprintf("unknown(%#x)", uint16(m.Header.Type))}, unix.EINVAL
	}
	family := m.Data[0]
	attrs, err := decode(m.Data[4:])
	if err != nil {
		return Op{Type: "malformed"}, unix.EINVAL
	}
	flags := m.Header.Flags
	switch m.Header.Type & 0xff {
	case unix.NFT_MSG_NEWTABLE:
		name := str(attrs[unix.NFTA_TABLE_NAME])
		op := Op{Type: "newtable", Family: nftables.TableFamily(family), Table: name}
		if name == "" {
			return op, unix.EINVAL
		}
		if k.table(family, name) != nil {
			if flags&netlink.Excl != 0 {
				return op, unix.EEXIST
			}
			return op, 0
		}
		k.tables = append(k.tables, &table{family: family, name: name, handle: k.handle()})
		return op, 0

	case unix.NFT_MSG_DELTABLE:
		name := str(attrs[unix.NFTA_TABLE_NAME])
		op := Op{Type: "deltable", Family: nftables.TableFamily(family), Table: name}
		if name == "" { // flush ruleset: every table of the family
			k.tables = slices.DeleteFunc(k.tables, func(t *table) bool { return family == unix.NFPROTO_UNSPEC || t.family == family })
			return op, 0
		}
		if k.table(family, name) == nil {
			return op, unix.ENOENT
		}
		k.tables = slices.DeleteFunc(k.tables, func(t *table) bool { return t.family == family && t.name == name })
		return op, 0

	case unix.NFT_MSG_NEWCHAIN:
		tname, cname := str(attrs[unix.NFTA_CHAIN_TABLE]), str(attrs[unix.NFTA_CHAIN_NAME])
		op := Op{Type: "newchain", Family: nftables.TableFamily(family), Table: tname, Chain: cname}
		t := k.table(family, tname)
		if t == nil {
			return op, unix.ENOENT
		}
		if c := t.chain(cname); c != nil {
			if flags&netlink.Excl != 0 {
				return op, unix.EEXIST
			}
			if p, ok := attrs[unix.NFTA_CHAIN_POLICY]; ok {
				c.policy = p
			}
			return op, 0
		}
		if cname == "" {
			return op, unix.EINVAL
		}
		t.chains = append(t.chains, &chain{name: cname, handle: k.handle(),
			hook: attrs[unix.NFTA_CHAIN_HOOK], policy: attrs[unix.NFTA_CHAIN_POLICY], typ: attrs[unix.NFTA_CHAIN_TYPE]})
		return op, 0

	case unix.NFT_MSG_DELCHAIN:
		tname, cname := str(attrs[unix.NFTA_CHAIN_TABLE]), str(attrs[unix.NFTA_CHAIN_NAME])
		op := Op{Type: "delchain", Family: nftables.TableFamily(family), Table: tname, Chain: cname}
		t := k.table(family, tname)
		if t == nil || t.chain(cname) == nil {
			return op, unix.ENOENT
		}
		// Like kernels since 5.19: a chain goes with its rules, unless the
		// caller asked for a non-recursive delete.
		if flags&netlink.HeaderFlags(unix.NLM_F_NONREC) != 0 && len(t.chain(cname).rules) > 0 {
			return op, unix.EBUSY
		}
		t.chains = slices.DeleteFunc(t.chains, func(c *chain) bool { return c.name == cname })
		return op, 0

	case unix.NFT_MSG_NEWRULE:
		tname, cname := str(attrs[unix.NFTA_RULE_TABLE]), str(attrs[unix.NFTA_RULE_CHAIN])
		op := Op{Type: "newrule", Family: nftables.TableFamily(family), Table: tname, Chain: cname}
		t := k.table(family, tname)
		if t == nil || t.chain(cname) == nil {
			return op, unix.ENOENT
		}
		c := t.chain(cname)
		exprs, ok := attrs[unix.NFTA_RULE_EXPRESSIONS]
		if !ok {
			return op, unix.EINVAL
		}
		r := &rule{exprs: exprs, userdata: attrs[unix.NFTA_RULE_USERDATA]}
		if h, ok := attrs[unix.NFTA_RULE_HANDLE]; ok && flags&netlink.Replace != 0 {
			i := c.ruleIndex(u64(h))
			if i < 0 {
				return op, unix.ENOENT
			}
			r.handle = c.rules[i].handle
			c.rules[i] = r
			return op, 0
		}
		r.handle = k.handle()
		appendAfter := flags&unix.NLM_F_APPEND != 0
		at := 0
		if appendAfter {
			at = len(c.rules)
		}
		if pos, ok := attrs[unix.NFTA_RULE_POSITION]; ok && u64(pos) != 0 {
			i := c.ruleIndex(u64(pos))
			if i < 0 {
				return op, unix.ENOENT
			}
			at = i
			if appendAfter {
				at = i + 1
			}
		}
		c.rules = slices.Insert(c.rules, at, r)
		return op, 0

	case unix.NFT_MSG_DELRULE:
		tname, cname := str(attrs[unix.NFTA_RULE_TABLE]), str(attrs[unix.NFTA_RULE_CHAIN])
		op := Op{Type: "delrule", Family: nftables.TableFamily(family), Table: tname, Chain: cname}
		t := k.table(family, tname)
		if t == nil || (cname != "" && t.chain(cname) == nil) {
			return op, unix.ENOENT
		}
		h, byHandle := attrs[unix.NFTA_RULE_HANDLE]
		for _, c := range t.chains {
			if cname != "" && c.name != cname {
				continue
			}
			if !byHandle {
				c.rules = nil
				continue
			}
			i := c.ruleIndex(u64(h))
			if i < 0 {
				return op, unix.ENOENT
			}
			c.rules = slices.Delete(c.rules, i, i+1)
		}
		return op, 0
	}
	return Op{Type: fmt.Sprintf("unsupported(%d)", m.Header.Type&0xff), Family: nftables.TableFamily(family)}, unix.EOPNOTSUPP
}

func isQuery(m netlink.Message) bool {
	switch m.Header.Type & 0xff {
	case unix.NFT_MSG_GETTABLE, unix.NFT_MSG_GETCHAIN, unix.NFT_MSG_GETRULE:
		return m.Header.Type>>8 == unix.NFNL_SUBSYS_NFTABLES
	}
	return false
}

// query answers a listing request: a dump as a multi-part reply, a single
// object as one message, a missing one as ENOENT.
func (k *Kernel) query(m netlink.Message) []netlink.Message {
	if len(m.Data) < 4 {
		return []netlink.Message{errorReply(m, unix.EINVAL)}
	}
	family := m.Data[0]
	attrs, err := decode(m.Data[4:])
	if err != nil {
		return []netlink.Message{errorReply(m, unix.EINVAL)}
	}
	dump := m.Header.Flags&netlink.Dump == netlink.Dump
	var replies []netlink.Message
	reply := func(typ int, attrs []netlink.Attribute, fam byte) {
		b, _ := netlink.MarshalAttributes(attrs)
		replies = append(replies, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Sequence: m.Header.Sequence, PID: m.Header.PID},
			Data:   append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, b...),
		})
	}
	familyMatch := func(t *table) bool { return family == unix.NFPROTO_UNSPEC || t.family == family }

	switch m.Header.Type & 0xff {
	case unix.NFT_MSG_GETTABLE:
		name := str(attrs[unix.NFTA_TABLE_NAME])
		for _, t := range k.tables {
			if familyMatch(t) && (dump || t.name == name) {
				reply(unix.NFT_MSG_NEWTABLE, []netlink.Attribute{
					{Type: unix.NFTA_TABLE_NAME, Data: cstr(t.name)},
					{Type: unix.NFTA_TABLE_FLAGS, Data: be32(0)},
					{Type: unix.NFTA_TABLE_USE, Data: be32(uint32(len(t.chains)))},
					{Type: nftaTableHandle, Data: be64(t.handle)},
				}, t.family)
			}
		}
	case unix.NFT_MSG_GETCHAIN:
		tname, cname := str(attrs[unix.NFTA_CHAIN_TABLE]), str(attrs[unix.NFTA_CHAIN_NAME])
		for _, t := range k.tables {
			if !familyMatch(t) || (tname != "" && t.name != tname) {
				continue
			}
			for _, c := range t.chains {
				if !dump && c.name != cname {
					continue
				}
				a := []netlink.Attribute{
					{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(t.name)},
					{Type: unix.NFTA_CHAIN_NAME, Data: cstr(c.name)},
					{Type: unix.NFTA_CHAIN_HANDLE, Data: be64(c.handle)},
				}
				if c.hook != nil {
					a = append(a, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: c.hook})
				}
				if c.policy != nil {
					a = append(a, netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: c.policy})
				}
				if c.typ != nil {
					a = append(a, netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: c.typ})
				}
				a = append(a, netlink.Attribute{Type: unix.NFTA_CHAIN_USE, Data: be32(uint32(len(c.rules)))})
				reply(unix.NFT_MSG_NEWCHAIN, a, t.family)
			}
		}
	case unix.NFT_MSG_GETRULE:
		tname, cname := str(attrs[unix.NFTA_RULE_TABLE]), str(attrs[unix.NFTA_RULE_CHAIN])
		for _, t := range k.tables {
			if !familyMatch(t) || (tname != "" && t.name != tname) {
				continue
			}
			for _, c := range t.chains {
				if cname != "" && c.name != cname {
					continue
				}
				for _, r := range c.rules {
					a := []netlink.Attribute{
						{Type: unix.NFTA_RULE_TABLE, Data: cstr(t.name)},
						{Type: unix.NFTA_RULE_CHAIN, Data: cstr(c.name)},
						{Type: unix.NFTA_RULE_HANDLE, Data: be64(r.handle)},
						{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: r.exprs},
					}
					if r.userdata != nil {
						a = append(a, netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: r.userdata})
					}
					reply(unix.NFT_MSG_NEWRULE, a, t.family)
				}
			}
		}
	}

	if !dump {
		if len(replies) == 0 {
			return []netlink.Message{errorReply(m, unix.ENOENT)}
		}
		return replies[:1]
	}
	for i := range replies {
		replies[i].Header.Flags |= netlink.Multi
	}
	return append(replies, netlink.Message{
		Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: m.Header.Sequence, PID: m.Header.PID},
		Data:   make([]byte, 4),
	})
}

func (k *Kernel) table(family byte, name string) *table {
	for _, t := range k.tables {
		if t.family == family && t.name == name {
			return t
		}
	}
	return nil
}

func (t *table) chain(name string) *chain {
	for _, c := range t.chains {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (c *chain) ruleIndex(handle uint64) int {
	return slices.IndexFunc(c.rules, func(r *rule) bool { return r.handle == handle })
}

// errorReply is an NLMSG_ERROR reply to m: an acknowledgement when errno
// is 0.
func errorReply(m netlink.Message, errno syscall.Errno) netlink.Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	hdr := make([]byte, 16)
	binary.NativeEndian.PutUint32(hdr[0:], m.Header.Length)
	binary.NativeEndian.PutUint16(hdr[4:], uint16(m.Header.Type))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(m.Header.Flags))
	binary.NativeEndian.PutUint32(hdr[8:], m.Header.Sequence)
	binary.NativeEndian.PutUint32(hdr[12:], m.Header.PID)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
		Data:   append(data, hdr...),
	}
}

// decode reads a message's top-level attributes, keeping each one's raw
// payload (nested ones unparsed).
func decode(b []byte) (map[uint16][]byte, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	return out, ad.Err()
}

func str(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family(%d)", f)
}
