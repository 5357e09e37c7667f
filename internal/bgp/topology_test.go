package bgp_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/bgp"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func asn(n uint32) *v1.ASNumber { a := v1.ASNumber(n); return &a }

func node(name, v4, v6, rr string, labels ...string) v1.Node {
	n := v1.Node{Metadata: v1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		n.Metadata.Labels[labels[i]] = labels[i+1]
	}
	if v4 != "" || v6 != "" {
		n.Spec.BGP = &v1.NodeBGPSpec{IPv4Address: v4, IPv6Address: v6, RouteReflectorClusterID: rr}
	}
	return n
}

var (
	n1     = node("n1", "10.0.0.1/24", "fd00::1/64", "", "rack", "a")
	n2     = node("n2", "10.0.0.2/24", "", "", "rack", "a")
	n3     = node("n3", "10.0.0.3/24", "", "1.0.0.1", "rr", "yes")
	n4     = node("n4", "", "fd00::4/64", "", "rack", "b")
	n5     = node("n5", "", "", "")
	n6     = node("n6", "10.0.0.6", "", "1.0.0.1", "rr", "yes")
	nodes  = []v1.Node{n1, n2, n3, n4, n5, n6}
	meshOn = v1.EffectiveBGPConfiguration(nil, nil)
	off    = false
)

var meshOff = func() v1.BGPConfigurationSpec {
	s := v1.EffectiveBGPConfiguration(nil, nil)
	s.NodeToNodeMeshEnabled = &off
	return s
}()

func mesh(name, a string, passive bool) bgp.Peer {
	return bgp.Peer{Address: addr(a), Port: 179, ASNumber: 64512, Type: bgp.PeerMesh, Name: name, Passive: passive}
}

func rr(name, a string, passive bool) bgp.Peer {
	return bgp.Peer{Address: addr(a), Port: 179, ASNumber: 64512, Type: bgp.PeerRouteReflector, Name: name, Passive: passive}
}

func client(name, a string, passive bool) bgp.Peer {
	return bgp.Peer{Address: addr(a), Port: 179, ASNumber: 64512, Type: bgp.PeerRouteReflectorClient, Name: name, Passive: passive,
		RouteReflectorClient: true, ClusterID: addr("1.0.0.1")}
}

func bgpPeer(name string, spec v1.BGPPeerSpec) v1.BGPPeer {
	return v1.BGPPeer{Metadata: v1.ObjectMeta{Name: name}, Spec: spec}
}

