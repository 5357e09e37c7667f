// Package block is the pure core of Tabby's IP address management: an
// allocation block (a small CIDR of an IP pool, usually affine to one
// node), the addresses allocated in it, the order in which its free
// addresses are handed out, and the order in which a node tries the blocks
// of a pool when it claims a new one.
//
// The package has no clock, no randomness and no I/O. Callers pass the
// current time in; a Block is a plain value that the datastore layer
// (package ipam) reads, changes and writes back with a compare-and-swap.
// A Block is not safe for concurrent use; every method that changes it
// needs the caller to hold the only reference (in practice: a freshly
// decoded copy).
//
// Reuse order: free addresses form a queue. A new block queues its
// addresses in order; a released address joins the back of the queue
// stamped with its release time. Assign takes from the front, so the
// address released longest ago is reused first, and addresses never used
// come before all released ones. With a cooldown, an address released
// less than the cooldown ago is skipped (it keeps its place).
package block

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// MaxHostBits is the largest number of host bits a block may have: 12,
// that is at most 4096 addresses (a /20 for IPv4, a /116 for IPv6).
const MaxHostBits = 12

// Errors of the block operations. Test with errors.Is.
var (
	// ErrNotInBlock means an address is not inside the block's CIDR.
	ErrNotInBlock = errors.New("address not in block")
	// ErrInUse means an address is allocated already.
	ErrInUse = errors.New("address in use")
)

// Attribute is what an allocation is for: the handle it is released by
// and free-form secondary attributes (the node, the workload, …).
type Attribute struct {
	Handle    string            `json:"handle"`
	Secondary map[string]string `json:"secondary,omitempty"`
}

func (a Attribute) equal(b Attribute) bool {
	return a.Handle == b.Handle && maps.Equal(a.Secondary, b.Secondary)
}

// Free is one free address in the reuse queue.
type Free struct {
	// Ordinal is the address's offset from the start of the block.
	Ordinal int `json:"o"`
	// ReleasedAt is when the address was last released, in Unix
	// seconds; 0 if it has never been allocated.
	ReleasedAt int64 `json:"r,omitempty"`
}

// Block is an allocation block. The zero value is not valid; use New (or
// decode a stored block and check it with Validate).
type Block struct {
	// CIDR is the block's range, masked.
	CIDR netip.Prefix `json:"cidr"`
	// Affinity is the node the block is affine to; empty for none.
	Affinity string `json:"affinity,omitempty"`
	// Allocations has one entry per address of the block, by ordinal:
	// nil for a free address, else an index into Attributes.
	Allocations []*int `json:"allocations"`
	// Unallocated is the reuse queue: every free ordinal exactly once,
	// the next to hand out first.
	Unallocated []Free `json:"unallocated"`
	// Attributes are the distinct attributes of the allocations; every
	// entry is used by at least one allocation.
	Attributes []Attribute `json:"attributes"`
}

// Allocation is one allocated address and what it is for.
type Allocation struct {
	Addr      netip.Addr
	Attribute Attribute
}

// New returns an empty block for cidr, affine to affinity (empty for
// none). cidr must be masked and have at most MaxHostBits host bits.
func New(cidr netip.Prefix, affinity string) (*Block, error) {
	if !cidr.IsValid() || cidr != cidr.Masked() {
		return nil, fmt.Errorf("block %s: not a masked prefix", cidr)
	}
	host := cidr.Addr().BitLen() - cidr.Bits()
	if host > MaxHostBits {
		return nil, fmt.Errorf("block %s: %d host bits, more than %d", cidr, host, MaxHostBits)
	}
	n := 1 << host
	b := &Block{
		CIDR:        cidr,
		Affinity:    affinity,
		Allocations: make([]*int, n),
		Unallocated: make([]Free, n),
		Attributes:  []Attribute{},
	}
	for i := range n {
		b.Unallocated[i] = Free{Ordinal: i}
	}
	return b, nil
}

// Size returns the number of addresses of the block.
func (b *Block) Size() int { return len(b.Allocations) }

// InUse returns the number of allocated addresses.
func (b *Block) InUse() int { return len(b.Allocations) - len(b.Unallocated) }

// Empty reports whether no address is allocated.
func (b *Block) Empty() bool { return len(b.Unallocated) == len(b.Allocations) }

// Available returns how many addresses Assign could hand out at now with
// cooldown.
func (b *Block) Available(now time.Time, cooldown time.Duration) int {
	n := 0
	for _, f := range b.Unallocated {
		if reusable(f, now, cooldown) {
			n++
		}
	}
	return n
}

