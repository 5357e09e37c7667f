package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// The dataplane suite measures iperf3 throughput between two workloads on
// two nodes of a lab, through Tabby's routed path (workload veth → node
// n1, routing and nftables → fabric bridge → node n2 → workload), with no
// policy and then with many, and in the same runs, for comparison:
//
//   - a direct veth pair between two fresh namespaces, with the MTU of the
//     lab's workload veths: what this kernel can do at all;
//   - the same two nodes joined by a VXLAN L2 overlay as flannel and
//     Docker build it: in each node's namespace a vxlan device (VNI 42,
//     port 4789, between the nodes' fabric addresses) in a bridge, and a
//     namespace per node attached to the bridge by a veth, MTU 1450.
//
// The paths are measured in turn within each run, so that the ratios
// compare numbers taken side by side.
func init() {
	register("dataplane", "iperf3 TCP and 64-byte UDP through Tabby's routed path (0 and 1,000 policies) vs. a direct veth and a VXLAN overlay", runDataplane)
}

// dataplaneSize is how much the suite measures.
type dataplaneSize struct {
	Seconds  int // iperf3 -t: seconds measured per test
	Omit     int // iperf3 -O: seconds before that, not counted
	Streams  int // TCP streams of the multi-stream test
	Policies int // policies of the second routed measurement
}

func dataplaneSizeFor(quick bool) dataplaneSize {
	if quick {
		return dataplaneSize{Seconds: 1, Streams: 4, Policies: 1000}
	}
	return dataplaneSize{Seconds: 4, Omit: 1, Streams: 4, Policies: 1000}
}

// Addresses and names of the comparison paths. No interface the suite
// creates in a node's namespace starts with "tabby": the agent owns those
// (and drops traffic from the ones it does not know).
const (
	udpLength     = 64 // bytes of UDP payload per datagram
	vxlanID       = 42
	vxlanPort     = 4789
	vxlanDev      = "vxbd" // in each node's namespace
	overlayBridge = "brbd" // in each node's namespace
	overlayPort   = "vebd" // in each node's namespace: the veth to the overlay namespace
	clientName    = "iperf-client"
	serverName    = "iperf-server"
	policyPrefix  = "tbd-"
	deniedPort    = 5202 // a port the allow policy does not open
)

var (
	vethNet    = netip.MustParsePrefix("10.251.0.0/24")
	overlayNet = netip.MustParsePrefix("10.250.0.0/24")
)

// hostAddr returns the address number host of p, with p's length.
func hostAddr(p netip.Prefix, host byte) netip.Prefix {
	a := p.Addr().As4()
	a[3] = host
	return netip.PrefixFrom(netip.AddrFrom4(a), p.Bits())
}

// nsPrefix starts the names of the namespaces the dataplane suite creates
// besides its lab's: "tbd-PID-".
const nsPrefix = "tbd-"

var nsCounter atomic.Int32

// dpPath is one way from a client namespace to an iperf3 server.
type dpPath struct {
	name   string
	client string // path of the client's namespace
	server netip.Addr
}

// dpSample is what one run measured on one path.
type dpSample struct {
	TCP1, TCPN float64 // Gbit/s
	UDPkpps    float64 // 64-byte datagrams delivered, thousands per second
	UDPLoss    float64 // %
}

// dpEnv holds what the suite built, to take it down in reverse order.
type dpEnv struct {
	o        *Options
	size     dataplaneSize
	prefix   string // of this run's namespaces
	cleanups []func() error
}

func (e *dpEnv) onCleanup(f func() error) { e.cleanups = append(e.cleanups, f) }

func (e *dpEnv) cleanup() error {
	var errs []error
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, e.cleanups[i]())
	}
	e.cleanups = nil
	return errors.Join(errs...)
}

