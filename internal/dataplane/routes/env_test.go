package routes

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// countingKernel is the real kernel, counting netlink writes.
type countingKernel struct {
	*nl.Handle
	writes atomic.Int64
}

func (c *countingKernel) RouteAdd(r nl.Route) error {
	c.writes.Add(1)
	return c.Handle.RouteAdd(r)
}

func (c *countingKernel) RouteReplace(r nl.Route) error {
	c.writes.Add(1)
	return c.Handle.RouteReplace(r)
}

func (c *countingKernel) RouteDel(r nl.Route) error {
	c.writes.Add(1)
	return c.Handle.RouteDel(r)
}

// testEnv is a "host" namespace with:
//   - fab0: a veth to a "fabric" namespace, 10.9.0.1/24 and fd09::1/64, so
//     10.9.0.2-3 and fd09::2-3 are gateways on a connected subnet;
//   - tabbya and tabbyb: up veths to two workload namespaces.
type testEnv struct {
	host   *nl.Handle
	k      *countingKernel
	hostNS *netns.NS
	idx    map[string]int
}

const (
	fabricV4 = "10.9.0.0/24"
	fabricV6 = "fd09::/64"
)

var (
	gw4a = netip.MustParseAddr("10.9.0.2")
	gw4b = netip.MustParseAddr("10.9.0.3")
	gw6a = netip.MustParseAddr("fd09::2")
	gw6b = netip.MustParseAddr("fd09::3")
)

func openHandle(t testing.TB, ns *netns.NS) *nl.Handle {
	t.Helper()
	h, err := nl.Open(ns.Path())
	if err != nil {
		t.Fatalf("nl.Open: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	hostNS := testkit.NetNS(t)
	e := &testEnv{host: openHandle(t, hostNS), hostNS: hostNS, idx: map[string]int{}}
	e.k = &countingKernel{Handle: e.host}
	lo, err := e.host.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.host.LinkSetUp(lo.Index); err != nil {
		t.Fatal(err)
	}
	fab := e.addVeth(t, "fab0")
	for _, p := range []string{"10.9.0.1/24", "fd09::1/64"} {
		if err := e.host.AddrAdd(nl.Addr{LinkIndex: fab, Prefix: netip.MustParsePrefix(p), NoDAD: true}); err != nil {
			t.Fatal(err)
		}
	}
	e.addVeth(t, "tabbya")
	e.addVeth(t, "tabbyb")
	return e
}

// addVeth makes an up veth name in the host namespace with its peer, also
// up, in a new namespace.
func (e *testEnv) addVeth(t testing.TB, name string) int {
	t.Helper()
	peerNS := testkit.NetNS(t)
	l, err := e.host.CreateVeth(nl.Veth{Name: name, PeerName: "eth0", PeerNS: peerNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.host.LinkSetUp(l.Index); err != nil {
		t.Fatal(err)
	}
	peer := openHandle(t, peerNS)
	pl, err := peer.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.LinkSetUp(pl.Index); err != nil {
		t.Fatal(err)
	}
	e.idx[name] = l.Index
	return l.Index
}

func (e *testEnv) manager(t testing.TB) *Manager {
	t.Helper()
	m, err := New(Config{}, e.k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// apply runs Apply and fails the test on error.
func apply(t testing.TB, m *Manager) Result {
	t.Helper()
	res, err := m.Apply(ctxT(t))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

// applyTwice applies, then checks that a second Apply makes no writes at
// all, counted at the netlink layer.
func (e *testEnv) applyTwice(t testing.TB, m *Manager) Result {
	t.Helper()
	res := apply(t, m)
	before := e.k.writes.Load()
	res2 := apply(t, m)
	if n := e.k.writes.Load() - before; n != 0 || res2.Writes() != 0 {
		t.Errorf("second Apply made %d netlink writes (result %+v), want 0", n, res2)
	}
	return res
}

// expected turns desired routes into what List reports: the kernel's
// metrics, gateways' links filled in, next hops in a canonical order.
func expected(rs []Route, gwDev string) []Route {
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		r = r.clone()
		r.Dst = r.Dst.Masked()
		r.Metric = kernelMetric(r.Dst, r.Metric)
		for i := range r.Nexthops {
			if r.Nexthops[i].Dev == "" {
				r.Nexthops[i].Dev = gwDev
			}
		}
		out = append(out, canonical(r))
	}
	slices.SortFunc(out, compareRoutes)
	return out
}

func canonical(r Route) Route {
	slices.SortFunc(r.Nexthops, func(a, b Nexthop) int {
		if c := a.Gateway.Compare(b.Gateway); c != 0 {
			return c
		}
		if a.Dev < b.Dev {
			return -1
		}
		if a.Dev > b.Dev {
			return 1
		}
		return 0
	})
	if len(r.Nexthops) == 0 {
		r.Nexthops = nil
	}
	return r
}

func (e *testEnv) listed(t testing.TB, m *Manager) []Route {
	t.Helper()
	rs, err := m.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		rs[i] = canonical(rs[i])
	}
	return rs
}

var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }
