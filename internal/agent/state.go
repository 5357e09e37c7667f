package agent

import (
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/policy"
)

// localState is what the agent keeps besides the policy engine: its own
// workload endpoints, the IPAM blocks affine to it, the IP pools and the
// Configuration resources. It turns them into the desired interfaces and
// routes. Not safe for concurrent use (the agent loop owns it).
type localState struct {
	node string
	// endpoints are the workload endpoints of this node, by key.
	endpoints map[datastore.Key]*v1.WorkloadEndpoint
	// revisions are the datastore revisions of the local endpoints.
	revisions map[policy.EndpointID]int64
	// blocks are the blocks with a confirmed affinity to this node.
	blocks map[netip.Prefix]bool
	pools  map[string]*v1.IPPool
	// configs are the Configuration resources "default" and "node.<node>".
	configs map[string]*v1.Configuration
	// nodes, bgpConfigs ("default" and "node.<node>") and bgpPeers are
	// what the BGP topology is computed from.
	nodes      map[string]*v1.Node
	bgpConfigs map[string]*v1.BGPConfiguration
	bgpPeers   map[string]*v1.BGPPeer

	linksDirty, routesDirty, poolsDirty, configDirty, bgpDirty bool
}

func newLocalState(node string) *localState {
	return &localState{
		node:       node,
		endpoints:  map[datastore.Key]*v1.WorkloadEndpoint{},
		revisions:  map[policy.EndpointID]int64{},
		blocks:     map[netip.Prefix]bool{},
		pools:      map[string]*v1.IPPool{},
		configs:    map[string]*v1.Configuration{},
		nodes:      map[string]*v1.Node{},
		bgpConfigs: map[string]*v1.BGPConfiguration{},
		bgpPeers:   map[string]*v1.BGPPeer{},
	}
}

// nodeConfigName is the name of this node's Configuration resource.
func (s *localState) nodeConfigName() string { return "node." + s.node }

// apply takes one update.
func (s *localState) apply(u update) {
	switch {
	case strings.EqualFold(u.key.Kind, "WorkloadEndpoint"):
		s.applyEndpoint(u)
	case strings.EqualFold(u.key.Kind, ipam.KindAffinity):
		s.applyAffinity(u)
	case strings.EqualFold(u.key.Kind, "IPPool"):
		setOrDelete(s.pools, u)
		s.poolsDirty, s.bgpDirty = true, true
	case strings.EqualFold(u.key.Kind, "Configuration"):
		if u.key.Name != "default" && u.key.Name != s.nodeConfigName() {
			return
		}
		setOrDelete(s.configs, u)
		s.configDirty = true
	case strings.EqualFold(u.key.Kind, "Node"):
		setOrDelete(s.nodes, u)
		s.bgpDirty = true
	case strings.EqualFold(u.key.Kind, "BGPPeer"):
		setOrDelete(s.bgpPeers, u)
		s.bgpDirty = true
	case strings.EqualFold(u.key.Kind, "BGPConfiguration"):
		if u.key.Name == "default" || u.key.Name == s.nodeConfigName() {
			setOrDelete(s.bgpConfigs, u)
			s.bgpDirty = true
		}
	}
}

// setOrDelete stores the object of u in m by name, or removes it.
func setOrDelete[T v1.Object](m map[string]T, u update) {
	if u.deleted || u.obj == nil {
		delete(m, u.key.Name)
		return
	}
	if o, ok := u.obj.(T); ok {
		m[u.key.Name] = o
	}
}

func (s *localState) applyEndpoint(u update) {
	old, had := s.endpoints[u.key]
	var wep *v1.WorkloadEndpoint
	if !u.deleted && u.obj != nil {
		wep = u.obj.(*v1.WorkloadEndpoint)
	}
	if wep == nil || wep.Spec.Node != s.node {
		if had {
			delete(s.endpoints, u.key)
			delete(s.revisions, endpointID(old))
			s.linksDirty, s.routesDirty, s.bgpDirty = true, true, true
		}
		return
	}
	s.endpoints[u.key] = wep
	s.revisions[endpointID(wep)] = u.kv.Revision
	if !had || old.Spec.InterfaceName != wep.Spec.InterfaceName || !slices.Equal(old.Spec.IPNetworks, wep.Spec.IPNetworks) ||
		old.Spec.MAC != wep.Spec.MAC ||
		elevated(old) != elevated(wep) {
		s.linksDirty, s.routesDirty, s.bgpDirty = true, true, true
	}
}

