package bgp_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/bgp"
)

// converge bounds how long sessions take to come up and routes to reach
// the kernels: GoBGP dials within about two seconds.
const converge = 20 * time.Second

func meshConfig(on bool) v1.BGPConfigurationSpec {
	s := v1.EffectiveBGPConfiguration(nil, nil)
	s.NodeToNodeMeshEnabled = &on
	return s
}

// TestMesh runs a full node-to-node mesh; workloads on different nodes
// reach each other over routes learned by BGP only, IPv4 and IPv6 (the
// IPv6 routes ride the IPv4 sessions).
func TestMesh(t *testing.T) {
	for _, tc := range []struct {
		n        int
		password string
	}{{2, ""}, {3, ""}, {2, "s3cret"}} {
		n := tc.n
		name := fmt.Sprintf("%d nodes", n)
		if tc.password != "" {
			name += " with TCP MD5"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, n)
			l.computePeers(meshConfig(true), nil)
			for _, node := range l.nodes {
				for i := range node.cfg.Peers {
					node.cfg.Peers[i].Password = tc.password
				}
			}
			l.startAll()
			l.waitBlocks(converge)
			l.pingAll()

			st := l.nodes[0].proc.do(command{Op: "status"}).Status
			if len(st) != n-1 {
				t.Fatalf("status has %d peers, want %d: %+v", len(st), n-1, st)
			}
			for _, p := range st {
				if p.State != "Established" || p.Type != bgp.PeerMesh || p.RoutesReceived != 2 || p.RoutesAdvertised < 2 {
					t.Errorf("peer %+v: want an established mesh session with 2 routes received", p)
				}
				if !p.Address.Is4() {
					t.Errorf("peer %s: want IPv4 sessions", p.Address)
				}
			}
		})
	}
}

// TestRouteReflector turns the mesh off and makes n1 a route reflector:
// n2 and n3 peer only with it, and still learn each other's routes with
// each other's addresses as next hops.
func TestRouteReflector(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	l.nodes[0].spec.Spec.BGP.RouteReflectorClusterID = "1.0.0.1"
	l.computePeers(meshConfig(false), nil)
	for _, n := range l.nodes[1:] {
		if len(n.cfg.Peers) != 1 || n.cfg.Peers[0].Address != l.nodes[0].v4 {
			t.Fatalf("%s peers with %+v, want only the route reflector", n.name, n.cfg.Peers)
		}
	}
	l.startAll()
	l.waitBlocks(converge)
	l.pingAll()

	st := l.nodes[0].proc.do(command{Op: "status"}).Status
	for _, p := range st {
		if p.Type != bgp.PeerRouteReflectorClient || p.State != "Established" {
			t.Errorf("route reflector's peer %+v: want an established client", p)
		}
	}
}

// TestSafetyFilter has n2 advertise prefixes that would break n1 if
// installed: the fabric subnet, an aggregate covering it, n1's own
// address and n1's own block. n1 installs none of them, keeps its
// connected route, and still installs n2's ordinary routes.
func TestSafetyFilter(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	n1, n2 := l.nodes[0], l.nodes[1]
	l.computePeers(meshConfig(true), nil)
	bad := []string{"10.0.0.0/24", "10.0.0.0/16", "10.0.0.1/32", "fd00::/64", "fd00::/32"}
	for _, p := range append(bad, "10.66.0.0/24", n1.block4().String()) {
		n2.cfg.Advertised = append(n2.cfg.Advertised, bgp.Advertisement{Prefix: netip.MustParsePrefix(p)})
	}
	l.startAll()
	n1.waitRoute(netip.MustParsePrefix("10.66.0.0/24"), converge, n2.v4)
	n1.waitRoute(n2.block4(), converge, n2.v4)

	learned := n1.proc.do(command{Op: "learned"}).Learned
	rejected := map[string]string{}
	for _, r := range learned.Rejected {
		rejected[r.Route.Prefix.String()] = r.Reason
	}
	for _, p := range bad {
		if rejected[p] == "" {
			t.Errorf("%s was not rejected by the safety filter (rejected: %v)", p, rejected)
		}
		if _, ok := n1.gateways(netip.MustParsePrefix(p)); ok {
			t.Errorf("%s is in n1's kernel", p)
		}
	}
	// n1's own block: its own path wins, so it is not learned, and the
	// kernel keeps the blackhole.
	for _, r := range learned.Routes {
		if r.Prefix == n1.block4() {
			t.Errorf("n1 learned its own block: %v", r)
		}
	}
	if gws, ok := n1.gateways(n1.block4()); !ok || len(gws) != 0 {
		t.Errorf("n1's block %s: gateways %v, present %v; want the blackhole", n1.block4(), gws, ok)
	}
	// The connected route is the kernel's own, and the fabric works.
	rs, err := n1.nl.RouteList(nlFilterAll)
	if err != nil {
		t.Fatal(err)
	}
	connected := false
	for _, r := range rs {
		if r.Dst == netip.MustParsePrefix("10.0.0.0/24") && r.Protocol == 2 {
			connected = true
		}
	}
	if !connected {
		t.Errorf("n1 lost its connected route for the fabric")
	}
	if err := ping(n1.ns, n2.v4, 5*time.Second); err != nil {
		t.Errorf("n1 cannot reach n2 over the fabric: %v", err)
	}
	// (n2 claims n1's IPv4 block, so only IPv6 works between the
	// workloads.)
	if err := ping(n1.wl, n2.workload6(), 5*time.Second); err != nil {
		t.Errorf("ping between the workloads: %v", err)
	}
}

