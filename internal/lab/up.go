package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/netns"
)

// Config says what lab to build.
type Config struct {
	Name   string
	Nodes  int
	IPv6   bool
	Fabric string // "l2" (one bridge) or "tor" (racks with BIRD top-of-rack routers)
	// Racks is the number of racks of --fabric tor (default 2, or Nodes
	// if fewer); it must be 0 with l2.
	Racks int
	Pool4 string
	Pool6 string
	// RouteReflectors (fabric l2) turns the node-to-node mesh off and
	// makes nodes n1…nR route reflectors, which every node peers with;
	// 0 keeps the full mesh (N(N-1)/2 sessions, slow to set up at 50).
	RouteReflectors int
	// Binary is the tabby binary that runs the datastore, the agents, the
	// relay and the echo servers. Default: this executable.
	Binary string
	// Timeout bounds the whole of Up. Default 90s.
	Timeout time.Duration
	// Step, if set, is called after each step with its duration.
	Step func(step string, took time.Duration)
	// Log receives debug messages; default discards.
	Log *slog.Logger
}

// Defaults fills the unset fields.
func (c *Config) Defaults() {
	if c.Name == "" {
		c.Name = "lab"
	}
	if c.Nodes == 0 {
		c.Nodes = 2
	}
	if c.Fabric == "" {
		c.Fabric = "l2"
	}
	if c.Fabric == "tor" && c.Racks == 0 {
		c.Racks = min(2, c.Nodes)
	}
	if c.Pool4 == "" {
		c.Pool4 = "10.65.0.0/16"
	}
	if c.Pool6 == "" {
		c.Pool6 = "fd00:65::/48"
	}
	if c.Binary == "" {
		c.Binary, _ = os.Executable()
	}
	if c.Timeout == 0 {
		c.Timeout = 90 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if err := CheckName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Nodes < 1 || c.Nodes > 50 {
		errs = append(errs, fmt.Errorf("nodes: %d: must be between 1 and 50", c.Nodes))
	}
	if c.RouteReflectors != 0 && (c.Fabric != "l2" || c.RouteReflectors < 0 || c.RouteReflectors > c.Nodes) {
		errs = append(errs, fmt.Errorf("route reflectors: %d: must be between 0 and the number of nodes (%d), with fabric l2", c.RouteReflectors, c.Nodes))
	}
	switch c.Fabric {
	case "l2":
		if c.Racks != 0 {
			errs = append(errs, fmt.Errorf("racks: %d: only with fabric tor", c.Racks))
		}
	case "tor":
		if c.Racks < 1 || c.Racks > MaxRacks || c.Racks > c.Nodes {
			errs = append(errs, fmt.Errorf("racks: %d: must be between 1 and %d, and at most the number of nodes (%d)", c.Racks, MaxRacks, c.Nodes))
		}
	default:
		errs = append(errs, fmt.Errorf("fabric: %q: must be l2 or tor", c.Fabric))
	}
	if p, err := netip.ParsePrefix(c.Pool4); err != nil || !p.Addr().Is4() {
		errs = append(errs, fmt.Errorf("pool: %q: must be an IPv4 CIDR", c.Pool4))
	}
	if p, err := netip.ParsePrefix(c.Pool6); err != nil || p.Addr().Is4() {
		errs = append(errs, fmt.Errorf("ipv6-pool: %q: must be an IPv6 CIDR", c.Pool6))
	}
	if c.Binary == "" {
		errs = append(errs, errors.New("binary: must be set"))
	}
	return errors.Join(errs...)
}

const (
	bridgeName    = "br0"
	datastorePort = 2379
	profileName   = "lab-open"
)

func fabricAddr4(idx, host int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, 31, byte(idx), byte(host)})
}

func fabricAddr6(idx, host int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:ffff:%x::%x", idx, host))
}

