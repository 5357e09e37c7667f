package ipam

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// Finding is one problem Check found.
type Finding struct {
	Addr   netip.Addr // the address concerned, if one is
	Handle string     // the handle concerned, if one is
	Block  string     // the block name concerned, if one is
	Detail string
}

func (f Finding) String() string {
	var parts []string
	if f.Addr.IsValid() {
		parts = append(parts, f.Addr.String())
	}
	if f.Handle != "" {
		parts = append(parts, "handle "+f.Handle)
	}
	if f.Block != "" {
		parts = append(parts, "block "+f.Block)
	}
	parts = append(parts, f.Detail)
	return strings.Join(parts, ": ")
}

// Report is the result of Check.
type Report struct {
	// Revision is the Store revision the check read.
	Revision int64
	// Counts of what was checked.
	Blocks, Allocated, Handles, Endpoints int
	// Leaked lists allocated addresses that no handle records, so that
	// release by handle cannot reach them.
	Leaked []Finding
	// HandlesWithoutAllocations lists handles that record addresses a
	// block does not hold.
	HandlesWithoutAllocations []Finding
	// AllocationsWithoutEndpoint lists allocated addresses that no
	// workload endpoint uses (GC releases them after its grace period).
	AllocationsWithoutEndpoint []Finding
	// Duplicates lists addresses allocated twice, used by two endpoints,
	// or used by an endpoint inside a pool without being allocated (so
	// IPAM may hand them out again).
	Duplicates []Finding
	// Inconsistent lists objects that do not decode, blocks and
	// affinities that disagree, and allocations outside every pool.
	Inconsistent []Finding
}

// Clean reports whether the check found nothing.
func (r *Report) Clean() bool {
	return len(r.Leaked)+len(r.HandlesWithoutAllocations)+len(r.AllocationsWithoutEndpoint)+
		len(r.Duplicates)+len(r.Inconsistent) == 0
}

// Check reads the whole Store at one revision and reports IPAM's
// inconsistencies. Read-only; safe for concurrent use. On a live cluster
// AllocationsWithoutEndpoint includes workloads whose endpoint is not
// written yet.
func Check(ctx context.Context, s datastore.Store) (*Report, error) {
	snap, err := readSnapshot(ctx, s)
	if err != nil {
		return nil, err
	}
	return check(snap), nil
}

