package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file talks to the kernel. Reads are plain nfnetlink dumps made
// here (they need only names, handles and user data, and one dump lists
// every rule of the table). Writes are encoded by github.com/google/nftables
// and sent here as one batch, that is one transaction, per call.

// udataRuleID is the type of the user-data TLV in which a rule carries its
// identity. nft ignores TLV types it does not know (it knows 0, the
// comment, and 1).
const udataRuleID = 0xe0

// elemChunk bounds the elements per message: a message's element list is
// one netlink attribute, whose length is 16 bits.
const elemChunk = 256

// txTimeout bounds the wait for a transaction's acks.
const txTimeout = 30 * time.Second

// sockBuf is the socket buffer size forced on the write socket: a whole
// transaction is one sendmsg, and the kernel queues an ack per message.
const sockBuf = 64 << 20

// kernel is one network namespace's nf_tables, seen through our table.
type kernel struct {
	table string
	rd    *netlink.Conn // dumps
	rdMu  sync.Mutex    // one dump at a time on rd (Resync reads outside the renderer's lock)
	tx    *netlink.Conn // transactions
	nsFd  int
	// wr only encodes: its "socket" captures the batch that Flush would
	// send, and commit sends it through tx. (The library's own receive
	// loop cannot pair acks with messages once the kernel coalesces
	// replies, and it asks for an echo of every rule.)
	wr       *nftables.Conn
	captured []netlink.Message
	setID    uint32 // IDs of sets created in a batch
}

func openKernel(nsFd int, table string) (*kernel, error) {
	k := &kernel{table: table, nsFd: nsFd}
	var err error
	if k.rd, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd}); err != nil {
		return nil, fmt.Errorf("dialing nfnetlink: %w", err)
	}
	if err := k.dialTx(); err != nil {
		k.rd.Close()
		return nil, err
	}
	k.wr, err = nftables.New(nftables.WithTestDial(k.capture))
	if err != nil {
		k.rd.Close()
		k.tx.Close()
		return nil, err
	}
	return k, nil
}

func (k *kernel) dialTx() error {
	tx, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.nsFd})
	if err != nil {
		return fmt.Errorf("dialing nfnetlink: %w", err)
	}
	if err := bigBuffers(tx); err != nil {
		tx.Close()
		return fmt.Errorf("sizing nfnetlink buffers: %w", err)
	}
	_ = tx.SetOption(netlink.ExtendedAcknowledge, true)
	k.tx = tx
	return nil
}

// errCaptured ends nftables.Conn.Flush once the batch is captured.
var errCaptured = unix.EPERM

func (k *kernel) capture(req []netlink.Message) ([]netlink.Message, error) {
	k.captured = append(k.captured, req...)
	return nil, errCaptured
}

func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBuf) != nil {
				// Without CAP_NET_ADMIN: as much as net.core.*mem_max allows.
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBuf))
			}
		}
	})
	return errors.Join(err, serr)
}

func (k *kernel) close() error {
	return errors.Join(k.tx.Close(), k.rd.Close())
}

// request sends one nf_tables request for the inet family and returns the
// replies. A dump that the kernel marks as interrupted (the ruleset
// changed while it was dumped) is made again.
func (k *kernel) request(typ uint16, flags netlink.HeaderFlags, attrs ...netlink.Attribute) ([]netlink.Message, error) {
	ab, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	// struct nfgenmsg: family, version, resource id (big endian).
	data := append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, ab...)
	k.rdMu.Lock()
	defer k.rdMu.Unlock()
	for try := 0; ; try++ {
		msgs, err := k.rd.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | int(typ)), Flags: netlink.Request | flags},
			Data:   data,
		})
		if err != nil || !slices.ContainsFunc(msgs, func(m netlink.Message) bool { return m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 }) {
			return msgs, err
		}
		if try == 4 {
			// Comparing with a read that does not match the kernel would
			// "repair" what is right: fail, and try again later.
			return nil, errors.New("nf_tables dump interrupted 5 times in a row (the ruleset keeps changing)")
		}
	}
}

func strAttr(typ uint16, s string) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: append([]byte(s), 0)}
}

