package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// The property tests build random clusters from small domains (so that
// selectors, addresses and ports collide often) and check that
//   - every verdict of the compiled rulesets equals the naive reference's,
//     down to the deciding rule (scenarioWorld.flow), and
//   - any sequence of updates, deletes and flushes, with the deltas applied
//     to an empty ruleset, ends in the ruleset a fresh compile gives
//     (scenarioWorld.sync).

func TestPropertyVerdictsMatchNaive(t *testing.T) {
	for seed := range uint64(60) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 1))
			g := &gen{r: r}
			w := newScenarioWorld(t)
			for _, o := range g.world() {
				w.put(o)
			}
			w.sync(t)
			for range 300 {
				w.flow(t, g.packet(w))
				if t.Failed() {
					t.Logf("objects:\n%s", dumpObjects(w.naive.list()))
					return
				}
			}
		})
	}
}

func TestPropertyIncrementalEqualsFresh(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 2))
			g := &gen{r: r}
			w := newScenarioWorld(t)
			for range 150 {
				switch objs := w.naive.list(); {
				case len(objs) > 0 && r.IntN(5) == 0:
					o := objs[r.IntN(len(objs))]
					k, _ := v1.KindOf(o)
					m := o.GetObjectMeta()
					ns := m.Namespace
					if !k.Namespaced {
						ns = ""
					}
					w.delete(k.Kind, ns, m.Name)
				default:
					if o := g.object(); o != nil {
						w.put(o)
					}
				}
				if r.IntN(8) == 0 {
					w.sync(t)
				}
				if t.Failed() {
					return
				}
			}
			w.sync(t)
			for range 100 {
				w.flow(t, g.packet(w))
			}
		})
	}
}

func dumpObjects(objs []v1.Object) string {
	data, err := v1.EncodeYAML(objs...)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// gen makes random objects and packets.
type gen struct {
	r *rand.Rand
}

func (g *gen) pick(options ...string) string { return options[g.r.IntN(len(options))] }

func (g *gen) chance(n int) bool { return g.r.IntN(n) == 0 }

var (
	genNamespaces = []string{"ns1", "ns2", "ns3"}
	genSelectors  = []string{
		"", "all()", "app == 'a'", "app in {'a', 'b'}", "has(role)", "!has(app)",
		"role == 'x' && app != 'c'", "global()", "tabby.dev/orchestrator == 'k8s'",
		"tabby.dev/namespace == 'ns1'", "prof == 'yes'", "tier == 'web' || app == 'c'",
		"(app == 'a' || app == 'b') && role == 'x'", "!app == 'a' && role in {'x', 'y'}",
		"app == 'a && b' && role == 'x'", "app in {} && role == 'x'", "has(app) && app not in {'a'}",
		"app == 'a' && tabby.dev/orchestrator == 'k8s'", "prof == 'yes' && app in {'b', 'c'}",
	}
	genNSSelectors = []string{"", "", "all()", "env == 'a'", "global()", "!has(env)", "tabby.dev/namespace == 'ns2'"}
	genNets        = []string{"10.0.0.0/29", "10.0.0.8/29", "10.0.0.0/24", "192.168.0.0/16", "10.1.0.1/32", "fd00::/120", "0.0.0.0/0"}
)

// world returns a random cluster.
func (g *gen) world() []v1.Object {
	var out []v1.Object
	for range 25 {
		if o := g.object(); o != nil {
			out = append(out, o)
		}
	}
	// Make sure there are endpoints to send packets between.
	for i := range 6 {
		out = append(out, g.workload(i))
	}
	return out
}

func (g *gen) labels(keys ...string) map[string]string {
	m := map[string]string{}
	for _, k := range keys {
		if g.chance(2) {
			m[k] = g.pick("a", "b", "c", "x", "y", "web", "yes")
		}
	}
	return m
}

// object returns a random valid object, or nil.
func (g *gen) object() v1.Object {
	var o v1.Object
	switch g.r.IntN(12) {
	case 0, 1, 2:
		o = g.workload(g.r.IntN(10))
	case 3:
		i := g.r.IntN(2) + 1
		o = &v1.HostEndpoint{
			Metadata: v1.ObjectMeta{Name: fmt.Sprintf("h%d", i), Labels: g.labels("app", "role", "tier")},
			Spec: v1.HostEndpointSpec{
				Node: g.pick("n1", "n2"), InterfaceName: g.pick("eth0", "*", ""),
				ExpectedIPs: []string{fmt.Sprintf("10.1.0.%d", i)},
				Profiles:    g.profiles(),
				Ports:       []v1.EndpointPort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 8080}},
			},
		}
	case 4:
		o = &v1.NetworkSet{
			Metadata: v1.ObjectMeta{Name: g.pick("s1", "s2"), Namespace: g.pick(genNamespaces...), Labels: g.labels("app", "role")},
			Spec:     v1.NetworkSetSpec{Nets: []string{g.pick(genNets...)}},
		}
	case 5:
		o = &v1.GlobalNetworkSet{
			Metadata: v1.ObjectMeta{Name: g.pick("g1", "g2"), Labels: g.labels("app", "role")},
			Spec:     v1.GlobalNetworkSetSpec{Nets: []string{g.pick(genNets...), g.pick(genNets...)}},
		}
	case 6:
		o = &v1.Namespace{Metadata: v1.ObjectMeta{Name: g.pick(genNamespaces...), Labels: g.labels("env")}}
	case 7:
		o = &v1.Profile{
			Metadata: v1.ObjectMeta{Name: g.pick("p1", "p2", "kns.ns1")},
			Spec: v1.ProfileSpec{
				LabelsToApply: g.labels("prof", "app"),
				Ingress:       g.rules(""),
				Egress:        g.rules(""),
			},
		}
	case 8:
		t := &v1.Tier{Metadata: v1.ObjectMeta{Name: g.pick("t1", "t2", "default")}}
		if g.chance(3) {
			t.Spec.DefaultAction = v1.Pass
		}
		if t.Metadata.Name != "default" && !g.chance(4) {
			order := float64(g.r.IntN(3)) * 1e6
			t.Spec.Order = &order
		}
		o = t
	case 9:
		c := &v1.Configuration{Metadata: v1.ObjectMeta{Name: g.pick("default", "node.n1")}}
		if g.chance(2) {
			in := []v1.ProtoPort{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53, Net: "10.0.0.0/29"}}
			c.Spec.FailsafeInboundHostPorts = &in
		}
		if g.chance(2) {
			out := []v1.ProtoPort{{Protocol: "TCP", Port: 8080}}
			c.Spec.FailsafeOutboundHostPorts = &out
		}
		o = c
	default:
		o = g.policy()
	}
	v1.SetDefaults(o)
	if v1.Validate(o) != nil {
		return nil
	}
	return o
}

