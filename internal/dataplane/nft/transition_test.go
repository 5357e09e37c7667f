package nft

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// universe holds every variant of every object the transition test can
// pick. Variants are built once, so an object that a step keeps keeps its
// pointer, as the policy engine's Ruleset does.
type universe struct {
	sets     map[policy.SetID][]*policy.IPSet
	policies map[policy.PolicyID][]*policy.CompiledPolicy
	profiles map[policy.ProfileID][]*policy.CompiledProfile
	eps      map[policy.EndpointID][]*policy.EndpointRules
}

func newUniverse() *universe {
	u := &universe{
		sets:     map[policy.SetID][]*policy.IPSet{},
		policies: map[policy.PolicyID][]*policy.CompiledPolicy{},
		profiles: map[policy.ProfileID][]*policy.CompiledProfile{},
		eps:      map[policy.EndpointID][]*policy.EndpointRules{},
	}
	// Address sets: variants with one member more or less, and one that
	// turns into an interval set.
	for i := range 4 {
		id := policy.SetID(fmt.Sprintf("s:set%d", i))
		base := []netip.Prefix{pfx(fmt.Sprintf("10.65.%d.1/32", i)), pfx(fmt.Sprintf("fd65::%d:1/128", i))}
		u.sets[id] = []*policy.IPSet{
			{ID: id, Kind: policy.AddrSet, Members: base},
			{ID: id, Kind: policy.AddrSet, Members: append(slices.Clone(base), pfx(fmt.Sprintf("10.65.%d.2/32", i)))},
			{ID: id, Kind: policy.AddrSet, Members: base[:1]},
			{ID: id, Kind: policy.AddrSet, HasCIDRs: true, Members: append(slices.Clone(base), pfx(fmt.Sprintf("10.%d.0.0/16", 100+i)))},
			{ID: id, Kind: policy.AddrSet, HasCIDRs: true, Members: append(slices.Clone(base[:1]), pfx(fmt.Sprintf("10.%d.0.0/16", 100+i)),
				pfx(fmt.Sprintf("10.%d.1.0/24", 110+i)), pfx(fmt.Sprintf("10.%d.2.0/24", 110+i)), pfx("fd65:1::/64"))},
		}
	}
	np := policy.SetID("p:np0")
	u.sets[np] = []*policy.IPSet{
		{ID: np, Kind: policy.NamedPortSet, NamedPorts: []policy.NamedPortMember{{Addr: netip.MustParseAddr("10.65.0.1"), Protocol: protoTCP, Port: 80}}},
		{ID: np, Kind: policy.NamedPortSet, NamedPorts: []policy.NamedPortMember{{Addr: netip.MustParseAddr("10.65.0.1"), Protocol: protoTCP, Port: 80}, {Addr: netip.MustParseAddr("fd65::1"), Protocol: protoUDP, Port: 53}}},
	}
	rule := func(i int, a v1.Action) policy.CompiledRule {
		r := policy.CompiledRule{Action: a, Protocol: u8(protoTCP), Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: uint16(1000 + i), Hi: uint16(1000 + i)}}}}
		switch i % 5 {
		case 1:
			r.Src.Set = policy.SetID(fmt.Sprintf("s:set%d", i%4))
		case 2:
			r.Dst.NamedPorts = []policy.SetID{np}
		case 3:
			r.Src.Nets = []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.0.0/16")} // a constant set
		case 4:
			r.Dst.Ports = append(r.Dst.Ports, policy.PortRange{Lo: 2000, Hi: 2100}) // a constant set
			r.Dst.NotSet = policy.SetID(fmt.Sprintf("s:set%d", (i+1)%4))
		}
		return r
	}
	for i := range 5 {
		id := policy.NetworkPolicyID("default", fmt.Sprintf("pol%d", i))
		var vs []*policy.CompiledPolicy
		for v := range 3 {
			p := &policy.CompiledPolicy{ID: id, Tier: "default"}
			for j := range 2 + v {
				act := []v1.Action{v1.Allow, v1.Deny, v1.Pass, v1.Log}[(i+j+v)%4]
				p.Ingress = append(p.Ingress, rule(i+j, act))
				p.Egress = append(p.Egress, rule(i+j+v, v1.Allow))
			}
			vs = append(vs, p)
		}
		u.policies[id] = vs
	}
	// Long lists of networks go into named sets.
	long := func(n, shift int) []netip.Prefix {
		var out []netip.Prefix
		for k := range n {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte((k+shift)/256), byte(k + shift), 0}), 24))
		}
		return append(out, pfx(fmt.Sprintf("fd66:%x::/32", shift)))
	}
	longID := policy.GlobalNetworkPolicyID("long")
	u.policies[longID] = []*policy.CompiledPolicy{
		{ID: longID, Ingress: []policy.CompiledRule{{Action: v1.Deny, Src: policy.EntityMatch{Nets: long(300, 0)}, Dst: policy.EntityMatch{NotNets: long(100, 7)}}}},
		{ID: longID, Ingress: []policy.CompiledRule{{Action: v1.Deny, Src: policy.EntityMatch{Nets: long(299, 1)}, Dst: policy.EntityMatch{NotNets: long(100, 7)}}}},
		{ID: longID, Ingress: []policy.CompiledRule{{Action: v1.Deny, Src: policy.EntityMatch{Nets: long(10, 0)}}}},
	}
	for i := range 2 {
		id := policy.ProfileID(fmt.Sprintf("prof%d", i))
		u.profiles[id] = []*policy.CompiledProfile{
			{ID: id, Ingress: []policy.CompiledRule{{Action: v1.Allow}}, Egress: []policy.CompiledRule{{Action: v1.Allow}}},
			{ID: id, Ingress: []policy.CompiledRule{rule(i, v1.Allow), {Action: v1.Deny}}, Egress: []policy.CompiledRule{{Action: v1.Allow}}},
		}
	}
	for i := range 6 {
		name := fmt.Sprintf("wl%d", i)
		iface := fmt.Sprintf("tabby%010d", i)
		addrs := []string{fmt.Sprintf("10.65.9.%d", i+1), fmt.Sprintf("fd65::9:%d", i+1)}
		id := policy.WorkloadEndpointID("default", name)
		pols := func(v int) []policy.PolicyID {
			var out []policy.PolicyID
			for j := range 1 + v {
				out = append(out, policy.NetworkPolicyID("default", fmt.Sprintf("pol%d", (i+j)%5)))
			}
			return out
		}
		prof := policy.ProfileID(fmt.Sprintf("prof%d", i%2))
		v0 := wep(name, iface, addrs, tiered(pols(0), prof), tiered(nil, prof))
		v1_ := wep(name, iface, addrs, tiered(pols(1), prof), tiered(pols(0), prof))
		v2 := wep(name, iface, addrs[:1], policy.Chain{
			Tiers:     []policy.TierPolicies{{Name: "t1", Policies: pols(0), EndAction: v1.Pass}, {Name: "t2", Policies: pols(2), EndAction: v1.Deny}},
			Profiles:  []policy.ProfileID{prof},
			EndAction: v1.Deny,
		}, tiered(pols(1)))
		v2.AllowSpoofedSources = []netip.Prefix{pfx(fmt.Sprintf("10.66.%d.0/24", i))}
		u.eps[id] = []*policy.EndpointRules{v0, v1_, v2}
	}
	return u
}

