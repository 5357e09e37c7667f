package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// AssignIPArgs is a request for one given address.
type AssignIPArgs struct {
	// Addr is the address wanted.
	Addr netip.Addr
	// Node, Handle, Attrs and Use are as in AssignArgs.
	Node   string
	Handle string
	Attrs  map[string]string
	Use    v1.IPPoolAllowedUse
}

// AssignIP assigns the address args.Addr to args.Handle. The address
// must lie in an enabled pool that allows args.Use; it is assigned in
// whatever block contains it, even another node's (strictAffinity does
// not apply to addresses asked for by name, so that VMs can migrate with
// their address). If the block does not exist yet, the node claims it, or
// creates it without affinity when it may claim no more blocks. An
// address held by another handle fails with ErrInUse.
//
// Idempotent: assigning an address to the handle that holds it succeeds
// and changes nothing. Safe for concurrent use.
func (a *Allocator) AssignIP(ctx context.Context, args AssignIPArgs) error {
	aa := AssignArgs{Node: args.Node, Handle: args.Handle, Num4: 1, Use: args.Use}
	if err := checkAssignArgs(&aa); err != nil {
		return err
	}
	addr := args.Addr.Unmap()
	if !addr.IsValid() {
		return errors.New("no address given")
	}
	e, err := a.env(ctx)
	if err != nil {
		return err
	}
	p := poolContaining(e.pools, addr)
	switch {
	case p == nil:
		return fmt.Errorf("assigning %s: %w: no pool contains the address", addr, ErrNoPool)
	case p.disabled:
		return fmt.Errorf("assigning %s: pool %s is disabled", addr, p)
	case !slices.Contains(p.uses, aa.Use):
		return fmt.Errorf("assigning %s: pool %s does not allow use %s", addr, p, aa.Use)
	}
	st := a.node(args.Node)
	st.mu.Lock()
	defer st.mu.Unlock()
	cidr := block.Of(addr, p.blockBits)
	name := BlockName(cidr)
	h := &handleState{id: args.Handle}
	attr := attribute(args.Handle, args.Node, args.Attrs)
	for attempt := 0; attempt < a.cfg.MaxRetries; attempt++ {
		kv, b, ok, err := a.readBlock(ctx, name, true)
		if err != nil {
			return err
		}
		if !ok {
			if err := a.createBlockFor(ctx, st, args.Node, cidr, e); err != nil {
				return fmt.Errorf("assigning %s: %w", addr, err)
			}
			continue
		}
		if owner, held := b.Owner(addr); held {
			if owner.Handle == args.Handle {
				return nil
			}
			return fmt.Errorf("assigning %s: held by handle %q: %w", addr, owner.Handle, ErrInUse)
		}
		if err := b.AssignAddr(addr, attr); err != nil {
			return err
		}
		bkv, err := encode(kv.Key, b)
		if err != nil {
			return err
		}
		bkv.Revision = kv.Revision
		hop, next, err := h.op(name, 1)
		if err != nil {
			return err
		}
		rev, err := a.store.Txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, KV: bkv}, hop})
		if err == nil {
			bkv.Revision = rev
			a.remember(bkv, len(b.Unallocated))
			h.written(next, rev)
			return nil
		}
		if !isCASFailure(err) {
			return fmt.Errorf("assigning %s: %w", addr, err)
		}
		if errors.Is(err, datastore.ErrExists) || hop.Type != datastore.OpCreate {
			if err := h.refresh(ctx, a.store); err != nil {
				return err
			}
		}
		a.backoff(ctx, attempt)
	}
	return fmt.Errorf("assigning %s: %d attempts: %w", addr, a.cfg.MaxRetries, ErrTooManyConflicts)
}
