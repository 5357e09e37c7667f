package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// scaleRuleset builds a node with nEps workloads and nPols policies over
// 100 address sets of 50 members: each endpoint is selected by 5 ingress
// and 2 egress policies and has a namespace profile.
func scaleRuleset(nEps, nPols int) *policy.Ruleset {
	return scaleRulesetSets(nEps, nPols, 50)
}

// scaleRulesetSets is scaleRuleset with members addresses per set (at
// most 65,534).
func scaleRulesetSets(nEps, nPols, members int) *policy.Ruleset {
	rs := policy.NewRuleset("node1")
	for s := range 100 {
		set := &policy.IPSet{ID: policy.SetID(fmt.Sprintf("s:bench%03d", s)), Kind: policy.AddrSet}
		for m := range members {
			set.Members = append(set.Members, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + s), byte((m + 1) >> 8), byte(m + 1)}), 32))
		}
		rs.IPSets[set.ID] = set
	}
	for i := range nPols {
		id := policy.NetworkPolicyID("default", fmt.Sprintf("pol%04d", i))
		rs.Policies[id] = &policy.CompiledPolicy{ID: id, Tier: "default",
			Ingress: []policy.CompiledRule{
				{Action: v1.Allow, Protocol: u8(protoTCP), Src: policy.EntityMatch{Set: policy.SetID(fmt.Sprintf("s:bench%03d", i%100))},
					Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: uint16(8000 + i%100), Hi: uint16(8000 + i%100)}}}},
				{Action: v1.Allow, Protocol: u8(protoUDP), Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 53, Hi: 53}}}},
				{Action: v1.Deny, Src: policy.EntityMatch{Nets: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
			},
			Egress: []policy.CompiledRule{{Action: v1.Allow, Dst: policy.EntityMatch{Set: policy.SetID(fmt.Sprintf("s:bench%03d", (i+1)%100))}}},
		}
	}
	rs.Profiles["kns.default"] = &policy.CompiledProfile{ID: "kns.default",
		Ingress: []policy.CompiledRule{{Action: v1.Allow}}, Egress: []policy.CompiledRule{{Action: v1.Allow}}}
	for e := range nEps {
		ep := benchEndpoint(e, nPols)
		rs.Endpoints[ep.ID] = ep
	}
	return rs
}

func benchEndpoint(e, nPols int) *policy.EndpointRules {
	pols := func(n, off int) []policy.PolicyID {
		var out []policy.PolicyID
		for j := range n {
			out = append(out, policy.NetworkPolicyID("default", fmt.Sprintf("pol%04d", (e*7+off+j)%nPols)))
		}
		return out
	}
	a4 := netip.AddrFrom4([4]byte{10, 65, byte(e >> 8), byte(e)})
	a6 := netip.AddrFrom16([16]byte{0xfd, 0x65, 14: byte(e >> 8), 15: byte(e)})
	return &policy.EndpointRules{
		ID:            policy.WorkloadEndpointID("default", fmt.Sprintf("pod%04d", e)),
		Kind:          policy.WorkloadEndpoint,
		InterfaceName: fmt.Sprintf("tabby%010d", e),
		Addrs:         []netip.Prefix{netip.PrefixFrom(a4, 32), netip.PrefixFrom(a6, 128)},
		Ingress:       tiered(pols(5, 0), "kns.default"),
		Egress:        tiered(pols(2, 5), "kns.default"),
	}
}

// BenchmarkApplyNewEndpoint measures Set+Apply for one new endpoint on a
// node with 200 endpoints and 1,000 policies (goal: p99 < 20 ms), and for
// removing it again.
func BenchmarkApplyNewEndpoint(b *testing.B) {
	testkit.RequireRoot(b)
	ns := testkit.NetNS(b)
	r := newRenderer(b, ns, Config{})
	rs := scaleRuleset(200, 1000)
	r.Set(rs)
	start := time.Now()
	res, err := r.Apply(ctxT(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("initial Apply: %v, %d messages, %d chains, %d rules", time.Since(start), res.Writes, res.ChainsAdded, res.RulesAdded)

	var add, del []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ep := benchEndpoint(200+i%50, 1000) // a new object every time
		t0 := time.Now()
		rs.Endpoints[ep.ID] = ep
		r.Set(rs)
		res, err := r.Apply(ctxT(b))
		add = append(add, time.Since(t0))
		if err != nil || res.ChainsAdded != 2 {
			b.Fatalf("add: %+v, %v", res, err)
		}
		t0 = time.Now()
		delete(rs.Endpoints, ep.ID)
		r.Set(rs)
		res, err = r.Apply(ctxT(b))
		del = append(del, time.Since(t0))
		if err != nil || res.ChainsDeleted != 2 {
			b.Fatalf("remove: %+v, %v", res, err)
		}
	}
	reportPercentiles(b, "add", add)
	reportPercentiles(b, "remove", del)
}

func reportPercentiles(b *testing.B, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.5), what+"-p50-ms")
	b.ReportMetric(p(0.99), what+"-p99-ms")
}

// BenchmarkResync measures a full Resync of a node with 250 endpoints and
// 1,000 policies that has nothing to repair (goal: < 1 s): with 100 sets
// of 50 addresses, and of 1,400 (140,000 elements, about what the node of
// the policy suite holds with 100,000 remote endpoints).
func BenchmarkResync(b *testing.B) {
	for _, members := range []int{50, 1400} {
		b.Run(fmt.Sprintf("set-elements-%d", 100*members), func(b *testing.B) { benchResync(b, members) })
	}
}

func benchResync(b *testing.B, members int) {
	testkit.RequireRoot(b)
	ns := testkit.NetNS(b)
	r := newRenderer(b, ns, Config{})
	r.Set(scaleRulesetSets(250, 1000, members))
	if _, err := r.Apply(ctxT(b)); err != nil {
		b.Fatal(err)
	}
	var ds []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		res, err := r.Resync(ctxT(b))
		ds = append(ds, time.Since(t0))
		if err != nil || res.Writes != 0 {
			b.Fatalf("Resync: %+v, %v", res, err)
		}
	}
	reportPercentiles(b, "resync", ds)
}
