package ipam

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// node returns the state of a node, creating it on first use.
func (a *Allocator) node(name string) *nodeState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.nodes[name]
	if !ok {
		st = &nodeState{}
		a.nodes[name] = st
	}
	return st
}

// cachedBlock is a block as the Allocator last read or wrote it.
type cachedBlock struct {
	kv   datastore.KV
	free int // free addresses, so that full blocks are skipped undecoded
}

// readBlock returns block name, decoded, from the cache, or from the
// Store when it is not cached or fresh is set. ok is false if the block
// does not exist. The caller owns the decoded block.
func (a *Allocator) readBlock(ctx context.Context, name string, fresh bool) (datastore.KV, *block.Block, bool, error) {
	var kv datastore.KV
	cached := false
	if !fresh {
		a.mu.Lock()
		var c cachedBlock
		c, cached = a.blocks[name]
		kv = c.kv
		a.mu.Unlock()
	}
	if !cached {
		var err error
		kv, err = a.store.Get(ctx, blockKeyByName(name))
		if errors.Is(err, datastore.ErrNotFound) {
			a.forget(name)
			return datastore.KV{}, nil, false, nil
		}
		if err != nil {
			return datastore.KV{}, nil, false, fmt.Errorf("reading block %s: %w", name, err)
		}
	}
	b, err := decodeBlock(kv)
	if err != nil {
		return datastore.KV{}, nil, false, err
	}
	if !cached {
		a.remember(kv, len(b.Unallocated))
	}
	return kv, b, true, nil
}

// remember caches a block read or written at kv.Revision, with free
// addresses, unless the cache has a newer one.
func (a *Allocator) remember(kv datastore.KV, free int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.blocks[kv.Key.Name]; !ok || old.kv.Revision < kv.Revision {
		a.blocks[kv.Key.Name] = cachedBlock{kv: kv, free: free}
	}
}

// cachedFull reports whether the cached copy of block name has no free
// address.
func (a *Allocator) cachedFull(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.blocks[name]
	return ok && c.free == 0
}

// forget drops a block from the cache.
func (a *Allocator) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.blocks, name)
}

// drop removes a block from the node's affine list.
func (st *nodeState) drop(name string) {
	st.affine = slices.DeleteFunc(st.affine, func(n string) bool { return n == name })
}

// add puts a block into the node's affine list.
func (st *nodeState) add(name string) {
	if i, found := slices.BinarySearch(st.affine, name); !found {
		st.affine = slices.Insert(st.affine, i, name)
	}
}

// affineBlocks returns the names of the node's confirmed affine blocks,
// reading them on first use.
func (a *Allocator) affineBlocks(ctx context.Context, st *nodeState, node string) ([]string, error) {
	if st.loaded {
		return slices.Clone(st.affine), nil
	}
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return nil, err
	}
	st.affine = st.affine[:0]
	for _, af := range affs {
		if af.a.State == AffinityConfirmed {
			st.affine = append(st.affine, af.kv.Key.Name)
		}
	}
	slices.Sort(st.affine)
	st.loaded = true
	return slices.Clone(st.affine), nil
}
