package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/policy"
)

// This file holds the expression blocks every rule is built from. Each
// block appends the raw expressions and the nft text they encode, which is
// also what a rule's identity is hashed from.

// renderVersion is hashed into every rule's identity. Bump it when the
// expressions a given text renders to change, so that a new Tabby replaces
// the rules an older one wrote.
const renderVersion = "tabby-nft-1"

// family is an address family: 0 (both), 4 or 6.
type family uint8

const (
	famAny family = 0
	fam4   family = 4
	fam6   family = 6
)

func (f family) String() string {
	switch f {
	case fam4:
		return "v4"
	case fam6:
		return "v6"
	}
	return "any"
}

func famOf(a netip.Addr) family {
	if a.Unmap().Is4() {
		return fam4
	}
	return fam6
}

// ipKeyword is the nft keyword of a family's IP header: "ip" or "ip6".
func (f family) ipKeyword() string {
	if f == fam6 {
		return "ip6"
	}
	return "ip"
}

// addrLen is the length of an address of the family.
func (f family) addrLen() uint32 {
	if f == fam6 {
		return 16
	}
	return 4
}

// addrOffset is the offset of the source (or destination) address in the
// family's network header.
func (f family) addrOffset(dst bool) uint32 {
	switch {
	case f == fam4 && !dst:
		return 12
	case f == fam4:
		return 16
	case !dst:
		return 8
	}
	return 24
}

func (f family) addrType() nftables.SetDatatype {
	if f == fam6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// ruleSpec is one desired rule.
type ruleSpec struct {
	// id identifies the rule's desired form: a hash of renderVersion, the
	// text and the comment. It is stored in the rule's user data.
	id      string
	text    string
	comment string
	exprs   []expr.Any
	anon    []*anonSet
}

// anonSet is an anonymous (constant) set that a rule uses, created in the
// same transaction as the rule and deleted with it by the kernel.
type anonSet struct {
	keyType  nftables.SetDatatype
	interval bool
	elems    []nftables.SetElement
	lookup   *expr.Lookup // patched with the set's name and ID when written
}

// builder assembles a rule from blocks.
type builder struct {
	parts   []string
	exprs   []expr.Any
	anon    []*anonSet
	comment string
}

func (b *builder) emit(text string, es ...expr.Any) *builder {
	b.parts = append(b.parts, text)
	b.exprs = append(b.exprs, es...)
	return b
}

// withComment sets the rule's comment (at most 127 bytes are kept).
func (b *builder) withComment(c string) *builder {
	if len(c) > 127 {
		c = c[:127]
	}
	b.comment = c
	return b
}

func (b *builder) rule() *ruleSpec {
	text := strings.Join(b.parts, " ")
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", renderVersion, text, b.comment)
	return &ruleSpec{
		id:      hex.EncodeToString(h.Sum(nil)[:16]),
		text:    text,
		comment: b.comment,
		exprs:   b.exprs,
		anon:    b.anon,
	}
}

func newRule() *builder { return &builder{} }

// --- interfaces ---

func ifnameBytes(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// ifname matches the input (out=false) or output interface name; with
// wildcard it matches names starting with name, like nft's "tabby*".
func (b *builder) ifname(out bool, name string, wildcard, neq bool) *builder {
	key, kw := expr.MetaKeyIIFNAME, "iifname"
	if out {
		key, kw = expr.MetaKeyOIFNAME, "oifname"
	}
	data, shown := ifnameBytes(name), name
	if wildcard {
		data, shown = []byte(name), name+"*"
	}
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	// iifname [!=] "NAME" / "PREFIX*"
	return b.emit(fmt.Sprintf("%s %s%q", kw, opText, shown),
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: data})
}

// --- protocols ---

// nfproto matches the packet's family (nft adds this in inet tables
// before any IP header field).
func (b *builder) nfproto(f family) *builder {
	p, name := byte(unix.NFPROTO_IPV4), "ipv4"
	if f == fam6 {
		p, name = unix.NFPROTO_IPV6, "ipv6"
	}
	// meta nfproto ipv4
	return b.emit("meta nfproto "+name,
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
}

// l4proto matches the transport protocol (after IPv6 extension headers).
func (b *builder) l4proto(p uint8, neq bool) *builder {
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	// meta l4proto [!=] 6
	return b.emit(fmt.Sprintf("meta l4proto %s%d", opText, p),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{p}})
}

// l4protoIn matches a transport protocol in a constant set.
func (b *builder) l4protoIn(ps ...uint8) *builder {
	elems := make([]nftables.SetElement, len(ps))
	txt := make([]string, len(ps))
	for i, p := range ps {
		elems[i] = nftables.SetElement{Key: []byte{p}}
		txt[i] = fmt.Sprint(p)
	}
	lk := &expr.Lookup{SourceRegister: 1}
	b.anon = append(b.anon, &anonSet{keyType: nftables.TypeInetProto, elems: elems, lookup: lk})
	// meta l4proto { 6, 17 }
	return b.emit("meta l4proto { "+strings.Join(txt, ", ")+" }",
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, lk)
}

// icmp6TypesIn matches ICMPv6 types in a constant set (after l4proto 58).
func (b *builder) icmp6TypesIn(ts ...uint8) *builder {
	elems := make([]nftables.SetElement, len(ts))
	txt := make([]string, len(ts))
	for i, t := range ts {
		elems[i] = nftables.SetElement{Key: []byte{t}}
		txt[i] = fmt.Sprint(t)
	}
	lk := &expr.Lookup{SourceRegister: 1}
	b.anon = append(b.anon, &anonSet{keyType: nftables.TypeICMP6Type, elems: elems, lookup: lk})
	// icmpv6 type { 133, 135, 136 }
	return b.emit("icmpv6 type { "+strings.Join(txt, ", ")+" }",
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}, lk)
}

