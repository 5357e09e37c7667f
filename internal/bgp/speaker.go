package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Speaker is the BGP speaker of one node: an embedded GoBGP server. Its
// desired state is set with SetPeers and SetAdvertised and pushed to GoBGP
// by Apply; the best paths it learns come out of Learned.
//
// GoBGP keeps route selection settings in package variables, so a process
// runs at most one Speaker at a time.
//
// Its methods are safe for concurrent use.
type Speaker struct {
	cfg     Config
	log     *slog.Logger
	srv     *server.BgpServer
	started time.Time
	cancel  context.CancelFunc
	stopped chan struct{} // closed by Stop
	workers sync.WaitGroup

	mu       sync.Mutex // guards peers, adverts
	peers    []Peer
	adverts  []Advertisement
	stopOnce sync.Once

	applyMu        sync.Mutex // serialises Apply; guards applied*
	appliedPeers   map[netip.Addr]Peer
	appliedAdverts map[netip.Prefix]Advertisement
	appliedEBGP    []string

	appliedOnce atomic.Bool // Apply has run

	learned *learner
	metrics *metrics
}

// Start validates cfg (after filling in its defaults), starts the GoBGP
// server and the goroutines that follow its best paths, and returns the
// running Speaker. It has no peers and advertises nothing until Apply.
// Stop it with Stop.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Speaker, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName)
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(gobgpHandler{log.With("component", "gobgp").Handler()}), lvl))
	go srv.Serve()
	if err := srv.StartBgp(ctx, globalRequest(cfg)); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("bgp: starting GoBGP: %w", err)
	}

	wctx, cancel := context.WithCancel(context.Background())
	s := &Speaker{
		cfg:            cfg,
		log:            log,
		srv:            srv,
		started:        time.Now(),
		cancel:         cancel,
		stopped:        make(chan struct{}),
		appliedPeers:   map[netip.Addr]Peer{},
		appliedAdverts: map[netip.Prefix]Advertisement{},
		metrics:        newMetrics(),
	}
	s.learned = newLearner(srv, s.metrics)
	fail := func(err error) (*Speaker, error) {
		cancel()
		s.workers.Wait()
		srv.Stop()
		return nil, err
	}
	policy, assign := exportPolicyRequests()
	initial := ebgpNeighborSetRequest(nil, cfg.ASNumber)
	if err := srv.AddDefinedSet(ctx, initial); err != nil {
		return fail(fmt.Errorf("bgp: defining the eBGP neighbor set: %w", err))
	}
	s.appliedEBGP = initial.DefinedSet.List
	if err := srv.AddPolicy(ctx, policy); err != nil {
		return fail(fmt.Errorf("bgp: adding the export policy: %w", err))
	}
	if err := srv.SetPolicyAssignment(ctx, assign); err != nil {
		return fail(fmt.Errorf("bgp: assigning the export policy: %w", err))
	}
	if err := s.learned.watch(wctx); err != nil {
		return fail(fmt.Errorf("bgp: watching best paths: %w", err))
	}
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.learned.run(wctx)
	}()
	log.Info("BGP speaker started", "as", cfg.ASNumber, "routerID", cfg.RouterID, "port", cfg.ListenPort,
		"gracefulRestart", cfg.GracefulRestart.Enabled)
	return s, nil
}

// Stop stops the speaker. With graceful restart enabled it closes its
// sessions without sending NOTIFICATIONs, so that peers keep its routes
// for the restart time while the agent restarts; otherwise peers withdraw
// them at once. Stop is idempotent.
func (s *Speaker) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.applyMu.Lock() // no Apply half done
		defer s.applyMu.Unlock()
		close(s.stopped)
		s.cancel()
		s.workers.Wait()
		err = s.srv.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: s.cfg.GracefulRestart.Enabled})
		// Stop also ends GoBGP's BFD server; its own StopBgp call fails
		// (already stopped) and gobgpHandler drops that log line.
		s.srv.Stop()
		s.log.Info("BGP speaker stopped", "graceful", s.cfg.GracefulRestart.Enabled)
	})
	if err != nil {
		return fmt.Errorf("bgp: stopping: %w", err)
	}
	return nil
}

