package bgp

import (
	"fmt"
	"net/netip"
	"slices"
)

// Route is a learned route: a prefix and the next hops of its best paths
// (several for ECMP).
type Route struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr // sorted, at least one
	// Stale is set while a path's peer restarts gracefully: the route is
	// kept, and refreshed or withdrawn when the peer is back or its
	// restart time runs out.
	Stale bool
}

func (r Route) String() string {
	s := r.Prefix.String()
	for _, nh := range r.NextHops {
		s += " via " + nh.String()
	}
	if r.Stale {
		s += " (stale)"
	}
	return s
}

// Rejected is a learned route that the safety filter keeps out of the
// kernel, and why.
type Rejected struct {
	Route  Route
	Reason string
}

// Protected is what learned routes must never touch.
type Protected struct {
	// Local are the node's addresses with the prefix lengths of their
	// subnets: each gives a connected subnet and a local address.
	Local []netip.Prefix
	// Own are the prefixes the node advertises itself.
	Own []netip.Prefix
}

// specialRanges hold addresses that are never routed by BGP.
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// FilterLearned is the safety filter between BGP and the kernel. It keeps
// a learned route out (rejected) when installing it could cut the node
// off or loop traffic back to it:
//
//   - its prefix overlaps a connected subnet: equal to it (the kernel would
//     replace the connected route), covering it (a default route or an
//     aggregate), or inside it (it would steal a neighbour's address);
//   - its prefix contains one of the node's own addresses;
//   - its prefix is one the node advertises itself (its own blocks);
//   - its prefix is loopback, link-local or multicast;
//   - none of its next hops is usable: a next hop must be a unicast,
//     non-link-local address of the prefix's family that is not the
//     node's own (unusable ones are dropped from ECMP routes).
//
// It is pure. The order of routes is kept.
func FilterLearned(routes []Route, p Protected) (keep []Route, rejected []Rejected) {
	var connected []netip.Prefix
	local := map[netip.Addr]bool{}
	for _, l := range p.Local {
		a := l.Addr().Unmap()
		if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		local[a] = true
		connected = append(connected, netip.PrefixFrom(a, l.Bits()).Masked())
	}
	own := make(map[netip.Prefix]bool, len(p.Own))
	for _, o := range p.Own {
		own[o.Masked()] = true
	}

	reject := func(r Route, format string, args ...any) {
		rejected = append(rejected, Rejected{Route: r, Reason: fmt.Sprintf(format, args...)})
	}
next:
	for _, r := range routes {
		dst := r.Prefix
		switch {
		case !dst.IsValid():
			reject(r, "invalid prefix")
			continue
		case dst.Masked() != dst:
			reject(r, "prefix is not masked")
			continue
		case own[dst]:
			reject(r, "advertised by this node")
			continue
		}
		for _, c := range connected {
			if !dst.Overlaps(c) {
				continue
			}
			switch {
			case c.IsSingleIP():
				reject(r, "contains local address %s", c.Addr())
			case dst == c:
				reject(r, "equals connected subnet %s", c)
			case dst.Bits() < c.Bits():
				reject(r, "covers connected subnet %s", c)
			default:
				reject(r, "inside connected subnet %s", c)
			}
			continue next
		}
		for _, s := range specialRanges {
			if dst.Overlaps(s) {
				reject(r, "overlaps special range %s", s)
				continue next
			}
		}
		var hops []netip.Addr
		for _, nh := range r.NextHops {
			nh = nh.Unmap()
			if nh.Is4() != dst.Addr().Is4() || !nh.IsGlobalUnicast() || local[nh] {
				continue
			}
			hops = append(hops, nh)
		}
		if len(hops) == 0 {
			reject(r, "no usable next hop")
			continue
		}
		slices.SortFunc(hops, netip.Addr.Compare)
		r.NextHops = slices.Compact(hops)
		keep = append(keep, r)
	}
	return keep, rejected
}
