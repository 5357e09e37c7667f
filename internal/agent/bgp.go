package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/bgp"
	"github.com/tabbynet/tabby/internal/bgp/nodeaddr"
	"github.com/tabbynet/tabby/internal/datastore"
)

// AnnotationRoutePriority on a WorkloadEndpoint set to "elevated" makes its
// node advertise the endpoint's addresses with elevated priority, so that
// its route wins over the same prefix from another node (live migration:
// the new host's route must win until the old one is gone).
const AnnotationRoutePriority = "tabby.dev/route-priority"

func elevated(w *v1.WorkloadEndpoint) bool {
	return w != nil && w.Metadata.Annotations[AnnotationRoutePriority] == "elevated"
}

// bgpDriver runs the node's BGP speaker from the datastore's Nodes,
// BGPConfigurations and BGPPeers, and installs what it learns through the
// agent's route table.
type bgpDriver struct {
	// current is the running speaker for readers outside the agent loop
	// (metrics, the status socket); speaker is the loop's own copy.
	current    atomic.Pointer[bgp.Speaker]
	speaker    *bgp.Speaker
	speakerCfg bgp.Config
	stopInst   context.CancelFunc
	instDone   chan struct{}
	registered bool // the agent wrote (or found) its Node's addresses
}

// applyBGP brings the speaker in line with the datastore. It reports
// whether to retry soon.
func (a *Agent) applyBGP(ctx context.Context) (bool, error) {
	if a.cfg.DisableBGP || !a.state.bgpDirty {
		return false, nil
	}
	me := a.state.nodes[a.cfg.NodeName]
	if me == nil || me.Spec.BGP == nil || (me.Spec.BGP.IPv4Address == "" && me.Spec.BGP.IPv6Address == "") {
		if a.bgp.registered {
			return false, nil // registered but not back through the watch yet
		}
		if err := a.registerNode(ctx, me); err != nil {
			return true, fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
		}
		a.bgp.registered = true
		return false, nil
	}
	eff := v1.EffectiveBGPConfiguration(a.state.bgpConfigs["default"], a.state.bgpConfigs[a.state.nodeConfigName()])
	scfg, err := speakerConfig(me, eff)
	if err != nil {
		return false, err
	}
	if a.bgp.speaker == nil || !sameSpeakerConfig(a.bgp.speakerCfg, scfg) {
		if err := a.restartSpeaker(ctx, scfg); err != nil {
			return true, err
		}
	}
	nodes := make([]v1.Node, 0, len(a.state.nodes))
	for _, name := range sortedKeys(a.state.nodes) {
		nodes = append(nodes, *a.state.nodes[name])
	}
	peers := make([]v1.BGPPeer, 0, len(a.state.bgpPeers))
	for _, name := range sortedKeys(a.state.bgpPeers) {
		peers = append(peers, *a.state.bgpPeers[name])
	}
	ps, perr := bgp.Peers(*me, nodes, eff, peers)
	if perr != nil {
		a.log.Warn("some BGP peers are invalid", "err", perr)
	}
	a.bgp.speaker.SetPeers(ps)
	a.bgp.speaker.SetAdvertised(a.advertisements(eff))
	if err := a.bgp.speaker.Apply(ctx); err != nil {
		return true, fmt.Errorf("bgp: %w", err)
	}
	a.state.bgpDirty = false
	return false, nil
}

// speakerConfig derives the speaker's settings from the node's resource.
func speakerConfig(me *v1.Node, eff v1.BGPConfigurationSpec) (bgp.Config, error) {
	cfg := bgp.Config{NodeName: me.Metadata.Name, GracefulRestart: bgp.GracefulRestart{Enabled: true}}
	if eff.ASNumber != nil {
		cfg.ASNumber = uint32(*eff.ASNumber)
	}
	if me.Spec.BGP.ASNumber != nil {
		cfg.ASNumber = uint32(*me.Spec.BGP.ASNumber)
	}
	if eff.ListenPort != 0 {
		cfg.ListenPort = int(eff.ListenPort)
	}
	var err error
	if cfg.IPv4Address, err = nodeAddress(me.Spec.BGP.IPv4Address); err != nil {
		return cfg, fmt.Errorf("node %s: spec.bgp.ipv4Address: %w", me.Metadata.Name, err)
	}
	if cfg.IPv6Address, err = nodeAddress(me.Spec.BGP.IPv6Address); err != nil {
		return cfg, fmt.Errorf("node %s: spec.bgp.ipv6Address: %w", me.Metadata.Name, err)
	}
	cfg.Defaults()
	return cfg, cfg.Validate()
}

