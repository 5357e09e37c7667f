package links_test

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// workload is a workload namespace wired to the host the way the CNI
// plugin will do it.
type workload struct {
	ns    *netns.NS
	h     *nl.Handle
	iface string // host side
	v4    netip.Addr
	v6    netip.Addr
}

var gatewayMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newWorkload makes a namespace with eth0 (peer of the host's iface),
// addresses v4/32 and v6/128 (nodad), and IPv4 default route via
// 169.254.1.1 onlink with a permanent neighbour entry for it. The IPv6
// default route needs the host side's link-local address, added later.
func newWorkload(t *testing.T, host *nl.Handle, id, v4, v6 string) *workload {
	t.Helper()
	ns := testkit.NetNS(t)
	w := &workload{ns: ns, iface: links.InterfaceName("tabby", id), v4: netip.MustParseAddr(v4), v6: netip.MustParseAddr(v6)}
	w.h, _ = nl.Open(ns.Path())
	t.Cleanup(func() { w.h.Close() })
	if _, err := host.CreateVeth(nl.Veth{Name: w.iface, PeerName: "eth0", PeerNS: ns}); err != nil {
		t.Fatal(err)
	}
	eth0, err := w.h.LinkByName("eth0")
	must(t, err)
	lo, err := w.h.LinkByName("lo")
	must(t, err)
	must(t, w.h.SysctlSet("net.ipv6.conf.eth0.accept_dad", "0"))
	must(t, w.h.LinkSetUp(lo.Index))
	must(t, w.h.LinkSetUp(eth0.Index))
	must(t, w.h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(w.v4, 32)}))
	must(t, w.h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(w.v6, 128), NoDAD: true}))
	gw := netip.MustParseAddr("169.254.1.1")
	must(t, w.h.NeighSet(nl.Neigh{LinkIndex: eth0.Index, IP: gw, MAC: gatewayMAC}))
	must(t, w.h.RouteAdd(nl.Route{
		Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw, OnLink: true, LinkIndex: eth0.Index, Protocol: nl.ProtoBoot,
	}))
	return w
}

// setIPv6Gateway adds the IPv6 default route via the host side's
// link-local address, once that address is there and usable.
func (w *workload) setIPv6Gateway(t *testing.T, host *nl.Handle) {
	t.Helper()
	hl, err := host.LinkByName(w.iface)
	must(t, err)
	var ll netip.Addr
	deadline := time.Now().Add(10 * time.Second)
	for !ll.IsValid() {
		addrs, err := host.AddrList(hl.Index, nl.FamilyV6)
		must(t, err)
		for _, a := range addrs {
			if a.Prefix.Addr().IsLinkLocalUnicast() && !a.Tentative {
				ll = a.Prefix.Addr()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no usable link-local address: %v", w.iface, addrs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eth0, err := w.h.LinkByName("eth0")
	must(t, err)
	must(t, w.h.RouteAdd(nl.Route{
		Dst: netip.MustParsePrefix("::/0"), Gateway: ll, LinkIndex: eth0.Index, Protocol: nl.ProtoBoot,
	}))
}

func requirePing(t *testing.T) {
	t.Helper()
	testkit.RequireCommand(t, "ping", "iputils-ping")
}

// pingOnce runs `ip netns exec NAME ping -c1 -W1 dst`.
func pingOnce(ns *netns.NS, dst netip.Addr) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name := ns.Path()[len(netns.RunDir)+1:]
	return exec.CommandContext(ctx, "ip", "netns", "exec", name, "ping", "-c1", "-W1", dst.String()).CombinedOutput()
}

// ping pings dst from inside ns, trying up to three times (the first
// packet may wait for neighbour resolution).
func ping(t *testing.T, ns *netns.NS, dst netip.Addr) {
	t.Helper()
	var out []byte
	var err error
	for range 3 {
		if out, err = pingOnce(ns, dst); err == nil {
			return
		}
	}
	t.Errorf("ping %s from %s: %v\n%s", dst, ns.Path(), err, out)
}

// TestEndToEndPing wires a host namespace and two workload namespaces as
// Tabby will, lets the links and routes managers program the host, and
// pings between the workloads over IPv4 and IPv6.
func TestEndToEndPing(t *testing.T) {
	testkit.RequireRoot(t)
	requirePing(t)
	hostNS := testkit.NetNS(t)
	host, err := nl.Open(hostNS.Path())
	must(t, err)
	t.Cleanup(func() { host.Close() })
	lo, err := host.LinkByName("lo")
	must(t, err)
	must(t, host.LinkSetUp(lo.Index))

	a := newWorkload(t, host, "wl-a", "10.65.0.2", "fd65::2")
	b := newWorkload(t, host, "wl-b", "10.65.0.3", "fd65::3")

	lm, err := links.New(links.Config{}, host, nil)
	must(t, err)
	rm, err := routes.New(routes.Config{}, host, nil)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var want []routes.Route
	var ifaces []links.Interface
	for _, w := range []*workload{a, b} {
		ifaces = append(ifaces, links.Interface{Name: w.iface, IPv4: true, IPv6: true})
		want = append(want,
			routes.Route{Dst: netip.PrefixFrom(w.v4, 32), Dev: w.iface},
			routes.Route{Dst: netip.PrefixFrom(w.v6, 128), Dev: w.iface})
	}

	// Before the host is programmed, workloads cannot reach each other.
	if out, err := pingOnce(a.ns, b.v4); err == nil {
		t.Fatalf("ping worked before the host was programmed:\n%s", out)
	}

	// Routes first: the host sides are still down, so they wait.
	rm.Set(want)
	res, err := rm.Apply(ctx)
	must(t, err)
	if len(res.Pending) != 4 {
		t.Fatalf("routes before links: %+v, want 4 pending", res)
	}

	lm.Set(ifaces)
	lres, err := lm.Apply(ctx)
	must(t, err)
	for _, st := range lres.Interfaces {
		if !st.Configured {
			t.Fatalf("interface not configured: %+v", st)
		}
	}
	res, err = rm.Apply(ctx)
	must(t, err)
	if res.Added != 4 {
		t.Fatalf("routes after links: %+v, want 4 added", res)
	}

	for _, w := range []*workload{a, b} {
		w.setIPv6Gateway(t, host)
	}

	ping(t, a.ns, b.v4)
	ping(t, a.ns, b.v6)
	ping(t, b.ns, a.v4)
	ping(t, b.ns, a.v6)

	// Nothing to do any more.
	if lres, err := lm.Apply(ctx); err != nil || lres.Writes != 0 {
		t.Errorf("links re-Apply = %+v, %v; want no writes", lres, err)
	}
	if res, err := rm.Apply(ctx); err != nil || res.Writes() != 0 {
		t.Errorf("routes re-Apply = %+v, %v; want no writes", res, err)
	}
}
