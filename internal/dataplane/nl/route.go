package nl

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteType is the kernel's route type (RTN_*).
type RouteType uint8

// Route types.
const (
	RouteUnicast     RouteType = unix.RTN_UNICAST
	RouteLocal       RouteType = unix.RTN_LOCAL
	RouteBroadcast   RouteType = unix.RTN_BROADCAST
	RouteAnycast     RouteType = unix.RTN_ANYCAST
	RouteMulticast   RouteType = unix.RTN_MULTICAST
	RouteBlackhole   RouteType = unix.RTN_BLACKHOLE
	RouteUnreachable RouteType = unix.RTN_UNREACHABLE
	RouteProhibit    RouteType = unix.RTN_PROHIBIT
)

func (t RouteType) String() string {
	switch t {
	case 0:
		return "unspec"
	case RouteUnicast:
		return "unicast"
	case RouteLocal:
		return "local"
	case RouteBroadcast:
		return "broadcast"
	case RouteAnycast:
		return "anycast"
	case RouteMulticast:
		return "multicast"
	case RouteBlackhole:
		return "blackhole"
	case RouteUnreachable:
		return "unreachable"
	case RouteProhibit:
		return "prohibit"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Scope is a route or address scope (RT_SCOPE_*).
type Scope uint8

// Scopes.
const (
	ScopeUniverse Scope = unix.RT_SCOPE_UNIVERSE
	ScopeSite     Scope = unix.RT_SCOPE_SITE
	ScopeLink     Scope = unix.RT_SCOPE_LINK
	ScopeHost     Scope = unix.RT_SCOPE_HOST
	ScopeNowhere  Scope = unix.RT_SCOPE_NOWHERE
)

// Route protocols (RTPROT_*) that the kernel itself uses or that are
// commonly used by hand; see /etc/iproute2/rt_protos.
const (
	ProtoUnspec   = unix.RTPROT_UNSPEC   // 0
	ProtoRedirect = unix.RTPROT_REDIRECT // 1
	ProtoKernel   = unix.RTPROT_KERNEL   // 2: connected routes of addresses
	ProtoBoot     = unix.RTPROT_BOOT     // 3: the default of `ip route add`
	ProtoStatic   = unix.RTPROT_STATIC   // 4: static routes set by an administrator
)

// TableMain is the main routing table. A zero Table in a request means it.
const TableMain = unix.RT_TABLE_MAIN

// Route is a kernel route. A route with one path has Gateway and/or
// LinkIndex; a multipath (ECMP) route has Nexthops instead.
type Route struct {
	Dst      netip.Prefix // masked; 0.0.0.0/0 or ::/0 for a default route
	Type     RouteType    // 0 means unicast in requests
	Protocol int          // RTPROT_*, 0..255
	Scope    Scope        // ignored for IPv6, which has no route scopes
	Table    int          // 0 means main in requests; listings report TableMain
	Priority int          // the metric; IPv6 turns 0 into 1024 (IP6_RT_PRIO_USER)

	LinkIndex int        // outgoing interface (also reported for IPv6 blackholes: lo)
	Gateway   netip.Addr // next hop, zero for a route straight out of LinkIndex
	OnLink    bool       // the gateway is on the link even without a connected route

	Nexthops []Nexthop // two or more for ECMP; then Gateway and LinkIndex are unset

	Src netip.Addr // preferred source address (RTA_PREFSRC)
}

// Nexthop is one path of a multipath route.
type Nexthop struct {
	Gateway   netip.Addr
	LinkIndex int
	Weight    int // 1..256; 0 means 1
	OnLink    bool
}

// Family returns the route's address family.
func (r Route) Family() Family { return FamilyOf(r.Dst.Addr()) }

func (r Route) String() string {
	var b strings.Builder
	if r.Type != 0 && r.Type != RouteUnicast {
		b.WriteString(r.Type.String())
		b.WriteByte(' ')
	}
	b.WriteString(r.Dst.String())
	if r.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gateway)
	}
	if r.LinkIndex != 0 {
		fmt.Fprintf(&b, " dev #%d", r.LinkIndex)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	for _, nh := range r.Nexthops {
		b.WriteString(" nexthop")
		if nh.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %s", nh.Gateway)
		}
		if nh.LinkIndex != 0 {
			fmt.Fprintf(&b, " dev #%d", nh.LinkIndex)
		}
		if nh.Weight > 1 {
			fmt.Fprintf(&b, " weight %d", nh.Weight)
		}
		if nh.OnLink {
			b.WriteString(" onlink")
		}
	}
	if r.Table != 0 && r.Table != TableMain {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	fmt.Fprintf(&b, " proto %d", r.Protocol)
	if r.Family() == FamilyV4 && r.Scope != ScopeUniverse {
		fmt.Fprintf(&b, " scope %d", r.Scope)
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	return b.String()
}

// RouteFilter selects routes to list.
type RouteFilter struct {
	Family   Family // FamilyAll for both
	Protocol int    // 0 for every protocol
	Table    int    // 0 for main
}

// RouteList lists the routes of one table (main unless the filter names
// another), for IPv4 and/or IPv6, leaving out cached (cloned) routes.
func (h *Handle) RouteList(f RouteFilter) ([]Route, error) {
	table := f.Table
	if table == 0 {
		table = TableMain
	}
	filter := &netlink.Route{Table: table, Protocol: netlink.RouteProtocol(f.Protocol)}
	mask := netlink.RT_FILTER_TABLE
	if f.Protocol != 0 {
		mask |= netlink.RT_FILTER_PROTOCOL
	}
	nrs, err := dump("listing routes", func() ([]netlink.Route, error) {
		return h.h.RouteListFiltered(int(f.Family), filter, mask)
	})
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(nrs))
	for _, nr := range nrs {
		if nr.Family != unix.AF_INET && nr.Family != unix.AF_INET6 {
			continue
		}
		out = append(out, fromNetlinkRoute(nr))
	}
	return out, nil
}

// RouteAdd adds r; it fails with an error matching ErrExists if a route
// with the same destination, table and metric exists (whatever its
// protocol).
func (h *Handle) RouteAdd(r Route) error {
	nr, err := toNetlinkRoute(r)
	if err != nil {
		return err
	}
	return wrap(fmt.Sprintf("adding route %s", r), h.h.RouteAdd(nr))
}

// RouteReplace adds r, or replaces the route with the same destination,
// table and metric (whatever its protocol: callers that must not touch
// other protocols check first).
func (h *Handle) RouteReplace(r Route) error {
	nr, err := toNetlinkRoute(r)
	if err != nil {
		return err
	}
	return wrap(fmt.Sprintf("replacing route %s", r), h.h.RouteReplace(nr))
}

// RouteDel deletes the route that matches r's destination, table, metric,
// protocol and type; a zero metric, protocol or type matches any. Next
// hops, scope and source are not compared: a multipath route goes away
// with all its paths. A missing route is an error matching ErrNotFound.
func (h *Handle) RouteDel(r Route) error {
	if !r.Dst.IsValid() {
		return fmt.Errorf("deleting route: no destination")
	}
	table := r.Table
	if table == 0 {
		table = TableMain
	}
	nr := &netlink.Route{
		Dst:      ipNetOf(r.Dst),
		Table:    table,
		Priority: r.Priority,
		Protocol: netlink.RouteProtocol(r.Protocol),
		Type:     int(r.Type),
		Scope:    netlink.SCOPE_NOWHERE, // any scope
	}
	return wrap(fmt.Sprintf("deleting route %s", r), h.h.RouteDel(nr))
}

func toNetlinkRoute(r Route) (*netlink.Route, error) {
	if !r.Dst.IsValid() {
		return nil, fmt.Errorf("route %s: no destination", r)
	}
	fam := r.Family()
	for _, a := range []netip.Addr{r.Gateway, r.Src} {
		if a.IsValid() && FamilyOf(a) != fam {
			return nil, fmt.Errorf("route %s: mixes address families", r)
		}
	}
	if len(r.Nexthops) > 0 && (r.Gateway.IsValid() || r.LinkIndex != 0) {
		return nil, fmt.Errorf("route %s: has both a single path and nexthops", r)
	}
	if r.Protocol < 0 || r.Protocol > 255 {
		return nil, fmt.Errorf("route %s: protocol out of range", r)
	}
	typ := r.Type
	if typ == 0 {
		typ = RouteUnicast
	}
	nr := &netlink.Route{
		Dst:       ipNetOf(r.Dst),
		Type:      int(typ),
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Scope:     netlink.Scope(r.Scope),
		Table:     r.Table,
		Priority:  r.Priority,
		LinkIndex: r.LinkIndex,
		Gw:        ipOf(r.Gateway),
		Src:       ipOf(r.Src),
	}
	if fam == FamilyV6 {
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	if r.OnLink {
		nr.Flags |= unix.RTNH_F_ONLINK
	}
	for _, nh := range r.Nexthops {
		if nh.Gateway.IsValid() && FamilyOf(nh.Gateway) != fam {
			return nil, fmt.Errorf("route %s: mixes address families", r)
		}
		if !nh.Gateway.IsValid() && nh.LinkIndex == 0 {
			return nil, fmt.Errorf("route %s: nexthop without gateway or link", r)
		}
		w := nh.Weight
		if w == 0 {
			w = 1
		}
		if w < 1 || w > 256 {
			return nil, fmt.Errorf("route %s: nexthop weight %d out of range", r, nh.Weight)
		}
		info := &netlink.NexthopInfo{LinkIndex: nh.LinkIndex, Gw: ipOf(nh.Gateway), Hops: w - 1}
		if nh.OnLink {
			info.Flags |= unix.RTNH_F_ONLINK
		}
		nr.MultiPath = append(nr.MultiPath, info)
	}
	return nr, nil
}

func fromNetlinkRoute(nr netlink.Route) Route {
	fam := Family(nr.Family)
	r := Route{
		Dst:       prefixOf(nr.Dst, fam),
		Type:      RouteType(nr.Type),
		Protocol:  int(nr.Protocol),
		Scope:     Scope(nr.Scope),
		Table:     nr.Table,
		Priority:  nr.Priority,
		LinkIndex: nr.LinkIndex,
		Gateway:   addrOf(nr.Gw, fam),
		OnLink:    nr.Flags&unix.RTNH_F_ONLINK != 0,
		Src:       addrOf(nr.Src, fam),
	}
	for _, nh := range nr.MultiPath {
		r.Nexthops = append(r.Nexthops, Nexthop{
			Gateway:   addrOf(nh.Gw, fam),
			LinkIndex: nh.LinkIndex,
			Weight:    nh.Hops + 1,
			OnLink:    nh.Flags&unix.RTNH_F_ONLINK != 0,
		})
	}
	return r
}

// SortRoutes sorts routes by family, destination and metric, for stable
// output and comparisons.
func SortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		if c := a.Dst.Bits() - b.Dst.Bits(); c != 0 {
			return c
		}
		return a.Priority - b.Priority
	})
}
