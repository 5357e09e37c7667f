package block

import "net/netip"

// Reassign gives every address allocated to handle the attribute attr
// instead (normally one of another handle), keeping it allocated, and
// returns those addresses in address order. Nothing else changes: the
// reuse queue is untouched, so no address is free in between. With no
// address of handle, or attr.Handle equal to handle and the same
// secondary attributes, it changes nothing.
func (b *Block) Reassign(handle string, attr Attribute) []netip.Addr {
	var ords []int
	for ord, i := range b.Allocations {
		if i != nil && b.Attributes[*i].Handle == handle {
			ords = append(ords, ord)
		}
	}
	if len(ords) == 0 {
		return nil
	}
	idx := b.attributeIndex(attr)
	out := make([]netip.Addr, 0, len(ords))
	for _, ord := range ords {
		b.Allocations[ord] = intPtr(idx)
		out = append(out, b.addr(ord))
	}
	b.compactAttributes()
	return out
}
