// Package agent is the node agent: it follows the datastore, runs the
// policy engine for its node, and drives the dataplane managers (nftables,
// routes, links) that program the kernel. It holds the wiring, the run
// loop, health and metrics; the logic lives in the packages it wires.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nft"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
)

// ErrRestart is returned by Run when a setting that the dataplane is built
// with (interface prefix, route protocol, …) changed: the caller starts the
// agent again, which reconciles the kernel without flushing it.
var ErrRestart = errors.New("agent settings changed; restart needed")

// Agent programs one node. Create it with New and call Run once.
type Agent struct {
	cfg     Config
	store   datastore.Store
	log     *slog.Logger
	metrics *metrics
	board   *statusBoard

	engine *policy.Engine
	state  *localState

	kernel *nl.Handle
	// Built when the agent is first in sync, from the effective config.
	dpConfig v1.ConfigurationSpec
	nft      *nft.Renderer
	ns       *netns.NS       // the namespace programmed, when not our own
	rs       *policy.Ruleset // the engine's output, kept by applying Deltas
	links    *links.Manager
	routes   *routes.Manager
	table    *routeTable
	bgp      bgpDriver

	lastResync      time.Time // nftables
	lastRouteResync time.Time // routes and links
	// background runs the nftables resync, which reads the whole table
	// (~300 ms with 140,000 set elements), beside the loop, so that
	// changes are not held up meanwhile; resyncing is set while it runs.
	background sync.WaitGroup
	resyncing  atomic.Bool
	// received is the highest datastore revision the syncer reached;
	// a successful apply publishes it as Status.AppliedRevision.
	received int64

	// The last links and routes results, published until the next apply
	// of that part; linksRetry and routesRetry mean that apply left
	// something pending or failed, so the next apply runs it even if the
	// desired state did not change.
	linkStatus    map[string]links.Status
	routeProblems map[string]string
	linksRetry    bool
	routesRetry   bool
}

// New returns an agent for cfg that reads store. It does nothing until Run.
func New(cfg Config, store datastore.Store, log *slog.Logger) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	engine, err := policy.NewEngine(policy.Config{Node: cfg.NodeName})
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		store:   store,
		log:     log.With("node", cfg.NodeName),
		metrics: newMetrics(),
		board:   newStatusBoard(cfg.NodeName),
		engine:  engine,
		state:   newLocalState(cfg.NodeName),
	}
	a.board.bgp = a.bgpStatus
	return a, nil
}

// watchedPrefixes are what the agent follows: every API kind (the policy
// engine needs every endpoint and policy of the cluster), and the IPAM
// affinities of its own node.
func (a *Agent) watchedPrefixes() []datastore.Prefix {
	var out []datastore.Prefix
	for _, k := range v1.Kinds() {
		out = append(out, datastore.Prefix{Kind: k.Kind})
	}
	return append(out, datastore.Prefix{Kind: ipam.KindAffinity, Namespace: a.cfg.NodeName},
		datastore.Prefix{Kind: SyncMarkerKind})
}

// Run follows the datastore and programs the kernel until ctx is done. It
// programs nothing before it has read everything once (so a restart never
// removes state that is still wanted), then reconciles the kernel without
// flushing it. While the datastore is unreachable it keeps what it
// programmed last and reports not ready.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nsPath := a.cfg.NetNSPath
	if nsPath == "" {
		nsPath = "/proc/self/ns/net"
	}
	kernel, err := nl.Open(nsPath)
	if err != nil {
		return fmt.Errorf("opening the network namespace: %w", err)
	}
	defer kernel.Close()
	a.kernel = kernel
	defer a.closeDataplane()
	defer a.stopSpeaker()

	if err := a.startServers(ctx); err != nil {
		return err
	}
	go a.probeDatastore(ctx)
	if a.cfg.GCElection != nil {
		gc, err := ipam.NewGC(a.store, ipam.GCConfig{Logger: a.log})
		if err != nil {
			return err
		}
		go func() {
			if err := gc.Run(ctx, a.cfg.GCElection); err != nil && ctx.Err() == nil {
				a.log.Error("IPAM garbage collection stopped", "err", err)
			}
		}()
	}

	sync := newSyncer(a.store, a.watchedPrefixes(), a.log)
	go sync.run(ctx)

	applyTimer := time.NewTimer(time.Hour)
	applyTimer.Stop()
	applyPending := false
	schedule := func(d time.Duration) {
		if !applyPending {
			applyTimer.Reset(d)
			applyPending = true
		}
	}
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	inSync := false
	for {
		a.board.touch(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-sync.out:
			if !ok {
				return nil
			}
			a.metrics.datastoreErrors.Add(float64(b.errors))
			a.ingest(b)
			a.received = max(a.received, b.revision)
			if b.inSync && !inSync {
				inSync = true
				a.log.Info("in sync with the datastore")
				a.board.update(func(s *Status, _ map[policy.EndpointID]EndpointStatus) { s.InSync = true })
			}
			if inSync {
				schedule(a.cfg.ApplyDelay)
			}
		case <-applyTimer.C:
			applyPending = false
			retry, err := a.apply(ctx)
			if errors.Is(err, ErrRestart) {
				return err
			}
			if retry {
				schedule(a.cfg.RetryInterval)
			}
		case <-heartbeat.C:
			if inSync && a.nft != nil {
				a.resync(ctx, time.Now())
			}
		}
	}
}

