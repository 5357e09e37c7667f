package policy

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/selector"
)

// naiveWorld is the reference the engine is checked against: it decides
// packets straight from the api/v1 objects, evaluating selectors against
// every object for every packet, without compiling anything. It shares no
// code with the engine beyond api/v1 and the selector package, and is
// written for clarity, not speed.
type naiveWorld struct {
	objs map[string]v1.Object // by kind/namespace/name
}

func newNaiveWorld() *naiveWorld { return &naiveWorld{objs: map[string]v1.Object{}} }

func naiveKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func (w *naiveWorld) put(obj v1.Object) {
	k, _ := v1.KindOf(obj)
	m := obj.GetObjectMeta()
	ns := ""
	if k.Namespaced {
		ns = m.Namespace
	}
	w.objs[naiveKey(k.Kind, ns, m.Name)] = obj
}

func (w *naiveWorld) remove(kind, ns, name string) { delete(w.objs, naiveKey(kind, ns, name)) }

// list returns the objects sorted by key, for determinism.
func (w *naiveWorld) list() []v1.Object {
	keys := make([]string, 0, len(w.objs))
	for k := range w.objs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]v1.Object, len(keys))
	for i, k := range keys {
		out[i] = w.objs[k]
	}
	return out
}

// naiveThing is an endpoint or network set as the naive model sees it.
type naiveThing struct {
	id       EndpointID // endpoints only
	isWEP    bool
	isHEP    bool
	ns       string
	node     string
	labels   map[string]string // effective
	profiles []string
	addrs    []netip.Prefix
	ports    []v1.WorkloadEndpointPort
	sa       string
}

func naivePrefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if strings.Contains(s, "/") {
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
			}
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func (w *naiveWorld) profile(name string) *v1.Profile {
	p, _ := w.objs[naiveKey("Profile", "", name)].(*v1.Profile)
	return p
}