// Config returns the speaker's configuration, with defaults filled in.
func (s *Speaker) Config() Config { return s.cfg }

// SetPeers replaces the desired sessions. It does not touch GoBGP; Apply
// does. The slice is copied. It is idempotent and cheap.
func (s *Speaker) SetPeers(peers []Peer) {
	s.mu.Lock()
	s.peers = slices.Clone(peers)
	s.mu.Unlock()
}

// SetAdvertised replaces the prefixes the node originates. It does not
// touch GoBGP; Apply does. The slice is copied. It is idempotent and
// cheap.
func (s *Speaker) SetAdvertised(adverts []Advertisement) {
	s.mu.Lock()
	s.adverts = slices.Clone(adverts)
	s.mu.Unlock()
}

// Apply makes GoBGP's sessions and originated paths match the desired
// state: it adds missing peers, deletes peers that are not desired,
// re-creates peers whose settings changed (which resets their session),
// and adds, updates and withdraws originated paths. It compares against
// what GoBGP holds, so calling it again with nothing changed makes no
// change. Invalid peers and prefixes are skipped and reported in the
// returned error; everything else is still applied. Applies run one at a
// time.
func (s *Speaker) Apply(ctx context.Context) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	select {
	case <-s.stopped:
		return errors.New("bgp: speaker is stopped")
	default:
	}
	s.mu.Lock()
	peers, adverts := s.peers, s.adverts
	s.mu.Unlock()

	errs := s.applyPeersLocked(ctx, peers)
	errs = append(errs, s.applyPathsLocked(ctx, adverts)...)
	s.appliedOnce.Store(true)
	s.learned.notify() // the set of peers decides whether learned routes are synced
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: apply: %w", err)
	}
	return nil
}

func (s *Speaker) applyPeersLocked(ctx context.Context, peers []Peer) []error {
	var errs []error
	desired := map[netip.Addr]Peer{}
	for _, p := range peers {
		if err := p.validate(s.cfg); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := desired[p.Address]; dup {
			errs = append(errs, fmt.Errorf("peer %s: more than one session for the address", p.Address))
			continue
		}
		desired[p.Address] = p
	}

	// The eBGP neighbor set first, so that new eBGP sessions start with
	// the export policy in force.
	if err := s.applyEBGPSetLocked(ctx, slices.Collect(maps.Values(desired))); err != nil {
		errs = append(errs, err)
	}

	have := map[netip.Addr]bool{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			have[a] = true
		}
	})
	if err != nil {
		return append(errs, fmt.Errorf("listing peers: %w", err))
	}
	for a := range have {
		if d, ok := desired[a]; ok && s.appliedPeers[a] == d {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("deleting peer %s: %w", a, err))
			continue
		}
		delete(s.appliedPeers, a)
		delete(have, a)
		s.log.Info("BGP peer deleted", "peer", a)
	}
	for _, a := range slices.SortedFunc(maps.Keys(desired), netip.Addr.Compare) {
		p := desired[a]
		if have[a] {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(s.cfg, p)}); err != nil {
			errs = append(errs, fmt.Errorf("adding peer %s: %w", a, err))
			continue
		}
		s.appliedPeers[a] = p
		s.log.Info("BGP peer added", "peer", a, "as", p.ASNumber, "type", p.Type.String(), "name", p.Name, "passive", p.Passive)
	}
	for a := range s.appliedPeers {
		if _, ok := desired[a]; !ok {
			delete(s.appliedPeers, a)
		}
	}
	return errs
}

// applyEBGPSetLocked updates the neighbor set of eBGP peers that the
// export policy matches. The set is changed in place (entries added and
// removed): GoBGP's policy statements keep pointing at the set object
// they were made with, so replacing the set would leave them behind.
func (s *Speaker) applyEBGPSetLocked(ctx context.Context, peers []Peer) error {
	want := ebgpNeighborSetRequest(peers, s.cfg.ASNumber).DefinedSet.List
	var add, del []string
	for _, a := range want {
		if !slices.Contains(s.appliedEBGP, a) {
			add = append(add, a)
		}
	}
	for _, a := range s.appliedEBGP {
		if !slices.Contains(want, a) {
			del = append(del, a)
		}
	}
	set := func(list []string) *api.DefinedSet {
		return &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: ebgpNeighborSet, List: list}
	}
	if len(add) > 0 {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set(add)}); err != nil {
			return fmt.Errorf("adding %v to the eBGP neighbor set: %w", add, err)
		}
		s.appliedEBGP = append(s.appliedEBGP, add...)
	}
	if len(del) > 0 {
		if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set(del)}); err != nil {
			return fmt.Errorf("removing %v from the eBGP neighbor set: %w", del, err)
		}
		s.appliedEBGP = slices.DeleteFunc(s.appliedEBGP, func(a string) bool { return slices.Contains(del, a) })
	}
	return nil
}

