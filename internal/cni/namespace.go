package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

// hostNSPath is the plugin's own network namespace: the host's. /proc/self
// names the main thread's namespace, which the plugin never switches.
const hostNSPath = "/proc/self/ns/net"

// The workload's gateways: a link-local IPv4 address that proxy ARP on
// the host side answers for, and the host side's IPv6 link-local address
// (EUI-64 of ee:ee:ee:ee:ee:ee).
var (
	gatewayV4 = netip.MustParseAddr("169.254.1.1")
	gatewayV6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
	// hostMAC is links.DefaultMAC, the MAC of every host side.
	hostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
)

// errNoNetNS is wrapped by inNetNS's error when the namespace does not
// exist (any more).
var errNoNetNS = errors.New("network namespace does not exist")

// inNetNS is the one way the plugin works in a network namespace: it runs
// fn with a netlink and sysctl handle bound to the namespace at path, and
// closes it afterwards. A missing namespace is an error wrapping
// errNoNetNS.
func inNetNS(path string, fn func(h *nl.Handle) error) error {
	h, err := nl.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", errNoNetNS, path)
		}
		return err
	}
	defer h.Close()
	return fn(h)
}

// veth is the plumbing of one attachment.
type veth struct {
	hostIf string // host side
	ifName string // workload side
	netns  string // the workload's namespace
	mtu    int
	addrs  []netip.Addr
}

// hasFamily reports whether addrs has an address of IPv4 (want4) or IPv6.
func hasFamily(addrs []netip.Addr, want4 bool) bool {
	return slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Is4() == want4 })
}

// setUp creates the veth pair and configures both ends. A host side of
// the same name is deleted first: it is left from an earlier ADD of this
// container or of an older sandbox of the same pod. It returns the
// workload side's MAC address. On error it removes what it made.
func (v veth) setUp() (net.HardwareAddr, error) {
	v4, v6 := hasFamily(v.addrs, true), hasFamily(v.addrs, false)
	var wlMAC net.HardwareAddr
	err := inNetNS(hostNSPath, func(host *nl.Handle) error {
		if old, err := host.LinkByName(v.hostIf); err == nil {
			if err := host.LinkDel(old.Index); err != nil && !errors.Is(err, nl.ErrNotFound) {
				return fmt.Errorf("deleting the stale host-side interface %s: %w", v.hostIf, err)
			}
		} else if !errors.Is(err, nl.ErrNotFound) {
			return err
		}
		return inNetNS(v.netns, func(wl *nl.Handle) error {
			if _, err := wl.LinkByName(v.ifName); err == nil {
				return fmt.Errorf("interface %s already exists in %s", v.ifName, v.netns)
			}
			hl, err := host.CreateVeth(nl.Veth{Name: v.hostIf, MAC: hostMAC, MTU: v.mtu, PeerName: v.ifName, PeerNS: wl.NS()})
			if err != nil {
				return err
			}
			mac, err := v.configure(host, wl, hl, v4, v6)
			if err != nil {
				if derr := host.LinkDel(hl.Index); derr != nil && !errors.Is(derr, nl.ErrNotFound) {
					err = errors.Join(err, derr)
				}
				return err
			}
			wlMAC = mac
			return nil
		})
	})
	return wlMAC, err
}

// configure brings up the host side (accept_dad off first, so that its
// link-local address, the IPv6 gateway, is usable at once) and sets up
// the workload side. The agent does the rest of the host side: proxy ARP,
// forwarding, routes and policy.
func (v veth) configure(host, wl *nl.Handle, hl nl.Link, v4, v6 bool) (net.HardwareAddr, error) {
	if v6 {
		if err := host.SysctlSet("net/ipv6/conf/"+v.hostIf+"/accept_dad", "0"); err != nil {
			return nil, err
		}
	}
	if err := host.LinkSetUp(hl.Index); err != nil {
		return nil, err
	}
	wlLink, err := wl.LinkByName(v.ifName)
	if err != nil {
		return nil, err
	}
	if v6 {
		if err := wl.SysctlSet("net/ipv6/conf/"+v.ifName+"/accept_dad", "0"); err != nil {
			return nil, err
		}
	}
	if err := wl.LinkSetUp(wlLink.Index); err != nil {
		return nil, err
	}
	idx := wlLink.Index
	for _, a := range v.addrs {
		if err := wl.AddrAdd(nl.Addr{LinkIndex: idx, Prefix: netip.PrefixFrom(a, a.BitLen()), NoDAD: a.Is6()}); err != nil {
			return nil, err
		}
	}
	if v4 {
		// ip route add 169.254.1.1 dev IF scope link
		// ip route add default via 169.254.1.1 dev IF
		// ip neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev IF nud permanent
		for _, r := range []nl.Route{
			{Dst: netip.PrefixFrom(gatewayV4, 32), LinkIndex: idx, Scope: nl.ScopeLink, Protocol: nl.ProtoStatic},
			{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: gatewayV4, LinkIndex: idx, Protocol: nl.ProtoStatic},
		} {
			if err := wl.RouteAdd(r); err != nil {
				return nil, err
			}
		}
		if err := wl.NeighSet(nl.Neigh{LinkIndex: idx, IP: gatewayV4, MAC: hostMAC, Permanent: true}); err != nil {
			return nil, err
		}
	}
	if v6 {
		// ip neigh add fe80::ecee:eeff:feee:eeee lladdr ee:ee:ee:ee:ee:ee dev IF nud permanent
		// ip -6 route add default via fe80::ecee:eeff:feee:eeee dev IF
		if err := wl.NeighSet(nl.Neigh{LinkIndex: idx, IP: gatewayV6, MAC: hostMAC, Permanent: true}); err != nil {
			return nil, err
		}
		r := nl.Route{Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Gateway: gatewayV6, LinkIndex: idx, Protocol: nl.ProtoStatic}
		if err := wl.RouteAdd(r); err != nil {
			return nil, err
		}
	}
	return wlLink.MAC, nil
}