func (w *naiveWorld) things() []*naiveThing {
	var out []*naiveThing
	effective := func(t *naiveThing, own map[string]string) {
		t.labels = map[string]string{}
		for i := len(t.profiles) - 1; i >= 0; i-- { // earlier profiles win
			if p := w.profile(t.profiles[i]); p != nil {
				for k, v := range p.Spec.LabelsToApply {
					t.labels[k] = v
				}
			}
		}
		for k, v := range own {
			t.labels[k] = v
		}
		if t.ns != "" {
			t.labels[v1.LabelNamespace] = t.ns
		}
	}
	for _, o := range w.list() {
		switch o := o.(type) {
		case *v1.WorkloadEndpoint:
			t := &naiveThing{
				id: WorkloadEndpointID(o.Metadata.Namespace, o.Metadata.Name), isWEP: true,
				ns: o.Metadata.Namespace, node: o.Spec.Node, addrs: naivePrefixes(o.Spec.IPNetworks),
				ports: o.Spec.Ports, sa: o.Spec.ServiceAccountName,
			}
			if kns := "kns." + o.Metadata.Namespace; o.Spec.Orchestrator == "k8s" && !slices.Contains(o.Spec.Profiles, kns) {
				t.profiles = append(t.profiles, "kns."+o.Metadata.Namespace)
			}
			for _, p := range o.Spec.Profiles {
				if !slices.Contains(t.profiles, p) {
					t.profiles = append(t.profiles, p)
				}
			}
			effective(t, o.Metadata.Labels)
			if o.Spec.Orchestrator != "" {
				t.labels[v1.LabelOrchestrator] = o.Spec.Orchestrator
			}
			out = append(out, t)
		case *v1.HostEndpoint:
			t := &naiveThing{id: HostEndpointID(o.Metadata.Name), isHEP: true, node: o.Spec.Node,
				addrs: naivePrefixes(o.Spec.ExpectedIPs)}
			for _, p := range o.Spec.Ports {
				t.ports = append(t.ports, v1.WorkloadEndpointPort{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
			}
			for _, p := range o.Spec.Profiles {
				if !slices.Contains(t.profiles, p) {
					t.profiles = append(t.profiles, p)
				}
			}
			effective(t, o.Metadata.Labels)
			out = append(out, t)
		case *v1.NetworkSet:
			t := &naiveThing{ns: o.Metadata.Namespace, addrs: naivePrefixes(o.Spec.Nets)}
			effective(t, o.Metadata.Labels)
			out = append(out, t)
		case *v1.GlobalNetworkSet:
			t := &naiveThing{addrs: naivePrefixes(o.Spec.Nets)}
			effective(t, o.Metadata.Labels)
			out = append(out, t)
		}
	}
	return out
}

// endpointAt returns the endpoint with the address, if any.
func (w *naiveWorld) endpointAt(a netip.Addr) *naiveThing {
	for _, t := range w.things() {
		if t.isWEP || t.isHEP {
			for _, p := range t.addrs {
				if p.Addr() == a && isHostRoute(p) {
					return t
				}
			}
		}
	}
	return nil
}

func (w *naiveWorld) nsLabels(ns string) selector.Map {
	m := selector.Map{v1.LabelNamespace: ns}
	if o, ok := w.objs[naiveKey("Namespace", "", ns)].(*v1.Namespace); ok {
		for k, v := range o.Metadata.Labels {
			m[k] = v
		}
	}
	return m
}

func naiveEval(sel string, labels map[string]string) bool {
	if strings.TrimSpace(sel) == "" {
		return true
	}
	s, err := selector.Parse(sel)
	return err == nil && s.Evaluate(selector.Map(labels))
}

// nsSelMatches applies a namespace selector to the namespace of a thing:
// global() selects the cluster-scoped things, any other selector the
// namespaced things whose namespace's labels it matches.
func (w *naiveWorld) nsSelMatches(sel, ns string) bool {
	if ns == "" {
		return strings.TrimSpace(sel) == "global()"
	}
	return naiveEval(sel, w.nsLabels(ns))
}

// naiveResult is a naive verdict: the action and what decided it.
type naiveResult struct {
	action v1.Action
	reason Reason
	origin RuleOrigin // ReasonRule
	tier   string     // ReasonEndOfTier
}

type naivePolicy struct {
	id      PolicyID
	ns      string
	name    string
	tier    string
	order   float64
	ingress []v1.Rule
	egress  []v1.Rule
	types   []v1.PolicyType
}

func naiveTypes(types []v1.PolicyType, in, eg []v1.Rule) []v1.PolicyType {
	if len(types) > 0 {
		return types
	}
	if len(eg) == 0 {
		return []v1.PolicyType{v1.PolicyTypeIngress}
	}
	if len(in) == 0 {
		return []v1.PolicyType{v1.PolicyTypeEgress}
	}
	return []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
}

// policiesFor returns the policies that apply to t in direction dir
// (normal chains: no pre-DNAT or untracked policies).
func (w *naiveWorld) policiesFor(t *naiveThing, dir Direction) []naivePolicy {
	want := v1.PolicyTypeIngress
	if dir == Egress {
		want = v1.PolicyTypeEgress
	}
	saOK := func(sel string) bool { return strings.TrimSpace(sel) == "" || (t.isWEP && naiveEval(sel, nil)) }
	var out []naivePolicy
	for _, o := range w.list() {
		var p naivePolicy
		var order *float64
		switch o := o.(type) {
		case *v1.NetworkPolicy:
			s := &o.Spec
			if !t.isWEP || t.ns != o.Metadata.Namespace || !naiveEval(s.Selector, t.labels) || !saOK(s.ServiceAccountSelector) {
				continue
			}
			p = naivePolicy{id: NetworkPolicyID(o.Metadata.Namespace, o.Metadata.Name), ns: o.Metadata.Namespace,
				name: o.Metadata.Name, tier: s.Tier, ingress: s.Ingress, egress: s.Egress,
				types: naiveTypes(s.Types, s.Ingress, s.Egress)}
			order = s.Order
		case *v1.GlobalNetworkPolicy:
			s := &o.Spec
			if !(t.isWEP || t.isHEP) || s.PreDNAT || s.DoNotTrack || !naiveEval(s.Selector, t.labels) || !saOK(s.ServiceAccountSelector) {
				continue
			}
			if s.NamespaceSelector != "" && !w.nsSelMatches(s.NamespaceSelector, t.ns) {
				continue
			}
			p = naivePolicy{id: GlobalNetworkPolicyID(o.Metadata.Name), name: o.Metadata.Name, tier: s.Tier,
				ingress: s.Ingress, egress: s.Egress, types: naiveTypes(s.Types, s.Ingress, s.Egress)}
			order = s.Order
		default:
			continue
		}
		if !slices.Contains(p.types, want) {
			continue
		}
		if p.tier == "" {
			p.tier = "default"
		}
		p.order = math.Inf(1)
		if order != nil {
			p.order = *order
		}
		out = append(out, p)
	}
	return out
}

func (w *naiveWorld) tierOf(name string) (float64, v1.Action) {
	order, action := math.Inf(1), v1.Deny
	if name == "default" {
		order = 1e6
	}
	if t, ok := w.objs[naiveKey("Tier", "", name)].(*v1.Tier); ok {
		if t.Spec.Order != nil {
			order = *t.Spec.Order
		}
		if t.Spec.DefaultAction == v1.Pass {
			action = v1.Pass
		}
	}
	return order, action
}

// evaluate decides a packet into (Ingress) or out of (Egress) endpoint t.
func (w *naiveWorld) evaluate(t *naiveThing, dir Direction, pkt Packet) naiveResult {
	if t.isHEP && w.failsafe(t, dir, pkt) {
		return naiveResult{action: v1.Allow, reason: ReasonFailsafe}
	}
	pols := w.policiesFor(t, dir)
	byTier := map[string][]naivePolicy{}
	var tiers []string
	for _, p := range pols {
		if byTier[p.tier] == nil {
			tiers = append(tiers, p.tier)
		}
		byTier[p.tier] = append(byTier[p.tier], p)
	}
	slices.SortFunc(tiers, func(a, b string) int {
		oa, _ := w.tierOf(a)
		ob, _ := w.tierOf(b)
		return cmp.Or(cmp.Compare(oa, ob), strings.Compare(a, b))
	})
	for _, tier := range tiers {
		ps := byTier[tier]
		slices.SortFunc(ps, func(a, b naivePolicy) int {
			return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.name, b.name), strings.Compare(string(a.id), string(b.id)))
		})
		passed := false
	policies:
		for _, p := range ps {
			rules := p.ingress
			if dir == Egress {
				rules = p.egress
			}
			for i, r := range rules {
				if !w.ruleMatches(&r, p.ns, pkt) {
					continue
				}
				switch r.Action {
				case v1.Allow, v1.Deny:
					return naiveResult{action: r.Action, reason: ReasonRule,
						origin: RuleOrigin{Tier: tier, Policy: p.id, Direction: dir, Index: i}}
				case v1.Pass:
					passed = true
					break policies
				}
			}
		}
		if !passed {
			if _, action := w.tierOf(tier); action != v1.Pass {
				return naiveResult{action: v1.Deny, reason: ReasonEndOfTier, tier: tier}
			}
		}
	}
	for _, name := range t.profiles {
		var rules []v1.Rule
		if p := w.profile(name); p != nil {
			rules = p.Spec.Ingress
			if dir == Egress {
				rules = p.Spec.Egress
			}
		} else if strings.HasPrefix(name, "kns.") {
			rules = []v1.Rule{{Action: v1.Allow}}
		}
		for i, r := range rules {
			if !w.ruleMatches(&r, "", pkt) {
				continue
			}
			if r.Action == v1.Allow || r.Action == v1.Deny {
				return naiveResult{action: r.Action, reason: ReasonRule,
					origin: RuleOrigin{Profile: ProfileID(name), Direction: dir, Index: i}}
			}
			if r.Action == v1.Pass {
				break
			}
		}
	}
	return naiveResult{action: v1.Deny, reason: ReasonEndOfChain}
}

