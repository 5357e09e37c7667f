package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/bgp"
	"github.com/tabbynet/tabby/internal/testkit"
)

// torState is the state of a tor lab of n nodes in racks racks, as Up
// records it (without processes).
func torState(n, racks int, ipv6 bool) *State {
	s := &State{Name: "torx", Index: 7, Fabric: "tor", IPv6: ipv6, Pool4: "10.65.0.0/16", FabricNS: "tl-torx-fab"}
	if ipv6 {
		s.Pool6 = "fd00:65::/48"
	}
	for r := 1; r <= racks; r++ {
		s.ToRs = append(s.ToRs, newToR(s, r))
	}
	for k := 1; k <= n; k++ {
		r := rackOf(k, racks)
		node := Node{Name: fmt.Sprintf("n%d", k), Rack: s.ToRs[r-1].Rack, AS: uint32(nodeBaseAS + k), IPv4: rackAddr4(s.Index, r, k)}
		if ipv6 {
			node.IPv6 = rackAddr6(s.Index, r, k)
		}
		s.Nodes = append(s.Nodes, node)
	}
	return s
}

func TestTorAddressing(t *testing.T) {
	s := torState(4, 2, true)
	var got []string
	for _, n := range s.Nodes {
		got = append(got, n.Name+" "+n.Rack+" "+n.IPv4.String()+" "+n.IPv6.String())
	}
	want := []string{
		"n1 r1 172.16.7.1 fd00:ffff:7:1::1",
		"n2 r2 172.17.7.2 fd00:ffff:7:2::2",
		"n3 r1 172.16.7.3 fd00:ffff:7:1::3",
		"n4 r2 172.17.7.4 fd00:ffff:7:2::4",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	t2 := s.ToRs[1]
	if t2.Name != "t2" || t2.NetNS != "tl-torx-t2" || t2.AS != 65102 || t2.Spine4.String() != "172.31.7.2" ||
		t2.Spine6.String() != "fd00:ffff:7::2" || t2.Gateway4.String() != "172.17.7.254" || t2.Gateway6.String() != "fd00:ffff:7:2::fe" {
		t.Errorf("t2: %+v", t2)
	}
	// The racks' subnets never overlap the spine's or each other.
	seen := map[netip.Prefix]bool{netip.MustParsePrefix("172.31.7.0/24"): true}
	for r := 1; r <= MaxRacks; r++ {
		p := netip.PrefixFrom(rackAddr4(7, r, 0), 24)
		if seen[p] || !netip.MustParsePrefix("172.16.0.0/12").Contains(p.Addr()) {
			t.Errorf("rack %d: subnet %s", r, p)
		}
		seen[p] = true
	}
}

func TestTorConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{Name: "tora", Fabric: "tor", Nodes: 4}, ""},
		{Config{Name: "tora", Fabric: "tor", Nodes: 1}, ""}, // one rack
		{Config{Name: "tora", Fabric: "tor", Nodes: 4, Racks: 4, IPv6: true}, ""},
		{Config{Name: "tora", Fabric: "tor", Nodes: 3, Racks: 4}, "racks: 4: must be between 1 and 15, and at most the number of nodes (3)"},
		{Config{Name: "tora", Fabric: "tor", Nodes: 20, Racks: 16}, "racks: 16"},
		{Config{Name: "tora", Fabric: "tor", Nodes: 4, Racks: -1}, "racks: -1"},
		{Config{Name: "tora", Fabric: "l2", Nodes: 4, Racks: 2}, "racks: 2: only with fabric tor"},
		{Config{Name: "tora", Fabric: "l3", Nodes: 4}, `fabric: "l3": must be l2 or tor`},
		{Config{Name: "tora", Nodes: 5, RouteReflectors: 2}, ""},
		{Config{Name: "tora", Nodes: 2, RouteReflectors: 3}, "route reflectors: 3: must be between 0 and the number of nodes (2)"},
		{Config{Name: "tora", Nodes: 2, RouteReflectors: -1}, "route reflectors: -1"},
		{Config{Name: "tora", Fabric: "tor", Nodes: 4, RouteReflectors: 1}, "with fabric l2"},
	} {
		tc.cfg.Binary = "/bin/true"
		tc.cfg.Defaults()
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c := Config{Name: "tora", Fabric: "tor", Nodes: 1}
	c.Defaults()
	if c.Racks != 1 {
		t.Errorf("one node: %d racks by default, want 1", c.Racks)
	}
}