// pick builds a random ruleset: random endpoints in random variants, and
// every object they need (plus some they do not), also in random
// variants.
func (u *universe) pick(rng *rand.Rand) *policy.Ruleset {
	rs := policy.NewRuleset("node1")
	for _, id := range slices.Sorted(maps.Keys(u.eps)) {
		if rng.IntN(3) > 0 {
			vs := u.eps[id]
			rs.Endpoints[id] = vs[rng.IntN(len(vs))]
		}
	}
	for _, id := range slices.Sorted(maps.Keys(u.policies)) {
		vs := u.policies[id]
		rs.Policies[id] = vs[rng.IntN(len(vs))]
	}
	for _, id := range slices.Sorted(maps.Keys(u.profiles)) {
		vs := u.profiles[id]
		rs.Profiles[id] = vs[rng.IntN(len(vs))]
	}
	for _, id := range slices.Sorted(maps.Keys(u.sets)) {
		vs := u.sets[id]
		rs.IPSets[id] = vs[rng.IntN(len(vs))]
	}
	// Drop some objects nobody needs: policies and profiles no endpoint
	// uses, a set.
	used := referenced(rs)
	for id := range rs.Policies {
		if !used[string(id)] && rng.IntN(2) == 0 {
			delete(rs.Policies, id)
		}
	}
	for id := range rs.Profiles {
		if !used[string(id)] && rng.IntN(2) == 0 {
			delete(rs.Profiles, id)
		}
	}
	if rng.IntN(2) == 0 {
		delete(rs.IPSets, "s:set3")
	}
	return rs
}

