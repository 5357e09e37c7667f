package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore/memory"
)

// TestAllocatorAgainstReference drives three nodes' Allocators with random
// assignments and releases over small IPv4 and IPv6 pools, and checks
// them against a naive model (a map from handle to addresses): addresses
// are never handed out twice, releases return exactly what the model
// holds, exhaustion is reported only when the pool really is full, and
// Check finds nothing but the (expected) missing endpoints.
func TestAllocatorAgainstReference(t *testing.T) {
	v4 := netip.MustParsePrefix("10.77.0.0/27")  // 4 blocks of 8
	v6 := netip.MustParsePrefix("fd00:77::/125") // 2 blocks of 4
	exhausted, assigned := 0, 0
	for seed := range uint64(15) {
		rng := rand.New(rand.NewPCG(seed, 3))
		s := memory.New()
		mustApply(t, s, testPool("p4", v4.String(), 29), testPool("p6", v6.String(), 126))
		nodes := []string{"n0", "n1", "n2"}
		allocs := map[string]*Allocator{}
		for _, n := range nodes {
			mustApply(t, s, testNode(n))
			a, err := New(s, Config{})
			if err != nil {
				t.Fatal(err)
			}
			allocs[n] = a
		}
		cli := allocs["n0"]
		ctx := context.Background()
		model := map[string][]netip.Addr{} // handle → addresses
		owner := map[netip.Addr]string{}
		used := func(p netip.Prefix) int {
			n := 0
			for a := range owner {
				if p.Contains(a) {
					n++
				}
			}
			return n
		}
		randomAddr := func() netip.Addr {
			if rng.IntN(3) == 0 {
				return nthAddr(v6, rng.IntN(8))
			}
			return nthAddr(v4, rng.IntN(32))
		}
		handles := func() []string { return slices.Sorted(maps.Keys(model)) }
		for step := range 250 {
			where := fmt.Sprintf("seed %d step %d", seed, step)
			node := nodes[rng.IntN(len(nodes))]
			a := allocs[node]
			switch op := rng.IntN(10); {
			case op < 5: // AutoAssign
				n4, n6 := rng.IntN(3), rng.IntN(2)
				if n4+n6 == 0 {
					n4 = 1
				}
				h := fmt.Sprintf("h%d", step)
				if hs := handles(); len(hs) > 0 && rng.IntN(4) == 0 {
					h = hs[rng.IntN(len(hs))]
				}
				got, err := a.AutoAssign(ctx, AssignArgs{Node: node, Handle: h, Num4: n4, Num6: n6})
				full := used(v4)+n4 > 32 || used(v6)+n6 > 8
				if err != nil {
					if !errors.Is(err, ErrExhausted) || !full {
						t.Fatalf("%s: AutoAssign(%d, %d) with %d/32 and %d/8 used: %v", where, n4, n6, used(v4), used(v6), err)
					}
					exhausted++
					continue
				}
				if full {
					t.Fatalf("%s: AutoAssign(%d, %d) succeeded with %d/32 and %d/8 used", where, n4, n6, used(v4), used(v6))
				}
				assigned++
				if len(got.IPv4) != n4 || len(got.IPv6) != n6 {
					t.Fatalf("%s: AutoAssign(%d, %d) = %v", where, n4, n6, got)
				}
				for _, ad := range append(got.IPv4, got.IPv6...) {
					if prev, taken := owner[ad]; taken {
						t.Fatalf("%s: %s handed to %s, but %s holds it", where, ad, h, prev)
					}
					owner[ad] = h
					model[h] = append(model[h], ad)
				}
			case op < 6: // AssignIP
				ad := randomAddr()
				h := fmt.Sprintf("ip%d", step)
				err := a.AssignIP(ctx, AssignIPArgs{Addr: ad, Node: node, Handle: h})
				if prev, taken := owner[ad]; taken {
					if !errors.Is(err, ErrInUse) {
						t.Fatalf("%s: AssignIP(%s) held by %s: %v, want ErrInUse", where, ad, prev, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: AssignIP(%s): %v", where, ad, err)
				}
				owner[ad] = h
				model[h] = append(model[h], ad)
			case op < 8: // ReleaseHandle
				hs := handles()
				if len(hs) == 0 {
					continue
				}
				h := hs[rng.IntN(len(hs))]
				got, err := cli.ReleaseHandle(ctx, h)
				if err != nil {
					t.Fatalf("%s: ReleaseHandle(%s): %v", where, h, err)
				}
				if !sameAddrs(got, model[h]) {
					t.Fatalf("%s: ReleaseHandle(%s) = %v, model %v", where, h, got, model[h])
				}
				for _, ad := range model[h] {
					delete(owner, ad)
				}
				delete(model, h)
			default: // ReleaseIPs
				addrs := []netip.Addr{randomAddr(), randomAddr()}
				got, err := cli.ReleaseIPs(ctx, addrs...)
				if err != nil {
					t.Fatalf("%s: ReleaseIPs(%v): %v", where, addrs, err)
				}
				var want []netip.Addr
				for _, ad := range addrs {
					h, taken := owner[ad]
					if !taken || slices.Contains(want, ad) {
						continue
					}
					want = append(want, ad)
					delete(owner, ad)
					model[h] = slices.DeleteFunc(model[h], func(x netip.Addr) bool { return x == ad })
					if len(model[h]) == 0 {
						delete(model, h)
					}
				}
				if !sameAddrs(got, want) {
					t.Fatalf("%s: ReleaseIPs(%v) = %v, model %v", where, addrs, got, want)
				}
			}
			if step%25 == 0 || step == 249 {
				compareWithModel(t, where, s, cli, model, len(owner))
			}
		}
		s.Close()
	}
	t.Logf("%d assignments, %d exhausted", assigned, exhausted)
	if exhausted == 0 {
		t.Error("no assignment ran into a full pool; make the pools smaller")
	}
}

func compareWithModel(t *testing.T, where string, s *memory.Store, a *Allocator, model map[string][]netip.Addr, total int) {
	t.Helper()
	ctx := context.Background()
	for h, want := range model {
		got, err := a.IPsByHandle(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if !sameAddrs(got, want) {
			t.Fatalf("%s: IPsByHandle(%s) = %v, model %v", where, h, got, want)
		}
	}
	r, err := Check(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	r.AllocationsWithoutEndpoint = nil // the test writes no endpoints
	if !r.Clean() || r.Allocated != total || r.Handles != len(model) {
		t.Fatalf("%s: check (model: %d addresses, %d handles):\n%s", where, total, len(model), formatReport(r))
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}
