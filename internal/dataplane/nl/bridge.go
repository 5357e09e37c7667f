package nl

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// CreateBridge creates a Linux bridge named name in this namespace, with
// multicast snooping off (so IPv6 neighbour discovery floods like ARP),
// and returns it. It is left down. An existing link of that name is an
// error matching ErrExists.
func (h *Handle) CreateBridge(name string) (Link, error) {
	if err := CheckName(name); err != nil {
		return Link{}, fmt.Errorf("creating bridge: %w", err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	off := false
	if err := h.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &off}); err != nil {
		return Link{}, wrap("creating bridge "+name, err)
	}
	return h.LinkByName(name)
}

// LinkSetMaster enslaves the link index to the bridge master (like `ip
// link set DEV master BR`). It is idempotent.
func (h *Handle) LinkSetMaster(index, master int) error {
	return wrap(fmt.Sprintf("setting master of link %d to %d", index, master),
		h.h.LinkSetMasterByIndex(linkRef(index), master))
}