// Up builds the lab: fabric, nodes, datastore, relay, resources and
// agents, waits until every BGP session is established, and installs the
// CNI plugin and the nodes' network configurations. If it fails,
// it takes down what it built.
func Up(ctx context.Context, cfg Config) (st *State, err error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Fabric == "tor" {
		if err := requireBird(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	step := func(name string, start time.Time) {
		if cfg.Step != nil {
			cfg.Step(name, time.Since(start))
		}
	}

	t0 := time.Now()
	st, err = create(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := Down(cfg.Name, nil); derr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up: %w", derr))
			}
			st = nil
		}
	}()
	step("state "+Dir(cfg.Name), t0)

	t0 = time.Now()
	if err := update(cfg.Name, func(s *State) error { return buildFabric(s) }); err != nil {
		return nil, fmt.Errorf("building the fabric: %w", err)
	}
	step(fmt.Sprintf("fabric %s (bridge %s, 172.31.%d.0/24)", st.FabricNS, bridgeName, st.Index), t0)

	if cfg.Fabric == "tor" {
		t0 = time.Now()
		if err := update(cfg.Name, func(s *State) error { return buildToRs(s, cfg.Racks) }); err != nil {
			return nil, fmt.Errorf("building the racks: %w", err)
		}
		step(fmt.Sprintf("%d racks with their top-of-rack router namespaces", cfg.Racks), t0)
	}

	t0 = time.Now()
	if err := update(cfg.Name, func(s *State) error { return buildNodes(s, cfg.Nodes) }); err != nil {
		return nil, fmt.Errorf("building the nodes: %w", err)
	}
	step(fmt.Sprintf("%d node namespaces", cfg.Nodes), t0)

	if cfg.Fabric == "tor" {
		t0 = time.Now()
		if err := update(cfg.Name, startToRs); err != nil {
			return nil, fmt.Errorf("starting the top-of-rack routers: %w", err)
		}
		step(fmt.Sprintf("BIRD on %d top-of-rack routers", cfg.Racks), t0)
	}

	t0 = time.Now()
	if err := update(cfg.Name, func(s *State) error { return startDatastore(s, cfg.Binary) }); err != nil {
		return nil, fmt.Errorf("starting the datastore: %w", err)
	}
	if st, err = Load(cfg.Name); err != nil {
		return nil, err
	}
	c, err := connectWhenUp(ctx, st)
	if err != nil {
		return nil, err
	}
	defer c.Store().Close()
	step("datastore "+st.DatastoreURL+" (relay "+st.ClientURL+")", t0)

	t0 = time.Now()
	if err := applyManifest(ctx, c, resources(st)); err != nil {
		return nil, fmt.Errorf("writing the lab's resources: %w", err)
	}
	step("pools, BGP configuration, profile and nodes", t0)

	t0 = time.Now()
	if err := update(cfg.Name, func(s *State) error { return startAgents(s, cfg.Binary) }); err != nil {
		return nil, fmt.Errorf("starting the agents: %w", err)
	}
	if st, err = Load(cfg.Name); err != nil {
		return nil, err
	}
	if err := waitAgents(ctx, st); err != nil {
		return nil, err
	}
	step(fmt.Sprintf("%d agents ready", len(st.Nodes)), t0)

	t0 = time.Now()
	if err := waitBGP(ctx, st); err != nil {
		return nil, err
	}
	if st.Fabric == "tor" {
		if err := waitToRs(ctx, st); err != nil {
			return nil, err
		}
		r := len(st.ToRs)
		step(fmt.Sprintf("BGP established (%d node-ToR and %d ToR-ToR sessions)", len(st.Nodes), r*(r-1)/2), t0)
	} else {
		step(fmt.Sprintf("BGP mesh established (%d sessions)", len(st.Nodes)*(len(st.Nodes)-1)/2), t0)
	}

	t0 = time.Now()
	if err := installCNI(st, cfg.Binary); err != nil {
		return nil, fmt.Errorf("installing the CNI plugin: %w", err)
	}
	step("CNI plugin and network "+networkName+" in "+filepath.Dir(cniBinDir(st.Name)), t0)
	return st, nil
}

