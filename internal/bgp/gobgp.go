package bgp

// Conversions between Tabby's types and GoBGP's API.

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// The address families of every session.
var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// globalRequest is the StartBgp request for cfg.
func globalRequest(cfg Config) *api.StartBgpRequest {
	g := &api.Global{
		Asn:      cfg.ASNumber,
		RouterId: cfg.RouterID.String(),
		// ListenPort -1 tells GoBGP not to listen.
		ListenPort: int32(cfg.ListenPort),
		// Equal-cost best paths are all marked best, for ECMP routes.
		UseMultiplePaths: true,
	}
	for _, a := range cfg.ListenAddresses {
		g.ListenAddresses = append(g.ListenAddresses, a.String())
	}
	return &api.StartBgpRequest{Global: g}
}

// apiPeer is the GoBGP neighbor for p.
func apiPeer(cfg Config, p Peer) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASNumber,
			AuthPassword:    p.Password,
			Description:     fmt.Sprintf("%s: %s", p.Type, p.Name),
		},
		Transport: &api.Transport{
			PassiveMode: p.Passive,
			RemotePort:  uint32(p.port()),
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.HoldTime / time.Second),
			KeepaliveInterval: uint64(p.Keepalive / time.Second),
			// Reconnect soon after a session fails (GoBGP's default is 30s).
			IdleHoldTimeAfterReset: 1,
			// Retry a connection that failed (the peer not listening yet,
			// as when many nodes start at once) after 5 s, not GoBGP's
			// default of 120 s; BIRD's "connect delay time" is also 5 s.
			ConnectRetry: 5,
		}},
	}
	if p.HoldTime == 0 && p.Keepalive != 0 {
		ap.Timers.Config.HoldTime = uint64(3 * p.Keepalive / time.Second)
	}
	if p.SourceAddress.IsValid() {
		ap.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.RouteReflectorClient {
		ap.RouteReflector = &api.RouteReflector{
			RouteReflectorClient:    true,
			RouteReflectorClusterId: p.ClusterID.String(),
		}
	}
	gr := cfg.GracefulRestart
	if gr.Enabled {
		rt := gr.RestartTime
		if p.GracefulRestartTime != 0 {
			rt = p.GracefulRestartTime
		}
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(rt / time.Second),
		}
	}
	for _, f := range []*api.Family{familyV4, familyV6} {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if gr.Enabled {
			// The forwarding state is preserved: the kernel keeps the
			// routes while the agent restarts.
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, af)
	}
	return ap
}

// apiPath is the GoBGP path that originates a. The next hop is set
// explicitly for both families: GoBGP keeps an explicit next hop of a
// local path towards iBGP and eBGP peers, and an IPv6 route sent over an
// IPv4 session needs an IPv6 next hop in its MP_REACH_NLRI.
func apiPath(cfg Config, a Advertisement, withdraw bool) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(a.Prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", a.Prefix, err)
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
	}
	family := bgp.RF_IPv4_UC
	if a.Prefix.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(cfg.IPv4Address)
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", a.Prefix, err)
		}
		attrs = append(attrs, nh)
	} else {
		family = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(family, []bgp.PathNLRI{{NLRI: nlri}}, cfg.IPv6Address)
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", a.Prefix, err)
		}
		attrs = append(attrs, mp)
	}
	if a.Elevated {
		attrs = append(attrs,
			bgp.NewPathAttributeLocalPref(elevatedLocalPreference),
			bgp.NewPathAttributeCommunities([]uint32{elevatedCommunity}))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}

// pathPrefix returns the prefix of a unicast path.
func pathPrefix(nlri bgp.NLRI) (netip.Prefix, bool) {
	p, ok := nlri.(*bgp.IPAddrPrefix)
	if !ok {
		return netip.Prefix{}, false
	}
	return p.Prefix, true
}

// pathNextHop returns the next hop of a path: the NEXT_HOP attribute, or
// the global next hop of MP_REACH_NLRI.
func pathNextHop(p *apiutil.Path) netip.Addr {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			return a.Value
		case *bgp.PathAttributeMpReachNLRI:
			return a.Nexthop
		}
	}
	return netip.Addr{}
}

// The export policy that keeps a node from being a transit router: to
// eBGP peers it sends only the routes it originates.
const (
	ebgpNeighborSet = "tabby-ebgp-peers"
	exportPolicy    = "tabby-export"
)

// ebgpNeighborSetRequest defines the set of eBGP peers' addresses. The
// set always holds the unspecified addresses, which no peer has: GoBGP
// treats an empty neighbor set as matching every neighbor.
func ebgpNeighborSetRequest(peers []Peer, localASN uint32) *api.AddDefinedSetRequest {
	list := []string{"0.0.0.0/32", "::/128"}
	for _, p := range peers {
		if p.ASNumber != localASN {
			list = append(list, netip.PrefixFrom(p.Address, p.Address.BitLen()).String())
		}
	}
	return &api.AddDefinedSetRequest{
		DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: ebgpNeighborSet, List: list},
	}
}

// exportPolicyRequests define and assign the export policy.
func exportPolicyRequests() (*api.AddPolicyRequest, *api.SetPolicyAssignmentRequest) {
	toEBGP := &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: ebgpNeighborSet}
	policy := &api.Policy{
		Name: exportPolicy,
		Statements: []*api.Statement{
			{
				Name:       exportPolicy + "-own",
				Conditions: &api.Conditions{NeighborSet: toEBGP, RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
				Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
			},
			{
				Name:       exportPolicy + "-no-transit",
				Conditions: &api.Conditions{NeighborSet: toEBGP},
				Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
			},
		},
	}
	assign := &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      []*api.Policy{{Name: exportPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}}
	return &api.AddPolicyRequest{Policy: policy}, assign
}
