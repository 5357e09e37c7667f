package bgp_test

// A small lab for the end-to-end tests: a "fabric" namespace with a
// bridge; node namespaces on it (10.0.0.N/24 and fd00::N/64); behind each
// node a workload namespace with 10.65.N.2/32 and fd00:65:N::2/128 on a
// veth, routed as Tabby routes workloads; and each node's speaker as a
// child process (see main_test.go).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/bgp"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// requireKernel skips (or with TABBY_E2E=1 fails) a test that needs root,
// ip and namespaces.
func requireKernel(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t)
}

// requireBird skips (or with TABBY_E2E=1 fails) a test that needs BIRD 2.
func requireBird(t testing.TB) {
	t.Helper()
	requireKernel(t)
	for _, b := range []string{"bird", "birdc"} {
		testkit.RequireCommand(t, b, "bird2")
	}
}

type lab struct {
	t      testing.TB
	fabric *netns.NS
	nodes  []*labNode
}

type labNode struct {
	lab    *lab
	i      int
	name   string
	ns     *netns.NS
	nl     *nl.Handle
	wl     *netns.NS // the workload
	v4, v6 netip.Addr
	spec   v1.Node
	cfg    childConfig
	proc   *speakerProc
}

func nsName(ns *netns.NS) string { return filepath.Base(ns.Path()) }

// ip runs the ip tool in ns (nil for none of ours: never used).
func ip(t testing.TB, ns *netns.NS, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", nsName(ns)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", nsName(ns), strings.Join(args, " "), err, out)
	}
}

func sysctl(t testing.TB, ns *netns.NS, kv map[string]string) {
	t.Helper()
	err := ns.Do(func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(k, ".", "/"), []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sysctl: %v", err)
	}
}

