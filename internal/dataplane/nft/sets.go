package nft

import (
	"bytes"
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/policy"
)

// setShape is what a named set is, apart from its elements: the kernel
// cannot change it in place.
type setShape struct {
	keyType  uint32 // nft datatype magic, concatenations included
	keyLen   uint32
	interval bool
	concat   bool
	vmap     bool // a verdict map
}

// setSpec is a desired named set or verdict map.
type setSpec struct {
	name  string
	dt    nftables.SetDatatype
	shape setShape
	// elems are keyed by element.ident(). A setSpec is never modified
	// once built; the kernel cache may share the map.
	elems map[string]element
}

func newSetSpec(name string, dt nftables.SetDatatype, interval, vmap bool) *setSpec {
	return &setSpec{
		name: name,
		dt:   dt,
		shape: setShape{
			keyType:  dt.GetNFTMagic(),
			keyLen:   dt.Bytes,
			interval: interval,
			concat:   dt.GetNFTMagic() >= 1<<nftables.SetConcatTypeBits,
			vmap:     vmap,
		},
		elems: map[string]element{},
	}
}

func (s *setSpec) add(e element) { s.elems[e.ident()] = e }

// element is one element of a named set or map. In an interval set it is
// a whole range, which the kernel holds as two elements: the start, and
// the first key after the range (flagged as an interval end). A range
// that reaches the end of the key space has no end element.
type element struct {
	key     []byte
	end     []byte // interval sets: exclusive end; nil up to the end
	verdict *expr.Verdict
}

// ident identifies an element within its set: keys of one set all have
// the same length, so the concatenation is unambiguous.
func (e element) ident() string {
	s := string(e.key) + "|" + string(e.end)
	if e.verdict != nil {
		s += "|" + strconv.Itoa(int(e.verdict.Kind)) + "|" + e.verdict.Chain
	}
	return s
}

// kernelElements turns an element into what the kernel holds.
func (e element) kernelElements() []nftables.SetElement {
	out := []nftables.SetElement{{Key: e.key, VerdictData: e.verdict}}
	if e.end != nil {
		out = append(out, nftables.SetElement{Key: e.end, IntervalEnd: true})
	}
	return out
}

// addrRange is the range of addresses of a prefix.
type addrRange struct{ start, end []byte }

func rangeOf(p netip.Prefix) addrRange {
	p = p.Masked()
	start := p.Addr().AsSlice()
	end := slices.Clone(start)
	// Set the host bits, then add one.
	hostBits := len(end)*8 - p.Bits()
	for i := len(end) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		end[i] |= byte(0xff >> (8 - n))
		hostBits -= n
	}
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return addrRange{start, end}
		}
	}
	return addrRange{start, nil} // wrapped: the range reaches the end
}

func (r addrRange) setElements() []nftables.SetElement {
	return element{key: r.start, end: r.end}.kernelElements()
}

// outermost returns the prefixes that no other prefix of ps contains,
// masked and sorted. Interval sets reject overlapping ranges, and prefixes
// either nest or are disjoint, so this leaves disjoint ranges.
func outermost(ps []netip.Prefix) []netip.Prefix {
	s := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		s = append(s, p.Masked())
	}
	slices.SortFunc(s, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	out := s[:0]
	for _, p := range s {
		if n := len(out); n > 0 && out[n-1].Addr().BitLen() == p.Addr().BitLen() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// mergePortRanges sorts port ranges and merges overlapping and adjacent
// ones, as constant interval sets need.
func mergePortRanges(rs []policy.PortRange) []policy.PortRange {
	s := slices.Clone(rs)
	for i, r := range s {
		if r.Hi < r.Lo {
			s[i].Lo, s[i].Hi = r.Hi, r.Lo
		}
	}
	slices.SortFunc(s, func(a, b policy.PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// prefixesOf returns the prefixes of ps in family f.
func prefixesOf(ps []netip.Prefix, f family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if famOf(p.Addr()) == f {
			out = append(out, p)
		}
	}
	return out
}

// hasNonHost reports whether some prefix is shorter than a host route.
func hasNonHost(ps []netip.Prefix) bool {
	for _, p := range ps {
		if !p.IsSingleIP() {
			return true
		}
	}
	return false
}

// addrSetSpec builds the set for one family's members: a hash set of
// addresses, or an interval set of disjoint ranges.
func addrSetSpec(name string, f family, members []netip.Prefix, interval bool) *setSpec {
	s := newSetSpec(name, f.addrType(), interval, false)
	if !interval {
		for _, p := range members {
			s.add(element{key: p.Addr().AsSlice()})
		}
		return s
	}
	for _, p := range outermost(members) {
		r := rangeOf(p)
		s.add(element{key: r.start, end: r.end})
	}
	return s
}

// Datatypes of the concatenated sets.
var (
	namedPortType4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	namedPortType6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	spoofType4     = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	spoofType6     = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)
	ifnameType     = nftables.TypeIFName
)

// namedPortKey is the concatenated key: address, protocol and port, each
// padded to 4 bytes.
func namedPortKey(m policy.NamedPortMember) []byte {
	k := slices.Clone(m.Addr.Unmap().AsSlice())
	k = append(k, m.Protocol, 0, 0, 0)
	return append(k, byte(m.Port>>8), byte(m.Port), 0, 0)
}

// spoofKey is the concatenated key: interface name (16 bytes) and address.
func spoofKey(iface string, a netip.Addr) []byte {
	return append(ifnameBytes(iface), a.Unmap().AsSlice()...)
}

func namedPortSetSpec(name string, f family, members []policy.NamedPortMember) *setSpec {
	dt := namedPortType4
	if f == fam6 {
		dt = namedPortType6
	}
	s := newSetSpec(name, dt, false, false)
	for _, m := range members {
		if famOf(m.Addr) == f {
			s.add(element{key: namedPortKey(m)})
		}
	}
	return s
}

// gotoElem is a dispatch map element: interface name → goto chain.
func gotoElem(iface, chain string) element {
	return element{key: ifnameBytes(iface), verdict: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

// elementsFromKernel rebuilds our elements from what the kernel lists.
func elementsFromKernel(shape setShape, kes []kernelElem) map[string]element {
	out := make(map[string]element, len(kes))
	if !shape.interval {
		for _, ke := range kes {
			e := element{key: ke.key}
			if shape.vmap {
				e.verdict = ke.verdict
			}
			out[e.ident()] = e
		}
		return out
	}
	// Interval sets: sort by key, end elements before start elements of
	// the same key (adjacent ranges), then pair each start with the end
	// that follows it.
	s := slices.Clone(kes)
	slices.SortFunc(s, func(a, b kernelElem) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		switch {
		case a.flags&unix.NFT_SET_ELEM_INTERVAL_END != 0 && b.flags&unix.NFT_SET_ELEM_INTERVAL_END == 0:
			return -1
		case a.flags&unix.NFT_SET_ELEM_INTERVAL_END == 0 && b.flags&unix.NFT_SET_ELEM_INTERVAL_END != 0:
			return 1
		}
		return 0
	})
	var open []byte
	for _, ke := range s {
		isEnd := ke.flags&unix.NFT_SET_ELEM_INTERVAL_END != 0
		switch {
		case isEnd && open != nil:
			e := element{key: open, end: ke.key}
			out[e.ident()] = e
			open = nil
		case isEnd:
			// An end with no start (nft writes one at the bottom of the
			// key space); it holds no addresses.
		default:
			if open != nil {
				e := element{key: open}
				out[e.ident()] = e
			}
			open = ke.key
		}
	}
	if open != nil {
		e := element{key: open}
		out[e.ident()] = e
	}
	return out
}
