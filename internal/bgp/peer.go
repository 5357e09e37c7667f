package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// PeerType says why a session exists; it is shown by `tabby node status`.
type PeerType int

// The peer types.
const (
	// PeerMesh is another node of the node-to-node mesh.
	PeerMesh PeerType = iota + 1
	// PeerRouteReflector is a route reflector this node peers with: this
	// node is its client, or both are route reflectors.
	PeerRouteReflector
	// PeerRouteReflectorClient is a client of this node, which is a
	// route reflector.
	PeerRouteReflectorClient
	// PeerGlobal comes from a BGPPeer that applies to every node.
	PeerGlobal
	// PeerNode comes from a BGPPeer for this node (by name or by node
	// selector).
	PeerNode
)

func (t PeerType) String() string {
	switch t {
	case PeerMesh:
		return "node-to-node mesh"
	case PeerRouteReflector:
		return "route reflector"
	case PeerRouteReflectorClient:
		return "route reflector client"
	case PeerGlobal:
		return "global"
	case PeerNode:
		return "node specific"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Peer is a desired BGP session. Sessions are keyed by Address: there is
// at most one per peer address.
type Peer struct {
	// Address is the peer's address.
	Address netip.Addr
	// Port is the peer's TCP port; 0 means 179.
	Port uint16
	// ASNumber is the peer's AS number; a session is eBGP when it differs
	// from the node's.
	ASNumber uint32
	// Type says why the session exists.
	Type PeerType
	// Name is the peer node's or the BGPPeer's name, for status and logs.
	Name string
	// Password is the TCP MD5 password, or empty.
	Password string
	// SourceAddress is the local address of the session, or zero to let
	// the kernel choose.
	SourceAddress netip.Addr
	// Keepalive is the keepalive interval; 0 means 30s. HoldTime is the
	// hold time; 0 means three times Keepalive (90s by default). Both are
	// whole seconds.
	Keepalive time.Duration
	HoldTime  time.Duration
	// GracefulRestartTime is the restart time advertised to this peer;
	// 0 means Config.GracefulRestart.RestartTime.
	GracefulRestartTime time.Duration
	// RouteReflectorClient makes the peer a client of this node, which
	// reflects routes to it as a route reflector with cluster ID
	// ClusterID (an IPv4 address).
	RouteReflectorClient bool
	ClusterID            netip.Addr
	// Passive makes this side wait for the peer to connect instead of
	// dialling. Between two Tabby nodes, the node with the higher address
	// is passive, so that the two never dial each other at once.
	Passive bool
}

func (p Peer) String() string {
	return netip.AddrPortFrom(p.Address, p.port()).String()
}

func (p Peer) port() uint16 {
	if p.Port == 0 {
		return DefaultListenPort
	}
	return p.Port
}

// validate checks the peer against the node's config.
func (p Peer) validate(cfg Config) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.Zone() != "" {
		add("invalid address %s", p.Address)
	}
	if p.Address == cfg.IPv4Address || p.Address == cfg.IPv6Address {
		add("address %s is the node's own", p.Address)
	}
	if p.ASNumber == 0 {
		add("no AS number")
	}
	if p.SourceAddress.IsValid() && p.SourceAddress.Is4() != p.Address.Is4() {
		add("source address %s is of another family", p.SourceAddress)
	}
	if len(p.Password) > 80 {
		add("password longer than 80 bytes")
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"keepalive", p.Keepalive}, {"hold time", p.HoldTime}} {
		if d.d < 0 || d.d%time.Second != 0 || d.d > 65535*time.Second {
			add("%s %s must be whole seconds up to 65535s", d.name, d.d)
		}
	}
	if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
		add("hold time %s is below 3s", p.HoldTime)
	}
	if p.GracefulRestartTime != 0 {
		if err := checkRestartTime(p.GracefulRestartTime); err != nil {
			add("graceful restart: %v", err)
		}
	}
	if p.RouteReflectorClient {
		if p.ASNumber != cfg.ASNumber {
			add("a route reflector client must be in the node's AS %d", cfg.ASNumber)
		}
		if !p.ClusterID.Is4() {
			add("route reflector client needs an IPv4 cluster ID")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peer %s: %w", p.Address, err)
	}
	return nil
}

// Advertisement is a prefix the node originates.
type Advertisement struct {
	// Prefix is advertised with the node's address of its family as the
	// next hop: a block as an aggregate, or a /32 or /128 for a borrowed
	// address or a migrated endpoint.
	Prefix netip.Prefix
	// Elevated raises the route's priority over the same prefix from other
	// nodes, for an endpoint that has just moved here: it carries
	// LOCAL_PREF 200 instead of 100, and the community 64512:200 so that
	// routers outside the AS (which ignore LOCAL_PREF) can match it.
	Elevated bool
}

func (a Advertisement) validate(cfg Config) error {
	switch {
	case !a.Prefix.IsValid():
		return errors.New("invalid prefix")
	case a.Prefix.Masked() != a.Prefix:
		return fmt.Errorf("prefix %s is not masked", a.Prefix)
	case a.Prefix.Addr().Is4() && !cfg.IPv4Address.IsValid():
		return fmt.Errorf("prefix %s: the node has no IPv4 address to use as next hop", a.Prefix)
	case a.Prefix.Addr().Is6() && !cfg.IPv6Address.IsValid():
		return fmt.Errorf("prefix %s: the node has no IPv6 address to use as next hop", a.Prefix)
	}
	return nil
}