var noDAD = map[string]string{"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}

// newLab makes the fabric and n nodes with a workload each. The nodes'
// specs have BGP addresses; their speakers are not started.
func newLab(t testing.TB, n int) *lab {
	t.Helper()
	requireKernel(t)
	l := &lab{t: t, fabric: testkit.NetNS(t)}
	ip(t, l.fabric, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ip(t, l.fabric, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		l.addNode(i)
	}
	return l
}

// attach connects a new namespace to the fabric bridge as eth0.
func (l *lab) attach(ns *netns.NS, port string, v4, v6 netip.Addr) {
	t := l.t
	t.Helper()
	sysctl(t, ns, noDAD)
	ip(t, l.fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", nsName(ns))
	ip(t, l.fabric, "link", "set", port, "master", "br0", "up")
	ip(t, ns, "link", "set", "lo", "up")
	ip(t, ns, "link", "set", "eth0", "up")
	ip(t, ns, "addr", "add", v4.String()+"/24", "dev", "eth0")
	ip(t, ns, "-6", "addr", "add", v6.String()+"/64", "dev", "eth0", "nodad")
}

func (l *lab) addNode(i int) *labNode {
	t := l.t
	n := &labNode{
		lab: l, i: i, name: fmt.Sprintf("n%d", i),
		ns: testkit.NetNS(t), wl: testkit.NetNS(t),
		v4: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i)),
		v6: netip.MustParseAddr(fmt.Sprintf("fd00::%d", i)),
	}
	l.attach(n.ns, fmt.Sprintf("p%d", i), n.v4, n.v6)
	sysctl(t, n.ns, map[string]string{"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})

	// The workload: a veth whose host end is tabbyw0, reached by /32 and
	// /128 routes; its default routes go to 169.254.1.1 (a permanent
	// neighbour entry with the host end's MAC) and to fe80::1.
	sysctl(t, n.wl, noDAD)
	ip(t, n.ns, "link", "add", "tabbyw0", "type", "veth", "peer", "name", "eth0", "netns", nsName(n.wl))
	ip(t, n.ns, "-6", "addr", "add", "fe80::1/64", "dev", "tabbyw0", "nodad")
	ip(t, n.ns, "link", "set", "tabbyw0", "up")
	ip(t, n.wl, "link", "set", "lo", "up")
	ip(t, n.wl, "link", "set", "eth0", "up")
	ip(t, n.wl, "addr", "add", n.workload4().String()+"/32", "dev", "eth0")
	ip(t, n.wl, "-6", "addr", "add", n.workload6().String()+"/128", "dev", "eth0", "nodad")
	ip(t, n.wl, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	ip(t, n.wl, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	ip(t, n.wl, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
	h, err := nl.Open(n.ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	n.nl = h
	link, err := h.LinkByName("tabbyw0")
	if err != nil {
		t.Fatal(err)
	}
	ip(t, n.wl, "neigh", "add", "169.254.1.1", "lladdr", link.MAC.String(), "dev", "eth0", "nud", "permanent")

	n.spec = v1.Node{
		Metadata: v1.ObjectMeta{Name: n.name, Labels: map[string]string{"node": n.name}},
		Spec: v1.NodeSpec{BGP: &v1.NodeBGPSpec{
			IPv4Address: n.v4.String() + "/24",
			IPv6Address: n.v6.String() + "/64",
		}},
	}
	n.cfg = childConfig{
		NodeName: n.name, ASNumber: 64512, IPv4: n.v4, IPv6: n.v6,
		Advertised: []bgp.Advertisement{{Prefix: n.block4()}, {Prefix: n.block6()}},
		Static: []routes.Route{
			{Dst: n.block4(), Type: routes.Blackhole},
			{Dst: n.block6(), Type: routes.Blackhole},
			{Dst: netip.PrefixFrom(n.workload4(), 32), Dev: "tabbyw0"},
			{Dst: netip.PrefixFrom(n.workload6(), 128), Dev: "tabbyw0"},
		},
	}
	l.nodes = append(l.nodes, n)
	return n
}

func (n *labNode) block4() netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.65.%d.0/26", n.i))
}

func (n *labNode) block6() netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("fd00:65:%d::/122", n.i))
}

func (n *labNode) workload4() netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.65.%d.2", n.i)) }
func (n *labNode) workload6() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:65:%d::2", n.i))
}

func (l *lab) specs() []v1.Node {
	var out []v1.Node
	for _, n := range l.nodes {
		out = append(out, n.spec)
	}
	return out
}

// computePeers sets every node's peers from the topology rules, with
// short timers so that failures are noticed within seconds.
func (l *lab) computePeers(cfg v1.BGPConfigurationSpec, bps []v1.BGPPeer) {
	for _, n := range l.nodes {
		ps, err := bgp.Peers(n.spec, l.specs(), cfg, bps)
		if err != nil {
			l.t.Fatalf("peers of %s: %v", n.name, err)
		}
		for i := range ps {
			ps[i].Keepalive, ps[i].HoldTime = time.Second, 3*time.Second
		}
		n.cfg.Peers = ps
	}
}

func (l *lab) startAll() {
	for _, n := range l.nodes {
		n.start()
	}
}

// start runs the node's speaker as a child process in its namespace.
func (n *labNode) start() {
	t := n.lab.t
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "speaker.json")
	b, err := json.Marshal(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	n.proc = startSpeaker(t, n.ns, cfgPath, filepath.Join(dir, "speaker.log"), n.name)
}

// speakerProc is a running child speaker.
type speakerProc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan reply
	exited  chan struct{}
	logPath string
}

func startSpeaker(t testing.TB, ns *netns.NS, cfgPath, logPath, name string) *speakerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envSpeaker+"="+cfgPath)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	p := &speakerProc{t: t, name: name, cmd: cmd, stdin: stdin, replies: make(chan reply), exited: make(chan struct{}), logPath: logPath}
	go func() {
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var r reply
			if err := dec.Decode(&r); err != nil {
				break
			}
			p.replies <- r
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() || os.Getenv("TABBY_BGP_TEST_LOGS") != "" {
			p.dumpLog()
		}
	})
	return p
}

func (p *speakerProc) dumpLog() {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	p.t.Logf("last lines of %s's speaker log:\n%s", p.name, strings.Join(lines, "\n"))
}

// do sends a command and waits for the reply.
func (p *speakerProc) do(c command) reply {
	p.t.Helper()
	b, _ := json.Marshal(c)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: sending %s: %v", p.name, c.Op, err)
	}
	select {
	case r := <-p.replies:
		if r.Err != "" {
			p.t.Fatalf("%s: %s: %s", p.name, c.Op, r.Err)
		}
		return r
	case <-p.exited:
		p.t.Fatalf("%s: speaker exited", p.name)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s: no reply to %s", p.name, c.Op)
	}
	return reply{}
}