func (g *gen) profiles() []string {
	var out []string
	for _, p := range []string{"p1", "p2", "kns.ns1", "missing"} {
		if g.chance(3) {
			out = append(out, p)
		}
	}
	return out
}

func (g *gen) workload(i int) *v1.WorkloadEndpoint {
	w := &v1.WorkloadEndpoint{
		Metadata: v1.ObjectMeta{Name: fmt.Sprintf("w%d", i), Namespace: genNamespaces[i%3], Labels: g.labels("app", "role", "tier")},
		Spec: v1.WorkloadEndpointSpec{
			Node:          g.pick("n1", "n2"),
			InterfaceName: fmt.Sprintf("tabby%d", i),
			IPNetworks:    []string{fmt.Sprintf("10.0.0.%d/32", i+1)},
			Profiles:      g.profiles(),
		},
	}
	if g.chance(2) {
		w.Spec.Orchestrator = "k8s"
	}
	if g.chance(3) {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, fmt.Sprintf("fd00::%d/128", i+1))
	}
	if g.chance(2) {
		w.Spec.ServiceAccountName = g.pick("sa1", "sa2")
	}
	if g.chance(2) {
		w.Spec.Ports = append(w.Spec.Ports, v1.WorkloadEndpointPort{Name: "http", Protocol: v1.ProtocolTCP, Port: uint16(g.r.IntN(2)*8000 + 80)})
	}
	if g.chance(3) {
		w.Spec.Ports = append(w.Spec.Ports, v1.WorkloadEndpointPort{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53})
	}
	return w
}

func (g *gen) policy() v1.Object {
	tier := g.pick("default", "default", "t1", "t2")
	name := g.pick("a", "b", "c")
	if tier != "default" {
		name = tier + "." + name
	}
	var order *float64
	if !g.chance(3) {
		o := float64(g.r.IntN(3) * 10)
		order = &o
	}
	var types []v1.PolicyType
	switch g.r.IntN(4) {
	case 0:
		types = []v1.PolicyType{v1.PolicyTypeIngress}
	case 1:
		types = []v1.PolicyType{v1.PolicyTypeEgress}
	case 2:
		types = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
	}
	if g.chance(2) {
		ns := g.pick(genNamespaces...)
		return &v1.NetworkPolicy{
			Metadata: v1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1.NetworkPolicySpec{
				Tier: tier, Order: order, Selector: g.pick(genSelectors...), Types: types,
				Ingress: g.rules(ns), Egress: g.rules(ns),
			},
		}
	}
	p := &v1.GlobalNetworkPolicy{
		Metadata: v1.ObjectMeta{Name: name},
		Spec: v1.GlobalNetworkPolicySpec{
			Tier: tier, Order: order, Selector: g.pick(genSelectors...), Types: types,
			Ingress: g.rules(""), Egress: g.rules(""),
		},
	}
	if g.chance(4) {
		p.Spec.NamespaceSelector = g.pick(genNSSelectors...)
	}
	if g.chance(6) {
		p.Spec.ApplyOnForward = true
		if g.chance(2) {
			p.Spec.PreDNAT = true
		} else {
			p.Spec.DoNotTrack = true
		}
	}
	if g.chance(8) {
		p.Spec.ServiceAccountSelector = g.pick("all()", "has(x)")
	}
	return p
}

