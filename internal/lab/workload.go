package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
)

// WorkloadConfig describes a workload to run.
type WorkloadConfig struct {
	Namespace string // default "default"
	Name      string
	Node      string
	Labels    map[string]string
	// Serve lists echo servers, "tcp:PORT" or "udp:PORT".
	Serve []string
	// IPs are wanted addresses (at most one per family); families without
	// one get an address from IPAM.
	IPs []netip.Addr
	// Binary runs the echo servers; default this executable.
	Binary string
	// Timeout bounds Run; default 30s.
	Timeout time.Duration
}

// hostMAC is the MAC of every workload's host-side interface; the
// workload has a permanent neighbour entry for 169.254.1.1 with it, and
// its IPv6 gateway is the link-local address derived from it.
var hostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}

var (
	gateway4 = netip.MustParseAddr("169.254.1.1")
	gateway6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
)

// ParseServe checks a list of "tcp:PORT" and "udp:PORT".
func ParseServe(specs []string) error {
	for _, s := range specs {
		proto, port, ok := strings.Cut(s, ":")
		if n, err := strconv.Atoi(port); !ok || (proto != "tcp" && proto != "udp") || err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("serve %q: want tcp:PORT or udp:PORT", s)
		}
	}
	return nil
}

// Run creates a workload on one of the lab's nodes, plumbed as the CNI
// plugin does it: a namespace with eth0 carrying the workload's /32 and
// /128 from IPAM, a veth to the node, a WorkloadEndpoint (with the open
// profile lab-open and the given labels), and optionally echo servers.
// It returns once the node's agent has programmed the endpoint.
func Run(ctx context.Context, lab string, cfg WorkloadConfig) (wl *Workload, err error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	var errs []error
	for what, v := range map[string]string{"name": cfg.Name, "namespace": cfg.Namespace} {
		if !wlNameRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("workload %s %q: must be 1-32 characters a-z, 0-9 and '-'", what, v))
		}
	}
	errs = append(errs, ParseServe(cfg.Serve))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// Reserve the workload in the state first, so that Down removes
	// whatever the rest creates.
	w := Workload{Namespace: cfg.Namespace, Name: cfg.Name, Node: cfg.Node, Labels: cfg.Labels, Serve: cfg.Serve}
	w.NetNS = NSPrefix + lab + "-w-" + cfg.Name
	if cfg.Namespace != "default" {
		w.NetNS = NSPrefix + lab + "-w-" + cfg.Namespace + "-" + cfg.Name
	}
	w.Interface = links.InterfaceName("tabby", w.ID())
	var st *State
	err = update(lab, func(s *State) error {
		st = s
		if _, ok := s.Node(cfg.Node); !ok {
			return fmt.Errorf("lab %s has no node %q", lab, cfg.Node)
		}
		if _, ok := s.Workload(w.ID()); ok {
			return fmt.Errorf("workload %s exists already", w.ID())
		}
		if slices.Contains(s.Namespaces(), w.NetNS) {
			return fmt.Errorf("namespace %s is taken", w.NetNS)
		}
		s.Workloads = append(s.Workloads, w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	node, _ := st.Node(cfg.Node)

	c, err := connect(ctx, st)
	if err != nil {
		return nil, err
	}
	defer c.Store().Close()
	if err := assignAddrs(ctx, c.Store(), st, &w, cfg.IPs); err != nil {
		return nil, err
	}
	if err := update(lab, func(s *State) error {
		p, _ := s.Workload(w.ID())
		*p = w
		return nil
	}); err != nil {
		return nil, err
	}
	if err := plumb(node, w); err != nil {
		return nil, fmt.Errorf("plumbing %s: %w", w.ID(), err)
	}
	if err := applyManifest(ctx, c, wepManifest(w)); err != nil {
		return nil, fmt.Errorf("writing the WorkloadEndpoint: %w", err)
	}
	if err := waitProgrammed(ctx, node, w); err != nil {
		return nil, err
	}
	if len(cfg.Serve) > 0 {
		bin := cfg.Binary
		if bin == "" {
			bin = self()
		}
		p, err := startDetached(filepath.Join(Dir(lab), "logs", "wl-"+cfg.Namespace+"-"+cfg.Name+".log"), w.NetNS, nil,
			bin, "lab", "serve", strings.Join(cfg.Serve, ","))
		if err != nil {
			return nil, err
		}
		w.Server = p
		if uerr := update(lab, func(s *State) error {
			q, _ := s.Workload(w.ID())
			*q = w
			return nil
		}); uerr != nil {
			return nil, uerr
		}
		if err := waitServing(ctx, w); err != nil {
			return nil, err
		}
	}
	return &w, nil
}

func assignAddrs(ctx context.Context, store datastore.Store, st *State, w *Workload, want []netip.Addr) error {
	alloc, err := ipam.New(store, ipam.Config{})
	if err != nil {
		return err
	}
	handle := "lab." + w.Namespace + "." + w.Name
	attrs := map[string]string{ipam.AttrNamespace: w.Namespace, ipam.AttrEndpoint: w.Name}
	num4, num6 := 1, 0
	if st.IPv6 {
		num6 = 1
	}
	for _, a := range want {
		if err := alloc.AssignIP(ctx, ipam.AssignIPArgs{Addr: a, Node: w.Node, Handle: handle, Attrs: attrs}); err != nil {
			return fmt.Errorf("assigning %s: %w", a, err)
		}
		if a.Is4() {
			w.IPv4, num4 = a, 0
		} else {
			w.IPv6, num6 = a, 0
		}
	}
	if num4+num6 == 0 {
		return nil
	}
	got, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: w.Node, Handle: handle, Num4: num4, Num6: num6, Attrs: attrs})
	if err != nil {
		return fmt.Errorf("assigning addresses: %w", err)
	}
	if len(got.IPv4) > 0 {
		w.IPv4 = got.IPv4[0]
	}
	if len(got.IPv6) > 0 {
		w.IPv6 = got.IPv6[0]
	}
	return nil
}

