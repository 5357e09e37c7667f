package nft

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/policy"
)

// This file turns a Ruleset into the desired table. Rendering is memoised
// per object: Ruleset values are immutable and replaced when they change,
// so an object whose pointer is unchanged (and whose sets still have the
// same names) renders to the same, shared, specs; the planner then skips
// them by pointer comparison.

type setMemo struct {
	src   *policy.IPSet
	names [2]string
	specs []*setSpec
}

type policyMemo struct {
	src    any // *policy.CompiledPolicy or *policy.CompiledProfile
	deps   map[policy.SetID][2]string
	chains [2]*chainSpec
	sets   []*setSpec // for long lists of networks
}

// epRender is an endpoint's contribution to the table.
type epRender struct {
	src        *policy.EndpointRules
	problem    string // set when the endpoint cannot be rendered at all
	warning    string // set when part of it is not rendered
	slot       string // what it occupies: kind and interface, for conflicts
	chains     []*chainSpec
	maps       map[string]element // dispatch map → element
	star       map[string]string  // dispatch chain → chain (all-interfaces host endpoint)
	spoof      [2][]element
	spoofRules []*ruleSpec
}

type memo struct {
	sets      map[policy.SetID]*setMemo
	policies  map[policy.PolicyID]*policyMemo
	profiles  map[policy.ProfileID]*policyMemo
	endpoints map[policy.EndpointID]*epRender
	failsafe  *policy.Failsafe
	failCh    []*chainSpec
	static    []*chainSpec
	// Shared parts rebuilt when the endpoints (or their problems) change.
	problems  map[policy.EndpointID]string
	dispCh    []*chainSpec
	dispSets  []*setSpec
	poolsSrc  [2][]netip.Prefix
	poolSets  []*setSpec
	haveDisp  bool
	havePools bool
}

func newMemo(cfg *Config) *memo {
	return &memo{
		sets:      map[policy.SetID]*setMemo{},
		policies:  map[policy.PolicyID]*policyMemo{},
		profiles:  map[policy.ProfileID]*policyMemo{},
		endpoints: map[policy.EndpointID]*epRender{},
		static:    staticChains(cfg),
	}
}

// build renders the desired table for rs and the pools, and reports the
// endpoints that cannot be programmed and why.
func (m *memo) build(cfg *Config, log *slog.Logger, rs *policy.Ruleset, natPools, allPools []netip.Prefix) (*desired, map[policy.EndpointID]string) {
	d := &desired{chains: map[string]*chainSpec{}, sets: map[string]*setSpec{}}
	addChains := func(cs ...*chainSpec) {
		for _, c := range cs {
			d.chains[c.name] = c
		}
	}
	addSets := func(ss ...*setSpec) {
		for _, s := range ss {
			d.sets[s.name] = s
		}
	}

	// Sets first: policies depend on their names.
	for id := range m.sets {
		if rs.IPSets[id] == nil {
			delete(m.sets, id)
		}
	}
	for id, s := range rs.IPSets {
		sm := m.sets[id]
		if sm == nil || sm.src != s {
			sm = renderSet(s)
			m.sets[id] = sm
		}
		addSets(sm.specs...)
	}
	names := func(id policy.SetID) ([2]string, bool) {
		sm := m.sets[id]
		if sm == nil {
			return [2]string{}, false
		}
		return sm.names, true
	}

	for id := range m.policies {
		if rs.Policies[id] == nil {
			delete(m.policies, id)
		}
	}
	for id, p := range rs.Policies {
		pm := m.policies[id]
		if pm == nil || pm.src != p || !m.depsCurrent(pm) {
			pm = renderRuleChains(cfg, p, false, names, policyChainName(id, policy.Ingress), policyChainName(id, policy.Egress), p.Ingress, p.Egress)
			m.policies[id] = pm
		}
		addChains(pm.chains[:]...)
		addSets(pm.sets...)
	}
	for id := range m.profiles {
		if rs.Profiles[id] == nil {
			delete(m.profiles, id)
		}
	}
	for id, p := range rs.Profiles {
		pm := m.profiles[id]
		if pm == nil || pm.src != p || !m.depsCurrent(pm) {
			pm = renderRuleChains(cfg, p, true, names, profileChainName(id, policy.Ingress), profileChainName(id, policy.Egress), p.Ingress, p.Egress)
			m.profiles[id] = pm
		}
		addChains(pm.chains[:]...)
		addSets(pm.sets...)
	}

	if m.failsafe == nil || !reflect.DeepEqual(*m.failsafe, rs.Failsafe) {
		fs := rs.Failsafe
		m.failsafe, m.failCh = &fs, failsafeChains(fs)
	}
	addChains(m.failCh...)
	addChains(m.static...)

	// Endpoints.
	changed := false
	for id := range m.endpoints {
		if rs.Endpoints[id] == nil {
			delete(m.endpoints, id)
			changed = true
		}
	}
	for id, ep := range rs.Endpoints {
		if er := m.endpoints[id]; er == nil || er.src != ep {
			er = renderEndpoint(cfg, ep)
			if er.warning != "" {
				log.Warn(er.warning, "endpoint", id)
			}
			m.endpoints[id] = er
			changed = true
		}
	}
	problems := endpointProblems(rs, m.endpoints)
	if changed || !maps.Equal(problems, m.problems) || !m.haveDisp {
		m.problems = problems
		m.dispCh, m.dispSets = m.buildDispatch(cfg)
		m.haveDisp = true
	}
	for id, er := range m.endpoints {
		if problems[id] == "" {
			addChains(er.chains...)
		}
	}
	addChains(m.dispCh...)
	addSets(m.dispSets...)

	if !m.havePools || !slices.Equal(m.poolsSrc[0], natPools) || !slices.Equal(m.poolsSrc[1], allPools) {
		m.poolsSrc = [2][]netip.Prefix{slices.Clone(natPools), slices.Clone(allPools)}
		m.poolSets, m.havePools = poolSets(natPools, allPools), true
	}
	addSets(m.poolSets...)
	return d, problems
}