func runDataplane(ctx context.Context, o *Options, r *Report) (err error) {
	size := dataplaneSizeFor(o.Quick)
	name, err := labName(o, "d")
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("the dataplane suite needs iperf3 (Debian package iperf3): %w", err)
	}
	r.Params["seconds"] = size.Seconds
	r.Params["omitSeconds"] = size.Omit
	r.Params["streams"] = size.Streams
	r.Params["policies"] = size.Policies
	r.Params["udpBytes"] = udpLength

	sweepStaleNamespaces()
	e := &dpEnv{o: o, size: size, prefix: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsCounter.Add(1))}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		err = errors.Join(err, e.cleanup())
	}()

	paths, bl, err := e.build(ctx, name, r)
	if err != nil {
		return err
	}

	// Without policies: the three paths in turn, run after run.
	samples := map[string][]dpSample{}
	for run := 1; run <= o.Runs; run++ {
		for _, p := range paths {
			s, err := e.measure(ctx, p)
			if err != nil {
				return err
			}
			o.Progressf("dataplane: run %d/%d: %s", run, o.Runs, s.line(p.name, size.Streams))
			samples[p.name] = append(samples[p.name], s)
		}
	}

	// With policies: the routed path again.
	routedN := fmt.Sprintf("routed, %d policies", size.Policies)
	if err := e.applyPolicies(ctx, bl, paths[0], r); err != nil {
		return err
	}
	for run := 1; run <= o.Runs; run++ {
		s, err := e.measure(ctx, dpPath{name: routedN, client: paths[0].client, server: paths[0].server})
		if err != nil {
			return err
		}
		o.Progressf("dataplane: run %d/%d: %s", run, o.Runs, s.line(routedN, size.Streams))
		samples[routedN] = append(samples[routedN], s)
	}

	addDataplaneResults(r, samples, size)
	r.Notes = append(r.Notes,
		fmt.Sprintf("iperf3 -t %d -O %d between workloads on two nodes of lab %s; TCP with 1 and %d streams, UDP with %d-byte datagrams sent as fast as possible (-b 0): kpps counts the datagrams delivered", size.Seconds, size.Omit, name, size.Streams, udpLength),
		"veth: two namespaces joined by one veth pair, with the MTU of the lab's workload veths (the physical limit here)",
		fmt.Sprintf("vxlan: the same two nodes joined by a VXLAN L2 overlay (VNI %d, port %d between the nodes' fabric addresses, a bridge per node, MTU %v), as flannel's and Docker's", vxlanID, vxlanPort, r.Params["overlayMTU"]),
		fmt.Sprintf("%s: %d NetworkPolicies select both workloads; all but the last (an allow of port %d) match other traffic; run i with policies is compared with run i without, measured before the policies were applied", routedN, size.Policies, iperfPort),
	)
	if r.Params["bridgeNfCallIptables"] == "1" {
		r.Notes = append(r.Notes, "br_netfilter is on in the node namespaces (bridge-nf-call-iptables 1): the overlay's bridged IPv4 traffic passes each node's forward hook, conntrack and Tabby's forward chain (which accepts it: it only judges interfaces named tabby*), as the routed traffic does")
	}
	return nil
}