// TestSessionLoss checks that a node's routes go away from the others
// when its speaker stops without graceful restart, when it crashes, and
// when its link goes down (after the hold time).
func TestSessionLoss(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	l.computePeers(meshConfig(true), nil)
	l.startAll()
	l.waitBlocks(converge)
	n1, n2, n3, n4 := l.nodes[0], l.nodes[1], l.nodes[2], l.nodes[3]

	// A stop without graceful restart sends NOTIFICATIONs: withdrawn at once.
	start := time.Now()
	n2.proc.stop()
	n1.waitRoute(n2.block4(), 5*time.Second)
	n1.waitRoute(n2.block6(), 5*time.Second)
	t.Logf("stopped speaker: routes withdrawn after %s", time.Since(start))

	// A crash closes the TCP sessions: withdrawn at once too.
	start = time.Now()
	n3.proc.kill()
	n1.waitRoute(n3.block4(), 5*time.Second)
	n4.waitRoute(n3.block6(), 5*time.Second)
	t.Logf("killed speaker: routes withdrawn after %s", time.Since(start))

	// A link that goes down ends the session after the hold time (3s).
	start = time.Now()
	ip(t, n4.ns, "link", "set", "eth0", "down")
	n1.waitRoute(n4.block4(), 10*time.Second)
	n1.waitRoute(n4.block6(), 10*time.Second)
	t.Logf("link down: routes withdrawn after %s", time.Since(start))
}

// TestGracefulRestart restarts n2's speaker with graceful restart on:
// n1 keeps n2's routes in its kernel the whole time (and n2 keeps n1's),
// so traffic between the workloads flows during the restart.
func TestGracefulRestart(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	l.computePeers(meshConfig(true), nil)
	for _, n := range l.nodes {
		n.cfg.GracefulRestart = true
		n.cfg.RestartTime = 30 * time.Second
		n.cfg.DeferralTime = 15 * time.Second
	}
	l.startAll()
	l.waitBlocks(converge)
	n1, n2 := l.nodes[0], l.nodes[1]

	n2.proc.stop()
	// During the restart window both kernels keep the routes, and the
	// workloads still reach each other.
	window := time.Now().Add(4 * time.Second)
	for time.Now().Before(window) {
		if _, ok := n1.gateways(n2.block4()); !ok {
			t.Fatalf("n1 dropped n2's route %s during the restart", n2.block4())
		}
		if _, ok := n2.gateways(n1.block6()); !ok {
			t.Fatalf("n2 dropped n1's route %s while its speaker was down", n1.block6())
		}
		time.Sleep(50 * time.Millisecond)
	}
	learned := n1.proc.do(command{Op: "learned"}).Learned
	stale := 0
	for _, r := range learned.Routes {
		if r.Stale {
			stale++
		}
	}
	if stale != 2 {
		t.Errorf("n1 has %d stale routes during n2's restart, want 2: %v", stale, learned.Routes)
	}
	l.pingAll()

	// n2 comes back; its kernel keeps n1's routes while it resyncs, and the
	// stale routes at n1 are refreshed.
	n2.start()
	deadline := time.Now().Add(converge)
	for {
		if _, ok := n2.gateways(n1.block4()); !ok {
			t.Fatalf("n2 dropped n1's route %s after its speaker restarted", n1.block4())
		}
		st := n2.proc.do(command{Op: "status"}).Status
		l1 := n1.proc.do(command{Op: "learned"}).Learned
		if len(st) == 1 && st[0].State == "Established" && len(l1.Routes) == 2 && !l1.Routes[0].Stale && !l1.Routes[1].Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 did not resync: status %+v, n1 learned %v", st, l1.Routes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.waitBlocks(converge)
	l.pingAll()
}
