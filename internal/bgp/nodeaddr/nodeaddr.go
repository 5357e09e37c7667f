// Package nodeaddr finds the address a node uses for BGP (its router ID
// and the next hop of the routes it advertises), by one of the
// autodetection methods Calico users know:
//
//   - first-found: the first address of the family on the first interface
//     that is up and is not excluded (lo, docker0 and Tabby's own
//     interfaces, which start with "tabby");
//   - interface=REGEX[,REGEX...]: the first address on the first interface
//     whose whole name matches one of the regular expressions;
//   - can-reach=DEST: the source address the kernel picks to reach the IP
//     address DEST (found by connecting a UDP socket, which sends nothing);
//   - cidr=CIDR[,CIDR...]: the first address inside one of the CIDRs, on an
//     interface that is up and not excluded.
//
// Link-local, loopback, multicast and unspecified addresses are never
// picked. The result keeps the prefix length of the address's subnet, as
// Node.spec.bgp.ipv4Address and ipv6Address want ("10.0.0.1/24").
//
// The selection ([Detect]) is pure and works on a list of [Interface]
// values; [Interfaces] reads that list from the standard library, in the
// network namespace of the calling thread, and [KernelSource] asks the
// kernel for can-reach. The package uses only the standard library.
package nodeaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// Kind is an autodetection method.
type Kind int

// The autodetection methods.
const (
	FirstFound Kind = iota
	InterfaceRegex
	CanReach
	CIDR
)

func (k Kind) String() string {
	switch k {
	case FirstFound:
		return "first-found"
	case InterfaceRegex:
		return "interface"
	case CanReach:
		return "can-reach"
	case CIDR:
		return "cidr"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Method is a parsed autodetection method. The zero value is first-found.
type Method struct {
	Kind       Kind
	Interfaces []*regexp.Regexp // InterfaceRegex: anchored to the whole name
	Dest       netip.Addr       // CanReach
	CIDRs      []netip.Prefix   // CIDR
}

// ParseMethod parses "first-found", "interface=REGEX[,REGEX...]",
// "can-reach=IP" or "cidr=CIDR[,CIDR...]". The empty string is
// first-found.
func ParseMethod(s string) (Method, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "first-found" {
		return Method{Kind: FirstFound}, nil
	}
	key, val, ok := strings.Cut(s, "=")
	if !ok || val == "" {
		return Method{}, fmt.Errorf("autodetection method %q: want first-found, interface=REGEX, can-reach=IP or cidr=CIDR", s)
	}
	switch key {
	case "interface":
		m := Method{Kind: InterfaceRegex}
		for _, r := range strings.Split(val, ",") {
			re, err := regexp.Compile("^(?:" + r + ")$")
			if err != nil {
				return Method{}, fmt.Errorf("autodetection method %q: %w", s, err)
			}
			m.Interfaces = append(m.Interfaces, re)
		}
		return m, nil
	case "can-reach":
		a, err := netip.ParseAddr(val)
		if err != nil {
			return Method{}, fmt.Errorf("autodetection method %q: can-reach takes an IP address: %w", s, err)
		}
		return Method{Kind: CanReach, Dest: a.Unmap()}, nil
	case "cidr":
		m := Method{Kind: CIDR}
		for _, c := range strings.Split(val, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return Method{}, fmt.Errorf("autodetection method %q: %w", s, err)
			}
			m.CIDRs = append(m.CIDRs, p.Masked())
		}
		return m, nil
	}
	return Method{}, fmt.Errorf("autodetection method %q: unknown method %q", s, key)
}

// String returns the method in the form ParseMethod takes.
func (m Method) String() string {
	switch m.Kind {
	case InterfaceRegex:
		var rs []string
		for _, re := range m.Interfaces {
			rs = append(rs, strings.TrimSuffix(strings.TrimPrefix(re.String(), "^(?:"), ")$"))
		}
		return "interface=" + strings.Join(rs, ",")
	case CanReach:
		return "can-reach=" + m.Dest.String()
	case CIDR:
		var cs []string
		for _, c := range m.CIDRs {
			cs = append(cs, c.String())
		}
		return "cidr=" + strings.Join(cs, ",")
	}
	return m.Kind.String()
}

// Family is an IP address family.
type Family int

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) has(a netip.Addr) bool {
	return (f == IPv4) == a.Is4()
}

// Interface is a network interface and its addresses.
type Interface struct {
	Name     string
	Index    int
	Up       bool
	Loopback bool
	Addrs    []netip.Prefix // address with the prefix length of its subnet
}