// reusable reports whether a free address is out of its cooldown.
func reusable(f Free, now time.Time, cooldown time.Duration) bool {
	if f.ReleasedAt == 0 || cooldown <= 0 {
		return true
	}
	return now.Sub(time.Unix(f.ReleasedAt, 0)) >= cooldown
}

// Assign allocates up to n addresses for attr and returns them, fewer (or
// none) if the block has fewer available. It takes them from the front of
// the reuse queue, skipping addresses released less than cooldown before
// now.
func (b *Block) Assign(n int, attr Attribute, now time.Time, cooldown time.Duration) []netip.Addr {
	if n <= 0 {
		return nil
	}
	var out []netip.Addr
	idx := -1
	keep := b.Unallocated[:0]
	for _, f := range b.Unallocated {
		if len(out) == n || !reusable(f, now, cooldown) {
			keep = append(keep, f)
			continue
		}
		if idx < 0 {
			idx = b.attributeIndex(attr)
		}
		b.Allocations[f.Ordinal] = intPtr(idx)
		out = append(out, b.addr(f.Ordinal))
	}
	clear(b.Unallocated[len(keep):])
	b.Unallocated = keep
	return out
}

// AssignAddr allocates the address addr for attr, wherever it is in the
// reuse queue and whatever its cooldown: the caller asked for it by name.
// It fails with ErrNotInBlock or ErrInUse (the error names the holder's
// handle).
func (b *Block) AssignAddr(addr netip.Addr, attr Attribute) error {
	ord, err := b.Ordinal(addr)
	if err != nil {
		return err
	}
	if i := b.Allocations[ord]; i != nil {
		return fmt.Errorf("%s is held by handle %q: %w", addr, b.Attributes[*i].Handle, ErrInUse)
	}
	at := slices.IndexFunc(b.Unallocated, func(f Free) bool { return f.Ordinal == ord })
	if at < 0 {
		return fmt.Errorf("block %s: ordinal %d is neither allocated nor free", b.CIDR, ord)
	}
	b.Unallocated = slices.Delete(b.Unallocated, at, at+1)
	b.Allocations[ord] = intPtr(b.attributeIndex(attr))
	return nil
}

// Release frees the allocated addresses among addrs, in the order given,
// stamping them with now, and returns how many it freed per handle.
// Addresses that are free already are skipped (so Release is idempotent);
// an address outside the block fails the whole call with ErrNotInBlock
// and changes nothing.
func (b *Block) Release(addrs []netip.Addr, now time.Time) (map[string][]netip.Addr, error) {
	ords := make([]int, 0, len(addrs))
	for _, a := range addrs {
		ord, err := b.Ordinal(a)
		if err != nil {
			return nil, err
		}
		ords = append(ords, ord)
	}
	return b.release(ords, now), nil
}

// ReleaseHandle frees every address allocated to handle, in address
// order, stamping them with now, and returns them.
func (b *Block) ReleaseHandle(handle string, now time.Time) []netip.Addr {
	var ords []int
	for ord, i := range b.Allocations {
		if i != nil && b.Attributes[*i].Handle == handle {
			ords = append(ords, ord)
		}
	}
	return b.release(ords, now)[handle]
}

func (b *Block) release(ords []int, now time.Time) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for _, ord := range ords {
		i := b.Allocations[ord]
		if i == nil {
			continue
		}
		h := b.Attributes[*i].Handle
		out[h] = append(out[h], b.addr(ord))
		b.Allocations[ord] = nil
		b.Unallocated = append(b.Unallocated, Free{Ordinal: ord, ReleasedAt: now.Unix()})
	}
	if len(out) > 0 {
		b.compactAttributes()
	}
	return out
}

// Owner returns the attribute of an allocated address; false if the
// address is free or outside the block.
func (b *Block) Owner(addr netip.Addr) (Attribute, bool) {
	ord, err := b.Ordinal(addr)
	if err != nil || b.Allocations[ord] == nil {
		return Attribute{}, false
	}
	return b.Attributes[*b.Allocations[ord]], true
}

// Allocated returns every allocation in address order.
func (b *Block) Allocated() []Allocation {
	var out []Allocation
	for ord, i := range b.Allocations {
		if i != nil {
			out = append(out, Allocation{Addr: b.addr(ord), Attribute: b.Attributes[*i]})
		}
	}
	return out
}

// HandleAddrs returns the addresses allocated to handle, in address
// order.
func (b *Block) HandleAddrs(handle string) []netip.Addr {
	var out []netip.Addr
	for ord, i := range b.Allocations {
		if i != nil && b.Attributes[*i].Handle == handle {
			out = append(out, b.addr(ord))
		}
	}
	return out
}

