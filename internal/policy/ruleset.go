package policy

import (
	"cmp"
	"net/netip"
	"slices"
)

// NewRuleset returns an empty ruleset for node, the state a Delta stream
// starts from.
func NewRuleset(node string) *Ruleset {
	return &Ruleset{
		Node:      node,
		Endpoints: map[EndpointID]*EndpointRules{},
		Policies:  map[PolicyID]*CompiledPolicy{},
		Profiles:  map[ProfileID]*CompiledProfile{},
		IPSets:    map[SetID]*IPSet{},
	}
}

// Apply applies d to rs, in the order Delta documents. It replaces values
// and never modifies the ones rs held, so earlier snapshots that share them
// stay intact. A SetUpdate for a set that rs does not hold is ignored.
func (rs *Ruleset) Apply(d *Delta) {
	for _, s := range d.Sets {
		rs.IPSets[s.ID] = s
	}
	for _, u := range d.SetUpdates {
		if old, ok := rs.IPSets[u.ID]; ok {
			rs.IPSets[u.ID] = old.withUpdate(u)
		}
	}
	for _, p := range d.Policies {
		rs.Policies[p.ID] = p
	}
	for _, p := range d.Profiles {
		rs.Profiles[p.ID] = p
	}
	for _, ep := range d.Endpoints {
		rs.Endpoints[ep.ID] = ep
	}
	for _, id := range d.RemovedEndpoints {
		delete(rs.Endpoints, id)
	}
	for _, id := range d.RemovedPolicies {
		delete(rs.Policies, id)
	}
	for _, id := range d.RemovedProfiles {
		delete(rs.Profiles, id)
	}
	for _, id := range d.RemovedSets {
		delete(rs.IPSets, id)
	}
	if d.Failsafe != nil {
		rs.Failsafe = *d.Failsafe
	}
}

// withUpdate returns a copy of s with u applied.
func (s *IPSet) withUpdate(u SetUpdate) *IPSet {
	out := *s
	if len(u.Added) > 0 || len(u.Removed) > 0 {
		m := make(map[netip.Prefix]bool, len(s.Members)+len(u.Added))
		for _, p := range s.Members {
			m[p] = true
		}
		for _, p := range u.Removed {
			delete(m, p)
		}
		for _, p := range u.Added {
			m[p] = true
		}
		out.Members = sortedPrefixes(m)
		out.HasCIDRs = false
		for _, p := range out.Members {
			out.HasCIDRs = out.HasCIDRs || !isHostRoute(p)
		}
	}
	if len(u.AddedNamedPorts) > 0 || len(u.RemovedNamedPorts) > 0 {
		m := make(map[NamedPortMember]bool, len(s.NamedPorts)+len(u.AddedNamedPorts))
		for _, p := range s.NamedPorts {
			m[p] = true
		}
		for _, p := range u.RemovedNamedPorts {
			delete(m, p)
		}
		for _, p := range u.AddedNamedPorts {
			m[p] = true
		}
		out.NamedPorts = sortedNamedPorts(m)
	}
	return &out
}

// Contains reports whether addr is in one of an address set's members.
func (s *IPSet) Contains(addr netip.Addr) bool {
	for _, p := range s.Members {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ContainsNamedPort reports whether a named-port set holds the triple.
func (s *IPSet) ContainsNamedPort(addr netip.Addr, proto uint8, port uint16) bool {
	_, found := slices.BinarySearchFunc(s.NamedPorts, NamedPortMember{addr, proto, port}, compareNamedPort)
	return found
}

func isHostRoute(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareNamedPort(a, b NamedPortMember) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	if len(m) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func sortedNamedPorts[V any](m map[NamedPortMember]V) []NamedPortMember {
	if len(m) == 0 {
		return nil
	}
	out := make([]NamedPortMember, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, compareNamedPort)
	return out
}