// InterfacePrefix starts the names of Tabby's own interfaces (the host
// ends of workload veths); they never hold the node's address.
const InterfacePrefix = "tabby"

// excluded reports whether first-found and cidr skip the interface.
func excluded(i Interface) bool {
	return i.Loopback || i.Name == "lo" || i.Name == "docker0" || strings.HasPrefix(i.Name, InterfacePrefix)
}

// usable reports whether a may be a node address.
func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		!a.IsLinkLocalUnicast() && !a.IsLinkLocalMulticast()
}

// ErrNotFound is matched (errors.Is) by the error Detect returns when no
// address fits the method.
var ErrNotFound = errors.New("no address found")

// Router returns the local source address the kernel would use to reach
// dest. [KernelSource] is the real one.
type Router func(dest netip.Addr) (netip.Addr, error)

// Detect picks the node's address of family fam from ifaces by method m.
// route is used only by can-reach; it may be nil for the other methods.
// Interfaces are taken in the order given (the kernel's index order, from
// Interfaces), and addresses in the order of each interface.
func Detect(m Method, fam Family, ifaces []Interface, route Router) (netip.Prefix, error) {
	first := func(keepIface func(Interface) bool, keepAddr func(netip.Addr) bool) (netip.Prefix, error) {
		for _, i := range ifaces {
			if !keepIface(i) {
				continue
			}
			for _, p := range i.Addrs {
				a := p.Addr().Unmap()
				if fam.has(a) && usable(a) && keepAddr(a) {
					return netip.PrefixFrom(a, p.Bits()), nil
				}
			}
		}
		return netip.Prefix{}, fmt.Errorf("%s: %w for IPv%d", m, ErrNotFound, fam)
	}
	anyAddr := func(netip.Addr) bool { return true }
	upAndIncluded := func(i Interface) bool { return i.Up && !excluded(i) }

	switch m.Kind {
	case FirstFound:
		return first(upAndIncluded, anyAddr)
	case InterfaceRegex:
		return first(func(i Interface) bool {
			for _, re := range m.Interfaces {
				if re.MatchString(i.Name) {
					return true
				}
			}
			return false
		}, anyAddr)
	case CIDR:
		return first(upAndIncluded, func(a netip.Addr) bool {
			for _, c := range m.CIDRs {
				if c.Contains(a) {
					return true
				}
			}
			return false
		})
	case CanReach:
		if !fam.has(m.Dest) {
			return netip.Prefix{}, fmt.Errorf("%s: destination is not an IPv%d address", m, fam)
		}
		if route == nil {
			return netip.Prefix{}, fmt.Errorf("%s: no router to ask", m)
		}
		src, err := route(m.Dest)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: %w", m, err)
		}
		src = src.Unmap()
		if !usable(src) {
			return netip.Prefix{}, fmt.Errorf("%s: kernel chose unusable source address %s", m, src)
		}
		return first(func(Interface) bool { return true }, func(a netip.Addr) bool { return a == src })
	}
	return netip.Prefix{}, fmt.Errorf("unknown autodetection method %d", m.Kind)
}

// Interfaces lists the interfaces of the network namespace of the calling
// thread, with their addresses, in index order.
func Interfaces() ([]Interface, error) {
	nis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make([]Interface, 0, len(nis))
	for _, ni := range nis {
		addrs, err := ni.Addrs()
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s: %w", ni.Name, err)
		}
		i := Interface{
			Name:     ni.Name,
			Index:    ni.Index,
			Up:       ni.Flags&net.FlagUp != 0,
			Loopback: ni.Flags&net.FlagLoopback != 0,
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			ip = ip.Unmap()
			i.Addrs = append(i.Addrs, netip.PrefixFrom(ip, ones))
		}
		out = append(out, i)
	}
	return out, nil
}

// KernelSource returns the source address the kernel picks for a packet
// to dest, by connecting a UDP socket (which sends no packet) in the
// network namespace of the calling thread.
func KernelSource(dest netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dest, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("finding route to %s: %w", dest, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// Autodetect reads the interfaces of the calling thread's network
// namespace and picks the node's address by m.
func Autodetect(m Method, fam Family) (netip.Prefix, error) {
	ifaces, err := Interfaces()
	if err != nil {
		return netip.Prefix{}, err
	}
	return Detect(m, fam, ifaces, KernelSource)
}