// plumb creates the workload's namespace and its veth to the node.
func plumb(node *Node, w Workload) error {
	h, err := newNS(w.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	host, err := nl.Open(netns.NamedPath(node.NetNS))
	if err != nil {
		return err
	}
	defer host.Close()
	hl, err := host.CreateVeth(nl.Veth{Name: w.Interface, MAC: hostMAC, PeerName: "eth0", PeerNS: h.NS()})
	if err != nil {
		return err
	}
	if err := host.LinkSetUp(hl.Index); err != nil {
		return err
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(eth0.Index); err != nil {
		return err
	}
	if w.IPv4.IsValid() {
		if err := h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(w.IPv4, 32)}); err != nil {
			return err
		}
		if err := h.RouteAdd(nl.Route{Dst: netip.PrefixFrom(gateway4, 32), LinkIndex: eth0.Index, Scope: nl.ScopeLink}); err != nil {
			return err
		}
		if err := h.RouteAdd(nl.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gateway4, LinkIndex: eth0.Index}); err != nil {
			return err
		}
		if err := h.NeighSet(nl.Neigh{LinkIndex: eth0.Index, IP: gateway4, MAC: hostMAC, Permanent: true}); err != nil {
			return err
		}
	}
	if w.IPv6.IsValid() {
		if err := h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(w.IPv6, 128), NoDAD: true}); err != nil {
			return err
		}
		if err := h.RouteAdd(nl.Route{Dst: netip.MustParsePrefix("::/0"), Gateway: gateway6, LinkIndex: eth0.Index}); err != nil {
			return err
		}
	}
	return nil
}

func wepManifest(w Workload) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: tabby.dev/v1\nkind: WorkloadEndpoint\nmetadata:\n  name: %s\n  namespace: %s\n", w.Name, w.Namespace)
	if len(w.Labels) > 0 {
		b.WriteString("  labels:\n")
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			fmt.Fprintf(&b, "    %q: %q\n", k, w.Labels[k])
		}
	}
	fmt.Fprintf(&b, "spec:\n  node: %s\n  orchestrator: lab\n  workload: %s\n  endpoint: eth0\n  interfaceName: %s\n  profiles: [%s]\n  ipNetworks:\n", w.Node, w.Name, w.Interface, profileName)
	if w.IPv4.IsValid() {
		fmt.Fprintf(&b, "  - %s/32\n", w.IPv4)
	}
	if w.IPv6.IsValid() {
		fmt.Fprintf(&b, "  - %s/128\n", w.IPv6)
	}
	return b.String()
}

func waitProgrammed(ctx context.Context, node *Node, w Workload) error {
	sc := agent.NewStatusClient(node.Socket)
	var last agent.EndpointStatus
	for {
		st, known, err := sc.Endpoint(ctx, w.Namespace, w.Name)
		if err == nil && known && st.Programmed {
			return nil
		}
		last = st
		select {
		case <-ctx.Done():
			return fmt.Errorf("endpoint %s not programmed by the agent of %s: %w (last: %+v)", w.ID(), node.Name, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitServing waits until the workload's echo servers answer on its
// loopback.
func waitServing(ctx context.Context, w Workload) error {
	for _, s := range w.Serve {
		proto, port, _ := strings.Cut(s, ":")
		for {
			err := echo(ctx, netns.NamedPath(w.NetNS), proto, net.JoinHostPort("127.0.0.1", port), 300*time.Millisecond)
			if err == nil {
				break
			}
			if !w.Server.Alive() {
				return fmt.Errorf("echo server of %s exited:\n%s", w.ID(), tail(w.Server.Log))
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("echo server %s of %s not answering: %v", s, w.ID(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
