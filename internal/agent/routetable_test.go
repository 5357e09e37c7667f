package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/testkit"
)

// TestRouteTableKeepsLearnedRoutesUntilBGPSyncs checks that a restarted
// agent does not delete the routes its predecessor learned before its own
// speaker has learned them again.
func TestRouteTableKeepsLearnedRoutesUntilBGPSyncs(t *testing.T) {
	testkit.RequireRoot(t)
	host := testkit.NetNS(t)
	k, err := nl.Open(host.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	// A fabric interface with a gateway on it.
	peer := testkit.NetNS(t)
	link, err := k.CreateVeth(nl.Veth{Name: "fab0", PeerName: "fab0", PeerNS: peer})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.AddrAdd(nl.Addr{LinkIndex: link.Index, Prefix: netip.MustParsePrefix("172.30.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	if err := k.LinkSetUp(link.Index); err != nil {
		t.Fatal(err)
	}
	newTable := func() *routeTable {
		cfg := routes.Config{}
		cfg.Defaults()
		m, err := routes.New(cfg, k, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return &routeTable{mgr: m}
	}
	learned := routes.Route{Dst: netip.MustParsePrefix("10.65.1.0/26"), Type: routes.Unicast,
		Nexthops: []routes.Nexthop{{Gateway: netip.MustParseAddr("172.30.0.2")}}}
	block := routes.Route{Dst: netip.MustParsePrefix("10.65.0.0/26"), Type: routes.Blackhole}

	// The first run learned a route.
	first := newTable()
	first.SetLocal([]routes.Route{block})
	first.Set([]routes.Route{learned})
	if _, err := first.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	has := func(dst netip.Prefix) bool {
		rs, err := first.mgr.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Dst == dst {
				return true
			}
		}
		return false
	}
	// The restarted agent applies its local routes before BGP has synced.
	second := newTable()
	second.SetLocal([]routes.Route{block})
	if _, err := second.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !has(learned.Dst) {
		t.Fatal("the restarted agent deleted a learned route before BGP synced")
	}
	// Once BGP has synced without that route, it goes.
	second.Set(nil)
	if _, err := second.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if has(learned.Dst) {
		t.Error("a stale learned route stayed after BGP synced")
	}
	if !has(block.Dst) {
		t.Error("the block's blackhole route is missing")
	}
}
