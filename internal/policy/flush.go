package policy

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Flush returns what changed since the previous Flush or Ruleset call: the
// smallest Delta that turns the ruleset reported then into the current
// one. Values that did not really change (an update that rewrote a policy
// identically, a set member removed and added again) are not reported. A
// Flush with nothing pending returns an empty Delta.
func (e *Engine) Flush() *Delta {
	d := &Delta{}
	e.flushSets(d)
	e.flushPolicies(d)
	e.flushProfiles(d)
	e.flushEndpoints(d)
	if e.dirtyFailsafe {
		if !reflect.DeepEqual(e.out.failsafe, e.failsafe) {
			fs := e.failsafe
			d.Failsafe = &fs
		}
		e.out.failsafe = e.failsafe
		e.dirtyFailsafe = false
	}
	return d
}

func (e *Engine) flushSets(d *Delta) {
	for id := range e.droppedSets {
		if e.sets[id] == nil {
			d.RemovedSets = append(d.RemovedSets, id)
			delete(e.out.sets, id)
		}
	}
	clear(e.droppedSets)
	for s := range e.dirtySets {
		id := s.def.id
		hasCIDRs := s.cidrs > 0
		if emittedCIDRs, ok := e.out.sets[id]; s.fresh || !ok || emittedCIDRs != hasCIDRs {
			d.Sets = append(d.Sets, s.snapshot())
		} else if u, ok := s.update(); ok {
			d.SetUpdates = append(d.SetUpdates, u)
		}
		e.out.sets[id] = hasCIDRs
		s.fresh, s.changed, s.changedNP = false, nil, nil
	}
	clear(e.dirtySets)
	slices.Sort(d.RemovedSets)
	slices.SortFunc(d.Sets, func(a, b *IPSet) int { return strings.Compare(string(a.ID), string(b.ID)) })
	slices.SortFunc(d.SetUpdates, func(a, b SetUpdate) int { return strings.Compare(string(a.ID), string(b.ID)) })
}

// update returns the member changes of s since the last flush.
func (s *ipSet) update() (SetUpdate, bool) {
	u := SetUpdate{ID: s.def.id}
	var added, removed map[netip.Prefix]bool
	for p, was := range s.changed {
		now := s.members[p] > 0
		switch {
		case now && !was:
			added = setOf(added, p)
		case was && !now:
			removed = setOf(removed, p)
		}
	}
	var addedNP, removedNP map[NamedPortMember]bool
	for m, was := range s.changedNP {
		now := s.ports[m] > 0
		switch {
		case now && !was:
			addedNP = setOf(addedNP, m)
		case was && !now:
			removedNP = setOf(removedNP, m)
		}
	}
	u.Added, u.Removed = sortedPrefixes(added), sortedPrefixes(removed)
	u.AddedNamedPorts, u.RemovedNamedPorts = sortedNamedPorts(addedNP), sortedNamedPorts(removedNP)
	ok := len(u.Added)+len(u.Removed)+len(u.AddedNamedPorts)+len(u.RemovedNamedPorts) > 0
	return u, ok
}

func setOf[K comparable](m map[K]bool, k K) map[K]bool {
	if m == nil {
		m = map[K]bool{}
	}
	m[k] = true
	return m
}

func (e *Engine) flushPolicies(d *Delta) {
	for id := range e.dirtyPolicies {
		old, emitted := e.out.policies[id]
		if p := e.policies[id]; p != nil && p.refs > 0 {
			if !emitted || (old != p.compiled && !reflect.DeepEqual(old, p.compiled)) {
				d.Policies = append(d.Policies, p.compiled)
			}
			e.out.policies[id] = p.compiled
		} else if emitted {
			d.RemovedPolicies = append(d.RemovedPolicies, id)
			delete(e.out.policies, id)
		}
	}
	clear(e.dirtyPolicies)
	slices.SortFunc(d.Policies, func(a, b *CompiledPolicy) int { return strings.Compare(string(a.ID), string(b.ID)) })
	slices.Sort(d.RemovedPolicies)
}

func (e *Engine) flushProfiles(d *Delta) {
	for name := range e.dirtyProfiles {
		id := ProfileID(name)
		old, emitted := e.out.profiles[id]
		if p := e.activeProfiles[name]; p != nil {
			if !emitted || (old != p.compiled && !reflect.DeepEqual(old, p.compiled)) {
				d.Profiles = append(d.Profiles, p.compiled)
			}
			e.out.profiles[id] = p.compiled
		} else if emitted {
			d.RemovedProfiles = append(d.RemovedProfiles, id)
			delete(e.out.profiles, id)
		}
	}
	clear(e.dirtyProfiles)
	slices.SortFunc(d.Profiles, func(a, b *CompiledProfile) int { return strings.Compare(string(a.ID), string(b.ID)) })
	slices.Sort(d.RemovedProfiles)
}

func (e *Engine) flushEndpoints(d *Delta) {
	for id := range e.dirtyEndpoints {
		old, emitted := e.out.endpoints[id]
		if ep := e.local[id]; ep != nil {
			r := e.endpointRules(ep)
			if !emitted || !reflect.DeepEqual(old, r) {
				d.Endpoints = append(d.Endpoints, r)
				e.out.endpoints[id] = r
			}
		} else if emitted {
			d.RemovedEndpoints = append(d.RemovedEndpoints, id)
			delete(e.out.endpoints, id)
		}
	}
	clear(e.dirtyEndpoints)
	slices.SortFunc(d.Endpoints, func(a, b *EndpointRules) int { return strings.Compare(string(a.ID), string(b.ID)) })
	slices.Sort(d.RemovedEndpoints)
}

// Ruleset flushes what is pending (the changes are not reported by the
// next Flush, which starts from here) and returns the complete ruleset.
// The returned value shares immutable parts with the engine and with
// Deltas; it is never modified by the engine.
func (e *Engine) Ruleset() *Ruleset {
	e.Flush()
	rs := &Ruleset{
		Node:      e.node,
		Endpoints: maps.Clone(e.out.endpoints),
		Policies:  maps.Clone(e.out.policies),
		Profiles:  maps.Clone(e.out.profiles),
		IPSets:    make(map[SetID]*IPSet, len(e.sets)),
		Failsafe:  e.out.failsafe,
	}
	for id, s := range e.sets {
		rs.IPSets[id] = s.snapshot()
	}
	return rs
}