func decoder(m netlink.Message) (*netlink.AttributeDecoder, error) {
	if len(m.Data) < 4 {
		return nil, fmt.Errorf("short nf_tables message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }

// genID returns the ruleset generation: it changes with every committed
// transaction in the namespace.
func (k *kernel) genID() (uint32, error) {
	msgs, err := k.request(unix.NFT_MSG_GETGEN, 0)
	if err != nil {
		return 0, fmt.Errorf("getting nftables generation: %w", err)
	}
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("no generation in reply")
}

// hookSpec is a base chain's hook.
type hookSpec struct {
	typ      nftables.ChainType
	hook     uint32
	priority int32
	policy   uint32 // NF_ACCEPT (1) or NF_DROP (0)
}

// kernelChain is a chain as listed.
type kernelChain struct {
	name string
	hook *hookSpec
}

// kernelRule is a rule as listed: only what identifies it.
type kernelRule struct {
	chain  string
	handle uint64
	id     string
}

// kernelSet is a named set as listed.
type kernelSet struct {
	name  string
	shape setShape
}

// kernelElem is a set element as listed.
type kernelElem struct {
	key     []byte
	flags   uint32
	verdict *expr.Verdict
}

func (k *kernel) tableExists() (bool, error) {
	_, err := k.request(unix.NFT_MSG_GETTABLE, 0, strAttr(unix.NFTA_TABLE_NAME, k.table))
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("getting table %s: %w", k.table, err)
	}
	return true, nil
}

func (k *kernel) chains() ([]kernelChain, error) {
	msgs, err := k.request(unix.NFT_MSG_GETCHAIN, netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("listing chains: %w", err)
	}
	var out []kernelChain
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return nil, err
		}
		var c kernelChain
		var table string
		var h hookSpec
		hasHook := false
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				table = ad.String()
			case unix.NFTA_CHAIN_NAME:
				c.name = ad.String()
			case unix.NFTA_CHAIN_TYPE:
				h.typ = nftables.ChainType(ad.String())
			case unix.NFTA_CHAIN_POLICY:
				h.policy = ad.Uint32()
			case unix.NFTA_CHAIN_HOOK:
				hasHook = true
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					for nd.Next() {
						switch nd.Type() {
						case unix.NFTA_HOOK_HOOKNUM:
							h.hook = nd.Uint32()
						case unix.NFTA_HOOK_PRIORITY:
							h.priority = int32(nd.Uint32())
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding chain: %w", err)
		}
		if table != k.table {
			continue
		}
		if hasHook {
			c.hook = &h
		}
		out = append(out, c)
	}
	return out, nil
}

// rules lists the rules of the table, or of one chain if chain is set, in
// order.
func (k *kernel) rules(chain string) ([]kernelRule, error) {
	attrs := []netlink.Attribute{strAttr(unix.NFTA_RULE_TABLE, k.table)}
	if chain != "" {
		attrs = append(attrs, strAttr(unix.NFTA_RULE_CHAIN, chain))
	}
	msgs, err := k.request(unix.NFT_MSG_GETRULE, netlink.Dump, attrs...)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	out := make([]kernelRule, 0, len(msgs))
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return nil, err
		}
		var r kernelRule
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_CHAIN:
				r.chain = ad.String()
			case unix.NFTA_RULE_HANDLE:
				r.handle = ad.Uint64()
			case unix.NFTA_RULE_USERDATA:
				r.id = ruleIDFromUserData(ad.Bytes())
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding rule: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// userData encodes a rule's comment (shown by nft) and identity.
func (r *ruleSpec) userData() []byte {
	var b []byte
	if r.comment != "" {
		c := append([]byte(r.comment), 0)
		b = append(b, 0, byte(len(c)))
		b = append(b, c...)
	}
	b = append(b, udataRuleID, byte(len(r.id)))
	return append(b, r.id...)
}

func ruleIDFromUserData(b []byte) string {
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if len(b) < 2+n {
			return ""
		}
		if t == udataRuleID {
			return string(b[2 : 2+n])
		}
		b = b[2+n:]
	}
	return ""
}

func (k *kernel) sets() ([]kernelSet, error) {
	msgs, err := k.request(unix.NFT_MSG_GETSET, netlink.Dump, strAttr(unix.NFTA_SET_TABLE, k.table))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing sets: %w", err)
	}
	var out []kernelSet
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return nil, err
		}
		var s kernelSet
		var flags uint32
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_SET_NAME:
				s.name = ad.String()
			case unix.NFTA_SET_FLAGS:
				flags = ad.Uint32()
			case unix.NFTA_SET_KEY_TYPE:
				s.shape.keyType = ad.Uint32()
			case unix.NFTA_SET_KEY_LEN:
				s.shape.keyLen = ad.Uint32()
			case unix.NFTA_SET_DATA_TYPE:
				s.shape.vmap = ad.Uint32() == unix.NFT_DATA_VERDICT
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding set: %w", err)
		}
		if flags&unix.NFT_SET_ANONYMOUS != 0 {
			continue // belongs to a rule
		}
		s.shape.interval = flags&unix.NFT_SET_INTERVAL != 0
		s.shape.concat = flags&nftables.NFT_SET_CONCAT != 0
		s.shape.vmap = s.shape.vmap && flags&unix.NFT_SET_MAP != 0
		out = append(out, s)
	}
	return out, nil
}

