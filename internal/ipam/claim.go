package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// Why a node cannot claim a block; they end the claim phase of
// AutoAssign, which then borrows.
var (
	errNoFreeBlock = errors.New("no free block left to claim")
	errMaxBlocks   = errors.New("cannot claim more blocks")
)

// affinityEntry is a stored affinity with its KV.
type affinityEntry struct {
	kv datastore.KV
	a  *Affinity
}

// listAffinities returns the node's affinities.
func (a *Allocator) listAffinities(ctx context.Context, node string) ([]affinityEntry, error) {
	kvs, _, err := a.store.List(ctx, datastore.Prefix{Kind: KindAffinity, Namespace: node})
	if err != nil {
		return nil, fmt.Errorf("listing the block affinities of node %q: %w", node, err)
	}
	out := make([]affinityEntry, 0, len(kvs))
	for _, kv := range kvs {
		af, err := decodeAffinity(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, affinityEntry{kv: kv, a: af})
	}
	return out, nil
}

// claim finds the node a block to allocate from and returns its name:
// a block affine to the node that this Allocator did not know about
// (another process of the node claimed it), a pending claim it can
// finish, a new block of the first pool with room, or an existing block
// without affinity. It fails with errMaxBlocks or errNoFreeBlock (both
// wrapped) when the node may not or cannot claim.
func (a *Allocator) claim(ctx context.Context, st *nodeState, node string, pools []*pool, e *env) (string, error) {
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return "", err
	}
	known := map[string]bool{}
	for _, n := range st.affine {
		known[n] = true
	}
	confirmed := 0
	var unknown []string
	for _, af := range affs {
		name := af.kv.Key.Name
		if af.a.State == AffinityConfirmed {
			confirmed++
			if !known[name] {
				st.add(name)
				unknown = append(unknown, name)
			}
			continue
		}
		ok, err := a.repairPending(ctx, st, node, af)
		if err != nil {
			return "", err
		}
		if ok && len(blocksInPools([]string{name}, pools)) > 0 {
			return name, nil
		}
		if ok {
			confirmed++
		}
	}
	st.loaded = true
	if in := blocksInPools(unknown, pools); len(in) > 0 {
		return in[0], nil
	}
	if e.maxBlocks > 0 && confirmed >= e.maxBlocks {
		return "", fmt.Errorf("node %q has %d block(s) and maxBlocksPerHost is %d: %w", node, confirmed, e.maxBlocks, errMaxBlocks)
	}

	kvs, _, err := a.store.List(ctx, datastore.Prefix{Kind: KindBlock})
	if err != nil {
		return "", fmt.Errorf("listing blocks: %w", err)
	}
	existing := make(map[string]bool, len(kvs))
	perPool := map[*pool]uint64{}
	var inPools []datastore.KV
	for _, kv := range kvs {
		existing[kv.Key.Name] = true
		cidr, err := ParseBlockName(kv.Key.Name)
		if err != nil {
			continue
		}
		if p := poolOfBlock(pools, cidr); p != nil {
			perPool[p]++
			inPools = append(inPools, kv)
		}
	}
	lost := 0
	for _, p := range pools {
		count := block.Count(p.cidr, p.blockBits)
		if perPool[p] >= count {
			continue
		}
		for cidr := range block.Candidates(p.cidr, p.blockBits, block.Start(node, count)) {
			name := BlockName(cidr)
			if existing[name] {
				continue
			}
			ok, err := a.claimBlock(ctx, st, node, cidr, nil)
			if err != nil || ok {
				return name, err
			}
			existing[name] = true
			if lost++; lost >= a.cfg.MaxRetries {
				return "", fmt.Errorf("claiming a block for node %q: lost %d races: %w", node, lost, ErrTooManyConflicts)
			}
		}
	}
	// Every block exists: take over one that lost its affinity (its node
	// was deleted) and still has room.
	now := a.cfg.Now()
	for _, kv := range inPools {
		b, err := decodeBlock(kv)
		if err != nil || b.Affinity != "" || b.Available(now, e.cooldown) == 0 {
			continue
		}
		ok, err := a.claimBlock(ctx, st, node, b.CIDR, &kv)
		if err != nil || ok {
			return kv.Key.Name, err
		}
	}
	return "", errNoFreeBlock
}