// build brings up the lab, its two workloads, the veth pair and the
// overlay, and starts an iperf3 server at the end of each path. It
// returns the paths: routed, veth, vxlan.
func (e *dpEnv) build(ctx context.Context, labName string, r *Report) ([]dpPath, *benchLab, error) {
	o := e.o
	o.Progressf("dataplane: lab %s up (2 nodes)", labName)
	bl, err := upLab(ctx, o, lab.Config{Name: labName, Nodes: 2})
	if err != nil {
		return nil, nil, err
	}
	e.onCleanup(bl.Down)
	st := bl.State
	if len(st.Nodes) != 2 {
		return nil, nil, fmt.Errorf("lab %s has %d nodes, want 2", labName, len(st.Nodes))
	}
	srv, err := lab.Run(ctx, labName, lab.WorkloadConfig{Name: serverName, Node: st.Nodes[1].Name, Binary: o.Binary,
		Labels: map[string]string{"app": serverName, "role": "iperf"}})
	if err != nil {
		return nil, nil, fmt.Errorf("workload %s: %w", serverName, err)
	}
	cli, err := lab.Run(ctx, labName, lab.WorkloadConfig{Name: clientName, Node: st.Nodes[0].Name, Binary: o.Binary,
		Labels: map[string]string{"app": clientName, "role": "iperf"}})
	if err != nil {
		return nil, nil, fmt.Errorf("workload %s: %w", clientName, err)
	}
	routed := dpPath{name: "routed", client: netns.NamedPath(cli.NetNS), server: srv.IPv4}

	mtu, err := linkMTU(routed.client, "eth0")
	if err != nil {
		return nil, nil, fmt.Errorf("workload %s: %w", clientName, err)
	}
	r.Params["mtu"] = mtu
	o.Progressf("dataplane: direct veth pair (MTU %d)", mtu)
	veth, err := e.buildVeth(mtu)
	if err != nil {
		return nil, nil, fmt.Errorf("veth pair: %w", err)
	}
	o.Progressf("dataplane: VXLAN overlay between the nodes")
	vxlan, overlayMTU, nfCall, err := e.buildOverlay(ctx, st)
	if err != nil {
		return nil, nil, fmt.Errorf("vxlan overlay: %w", err)
	}
	r.Params["overlayMTU"] = overlayMTU
	if nfCall != "" {
		// With br_netfilter, the overlay's bridged IPv4 traffic passes
		// the node's forward hook, Tabby's table included, as the routed
		// traffic does.
		r.Params["bridgeNfCallIptables"] = nfCall
	}

	dir, err := os.MkdirTemp("", "tabby-bench-dataplane-")
	if err != nil {
		return nil, nil, err
	}
	e.onCleanup(func() error { return os.RemoveAll(dir) })
	paths := []dpPath{routed, veth, vxlan}
	servers := []string{netns.NamedPath(srv.NetNS), netns.NamedPath(e.prefix + "-vb"), netns.NamedPath(e.prefix + "-o2")}
	for i, p := range paths {
		s, err := startIperfServer(ctx, servers[i], p.server, filepath.Join(dir, p.name+".log"))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.name, err)
		}
		e.onCleanup(s.Stop)
		o.Log.Debug("iperf3 server", "path", p.name, "pid", s.PID(), "addr", p.server)
	}
	// One small transfer per path: each works before anything is timed.
	for _, p := range paths {
		if _, err := runIperf(ctx, p.client, iperfTest{Server: p.server, Bytes: 1 << 20}); err != nil {
			return nil, nil, fmt.Errorf("%s: first transfer: %w", p.name, err)
		}
	}
	return paths, bl, nil
}

// newNS creates a namespace of the suite's own, removed in cleanup, and
// returns a netlink handle in it with lo up. The caller closes the handle.
func (e *dpEnv) newNS(suffix string) (*nl.Handle, error) {
	name := e.prefix + "-" + suffix
	ns, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	ns.Close()
	e.onCleanup(func() error { return netns.Delete(name) })
	h, err := nl.Open(netns.NamedPath(name))
	if err != nil {
		return nil, err
	}
	if err := setUp(h, "lo", netip.Prefix{}); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// setUp gives the link name the address addr (if valid) and sets it up.
func setUp(h *nl.Handle, name string, addr netip.Prefix) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if addr.IsValid() {
		if err := h.AddrAdd(nl.Addr{LinkIndex: l.Index, Prefix: addr}); err != nil {
			return err
		}
	}
	return h.LinkSetUp(l.Index)
}

func linkMTU(nsPath, name string) (int, error) {
	h, err := nl.Open(nsPath)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.MTU, nil
}

// buildVeth makes namespaces PREFIX-va and PREFIX-vb joined by a veth pair
// (eth0 in each) with the given MTU.
func (e *dpEnv) buildVeth(mtu int) (dpPath, error) {
	ha, err := e.newNS("va")
	if err != nil {
		return dpPath{}, err
	}
	defer ha.Close()
	hb, err := e.newNS("vb")
	if err != nil {
		return dpPath{}, err
	}
	defer hb.Close()
	if _, err := ha.CreateVeth(nl.Veth{Name: "eth0", MTU: mtu, PeerName: "eth0", PeerNS: hb.NS()}); err != nil {
		return dpPath{}, err
	}
	if err := errors.Join(setUp(ha, "eth0", hostAddr(vethNet, 1)), setUp(hb, "eth0", hostAddr(vethNet, 2))); err != nil {
		return dpPath{}, err
	}
	return dpPath{name: "veth", client: ha.NS().Path(), server: hostAddr(vethNet, 2).Addr()}, nil
}