func (k *kernel) elements(set string) ([]kernelElem, error) {
	msgs, err := k.request(unix.NFT_MSG_GETSETELEM, netlink.Dump,
		strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, k.table), strAttr(unix.NFTA_SET_ELEM_LIST_SET, set))
	if err != nil {
		return nil, fmt.Errorf("listing elements of %s: %w", set, err)
	}
	var out []kernelElem
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					var e kernelElem
					list.Nested(func(ed *netlink.AttributeDecoder) error {
						decodeElem(ed, &e)
						return nil
					})
					out = append(out, e)
				}
				return nil
			})
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding elements of %s: %w", set, err)
		}
	}
	return out, nil
}

func decodeElem(ed *netlink.AttributeDecoder, e *kernelElem) {
	for ed.Next() {
		switch ed.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			ed.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() == unix.NFTA_DATA_VALUE {
						e.key = d.Bytes()
					}
				}
				return nil
			})
		case unix.NFTA_SET_ELEM_FLAGS:
			e.flags = ed.Uint32()
		case unix.NFTA_SET_ELEM_DATA:
			ed.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() != unix.NFTA_DATA_VERDICT {
						continue
					}
					v := &expr.Verdict{}
					d.Nested(func(vd *netlink.AttributeDecoder) error {
						for vd.Next() {
							switch vd.Type() {
							case unix.NFTA_VERDICT_CODE:
								v.Kind = expr.VerdictKind(int32(vd.Uint32()))
							case unix.NFTA_VERDICT_CHAIN:
								v.Chain = vd.String()
							}
						}
						return nil
					})
					e.verdict = v
				}
				return nil
			})
		}
	}
}

// batch collects the messages of one transaction.
type batch struct {
	k     *kernel
	table *nftables.Table
	n     int // messages
	err   error
}

func (k *kernel) newBatch() *batch {
	return &batch{k: k, table: &nftables.Table{Name: k.table, Family: nftables.TableFamilyINet}}
}

func (b *batch) setErr(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

func (b *batch) addTable() {
	b.k.wr.AddTable(b.table)
	b.n++
}

func (b *batch) delTable() {
	b.k.wr.DelTable(b.table)
	b.n++
}

func (b *batch) chainRef(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.table}
}

// addChain creates a chain, or updates a base chain's policy.
func (b *batch) addChain(name string, h *hookSpec) {
	c := b.chainRef(name)
	if h != nil {
		hook := nftables.ChainHook(h.hook)
		prio := nftables.ChainPriority(h.priority)
		pol := nftables.ChainPolicy(h.policy)
		c.Type, c.Hooknum, c.Priority, c.Policy = h.typ, &hook, &prio, &pol
	}
	b.k.wr.AddChain(c)
	b.n++
}

func (b *batch) flushChain(name string) {
	b.k.wr.FlushChain(b.chainRef(name))
	b.n++
}

func (b *batch) delChain(name string) {
	b.k.wr.DelChain(b.chainRef(name))
	b.n++
}

func (b *batch) nextSetID() uint32 {
	b.k.setID++
	if b.k.setID == 0 {
		b.k.setID++
	}
	return b.k.setID
}

func (b *batch) setRef(s *setSpec) *nftables.Set {
	set := &nftables.Set{
		Table:         b.table,
		Name:          s.name,
		ID:            b.nextSetID(),
		KeyType:       s.dt,
		Interval:      s.shape.interval,
		Concatenation: s.shape.concat,
		IsMap:         s.shape.vmap,
	}
	if s.shape.vmap {
		set.DataType = nftables.TypeVerdict
	}
	if s.dt.GetNFTMagic() == nftables.TypeIFName.GetNFTMagic() {
		// nft shows interface names correctly only for a host-endian key.
		set.KeyByteOrder = binaryutil.NativeEndian
	}
	return set
}