// ingest feeds a batch to the engine and the local state.
func (a *Agent) ingest(b batch) {
	for _, u := range b.updates {
		a.state.apply(u)
		if u.obj != nil && !u.deleted {
			a.engine.OnUpdate(u.obj)
			continue
		}
		if info, ok := v1.LookupKind(u.key.Kind); ok {
			a.engine.OnDelete(info.Kind, u.key.Namespace, u.key.Name)
		}
	}
}

// due reports whether a periodic resync with interval d (nil: the
// default; 0: never) last done at last is due at now.
func due(d *v1.Duration, def time.Duration, last, now time.Time) bool {
	iv := def
	if d != nil {
		iv = d.Duration
	}
	return iv > 0 && now.Sub(last) >= iv
}

// startServers starts the health/metrics HTTP server and the status socket.
func (a *Agent) startServers(ctx context.Context) error {
	if a.cfg.HealthAddr != "" {
		l, err := net.Listen("tcp", a.cfg.HealthAddr)
		if err != nil {
			return fmt.Errorf("health address %s: %w", a.cfg.HealthAddr, err)
		}
		a.log.Info("serving health and metrics", "addr", l.Addr().String())
		go serve(ctx, l, a.board.healthHandler(a.metrics.registry), a.log)
	}
	if a.cfg.StatusSocket != "" {
		l, err := listenUnix(a.cfg.StatusSocket)
		if err != nil {
			return err
		}
		go serve(ctx, l, a.board.statusHandler(), a.log)
	}
	return nil
}