// claimBlock claims block cidr for node in two phases. Phase 1 creates
// a pending affinity (or finds one left by an earlier attempt). Phase 2
// creates the block (or, for existing, takes over the inPools block) and
// confirms the affinity in one transaction. It returns false if another
// node won the block; the pending affinity is then deleted again.
func (a *Allocator) claimBlock(ctx context.Context, st *nodeState, node string, cidr netip.Prefix, existing *datastore.KV) (bool, error) {
	akey := affinityKey(node, cidr)
	pending, err := encode(akey, Affinity{Node: node, CIDR: cidr, State: AffinityPending})
	if err != nil {
		return false, err
	}
	created, err := a.store.Create(ctx, pending)
	if errors.Is(err, datastore.ErrExists) {
		created, err = a.store.Get(ctx, akey)
		if errors.Is(err, datastore.ErrNotFound) {
			return false, nil // deleted meanwhile: treat as a lost race
		}
		if err == nil {
			af, derr := decodeAffinity(created)
			if derr != nil {
				return false, derr
			}
			if af.State == AffinityConfirmed {
				st.add(akey.Name)
				return true, nil
			}
		}
	}
	if err != nil {
		return false, fmt.Errorf("claiming block %s for node %q: %w", cidr, node, err)
	}
	return a.confirm(ctx, st, node, cidr, created.Revision, existing)
}

// confirm is phase 2 of a claim: it creates the block (or takes over
// existing) and confirms the pending affinity at affRev in one
// transaction.
func (a *Allocator) confirm(ctx context.Context, st *nodeState, node string, cidr netip.Prefix, affRev int64, existing *datastore.KV) (bool, error) {
	akey := affinityKey(node, cidr)
	conf, err := encode(akey, Affinity{Node: node, CIDR: cidr, State: AffinityConfirmed})
	if err != nil {
		return false, err
	}
	conf.Revision = affRev
	var b *block.Block
	bop := datastore.Op{Type: datastore.OpCreate}
	if existing == nil {
		if b, err = block.New(cidr, node); err != nil {
			return false, err
		}
	} else {
		if b, err = decodeBlock(*existing); err != nil {
			return false, err
		}
		if b.Affinity != "" {
			return a.abandon(ctx, akey, affRev)
		}
		b.Affinity = node
		bop.Type = datastore.OpUpdate
	}
	if bop.KV, err = encode(blockKey(cidr), b); err != nil {
		return false, err
	}
	if existing != nil {
		bop.KV.Revision = existing.Revision
	}
	rev, err := a.store.Txn(ctx, []datastore.Op{bop, {Type: datastore.OpUpdate, KV: conf}})
	if err == nil {
		bop.KV.Revision = rev
		a.remember(bop.KV, len(b.Unallocated))
		st.add(akey.Name)
		a.log.Debug("claimed block", "node", node, "prefix", cidr)
		return true, nil
	}
	if !isCASFailure(err) {
		return false, fmt.Errorf("confirming the claim of block %s for node %q: %w", cidr, node, err)
	}
	a.log.Debug("lost the race for a block", "node", node, "prefix", cidr, "error", err)
	return a.abandon(ctx, akey, affRev)
}

// abandon deletes a pending affinity after a lost race. If that fails the
// affinity stays pending; the node's next claim or GC repairs it.
func (a *Allocator) abandon(ctx context.Context, akey datastore.Key, affRev int64) (bool, error) {
	if _, err := a.store.Delete(ctx, akey, affRev); err != nil && !isCASFailure(err) {
		return false, fmt.Errorf("deleting the pending affinity %s: %w", akey, err)
	}
	return false, nil
}

// repairPending finishes or undoes a pending affinity that an earlier
// claim left behind: it confirms the affinity if the block is missing
// (creating it) or already affine to the node, and deletes it if another
// node owns the block. It reports whether the node now owns the block.
func (a *Allocator) repairPending(ctx context.Context, st *nodeState, node string, af affinityEntry) (bool, error) {
	cidr := af.a.CIDR
	kv, err := a.store.Get(ctx, blockKey(cidr))
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		a.log.Debug("finishing a pending claim", "node", node, "prefix", cidr)
		return a.confirm(ctx, st, node, cidr, af.kv.Revision, nil)
	case err != nil:
		return false, fmt.Errorf("reading block %s: %w", cidr, err)
	}
	b, err := decodeBlock(kv)
	if err != nil {
		return false, err
	}
	if b.Affinity != node {
		a.log.Debug("dropping a pending claim of a block another node owns", "node", node, "prefix", cidr)
		return a.abandon(ctx, af.kv.Key, af.kv.Revision)
	}
	conf, err := encode(af.kv.Key, Affinity{Node: node, CIDR: cidr, State: AffinityConfirmed})
	if err != nil {
		return false, err
	}
	conf.Revision = af.kv.Revision
	if _, err := a.store.Update(ctx, conf); err != nil {
		if isCASFailure(err) {
			return false, nil
		}
		return false, fmt.Errorf("confirming affinity %s: %w", af.kv.Key, err)
	}
	a.remember(kv, len(b.Unallocated))
	st.add(af.kv.Key.Name)
	return true, nil
}

