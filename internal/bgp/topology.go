package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/selector"
)

// Peers computes the BGP sessions of the node local, given every node of
// the cluster (local may be among them), the node's effective BGP
// configuration (v1.EffectiveBGPConfiguration) and every BGPPeer. It is
// pure: the same input always gives the same output, sorted by address.
//
// The rules (docs/bgp.md has the long form):
//
//   - A node without spec.bgp has no sessions, and no node peers with it.
//   - Two nodes peer over IPv4 when both have an IPv4 address, else over
//     IPv6 when both have one; every session carries both families.
//   - Between two nodes, the one with the higher address is passive.
//   - With the node-to-node mesh on (the default), every node peers with
//     every other node.
//   - With the mesh off, nodes with routeReflectorClusterID are route
//     reflectors: they peer with each other, and with every other node as
//     their route reflector client; the other nodes peer only with the
//     route reflectors.
//   - A BGPPeer applies to the node named by spec.node, to the nodes that
//     spec.nodeSelector selects, or (with neither) to every node. It peers
//     them with spec.peerIP (eBGP when spec.asNumber differs from the
//     node's, e.g. a top-of-rack router) or with the nodes spec.peerSelector
//     selects; a node selected by a peerSelector peers back with the nodes
//     the BGPPeer applies to, so that both ends configure the session. A
//     route reflector treats selected nodes that are not route reflectors
//     as its clients.
//   - One address gets one session: a node-specific BGPPeer wins over a
//     global one, which wins over the mesh and route reflector rules;
//     among equals, the BGPPeer whose name sorts first wins.
//
// Peers that cannot be computed (an invalid address, selector or peerIP)
// are left out, and the returned error says why; the peers returned are
// still usable.
func Peers(local v1.Node, nodes []v1.Node, cfg v1.BGPConfigurationSpec, peers []v1.BGPPeer) ([]Peer, error) {
	defaultASN := uint32(v1.DefaultASNumber)
	if cfg.ASNumber != nil {
		defaultASN = uint32(*cfg.ASNumber)
	}
	port := cfg.ListenPort
	if port == 0 {
		port = DefaultListenPort
	}
	var errs []error
	me, ok, err := nodeInfoOf(local, defaultASN)
	if err != nil || !ok {
		return nil, err
	}

	var others []nodeInfo
	for _, n := range nodes {
		if n.Metadata.Name == me.name {
			continue
		}
		ni, ok, err := nodeInfoOf(n, defaultASN)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			others = append(others, ni)
		}
	}
	slices.SortFunc(others, func(a, b nodeInfo) int { return strings.Compare(a.name, b.name) })

	t := topology{me: me, port: uint16(port), chosen: map[netip.Addr]candidate{}}

	// Explicit BGPPeers, in name order.
	bps := slices.Clone(peers)
	slices.SortFunc(bps, func(a, b v1.BGPPeer) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	for _, bp := range bps {
		if err := t.addBGPPeer(bp, others); err != nil {
			errs = append(errs, fmt.Errorf("BGPPeer %s: %w", bp.Metadata.Name, err))
		}
	}

	// The mesh or the route reflector rules.
	mesh := cfg.NodeToNodeMeshEnabled == nil || *cfg.NodeToNodeMeshEnabled
	for _, n := range others {
		var typ PeerType
		switch {
		case mesh:
			typ = PeerMesh
		case me.isRR() && !n.isRR():
			typ = PeerRouteReflectorClient
		case me.isRR() || n.isRR():
			typ = PeerRouteReflector
		default:
			continue
		}
		if p, ok := t.nodePeer(n, typ, typ == PeerRouteReflectorClient); ok {
			t.add(p, prioComputed)
		}
	}

	out := make([]Peer, 0, len(t.chosen))
	for _, c := range t.chosen {
		out = append(out, c.peer)
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return out, errors.Join(errs...)
}

// Priorities of the rules that make a session; the highest wins.
const (
	prioComputed = iota + 1
	prioGlobal
	prioNode
)

type candidate struct {
	peer Peer
	prio int
}

type topology struct {
	me     nodeInfo
	port   uint16
	chosen map[netip.Addr]candidate
}

func (t *topology) add(p Peer, prio int) {
	if p.Address == t.me.v4 || p.Address == t.me.v6 {
		return
	}
	if c, ok := t.chosen[p.Address]; ok && c.prio >= prio {
		return
	}
	t.chosen[p.Address] = candidate{p, prio}
}

// nodePeer returns the session with another node, if they have addresses
// of a common family. client asks for the node to be this route
// reflector's client, which it is only when this node is a route
// reflector, the other is not, and both are in the same AS.
func (t *topology) nodePeer(n nodeInfo, typ PeerType, client bool) (Peer, bool) {
	local, remote := sessionAddrs(t.me, n)
	if !remote.IsValid() {
		return Peer{}, false
	}
	p := Peer{
		Address:  remote,
		Port:     t.port,
		ASNumber: n.asn,
		Type:     typ,
		Name:     n.name,
		Passive:  local.Compare(remote) > 0,
	}
	if client && t.me.isRR() && !n.isRR() && n.asn == t.me.asn {
		p.RouteReflectorClient = true
		p.ClusterID = t.me.rrCluster
	}
	return p, true
}

func (t *topology) addBGPPeer(bp v1.BGPPeer, others []nodeInfo) error {
	s := bp.Spec
	var nodeSel *selector.Selector
	if s.Node == "" && s.NodeSelector != "" {
		sel, err := selector.Parse(s.NodeSelector)
		if err != nil {
			return fmt.Errorf("nodeSelector: %w", err)
		}
		nodeSel = sel
	}
	appliesTo := func(n nodeInfo) (bool, error) {
		switch {
		case s.Node != "":
			return s.Node == n.name, nil
		case nodeSel != nil:
			return nodeSel.Evaluate(n.labels), nil
		}
		return true, nil
	}
	typ, prio := PeerGlobal, prioGlobal
	if s.Node != "" || s.NodeSelector != "" {
		typ, prio = PeerNode, prioNode
	}
	if s.Password != nil && s.Password.SecretKeyRef != nil {
		return errors.New("password.secretKeyRef is not supported")
	}
	options := func(p *Peer, local netip.Addr) {
		if s.Password != nil {
			p.Password = s.Password.Value
		}
		if s.SourceAddress != v1.SourceAddressNone {
			p.SourceAddress = local
		}
		if s.KeepaliveTime != nil {
			p.Keepalive = s.KeepaliveTime.Duration
			p.HoldTime = 3 * s.KeepaliveTime.Duration
		}
		if s.MaxRestartTime != nil {
			p.GracefulRestartTime = s.MaxRestartTime.Duration
		}
	}

	mine, err := appliesTo(t.me)
	if err != nil {
		return err
	}
	if s.PeerIP != "" {
		if !mine {
			return nil
		}
		ap, err := parsePeerIP(s.PeerIP)
		if err != nil {
			return err
		}
		p := Peer{
			Address:  ap.Addr(),
			Port:     ap.Port(),
			ASNumber: uint32(s.ASNumber),
			Type:     typ,
			Name:     bp.Metadata.Name,
		}
		if p.ASNumber == 0 {
			p.ASNumber = t.me.asn
		}
		local := t.me.v4
		if p.Address.Is6() {
			local = t.me.v6
		}
		options(&p, local)
		t.add(p, prio)
		return nil
	}
	if s.PeerSelector == "" {
		return errors.New("neither peerIP nor peerSelector")
	}
	psel, err := selector.Parse(s.PeerSelector)
	if err != nil {
		return fmt.Errorf("peerSelector: %w", err)
	}
	selectedMe := psel.Evaluate(t.me.labels)
	for _, n := range others {
		// This node applies the BGPPeer and selects n, or n applies it
		// and selects this node.
		connect := mine && psel.Evaluate(n.labels)
		if !connect && selectedMe {
			if connect, err = appliesTo(n); err != nil {
				return err
			}
		}
		if !connect {
			continue
		}
		p, ok := t.nodePeer(n, typ, true)
		if !ok {
			continue
		}
		local, _ := sessionAddrs(t.me, n)
		options(&p, local)
		t.add(p, prio)
	}
	return nil
}

// parsePeerIP parses "IP", "IPv4:port" or "[IPv6]:port".
func parsePeerIP(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("peerIP %q: %w", s, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// nodeInfo is what the topology needs of a node.
type nodeInfo struct {
	name      string
	labels    selector.Map
	v4, v6    netip.Addr
	asn       uint32
	rrCluster netip.Addr // valid for a route reflector
}

func (n nodeInfo) isRR() bool { return n.rrCluster.IsValid() }

// sessionAddrs returns the addresses of a session between a and b: IPv4
// when both have one, else IPv6 when both have one, else none.
func sessionAddrs(a, b nodeInfo) (local, remote netip.Addr) {
	switch {
	case a.v4.IsValid() && b.v4.IsValid():
		return a.v4, b.v4
	case a.v6.IsValid() && b.v6.IsValid():
		return a.v6, b.v6
	}
	return netip.Addr{}, netip.Addr{}
}

// nodeInfoOf reads a node's BGP settings. ok is false for a node without
// them, or with no usable address.
func nodeInfoOf(n v1.Node, defaultASN uint32) (nodeInfo, bool, error) {
	b := n.Spec.BGP
	if b == nil {
		return nodeInfo{}, false, nil
	}
	ni := nodeInfo{name: n.Metadata.Name, labels: selector.Map(n.Metadata.Labels), asn: defaultASN}
	if b.ASNumber != nil {
		ni.asn = uint32(*b.ASNumber)
	}
	var errs []error
	parse := func(s string, want4 bool) netip.Addr {
		if s == "" {
			return netip.Addr{}
		}
		a, err := parseNodeAddr(s)
		if err == nil && a.Is4() != want4 {
			err = fmt.Errorf("%s is of the wrong family", s)
		}
		if err != nil {
			errs = append(errs, err)
			return netip.Addr{}
		}
		return a
	}
	ni.v4 = parse(b.IPv4Address, true)
	ni.v6 = parse(b.IPv6Address, false)
	if id := b.RouteReflectorClusterID; id != "" {
		a, err := netip.ParseAddr(id)
		if err != nil || !a.Is4() {
			errs = append(errs, fmt.Errorf("route reflector cluster ID %q is not an IPv4 address", id))
		} else {
			ni.rrCluster = a
		}
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("node %s: %w", ni.name, err)
		return ni, ni.v4.IsValid() || ni.v6.IsValid(), err
	}
	return ni, ni.v4.IsValid() || ni.v6.IsValid(), nil
}

// parseNodeAddr parses "10.0.0.1/24" or "10.0.0.1".
func parseNodeAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid address %q", s)
	}
	return a.Unmap(), nil
}

// compareAddrPrefix orders prefixes by address, then length.
func compareAddrPrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