// probeDatastore checks that the datastore answers, for readiness.
func (a *Agent) probeDatastore(ctx context.Context) {
	t := time.NewTicker(a.cfg.ProbeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.ProbeInterval)
		_, err := a.store.Get(pctx, datastore.Key{Kind: "Configuration", Name: "default"})
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil || errors.Is(err, datastore.ErrNotFound)
		if !ok {
			a.metrics.datastoreErrors.Inc()
			a.log.Warn("the datastore does not answer", "err", err)
		}
		a.board.update(func(s *Status, _ map[policy.EndpointID]EndpointStatus) { s.DatastoreOK = ok })
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startupSettings are the settings the dataplane managers are built with;
// a change needs a restart.
func startupSettings(c v1.ConfigurationSpec) string {
	return fmt.Sprintf("%s|%d|%s|%s", c.InterfacePrefix, c.DeviceRouteProtocol, c.LogPrefix, c.DefaultEndpointToHostAction)
}

// apply brings the kernel to the desired state. It reports whether it
// should run again soon (something pending, or an error).
func (a *Agent) apply(ctx context.Context) (retry bool, err error) {
	start := time.Now()
	defer func() { a.metrics.applyDuration.Observe(time.Since(start).Seconds()) }()
	received := a.received // everything ingested so far is applied below

	if a.nft == nil {
		if err := a.buildDataplane(ctx); err != nil {
			return true, a.applyFailed(err)
		}
	} else if a.state.configDirty {
		if startupSettings(a.state.effectiveConfig()) != startupSettings(a.dpConfig) {
			a.log.Info("dataplane settings changed; restarting the agent")
			return false, ErrRestart
		}
	}
	a.state.configDirty = false

	var errs []error
	if err := a.applyPolicy(ctx); err != nil {
		errs = append(errs, err)
	}
	// Links and routes only depend on local state: a change elsewhere in
	// the cluster (a remote endpoint's labels) does not read the kernel
	// for them. Drift is the periodic resync's job.
	if a.state.linksDirty || a.linksRetry {
		var err error
		a.linkStatus, a.linksRetry, err = a.applyLinks(ctx)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if a.state.routesDirty || a.routesRetry {
		var err error
		a.routeProblems, a.routesRetry, err = a.applyRoutes(ctx)
		if err != nil {
			errs = append(errs, err)
		}
	}
	bretry, err := a.applyBGP(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	a.publish(a.linkStatus, a.routeProblems)
	if err := errors.Join(errs...); err != nil {
		return true, a.applyFailed(err)
	}
	a.board.update(func(s *Status, _ map[policy.EndpointID]EndpointStatus) {
		s.LastApplyError, s.AppliedRevision = "", received
	})
	return a.linksRetry || a.routesRetry || bretry, nil
}

func (a *Agent) applyFailed(err error) error {
	a.metrics.applyErrors.Inc()
	a.log.Error("applying the dataplane failed; will retry", "err", err)
	a.board.update(func(s *Status, _ map[policy.EndpointID]EndpointStatus) { s.LastApplyError = err.Error() })
	return err
}

// buildDataplane creates the managers from the effective configuration and
// reconciles the kernel with the whole desired state (no flush).
func (a *Agent) buildDataplane(ctx context.Context) error {
	cfg := a.state.effectiveConfig()
	lcfg := links.Config{InterfacePrefix: cfg.InterfacePrefix}
	lcfg.Defaults()
	lm, err := links.New(lcfg, a.kernel, a.log)
	if err != nil {
		return fmt.Errorf("links: %w", err)
	}
	rcfg := routes.Config{Protocol: cfg.DeviceRouteProtocol}
	rcfg.Defaults()
	rm, err := routes.New(rcfg, a.kernel, a.log)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	all, nat := a.state.poolCIDRs()
	ncfg := nft.Config{
		InterfacePrefix:  cfg.InterfacePrefix,
		EndpointToHost:   nft.EndpointToHostAction(cfg.DefaultEndpointToHostAction),
		LogPrefix:        cfg.LogPrefix,
		NATOutgoingPools: nat,
		AllPools:         all,
	}
	if cfg.NATOutgoingAddress != "" {
		if ncfg.NATOutgoingAddress, err = netip.ParseAddr(cfg.NATOutgoingAddress); err != nil {
			return fmt.Errorf("configuration natOutgoingAddress: %w", err)
		}
	}
	if a.cfg.NetNSPath != "" && a.ns == nil {
		if a.ns, err = netns.Open(a.cfg.NetNSPath); err != nil {
			return err
		}
	}
	renderer, err := nft.New(ncfg, a.ns, a.log)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	// The first apply is a full Resync: it reconciles whatever an earlier
	// run left in the kernel without flushing it.
	a.rs = a.engine.Ruleset()
	a.countRuleset()
	renderer.Set(a.rs)
	res, err := renderer.Resync(ctx)
	if err != nil {
		renderer.Close()
		return fmt.Errorf("nftables: %w", err)
	}
	a.log.Info("nftables reconciled", "repairs", res.Repairs, "writes", res.Writes, "took", res.Duration)
	a.links, a.routes, a.nft, a.dpConfig = lm, rm, renderer, cfg
	a.table = &routeTable{mgr: rm, learnedSet: a.cfg.DisableBGP}
	a.state.linksDirty, a.state.routesDirty, a.state.poolsDirty, a.state.bgpDirty = true, true, false, true
	a.lastResync, a.lastRouteResync = time.Now(), time.Now()
	return nil
}

func (a *Agent) closeDataplane() {
	a.background.Wait()
	if a.nft != nil {
		a.nft.Close()
	}
	if a.ns != nil {
		a.ns.Close()
	}
}

func (a *Agent) applyPolicy(ctx context.Context) error {
	if a.state.poolsDirty {
		all, nat := a.state.poolCIDRs()
		a.nft.SetPools(nat, all)
		a.state.poolsDirty = false
	}
	if d := a.engine.Flush(); !d.Empty() {
		a.rs.Apply(d)
		a.nft.Set(a.rs)
		a.countRuleset()
	}
	if _, err := a.nft.Apply(ctx); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// countRuleset updates the ruleset gauges; it walks every set, so it runs
// only when the ruleset changed.
func (a *Agent) countRuleset() {
	rs := a.rs
	a.metrics.endpoints.Set(float64(len(rs.Endpoints)))
	a.metrics.policies.Set(float64(len(rs.Policies) + len(rs.Profiles)))
	members := 0
	for _, s := range rs.IPSets {
		members += len(s.Members) + len(s.NamedPorts)
	}
	a.metrics.setMembers.Set(float64(members))
}

// applyLinks configures the host side of the local workloads' interfaces.
// It returns the status by interface name and whether any is pending.
func (a *Agent) applyLinks(ctx context.Context) (map[string]links.Status, bool, error) {
	if a.state.linksDirty {
		a.links.Set(a.state.desiredInterfaces())
		a.state.linksDirty = false
	}
	res, err := a.links.Apply(ctx)
	status := make(map[string]links.Status, len(res.Interfaces))
	pending := false
	for _, s := range res.Interfaces {
		status[s.Name] = s
		if !s.Configured {
			pending = true
		}
	}
	if err != nil {
		return status, true, fmt.Errorf("links: %w", err)
	}
	return status, pending, nil
}

// applyRoutes programs workload routes and block blackholes. It returns the
// problems by interface name and whether any route is pending.
func (a *Agent) applyRoutes(ctx context.Context) (map[string]string, bool, error) {
	if a.state.routesDirty {
		a.table.SetLocal(a.state.desiredRoutes())
		a.state.routesDirty = false
	}
	res, err := a.table.Apply(ctx)
	problems := map[string]string{}
	for _, s := range append(res.Pending, res.Refused...) {
		if s.Route.Dev != "" {
			problems[s.Route.Dev] = fmt.Sprintf("route %s: %s", s.Route.Dst, s.Reason)
		}
	}
	if len(res.Refused) > 0 {
		a.log.Warn("routes refused", "count", len(res.Refused), "first", res.Refused[0].Route.String(), "reason", res.Refused[0].Reason)
	}
	if err != nil {
		return problems, true, fmt.Errorf("routes: %w", err)
	}
	return problems, len(res.Pending) > 0, nil
}

// publish updates the per-endpoint status that the CNI plugin waits for.
func (a *Agent) publish(linkStatus map[string]links.Status, routeProblems map[string]string) {
	eps := a.state.sortedEndpoints()
	a.board.update(func(_ *Status, board map[policy.EndpointID]EndpointStatus) {
		clear(board)
		for _, w := range eps {
			id := endpointID(w)
			st := EndpointStatus{Revision: a.state.revisions[id]}
			ls := linkStatus[w.Spec.InterfaceName]
			switch {
			case w.Spec.InterfaceName == "":
				st.Problem = "the endpoint has no spec.interfaceName"
			case !ls.Present:
				st.Problem = fmt.Sprintf("interface %s does not exist", w.Spec.InterfaceName)
			case !ls.Configured:
				st.Problem = fmt.Sprintf("interface %s: %s", w.Spec.InterfaceName, ls.Problem)
			case routeProblems[w.Spec.InterfaceName] != "":
				st.Problem = routeProblems[w.Spec.InterfaceName]
			default:
				ns := a.nft.EndpointStatus(id)
				switch {
				case ns.Problem != "":
					st.Problem = "policy: " + ns.Problem
				case !ns.Programmed:
					st.Problem = "policy is not programmed yet"
				default:
					st.Programmed = true
				}
			}
			board[id] = st
		}
	})
}

// resync compares the whole kernel state with the desired state and repairs
// drift, each part at its refresh interval (Configuration
// nftablesRefreshInterval and routeRefreshInterval). The managers' Apply is
// already a full compare for routes; links and nftables have Verify and
// Resync.
func (a *Agent) resync(ctx context.Context, now time.Time) {
	if due(a.dpConfig.NftablesRefreshInterval, 90*time.Second, a.lastResync, now) && a.resyncing.CompareAndSwap(false, true) {
		a.lastResync = now
		renderer := a.nft
		a.background.Go(func() {
			defer a.resyncing.Store(false)
			res, err := renderer.Resync(ctx)
			if err != nil && ctx.Err() == nil {
				a.log.Error("nftables resync failed", "err", err)
			}
			if repairs := res.Repairs; repairs > 0 {
				a.metrics.resyncRepairs.WithLabelValues("nftables").Add(float64(repairs))
				a.log.Warn("nftables resync repaired drift", "repairs", repairs)
			}
		})
	}
	if !due(a.dpConfig.RouteRefreshInterval, 90*time.Second, a.lastRouteResync, now) {
		return
	}
	a.lastRouteResync = now
	res, err := a.table.Apply(ctx)
	if err != nil {
		a.log.Error("route resync failed", "err", err)
	}
	if n := res.Writes(); n > 0 {
		a.metrics.resyncRepairs.WithLabelValues("routes").Add(float64(n))
		a.log.Warn("route resync repaired drift", "repairs", n)
	}
	lres, err := a.links.Verify(ctx)
	if err != nil {
		a.log.Error("link resync failed", "err", err)
	}
	if lres.Writes > 0 {
		a.metrics.resyncRepairs.WithLabelValues("links").Add(float64(lres.Writes))
	}
}