// Handles returns how many addresses each handle holds in the block.
func (b *Block) Handles() map[string]int {
	out := map[string]int{}
	for _, i := range b.Allocations {
		if i != nil {
			out[b.Attributes[*i].Handle]++
		}
	}
	return out
}

// Ordinal returns addr's offset in the block, or ErrNotInBlock.
func (b *Block) Ordinal(addr netip.Addr) (int, error) {
	addr = addr.Unmap()
	if !b.CIDR.Contains(addr) {
		return 0, fmt.Errorf("%s is outside block %s: %w", addr, b.CIDR, ErrNotInBlock)
	}
	s := addr.AsSlice()
	low := int(s[len(s)-2])<<8 | int(s[len(s)-1])
	return low & (len(b.Allocations) - 1), nil
}

// addr returns the address at ordinal ord. Blocks have at most 12 host
// bits and are aligned, so the ordinal only touches the last two bytes.
func (b *Block) addr(ord int) netip.Addr {
	s := b.CIDR.Addr().AsSlice()
	s[len(s)-2] |= byte(ord >> 8)
	s[len(s)-1] |= byte(ord)
	a, _ := netip.AddrFromSlice(s)
	return a
}

// attributeIndex returns the index of an attribute equal to attr,
// appending a copy of attr if there is none.
func (b *Block) attributeIndex(attr Attribute) int {
	for i, a := range b.Attributes {
		if a.equal(attr) {
			return i
		}
	}
	b.Attributes = append(b.Attributes, Attribute{Handle: attr.Handle, Secondary: maps.Clone(attr.Secondary)})
	return len(b.Attributes) - 1
}

// compactAttributes drops attributes no allocation uses and renumbers the
// rest, keeping their order.
func (b *Block) compactAttributes() {
	used := make([]bool, len(b.Attributes))
	for _, i := range b.Allocations {
		if i != nil {
			used[*i] = true
		}
	}
	remap := make([]int, len(b.Attributes))
	kept := b.Attributes[:0]
	for i, a := range b.Attributes {
		if used[i] {
			remap[i] = len(kept)
			kept = append(kept, a)
		}
	}
	clear(b.Attributes[len(kept):])
	b.Attributes = kept
	for ord, i := range b.Allocations {
		if i != nil && remap[*i] != *i {
			b.Allocations[ord] = intPtr(remap[*i])
		}
	}
}

// Validate checks that a block (typically one just decoded) is
// consistent: a masked CIDR of a valid size, one allocation entry per
// address, every free ordinal queued exactly once, every allocation's
// attribute index valid, and every attribute used.
func (b *Block) Validate() error {
	var errs []error
	if !b.CIDR.IsValid() || b.CIDR != b.CIDR.Masked() {
		return fmt.Errorf("block %s: not a masked prefix", b.CIDR)
	}
	host := b.CIDR.Addr().BitLen() - b.CIDR.Bits()
	if host > MaxHostBits {
		return fmt.Errorf("block %s: %d host bits, more than %d", b.CIDR, host, MaxHostBits)
	}
	if len(b.Allocations) != 1<<host {
		return fmt.Errorf("block %s: %d allocation entries, want %d", b.CIDR, len(b.Allocations), 1<<host)
	}
	used := make([]bool, len(b.Attributes))
	for ord, i := range b.Allocations {
		if i == nil {
			continue
		}
		if *i < 0 || *i >= len(b.Attributes) {
			errs = append(errs, fmt.Errorf("ordinal %d: attribute index %d out of range", ord, *i))
			continue
		}
		used[*i] = true
	}
	for i, u := range used {
		if !u {
			errs = append(errs, fmt.Errorf("attribute %d (handle %q) is not used", i, b.Attributes[i].Handle))
		}
	}
	queued := make([]bool, len(b.Allocations))
	for _, f := range b.Unallocated {
		switch {
		case f.Ordinal < 0 || f.Ordinal >= len(b.Allocations):
			errs = append(errs, fmt.Errorf("free ordinal %d out of range", f.Ordinal))
		case queued[f.Ordinal]:
			errs = append(errs, fmt.Errorf("ordinal %d is queued twice", f.Ordinal))
		case b.Allocations[f.Ordinal] != nil:
			errs = append(errs, fmt.Errorf("ordinal %d is both allocated and free", f.Ordinal))
		default:
			queued[f.Ordinal] = true
		}
	}
	for ord, q := range queued {
		if !q && b.Allocations[ord] == nil {
			errs = append(errs, fmt.Errorf("ordinal %d is neither allocated nor free", ord))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("block %s: %w", b.CIDR, err)
	}
	return nil
}

func intPtr(i int) *int { return &i }