// buildOverlay joins the lab's two nodes by a VXLAN L2 overlay: in each
// node's namespace a vxlan device to the other node and a bridge, and a
// namespace PREFIX-oK attached to the bridge by a veth, with an address in
// overlayNet. It returns the path from the first overlay namespace to the
// second, the overlay's MTU, and the node's bridge-nf-call-iptables
// setting ("" if the kernel has no br_netfilter).
func (e *dpEnv) buildOverlay(ctx context.Context, st *lab.State) (p dpPath, mtu int, nfCall string, err error) {
	var client string
	for k, node := range st.Nodes {
		other := st.Nodes[1-k]
		hn, err := nl.Open(netns.NamedPath(node.NetNS))
		if err != nil {
			return dpPath{}, 0, "", err
		}
		defer hn.Close()
		eth0, err := hn.LinkByName("eth0")
		if err != nil {
			return dpPath{}, 0, "", err
		}
		vx, err := hn.CreateVXLAN(nl.VXLAN{Name: vxlanDev, VNI: vxlanID, Port: vxlanPort,
			Local: node.IPv4, Remote: other.IPv4, Parent: eth0.Index})
		if err != nil {
			return dpPath{}, 0, "", fmt.Errorf("node %s: %w", node.Name, err)
		}
		mtu = vx.MTU
		br, err := hn.CreateBridge(overlayBridge)
		if err != nil {
			return dpPath{}, 0, "", err
		}
		ho, err := e.newNS("o" + strconv.Itoa(k+1))
		if err != nil {
			return dpPath{}, 0, "", err
		}
		defer ho.Close()
		port, err := hn.CreateVeth(nl.Veth{Name: overlayPort, MTU: mtu, PeerName: "eth0", PeerNS: ho.NS()})
		if err != nil {
			return dpPath{}, 0, "", err
		}
		for _, l := range []nl.Link{vx, port} {
			if err := hn.LinkSetMaster(l.Index, br.Index); err != nil {
				return dpPath{}, 0, "", err
			}
		}
		for _, name := range []string{vxlanDev, overlayPort, overlayBridge} {
			if err := setUp(hn, name, netip.Prefix{}); err != nil {
				return dpPath{}, 0, "", err
			}
		}
		if err := setUp(ho, "eth0", hostAddr(overlayNet, byte(k+1))); err != nil {
			return dpPath{}, 0, "", err
		}
		if k == 0 {
			client = ho.NS().Path()
			nfCall, _ = hn.SysctlGet("net.bridge.bridge-nf-call-iptables")
		}
	}
	return dpPath{name: "vxlan", client: client, server: hostAddr(overlayNet, 2).Addr()}, mtu, strings.TrimSpace(nfCall), nil
}

// measure runs the three tests on one path.
func (e *dpEnv) measure(ctx context.Context, p dpPath) (dpSample, error) {
	base := iperfTest{Server: p.server, Seconds: e.size.Seconds, Omit: e.size.Omit}
	var s dpSample
	for _, t := range []struct {
		name string
		set  func(*iperfTest)
		get  func(iperfResult)
	}{
		{"TCP 1 stream", func(*iperfTest) {}, func(r iperfResult) { s.TCP1 = r.BitsPerSecond / 1e9 }},
		{fmt.Sprintf("TCP %d streams", e.size.Streams), func(t *iperfTest) { t.Streams = e.size.Streams },
			func(r iperfResult) { s.TCPN = r.BitsPerSecond / 1e9 }},
		// No omitted seconds for UDP: there is no slow start.
		{"UDP", func(t *iperfTest) { t.UDP, t.Length, t.Omit = true, udpLength, 0 },
			func(r iperfResult) { s.UDPkpps, s.UDPLoss = r.PacketsPerSecond/1e3, r.LossPercent }},
	} {
		test := base
		t.set(&test)
		res, err := runIperf(ctx, p.client, test)
		if err != nil {
			return s, fmt.Errorf("%s: %s: %w", p.name, t.name, err)
		}
		e.o.Log.Debug("iperf3", "path", p.name, "test", t.name, "bps", res.BitsPerSecond, "pps", res.PacketsPerSecond, "loss", res.LossPercent, "retransmits", res.Retransmits)
		t.get(res)
	}
	return s, nil
}

