package routes

import (
	"net/netip"
	"testing"
)

// benchRoutes returns n workload routes, /32s out of tabbya.
func benchRoutes(n int) []Route {
	rs := make([]Route, n)
	for i := range rs {
		a := netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)})
		rs[i] = Route{Dst: netip.PrefixFrom(a, 32), Dev: "tabbya"}
	}
	return rs
}

// BenchmarkRoutesApply measures Apply with 250 /32 routes: installing them
// into a namespace that has none (add), and a full resync against the
// kernel when all are in place (resync, no writes).
func BenchmarkRoutesApply(b *testing.B) {
	const n = 250
	e := newTestEnv(b)
	m := e.manager(b)
	routes := benchRoutes(n)
	ctx := ctxT(b)

	b.Run("add-250", func(b *testing.B) {
		for range b.N {
			m.Set(routes)
			res, err := m.Apply(ctx)
			if err != nil || res.Added != n {
				b.Fatalf("Apply = %+v, %v; want %d added", res, err, n)
			}
			b.StopTimer()
			m.Set(nil)
			if res, err := m.Apply(ctx); err != nil || res.Deleted != n {
				b.Fatalf("clean-up Apply = %+v, %v", res, err)
			}
			b.StartTimer()
		}
	})

	b.Run("resync-250", func(b *testing.B) {
		m.Set(routes)
		if _, err := m.Apply(ctx); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			res, err := m.Apply(ctx)
			if err != nil || res.Writes() != 0 {
				b.Fatalf("Apply = %+v, %v; want no writes", res, err)
			}
		}
	})
}