func (w *naiveWorld) failsafe(t *naiveThing, dir Direction, pkt Packet) bool {
	global, _ := w.objs[naiveKey("Configuration", "", "default")].(*v1.Configuration)
	node, _ := w.objs[naiveKey("Configuration", "", "node."+t.node)].(*v1.Configuration)
	spec := v1.EffectiveConfiguration(global, node)
	ports, peer := spec.FailsafeInboundHostPorts, pkt.Src
	if dir == Egress {
		ports, peer = spec.FailsafeOutboundHostPorts, pkt.Dst
	}
	if ports == nil || !(pkt.Protocol == 6 || pkt.Protocol == 17 || pkt.Protocol == 132) {
		return false
	}
	for _, pp := range *ports {
		n, ok := v1.Protocol(pp.Protocol).Number()
		if !ok || n != pkt.Protocol || pp.Port != pkt.DstPort {
			continue
		}
		if pp.Net == "" || slices.ContainsFunc(naivePrefixes([]string{pp.Net}), func(p netip.Prefix) bool { return p.Contains(peer) }) {
			return true
		}
	}
	return false
}

func (w *naiveWorld) ruleMatches(r *v1.Rule, ns string, pkt Packet) bool {
	fam := 4
	if pkt.Src.Is6() {
		fam = 6
	}
	var nets []netip.Prefix
	for _, e := range []v1.EntityRule{r.Source, r.Destination} {
		nets = append(nets, naivePrefixes(e.Nets)...)
		nets = append(nets, naivePrefixes(e.NotNets)...)
	}
	proto := func(p *v1.Protocol) int {
		n, _ := p.Number()
		return int(n)
	}
	switch {
	case r.IPVersion != nil:
		if *r.IPVersion != fam {
			return false
		}
	case len(nets) > 0:
		if (nets[0].Addr().Is4() && fam != 4) || (nets[0].Addr().Is6() && fam != 6) {
			return false
		}
	case r.Protocol != nil && proto(r.Protocol) == 1 && fam != 4:
		return false
	case r.Protocol != nil && proto(r.Protocol) == 58 && fam != 6:
		return false
	}
	if r.Protocol != nil && proto(r.Protocol) != int(pkt.Protocol) {
		return false
	}
	if r.NotProtocol != nil && proto(r.NotProtocol) == int(pkt.Protocol) {
		return false
	}
	isICMP := pkt.Protocol == 1 || pkt.Protocol == 58
	icmp := func(f *v1.ICMPFields) bool {
		return isICMP && f.Type != nil && *f.Type == int(pkt.ICMPType) && (f.Code == nil || *f.Code == int(pkt.ICMPCode))
	}
	if r.ICMP != nil && r.ICMP.Type != nil && !icmp(r.ICMP) {
		return false
	}
	if r.NotICMP != nil && r.NotICMP.Type != nil && icmp(r.NotICMP) {
		return false
	}
	return w.entityMatches(&r.Source, ns, pkt.Src, pkt.SrcPort, pkt) &&
		w.entityMatches(&r.Destination, ns, pkt.Dst, pkt.DstPort, pkt)
}

