package bgp

import (
	"context"
	"fmt"
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

// Learned is a snapshot of the routes the speaker has learned.
type Learned struct {
	// Routes are the routes to install: the best paths learned from peers
	// (all equal-cost best next hops of a prefix, for ECMP) that pass the
	// safety filter (FilterLearned), sorted by prefix. A prefix whose best
	// path is one the node originates is not learned.
	Routes []Route
	// Rejected are best paths that the safety filter keeps out.
	Rejected []Rejected
	// Version grows with every change of the learned best paths.
	Version uint64
	// Synced is false while, with graceful restart enabled, the speaker
	// has just started and its peers have not yet all sent their routes
	// (End-of-RIB), for at most GracefulRestart.DeferralTime. Until then
	// Routes is incomplete, and deleting kernel routes that are not in it
	// would cut traffic that the previous run's routes still carry.
	Synced bool
}

// Learned returns the learned routes, filtered by the safety filter
// against the node's interface addresses (Config.LocalAddrs) and the
// prefixes it advertises. It fails only if the addresses cannot be read.
func (s *Speaker) Learned(ctx context.Context) (Learned, error) {
	local, err := s.cfg.LocalAddrs()
	if err != nil {
		return Learned{}, fmt.Errorf("bgp: reading local addresses: %w", err)
	}
	s.mu.Lock()
	own := make([]netip.Prefix, 0, len(s.adverts))
	for _, a := range s.adverts {
		own = append(own, a.Prefix)
	}
	s.mu.Unlock()

	synced := s.synced(ctx)
	routes, version := s.learned.snapshot()
	l := Learned{Version: version, Synced: synced}
	l.Routes, l.Rejected = FilterLearned(routes, Protected{Local: local, Own: own})
	s.metrics.learned.Store(int64(len(l.Routes)))
	s.metrics.rejected.Store(int64(len(l.Rejected)))
	return l, nil
}

// Changes returns a channel that receives a value when Learned may
// return something new: the best paths changed, a session changed state
// or a peer finished sending its routes. Changes are coalesced; the
// channel has one consumer.
func (s *Speaker) Changes() <-chan struct{} { return s.learned.changes }

// synced reports whether the initial exchange of routes is over; see
// Learned.Synced. Once true it stays true.
func (s *Speaker) synced(ctx context.Context) bool {
	if !s.cfg.GracefulRestart.Enabled || s.learned.synced.Load() {
		return true
	}
	if time.Since(s.started) >= s.cfg.GracefulRestart.DeferralTime {
		s.learned.synced.Store(true)
		return true
	}
	all := true
	n := 0
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		n++
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			all = false
			return
		}
		for _, af := range p.GetAfiSafis() {
			st := af.GetMpGracefulRestart().GetState()
			if st.GetReceived() && !st.GetEndOfRibReceived() {
				all = false
			}
		}
	})
	if err != nil || !all {
		return false
	}
	if n == 0 && !s.appliedOnce.Load() {
		// No peers because Apply has not run yet.
		return false
	}
	// The learner follows GoBGP's events a little behind; read every best
	// path now, after the End-of-RIBs, so that the first snapshot that
	// counts as synced holds all the peers' routes.
	s.learned.refresh(true)
	s.learned.synced.Store(true)
	return true
}

// installed records that the routes of version v are in the kernel, for
// the route install latency metric.
func (s *Speaker) installed(v uint64) { s.learned.installed(v) }

// learner follows GoBGP's best paths. GoBGP's watch callbacks mark
// prefixes dirty; a worker reads their current best paths back with
// ListPath (so the result never depends on how GoBGP words its events)
// and keeps the learned routes.
type learner struct {
	srv     *server.BgpServer
	metrics *metrics
	kick    chan struct{} // to the worker, coalesced
	changes chan struct{} // to the consumer, coalesced
	synced  atomic.Bool

	refreshMu sync.Mutex // serialises refresh

	mu      sync.Mutex
	dirty   map[netip.Prefix]time.Time // prefix → time of its first unprocessed event
	full    bool                       // list everything next time
	routes  map[netip.Prefix]Route     // learned best paths, unfiltered
	version uint64
	pending []pendingChange // changes not yet installed, oldest first
}

// maxPendingChanges bounds the changes kept for the install latency
// metric when nothing installs them.
const maxPendingChanges = 1024

type pendingChange struct {
	version uint64
	at      time.Time
}

func newLearner(srv *server.BgpServer, m *metrics) *learner {
	return &learner{
		srv:     srv,
		metrics: m,
		kick:    make(chan struct{}, 1),
		changes: make(chan struct{}, 1),
		dirty:   map[netip.Prefix]time.Time{},
		routes:  map[netip.Prefix]Route{},
	}
}

// watch subscribes to GoBGP's events until ctx is done.
func (l *learner) watch(ctx context.Context) error {
	return l.srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnBestPath: func(paths []*apiutil.Path, ts time.Time) {
			l.mu.Lock()
			for _, p := range paths {
				if pfx, ok := pathPrefix(p.Nlri); ok {
					if _, seen := l.dirty[pfx]; !seen {
						l.dirty[pfx] = ts
					}
				}
			}
			l.mu.Unlock()
			signal(l.kick)
		},
		// A peer that goes down gracefully has its paths marked stale, and
		// when it is back its fresh paths replace the stale ones, without
		// best path events: read everything again when a session changes
		// state and when a peer has sent all its routes (End-of-RIB).
		OnPeerUpdate: func(*apiutil.WatchEventMessage_PeerEvent, time.Time) {
			l.metrics.peerEvent()
			l.refreshAllSoon()
		},
		OnPathEor: func(*apiutil.Path, time.Time) { l.refreshAllSoon() },
	}, server.WatchBestPath(true), server.WatchPeer(), server.WatchEor(false))
}

