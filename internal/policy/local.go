package policy

import (
	"cmp"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// This file tracks the node's own endpoints: which policies select them,
// which profiles they use, and their chains. A policy or profile is active
// (compiled into the ruleset, its sets maintained) while some local
// endpoint uses it.

// selects reports whether policy p applies to the endpoint en.
func (e *Engine) selects(p *policy, en *entity) bool {
	if p.invalid || (!p.ingress && !p.egress) {
		return false
	}
	switch en.kind {
	case kindWorkload:
		// Pre-DNAT and untracked policies apply only to host endpoints.
		if p.preDNAT || p.untrack || (p.ns != "" && p.ns != en.ns) {
			return false
		}
	case kindHost:
		if p.ns != "" {
			return false
		}
	default:
		return false
	}
	if p.nsSel != nil {
		if en.ns == "" {
			if p.nsSel.String() != globalSelector.String() {
				return false
			}
		} else if !p.nsSel.Evaluate(e.nsViewFor(&e.nsPol, en.ns)) {
			return false
		}
	}
	if p.sa != nil && (en.kind != kindWorkload || !p.sa.matches(en.sa)) {
		return false
	}
	e.viewPol.en = en
	return p.sel.Evaluate(&e.viewPol)
}

// updateLocal follows an entity that is, or was, one of the node's
// endpoints from old to en (nil: deleted).
func (e *Engine) updateLocal(old, en *entity) {
	wasLocal := old != nil && old.local != nil
	isLocal := en != nil && en.local != nil
	if !wasLocal && !isLocal {
		return
	}
	if !isLocal {
		id := old.endpointID()
		ep := e.local[id]
		if ep == nil {
			return
		}
		for _, p := range ep.selected {
			e.unselect(p)
		}
		for _, name := range ep.en.profiles {
			e.unrefProfile(name)
		}
		delete(e.local, id)
		e.dirtyEndpoints[id] = struct{}{}
		return
	}
	id := en.endpointID()
	ep := e.local[id]
	var prev *entity
	if ep == nil {
		ep = &localEndpoint{id: id, selected: map[PolicyID]*policy{}}
		e.local[id] = ep
	} else {
		prev = ep.en
	}
	ep.en = en
	if prev == nil || !sameSelectionInputs(prev, en) {
		e.reselect(ep)
	}
	var prevProfiles []string
	if prev != nil {
		prevProfiles = prev.profiles
	}
	for _, name := range en.profiles {
		if !containsString(prevProfiles, name) {
			e.refProfile(name)
		}
	}
	for _, name := range prevProfiles {
		if !containsString(en.profiles, name) {
			e.unrefProfile(name)
		}
	}
	e.dirtyEndpoints[id] = struct{}{}
}

// sameSelectionInputs reports whether policies select two versions of an
// endpoint alike.
func sameSelectionInputs(a, b *entity) bool {
	return a.kind == b.kind && a.ns == b.ns && a.orch == b.orch && a.sa == b.sa &&
		slices.Equal(a.labels, b.labels) && slices.Equal(a.profiles, b.profiles)
}

// reselect recomputes which policies select a local endpoint.
func (e *Engine) reselect(ep *localEndpoint) {
	changed := false
	for id, p := range ep.selected {
		if !e.selects(p, ep.en) {
			delete(ep.selected, id)
			e.unselect(p)
			changed = true
		}
	}
	for _, p := range e.policyCandidates(ep.en) {
		if _, had := ep.selected[p.id]; !had && e.selects(p, ep.en) {
			ep.selected[p.id] = p
			e.selectRef(p)
			changed = true
		}
	}
	if changed {
		e.dirtyEndpoints[ep.id] = struct{}{}
	}
}

func (e *Engine) selectRef(p *policy) {
	if p.refs++; p.refs == 1 {
		e.acquireSets(p.sets)
		e.dirtyPolicies[p.id] = struct{}{}
	}
}

func (e *Engine) unselect(p *policy) {
	if p.refs--; p.refs == 0 {
		e.releaseSets(p.sets)
		e.dirtyPolicies[p.id] = struct{}{}
	}
}

// chainShapeChanged reports whether a policy update can change the chains
// of the endpoints it selects (as opposed to only its rules).
func chainShapeChanged(a, b *policy) bool {
	return a.tier != b.tier || a.order != b.order || a.ingress != b.ingress || a.egress != b.egress ||
		a.forward != b.forward || a.preDNAT != b.preDNAT || a.untrack != b.untrack
}

func (e *Engine) upsertPolicy(p *policy) {
	old := e.policies[p.id]
	if old != nil {
		e.unindexPolicy(old)
	}
	e.policies[p.id] = p
	e.indexPolicy(p)
	for _, ep := range e.local {
		_, had := ep.selected[p.id]
		has := e.selects(p, ep.en)
		if has {
			ep.selected[p.id] = p
			p.refs++
		} else if had {
			delete(ep.selected, p.id)
		}
		if had != has || (has && old != nil && chainShapeChanged(old, p)) {
			e.dirtyEndpoints[ep.id] = struct{}{}
		}
	}
	// Take the new sets before dropping the old ones, so that shared sets
	// are not torn down and rebuilt.
	if p.refs > 0 {
		e.acquireSets(p.sets)
	}
	if old != nil && old.refs > 0 {
		e.releaseSets(old.sets)
	}
	if p.refs > 0 || (old != nil && old.refs > 0) {
		e.dirtyPolicies[p.id] = struct{}{}
	}
}

func (e *Engine) deletePolicy(id PolicyID) {
	old := e.policies[id]
	if old == nil {
		return
	}
	delete(e.policies, id)
	e.unindexPolicy(old)
	for _, ep := range e.local {
		if _, had := ep.selected[id]; had {
			delete(ep.selected, id)
			e.dirtyEndpoints[ep.id] = struct{}{}
		}
	}
	if old.refs > 0 {
		e.releaseSets(old.sets)
		e.dirtyPolicies[id] = struct{}{}
	}
}

func (e *Engine) upsertProfile(p *profile) {
	old := e.profiles[p.name]
	e.profiles[p.name] = p
	var oldLabels map[string]string
	if old != nil {
		oldLabels = old.labels
	}
	e.countProfileKeys(oldLabels, -1)
	e.countProfileKeys(p.labels, 1)
	if keys := changedMapKeys(oldLabels, p.labels); len(keys) > 0 {
		e.profileLabelsChanged(p.name, oldLabels, keys)
	}
	e.refreshProfile(p.name)
}

func (e *Engine) deleteProfile(name string) {
	old := e.profiles[name]
	if old == nil {
		return
	}
	delete(e.profiles, name)
	e.countProfileKeys(old.labels, -1)
	if keys := changedMapKeys(old.labels, nil); len(keys) > 0 {
		e.profileLabelsChanged(name, old.labels, keys)
	}
	e.refreshProfile(name)
}

// countProfileKeys counts the label keys that profiles apply.
func (e *Engine) countProfileKeys(labels map[string]string, delta int) {
	for k := range labels {
		if e.profileKeys[k] += delta; e.profileKeys[k] <= 0 {
			delete(e.profileKeys, k)
		}
	}
}

func (e *Engine) refProfile(name string) {
	if e.profileRefs[name]++; e.profileRefs[name] == 1 {
		e.refreshProfile(name)
	}
}

func (e *Engine) unrefProfile(name string) {
	if e.profileRefs[name]--; e.profileRefs[name] <= 0 {
		delete(e.profileRefs, name)
		e.refreshProfile(name)
	}
}

// refreshProfile makes the active version of a profile name the one that
// local endpoints should use now (none if unused or missing).
func (e *Engine) refreshProfile(name string) {
	var want *profile
	if e.profileRefs[name] > 0 {
		want = e.resolveProfile(name)
	}
	cur := e.activeProfiles[name]
	if want == cur {
		return
	}
	if want != nil {
		e.acquireSets(want.sets)
		e.activeProfiles[name] = want
	} else {
		delete(e.activeProfiles, name)
	}
	if cur != nil {
		e.releaseSets(cur.sets)
	}
	e.dirtyProfiles[name] = struct{}{}
	if (cur == nil) != (want == nil) {
		// The profile appears in or disappears from chains.
		for _, ep := range e.local {
			if containsString(ep.en.profiles, name) {
				e.dirtyEndpoints[ep.id] = struct{}{}
			}
		}
	}
}

// endpointRules builds the chains of a local endpoint.
func (e *Engine) endpointRules(ep *localEndpoint) *EndpointRules {
	en := ep.en
	pols := make([]*policy, 0, len(ep.selected))
	for _, p := range ep.selected {
		pols = append(pols, p)
	}
	slices.SortFunc(pols, e.comparePolicies)
	var profiles []ProfileID
	for _, name := range en.profiles {
		if e.activeProfiles[name] != nil {
			profiles = append(profiles, ProfileID(name))
		}
	}
	normal := func(p *policy) bool { return !p.preDNAT && !p.untrack }
	forward := func(p *policy) bool { return p.forward && !p.preDNAT && !p.untrack }
	preDNAT := func(p *policy) bool { return p.preDNAT }
	untracked := func(p *policy) bool { return p.untrack }
	r := &EndpointRules{
		ID:                  ep.id,
		Kind:                WorkloadEndpoint,
		InterfaceName:       en.local.iface,
		Addrs:               en.addrs,
		AllowSpoofedSources: en.local.spoof,
	}
	host := en.kind == kindHost
	r.Ingress = e.chain(pols, Ingress, normal, host, true, profiles, v1.Deny)
	r.Egress = e.chain(pols, Egress, normal, host, true, profiles, v1.Deny)
	if host {
		r.Kind = HostEndpoint
		r.Host = &HostChains{
			ForwardIngress:   e.chain(pols, Ingress, forward, false, true, nil, v1.Allow),
			ForwardEgress:    e.chain(pols, Egress, forward, false, true, nil, v1.Allow),
			PreDNATIngress:   e.chain(pols, Ingress, preDNAT, true, false, nil, ""),
			UntrackedIngress: e.chain(pols, Ingress, untracked, true, false, nil, ""),
			UntrackedEgress:  e.chain(pols, Egress, untracked, true, false, nil, ""),
		}
	}
	return r
}

// chain builds one chain from sorted policies: those of direction d that
// keep selects, grouped by tier. With endOfTierDrop a tier ends with its
// default action, else always with Pass.
func (e *Engine) chain(pols []*policy, d Direction, keep func(*policy) bool, failsafe, endOfTierDrop bool,
	profiles []ProfileID, end v1.Action) Chain {
	c := Chain{Failsafe: failsafe, Profiles: profiles, EndAction: end}
	for _, p := range pols {
		if !keep(p) || (d == Ingress && !p.ingress) || (d == Egress && !p.egress) {
			continue
		}
		if n := len(c.Tiers); n == 0 || c.Tiers[n-1].Name != p.tier {
			action := v1.Pass
			if endOfTierDrop {
				_, action = e.tierInfo(p.tier)
			}
			c.Tiers = append(c.Tiers, TierPolicies{Name: p.tier, EndAction: action})
		}
		t := &c.Tiers[len(c.Tiers)-1]
		t.Policies = append(t.Policies, p.id)
	}
	return c
}

// comparePolicies orders policies for evaluation: by tier (order, then
// name), then by order (unset last), then by name, then by ID.
func (e *Engine) comparePolicies(a, b *policy) int {
	if a.tier != b.tier {
		oa, _ := e.tierInfo(a.tier)
		ob, _ := e.tierInfo(b.tier)
		if c := cmp.Compare(oa, ob); c != 0 {
			return c
		}
		return strings.Compare(a.tier, b.tier)
	}
	if c := cmp.Compare(a.order, b.order); c != 0 {
		return c
	}
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c
	}
	return strings.Compare(string(a.id), string(b.id))
}