// create picks the lab's index and makes its directory and first state.
func create(cfg Config) (*State, error) {
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(Dir(cfg.Name)); err == nil {
		return nil, fmt.Errorf("lab %q exists already (tabby lab down --name %s removes it)", cfg.Name, cfg.Name)
	}
	labs, err := List()
	if err != nil {
		return nil, err
	}
	used := map[int]bool{}
	for _, l := range labs {
		used[l.Index] = true
	}
	idx := 1
	for used[idx] {
		idx++
	}
	if idx > 250 {
		return nil, errors.New("too many labs")
	}
	if err := os.MkdirAll(filepath.Join(Dir(cfg.Name), "logs"), 0o755); err != nil {
		return nil, err
	}
	st := &State{
		Name: cfg.Name, Index: idx, Created: time.Now().UTC().Truncate(time.Second),
		Fabric: cfg.Fabric, IPv6: cfg.IPv6, Pool4: cfg.Pool4, RouteReflectors: cfg.RouteReflectors,
		FabricNS:     NSPrefix + cfg.Name + "-fab",
		DatastoreURL: fmt.Sprintf("http://%s", net.JoinHostPort(fabricAddr4(idx, 254).String(), fmt.Sprint(datastorePort))),
	}
	if cfg.IPv6 {
		st.Pool6 = cfg.Pool6
	}
	return st, st.save()
}

var noDAD = []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"}

// newNS creates a namespace with loopback up and IPv6 DAD off, and
// returns a netlink handle in it.
func newNS(name string) (*nl.Handle, error) {
	ns, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	ns.Close()
	h, err := nl.Open(netns.NamedPath(name))
	if err != nil {
		return nil, err
	}
	for _, s := range noDAD {
		if err := h.SysctlSet(s, "0"); err != nil {
			h.Close()
			return nil, err
		}
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo.Index)
	}
	if err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func buildFabric(s *State) error {
	h, err := newNS(s.FabricNS)
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.CreateBridge(bridgeName)
	if err != nil {
		return err
	}
	addrs := []nl.Addr{{LinkIndex: br.Index, Prefix: netip.PrefixFrom(fabricAddr4(s.Index, 254), 24)}}
	if s.IPv6 {
		addrs = append(addrs, nl.Addr{LinkIndex: br.Index, Prefix: netip.PrefixFrom(fabricAddr6(s.Index, 254), 64), NoDAD: true})
	}
	for _, a := range addrs {
		if err := h.AddrAdd(a); err != nil {
			return err
		}
	}
	return h.LinkSetUp(br.Index)
}

