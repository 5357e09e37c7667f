package nl

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// MaxNameLen is the longest interface name the kernel accepts (IFNAMSIZ-1).
const MaxNameLen = unix.IFNAMSIZ - 1

// Link is a network interface.
type Link struct {
	Index int
	Name  string
	Kind  string // "veth", "bridge", "vxlan", ...; "" for plain devices such as lo
	MAC   net.HardwareAddr
	MTU   int
	Up    bool // administratively up (IFF_UP)
}

// LinkList lists every link in the namespace.
func (h *Handle) LinkList() ([]Link, error) {
	nls, err := dump("listing links", h.h.LinkList)
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(nls))
	for _, l := range nls {
		out = append(out, fromNetlinkLink(l))
	}
	return out, nil
}

// LinksWithPrefix lists the links whose names start with prefix.
func (h *Handle) LinksWithPrefix(prefix string) ([]Link, error) {
	all, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, l := range all {
		if strings.HasPrefix(l.Name, prefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

// LinkByName returns the named link, or an error matching ErrNotFound.
func (h *Handle) LinkByName(name string) (Link, error) {
	l, err := h.h.LinkByName(name)
	if err != nil {
		return Link{}, wrap(fmt.Sprintf("link %s", name), err)
	}
	return fromNetlinkLink(l), nil
}

// LinkSetMAC sets the link's hardware address.
func (h *Handle) LinkSetMAC(index int, mac net.HardwareAddr) error {
	return wrap(fmt.Sprintf("setting MAC of link #%d to %s", index, mac), h.h.LinkSetHardwareAddr(linkRef(index), mac))
}

// LinkSetUp sets the link administratively up. Setting an up link up again
// is a no-op for the kernel, but still a write.
func (h *Handle) LinkSetUp(index int) error {
	return wrap(fmt.Sprintf("setting link #%d up", index), h.h.LinkSetUp(linkRef(index)))
}

// LinkSetDown sets the link administratively down.
func (h *Handle) LinkSetDown(index int) error {
	return wrap(fmt.Sprintf("setting link #%d down", index), h.h.LinkSetDown(linkRef(index)))
}

// LinkSetMTU sets the link's MTU.
func (h *Handle) LinkSetMTU(index, mtu int) error {
	return wrap(fmt.Sprintf("setting MTU of link #%d to %d", index, mtu), h.h.LinkSetMTU(linkRef(index), mtu))
}

// LinkDel deletes the link. Deleting one end of a veth pair deletes both.
// A missing link is an error matching ErrNotFound.
func (h *Handle) LinkDel(index int) error {
	return wrap(fmt.Sprintf("deleting link #%d", index), h.h.LinkDel(linkRef(index)))
}

// Veth describes a veth pair to create.
type Veth struct {
	Name string           // this namespace's end
	MAC  net.HardwareAddr // optional
	MTU  int              // optional, both ends

	PeerName string           // the other end's final name, e.g. "eth0"
	PeerMAC  net.HardwareAddr // optional
	PeerNS   *netns.NS        // where the other end goes; nil for this namespace
}

// CreateVeth creates a veth pair with one end, v.Name, in this namespace
// and the other in v.PeerNS, named v.PeerName there. The peer is created
// under a random temporary name straight inside the peer namespace, then
// renamed there, so a name taken in this namespace never clashes with it.
// Both ends are left down. On failure nothing is left behind. It returns
// this namespace's end.
func (h *Handle) CreateVeth(v Veth) (Link, error) {
	for _, n := range []string{v.Name, v.PeerName} {
		if err := CheckName(n); err != nil {
			return Link{}, fmt.Errorf("creating veth: %w", err)
		}
	}
	what := fmt.Sprintf("creating veth %s/%s", v.Name, v.PeerName)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.Name
	attrs.MTU = v.MTU
	attrs.HardwareAddr = v.MAC
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: v.PeerName, PeerHardwareAddr: v.PeerMAC}
	if v.PeerNS == nil {
		if err := h.h.LinkAdd(veth); err != nil {
			return Link{}, wrap(what, err)
		}
		return h.LinkByName(v.Name)
	}

	tmp, err := tempName()
	if err != nil {
		return Link{}, fmt.Errorf("%s: %w", what, err)
	}
	veth.PeerName = tmp
	veth.PeerNamespace = netlink.NsFd(v.PeerNS.Fd())
	if err := h.h.LinkAdd(veth); err != nil {
		return Link{}, wrap(what, err)
	}
	l, err := h.LinkByName(v.Name)
	if err == nil {
		err = renameIn(v.PeerNS, tmp, v.PeerName)
	}
	if err != nil {
		if l.Index != 0 {
			_ = h.LinkDel(l.Index)
		} else if nl, lerr := h.h.LinkByName(v.Name); lerr == nil {
			_ = h.h.LinkDel(nl)
		}
		return Link{}, fmt.Errorf("%s: %w", what, err)
	}
	return l, nil
}

// renameIn renames link from to to inside ns.
func renameIn(ns *netns.NS, from, to string) error {
	ph, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", ns.Path(), err)
	}
	defer ph.Close()
	l, err := ph.LinkByName(from)
	if err != nil {
		return wrap(fmt.Sprintf("finding peer %s in %s", from, ns.Path()), err)
	}
	if err := ph.LinkSetName(l, to); err != nil {
		return wrap(fmt.Sprintf("renaming peer %s to %s in %s", from, to, ns.Path()), err)
	}
	return nil
}

func tempName() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "tbtmp" + hex.EncodeToString(b[:]), nil
}

// CheckName reports whether name is a valid interface name: 1 to 15 bytes,
// no '/', ':' or white space, and not "." or "..".
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("interface name %q longer than %d bytes", name, MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Errorf("interface name %q has a '/', ':' or space", name)
	}
	return nil
}

func fromNetlinkLink(l netlink.Link) Link {
	a := l.Attrs()
	kind := l.Type()
	if kind == "device" {
		kind = ""
	}
	return Link{
		Index: a.Index,
		Name:  a.Name,
		Kind:  kind,
		MAC:   a.HardwareAddr,
		MTU:   a.MTU,
		Up:    a.Flags&net.FlagUp != 0,
	}
}

// VXLAN describes a VXLAN device for CreateVXLAN.
type VXLAN struct {
	Name   string
	VNI    int
	Port   int        // UDP destination port; 0 means the kernel's default (8472), 4789 is IANA's
	Local  netip.Addr // source address of the tunnel packets
	Remote netip.Addr // the one peer (a point-to-point tunnel); zero for none
	Parent int        // index of the link the tunnel packets leave by; 0 for any
}

// CreateVXLAN creates a VXLAN device (left down) and returns it. Tabby
// itself uses no overlay; the dataplane benchmark builds one to compare
// against.
func (h *Handle) CreateVXLAN(v VXLAN) (Link, error) {
	if err := CheckName(v.Name); err != nil {
		return Link{}, fmt.Errorf("creating vxlan: %w", err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.Name
	dev := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: v.VNI, Port: v.Port, VtepDevIndex: v.Parent, Learning: true}
	if v.Local.IsValid() {
		dev.SrcAddr = ipOf(v.Local)
	}
	if v.Remote.IsValid() {
		dev.Group = ipOf(v.Remote)
	}
	if err := h.h.LinkAdd(dev); err != nil {
		return Link{}, wrap("creating vxlan "+v.Name, err)
	}
	return h.LinkByName(v.Name)
}