func (s dpSample) line(path string, streams int) string {
	return fmt.Sprintf("%s: TCP %.2f Gbit/s, %d streams %.2f Gbit/s, UDP %d B %.0f kpps (%.1f%% lost)",
		path, s.TCP1, streams, s.TCPN, udpLength, s.UDPkpps, s.UDPLoss)
}

// policyManifest returns n NetworkPolicies in namespace default that
// select both iperf3 workloads: n-1 whose rules match other traffic only
// (other sources, ports and networks), and, last in order, one that allows
// TCP and UDP to port iperfPort from the client to the server.
func policyManifest(n int) string {
	var b strings.Builder
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata:
  name: %[1]s%04[2]d
  namespace: default
spec:
  order: %[2]d
  selector: role == "iperf"
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: app == "svc-%[2]d"
      destination:
        ports: [%[3]d]
    - action: Deny
      protocol: UDP
      source:
        nets: [198.18.%[4]d.%[5]d/32]
  egress:
    - action: Allow
      protocol: TCP
      destination:
        nets: [198.19.%[4]d.%[5]d/32]
        ports: [%[3]d]
---
`, policyPrefix, i, 10000+i, i/256, i%256)
	}
	fmt.Fprintf(&b, `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata:
  name: %[1]sallow-iperf
  namespace: default
spec:
  order: %[2]d
  selector: role == "iperf"
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == "%[3]s"}
      destination: {ports: [%[5]d]}
    - action: Allow
      protocol: UDP
      source: {selector: app == "%[3]s"}
      destination: {ports: [%[5]d]}
  egress:
    - action: Allow
      protocol: TCP
      destination: {selector: app == "%[4]s", ports: [%[5]d]}
    - action: Allow
      protocol: UDP
      destination: {selector: app == "%[4]s", ports: [%[5]d]}
`, policyPrefix, n*10, clientName, serverName, iperfPort)
	return b.String()
}

// applyPolicies writes the policies, waits until both agents have applied
// them, checks that they are in both nodes' nftables, that the iperf3
// flow is still allowed and that other traffic between the workloads is
// now dropped.
func (e *dpEnv) applyPolicies(ctx context.Context, bl *benchLab, routed dpPath, r *Report) error {
	n := e.size.Policies
	dst := netip.AddrPortFrom(routed.server, deniedPort).String()
	// Before: nothing listens on deniedPort, and the open profile lets the
	// SYN through, so the server's kernel refuses it.
	if err := dialTCP(routed.client, dst); !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("before the policies, a connection to %s should be refused, got: %v", dst, err)
	}
	objs, err := v1.DecodeManifests("dataplane policies", []byte(policyManifest(n)))
	if err != nil {
		return err
	}
	c, err := bl.Client(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	e.o.Progressf("dataplane: applying %d policies", n)
	if _, err := c.Apply(ctx, objs, datastore.ApplyOptions{}); err != nil {
		return fmt.Errorf("applying %d policies: %w", n, err)
	}
	applied := time.Since(start)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := lab.WaitConverged(wctx, bl.State); err != nil {
		return err
	}
	programmed := time.Since(start)
	e.o.Progressf("dataplane: %d policies written in %.1f s, applied by both agents after %.1f s", n, applied.Seconds(), programmed.Seconds())
	r.Params["policiesAppliedSeconds"] = programmed.Round(100 * time.Millisecond).Seconds()
	for _, node := range bl.Nodes {
		out, err := netns.Exec(ctx, netns.NamedPath(node.NetNS), "nft", "-t", "list", "table", "inet", "tabby")
		if err != nil {
			return err
		}
		// Every policy selects a workload on each node, and each active
		// policy has an ingress and an egress chain.
		if in, eg := countPolicyChains(string(out)); in != n || eg != n {
			return fmt.Errorf("node %s: %d ingress and %d egress policy chains in nftables, want %d each", node.Name, in, eg, n)
		}
	}
	if err := dialTCP(routed.client, dst); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("with the policies, a connection to %s should be dropped, got: %v", dst, err)
	}
	if _, err := runIperf(ctx, routed.client, iperfTest{Server: routed.server, Bytes: 1 << 20}); err != nil {
		return fmt.Errorf("with %d policies, the iperf3 flow should be allowed: %w", n, err)
	}
	return nil
}

// dialTCP connects from the namespace at nsPath to addr, waiting at most
// a second.
func dialTCP(nsPath, addr string) error {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// countPolicyChains counts the policy chains (pi-…, po-…) in the output
// of `nft list table`.
func countPolicyChains(out string) (in, eg int) {
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "chain" {
			continue
		}
		switch name := strings.Trim(f[1], `"`); {
		case strings.HasPrefix(name, "pi-"):
			in++
		case strings.HasPrefix(name, "po-"):
			eg++
		}
	}
	return in, eg
}

