package nl_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/testkit"
)

// env is a "host" namespace with a veth into a "workload" namespace.
type env struct {
	host, wl *nl.Handle
	veth     nl.Link // host end, "hveth"
	peer     nl.Link // workload end, "eth0"
}

func open(t *testing.T, path string) *nl.Handle {
	t.Helper()
	h, err := nl.Open(path)
	if err != nil {
		t.Fatalf("nl.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newEnv(t *testing.T) *env {
	t.Helper()
	hostNS := testkit.NetNS(t)
	wlNS := testkit.NetNS(t)
	e := &env{host: open(t, hostNS.Path()), wl: open(t, wlNS.Path())}
	mac := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	l, err := e.host.CreateVeth(nl.Veth{Name: "hveth", MAC: mac, MTU: 1400, PeerName: "eth0", PeerNS: wlNS})
	if err != nil {
		t.Fatalf("CreateVeth: %v", err)
	}
	e.veth = l
	if e.peer, err = e.wl.LinkByName("eth0"); err != nil {
		t.Fatalf("peer not in workload namespace: %v", err)
	}
	return e
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func TestVethAndLinks(t *testing.T) {
	e := newEnv(t)
	if e.veth.Kind != "veth" || e.veth.MTU != 1400 || e.veth.MAC.String() != "ee:ee:ee:ee:ee:ee" || e.veth.Up {
		t.Errorf("host end = %+v, want down veth, MTU 1400, MAC ee:ee:ee:ee:ee:ee", e.veth)
	}
	if e.peer.Kind != "veth" || e.peer.MTU != 1400 {
		t.Errorf("peer = %+v, want veth with MTU 1400", e.peer)
	}
	// The peer is not visible in the host namespace, nor under its
	// temporary name in the workload's.
	if _, err := e.host.LinkByName("eth0"); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("LinkByName(eth0) in host: %v, want ErrNotFound", err)
	}
	wlLinks, err := e.wl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range wlLinks {
		names = append(names, l.Name)
	}
	if diff := cmp.Diff([]string{"eth0", "lo"}, names, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("workload links (-want +got):\n%s", diff)
	}

	mac := net.HardwareAddr{0xee, 0xee, 0xee, 0x00, 0x00, 0x01}
	if err := e.host.LinkSetMAC(e.veth.Index, mac); err != nil {
		t.Fatal(err)
	}
	if err := e.host.LinkSetUp(e.veth.Index); err != nil {
		t.Fatal(err)
	}
	got, err := e.host.LinkByName("hveth")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Up || got.MAC.String() != mac.String() {
		t.Errorf("after set: %+v, want up with MAC %s", got, mac)
	}
	pl, err := e.host.LinksWithPrefix("hv")
	if err != nil || len(pl) != 1 || pl[0].Name != "hveth" {
		t.Errorf("LinksWithPrefix(hv) = %v, %v; want [hveth]", pl, err)
	}

	// A clash of the final peer name fails and leaves nothing behind.
	_, err = e.host.CreateVeth(nl.Veth{Name: "hveth2", PeerName: "eth0", PeerNS: e.wl.NS()})
	if err == nil {
		t.Fatalf("CreateVeth with a taken peer name succeeded")
	}
	if _, err := e.host.LinkByName("hveth2"); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("after failed CreateVeth, hveth2: %v, want ErrNotFound", err)
	}
	if l, _ := e.wl.LinkList(); len(l) != 2 {
		t.Errorf("after failed CreateVeth, workload has %d links, want 2", len(l))
	}

	if _, err := e.host.CreateVeth(nl.Veth{Name: "this-name-is-too-long", PeerName: "x"}); err == nil {
		t.Errorf("CreateVeth with a 21-byte name succeeded")
	}

	if err := e.host.LinkDel(e.veth.Index); err != nil {
		t.Fatal(err)
	}
	if _, err := e.wl.LinkByName("eth0"); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("peer still there after deleting the host end: %v", err)
	}
	if err := e.host.LinkDel(e.veth.Index); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("second LinkDel: %v, want ErrNotFound", err)
	}
}