// tearDown deletes the workload side (which takes the host side with it)
// and, if hostIfOurs, the host side by name (the namespace may be gone
// while the host side is not). Everything missing counts as done.
func (v veth) tearDown(hostIfOurs bool) error {
	var errs []error
	if v.netns != "" {
		err := inNetNS(v.netns, func(wl *nl.Handle) error { return delVeth(wl, v.ifName) })
		if err != nil && !errors.Is(err, errNoNetNS) {
			errs = append(errs, err)
		}
	}
	if hostIfOurs && v.hostIf != "" {
		errs = append(errs, inNetNS(hostNSPath, func(host *nl.Handle) error { return delVeth(host, v.hostIf) }))
	}
	return errors.Join(errs...)
}

// delVeth deletes the veth called name; a missing link, or one that is
// not a veth (not ours), is left alone.
func delVeth(h *nl.Handle, name string) error {
	l, err := h.LinkByName(name)
	if errors.Is(err, nl.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Kind != "veth" {
		return nil
	}
	if err := h.LinkDel(l.Index); err != nil && !errors.Is(err, nl.ErrNotFound) {
		return err
	}
	return nil
}

// verify checks the plumbing (CHECK): both sides exist and are up, the
// workload side has exactly the addresses, the gateway routes and the
// neighbour entries.
func (v veth) verify() error {
	v4, v6 := hasFamily(v.addrs, true), hasFamily(v.addrs, false)
	err := inNetNS(hostNSPath, func(host *nl.Handle) error {
		l, err := host.LinkByName(v.hostIf)
		if err != nil {
			return fmt.Errorf("host side: %w", err)
		}
		if l.Kind != "veth" || !l.Up {
			return fmt.Errorf("host side %s: want an up veth, have kind %q up=%v", v.hostIf, l.Kind, l.Up)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return inNetNS(v.netns, func(wl *nl.Handle) error {
		l, err := wl.LinkByName(v.ifName)
		if err != nil {
			return fmt.Errorf("workload side: %w", err)
		}
		if l.Kind != "veth" || !l.Up {
			return fmt.Errorf("workload side %s: want an up veth, have kind %q up=%v", v.ifName, l.Kind, l.Up)
		}
		if v.mtu != 0 && l.MTU != v.mtu {
			return fmt.Errorf("workload side %s: MTU %d, want %d", v.ifName, l.MTU, v.mtu)
		}
		have, err := wl.AddrList(l.Index, nl.FamilyAll)
		if err != nil {
			return err
		}
		var got []netip.Prefix
		for _, a := range have {
			if !a.Prefix.Addr().IsLinkLocalUnicast() {
				got = append(got, a.Prefix)
			}
		}
		for _, a := range v.addrs {
			want := netip.PrefixFrom(a, a.BitLen())
			if !slices.Contains(got, want) {
				return fmt.Errorf("workload side %s: address %s missing (has %v)", v.ifName, want, got)
			}
		}
		if len(got) != len(v.addrs) {
			return fmt.Errorf("workload side %s: addresses %v, want %v", v.ifName, got, v.addrs)
		}
		routes, err := wl.RouteList(nl.RouteFilter{Family: nl.FamilyAll})
		if err != nil {
			return err
		}
		type want struct {
			dst netip.Prefix
			gw  netip.Addr
		}
		var wants []want
		if v4 {
			wants = append(wants, want{netip.PrefixFrom(gatewayV4, 32), netip.Addr{}}, want{netip.PrefixFrom(netip.IPv4Unspecified(), 0), gatewayV4})
		}
		if v6 {
			wants = append(wants, want{netip.PrefixFrom(netip.IPv6Unspecified(), 0), gatewayV6})
		}
		for _, w := range wants {
			if !slices.ContainsFunc(routes, func(r nl.Route) bool { return r.Dst == w.dst && r.Gateway == w.gw && r.LinkIndex == l.Index }) {
				return fmt.Errorf("workload side: route %s via %v dev %s missing", w.dst, w.gw, v.ifName)
			}
		}
		neighs, err := wl.NeighList(l.Index, nl.FamilyAll)
		if err != nil {
			return err
		}
		for _, gw := range []struct {
			ip   netip.Addr
			want bool
		}{{gatewayV4, v4}, {gatewayV6, v6}} {
			if gw.want && !slices.ContainsFunc(neighs, func(n nl.Neigh) bool {
				return n.IP == gw.ip && n.Permanent && n.MAC.String() == hostMAC.String()
			}) {
				return fmt.Errorf("workload side: permanent neighbour %s lladdr %s missing", gw.ip, hostMAC)
			}
		}
		return nil
	})
}

// hostMTU returns the MTU of the host's interface with the default route
// (IPv4 first, then IPv6), or 1500 if the host has none.
func hostMTU() (int, error) {
	mtu := 1500
	err := inNetNS(hostNSPath, func(host *nl.Handle) error {
		for _, fam := range []nl.Family{nl.FamilyV4, nl.FamilyV6} {
			routes, err := host.RouteList(nl.RouteFilter{Family: fam})
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Dst.Bits() != 0 || r.Type != nl.RouteUnicast {
					continue
				}
				idx := r.LinkIndex
				if idx == 0 && len(r.Nexthops) > 0 {
					idx = r.Nexthops[0].LinkIndex
				}
				ls, err := host.LinkList()
				if err != nil {
					return err
				}
				for _, l := range ls {
					if l.Index == idx && l.MTU > 0 {
						mtu = l.MTU
						return nil
					}
				}
			}
		}
		return nil
	})
	return mtu, err
}