// icmp matches an ICMP (fam4) or ICMPv6 type and optionally code; the
// caller has matched the protocol. Type and code are adjacent bytes, so
// both are one 2-byte compare, which also negates correctly.
func (b *builder) icmp(f family, m *policy.ICMPMatch, neq bool) *builder {
	kw := "icmp"
	if f == fam6 {
		kw = "icmpv6"
	}
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	if m.Code == nil {
		// icmp type [!=] 8
		return b.emit(fmt.Sprintf("%s type %s%d", kw, opText, m.Type),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: op, Register: 1, Data: []byte{m.Type}})
	}
	// icmp type . icmp code [!=] 8 . 0
	return b.emit(fmt.Sprintf("%s type . %s code %s%d . %d", kw, kw, opText, m.Type, *m.Code),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{m.Type, *m.Code}})
}

// --- conntrack and marks ---

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// ctState matches packets whose conntrack state is one of mask's bits.
func (b *builder) ctState(mask uint32, names string) *builder {
	// ct state established,related
	return b.emit("ct state "+names,
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(mask), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)})
}

// markIs matches packets whose mark has the bits of mask equal to want.
func (b *builder) markIs(mask, want uint32) *builder {
	// meta mark & 0x00020000 == 0x00000000
	return b.emit(fmt.Sprintf("meta mark & 0x%08x == 0x%08x", mask, want),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(mask), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(want)})
}

// markClear clears bits of the mark.
func (b *builder) markClear(bits uint32) *builder {
	// meta mark set meta mark & 0xfffcffff
	return b.emit(fmt.Sprintf("meta mark set meta mark & 0x%08x", ^bits),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^bits), Xor: native32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

// markSet sets bits of the mark.
func (b *builder) markSet(bits uint32) *builder {
	// meta mark set meta mark | 0x00010000
	return b.emit(fmt.Sprintf("meta mark set meta mark | 0x%08x", bits),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^bits), Xor: native32(bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

// --- addresses ---

func addrWord(dst bool) string {
	if dst {
		return "daddr"
	}
	return "saddr"
}

// addrPrefix matches the source or destination address against one
// prefix of family f (the caller has matched the family). Byte-aligned
// prefixes load only the bytes that matter, as nft does.
func (b *builder) addrPrefix(f family, dst bool, p netip.Prefix, neq bool) *builder {
	p = p.Masked()
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	raw := p.Addr().AsSlice()
	text := fmt.Sprintf("%s %s %s%s", f.ipKeyword(), addrWord(dst), opText, p)
	if p.IsSingleIP() {
		text = fmt.Sprintf("%s %s %s%s", f.ipKeyword(), addrWord(dst), opText, p.Addr())
	}
	if p.Bits()%8 == 0 {
		n := uint32(p.Bits() / 8)
		// ip saddr [!=] 10.1.2.0/24
		return b.emit(text,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(dst), Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: raw[:n]})
	}
	m := prefixMask(len(raw), p.Bits())
	// ip saddr [!=] 10.1.2.0/23
	return b.emit(text,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(dst), Len: f.addrLen()},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.addrLen(), Mask: m, Xor: make([]byte, len(raw))},
		&expr.Cmp{Op: op, Register: 1, Data: raw})
}

