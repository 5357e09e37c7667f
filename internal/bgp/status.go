package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/prometheus/client_golang/prometheus"
)

// PeerStatus is the state of one session, for `tabby node status`.
type PeerStatus struct {
	Address  netip.Addr
	Port     uint16
	ASNumber uint32
	Type     PeerType
	Name     string
	Passive  bool
	// State is the BGP FSM state: Idle, Connect, Active, OpenSent,
	// OpenConfirm or Established.
	State string
	// Uptime is how long the session has been established; 0 when it is
	// not.
	Uptime time.Duration
	// RoutesReceived counts the paths received from the peer (IPv4 and
	// IPv6), RoutesAccepted those accepted by import policy, and
	// RoutesAdvertised those sent to it.
	RoutesReceived   int
	RoutesAccepted   int
	RoutesAdvertised int
	// GracefulRestart is set while the peer restarts gracefully and its
	// routes are kept as stale.
	GracefulRestart bool
	// Info says why the session went down last, if it did.
	Info string
}

// Status returns the state of every session, sorted by address. Counting
// advertised routes walks the routing table per peer, so Status is meant
// for people, not for tight loops.
func (s *Speaker) Status(ctx context.Context) ([]PeerStatus, error) {
	s.applyMu.Lock()
	applied := make(map[netip.Addr]Peer, len(s.appliedPeers))
	for a, p := range s.appliedPeers {
		applied[a] = p
	}
	s.applyMu.Unlock()

	var out []PeerStatus
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(ap *api.Peer) {
		a, err := netip.ParseAddr(ap.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		p := applied[a]
		st := PeerStatus{
			Address:         a,
			Port:            p.port(),
			ASNumber:        ap.GetConf().GetPeerAsn(),
			Type:            p.Type,
			Name:            p.Name,
			Passive:         p.Passive,
			State:           sessionState(ap.GetState().GetSessionState()),
			GracefulRestart: ap.GetGracefulRestart().GetPeerRestarting(),
			Info:            ap.GetState().GetDisconnectMessage(),
		}
		if st.State == "Established" {
			if up := ap.GetTimers().GetState().GetUptime(); up != nil {
				st.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
			}
		}
		for _, af := range ap.GetAfiSafis() {
			as := af.GetState()
			st.RoutesReceived += int(as.GetReceived())
			st.RoutesAccepted += int(as.GetAccepted())
			st.RoutesAdvertised += int(as.GetAdvertised())
		}
		out = append(out, st)
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: listing peers: %w", err)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out, nil
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE, api.PeerState_SESSION_STATE_UNSPECIFIED:
		return "Idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "Connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "Active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "OpenSent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "Established"
	}
	return strings.TrimPrefix(s.String(), "SESSION_STATE_")
}

// sessionStates are the label values of tabby_bgp_sessions.
var sessionStates = []string{"Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"}

// metrics are the speaker's Prometheus metrics. Gauges that GoBGP knows
// are read from it at scrape time.
type metrics struct {
	advertised     atomic.Int64
	learned        atomic.Int64
	rejected       atomic.Int64
	peerEvents     atomic.Int64
	installLatency prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		installLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tabby_bgp_route_install_latency_seconds",
			Help:    "Time from a change of a best path in BGP to the kernel holding the new routes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms .. 8s
		}),
	}
}

func (m *metrics) peerEvent() { m.peerEvents.Add(1) }

var (
	descSessions = prometheus.NewDesc("tabby_bgp_sessions",
		"BGP sessions by FSM state.", []string{"state"}, nil)
	descReceived = prometheus.NewDesc("tabby_bgp_routes_received",
		"Paths received from all peers.", nil, nil)
	descAdvertised = prometheus.NewDesc("tabby_bgp_routes_advertised",
		"Prefixes this node originates.", nil, nil)
	descLearned = prometheus.NewDesc("tabby_bgp_routes_learned",
		"Learned routes that passed the safety filter, at the last look.", nil, nil)
	descRejected = prometheus.NewDesc("tabby_bgp_routes_rejected",
		"Learned best paths that the safety filter kept out of the kernel, at the last look.", nil, nil)
	descPeerEvents = prometheus.NewDesc("tabby_bgp_session_events_total",
		"Session state changes.", nil, nil)
)

// Collector returns a Prometheus collector of the speaker's metrics:
// tabby_bgp_sessions{state}, tabby_bgp_routes_received,
// tabby_bgp_routes_advertised, tabby_bgp_routes_learned,
// tabby_bgp_routes_rejected, tabby_bgp_session_events_total and the
// histogram tabby_bgp_route_install_latency_seconds (from a best path
// change to the Installer's kernel update).
func (s *Speaker) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Speaker }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descReceived, descAdvertised, descLearned, descRejected, descPeerEvents} {
		ch <- d
	}
	c.s.metrics.installLatency.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.metrics
	states := map[string]int{}
	received := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(ap *api.Peer) {
		states[sessionState(ap.GetState().GetSessionState())]++
		for _, af := range ap.GetAfiSafis() {
			received += int(af.GetState().GetReceived())
		}
	})
	for _, st := range sessionStates {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(states[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.GaugeValue, float64(received))
	ch <- prometheus.MustNewConstMetric(descAdvertised, prometheus.GaugeValue, float64(m.advertised.Load()))
	ch <- prometheus.MustNewConstMetric(descLearned, prometheus.GaugeValue, float64(m.learned.Load()))
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.GaugeValue, float64(m.rejected.Load()))
	ch <- prometheus.MustNewConstMetric(descPeerEvents, prometheus.CounterValue, float64(m.peerEvents.Load()))
	m.installLatency.Collect(ch)
}
