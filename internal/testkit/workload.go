package testkit

import (
	"net"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/netns"
)

// HostSideMAC is the MAC of the host side of every workload interface
// (the links manager sets it, the CNI plugin creates the veth with it), so
// the host side's IPv6 link-local address is always GatewayV6.
var HostSideMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}

// The workload's gateways: 169.254.1.1, answered by a permanent neighbour
// entry, and the host side's EUI-64 link-local address.
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
)

// Workload is a workload namespace wired to a host namespace the way the
// CNI plugin wires it.
type Workload struct {
	NS        *netns.NS
	Handle    *nl.Handle // netlink in NS, closed by t.Cleanup
	HostIface string     // the host side of the veth
	V4, V6    netip.Addr
}

// NewWorkload makes a namespace with eth0, the peer of hostIface in host;
// eth0 carries v4/32 and v6/128 (nodad), a default route via GatewayV4
// onlink with a permanent neighbour entry for it, and an IPv6 default
// route via GatewayV6. The host side is created with HostSideMAC and left
// down: programming it is the job of the code under test.
func NewWorkload(t testing.TB, host *nl.Handle, hostIface string, v4, v6 netip.Addr) *Workload {
	t.Helper()
	w := &Workload{NS: NetNS(t), HostIface: hostIface, V4: v4, V6: v6}
	h, err := nl.Open(w.NS.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	w.Handle = h
	if _, err := host.CreateVeth(nl.Veth{Name: hostIface, MAC: HostSideMAC, PeerName: "eth0", PeerNS: w.NS}); err != nil {
		t.Fatal(err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return h.SysctlSet("net.ipv6.conf.eth0.accept_dad", "0") },
		func() error { return h.LinkSetUp(lo.Index) },
		func() error { return h.LinkSetUp(eth0.Index) },
		func() error { return h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(v4, 32)}) },
		func() error {
			return h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(v6, 128), NoDAD: true})
		},
		func() error {
			return h.NeighSet(nl.Neigh{LinkIndex: eth0.Index, IP: GatewayV4, MAC: HostSideMAC, Permanent: true})
		},
		func() error {
			return h.RouteAdd(nl.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: GatewayV4, OnLink: true,
				LinkIndex: eth0.Index, Protocol: nl.ProtoBoot})
		},
		func() error {
			return h.RouteAdd(nl.Route{Dst: netip.MustParsePrefix("::/0"), Gateway: GatewayV6,
				LinkIndex: eth0.Index, Protocol: nl.ProtoBoot})
		},
	} {
		if err := step(); err != nil {
			t.Fatalf("wiring workload %s: %v", hostIface, err)
		}
	}
	return w
}