// referenced returns the policies and profiles the endpoints use.
func referenced(rs *policy.Ruleset) map[string]bool {
	used := map[string]bool{}
	for _, ep := range rs.Endpoints {
		for _, c := range []policy.Chain{ep.Ingress, ep.Egress} {
			for _, t := range c.Tiers {
				for _, id := range t.Policies {
					used[string(id)] = true
				}
			}
			for _, id := range c.Profiles {
				used[string(id)] = true
			}
		}
	}
	return used
}

// canonical sorts the blocks (sets, maps, chains) of an `nft list table`
// listing: chains created at different times list in a different order.
// Lines within a block keep their order.
func canonical(listing string) string {
	lines := strings.Split(strings.TrimSpace(listing), "\n")
	var blocks []string
	var cur []string
	for _, l := range lines[1 : len(lines)-1] { // inside "table ... {" and "}"
		if strings.TrimSpace(l) == "" {
			continue
		}
		cur = append(cur, l)
		if l == "\t}" {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	sort.Strings(blocks)
	return strings.Join(blocks, "\n")
}

// TestTransitions jumps between random states and checks after every
// Apply that the kernel holds exactly what a from-scratch render of the
// same state holds, that the renderer's record matches the kernel, and
// that applying again writes nothing.
func TestTransitions(t *testing.T) {
	requireNft(t)
	u := newUniverse()
	seed := uint64(1)
	if s, err := strconv.ParseUint(os.Getenv("TABBY_NFT_SEED"), 10, 64); err == nil {
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	ns := testkit.NetNS(t)
	fresh := testkit.NetNS(t)
	r := newRenderer(t, ns, Config{})
	steps := 40
	if testing.Short() {
		steps = 10
	}
	rs := policy.NewRuleset("node1")
	for step := range 2 * steps {
		if step < steps {
			rs = u.pick(rng) // anything may change
		} else {
			rs = u.mutate(rng, rs) // one object changes
		}
		before := snapshotHandles(t, r)
		r.Set(rs)
		res := mustApply(t, r)
		checkUntouched(t, step, before, snapshotHandles(t, r))
		t.Logf("step %d: %d endpoints: %+v", step, len(rs.Endpoints), res)
		if step > 0 && res.Rebuilt {
			t.Fatalf("step %d rebuilt the table", step)
		}
		got := canonical(listTable(t, ns, "tabby"))
		want := canonical(renderFresh(t, fresh, rs))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d (seed %d): incremental table differs from a fresh render (-fresh +incremental):\n%s", step, seed, diff)
		}
		checkRecord(t, r)
		if res := mustApply(t, r); res.Writes != 0 {
			t.Fatalf("step %d: second Apply wrote %+v", step, res)
		}
		for id := range rs.Endpoints {
			if st := r.EndpointStatus(id); !st.Programmed {
				t.Fatalf("step %d: %s not programmed: %+v", step, id, st)
			}
		}
	}
}

// mutate returns a copy of rs with one object added, removed or changed.
func (u *universe) mutate(rng *rand.Rand, rs *policy.Ruleset) *policy.Ruleset {
	out := &policy.Ruleset{Node: rs.Node, Endpoints: maps.Clone(rs.Endpoints), Policies: maps.Clone(rs.Policies),
		Profiles: maps.Clone(rs.Profiles), IPSets: maps.Clone(rs.IPSets), Failsafe: rs.Failsafe}
	switch rng.IntN(4) {
	case 0:
		id := slices.Sorted(maps.Keys(u.eps))[rng.IntN(len(u.eps))]
		if _, ok := out.Endpoints[id]; ok && rng.IntN(3) == 0 {
			delete(out.Endpoints, id)
		} else {
			out.Endpoints[id] = u.eps[id][rng.IntN(len(u.eps[id]))]
		}
		// The endpoint may use policies and profiles that are gone.
		for id, vs := range u.policies {
			if out.Policies[id] == nil {
				out.Policies[id] = vs[0]
			}
		}
		for id, vs := range u.profiles {
			if out.Profiles[id] == nil {
				out.Profiles[id] = vs[0]
			}
		}
	case 1:
		id := slices.Sorted(maps.Keys(u.policies))[rng.IntN(len(u.policies))]
		if _, ok := out.Policies[id]; ok && !referenced(out)[string(id)] && rng.IntN(2) == 0 {
			delete(out.Policies, id)
		} else {
			out.Policies[id] = u.policies[id][rng.IntN(len(u.policies[id]))]
		}
	case 2:
		id := slices.Sorted(maps.Keys(u.profiles))[rng.IntN(len(u.profiles))]
		if _, ok := out.Profiles[id]; ok && !referenced(out)[string(id)] && rng.IntN(2) == 0 {
			delete(out.Profiles, id)
		} else {
			out.Profiles[id] = u.profiles[id][rng.IntN(len(u.profiles[id]))]
		}
	default:
		id := slices.Sorted(maps.Keys(u.sets))[rng.IntN(len(u.sets))]
		out.IPSets[id] = u.sets[id][rng.IntN(len(u.sets[id]))]
	}
	return out
}

// handles is, per chain, the spec the renderer last wrote and the handles
// of the chain's rules in the kernel.
type handles map[string]struct {
	from    *chainSpec
	handles []uint64
}

func snapshotHandles(t *testing.T, r *Renderer) handles {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := handles{}
	if r.st == nil {
		return out
	}
	rules, err := r.k.rules("")
	must(t, err)
	for _, kr := range rules {
		e := out[kr.chain]
		e.handles = append(e.handles, kr.handle)
		out[kr.chain] = e
	}
	for name, kc := range r.st.chains {
		e := out[name]
		e.from = kc.from
		out[name] = e
	}
	return out
}

// checkUntouched: a chain whose desired spec did not change keeps its
// rules, handle for handle.
func checkUntouched(t *testing.T, step int, before, after handles) {
	t.Helper()
	for name, b := range before {
		a, ok := after[name]
		if !ok || b.from == nil || a.from != b.from {
			continue
		}
		if !slices.Equal(a.handles, b.handles) {
			t.Fatalf("step %d: chain %s did not change but its rules were rewritten: handles %v → %v", step, name, b.handles, a.handles)
		}
	}
}

// renderFresh renders rs into the (emptied) namespace with a new
// renderer and lists the table.
func renderFresh(t *testing.T, ns *netns.NS, rs *policy.Ruleset) string {
	t.Helper()
	_, _ = netns.Exec(ctxT(t), ns.Path(), "nft", "delete", "table", "inet", "tabby")
	r, err := New(Config{}, ns, nil)
	must(t, err)
	defer r.Close()
	r.Set(rs)
	if res := mustApply(t, r); res.Repairs != 0 || res.ChainsDeleted != 0 {
		t.Fatalf("fresh render found something: %+v", res)
	}
	return listTable(t, ns, "tabby")
}

// checkRecord compares the renderer's record of the table with the
// kernel's.
func checkRecord(t *testing.T, r *Renderer) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	now, err := r.k.readState()
	must(t, err)
	if n := drift(r.st, now); n != 0 {
		t.Fatalf("the renderer's record differs from the kernel in %d objects", n)
	}
}