// The lab's resources for tor decode and validate, and the BGP topology
// they make is the one wanted: every node peers eBGP with its own rack's
// ToR and nothing else.
func TestTorResources(t *testing.T) {
	s := torState(5, 2, true)
	objs, err := v1.DecodeManifests("resources.yaml", []byte(resources(s)))
	if err != nil {
		t.Fatalf("%v\n%s", err, resources(s))
	}
	var nodes []v1.Node
	var peers []v1.BGPPeer
	var global *v1.BGPConfiguration
	for _, o := range objs {
		switch o := o.(type) {
		case *v1.Node:
			nodes = append(nodes, *o)
		case *v1.BGPPeer:
			peers = append(peers, *o)
		case *v1.BGPConfiguration:
			global = o
		}
	}
	if len(nodes) != 5 || len(peers) != 2 || global == nil {
		t.Fatalf("%d nodes, %d peers, configuration %v", len(nodes), len(peers), global)
	}
	cfg := v1.EffectiveBGPConfiguration(global, nil)
	if *cfg.NodeToNodeMeshEnabled {
		t.Error("the node-to-node mesh is on")
	}
	for i, n := range nodes {
		got, err := bgp.Peers(n, nodes, cfg, peers)
		if err != nil {
			t.Fatal(err)
		}
		tor := s.ToRs[rackOf(i+1, 2)-1]
		if len(got) != 1 || got[0].Address != tor.Gateway4 || got[0].ASNumber != tor.AS || got[0].Passive ||
			got[0].SourceAddress != s.Nodes[i].IPv4 {
			t.Errorf("node %s: peers %+v, want only %s in AS %d", n.Metadata.Name, got, tor.Gateway4, tor.AS)
		}
		if n.Spec.BGP.ASNumber == nil || uint32(*n.Spec.BGP.ASNumber) != s.Nodes[i].AS {
			t.Errorf("node %s: AS %v, want %d", n.Metadata.Name, n.Spec.BGP.ASNumber, s.Nodes[i].AS)
		}
	}
}

// Every ToR's BIRD configuration parses (bird -p), names each of its
// rack's nodes and the other ToRs, and none of the other racks' nodes.
func TestTorBirdConfig(t *testing.T) {
	testkit.RequireCommand(t, "bird", "bird2")
	for _, ipv6 := range []bool{false, true} {
		s := torState(5, 3, ipv6)
		for _, tor := range s.ToRs {
			conf := birdConfig(s, tor)
			path := filepath.Join(t.TempDir(), tor.Name+".conf")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := checkBirdConfig(path); err != nil {
				t.Fatalf("ipv6=%v %s: %v\n%s", ipv6, tor.Name, err, conf)
			}
			var want []string
			for _, n := range s.Nodes {
				line := "protocol bgp " + n.Name + " from tabbynode { neighbor " + n.IPv4.String() + " as " + itoa(n.AS) + "; }"
				if (n.Rack == tor.Rack) != strings.Contains(conf, line) {
					t.Errorf("%s (rack %s): node %s in rack %s: %q present=%v", tor.Name, tor.Rack, n.Name, n.Rack, line, !(n.Rack == tor.Rack))
				}
				if n.Rack == tor.Rack {
					want = append(want, n.Name)
				}
			}
			for _, o := range s.ToRs {
				line := "protocol bgp " + o.Name + " from spine { neighbor " + o.Spine4.String() + " as " + itoa(o.AS) + "; }"
				if (o.Name != tor.Name) != strings.Contains(conf, line) {
					t.Errorf("%s: ToR %s: %q present=%v", tor.Name, o.Name, line, o.Name == tor.Name)
				}
			}
			if strings.Contains(conf, "ipv6") != ipv6 {
				t.Errorf("ipv6=%v but the configuration says otherwise:\n%s", ipv6, conf)
			}
			if !strings.Contains(conf, "router id "+tor.Spine4.String()+";") || !strings.Contains(conf, "local "+tor.Gateway4.String()+" as "+itoa(tor.AS)+";") {
				t.Errorf("%s: router id or local address missing:\n%s", tor.Name, conf)
			}
			if len(want) == 0 {
				t.Errorf("%s has no nodes", tor.Name)
			}
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestTorEstablished(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:00:00.000  
direct1    Direct     ---        up     10:00:00.000  
kernel1    Kernel     master4    up     10:00:00.000  
n1         BGP        ---        up     10:00:01.000  Established   
n3         BGP        ---        start  10:00:00.000  Active        Socket: Connection refused
t2         BGP        ---        up     10:00:01.000  Established   
`
	got := established(out)
	if d := cmp.Diff(map[string]bool{"n1": true, "t2": true}, got); d != "" {
		t.Errorf("established (-want +got):\n%s", d)
	}
}
