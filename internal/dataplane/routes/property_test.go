package routes

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

var (
	propSeed  = flag.Uint64("routes.seed", 0, "seed for TestTransitions (0: from the clock)")
	propSteps = flag.Int("routes.steps", 60, "steps of TestTransitions")
)

// candidates returns, for a destination, every form a desired route for it
// may take in TestTransitions.
func candidates(dst netip.Prefix) []Route {
	if dst.Addr().Is4() {
		return []Route{
			{Dst: dst, Dev: "tabbya"},
			{Dst: dst, Dev: "tabbyb"},
			{Dst: dst, Type: Blackhole},
			{Dst: dst, Nexthops: []Nexthop{{Gateway: gw4a}}},
			{Dst: dst, Nexthops: []Nexthop{{Gateway: gw4b, Dev: "fab0"}}},
			{Dst: dst, Nexthops: []Nexthop{{Gateway: gw4a}, {Gateway: gw4b}}},
			{Dst: dst, Nexthops: []Nexthop{{Dev: "tabbya"}, {Dev: "tabbyb"}}},
		}
	}
	return []Route{
		{Dst: dst, Dev: "tabbya"},
		{Dst: dst, Dev: "tabbyb"},
		{Dst: dst, Type: Blackhole},
		{Dst: dst, Nexthops: []Nexthop{{Gateway: gw6a}}},
		{Dst: dst, Nexthops: []Nexthop{{Gateway: gw6b, Dev: "fab0"}}},
		{Dst: dst, Nexthops: []Nexthop{{Gateway: gw6a}, {Gateway: gw6b}}},
		{Dst: dst, Nexthops: []Nexthop{{Gateway: gw6a, Dev: "fab0"}, {Gateway: gw6b, Dev: "fab0"}}},
	}
}

// TestTransitions applies random desired sets one after another, with
// random drift made behind the manager's back in between, and checks after
// every Apply that the kernel's routes of our protocol are exactly the
// desired set, and that a second Apply writes nothing. The reference model
// is the desired set itself.
func TestTransitions(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	seed := *propSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -args -routes.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	var dsts []netip.Prefix
	for _, s := range []string{
		"10.1.0.1/32", "10.1.0.2/32", "10.1.0.3/32", "10.1.1.0/26", "10.2.0.0/24", "10.2.1.0/24", "10.3.0.0/16",
		"fd01::1/128", "fd01::2/128", "fd01::3/128", "fd01:1::/122", "fd02::/64", "fd02:1::/64", "fd03::/48",
	} {
		dsts = append(dsts, pfx(s))
	}
	metrics := []int{0, 100}

	for step := range *propSteps {
		// A random desired set: each (destination, metric) is in it with
		// probability 1/2, in a random form; order shuffled.
		var desired []Route
		for _, d := range dsts {
			for _, metric := range metrics {
				if rng.IntN(2) == 0 {
					continue
				}
				cs := candidates(d)
				r := cs[rng.IntN(len(cs))].clone()
				r.Metric = metric
				desired = append(desired, r)
			}
		}
		rng.Shuffle(len(desired), func(i, j int) { desired[i], desired[j] = desired[j], desired[i] })

		drift(t, e, rng, dsts)

		m.Set(desired)
		res := e.applyTwice(t, m)
		if len(res.Refused)+len(res.Pending) != 0 {
			t.Fatalf("step %d: refused %v, pending %v", step, res.Refused, res.Pending)
		}
		if diff := cmp.Diff(expected(desired, "fab0"), e.listed(t, m), cmpOpts); diff != "" {
			t.Fatalf("step %d (seed %d): kernel routes (-want +got):\n%s", step, seed, diff)
		}
	}
}

// drift changes the kernel behind the manager's back: it deletes one of
// our routes, adds a stray of our protocol, or rewrites one of ours.
func drift(t *testing.T, e *testEnv, rng *rand.Rand, dsts []netip.Prefix) {
	t.Helper()
	ours, err := e.host.RouteList(nl.RouteFilter{Protocol: DefaultProtocol})
	if err != nil {
		t.Fatal(err)
	}
	switch rng.IntN(4) {
	case 0: // nothing
	case 1:
		if len(ours) > 0 {
			r := ours[rng.IntN(len(ours))]
			if err := e.host.RouteDel(r); err != nil {
				t.Fatalf("drift: %v", err)
			}
		}
	case 2:
		d := dsts[rng.IntN(len(dsts))]
		r := nl.Route{Dst: d, Protocol: DefaultProtocol, Type: nl.RouteBlackhole, Priority: 300 + rng.IntN(10)}
		if err := e.host.RouteReplace(r); err != nil {
			t.Fatalf("drift: %v", err)
		}
	case 3:
		if len(ours) > 0 {
			r := ours[rng.IntN(len(ours))]
			r.Type, r.Gateway, r.LinkIndex, r.Nexthops, r.Scope = nl.RouteUnicast, netip.Addr{}, e.idx["tabbyb"], nil, nl.ScopeLink
			if err := e.host.RouteReplace(r); err != nil {
				t.Fatalf("drift: %v", err)
			}
		}
	}
}