func (w *naiveWorld) entityMatches(e *v1.EntityRule, ns string, addr netip.Addr, port uint16, pkt Packet) bool {
	contains := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(addr) })
	}
	if len(e.Nets) > 0 && !contains(naivePrefixes(e.Nets)) {
		return false
	}
	if contains(naivePrefixes(e.NotNets)) {
		return false
	}
	sa := e.ServiceAccounts
	hasSA := sa != nil && (len(sa.Names) > 0 || strings.TrimSpace(sa.Selector) != "")
	positive := e.Selector != "" || e.NamespaceSelector != "" || hasSA || (e.NotSelector != "" && ns != "")
	// selected reports whether a thing is one that the positive part of
	// the entity rule selects (everything if it has no positive part).
	selected := func(t *naiveThing) bool {
		if !positive {
			return true
		}
		switch {
		case e.NamespaceSelector != "":
			if !w.nsSelMatches(e.NamespaceSelector, t.ns) {
				return false
			}
		case ns != "":
			if t.ns != ns {
				return false
			}
		}
		if hasSA {
			if !t.isWEP || (len(sa.Names) > 0 && (t.sa == "" || !slices.Contains(sa.Names, t.sa))) {
				return false
			}
			if strings.TrimSpace(sa.Selector) != "" && !naiveEval(sa.Selector, nil) {
				return false
			}
		}
		return naiveEval(e.Selector, t.labels)
	}
	things := w.things()
	if positive && !slices.ContainsFunc(things, func(t *naiveThing) bool { return selected(t) && contains(t.addrs) }) {
		return false
	}
	if e.NotSelector != "" && slices.ContainsFunc(things, func(t *naiveThing) bool {
		return naiveEval(e.NotSelector, t.labels) && contains(t.addrs)
	}) {
		return false
	}
	hasPorts := pkt.Protocol == 6 || pkt.Protocol == 17 || pkt.Protocol == 132 || pkt.Protocol == 136
	portMatches := func(p v1.Port) bool {
		if lo, hi, ok := p.Range(); ok {
			return lo <= port && port <= hi
		}
		return slices.ContainsFunc(things, func(t *naiveThing) bool {
			if !(t.isWEP || t.isHEP) || !selected(t) {
				return false
			}
			if !slices.ContainsFunc(t.addrs, func(p netip.Prefix) bool { return p.Addr() == addr }) {
				return false
			}
			return slices.ContainsFunc(t.ports, func(tp v1.WorkloadEndpointPort) bool {
				n, _ := tp.Protocol.Number()
				return tp.Name == p.Name() && n == pkt.Protocol && tp.Port == port
			})
		})
	}
	if len(e.Ports) > 0 && (!hasPorts || !slices.ContainsFunc(e.Ports, portMatches)) {
		return false
	}
	if len(e.NotPorts) > 0 && (!hasPorts || slices.ContainsFunc(e.NotPorts, portMatches)) {
		return false
	}
	return true
}

// flow decides a flow at both ends, as the dataplane does.
func (w *naiveWorld) flow(pkt Packet) (egress, ingress *naiveResult) {
	if t := w.endpointAt(pkt.Src); t != nil {
		r := w.evaluate(t, Egress, pkt)
		egress = &r
	}
	if t := w.endpointAt(pkt.Dst); t != nil {
		r := w.evaluate(t, Ingress, pkt)
		ingress = &r
	}
	return egress, ingress
}