// addDataplaneResults turns the samples into results: each metric per
// path, then the ratios, computed run by run.
func addDataplaneResults(r *Report, samples map[string][]dpSample, size dataplaneSize) {
	routedN := fmt.Sprintf("routed, %d policies", size.Policies)
	paths := []string{"routed", "veth", "vxlan", routedN}
	metrics := []struct {
		name, unit string
		get        func(dpSample) float64
	}{
		{"TCP 1 stream", "Gbit/s", func(s dpSample) float64 { return s.TCP1 }},
		{fmt.Sprintf("TCP %d streams", size.Streams), "Gbit/s", func(s dpSample) float64 { return s.TCPN }},
		{fmt.Sprintf("UDP %d B", udpLength), "kpps", func(s dpSample) float64 { return s.UDPkpps }},
		{fmt.Sprintf("UDP %d B loss", udpLength), "%", func(s dpSample) float64 { return s.UDPLoss }},
	}
	values := func(path string, get func(dpSample) float64) []float64 {
		var v []float64
		for _, s := range samples[path] {
			v = append(v, get(s))
		}
		return v
	}
	for _, m := range metrics {
		for _, p := range paths {
			r.Add(NewResult(m.name+": "+p, m.unit, values(p, m.get), ""))
		}
	}
	ratio := func(a, b string, get func(dpSample) float64) []float64 {
		num, den := values(a, get), values(b, get)
		var v []float64
		for i := range min(len(num), len(den)) {
			v = append(v, num[i]/den[i])
		}
		return v
	}
	for i, m := range metrics[:3] {
		goals := [3]string{}
		if i == 0 { // the goals are on single-stream TCP
			goals = [3]string{">= 0.9", ">= 1.15", ">= 0.95"}
		}
		r.Add(NewResult(m.name+": routed / veth", "ratio", ratio("routed", "veth", m.get), goals[0]))
		r.Add(NewResult(m.name+": routed / vxlan", "ratio", ratio("routed", "vxlan", m.get), goals[1]))
		r.Add(NewResult(fmt.Sprintf("%s: routed %d / 0 policies", m.name, size.Policies), "ratio", ratio(routedN, "routed", m.get), goals[2]))
	}
}

// sweepStaleNamespaces deletes tbd-PID-… namespaces whose process is gone
// (a suite killed before its clean-up ran).
func sweepStaleNamespaces() {
	entries, err := os.ReadDir(netns.RunDir)
	if err != nil {
		return
	}
	for _, ent := range entries {
		rest, ok := strings.CutPrefix(ent.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		_ = netns.Delete(ent.Name())
	}
}
