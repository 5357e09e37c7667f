package bgp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tabbynet/tabby/internal/bgp"
)

// syncBuffer is a log sink safe for GoBGP's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), `msg="`+msg+`"`)
}

// startLocal starts a speaker that listens nowhere, so the test needs
// neither root nor a namespace. Its peers are passive, so it dials
// nobody either.
func startLocal(t *testing.T) (*bgp.Speaker, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sp, err := bgp.Start(context.Background(), bgp.Config{
		NodeName:    "local",
		ASNumber:    64512,
		IPv4Address: netip.MustParseAddr("192.0.2.1"),
		IPv6Address: netip.MustParseAddr("2001:db8::1"),
		ListenPort:  -1,
		LocalAddrs:  func() ([]netip.Prefix, error) { return nil, nil },
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sp.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return sp, &logs
}

// TestApply checks that Apply reconciles peers and advertisements and is
// idempotent.
func TestApply(t *testing.T) {
	sp, logs := startLocal(t)
	ctx := context.Background()
	peers := []bgp.Peer{
		{Address: addr("192.0.2.2"), ASNumber: 64512, Type: bgp.PeerMesh, Name: "n2", Passive: true},
		{Address: addr("192.0.2.3"), ASNumber: 65000, Type: bgp.PeerGlobal, Name: "tor", Passive: true, Keepalive: 10 * time.Second},
	}
	adverts := []bgp.Advertisement{
		{Prefix: netip.MustParsePrefix("10.65.1.0/26")},
		{Prefix: netip.MustParsePrefix("fd00:65:1::/122")},
		{Prefix: netip.MustParsePrefix("10.65.9.7/32"), Elevated: true},
	}
	sp.SetPeers(peers)
	sp.SetAdvertised(adverts)
	if err := sp.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sp.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := logs.count("BGP peer added"); n != 2 {
		t.Errorf("%d peers added, want 2", n)
	}
	if n := logs.count("BGP prefixes advertised"); n != 1 {
		t.Errorf("advertised %d times, want once", n)
	}
	// A new peer starts Idle and turns Active (waiting for its passive
	// session) a moment later.
	var st []bgp.PeerStatus
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if st, err = sp.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if len(st) == 2 && st[0].State == "Active" || time.Now().After(deadline) {
			break
		}
	}
	if len(st) != 2 || st[0].Address != addr("192.0.2.2") || st[0].Type != bgp.PeerMesh || st[1].Name != "tor" || st[0].State != "Active" {
		t.Errorf("status = %+v", st)
	}

	// Changing a peer re-creates it; removing one deletes it; a withdrawn
	// prefix is withdrawn.
	peers[1].Keepalive = 20 * time.Second
	sp.SetPeers(peers[1:])
	sp.SetAdvertised(adverts[:2])
	if err := sp.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := logs.count("BGP peer deleted"); n != 2 {
		t.Errorf("%d peers deleted, want 2", n)
	}
	if n := logs.count("BGP peer added"); n != 3 {
		t.Errorf("%d peers added, want 3", n)
	}
	if n := logs.count("BGP prefixes withdrawn"); n != 1 {
		t.Errorf("withdrawn %d times, want once", n)
	}
	st, _ = sp.Status(ctx)
	if len(st) != 1 || st[0].Address != addr("192.0.2.3") {
		t.Errorf("status = %+v", st)
	}

	// Invalid input is reported and skipped; the rest is applied.
	sp.SetPeers(append(peers[1:], bgp.Peer{Address: addr("192.0.2.1"), ASNumber: 64512}, bgp.Peer{Address: addr("192.0.2.9")}))
	sp.SetAdvertised(append(adverts[:2], bgp.Advertisement{Prefix: netip.MustParsePrefix("10.1.2.3/8")}))
	err := sp.Apply(ctx)
	if err == nil || !strings.Contains(err.Error(), "node's own") || !strings.Contains(err.Error(), "no AS number") || !strings.Contains(err.Error(), "not masked") {
		t.Errorf("Apply error = %v", err)
	}
	if n := logs.count("BGP peer deleted"); n != 2 {
		t.Errorf("%d peers deleted, want still 2", n)
	}

	// Nothing was learned; with no graceful restart, learned routes are
	// synced at once.
	l, err := sp.Learned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Routes) != 0 || !l.Synced {
		t.Errorf("Learned = %+v", l)
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(sp.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() == "tabby_bgp_routes_advertised" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 2 {
				t.Errorf("tabby_bgp_routes_advertised = %v, want 2", v)
			}
		}
	}
	if got["tabby_bgp_sessions"] != 6 || got["tabby_bgp_route_install_latency_seconds"] != 1 {
		t.Errorf("metric families: %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  bgp.Config
		want string
	}{
		{bgp.Config{}, "node name is required"},
		{bgp.Config{NodeName: "n"}, "AS number is required"},
		{bgp.Config{NodeName: "n", ASNumber: 1}, "needs an IPv4 or IPv6 address"},
		{bgp.Config{NodeName: "n", ASNumber: 1, IPv6Address: addr("fd00::1")}, "router ID"},
		{bgp.Config{NodeName: "n", ASNumber: 1, IPv6Address: addr("fe80::1"), RouterID: addr("1.1.1.1")}, "not a global IPv6"},
		{bgp.Config{NodeName: "n", ASNumber: 1, IPv4Address: addr("10.0.0.1"), GracefulRestart: bgp.GracefulRestart{Enabled: true, RestartTime: 5000 * time.Second}}, "restart time"},
		{bgp.Config{NodeName: "n", ASNumber: 1, IPv4Address: addr("10.0.0.1"), ListenPort: 70000}, "listen port"},
	} {
		c := tt.cfg
		c.Defaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	c := bgp.Config{NodeName: "n", ASNumber: 1, IPv4Address: addr("10.0.0.1"), IPv6Address: addr("fd00::1")}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if c.RouterID != addr("10.0.0.1") || c.ListenPort != 179 || len(c.ListenAddresses) != 2 || c.GracefulRestart.RestartTime != 120*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}
