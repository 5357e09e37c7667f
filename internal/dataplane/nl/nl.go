// Package nl is Tabby's only door to rtnetlink: routes, links, addresses,
// neighbours and per-namespace sysctls of one network namespace.
//
// It is the only package that imports github.com/vishvananda/netlink. Its
// types are plain Go and net/netip types, so the managers above it (routes,
// links, the CNI plugin, the lab) never see netlink types and can be tested
// against small interfaces that they define themselves.
//
// A [Handle] is bound to one network namespace for its whole life: its
// netlink sockets are created inside that namespace (netlink.NewHandleAt),
// so no OS thread has to switch namespaces for netlink calls. Sysctls are
// files under /proc/sys/net, which show the namespace of the thread that
// opens them, so they are read and written inside [netns.NS.Do].
//
// Dumps that the kernel marks as interrupted (NLM_F_DUMP_INTR: the table
// changed while it was being dumped) are retried a few times, so a listing
// is always consistent.
package nl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// Family is an address family.
type Family int

// Address families.
const (
	FamilyAll Family = unix.AF_UNSPEC
	FamilyV4  Family = unix.AF_INET
	FamilyV6  Family = unix.AF_INET6
)

func (f Family) String() string {
	switch f {
	case FamilyAll:
		return "all"
	case FamilyV4:
		return "ipv4"
	case FamilyV6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", int(f))
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return FamilyV4
	}
	return FamilyV6
}

// ErrNotFound is matched (errors.Is) by errors about something that does
// not exist: a link, a route or neighbour to delete, a sysctl file.
var ErrNotFound = errors.New("not found")

// ErrExists is matched (errors.Is) by errors about adding something that
// already exists.
var ErrExists = errors.New("already exists")

// Handle does rtnetlink and sysctl work in one network namespace. Its
// methods are safe for concurrent use; each is one request (or one dump) to
// the kernel, and none of them caches anything.
type Handle struct {
	ns *netns.NS
	h  *netlink.Handle
}

// Open returns a Handle for the network namespace at nsPath, for example
// /run/netns/NAME, /proc/PID/ns/net, or /proc/self/ns/net for the
// process's own namespace.
func Open(nsPath string) (*Handle, error) {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	return &Handle{ns: ns, h: h}, nil
}

// NS returns the namespace the handle works in. It stays valid until Close.
func (h *Handle) NS() *netns.NS { return h.ns }

// Close releases the handle's sockets and namespace handle.
func (h *Handle) Close() error {
	h.h.Close()
	return h.ns.Close()
}

// dumpRetries bounds retries of interrupted dumps.
const dumpRetries = 5

// dump runs a netlink dump, retrying it while the kernel reports it as
// interrupted.
func dump[T any](what string, fn func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpRetries {
		var out []T
		out, err = fn()
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, wrap(what, err)
		}
	}
	return nil, wrap(what, err)
}

// kindError makes a kernel error also match ErrNotFound or ErrExists.
type kindError struct {
	kind error
	err  error
}

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }

// wrap prefixes err with what, and classifies it for ErrNotFound and
// ErrExists.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var lnf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &lnf), errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT),
		errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		err = kindError{kind: ErrNotFound, err: err}
	case errors.Is(err, unix.EEXIST):
		err = kindError{kind: ErrExists, err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ipOf returns a as a net.IP of its own length (4 or 16), or nil.
func ipOf(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// addrOf returns ip as a netip.Addr: 4-byte slices become IPv4 addresses,
// 16-byte ones IPv6 (IPv4-mapped ones are unmapped only when fam is V4).
func addrOf(ip net.IP, fam Family) netip.Addr {
	if len(ip) == 0 {
		return netip.Addr{}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if fam == FamilyV4 {
		a = a.Unmap()
	}
	return a
}

func ipNetOf(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	p = p.Masked()
	return &net.IPNet{IP: ipOf(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet, fam Family) netip.Prefix {
	if n == nil {
		switch fam {
		case FamilyV4:
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case FamilyV6:
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrOf(n.IP, fam), ones)
}

// linkRef is the netlink.Link value the library needs to name a link by
// index.
func linkRef(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}
