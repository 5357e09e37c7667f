package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
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
	return a.eachHandleBlock(ctx, from, refresh, fmt.Sprintf("moving handle %q to %q", args.From, args.To),
		func(b *block.Block) []netip.Addr { return b.Reassign(args.From, attr) },
		func(name string, addrs []netip.Addr) ([]datastore.Op, func(int64), error) {
			if len(addrs) == 0 {
				return nil, nil, nil
			}
			op, next, err := to.op(name, len(addrs))
			if err != nil {
				return nil, nil, err
			}
			return []datastore.Op{op}, func(rev int64) { to.written(next, rev) }, nil
		})
}