func prefixMask(n, ones int) []byte {
	m := make([]byte, n)
	for i := range m {
		switch {
		case ones >= 8:
			m[i] = 0xff
			ones -= 8
		case ones > 0:
			m[i] = byte(0xff << (8 - ones))
			ones = 0
		}
	}
	return m
}

// addrAnon matches the address against several prefixes of family f,
// through a constant interval set.
func (b *builder) addrAnon(f family, dst bool, ps []netip.Prefix, neq bool) *builder {
	ps = outermost(ps)
	if len(ps) == 1 {
		return b.addrPrefix(f, dst, ps[0], neq)
	}
	txt := make([]string, len(ps))
	var elems []nftables.SetElement
	for i, p := range ps {
		txt[i] = p.String()
		elems = append(elems, rangeOf(p).setElements()...)
	}
	lk := &expr.Lookup{SourceRegister: 1, Invert: neq}
	b.anon = append(b.anon, &anonSet{keyType: f.addrType(), interval: true, elems: elems, lookup: lk})
	opText := ""
	if neq {
		opText = "!= "
	}
	// ip saddr [!=] { 10.0.0.0/8, 192.168.0.0/16 }
	return b.emit(fmt.Sprintf("%s %s %s{ %s }", f.ipKeyword(), addrWord(dst), opText, strings.Join(txt, ", ")),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(dst), Len: f.addrLen()},
		lk)
}

// addrLookup matches the address against a named set of family f.
func (b *builder) addrLookup(f family, dst bool, set string, neq bool) *builder {
	opText := ""
	if neq {
		opText = "!= "
	}
	// ip saddr [!=] @s-XXXX-v4
	return b.emit(fmt.Sprintf("%s %s %s@%s", f.ipKeyword(), addrWord(dst), opText, set),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(dst), Len: f.addrLen()},
		&expr.Lookup{SourceRegister: 1, SetName: set, Invert: neq})
}

// namedPorts matches (address, protocol, port) of one end against a named
// concatenated set. Concatenated values start at 32-bit register 8
// (= 128-bit reg 1), each padded to 4 bytes.
func (b *builder) namedPorts(f family, dst bool, set string, neq bool) *builder {
	opText := ""
	if neq {
		opText = "!= "
	}
	port := uint32(0) // source port offset
	if dst {
		port = 2
	}
	protoReg := uint32(9) // after a 4-byte address in 32-bit reg 8
	if f == fam6 {
		protoReg = 12 // after a 16-byte address in 32-bit regs 8-11
	}
	pw := "sport"
	if dst {
		pw = "dport"
	}
	// ip daddr . meta l4proto . th dport [!=] @p-XXXX-v4
	return b.emit(fmt.Sprintf("%s %s . meta l4proto . th %s %s@%s", f.ipKeyword(), addrWord(dst), pw, opText, set),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(dst), Len: f.addrLen()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		&expr.Payload{DestRegister: protoReg + 1, Base: expr.PayloadBaseTransportHeader, Offset: port, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set, Invert: neq})
}

// spoofLookup matches (input interface, source address) against a named
// concatenated set: the interface name fills 128-bit reg 1, the address
// starts at reg 2.
func (b *builder) spoofLookup(f family, set string) *builder {
	// iifname . ip saddr @spoof-v4
	return b.emit(fmt.Sprintf("iifname . %s saddr @%s", f.ipKeyword(), set),
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOffset(false), Len: f.addrLen()},
		&expr.Lookup{SourceRegister: 1, SetName: set})
}