func (s *localState) applyAffinity(u update) {
	if u.key.Namespace != s.node {
		return
	}
	cidr, err := ipam.ParseBlockName(u.key.Name)
	if err != nil {
		return
	}
	confirmed := false
	if !u.deleted && u.kv.Value != nil {
		var a ipam.Affinity
		if json.Unmarshal(u.kv.Value, &a) == nil && a.State == ipam.AffinityConfirmed && a.Node == s.node {
			confirmed = true
		}
	}
	if s.blocks[cidr] != confirmed {
		if confirmed {
			s.blocks[cidr] = true
		} else {
			delete(s.blocks, cidr)
		}
		s.routesDirty, s.bgpDirty = true, true
	}
}

func endpointID(w *v1.WorkloadEndpoint) policy.EndpointID {
	return policy.WorkloadEndpointID(w.Metadata.Namespace, w.Metadata.Name)
}

// effectiveConfig merges the global and node Configuration resources.
func (s *localState) effectiveConfig() v1.ConfigurationSpec {
	return v1.EffectiveConfiguration(s.configs["default"], s.configs[s.nodeConfigName()])
}

// sortedEndpoints returns the local endpoints sorted by namespace and name.
func (s *localState) sortedEndpoints() []*v1.WorkloadEndpoint {
	out := make([]*v1.WorkloadEndpoint, 0, len(s.endpoints))
	for _, w := range s.endpoints {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *v1.WorkloadEndpoint) int {
		return strings.Compare(string(endpointID(a)), string(endpointID(b)))
	})
	return out
}

// desiredInterfaces are the host sides of the local workloads.
func (s *localState) desiredInterfaces() []links.Interface {
	var out []links.Interface
	for _, w := range s.sortedEndpoints() {
		if w.Spec.InterfaceName == "" {
			continue
		}
		iface := links.Interface{Name: w.Spec.InterfaceName}
		mac, _ := net.ParseMAC(w.Spec.MAC) // validated by api/v1; "" gives no entries
		for _, p := range endpointPrefixes(w) {
			if p.Addr().Is4() {
				iface.IPv4 = true
			} else {
				iface.IPv6 = true
			}
			if mac != nil {
				iface.Neighbors = append(iface.Neighbors, links.Neighbor{IP: p.Addr(), MAC: mac})
			}
		}
		out = append(out, iface)
	}
	return out
}

// desiredRoutes are a /32 or /128 through its interface for every address
// of a local workload, and a blackhole for every block affine to the node
// (so that addresses of the block that are not in use are not routed
// elsewhere, and BGP has a route to advertise).
func (s *localState) desiredRoutes() []routes.Route {
	var out []routes.Route
	for _, w := range s.sortedEndpoints() {
		if w.Spec.InterfaceName == "" {
			continue
		}
		for _, p := range endpointPrefixes(w) {
			out = append(out, routes.Route{Dst: p, Type: routes.Unicast, Dev: w.Spec.InterfaceName})
		}
	}
	for _, b := range s.sortedBlocks() {
		out = append(out, routes.Route{Dst: b, Type: routes.Blackhole})
	}
	return out
}

func (s *localState) sortedBlocks() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.blocks))
	for b := range s.blocks {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// endpointPrefixes parses a workload's ipNetworks (validated as /32 and
// /128 by api/v1); a bad one is skipped.
func endpointPrefixes(w *v1.WorkloadEndpoint) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range w.Spec.IPNetworks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(s); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				continue
			}
		}
		out = append(out, p.Masked())
	}
	return out
}

// exported reports whether a block's pool lets it be advertised (a block
// outside every pool is advertised: its pool was deleted while in use).
func (s *localState) exported(block netip.Prefix) bool {
	for _, p := range s.pools {
		cidr, err := netip.ParsePrefix(p.Spec.CIDR)
		if err == nil && cidr.Contains(block.Addr()) {
			return !p.Spec.DisableBGPExport
		}
	}
	return true
}

// poolCIDRs returns every enabled pool's CIDR, and those with natOutgoing.
func (s *localState) poolCIDRs() (all, nat []netip.Prefix) {
	names := make([]string, 0, len(s.pools))
	for n := range s.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := s.pools[n]
		cidr, err := netip.ParsePrefix(p.Spec.CIDR)
		if err != nil {
			continue
		}
		all = append(all, cidr.Masked())
		if p.Spec.NATOutgoing && !p.Spec.Disabled {
			nat = append(nat, cidr.Masked())
		}
	}
	return all, nat
}
