package nl

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addr is an address on a link.
type Addr struct {
	LinkIndex int
	Prefix    netip.Prefix // address and prefix length, e.g. 10.0.0.2/32 (not masked)
	Scope     Scope        // reported by the kernel; ignored when adding
	NoDAD     bool         // IPv6: skip duplicate address detection (IFA_F_NODAD)
	Tentative bool         // IPv6: duplicate address detection has not finished
	DADFailed bool         // IPv6: duplicate address detection failed
}

// AddrAdd adds a to the link a.LinkIndex. An existing address is an error
// matching ErrExists.
func (h *Handle) AddrAdd(a Addr) error {
	if !a.Prefix.IsValid() {
		return fmt.Errorf("adding address: invalid prefix")
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   ipOf(a.Prefix.Addr()),
		Mask: net.CIDRMask(a.Prefix.Bits(), a.Prefix.Addr().BitLen()),
	}}
	if a.NoDAD {
		addr.Flags |= unix.IFA_F_NODAD
	}
	return wrap(fmt.Sprintf("adding address %s to link #%d", a.Prefix, a.LinkIndex),
		h.h.AddrAdd(linkRef(a.LinkIndex), addr))
}

// AddrList lists the addresses of one link, or of every link when
// linkIndex is 0.
func (h *Handle) AddrList(linkIndex int, fam Family) ([]Addr, error) {
	var link netlink.Link
	if linkIndex != 0 {
		link = linkRef(linkIndex)
	}
	nas, err := dump("listing addresses", func() ([]netlink.Addr, error) {
		return h.h.AddrList(link, int(fam))
	})
	if err != nil {
		return nil, err
	}
	out := make([]Addr, 0, len(nas))
	for _, na := range nas {
		if na.IPNet == nil {
			continue
		}
		f := FamilyV6
		if na.IP.To4() != nil && len(na.IP) == net.IPv4len {
			f = FamilyV4
		}
		ones, _ := na.Mask.Size()
		out = append(out, Addr{
			LinkIndex: na.LinkIndex,
			Prefix:    netip.PrefixFrom(addrOf(na.IP, f), ones),
			Scope:     Scope(na.Scope),
			NoDAD:     na.Flags&unix.IFA_F_NODAD != 0,
			Tentative: na.Flags&unix.IFA_F_TENTATIVE != 0,
			DADFailed: na.Flags&unix.IFA_F_DADFAILED != 0,
		})
	}
	return out, nil
}