// depsCurrent reports whether every set a rendered policy looked up still
// has the names it had.
func (m *memo) depsCurrent(pm *policyMemo) bool {
	for id, n := range pm.deps {
		sm := m.sets[id]
		if sm == nil {
			if n != ([2]string{}) {
				return false
			}
			continue
		}
		if sm.names != n {
			return false
		}
	}
	return true
}

func renderSet(s *policy.IPSet) *setMemo {
	sm := &setMemo{src: s}
	for i, f := range []family{fam4, fam6} {
		switch s.Kind {
		case policy.NamedPortSet:
			sm.names[i] = namedPortSetName(s.ID, f)
			sm.specs = append(sm.specs, namedPortSetSpec(sm.names[i], f, s.NamedPorts))
		default:
			members := prefixesOf(s.Members, f)
			interval := hasNonHost(members)
			sm.names[i] = addrSetName(s.ID, f, interval)
			sm.specs = append(sm.specs, addrSetSpec(sm.names[i], f, members, interval))
		}
	}
	return sm
}

func renderRuleChains(cfg *Config, src any, profile bool, names setNames, inName, outName string, in, out []policy.CompiledRule) *policyMemo {
	ctx := &ruleCtx{cfg: cfg, profile: profile, names: names, deps: map[policy.SetID][2]string{}}
	pm := &policyMemo{
		src:  src,
		deps: ctx.deps,
		chains: [2]*chainSpec{
			chain(inName, nil, ctx.renderRules(inName, in)...),
			chain(outName, nil, ctx.renderRules(outName, out)...),
		},
	}
	for _, name := range slices.Sorted(maps.Keys(ctx.sets)) {
		pm.sets = append(pm.sets, ctx.sets[name])
	}
	return pm
}

// renderEndpoint renders an endpoint on its own; endpointProblems checks
// it against the others.
func renderEndpoint(cfg *Config, ep *policy.EndpointRules) *epRender {
	er := &epRender{src: ep, maps: map[string]element{}, star: map[string]string{}}
	iface := ep.InterfaceName
	switch ep.Kind {
	case policy.WorkloadEndpoint:
		if !strings.HasPrefix(iface, cfg.InterfacePrefix) || len(iface) > 15 {
			er.problem = fmt.Sprintf("workload interface %q does not start with %q or is too long", iface, cfg.InterfacePrefix)
			return er
		}
		er.slot = "workload " + iface
		tw, fw := objName(kindToWl, iface), objName(kindFromWl, iface)
		er.chains = []*chainSpec{
			endpointChain(cfg, tw, &ep.Ingress, policy.Ingress, false),
			endpointChain(cfg, fw, &ep.Egress, policy.Egress, false),
		}
		er.maps[mapToWl] = gotoElem(iface, tw)
		er.maps[mapFromWl] = gotoElem(iface, fw)
		srcs := append(slices.Clone(ep.Addrs), ep.AllowSpoofedSources...)
		var nets [2][]netip.Prefix
		for _, p := range srcs {
			i := famIndex(famOf(p.Addr()))
			if p.IsSingleIP() {
				er.spoof[i] = append(er.spoof[i], element{key: spoofKey(iface, p.Addr())})
			} else {
				nets[i] = append(nets[i], p)
			}
		}
		for i, f := range []family{fam4, fam6} {
			if len(nets[i]) > 0 {
				er.spoofRules = append(er.spoofRules, newRule().ifname(false, iface, false, false).nfproto(f).
					addrAnon(f, false, nets[i], false).ret().rule())
			}
		}
	case policy.HostEndpoint:
		switch {
		case iface == "":
			er.problem = "host endpoints found by expectedIPs (no interfaceName) are not supported"
			return er
		case strings.HasPrefix(iface, cfg.InterfacePrefix):
			er.problem = fmt.Sprintf("host endpoint interface %q has the workload prefix %q", iface, cfg.InterfacePrefix)
			return er
		}
		er.slot = "host " + iface
		if h := ep.Host; h != nil && len(h.PreDNATIngress.Tiers)+len(h.UntrackedIngress.Tiers)+len(h.UntrackedEgress.Tiers) > 0 {
			er.warning = "pre-DNAT and doNotTrack policies are not rendered (not supported yet)"
		}
		type part struct {
			kind, dispatch string
			dir            policy.Direction
			ch             *policy.Chain
		}
		parts := []part{{kindHostIn, chainHepIn, policy.Ingress, &ep.Ingress}, {kindHostOut, chainHepOut, policy.Egress, &ep.Egress}}
		if ep.Host != nil {
			parts = append(parts,
				part{kindHostFwdIn, chainHepFwdIn, policy.Ingress, &ep.Host.ForwardIngress},
				part{kindHostFwdOut, chainHepFwdOut, policy.Egress, &ep.Host.ForwardEgress})
		}
		for _, pt := range parts {
			name := objName(pt.kind, iface)
			er.chains = append(er.chains, endpointChain(cfg, name, pt.ch, pt.dir, true))
			if iface == "*" {
				er.star[pt.dispatch] = name
			} else {
				er.maps[pt.dispatch] = gotoElem(iface, name)
			}
		}
	default:
		er.problem = fmt.Sprintf("unknown endpoint kind %q", ep.Kind)
	}
	return er
}

