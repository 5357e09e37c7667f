package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// ReleaseIPs releases the given addresses, whoever holds them, and
// returns those that were allocated. Addresses that are free already or
// in no block are skipped. Each block changes in one transaction together
// with the handles of the addresses released from it.
//
// Idempotent. Safe for concurrent use.
func (a *Allocator) ReleaseIPs(ctx context.Context, addrs ...netip.Addr) ([]netip.Addr, error) {
	return a.releaseAddrs(ctx, addrs, "")
}

// releaseAddrs releases addrs; with onlyHandle set, only those that
// onlyHandle still holds.
func (a *Allocator) releaseAddrs(ctx context.Context, addrs []netip.Addr, onlyHandle string) ([]netip.Addr, error) {
	byBlock, err := a.blocksOf(ctx, addrs)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(byBlock)) {
		got, err := a.releaseInBlock(ctx, name, byBlock[name], onlyHandle)
		out = append(out, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// blocksOf groups addresses by the name of the block that would contain
// them: by the pools' block sizes, or for addresses outside every pool by
// the stored blocks.
func (a *Allocator) blocksOf(ctx context.Context, addrs []netip.Addr) (map[string][]netip.Addr, error) {
	e, err := a.env(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]netip.Addr{}
	var stray []netip.Addr
	for _, addr := range addrs {
		addr = addr.Unmap()
		if p := poolContaining(e.pools, addr); p != nil {
			name := BlockName(block.Of(addr, p.blockBits))
			out[name] = append(out[name], addr)
		} else {
			stray = append(stray, addr)
		}
	}
	if len(stray) == 0 {
		return out, nil
	}
	kvs, _, err := a.store.List(ctx, datastore.Prefix{Kind: KindBlock})
	if err != nil {
		return nil, fmt.Errorf("listing blocks: %w", err)
	}
	for _, addr := range stray {
		for _, kv := range kvs {
			if cidr, err := ParseBlockName(kv.Key.Name); err == nil && cidr.Contains(addr) {
				out[kv.Key.Name] = append(out[kv.Key.Name], addr)
				break
			}
		}
	}
	return out, nil
}

// releaseInBlock releases addrs in block name (only those held by
// onlyHandle if it is set) and updates their handles, in one
// transaction.
func (a *Allocator) releaseInBlock(ctx context.Context, name string, addrs []netip.Addr, onlyHandle string) ([]netip.Addr, error) {
	for attempt := 0; attempt < a.cfg.MaxRetries; attempt++ {
		kv, b, ok, err := a.readBlock(ctx, name, true)
		if err != nil || !ok {
			return nil, err
		}
		mine := addrs
		if onlyHandle != "" {
			mine = slices.DeleteFunc(slices.Clone(addrs), func(ad netip.Addr) bool {
				owner, held := b.Owner(ad)
				return !held || owner.Handle != onlyHandle
			})
		}
		byHandle, err := b.Release(mine, a.cfg.Now())
		if err != nil {
			return nil, err
		}
		if len(byHandle) == 0 {
			return nil, nil
		}
		bkv, err := encode(kv.Key, b)
		if err != nil {
			return nil, err
		}
		bkv.Revision = kv.Revision
		ops := []datastore.Op{{Type: datastore.OpUpdate, KV: bkv}}
		var out []netip.Addr
		for _, h := range slices.Sorted(maps.Keys(byHandle)) {
			out = append(out, byHandle[h]...)
			hs := &handleState{id: h}
			if err := hs.refresh(ctx, a.store); err != nil {
				return nil, err
			}
			if !hs.exists || hs.h.Blocks[name] == 0 {
				continue // a leaked allocation: no handle records it
			}
			op, _, err := hs.op(name, -len(byHandle[h]))
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		}
		rev, err := a.store.Txn(ctx, ops)
		if err == nil {
			bkv.Revision = rev
			a.remember(bkv, len(b.Unallocated))
			return out, nil
		}
		if !isCASFailure(err) {
			return nil, fmt.Errorf("releasing in block %s: %w", name, err)
		}
		a.log.Debug("release lost a race; retrying", "block", name, "attempt", attempt, "error", err)
		a.backoff(ctx, attempt)
	}
	return nil, fmt.Errorf("releasing in block %s: %d attempts: %w", name, a.cfg.MaxRetries, ErrTooManyConflicts)
}

// ReleaseHandle releases every address of handle and deletes the handle,
// one block at a time: each block and the handle change in one
// transaction, so a crash half-way leaves a handle that lists exactly the
// blocks still holding its addresses. It reads only the blocks the handle
// lists. It returns the released addresses; none if the handle does not
// exist.
//
// Idempotent. Safe for concurrent use.
func (a *Allocator) ReleaseHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	if err := checkName("handle", handle); err != nil {
		return nil, err
	}
	hs := &handleState{id: handle}
	refresh := func() error { return hs.refresh(ctx, a.store) }
	if err := refresh(); err != nil {
		return nil, err
	}
	now := a.cfg.Now()
	return a.eachHandleBlock(ctx, hs, refresh, fmt.Sprintf("releasing handle %q", handle),
		func(b *block.Block) []netip.Addr { return b.ReleaseHandle(handle, now) }, nil)
}

// eachHandleBlock changes, block by block, the blocks that handle hs
// holds addresses in, until it holds none: for each block (in name
// order) one transaction writes the block as change left it (if change
// touched any address), takes the block's entry out of the handle, and
// adds the operations of more (if set; called with the addresses change
// touched, it returns them and a function to call once they are
// written). The block is read after the handle, so that it is at least
// as new: the handle's compare-and-swap then guards the handle's
// allocations in the block even when the block is not written. On a
// compare-and-swap failure it backs off, refreshes (which must re-read
// every handle involved) and tries again, up to MaxRetries times in a row.
// It returns the addresses changed.
func (a *Allocator) eachHandleBlock(ctx context.Context, hs *handleState, refresh func() error, what string,
	change func(b *block.Block) []netip.Addr,
	more func(name string, addrs []netip.Addr) ([]datastore.Op, func(rev int64), error)) ([]netip.Addr, error) {
	var out []netip.Addr
	attempt := 0
	for hs.exists && len(hs.h.Blocks) > 0 {
		if attempt >= a.cfg.MaxRetries {
			return out, fmt.Errorf("%s: %w", what, ErrTooManyConflicts)
		}
		name := slices.Min(slices.Collect(maps.Keys(hs.h.Blocks)))
		kv, b, ok, err := a.readBlock(ctx, name, true)
		if err != nil {
			return out, err
		}
		var ops []datastore.Op
		var addrs []netip.Addr
		var bkv datastore.KV
		if ok {
			if addrs = change(b); len(addrs) > 0 {
				if bkv, err = encode(kv.Key, b); err != nil {
					return out, err
				}
				bkv.Revision = kv.Revision
				ops = append(ops, datastore.Op{Type: datastore.OpUpdate, KV: bkv})
			}
		}
		hop, next, err := hs.op(name, -hs.h.Blocks[name])
		if err != nil {
			return out, err
		}
		ops = append(ops, hop)
		var written func(int64)
		if more != nil {
			mops, w, err := more(name, addrs)
			if err != nil {
				return out, err
			}
			ops, written = append(ops, mops...), w
		}
		rev, err := a.store.Txn(ctx, ops)
		if err == nil {
			if len(addrs) > 0 {
				bkv.Revision = rev
				a.remember(bkv, len(b.Unallocated))
			}
			hs.written(next, rev)
			if written != nil {
				written(rev)
			}
			out = append(out, addrs...)
			attempt = 0
			continue
		}
		if !isCASFailure(err) {
			return out, fmt.Errorf("%s in block %s: %w", what, name, err)
		}
		a.backoff(ctx, attempt)
		attempt++
		if err := refresh(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// IPsByHandle returns the addresses handle holds, in block order; none if
// the handle does not exist. Read-only; safe for concurrent use.
func (a *Allocator) IPsByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	if err := checkName("handle", handle); err != nil {
		return nil, err
	}
	hs := &handleState{id: handle}
	if err := hs.refresh(ctx, a.store); err != nil || !hs.exists {
		return nil, err
	}
	var out []netip.Addr
	for _, name := range slices.Sorted(maps.Keys(hs.h.Blocks)) {
		_, b, ok, err := a.readBlock(ctx, name, true)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, b.HandleAddrs(handle)...)
		}
	}
	return out, nil
}