func (s *Speaker) applyPathsLocked(ctx context.Context, adverts []Advertisement) []error {
	var errs []error
	desired := map[netip.Prefix]Advertisement{}
	for _, a := range adverts {
		if err := a.validate(s.cfg); err != nil {
			errs = append(errs, err)
			continue
		}
		if d, ok := desired[a.Prefix]; ok {
			a.Elevated = a.Elevated || d.Elevated
		}
		desired[a.Prefix] = a
	}

	// What GoBGP originates now.
	have := map[netip.Prefix]bool{}
	for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f},
			func(nlri bgp.NLRI, paths []*apiutil.Path) {
				pfx, ok := pathPrefix(nlri)
				if !ok {
					return
				}
				for _, p := range paths {
					if isLocal(p) {
						have[pfx] = true
					}
				}
			})
		if err != nil {
			return append(errs, fmt.Errorf("listing paths: %w", err))
		}
	}

	var withdraw []*apiutil.Path
	for pfx := range have {
		if _, ok := desired[pfx]; ok {
			continue
		}
		p, err := apiPath(s.cfg, Advertisement{Prefix: pfx}, true)
		if err != nil {
			// The node's address of this family is gone; send the
			// withdrawal with an unspecified next hop.
			p, err = apiPath(Config{IPv4Address: netip.IPv4Unspecified(), IPv6Address: netip.IPv6Unspecified()}, Advertisement{Prefix: pfx}, true)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		withdraw = append(withdraw, p)
	}
	if len(withdraw) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: withdraw}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %d prefixes: %w", len(withdraw), err))
		} else {
			for _, p := range withdraw {
				pfx, _ := pathPrefix(p.Nlri)
				delete(s.appliedAdverts, pfx)
			}
			s.log.Info("BGP prefixes withdrawn", "count", len(withdraw))
		}
	}

	var add []*apiutil.Path
	var added []Advertisement
	for _, pfx := range slices.SortedFunc(maps.Keys(desired), compareAddrPrefix) {
		a := desired[pfx]
		if have[pfx] && s.appliedAdverts[pfx] == a {
			continue
		}
		p, err := apiPath(s.cfg, a, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add = append(add, p)
		added = append(added, a)
	}
	if len(add) > 0 {
		// On failure GoBGP reports only the last error and not which
		// paths it added; none is recorded as applied, so the next Apply
		// adds them again (re-adding a path replaces it).
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			errs = append(errs, fmt.Errorf("advertising %d prefixes: %w", len(add), err))
		} else {
			for _, a := range added {
				s.appliedAdverts[a.Prefix] = a
			}
			s.log.Info("BGP prefixes advertised", "count", len(added))
		}
	}
	for pfx := range s.appliedAdverts {
		if _, ok := desired[pfx]; !ok {
			delete(s.appliedAdverts, pfx)
		}
	}
	s.metrics.advertised.Store(int64(len(s.appliedAdverts)))
	return errs
}

// isLocal reports whether a path is originated by this node.
func isLocal(p *apiutil.Path) bool { return !p.PeerAddress.IsValid() }

// gobgpHandler passes GoBGP's log records on, except the one its Stop
// logs when the server was already stopped by StopBgp.
type gobgpHandler struct{ slog.Handler }

func (h gobgpHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "failed to stop BGP server" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h gobgpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return gobgpHandler{h.Handler.WithAttrs(as)}
}

func (h gobgpHandler) WithGroup(name string) slog.Handler {
	return gobgpHandler{h.Handler.WithGroup(name)}
}