// endpointProblems returns why endpoints cannot be programmed: their own
// problem, an interface another endpoint (earlier by ID) already has, or
// a reference to a policy or profile the ruleset lacks.
func endpointProblems(rs *policy.Ruleset, eps map[policy.EndpointID]*epRender) map[policy.EndpointID]string {
	problems := map[policy.EndpointID]string{}
	slots := map[string]policy.EndpointID{}
	for _, id := range slices.Sorted(maps.Keys(eps)) {
		er := eps[id]
		if er.problem != "" {
			problems[id] = er.problem
			continue
		}
		if other, ok := slots[er.slot]; ok {
			problems[id] = fmt.Sprintf("%s already belongs to endpoint %s", er.slot, other)
			continue
		}
		if p := missingRef(rs, er.src); p != "" {
			problems[id] = p
			continue
		}
		slots[er.slot] = id
	}
	return problems
}

func missingRef(rs *policy.Ruleset, ep *policy.EndpointRules) string {
	chains := []*policy.Chain{&ep.Ingress, &ep.Egress}
	if ep.Host != nil {
		chains = append(chains, &ep.Host.ForwardIngress, &ep.Host.ForwardEgress)
	}
	for _, c := range chains {
		for _, t := range c.Tiers {
			for _, id := range t.Policies {
				if rs.Policies[id] == nil {
					return fmt.Sprintf("policy %s is not in the ruleset", id)
				}
			}
		}
		for _, id := range c.Profiles {
			if rs.Profiles[id] == nil {
				return fmt.Sprintf("profile %s is not in the ruleset", id)
			}
		}
	}
	return ""
}

// buildDispatch builds the dispatch maps, the anti-spoofing sets and the
// chains that depend on the set of endpoints.
func (m *memo) buildDispatch(cfg *Config) ([]*chainSpec, []*setSpec) {
	d := &dispatch{star: map[string]string{}, maps: map[string]*setSpec{}}
	for _, name := range []string{mapFromWl, mapToWl, mapHepIn, mapHepOut, mapHepFwdIn, mapHepFwdOut} {
		d.maps[name] = newSetSpec(name, ifnameType, false, true)
	}
	d.spoof = [2]*setSpec{newSetSpec(setSpoof4, spoofType4, false, false), newSetSpec(setSpoof6, spoofType6, false, false)}
	ids := slices.SortedFunc(maps.Keys(m.endpoints), func(a, b policy.EndpointID) int { return cmp.Compare(a, b) })
	for _, id := range ids {
		er := m.endpoints[id]
		if m.problems[id] != "" {
			continue
		}
		for mp, e := range er.maps {
			d.maps[mp].add(e)
		}
		maps.Copy(d.star, er.star)
		for i := range er.spoof {
			for _, e := range er.spoof[i] {
				d.spoof[i].add(e)
			}
		}
		d.spoofRules = append(d.spoofRules, er.spoofRules...)
	}
	sets := []*setSpec{d.spoof[0], d.spoof[1]}
	for _, s := range d.maps {
		sets = append(sets, s)
	}
	return dispatchChains(cfg, d), sets
}