func TestAddrAndNeigh(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"10.1.2.3/32", "fd00:1::3/128"} {
		if err := e.wl.AddrAdd(nl.Addr{LinkIndex: e.peer.Index, Prefix: mustPrefix(p), NoDAD: true}); err != nil {
			t.Fatal(err)
		}
	}
	err := e.wl.AddrAdd(nl.Addr{LinkIndex: e.peer.Index, Prefix: mustPrefix("10.1.2.3/32")})
	if !errors.Is(err, nl.ErrExists) {
		t.Errorf("adding an address twice: %v, want ErrExists", err)
	}
	addrs, err := e.wl.AddrList(e.peer.Index, nl.FamilyAll)
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	for _, a := range addrs {
		got = append(got, a.Prefix)
		if a.Prefix.Addr().Is6() && !a.NoDAD {
			t.Errorf("%s: NoDAD not reported", a.Prefix)
		}
	}
	want := []netip.Prefix{mustPrefix("10.1.2.3/32"), mustPrefix("fd00:1::3/128")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("AddrList (-want +got):\n%s", diff)
	}
	v4, err := e.wl.AddrList(0, nl.FamilyV4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range v4 {
		if !a.Prefix.Addr().Is4() {
			t.Errorf("FamilyV4 listing has %s", a.Prefix)
		}
	}

	mac := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	n4 := nl.Neigh{LinkIndex: e.peer.Index, IP: mustAddr("169.254.1.1"), MAC: mac}
	n6 := nl.Neigh{LinkIndex: e.peer.Index, IP: mustAddr("fe80::1"), MAC: mac}
	for _, n := range []nl.Neigh{n4, n6, n4} { // twice: NeighSet is idempotent
		if err := e.wl.NeighSet(n); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := e.wl.NeighList(e.peer.Index, nl.FamilyAll)
	if err != nil {
		t.Fatal(err)
	}
	n4.Permanent, n6.Permanent = true, true
	opts := []cmp.Option{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b net.HardwareAddr) bool { return a.String() == b.String() }),
		cmpopts.SortSlices(func(a, b nl.Neigh) bool { return a.IP.Less(b.IP) }),
	}
	if diff := cmp.Diff([]nl.Neigh{n4, n6}, ns, opts...); diff != "" {
		t.Errorf("NeighList (-want +got):\n%s", diff)
	}
	if err := e.wl.NeighDel(n4); err != nil {
		t.Fatal(err)
	}
	if err := e.wl.NeighDel(n4); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("second NeighDel: %v, want ErrNotFound", err)
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t)
	h := e.host
	if err := h.LinkSetUp(e.veth.Index); err != nil {
		t.Fatal(err)
	}
	if err := e.wl.LinkSetUp(e.peer.Index); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(nl.Addr{LinkIndex: e.veth.Index, Prefix: mustPrefix("10.9.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(nl.Addr{LinkIndex: e.veth.Index, Prefix: mustPrefix("fd09::1/64"), NoDAD: true}); err != nil {
		t.Fatal(err)
	}
	const proto = 80
	idx := e.veth.Index
	routes := []nl.Route{
		{Dst: mustPrefix("10.1.0.2/32"), Protocol: proto, Scope: nl.ScopeLink, LinkIndex: idx},
		{Dst: mustPrefix("10.1.0.0/26"), Protocol: proto, Type: nl.RouteBlackhole},
		{Dst: mustPrefix("10.2.0.0/24"), Protocol: proto, Gateway: mustAddr("10.9.0.2"), Priority: 20},
		{Dst: mustPrefix("10.3.0.0/24"), Protocol: proto, Nexthops: []nl.Nexthop{
			{Gateway: mustAddr("10.9.0.2"), LinkIndex: idx}, {Gateway: mustAddr("10.9.0.3"), LinkIndex: idx},
		}},
		{Dst: mustPrefix("fd01::2/128"), Protocol: proto, LinkIndex: idx},
		{Dst: mustPrefix("fd01::/122"), Protocol: proto, Type: nl.RouteBlackhole},
		{Dst: mustPrefix("fd03::/64"), Protocol: proto, Nexthops: []nl.Nexthop{
			{Gateway: mustAddr("fd09::2"), LinkIndex: idx}, {Gateway: mustAddr("fd09::3"), LinkIndex: idx},
		}},
	}
	for _, r := range routes {
		if err := h.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.RouteAdd(routes[0]); !errors.Is(err, nl.ErrExists) {
		t.Errorf("adding a route twice: %v, want ErrExists", err)
	}
	// A route of another protocol, not in the filtered listing.
	static := nl.Route{Dst: mustPrefix("10.4.0.0/24"), Protocol: nl.ProtoStatic, Gateway: mustAddr("10.9.0.4")}
	if err := h.RouteAdd(static); err != nil {
		t.Fatal(err)
	}

	got, err := h.RouteList(nl.RouteFilter{Protocol: proto})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// What the kernel reports back: main table, IPv6 metric 1024, IPv6
	// blackholes on lo, resolved links for gateways.
	want := []nl.Route{
		{Dst: mustPrefix("10.1.0.0/26"), Protocol: proto, Type: nl.RouteBlackhole, Table: nl.TableMain},
		{Dst: mustPrefix("10.1.0.2/32"), Protocol: proto, Type: nl.RouteUnicast, Scope: nl.ScopeLink, LinkIndex: idx, Table: nl.TableMain},
		{Dst: mustPrefix("10.2.0.0/24"), Protocol: proto, Type: nl.RouteUnicast, Gateway: mustAddr("10.9.0.2"), LinkIndex: idx, Priority: 20, Table: nl.TableMain},
		{Dst: mustPrefix("10.3.0.0/24"), Protocol: proto, Type: nl.RouteUnicast, Table: nl.TableMain, Nexthops: []nl.Nexthop{
			{Gateway: mustAddr("10.9.0.2"), LinkIndex: idx, Weight: 1}, {Gateway: mustAddr("10.9.0.3"), LinkIndex: idx, Weight: 1},
		}},
		{Dst: mustPrefix("fd01::/122"), Protocol: proto, Type: nl.RouteBlackhole, Table: nl.TableMain, Priority: 1024, LinkIndex: lo.Index},
		{Dst: mustPrefix("fd01::2/128"), Protocol: proto, Type: nl.RouteUnicast, LinkIndex: idx, Table: nl.TableMain, Priority: 1024},
		{Dst: mustPrefix("fd03::/64"), Protocol: proto, Type: nl.RouteUnicast, Table: nl.TableMain, Priority: 1024, Nexthops: []nl.Nexthop{
			{Gateway: mustAddr("fd09::2"), LinkIndex: idx, Weight: 1}, {Gateway: mustAddr("fd09::3"), LinkIndex: idx, Weight: 1},
		}},
	}
	nl.SortRoutes(got)
	opts := cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("RouteList(proto %d) (-want +got):\n%s", proto, diff)
	}

	// Replace changes the next hop in place.
	r := routes[2]
	r.Gateway = mustAddr("10.9.0.5")
	if err := h.RouteReplace(r); err != nil {
		t.Fatal(err)
	}
	// Delete with our protocol never hits the static route.
	if err := h.RouteDel(nl.Route{Dst: static.Dst, Protocol: proto}); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("deleting a static route by our protocol: %v, want ErrNotFound", err)
	}
	for _, r := range want {
		if err := h.RouteDel(r); err != nil {
			t.Errorf("RouteDel: %v", err)
		}
	}
	if got, err := h.RouteList(nl.RouteFilter{Protocol: proto}); err != nil || len(got) != 0 {
		t.Errorf("after deleting all: %v, %v", got, err)
	}
	all, err := h.RouteList(nl.RouteFilter{Family: nl.FamilyV4})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range all {
		if r.Dst == static.Dst && r.Protocol == nl.ProtoStatic {
			found = true
		}
		if r.Dst.Addr().Is6() {
			t.Errorf("FamilyV4 listing has %s", r)
		}
	}
	if !found {
		t.Errorf("static route gone: %v", all)
	}
}