// createBlockFor creates block cidr for an address asked for by name:
// claimed by node when it may claim, else without affinity. Losing the
// race to another writer is not an error; the caller reads the block
// again.
func (a *Allocator) createBlockFor(ctx context.Context, st *nodeState, node string, cidr netip.Prefix, e *env) error {
	if e.autoAllocate {
		affs, err := a.listAffinities(ctx, node)
		if err != nil {
			return err
		}
		if e.maxBlocks == 0 || len(affs) < e.maxBlocks {
			_, err := a.claimBlock(ctx, st, node, cidr, nil)
			return err
		}
	}
	b, err := block.New(cidr, "")
	if err != nil {
		return err
	}
	kv, err := encode(blockKey(cidr), b)
	if err != nil {
		return err
	}
	if _, err := a.store.Create(ctx, kv); err != nil && !errors.Is(err, datastore.ErrExists) {
		return fmt.Errorf("creating block %s: %w", cidr, err)
	}
	return nil
}

// ReleaseNodeAffinities releases every block affinity of node, as when
// the node is deleted: empty blocks are deleted, blocks that still hold
// addresses lose their affinity (other nodes may then claim them) and
// keep their addresses. Each block and its affinity change in one
// transaction.
//
// Idempotent. Safe for concurrent use; racing writers are retried a
// bounded number of times.
func (a *Allocator) ReleaseNodeAffinities(ctx context.Context, node string) error {
	if err := checkName("node", node); err != nil {
		return err
	}
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return err
	}
	var errs []error
	for _, af := range affs {
		if err := a.releaseAffinity(ctx, af); err != nil {
			errs = append(errs, err)
		}
	}
	st := a.node(node)
	st.mu.Lock()
	st.loaded, st.affine = false, nil
	st.mu.Unlock()
	return errors.Join(errs...)
}

// releaseAffinity removes one affinity and, if the block is affine to its
// node, the block's affinity too (deleting the block if it is empty).
func (a *Allocator) releaseAffinity(ctx context.Context, af affinityEntry) error {
	node, cidr := af.a.Node, af.a.CIDR
	if node == "" {
		node = af.kv.Key.Namespace
	}
	for attempt := 0; attempt < a.cfg.MaxRetries; attempt++ {
		ops := []datastore.Op{{Type: datastore.OpDelete, KV: datastore.KV{Key: af.kv.Key, Revision: af.kv.Revision}}}
		bkv, err := a.store.Get(ctx, blockKey(cidr))
		switch {
		case errors.Is(err, datastore.ErrNotFound):
		case err != nil:
			return fmt.Errorf("reading block %s: %w", cidr, err)
		default:
			b, err := decodeBlock(bkv)
			if err != nil {
				return err
			}
			if b.Affinity == node {
				if b.Empty() {
					ops = append(ops, datastore.Op{Type: datastore.OpDelete, KV: datastore.KV{Key: bkv.Key, Revision: bkv.Revision}})
				} else {
					b.Affinity = ""
					kv, err := encode(bkv.Key, b)
					if err != nil {
						return err
					}
					kv.Revision = bkv.Revision
					ops = append(ops, datastore.Op{Type: datastore.OpUpdate, KV: kv})
				}
			}
		}
		_, err = a.store.Txn(ctx, ops)
		if err == nil {
			a.forget(BlockName(cidr))
			a.log.Debug("released block affinity", "node", node, "prefix", cidr)
			return nil
		}
		if !isCASFailure(err) {
			return fmt.Errorf("releasing the affinity of node %q for block %s: %w", node, cidr, err)
		}
		cur, err := a.store.Get(ctx, af.kv.Key)
		if errors.Is(err, datastore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading affinity %s: %w", af.kv.Key, err)
		}
		af.kv = cur
		a.backoff(ctx, attempt)
	}
	return fmt.Errorf("releasing the affinity of node %q for block %s: %w", node, cidr, ErrTooManyConflicts)
}
