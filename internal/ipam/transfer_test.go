package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memory"
)

// TestTransferHandle moves a dual-stack workload's addresses from its
// handle on n1 to a new handle on n2 while other workloads are assigned
// and released on n1: the addresses never become free, nobody else gets
// them, and the store stays consistent.
func TestTransferHandle(t *testing.T) {
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	mustApply(t, s, testPool("v4", "10.91.0.0/24", 28), testPool("v6", "fd00:91::/120", 124), testNode("n1"), testNode("n2"))
	a, err := New(s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: "net.a.eth0", Num4: 1, Num6: 1, Attrs: map[string]string{AttrNamespace: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(res.IPv4), res.IPv6...)

	// Churn on n1 meanwhile, racing the transfer's compare-and-swaps on
	// the same blocks; it must never get the moving addresses.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	churnErr := make(chan error, 1)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h := fmt.Sprintf("net.churn%d.eth0", i)
			r, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: h, Num4: 1, Num6: 1})
			if err == nil {
				for _, ad := range append(r.IPv4, r.IPv6...) {
					if slices.Contains(want, ad) {
						err = fmt.Errorf("churn handle %s got the moving address %s", h, ad)
					}
				}
			}
			if err == nil {
				_, err = a.ReleaseHandle(ctx, h)
			}
			if err != nil {
				select {
				case churnErr <- err:
				default:
				}
				return
			}
		}
	})
	got, err := a.TransferHandle(ctx, TransferArgs{From: "net.a.eth0", To: "net.a.mv1.eth0", Node: "n2", Attrs: map[string]string{AttrNamespace: "default"}})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-churnErr:
		t.Fatal(err)
	default:
	}
	cmpAddr := cmp.Comparer(func(x, y netip.Addr) bool { return x == y })
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("TransferHandle moved (-want +got):\n%s", diff)
	}
	if have, err := a.IPsByHandle(ctx, "net.a.mv1.eth0"); err != nil || !cmp.Equal(want, have, cmpAddr) {
		t.Errorf("new handle holds %v (%v), want %v", have, err, want)
	}
	if have, err := a.IPsByHandle(ctx, "net.a.eth0"); err != nil || len(have) != 0 {
		t.Errorf("old handle holds %v (%v), want nothing", have, err)
	}
	if _, err := s.Get(ctx, handleKey("net.a.eth0")); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("old handle still stored: %v", err)
	}
	// The new attribute: node n2 (so the addresses are borrowed from n1's
	// blocks), namespace kept.
	for _, ad := range want {
		byBlock, err := a.blocksOf(ctx, []netip.Addr{ad})
		if err != nil {
			t.Fatal(err)
		}
		for name := range byBlock {
			_, b, _, err := a.readBlock(ctx, name, true)
			if err != nil {
				t.Fatal(err)
			}
			o, _ := b.Owner(ad)
			if o.Handle != "net.a.mv1.eth0" || o.Secondary[AttrNode] != "n2" || o.Secondary[AttrNamespace] != "default" || b.Affinity != "n1" {
				t.Errorf("%s: owner %+v in block of %s", ad, o, b.Affinity)
			}
		}
		if err := a.AssignIP(ctx, AssignIPArgs{Addr: ad, Node: "n1", Handle: "net.thief.eth0"}); !errors.Is(err, ErrInUse) {
			t.Errorf("AssignIP %s to another handle = %v, want ErrInUse", ad, err)
		}
	}
	r, err := Check(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Leaked) + len(r.HandlesWithoutAllocations) + len(r.Duplicates) + len(r.Inconsistent); n != 0 {
		t.Errorf("inconsistent after the transfer:\n%s", formatReport(r))
	}

	// Again: nothing left to move. Releasing the old handle (the old
	// attachment's DEL) releases nothing.
	if got, err := a.TransferHandle(ctx, TransferArgs{From: "net.a.eth0", To: "net.a.mv1.eth0", Node: "n2"}); err != nil || len(got) != 0 {
		t.Errorf("second TransferHandle = %v, %v; want nothing", got, err)
	}
	if rel, err := a.ReleaseHandle(ctx, "net.a.eth0"); err != nil || len(rel) != 0 {
		t.Errorf("ReleaseHandle(old) = %v, %v; want nothing", rel, err)
	}
	if rel, err := a.ReleaseHandle(ctx, "net.a.mv1.eth0"); err != nil || !cmp.Equal(want, rel, cmpAddr) {
		t.Errorf("ReleaseHandle(new) = %v, %v; want %v", rel, err, want)
	}
}

func TestTransferHandleArgs(t *testing.T) {
	a, err := New(memory.New(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range []TransferArgs{
		{From: "h", To: "h", Node: "n1"},
		{From: "", To: "h", Node: "n1"},
		{From: "h", To: "a/b", Node: "n1"},
		{From: "h", To: "g"},
	} {
		if _, err := a.TransferHandle(context.Background(), args); err == nil {
			t.Errorf("TransferHandle(%+v) succeeded", args)
		}
	}
}