// stop asks the speaker to stop (it stops gracefully if so configured)
// by closing its stdin, and waits for it to exit.
func (p *speakerProc) stop() {
	p.t.Helper()
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Errorf("%s: speaker did not stop; killing it", p.name)
		p.kill()
	}
}

// kill ends the speaker at once with SIGKILL, by its PID: its sessions
// end without NOTIFICATIONs, as when the agent crashes.
func (p *speakerProc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// kernelRoutes lists the node's routes of Tabby's protocol.
func (n *labNode) kernelRoutes() []nl.Route {
	rs, err := n.nl.RouteList(nl.RouteFilter{Protocol: routes.DefaultProtocol})
	if err != nil {
		n.lab.t.Fatalf("%s: listing routes: %v", n.name, err)
	}
	return rs
}

// gateways returns the gateways of the node's route for dst, and whether
// it has one.
func (n *labNode) gateways(dst netip.Prefix) ([]netip.Addr, bool) {
	for _, r := range n.kernelRoutes() {
		if r.Dst != dst {
			continue
		}
		var gws []netip.Addr
		if r.Gateway.IsValid() {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.Nexthops {
			gws = append(gws, nh.Gateway)
		}
		slices.SortFunc(gws, netip.Addr.Compare)
		return gws, true
	}
	return nil, false
}

// waitRoute waits until the node's kernel has a route for dst via
// exactly the gateways want (none: no route).
func (n *labNode) waitRoute(dst netip.Prefix, timeout time.Duration, want ...netip.Addr) {
	n.lab.t.Helper()
	slices.SortFunc(want, netip.Addr.Compare)
	deadline := time.Now().Add(timeout)
	for {
		got, ok := n.gateways(dst)
		if (len(want) == 0 && !ok) || (len(want) > 0 && ok && slices.Equal(got, want)) {
			return
		}
		if time.Now().After(deadline) {
			n.lab.t.Fatalf("%s: route %s via %v after %s, want via %v (present %v)", n.name, dst, got, timeout, want, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitMesh waits until every node has every other node's blocks via that
// node's addresses.
func (l *lab) waitBlocks(timeout time.Duration) {
	l.t.Helper()
	for _, a := range l.nodes {
		for _, b := range l.nodes {
			if a != b {
				a.waitRoute(b.block4(), timeout, b.v4)
				a.waitRoute(b.block6(), timeout, b.v6)
			}
		}
	}
}

// ping sends ICMP echo requests from inside ns to dst until one is
// answered or timeout passes.
func ping(ns *netns.NS, dst netip.Addr, timeout time.Duration) error {
	network, proto := "ip4:icmp", 1
	var typ, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		typ, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	return ns.Do(func() error {
		c, err := icmp.ListenPacket(network, "")
		if err != nil {
			return err
		}
		defer c.Close()
		id := rand.IntN(0xffff)
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		for seq := 1; time.Now().Before(deadline); seq++ {
			msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("tabby")}}
			b, err := msg.Marshal(nil)
			if err != nil {
				return err
			}
			if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					break
				}
				m, err := icmp.ParseMessage(proto, buf[:n])
				if err != nil || m.Type != replyType || from.String() != dst.String() {
					continue
				}
				if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
					return nil
				}
			}
		}
		return errors.New("no echo reply")
	})
}

// pingAll pings every other node's workload from every workload, over
// IPv4 and IPv6.
func (l *lab) pingAll() {
	l.t.Helper()
	for _, a := range l.nodes {
		for _, b := range l.nodes {
			if a == b {
				continue
			}
			for _, dst := range []netip.Addr{b.workload4(), b.workload6()} {
				if err := ping(a.wl, dst, 5*time.Second); err != nil {
					l.t.Errorf("ping from %s's workload to %s: %v", a.name, dst, err)
				}
			}
		}
	}
}

// nlFilterAll lists every route of the main table.
var nlFilterAll = nl.RouteFilter{Family: nl.FamilyAll}
