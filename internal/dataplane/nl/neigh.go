package nl

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Neigh is a neighbour (ARP or NDP) entry.
type Neigh struct {
	LinkIndex int
	IP        netip.Addr
	MAC       net.HardwareAddr
	Permanent bool // NUD_PERMANENT: never expires, never re-resolved
}

// NeighSet adds or replaces a permanent neighbour entry (like `ip neigh
// replace IP lladdr MAC dev DEV nud permanent`). It is idempotent.
func (h *Handle) NeighSet(n Neigh) error {
	if !n.IP.IsValid() || len(n.MAC) == 0 {
		return fmt.Errorf("setting neighbour: needs IP and MAC")
	}
	return wrap(fmt.Sprintf("setting neighbour %s lladdr %s on link #%d", n.IP, n.MAC, n.LinkIndex),
		h.h.NeighSet(toNetlinkNeigh(n)))
}

// NeighDel deletes the neighbour entry for n.IP on n.LinkIndex. A missing
// entry is an error matching ErrNotFound.
func (h *Handle) NeighDel(n Neigh) error {
	return wrap(fmt.Sprintf("deleting neighbour %s on link #%d", n.IP, n.LinkIndex),
		h.h.NeighDel(toNetlinkNeigh(n)))
}

// NeighList lists the neighbour entries of one link, or of every link when
// linkIndex is 0, for one family or both.
func (h *Handle) NeighList(linkIndex int, fam Family) ([]Neigh, error) {
	nns, err := dump("listing neighbours", func() ([]netlink.Neigh, error) {
		return h.h.NeighList(linkIndex, int(fam))
	})
	if err != nil {
		return nil, err
	}
	out := make([]Neigh, 0, len(nns))
	for _, nn := range nns {
		if nn.IP == nil {
			continue
		}
		out = append(out, Neigh{
			LinkIndex: nn.LinkIndex,
			IP:        addrOf(nn.IP, Family(nn.Family)),
			MAC:       nn.HardwareAddr,
			Permanent: nn.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

func toNetlinkNeigh(n Neigh) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    n.LinkIndex,
		Family:       int(FamilyOf(n.IP)),
		State:        netlink.NUD_PERMANENT,
		IP:           ipOf(n.IP),
		HardwareAddr: n.MAC,
	}
}