func (b *batch) addSet(s *setSpec) {
	b.setErr(b.k.wr.AddSet(b.setRef(s), nil))
	b.n++
	elems := make([]element, 0, len(s.elems))
	for _, e := range s.elems {
		elems = append(elems, e)
	}
	b.elements(s, elems, true)
}

func (b *batch) delSet(name string) {
	b.k.wr.DelSet(&nftables.Set{Table: b.table, Name: name})
	b.n++
}

// elements adds (or deletes) elements, in chunks.
func (b *batch) elements(s *setSpec, es []element, add bool) {
	if len(es) == 0 {
		return
	}
	ref := b.setRef(s)
	var kes []nftables.SetElement
	send := func() {
		if add {
			b.setErr(b.k.wr.SetAddElements(ref, kes))
		} else {
			b.setErr(b.k.wr.SetDeleteElements(ref, kes))
		}
		b.n++
		kes = kes[:0]
	}
	for _, e := range es {
		kes = append(kes, e.kernelElements()...)
		if len(kes) >= elemChunk {
			send()
		}
	}
	if len(kes) > 0 {
		send()
	}
}

// rule writes r into chain: appended (before == 0 and replace == 0),
// inserted before the rule with handle before, or replacing the rule with
// handle replace. Its constant sets are created first.
func (b *batch) rule(chain string, r *ruleSpec, before, replace uint64) {
	for _, a := range r.anon {
		s := &nftables.Set{
			Table: b.table, Name: "__set%d", ID: b.nextSetID(),
			Anonymous: true, Constant: true, Interval: a.interval, KeyType: a.keyType,
		}
		b.setErr(b.k.wr.AddSet(s, a.elems))
		b.n += 2
		a.lookup.SetName, a.lookup.SetID = s.Name, s.ID
	}
	nr := &nftables.Rule{Table: b.table, Chain: b.chainRef(chain), Exprs: r.exprs, UserData: r.userData()}
	switch {
	case replace != 0:
		nr.Handle = replace
		b.k.wr.ReplaceRule(nr)
	case before != 0:
		nr.Position = before
		b.k.wr.InsertRule(nr)
	default:
		b.k.wr.AddRule(nr)
	}
	b.n++
}

func (b *batch) delRule(chain string, handle uint64) {
	b.setErr(b.k.wr.DelRule(&nftables.Rule{Table: b.table, Chain: b.chainRef(chain), Handle: handle}))
	b.n++
}

// take returns the encoded batch and clears the encoder.
func (b *batch) take() ([]netlink.Message, error) {
	b.k.captured = b.k.captured[:0]
	if err := b.k.wr.Flush(); err != nil && !errors.Is(err, os.ErrPermission) {
		return nil, err
	}
	msgs := b.k.captured
	b.k.captured = nil
	return msgs, nil
}

// discard drops the queued messages unsent.
func (b *batch) discard() { _, _ = b.take() }

// commit sends the batch as one transaction. The kernel applies all of it
// or nothing.
func (b *batch) commit() error {
	msgs, err := b.take()
	if b.err != nil || err != nil {
		return fmt.Errorf("building nftables transaction: %w", errors.Join(b.err, err))
	}
	if b.n == 0 {
		return nil
	}
	if err := b.k.send(msgs); err != nil {
		return fmt.Errorf("nftables transaction (%d messages): %w", b.n, err)
	}
	return nil
}

// send sends an encoded batch (begin, messages, end) and waits for the
// acks. Any error aborts the whole transaction in the kernel.
func (k *kernel) send(msgs []netlink.Message) error {
	want := 0
	for i := range msgs {
		h := &msgs[i].Header
		h.Sequence, h.PID = 0, 0 // let tx number them
		h.Flags &^= unix.NLM_F_ECHO
		if h.Flags&netlink.Acknowledge != 0 {
			want++
		}
	}
	fail := func(err error) error {
		// Replies may be left in the socket: start afresh.
		k.tx.Close()
		return errors.Join(err, k.dialTx())
	}
	if err := k.tx.SetReadDeadline(time.Now().Add(txTimeout)); err != nil {
		return fail(err)
	}
	if _, err := k.tx.SendMessages(msgs); err != nil {
		return fail(err)
	}
	for got := 0; got < want; {
		replies, err := k.tx.Receive()
		if err != nil {
			return fail(err)
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error {
				got++
			}
		}
	}
	return nil
}