func check(snap *snapshot) *Report {
	r := &Report{Revision: snap.rev, Blocks: len(snap.blocks), Handles: len(snap.handles), Endpoints: len(snap.endpoints.names)}
	r.Inconsistent = append(r.Inconsistent, snap.bad...)
	actual := map[string]map[string]int{} // handle → block → count
	where := map[netip.Addr]string{}      // allocated address → block
	blocks := map[string]*block.Block{}
	for _, sb := range snap.blocks {
		name, b := sb.kv.Key.Name, sb.b
		blocks[name] = b
		p := poolOfBlock(snap.pools, b.CIDR)
		switch {
		case p == nil && !b.Empty():
			r.Inconsistent = append(r.Inconsistent, Finding{Block: name, Detail: fmt.Sprintf("holds %d addresses but lies in no IP pool", b.InUse())})
		case p != nil && p.blockBits != b.CIDR.Bits():
			r.Inconsistent = append(r.Inconsistent, Finding{Block: name, Detail: fmt.Sprintf("is a /%d, but pool %s has blocks of /%d", b.CIDR.Bits(), p, p.blockBits)})
		}
		if b.Affinity != "" {
			if af := snap.affinityOf(b.Affinity, name); af == nil || af.a.State != AffinityConfirmed {
				r.Inconsistent = append(r.Inconsistent, Finding{Block: name, Detail: fmt.Sprintf("is affine to node %q, which has no confirmed affinity for it", b.Affinity)})
			}
		}
		for _, al := range b.Allocated() {
			r.Allocated++
			if other, dup := where[al.Addr]; dup {
				r.Duplicates = append(r.Duplicates, Finding{Addr: al.Addr, Detail: fmt.Sprintf("allocated in blocks %s and %s", other, name)})
			}
			where[al.Addr] = name
			h := al.Attribute.Handle
			if actual[h] == nil {
				actual[h] = map[string]int{}
			}
			actual[h][name]++
			if !snap.endpoints.uses(al) {
				r.AllocationsWithoutEndpoint = append(r.AllocationsWithoutEndpoint, Finding{Addr: al.Addr, Handle: h, Block: name,
					Detail: "no workload endpoint uses it" + endpointHint(al)})
			}
		}
	}
	for _, af := range snap.affinities {
		if af.a.State != AffinityConfirmed {
			continue
		}
		name, node := af.kv.Key.Name, af.kv.Key.Namespace
		if b, ok := blocks[name]; !ok {
			r.Inconsistent = append(r.Inconsistent, Finding{Block: name, Detail: fmt.Sprintf("node %q has a confirmed affinity, but the block does not exist", node)})
		} else if b.Affinity != node {
			r.Inconsistent = append(r.Inconsistent, Finding{Block: name, Detail: fmt.Sprintf("node %q has a confirmed affinity, but the block is affine to %q", node, b.Affinity)})
		}
	}
	ids := slices.Collect(maps.Keys(actual))
	for id := range snap.handles {
		if actual[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		var recorded map[string]int
		sh, exists := snap.handles[id]
		if exists {
			recorded = sh.h.Blocks
		}
		for _, name := range slices.Sorted(maps.Keys(actual[id])) {
			n := actual[id][name]
			if recorded[name] >= n {
				continue
			}
			detail := "no handle object records it"
			if exists {
				detail = fmt.Sprintf("the handle records %d address(es) in the block, which holds %d", recorded[name], n)
			}
			for _, addr := range blocks[name].HandleAddrs(id) {
				r.Leaked = append(r.Leaked, Finding{Addr: addr, Handle: id, Block: name, Detail: detail})
			}
		}
		for _, name := range slices.Sorted(maps.Keys(recorded)) {
			if n := recorded[name]; actual[id][name] < n {
				r.HandlesWithoutAllocations = append(r.HandlesWithoutAllocations, Finding{Handle: id, Block: name,
					Detail: fmt.Sprintf("records %d address(es) in the block, which holds %d", n, actual[id][name])})
			}
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(snap.endpoints.byAddr), netip.Addr.Compare) {
		refs := snap.endpoints.byAddr[addr]
		if len(refs) > 1 {
			r.Duplicates = append(r.Duplicates, Finding{Addr: addr, Detail: "used by workload endpoints " + strings.Join(refs, ", ")})
		}
		if _, ok := where[addr]; !ok && poolContaining(snap.pools, addr) != nil {
			r.Duplicates = append(r.Duplicates, Finding{Addr: addr, Detail: fmt.Sprintf("used by workload endpoint %s but not allocated, so IPAM may hand it out again", refs[0])})
		}
	}
	for _, fs := range []*[]Finding{&r.Leaked, &r.HandlesWithoutAllocations, &r.AllocationsWithoutEndpoint, &r.Duplicates, &r.Inconsistent} {
		slices.SortStableFunc(*fs, compareFindings)
	}
	return r
}

func endpointHint(al block.Allocation) string {
	if name := al.Attribute.Secondary[AttrEndpoint]; name != "" {
		return fmt.Sprintf(" (endpoint %s/%s does not exist)", al.Attribute.Secondary[AttrNamespace], name)
	}
	return ""
}

func compareFindings(a, b Finding) int {
	return cmp.Or(a.Addr.Compare(b.Addr), strings.Compare(a.Handle, b.Handle), strings.Compare(a.Block, b.Block), strings.Compare(a.Detail, b.Detail))
}

// PoolInUse reports whether pool still has allocated addresses, and if
// so why it must not be deleted, in words for the user. Empty blocks do
// not count: GC deletes the blocks of a deleted pool once they are empty.
// To delete a pool safely, disable it first so that no new address is
// allocated from it between this check and the delete. Read-only; safe
// for concurrent use.
func PoolInUse(ctx context.Context, s datastore.Store, pool *v1.IPPool) (inUse bool, reason string, err error) {
	cidr, err := netip.ParsePrefix(pool.Spec.CIDR)
	if err != nil {
		return false, "", fmt.Errorf("IPPool %q: spec.cidr: %w", pool.Metadata.Name, err)
	}
	cidr = cidr.Masked()
	kvs, _, err := s.List(ctx, datastore.Prefix{Kind: KindBlock})
	if err != nil {
		return false, "", fmt.Errorf("listing blocks: %w", err)
	}
	addrs, blocks := 0, 0
	var first *block.Allocation
	nodes := map[string]bool{}
	for _, kv := range kvs {
		b, err := decodeBlock(kv)
		if err != nil {
			return false, "", err
		}
		if !cidr.Overlaps(b.CIDR) || b.Empty() {
			continue
		}
		blocks++
		for _, al := range b.Allocated() {
			addrs++
			if first == nil {
				first = &al
			}
			if n := al.Attribute.Secondary[AttrNode]; n != "" {
				nodes[n] = true
			}
		}
	}
	if addrs == 0 {
		return false, "", nil
	}
	reason = fmt.Sprintf("IPPool %q (%s) is in use: %d address(es) allocated in %d block(s) for %d node(s), such as %s (handle %q); "+
		"disable the pool, remove its workloads (or release their addresses with `tabby ipam release`), then delete it",
		pool.Metadata.Name, cidr, addrs, blocks, len(nodes), first.Addr, first.Attribute.Handle)
	return true, reason, nil
}

// Usage is what `tabby ipam show` prints.
type Usage struct {
	Pools    []PoolUsage
	Nodes    []NodeUsage
	Blocks   []BlockUsage
	Borrowed []BorrowedAddr
}

// PoolUsage is the use of one pool.
type PoolUsage struct {
	Name      string
	CIDR      netip.Prefix
	BlockSize int
	Disabled  bool
	Capacity  *big.Int // addresses in the pool
	Blocks    int      // blocks that exist
	InBlocks  int      // addresses in those blocks
	Allocated int
}

// NodeUsage is the use of one node (a node with blocks or allocations).
type NodeUsage struct {
	Node      string
	Blocks    int // confirmed affine blocks
	Pending   int // pending claims
	Allocated int // addresses allocated for the node
	Free      int // free addresses in its blocks
	Borrowed  int // addresses allocated for the node in blocks not affine to it
	Lent      int // addresses in its blocks allocated for other nodes
}

// BlockUsage is one block.
type BlockUsage struct {
	CIDR     netip.Prefix
	Pool     string // empty if the block lies in no pool
	Affinity string // node; empty if none
	InUse    int
	Size     int
	Borrowed int // addresses allocated for other nodes than Affinity
}

// BorrowedAddr is an address allocated for a node in a block not affine
// to it.
type BorrowedAddr struct {
	Addr          netip.Addr
	Block         netip.Prefix
	BlockAffinity string
	Node          string
	Handle        string
}

// ReadUsage reads the Store at one revision and summarizes IPAM per pool,
// per node and per block. Read-only; safe for concurrent use.
func ReadUsage(ctx context.Context, s datastore.Store) (*Usage, error) {
	snap, err := readSnapshot(ctx, s)
	if err != nil {
		return nil, err
	}
	return usage(snap), nil
}

func usage(snap *snapshot) *Usage {
	u := &Usage{}
	poolIdx := map[string]int{}
	for _, p := range snap.pools {
		poolIdx[p.name] = len(u.Pools)
		capacity := new(big.Int).Lsh(big.NewInt(1), uint(p.cidr.Addr().BitLen()-p.cidr.Bits()))
		u.Pools = append(u.Pools, PoolUsage{Name: p.name, CIDR: p.cidr, BlockSize: p.blockBits, Disabled: p.disabled, Capacity: capacity})
	}
	nodes := map[string]*NodeUsage{}
	nodeOf := func(n string) *NodeUsage {
		if nodes[n] == nil {
			nodes[n] = &NodeUsage{Node: n}
		}
		return nodes[n]
	}
	for _, af := range snap.affinities {
		nu := nodeOf(af.kv.Key.Namespace)
		if af.a.State == AffinityConfirmed {
			nu.Blocks++
		} else {
			nu.Pending++
		}
	}
	for _, sb := range snap.blocks {
		b := sb.b
		bu := BlockUsage{CIDR: b.CIDR, Affinity: b.Affinity, InUse: b.InUse(), Size: b.Size()}
		if p := poolOfBlock(snap.pools, b.CIDR); p != nil {
			bu.Pool = p.name
			pu := &u.Pools[poolIdx[p.name]]
			pu.Blocks++
			pu.InBlocks += b.Size()
			pu.Allocated += b.InUse()
		}
		if b.Affinity != "" {
			nodeOf(b.Affinity).Free += b.Size() - b.InUse()
		}
		for _, al := range b.Allocated() {
			n := al.Attribute.Secondary[AttrNode]
			if n != "" {
				nodeOf(n).Allocated++
			}
			if n == b.Affinity {
				continue
			}
			bu.Borrowed++
			if b.Affinity != "" {
				nodeOf(b.Affinity).Lent++
			}
			if n != "" {
				nodeOf(n).Borrowed++
			}
			u.Borrowed = append(u.Borrowed, BorrowedAddr{Addr: al.Addr, Block: b.CIDR, BlockAffinity: b.Affinity, Node: n, Handle: al.Attribute.Handle})
		}
		u.Blocks = append(u.Blocks, bu)
	}
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		u.Nodes = append(u.Nodes, *nodes[n])
	}
	slices.SortFunc(u.Blocks, func(a, b BlockUsage) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), a.CIDR.Addr().Compare(b.CIDR.Addr()))
	})
	slices.SortFunc(u.Borrowed, func(a, b BorrowedAddr) int { return a.Addr.Compare(b.Addr) })
	return u
}
