package bgp_test

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// birdConf is the configuration of the top-of-rack BIRD: sessions with
// every node, IPv4 and IPv6 over each IPv4 session, and two static routes
// of its own.
var birdConf = template.Must(template.New("bird").Parse(`
router id 10.0.0.254;
log stderr all;
protocol device { scan time 1; }
protocol direct { ipv4; ipv6; interface "eth0"; }
protocol static s4 { ipv4; route 10.200.0.0/24 blackhole; }
protocol static s6 { ipv6; route fd00:200::/64 blackhole; }
{{range .Nodes}}
protocol bgp {{.Name}} {
	local 10.0.0.254 as {{$.AS}};
	neighbor {{.Addr}} as 64512;
	hold time 3;
	keepalive time 1;
	connect delay time 1;
	connect retry time 2;
	error wait time 1, 2;
	{{if $.RR}}rr client;
	rr cluster id 1.0.0.2;{{end}}
	ipv4 { import all; export all; };
	ipv6 { import all; export all; next hop address fd00::fe; };
}
{{end}}`))

type birdNode struct {
	Name string
	Addr netip.Addr
}

// bird is a BIRD 2 process in its own namespace on the fabric.
type bird struct {
	t    testing.TB
	sock string
	log  string
}

// startBird runs BIRD as the top-of-rack router at 10.0.0.254 and
// fd00::fe, in AS as (64512: a route reflector for the nodes).
func startBird(t testing.TB, l *lab, as uint32) *bird {
	t.Helper()
	requireBird(t)
	ns := testkit.NetNS(t)
	l.attach(ns, "ptor", netip.MustParseAddr("10.0.0.254"), netip.MustParseAddr("fd00::fe"))
	dir := t.TempDir()
	b := &bird{t: t, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log")}
	data := struct {
		AS    uint32
		RR    bool
		Nodes []birdNode
	}{AS: as, RR: as == 64512}
	for _, n := range l.nodes {
		data.Nodes = append(data.Nodes, birdNode{n.name, n.v4})
	}
	var conf bytes.Buffer
	if err := birdConf.Execute(&conf, data); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(b.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// -f keeps BIRD in the foreground, so that it is our child and we
	// stop it by its PID.
	cmd := exec.Command("bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startIn(ns, cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(b.log)
			t.Logf("BIRD log:\n%s", out)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.cmd("show status"); err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startIn(ns *netns.NS, cmd *exec.Cmd) error { return ns.Start(cmd) }

func (b *bird) cmd(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// routes returns BIRD's routes for prefix: one line per route, each with
// its next hop.
func (b *bird) routes(prefix netip.Prefix) []string {
	b.t.Helper()
	out, err := b.cmd("show", "route", "for", prefix.String(), "all")
	if strings.Contains(out, "Network not found") {
		return nil
	}
	if err != nil {
		b.t.Fatalf("birdc: %v: %s", err, out)
	}
	// A route starts with "<prefix> unicast [proto ...]" or, for further
	// routes of the same prefix, with whitespace and "unicast [".
	var routes []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == prefix.String() && f[1] == "unicast":
			routes = append(routes, line)
		case len(f) >= 1 && f[0] == "unicast" && len(routes) > 0:
			routes = append(routes, line)
		case len(f) >= 2 && f[0] == "via" && len(routes) > 0:
			routes[len(routes)-1] += " " + strings.Join(f, " ")
		case len(f) >= 2 && f[0] == "BGP.next_hop:" && len(routes) > 0:
			routes[len(routes)-1] += " next_hop=" + f[1]
		}
	}
	return routes
}

// waitRoutes waits until BIRD has exactly one route for prefix, whose
// text contains want.
func (b *bird) waitRoute(prefix netip.Prefix, want string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := b.routes(prefix)
		if len(rs) == 1 && strings.Contains(rs[0], want) {
			return
		}
		if time.Now().After(deadline) {
			out, _ := b.cmd("show", "protocols", "all")
			b.t.Fatalf("BIRD's routes for %s: %q, want one with %q\n%s", prefix, rs, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBIRD runs BIRD 2 as the top-of-rack router: as the route reflector
// of the nodes (iBGP, mesh off) and as an eBGP peer in its own AS (mesh
// on). BIRD learns every node's blocks, IPv4 and IPv6, with the node as
// next hop and only from that node, and the nodes install the routes
// BIRD originates.
func TestBIRD(t *testing.T) {
	for _, tc := range []struct {
		name string
		as   uint32
		mesh bool
	}{
		{"route reflector", 64512, false},
		{"eBGP", 65000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 2)
			b := startBird(t, l, tc.as)
			tor := v1.BGPPeer{Metadata: v1.ObjectMeta{Name: "tor"},
				Spec: v1.BGPPeerSpec{PeerIP: "10.0.0.254", ASNumber: v1.ASNumber(tc.as)}}
			l.computePeers(meshConfig(tc.mesh), []v1.BGPPeer{tor})
			l.startAll()

			for _, n := range l.nodes {
				b.waitRoute(n.block4(), "via "+n.v4.String(), converge)
				b.waitRoute(n.block6(), "next_hop="+n.v6.String(), converge)
				n.waitRoute(netip.MustParsePrefix("10.200.0.0/24"), converge, netip.MustParseAddr("10.0.0.254"))
				n.waitRoute(netip.MustParsePrefix("fd00:200::/64"), converge, netip.MustParseAddr("fd00::fe"))
			}
			// Node to node, through the reflector or over the mesh.
			l.waitBlocks(converge)
			l.pingAll()

			st := l.nodes[0].proc.do(command{Op: "status"}).Status
			found := false
			for _, p := range st {
				if p.Address == netip.MustParseAddr("10.0.0.254") {
					found = true
					if p.State != "Established" || p.RoutesReceived < 2 {
						t.Errorf("session with BIRD: %+v", p)
					}
				}
			}
			if !found {
				t.Errorf("no session with BIRD in %+v", st)
			}
			// Each block reaches BIRD from its node only: nodes are not
			// transit routers for each other.
			for _, n := range l.nodes {
				for _, p := range []netip.Prefix{n.block4(), n.block6()} {
					if rs := b.routes(p); len(rs) != 1 {
						t.Errorf("BIRD has %d routes for %s, want 1: %q", len(rs), p, rs)
					}
				}
			}
			if out, _ := b.cmd("show", "route"); testing.Verbose() {
				t.Logf("BIRD's routes:\n%s", out)
			}
			if out, _ := b.cmd("show", "protocols"); strings.Count(out, "Established") != len(l.nodes) {
				t.Errorf("BIRD's sessions:\n%s", out)
			}
		})
	}
}