// --- ports ---

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// ports matches the source or destination port against ranges.
func (b *builder) ports(dst bool, rs []policy.PortRange, neq bool) *builder {
	off, pw := uint32(0), "sport"
	if dst {
		off, pw = 2, "dport"
	}
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
	op, opText := expr.CmpOpEq, ""
	if neq {
		op, opText = expr.CmpOpNeq, "!= "
	}
	if len(rs) == 1 && rs[0].Lo == rs[0].Hi {
		// th dport [!=] 80
		return b.emit(fmt.Sprintf("th %s %s%d", pw, opText, rs[0].Lo),
			load, &expr.Cmp{Op: op, Register: 1, Data: be16(rs[0].Lo)})
	}
	if len(rs) == 1 {
		// th dport [!=] 80-90
		return b.emit(fmt.Sprintf("th %s %s%d-%d", pw, opText, rs[0].Lo, rs[0].Hi),
			load, &expr.Range{Op: op, Register: 1, FromData: be16(rs[0].Lo), ToData: be16(rs[0].Hi)})
	}
	txt := make([]string, 0, len(rs))
	var elems []nftables.SetElement
	for _, r := range mergePortRanges(rs) {
		if r.Lo == r.Hi {
			txt = append(txt, fmt.Sprint(r.Lo))
		} else {
			txt = append(txt, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
		}
		elems = append(elems, nftables.SetElement{Key: be16(r.Lo)})
		if r.Hi != 0xffff {
			elems = append(elems, nftables.SetElement{Key: be16(r.Hi + 1), IntervalEnd: true})
		}
	}
	lk := &expr.Lookup{SourceRegister: 1, Invert: neq}
	b.anon = append(b.anon, &anonSet{keyType: nftables.TypeInetService, interval: true, elems: elems, lookup: lk})
	// th dport [!=] { 80, 443, 1000-2000 }
	return b.emit(fmt.Sprintf("th %s %s{ %s }", pw, opText, strings.Join(txt, ", ")), load, lk)
}

// --- verdicts and statements ---

func (b *builder) accept() *builder {
	// accept
	return b.emit("accept", &expr.Verdict{Kind: expr.VerdictAccept})
}

func (b *builder) drop() *builder {
	// drop
	return b.emit("drop", &expr.Verdict{Kind: expr.VerdictDrop})
}

func (b *builder) ret() *builder {
	// return
	return b.emit("return", &expr.Verdict{Kind: expr.VerdictReturn})
}

func (b *builder) jump(chain string) *builder {
	// jump CHAIN
	return b.emit("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

func (b *builder) goTo(chain string) *builder {
	// goto CHAIN
	return b.emit("goto "+chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain})
}

// vmap dispatches on the input (or output) interface name through a
// verdict map.
func (b *builder) vmap(out bool, set string) *builder {
	key, kw := expr.MetaKeyIIFNAME, "iifname"
	if out {
		key, kw = expr.MetaKeyOIFNAME, "oifname"
	}
	// iifname vmap @from-wl
	return b.emit(fmt.Sprintf("%s vmap @%s", kw, set),
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: set, DestRegister: 0, IsDestRegSet: true})
}

// log writes a kernel log line with the prefix (truncated to the
// kernel's limit).
func (b *builder) log(prefix string) *builder {
	if len(prefix) > maxLogPrefix {
		prefix = prefix[:maxLogPrefix]
	}
	// log prefix "PREFIX"
	return b.emit(fmt.Sprintf("log prefix %q", prefix),
		&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(prefix)})
}

func (b *builder) masquerade() *builder {
	// masquerade
	return b.emit("masquerade", &expr.Masq{})
}

func (b *builder) snat4(a netip.Addr) *builder {
	raw := a.Unmap().As4()
	// snat ip to 192.0.2.1
	return b.emit("snat ip to "+a.Unmap().String(),
		&expr.Immediate{Register: 1, Data: raw[:]},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1})
}
