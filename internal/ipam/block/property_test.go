package block

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// refBlock is the naive reference: a map of allocated addresses and a
// plain queue of free ones.
type refBlock struct {
	owner map[netip.Addr]string
	queue []refFree
}

type refFree struct {
	addr netip.Addr
	at   int64
}

func newRef(cidr netip.Prefix) *refBlock {
	r := &refBlock{owner: map[netip.Addr]string{}}
	for a := cidr.Addr(); cidr.Contains(a); a = a.Next() {
		r.queue = append(r.queue, refFree{addr: a})
	}
	return r
}

func (r *refBlock) ok(f refFree, now, cooldown int64) bool {
	return f.at == 0 || cooldown == 0 || now-f.at >= cooldown
}

func (r *refBlock) assign(n int, h string, now, cooldown int64) []netip.Addr {
	var out []netip.Addr
	var rest []refFree
	for _, f := range r.queue {
		if len(out) < n && r.ok(f, now, cooldown) {
			out = append(out, f.addr)
			r.owner[f.addr] = h
			continue
		}
		rest = append(rest, f)
	}
	r.queue = rest
	return out
}

func (r *refBlock) assignAddr(a netip.Addr, h string) bool {
	if _, taken := r.owner[a]; taken {
		return false
	}
	r.owner[a] = h
	r.queue = slices.DeleteFunc(r.queue, func(f refFree) bool { return f.addr == a })
	return true
}

func (r *refBlock) release(addrs []netip.Addr, now int64) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if _, taken := r.owner[a]; taken {
			delete(r.owner, a)
			r.queue = append(r.queue, refFree{addr: a, at: now})
			out = append(out, a)
		}
	}
	return out
}

// TestAgainstReference drives a Block and the reference with the same
// random operations and compares every result and the whole state after
// every step, including a JSON round trip.
func TestAgainstReference(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 42))
		cidrs := []string{"10.1.2.0/28", "10.1.2.0/30", "fd00::100/124", "10.9.0.0/26"}
		cidr := netip.MustParsePrefix(cidrs[rng.IntN(len(cidrs))])
		b, err := New(cidr, "n")
		if err != nil {
			t.Fatal(err)
		}
		ref := newRef(cidr)
		var all []netip.Addr
		for a := cidr.Addr(); cidr.Contains(a); a = a.Next() {
			all = append(all, a)
		}
		handles := []string{"h0", "h1", "h2", "h3"}
		now := int64(1000)
		cooldown := int64(rng.IntN(3) * 5)
		for step := range 300 {
			now += int64(rng.IntN(4))
			h := handles[rng.IntN(len(handles))]
			tm := time.Unix(now, 0)
			switch rng.IntN(4) {
			case 0:
				n := 1 + rng.IntN(3)
				got := b.Assign(n, Attribute{Handle: h}, tm, time.Duration(cooldown)*time.Second)
				want := ref.assign(n, h, now, cooldown)
				if !slices.Equal(want, got) {
					t.Fatalf("seed %d step %d: Assign(%d) = %v, reference %v", seed, step, n, got, want)
				}
			case 1:
				a := all[rng.IntN(len(all))]
				err := b.AssignAddr(a, Attribute{Handle: h})
				if want := ref.assignAddr(a, h); want != (err == nil) {
					t.Fatalf("seed %d step %d: AssignAddr(%s) = %v, reference ok=%v", seed, step, a, err, want)
				}
			case 2:
				var addrs []netip.Addr
				for range 1 + rng.IntN(4) {
					addrs = append(addrs, all[rng.IntN(len(all))])
				}
				got, err := b.Release(addrs, tm)
				if err != nil {
					t.Fatal(err)
				}
				want := ref.release(addrs, now)
				var flat []netip.Addr
				for _, as := range got {
					flat = append(flat, as...)
				}
				slices.SortFunc(flat, netip.Addr.Compare)
				slices.SortFunc(want, netip.Addr.Compare)
				if !slices.Equal(want, flat) {
					t.Fatalf("seed %d step %d: Release = %v, reference %v", seed, step, flat, want)
				}
			case 3:
				got := b.ReleaseHandle(h, tm)
				var mine []netip.Addr
				for _, a := range all {
					if ref.owner[a] == h {
						mine = append(mine, a)
					}
				}
				want := ref.release(mine, now)
				if !slices.Equal(want, got) {
					t.Fatalf("seed %d step %d: ReleaseHandle = %v, reference %v", seed, step, got, want)
				}
			}
			compareState(t, b, ref, now, cooldown)
			if step%50 == 0 {
				data, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				b = &Block{}
				if err := json.Unmarshal(data, b); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Validate(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
		}
	}
}

func compareState(t *testing.T, b *Block, ref *refBlock, now, cooldown int64) {
	t.Helper()
	got := map[netip.Addr]string{}
	for _, a := range b.Allocated() {
		got[a.Addr] = a.Attribute.Handle
	}
	if !maps.Equal(ref.owner, got) {
		t.Fatalf("allocations (-ref +block):\n%s", cmp.Diff(ref.owner, got, cmpopts.EquateComparable(netip.Addr{})))
	}
	queue := make([]refFree, 0, len(b.Unallocated))
	for _, f := range b.Unallocated {
		queue = append(queue, refFree{addr: b.addr(f.Ordinal), at: f.ReleasedAt})
	}
	if !slices.Equal(ref.queue, queue) {
		t.Fatalf("reuse queue (-ref +block):\n%s", cmp.Diff(ref.queue, queue, cmp.AllowUnexported(refFree{}), cmpopts.EquateComparable(netip.Addr{})))
	}
	avail := 0
	for _, f := range ref.queue {
		if ref.ok(f, now, cooldown) {
			avail++
		}
	}
	if got := b.Available(time.Unix(now, 0), time.Duration(cooldown)*time.Second); got != avail {
		t.Fatalf("Available = %d, reference %d", got, avail)
	}
	handles := map[string]int{}
	for _, h := range ref.owner {
		handles[h]++
	}
	if got := b.Handles(); !maps.Equal(handles, got) {
		t.Fatalf("Handles (-ref +block):\n%s", cmp.Diff(handles, got))
	}
}