func TestSysctl(t *testing.T) {
	e := newEnv(t)
	const name = "net.ipv4.conf.hveth.proxy_arp"
	if v, err := e.host.SysctlGet(name); err != nil || v != "0" {
		t.Fatalf("SysctlGet(%s) = %q, %v; want 0", name, v, err)
	}
	if err := e.host.SysctlSet(name, "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := e.host.SysctlGet(name); err != nil || v != "1" {
		t.Errorf("after set: %q, %v; want 1", v, err)
	}
	// Slash form, and the write stayed in the host namespace.
	if v, err := e.wl.SysctlGet("net/ipv4/conf/eth0/proxy_arp"); err != nil || v != "0" {
		t.Errorf("workload eth0 proxy_arp = %q, %v; want 0", v, err)
	}
	if _, err := e.host.SysctlGet("net.ipv4.conf.nosuchlink.proxy_arp"); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("sysctl of a missing link: %v, want ErrNotFound", err)
	}
	if err := e.host.SysctlSet("net.ipv4.conf.nosuchlink.proxy_arp", "1"); !errors.Is(err, nl.ErrNotFound) {
		t.Errorf("writing sysctl of a missing link: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"kernel.hostname", "net/../kernel/hostname", "/net/ipv4/ip_forward"} {
		if _, err := e.host.SysctlGet(bad); err == nil {
			t.Errorf("SysctlGet(%q) allowed", bad)
		}
	}
}