func nodeAddress(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

func sameSpeakerConfig(a, b bgp.Config) bool {
	return a.ASNumber == b.ASNumber && a.IPv4Address == b.IPv4Address && a.IPv6Address == b.IPv6Address &&
		a.RouterID == b.RouterID && a.ListenPort == b.ListenPort
}

// restartSpeaker stops the running speaker, if any, and starts one with
// cfg, with an installer that feeds learned routes to the route table.
func (a *Agent) restartSpeaker(ctx context.Context, cfg bgp.Config) error {
	a.stopSpeaker()
	sp, err := bgp.Start(ctx, cfg, a.log)
	if err != nil {
		return fmt.Errorf("starting the BGP speaker: %w", err)
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	// The agent's own route resync (routeRefreshInterval) repairs the
	// table; the installer only installs what BGP learns.
	inst := &bgp.Installer{Speaker: sp, Table: a.table, Log: a.log, Resync: -1}
	go func() {
		defer close(done)
		if err := inst.Run(ictx); err != nil {
			a.log.Error("installing learned routes stopped", "err", err)
		}
	}()
	if a.bgp.speaker == nil {
		// The collector reads whichever speaker runs; register it once.
		_ = a.metrics.registry.Register(speakerCollector{a})
	}
	a.bgp.speaker, a.bgp.speakerCfg, a.bgp.stopInst, a.bgp.instDone = sp, cfg, cancel, done
	a.bgp.current.Store(sp)
	return nil
}

func (a *Agent) stopSpeaker() {
	if a.bgp.speaker == nil {
		return
	}
	a.bgp.current.Store(nil)
	a.bgp.stopInst()
	<-a.bgp.instDone
	// A fresh context: the agent's may be done, and GoBGP needs one to
	// stop (graceful restart keeps the peers' routes meanwhile).
	if err := a.bgp.speaker.Stop(context.Background()); err != nil {
		a.log.Warn("stopping the BGP speaker", "err", err)
	}
	a.bgp.speaker = nil
}

// advertisements are the prefixes this node originates: its affine blocks
// (of pools that are exported), the addresses of local workloads outside
// them (borrowed addresses, moved workloads), and the extra prefixes.
func (a *Agent) advertisements(eff v1.BGPConfigurationSpec) []bgp.Advertisement {
	var out []bgp.Advertisement
	blocks := a.state.sortedBlocks()
	for _, b := range blocks {
		if a.state.exported(b) {
			out = append(out, bgp.Advertisement{Prefix: b})
		}
	}
	for _, w := range a.state.sortedEndpoints() {
		for _, p := range endpointPrefixes(w) {
			inBlock := slices.ContainsFunc(blocks, func(b netip.Prefix) bool { return b.Contains(p.Addr()) })
			if !inBlock || elevated(w) {
				out = append(out, bgp.Advertisement{Prefix: p, Elevated: elevated(w)})
			}
		}
	}
	for _, s := range eff.ExtraPrefixes {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, bgp.Advertisement{Prefix: p.Masked()})
		}
	}
	return out
}

// registerNode writes the node's BGP addresses, found by autodetection,
// into its Node resource (creating it if needed), as Calico's node does.
func (a *Agent) registerNode(ctx context.Context, me *v1.Node) error {
	node := &v1.Node{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Node"}}
	if me != nil {
		cp := *me
		node = &cp
	}
	node.Metadata.Name = a.cfg.NodeName
	node.Metadata.ResourceVersion = ""
	if node.Spec.BGP == nil {
		node.Spec.BGP = &v1.NodeBGPSpec{}
	} else {
		b := *node.Spec.BGP
		node.Spec.BGP = &b
	}
	for _, f := range []struct {
		method string
		fam    nodeaddr.Family
		dst    *string
	}{{a.cfg.IPv4Autodetection, nodeaddr.IPv4, &node.Spec.BGP.IPv4Address}, {a.cfg.IPv6Autodetection, nodeaddr.IPv6, &node.Spec.BGP.IPv6Address}} {
		if f.method == "none" || *f.dst != "" {
			continue
		}
		m, err := nodeaddr.ParseMethod(f.method)
		if err != nil {
			return err
		}
		p, err := nodeaddr.Autodetect(m, f.fam)
		if err != nil {
			return fmt.Errorf("autodetecting the IPv%d address with %q: %w", int(f.fam), f.method, err)
		}
		*f.dst = p.String()
		a.log.Info("autodetected the node address", "family", int(f.fam), "prefix", p.String())
	}
	if node.Spec.BGP.IPv4Address == "" && node.Spec.BGP.IPv6Address == "" {
		return errors.New("no BGP address: set spec.bgp on the Node or an autodetection method")
	}
	v1.SetDefaults(node)
	if err := v1.Validate(node); err != nil {
		return err
	}
	_, err := datastore.NewClient(a.store).Apply(ctx, []v1.Object{node}, datastore.ApplyOptions{})
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// speakerCollector exposes the running speaker's metrics, whichever
// speaker that is.
type speakerCollector struct{ a *Agent }

func (c speakerCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c speakerCollector) Collect(ch chan<- prometheus.Metric) {
	if sp := c.a.currentSpeaker(); sp != nil {
		sp.Collector().Collect(ch)
	}
}

func (a *Agent) currentSpeaker() *bgp.Speaker { return a.bgp.current.Load() }

// bgpStatus lists the sessions of the running speaker.
func (a *Agent) bgpStatus(ctx context.Context) ([]BGPPeerStatus, error) {
	sp := a.currentSpeaker()
	if sp == nil {
		return []BGPPeerStatus{}, nil
	}
	st, err := sp.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]BGPPeerStatus, 0, len(st))
	for _, p := range st {
		out = append(out, BGPPeerStatus{
			Peer: netip.AddrPortFrom(p.Address, p.Port).String(), ASNumber: p.ASNumber, Type: p.Type.String(),
			Name: p.Name, State: p.State, Uptime: p.Uptime,
			RoutesReceived: int(p.RoutesReceived), RoutesAdvertised: int(p.RoutesAdvertised),
		})
	}
	return out, nil
}