// refreshAllSoon has the worker read every best path again, and tells
// the consumer to look again.
func (l *learner) refreshAllSoon() {
	l.mu.Lock()
	l.full = true
	l.mu.Unlock()
	signal(l.kick)
	l.notify()
}

// notify tells the consumer to look again.
func (l *learner) notify() { signal(l.changes) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run refreshes the learned routes after each burst of events, and
// lists everything every DefaultLearnedResync in case an event was missed.
func (l *learner) run(ctx context.Context) {
	resync := time.NewTicker(DefaultLearnedResync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-resync.C:
			l.mu.Lock()
			l.full = true
			l.mu.Unlock()
		}
		// Let a burst of events gather.
		time.Sleep(defaultLearnedDebounce)
		l.refresh(false)
	}
}

// refresh reads the best paths of the dirty prefixes (or of all, with
// all or after too many events) back from GoBGP. Refreshes run one at a
// time.
func (l *learner) refresh(all bool) {
	l.refreshMu.Lock()
	defer l.refreshMu.Unlock()
	l.mu.Lock()
	dirty, full := l.dirty, l.full || all
	l.dirty, l.full = map[netip.Prefix]time.Time{}, false
	l.mu.Unlock()
	if len(dirty) > largeRefreshPrefixesCutoff {
		full = true
	}
	if !full && len(dirty) == 0 {
		return
	}

	found := map[netip.Prefix]Route{}
	collect := func(nlri bgp.NLRI, paths []*apiutil.Path) {
		pfx, ok := pathPrefix(nlri)
		if !ok {
			return
		}
		if r, ok := bestRoute(pfx, paths); ok {
			found[pfx] = r
		}
	}
	for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		req := apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f}
		if !full {
			for pfx := range dirty {
				if pfx.Addr().Is4() == (f == bgp.RF_IPv4_UC) {
					req.Prefixes = append(req.Prefixes, &apiutil.LookupPrefix{Prefix: pfx.String(), LookupOption: apiutil.LOOKUP_EXACT})
				}
			}
			if len(req.Prefixes) == 0 {
				continue
			}
		}
		if err := l.srv.ListPath(req, collect); err != nil {
			// The server is stopping; the next refresh starts over.
			l.mu.Lock()
			l.full = true
			l.mu.Unlock()
			return
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	var oldest time.Time
	update := func(pfx netip.Prefix, at time.Time) {
		old, had := l.routes[pfx]
		r, has := found[pfx]
		switch {
		case has && (!had || !sameRoute(old, r)):
			l.routes[pfx] = r
		case !has && had:
			delete(l.routes, pfx)
		default:
			return
		}
		changed = true
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if full {
		now := time.Now()
		for pfx := range l.routes {
			update(pfx, timeOr(dirty[pfx], now))
		}
		for pfx := range found {
			update(pfx, timeOr(dirty[pfx], now))
		}
	} else {
		for pfx, at := range dirty {
			update(pfx, at)
		}
	}
	if changed {
		l.version++
		if len(l.pending) < maxPendingChanges {
			l.pending = append(l.pending, pendingChange{l.version, oldest})
		}
		signal(l.changes)
	}
}

func timeOr(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// bestRoute turns the paths of a prefix into a learned route: the next
// hops of every best path (the first, and with multipath every path equal
// to it). A prefix whose best path is local is not learned.
func bestRoute(pfx netip.Prefix, paths []*apiutil.Path) (Route, bool) {
	if len(paths) == 0 || isLocal(paths[0]) || !paths[0].Best {
		return Route{}, false
	}
	r := Route{Prefix: pfx}
	for _, p := range paths {
		if !p.Best || isLocal(p) || p.Withdrawal || p.IsNexthopInvalid {
			continue
		}
		nh := pathNextHop(p)
		if !nh.IsValid() {
			continue
		}
		r.NextHops = append(r.NextHops, nh.Unmap())
		r.Stale = r.Stale || p.Stale
	}
	if len(r.NextHops) == 0 {
		return Route{}, false
	}
	slices.SortFunc(r.NextHops, netip.Addr.Compare)
	r.NextHops = slices.Compact(r.NextHops)
	return r, true
}

func sameRoute(a, b Route) bool {
	return a.Prefix == b.Prefix && a.Stale == b.Stale && slices.Equal(a.NextHops, b.NextHops)
}

// snapshot returns the learned routes, sorted by prefix, and their
// version.
func (l *learner) snapshot() ([]Route, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Route, 0, len(l.routes))
	for _, pfx := range slices.SortedFunc(maps.Keys(l.routes), compareAddrPrefix) {
		out = append(out, l.routes[pfx])
	}
	return out, l.version
}

// installed observes the install latency of every change up to version
// v.
func (l *learner) installed(v uint64) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for ; i < len(l.pending) && l.pending[i].version <= v; i++ {
		if at := l.pending[i].at; !at.IsZero() {
			l.metrics.installLatency.Observe(now.Sub(at).Seconds())
		}
	}
	l.pending = slices.Delete(l.pending, 0, i)
}
