package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/datastore"
)

// TransferArgs moves a handle's addresses to another handle.
type TransferArgs struct {
	// From is the handle that holds the addresses now, To the one that
	// takes them over (normally a new one).
	From, To string
	// Node and Attrs make the addresses' new attribute, as in
	// AssignArgs: the node the addresses are used on from now on (an
	// address whose node differs from its block's affinity is borrowed).
	Node  string
	Attrs map[string]string
}

// TransferHandle gives every address of handle args.From to handle
// args.To, one block at a time: each block changes in one transaction
// together with both handles, and the addresses stay allocated
// throughout, so that no other workload can get them in between. It is
// how a workload that moves to another node keeps its addresses: the new
// attachment's handle takes them over before the old attachment is
// released. Addresses that To holds already stay with it. It returns the
// addresses moved; none if From holds none.
//
// Idempotent: once From holds nothing, it changes nothing. Safe for
// concurrent use.
func (a *Allocator) TransferHandle(ctx context.Context, args TransferArgs) ([]netip.Addr, error) {
	var errs []error
	for _, c := range []struct{ what, v string }{{"from handle", args.From}, {"to handle", args.To}, {"node", args.Node}} {
		if err := checkName(c.what, c.v); err != nil {
			errs = append(errs, err)
		}
	}
	if args.From == args.To {
		errs = append(errs, fmt.Errorf("from and to are the same handle %q", args.From))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	attr := attribute(args.To, args.Node, args.Attrs)
	from, to := &handleState{id: args.From}, &handleState{id: args.To}
	refresh := func() error {
		return errors.Join(from.refresh(ctx, a.store), to.refresh(ctx, a.store))
	}
	if err := refresh(); err != nil {
		return nil, err
	}
	var out []netip.Addr
	attempt := 0
	for from.exists && len(from.h.Blocks) > 0 {
		if attempt >= a.cfg.MaxRetries {
			return out, fmt.Errorf("moving handle %q to %q: %w", args.From, args.To, ErrTooManyConflicts)
		}
		name := slices.Min(slices.Collect(maps.Keys(from.h.Blocks)))
		// The block is read after the handles, so it is at least as new
		// (see ReleaseHandle).
		kv, b, ok, err := a.readBlock(ctx, name, true)
		if err != nil {
			return out, err
		}
		var ops []datastore.Op
		var addrs []netip.Addr
		var bkv datastore.KV
		if ok {
			if addrs = b.Reassign(args.From, attr); len(addrs) > 0 {
				if bkv, err = encode(kv.Key, b); err != nil {
					return out, err
				}
				bkv.Revision = kv.Revision
				ops = append(ops, datastore.Op{Type: datastore.OpUpdate, KV: bkv})
			}
		}
		fop, fnext, err := from.op(name, -from.h.Blocks[name])
		if err != nil {
			return out, err
		}
		ops = append(ops, fop)
		var tnext Handle
		if len(addrs) > 0 {
			var top datastore.Op
			if top, tnext, err = to.op(name, len(addrs)); err != nil {
				return out, err
			}
			ops = append(ops, top)
		}
		rev, err := a.store.Txn(ctx, ops)
		if err == nil {
			from.written(fnext, rev)
			if len(addrs) > 0 {
				bkv.Revision = rev
				a.remember(bkv, len(b.Unallocated))
				to.written(tnext, rev)
			}
			out = append(out, addrs...)
			attempt = 0
			continue
		}
		if !isCASFailure(err) {
			return out, fmt.Errorf("moving handle %q to %q in block %s: %w", args.From, args.To, name, err)
		}
		a.backoff(ctx, attempt)
		attempt++
		if err := refresh(); err != nil {
			return out, err
		}
	}
	return out, nil
}