func TestPeers(t *testing.T) {
	tor := bgpPeer("tor", v1.BGPPeerSpec{PeerIP: "10.0.0.254", ASNumber: 65000})
	tor6 := bgpPeer("tor6", v1.BGPPeerSpec{PeerIP: "[fd00::fe]:1179", ASNumber: 65000, SourceAddress: v1.SourceAddressNone})
	torN1 := bgpPeer("tor-n1", v1.BGPPeerSpec{Node: "n1", PeerIP: "10.0.0.254", ASNumber: 65001,
		Password:       &v1.BGPPassword{Value: "s3cret"},
		KeepaliveTime:  &v1.Duration{Duration: 10 * time.Second},
		MaxRestartTime: &v1.Duration{Duration: 60 * time.Second}})
	rackA := bgpPeer("rack-a-to-rr", v1.BGPPeerSpec{NodeSelector: "rack == 'a'", PeerSelector: "rr == 'yes'"})

	tests := []struct {
		name    string
		local   v1.Node
		cfg     v1.BGPConfigurationSpec
		peers   []v1.BGPPeer
		want    []bgp.Peer
		wantErr bool
	}{
		{
			name: "mesh from n1", local: n1, cfg: meshOn,
			want: []bgp.Peer{
				mesh("n2", "10.0.0.2", false), mesh("n3", "10.0.0.3", false), mesh("n6", "10.0.0.6", false),
				mesh("n4", "fd00::4", false),
			},
		},
		{
			name: "mesh from n2", local: n2, cfg: meshOn,
			want: []bgp.Peer{mesh("n1", "10.0.0.1", true), mesh("n3", "10.0.0.3", false), mesh("n6", "10.0.0.6", false)},
		},
		{
			name: "mesh from n4, IPv6 only", local: n4, cfg: meshOn,
			want: []bgp.Peer{mesh("n1", "fd00::1", true)},
		},
		{
			name: "node without BGP", local: n5, cfg: meshOn,
		},
		{
			name: "route reflection from a client", local: n1, cfg: meshOff,
			want: []bgp.Peer{rr("n3", "10.0.0.3", false), rr("n6", "10.0.0.6", false)},
		},
		{
			name: "route reflection from a reflector", local: n3, cfg: meshOff,
			want: []bgp.Peer{client("n1", "10.0.0.1", true), client("n2", "10.0.0.2", true), rr("n6", "10.0.0.6", false)},
		},
		{
			name: "global top-of-rack peer", local: n2, cfg: meshOff, peers: []v1.BGPPeer{tor, tor6},
			want: []bgp.Peer{
				rr("n3", "10.0.0.3", false), rr("n6", "10.0.0.6", false),
				{Address: addr("10.0.0.254"), ASNumber: 65000, Type: bgp.PeerGlobal, Name: "tor", SourceAddress: addr("10.0.0.2")},
				{Address: addr("fd00::fe"), Port: 1179, ASNumber: 65000, Type: bgp.PeerGlobal, Name: "tor6"},
			},
		},
		{
			name: "node-specific peer wins over global", local: n1, cfg: meshOff, peers: []v1.BGPPeer{tor, torN1},
			want: []bgp.Peer{
				rr("n3", "10.0.0.3", false), rr("n6", "10.0.0.6", false),
				{Address: addr("10.0.0.254"), ASNumber: 65001, Type: bgp.PeerNode, Name: "tor-n1", SourceAddress: addr("10.0.0.1"),
					Password: "s3cret", Keepalive: 10 * time.Second, HoldTime: 30 * time.Second, GracefulRestartTime: 60 * time.Second},
			},
		},
		{
			name: "peer selector from a selected node", local: n2, cfg: meshOff, peers: []v1.BGPPeer{rackA},
			want: []bgp.Peer{
				{Address: addr("10.0.0.3"), Port: 179, ASNumber: 64512, Type: bgp.PeerNode, Name: "n3", SourceAddress: addr("10.0.0.2")},
				{Address: addr("10.0.0.6"), Port: 179, ASNumber: 64512, Type: bgp.PeerNode, Name: "n6", SourceAddress: addr("10.0.0.2")},
			},
		},
		{
			name: "peer selector seen from the selected reflector", local: n3, cfg: meshOn, peers: []v1.BGPPeer{rackA},
			want: []bgp.Peer{
				{Address: addr("10.0.0.1"), Port: 179, ASNumber: 64512, Type: bgp.PeerNode, Name: "n1", SourceAddress: addr("10.0.0.3"),
					Passive: true, RouteReflectorClient: true, ClusterID: addr("1.0.0.1")},
				{Address: addr("10.0.0.2"), Port: 179, ASNumber: 64512, Type: bgp.PeerNode, Name: "n2", SourceAddress: addr("10.0.0.3"),
					Passive: true, RouteReflectorClient: true, ClusterID: addr("1.0.0.1")},
				mesh("n6", "10.0.0.6", false),
			},
		},
		{
			name: "bad BGPPeer is reported, the rest still computed", local: n2, cfg: meshOff,
			peers: []v1.BGPPeer{bgpPeer("bad", v1.BGPPeerSpec{NodeSelector: "rack ==", PeerIP: "10.9.9.9", ASNumber: 1}), tor},
			want: []bgp.Peer{
				rr("n3", "10.0.0.3", false), rr("n6", "10.0.0.6", false),
				{Address: addr("10.0.0.254"), ASNumber: 65000, Type: bgp.PeerGlobal, Name: "tor", SourceAddress: addr("10.0.0.2")},
			},
			wantErr: true,
		},
		{
			name: "per-node AS and listen port", local: n2,
			cfg: v1.BGPConfigurationSpec{ASNumber: asn(65100), ListenPort: 1179},
			want: []bgp.Peer{
				{Address: addr("10.0.0.1"), Port: 1179, ASNumber: 65100, Type: bgp.PeerMesh, Name: "n1", Passive: true},
				{Address: addr("10.0.0.3"), Port: 1179, ASNumber: 65100, Type: bgp.PeerMesh, Name: "n3"},
				{Address: addr("10.0.0.6"), Port: 1179, ASNumber: 65100, Type: bgp.PeerMesh, Name: "n6"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bgp.Peers(tt.local, nodes, tt.cfg, tt.peers)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, addrCmp); diff != "" {
				t.Errorf("Peers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPeersSymmetric checks, on random clusters, that sessions between
// nodes are configured at both ends, with exactly one passive end, and
// that the result does not depend on the order of the input.
func TestPeersSymmetric(t *testing.T) {
	checked := 0
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		var ns []v1.Node
		for i := range 2 + r.IntN(7) {
			var v4, v6, cluster string
			if r.IntN(4) > 0 {
				v4 = fmt.Sprintf("10.0.0.%d/24", 1+r.IntN(200))
			}
			if v4 == "" || r.IntN(2) == 0 {
				v6 = fmt.Sprintf("fd00::%x/64", 1+r.IntN(200))
			}
			if r.IntN(3) == 0 {
				cluster = "1.0.0.1"
			}
			ns = append(ns, node(fmt.Sprintf("node%d", i), v4, v6, cluster, "rack", []string{"a", "b"}[r.IntN(2)]))
		}
		ns = uniqueAddrs(ns)
		cfg := meshOn
		if r.IntN(2) == 0 {
			cfg = meshOff
		}
		var bps []v1.BGPPeer
		if r.IntN(2) == 0 {
			bps = append(bps, bgpPeer("sel", v1.BGPPeerSpec{NodeSelector: "rack == 'a'", PeerSelector: "rack == 'b'"}))
		}

		sessions := map[string]map[netip.Addr]bgp.Peer{}
		addrOf := map[netip.Addr]string{}
		for _, n := range ns {
			ps, err := bgp.Peers(n, ns, cfg, bps)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			rev := append([]v1.Node(nil), ns...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			ps2, _ := bgp.Peers(n, rev, cfg, bps)
			if diff := cmp.Diff(ps, ps2, addrCmp); diff != "" {
				t.Fatalf("seed %d: order matters for %s:\n%s", seed, n.Metadata.Name, diff)
			}
			sessions[n.Metadata.Name] = map[netip.Addr]bgp.Peer{}
			for _, p := range ps {
				sessions[n.Metadata.Name][p.Address] = p
			}
			for _, s := range []string{n.Spec.BGP.IPv4Address, n.Spec.BGP.IPv6Address} {
				if s != "" {
					addrOf[netip.MustParsePrefix(s).Addr()] = n.Metadata.Name
				}
			}
		}
		for a, ps := range sessions {
			for remote, p := range ps {
				b := addrOf[remote]
				var back *bgp.Peer
				for _, q := range sessions[b] {
					if addrOf[q.Address] == a {
						back = &q
					}
				}
				if back == nil {
					t.Fatalf("seed %d: %s peers with %s, but not the other way", seed, a, b)
				}
				if p.Passive == back.Passive {
					t.Fatalf("seed %d: %s and %s are both passive=%v", seed, a, b, p.Passive)
				}
				if p.RouteReflectorClient && back.RouteReflectorClient {
					t.Fatalf("seed %d: %s and %s are each other's clients", seed, a, b)
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d sessions checked", checked)
	}
}

func uniqueAddrs(ns []v1.Node) []v1.Node {
	seen := map[string]bool{}
	var out []v1.Node
	for _, n := range ns {
		k4, k6 := n.Spec.BGP.IPv4Address, n.Spec.BGP.IPv6Address
		if (k4 != "" && seen[k4]) || (k6 != "" && seen[k6]) {
			continue
		}
		seen[k4], seen[k6] = k4 != "", k6 != ""
		delete(seen, "")
		out = append(out, n)
	}
	return out
}