// buildNodes creates the nodes' namespaces, each attached to the fabric
// bridge (l2) or to its rack's bridge in its ToR's namespace (tor; the
// ToRs exist already).
func buildNodes(s *State, n int) error {
	// The namespace whose bridge each node attaches to, with a handle
	// and the bridge's index.
	type attachment struct {
		h      *nl.Handle
		bridge int
	}
	attach := map[string]attachment{}
	defer func() {
		for _, a := range attach {
			a.h.Close()
		}
	}()
	open := func(ns string) (attachment, error) {
		if a, ok := attach[ns]; ok {
			return a, nil
		}
		h, err := nl.Open(netns.NamedPath(ns))
		if err != nil {
			return attachment{}, err
		}
		br, err := h.LinkByName(bridgeName)
		if err != nil {
			h.Close()
			return attachment{}, err
		}
		attach[ns] = attachment{h, br.Index}
		return attach[ns], nil
	}
	for k := 1; k <= n; k++ {
		node := Node{
			Name:   fmt.Sprintf("n%d", k),
			NetNS:  fmt.Sprintf("%s%s-n%d", NSPrefix, s.Name, k),
			IPv4:   fabricAddr4(s.Index, k),
			Socket: filepath.Join(Dir(s.Name), fmt.Sprintf("n%d.sock", k)),
		}
		if s.IPv6 {
			node.IPv6 = fabricAddr6(s.Index, k)
		}
		nsOfBridge := s.FabricNS
		var gateways []netip.Addr
		if len(s.ToRs) > 0 {
			r := rackOf(k, len(s.ToRs))
			t := s.ToRs[r-1]
			node.Rack, node.AS, nsOfBridge = t.Rack, uint32(nodeBaseAS+k), t.NetNS
			node.IPv4 = rackAddr4(s.Index, r, k)
			gateways = append(gateways, t.Gateway4)
			if s.IPv6 {
				node.IPv6 = rackAddr6(s.Index, r, k)
				gateways = append(gateways, t.Gateway6)
			}
		}
		s.Nodes = append(s.Nodes, node) // recorded before it exists, for Down
		a, err := open(nsOfBridge)
		if err == nil {
			err = buildNode(a.h, a.bridge, node, gateways)
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	return nil
}

// buildNode creates the node's namespace with eth0, a veth whose other
// end (named after the node) is a port of bridge in fab's namespace, and
// default routes via gateways.
func buildNode(fab *nl.Handle, bridge int, node Node, gateways []netip.Addr) error {
	h, err := newNS(node.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	port, err := fab.CreateVeth(nl.Veth{Name: node.Name, PeerName: "eth0", PeerNS: h.NS()})
	if err != nil {
		return err
	}
	if err := fab.LinkSetMaster(port.Index, bridge); err != nil {
		return err
	}
	if err := fab.LinkSetUp(port.Index); err != nil {
		return err
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	addrs := []nl.Addr{{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(node.IPv4, 24)}}
	if node.IPv6.IsValid() {
		addrs = append(addrs, nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(node.IPv6, 64), NoDAD: true})
	}
	for _, a := range addrs {
		if err := h.AddrAdd(a); err != nil {
			return err
		}
	}
	if err := h.LinkSetUp(eth0.Index); err != nil {
		return err
	}
	for _, gw := range gateways {
		def := netip.MustParsePrefix("0.0.0.0/0")
		if gw.Is6() {
			def = netip.MustParsePrefix("::/0")
		}
		if err := h.RouteAdd(nl.Route{Dst: def, Gateway: gw, Protocol: nl.ProtoStatic}); err != nil {
			return err
		}
	}
	return nil
}

func startDatastore(s *State, bin string) error {
	dir := Dir(s.Name)
	s.DatastoreURL = fmt.Sprintf("http://%s", net.JoinHostPort(fabricAddr4(s.Index, 254).String(), fmt.Sprint(datastorePort)))
	p, err := startDetached(filepath.Join(dir, "logs", "datastore.log"), s.FabricNS, nil,
		bin, "datastore", "run", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", s.DatastoreURL+",http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380")
	if err != nil {
		return err
	}
	s.Datastore = p

	// The relay's listener is made here, on a port the kernel picks, and
	// handed to the relay as fd 3: no race for the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	defer f.Close()
	p, err = startDetached(filepath.Join(dir, "logs", "relay.log"), "", []*os.File{f},
		bin, "lab", "relay", "--listen-fd", "3", "--netns", netns.NamedPath(s.FabricNS), "--to", "127.0.0.1:2379")
	if err != nil {
		return err
	}
	s.Relay = p
	s.ClientURL = "http://" + ln.Addr().String()
	return nil
}

// connect opens the lab's datastore through the relay.
func connect(ctx context.Context, st *State) (*datastore.Client, error) {
	cfg := etcd.ClientConfig{Endpoints: []string{st.ClientURL}}
	cfg.Defaults()
	store, err := etcd.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	return datastore.NewClient(store), nil
}

// connectWhenUp waits until the datastore answers.
func connectWhenUp(ctx context.Context, st *State) (*datastore.Client, error) {
	var last error
	for {
		c, err := connect(ctx, st)
		if err == nil {
			info, _ := v1.LookupKind("IPPool")
			_, _, err = c.List(ctx, info, "")
			if err == nil {
				return c, nil
			}
			c.Store().Close()
		}
		last = err
		if !st.Datastore.Alive() {
			return nil, fmt.Errorf("the datastore exited: %v\n%s", last, tail(st.Datastore.Log))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the datastore: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func applyManifest(ctx context.Context, c *datastore.Client, manifest string) error {
	objs, err := v1.DecodeManifests("lab.yaml", []byte(manifest))
	if err != nil {
		return err
	}
	_, err = c.Apply(ctx, objs, datastore.ApplyOptions{})
	return err
}

// resources are the lab's pools, BGP configuration, open profile and
// nodes (with explicit BGP addresses: nothing is autodetected).
func resources(st *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: default-ipv4}
spec: {cidr: %q, blockSize: 26, natOutgoing: false}
---
apiVersion: tabby.dev/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: %t, asNumber: 64512}
---
apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: %s}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
`, st.Pool4, len(st.ToRs) == 0 && st.RouteReflectors == 0, profileName)
	if st.IPv6 {
		fmt.Fprintf(&b, "---\napiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: default-ipv6}\nspec: {cidr: %q, blockSize: 122}\n", st.Pool6)
	}
	for i, n := range st.Nodes {
		labels := "lab.tabby.dev/node: " + n.Name
		if n.Rack != "" {
			labels += ", " + rackLabel + ": " + n.Rack
		}
		fmt.Fprintf(&b, "---\napiVersion: tabby.dev/v1\nkind: Node\nmetadata: {name: %s, labels: {%s}}\nspec:\n  bgp:\n    ipv4Address: %s/24\n", n.Name, labels, n.IPv4)
		if n.IPv6.IsValid() {
			fmt.Fprintf(&b, "    ipv6Address: %s/64\n", n.IPv6)
		}
		if n.AS != 0 {
			fmt.Fprintf(&b, "    asNumber: %d\n", n.AS)
		}
		if i < st.RouteReflectors {
			b.WriteString("    routeReflectorClusterID: 224.0.0.1\n")
		}
	}
	b.WriteString(torResources(st))
	return b.String()
}

func startAgents(s *State, bin string) error {
	for i := range s.Nodes {
		n := &s.Nodes[i]
		p, err := startDetached(filepath.Join(Dir(s.Name), "logs", n.Name+"-agent.log"), n.NetNS, nil,
			bin, "agent", "--node", n.Name, "--endpoints", s.DatastoreURL, "--status-socket", n.Socket,
			"--health-addr", "127.0.0.1:9099")
		if err != nil {
			return err
		}
		n.Agent = p
	}
	return nil
}

func waitAgents(ctx context.Context, st *State) error {
	for _, n := range st.Nodes {
		sc := agent.NewStatusClient(n.Socket)
		var last string
		for {
			s, err := sc.Status(ctx)
			if err == nil && s.Ready {
				break
			}
			last = fmt.Sprintf("%+v %v", s, err)
			if !n.Agent.Alive() {
				return fmt.Errorf("agent of %s exited:\n%s", n.Name, tail(n.Agent.Log))
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("agent of %s not ready: %w (last: %s)\n%s", n.Name, ctx.Err(), last, tail(n.Agent.Log))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// waitBGP waits until every node has an established session with every
// other node (l2), or with its ToR (tor).
func waitBGP(ctx context.Context, st *State) error {
	want := len(st.Nodes) - 1
	if len(st.ToRs) > 0 {
		want = 1
	}
	for i, n := range st.Nodes {
		want := want
		if st.RouteReflectors > 0 && i >= st.RouteReflectors {
			want = st.RouteReflectors // a client peers with the reflectors only
		}
		sc := agent.NewStatusClient(n.Socket)
		var last []agent.BGPPeerStatus
		for {
			peers, err := sc.BGP(ctx)
			up := 0
			for _, p := range peers {
				if p.State == "Established" {
					up++
				}
			}
			if err == nil && up >= want {
				break
			}
			last = peers
			select {
			case <-ctx.Done():
				return fmt.Errorf("BGP sessions of %s not established: %w (last: %+v)\n%s", n.Name, ctx.Err(), last, tail(n.Agent.Log))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + path + ":\n    " + strings.Join(lines, "\n    ")
}