func (g *gen) rules(ns string) []v1.Rule {
	var out []v1.Rule
	for range g.r.IntN(4) {
		out = append(out, g.rule())
	}
	return out
}

func intPtr(i int) *int { return &i }

func (g *gen) rule() v1.Rule {
	r := v1.Rule{Action: v1.Action(g.pick("Allow", "Allow", "Deny", "Pass", "Log"))}
	var proto v1.Protocol
	switch g.r.IntN(6) {
	case 0, 1:
		proto = v1.ProtocolTCP
	case 2:
		proto = v1.ProtocolUDP
	case 3:
		proto = v1.ProtocolICMP
	}
	if proto != "" {
		r.Protocol = &proto
	} else if g.chance(6) {
		np := v1.ProtocolUDP
		r.NotProtocol = &np
	}
	if proto == v1.ProtocolICMP && g.chance(2) {
		f := &v1.ICMPFields{Type: intPtr(g.r.IntN(2) * 8)}
		if g.chance(2) {
			f.Code = intPtr(0)
		}
		if g.chance(2) {
			r.ICMP = f
		} else {
			r.NotICMP = f
		}
	}
	if g.chance(8) {
		r.IPVersion = intPtr(4 + 2*g.r.IntN(2))
	}
	r.Source = g.entity(proto)
	r.Destination = g.entity(proto)
	return r
}

func (g *gen) entity(proto v1.Protocol) v1.EntityRule {
	var e v1.EntityRule
	if g.chance(3) {
		e.Selector = g.pick(genSelectors...)
	}
	if g.chance(5) {
		e.NamespaceSelector = g.pick(genNSSelectors...)
	}
	if g.chance(6) {
		e.NotSelector = g.pick(genSelectors[1:]...)
	}
	if g.chance(6) {
		e.Nets = []string{g.pick(genNets...)}
	}
	if g.chance(8) {
		e.NotNets = []string{g.pick(genNets...)}
	}
	if g.chance(10) {
		e.ServiceAccounts = &v1.ServiceAccountMatch{Names: []string{g.pick("sa1", "sa2")}}
	}
	if proto == v1.ProtocolTCP || proto == v1.ProtocolUDP {
		ports := []v1.Port{"80", "80:90", "http", "dns", "53", "8080"}
		if g.chance(2) {
			e.Ports = []v1.Port{ports[g.r.IntN(len(ports))], ports[g.r.IntN(len(ports))]}
		}
		if g.chance(6) {
			e.NotPorts = []v1.Port{ports[g.r.IntN(len(ports))]}
		}
	}
	return e
}

// packet returns a random packet between addresses of the world (and some
// outside it), of one family.
func (g *gen) packet(w *scenarioWorld) Packet {
	var addrs []netip.Addr
	for _, th := range w.naive.things() {
		for _, p := range th.addrs {
			addrs = append(addrs, p.Addr())
		}
	}
	addrs = append(addrs, netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("10.0.0.9"),
		netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fd00::99"), netip.MustParseAddr("2001:db8::1"))
	src := addrs[g.r.IntN(len(addrs))]
	var same []netip.Addr
	for _, a := range addrs {
		if a.Is4() == src.Is4() {
			same = append(same, a)
		}
	}
	pkt := Packet{Src: src, Dst: same[g.r.IntN(len(same))]}
	switch g.r.IntN(5) {
	case 0, 1:
		pkt.Protocol = protoTCP
	case 2:
		pkt.Protocol = protoUDP
	case 3:
		pkt.Protocol = protoICMP
		if src.Is6() {
			pkt.Protocol = protoICMPv6
		}
		pkt.ICMPType = uint8(g.r.IntN(2) * 8)
		pkt.ICMPCode = uint8(g.r.IntN(2))
	default:
		pkt.Protocol = 47
	}
	if pkt.hasPorts() {
		ports := []uint16{80, 85, 8080, 53, 22, 40000}
		pkt.SrcPort = ports[g.r.IntN(len(ports))]
		pkt.DstPort = ports[g.r.IntN(len(ports))]
	}
	return pkt
}
