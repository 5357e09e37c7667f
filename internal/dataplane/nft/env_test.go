package nft

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// requireNft skips (or, with TABBY_E2E=1, fails) a test without root or
// without the nft tool.
func requireNft(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t)
	testkit.RequireCommand(t, "nft", "nftables")
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// newRenderer makes a renderer for ns, closed by t.Cleanup.
func newRenderer(t testing.TB, ns *netns.NS, cfg Config) *Renderer {
	t.Helper()
	r, err := New(cfg, ns, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// runNft runs nft with args inside ns.
func runNft(t testing.TB, ns *netns.NS, args ...string) string {
	t.Helper()
	out, err := netns.Exec(ctxT(t), ns.Path(), "nft", args...)
	if err != nil {
		t.Fatalf("nft %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// listTable is `nft -n list table inet tabby` inside ns.
func listTable(t testing.TB, ns *netns.NS, table string) string {
	t.Helper()
	return runNft(t, ns, "-n", "list", "table", "inet", table)
}

func mustApply(t testing.TB, r *Renderer) Result {
	t.Helper()
	res, err := r.Apply(ctxT(t))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func mustResync(t testing.TB, r *Renderer) Result {
	t.Helper()
	res, err := r.Resync(ctxT(t))
	if err != nil {
		t.Fatalf("Resync: %v", err)
	}
	return res
}

func genID(t testing.TB, r *Renderer) uint32 {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	g, err := r.k.genID()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// --- building rulesets by hand ---

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func u8(v uint8) *uint8         { return &v }

// wep makes a workload endpoint on iface with the given addresses and
// ingress/egress chains.
func wep(name, iface string, addrs []string, in, out policy.Chain) *policy.EndpointRules {
	ep := &policy.EndpointRules{
		ID:            policy.WorkloadEndpointID("default", name),
		Kind:          policy.WorkloadEndpoint,
		InterfaceName: iface,
		Ingress:       in,
		Egress:        out,
	}
	for _, a := range addrs {
		ep.Addrs = append(ep.Addrs, netip.PrefixFrom(netip.MustParseAddr(a), netip.MustParseAddr(a).BitLen()))
	}
	return ep
}

// tiered makes a chain with one tier "default" (end action Deny) holding
// the policies, then the profiles, then Deny.
func tiered(pols []policy.PolicyID, profiles ...policy.ProfileID) policy.Chain {
	c := policy.Chain{Profiles: profiles, EndAction: v1.Deny}
	if len(pols) > 0 {
		c.Tiers = []policy.TierPolicies{{Name: "default", Policies: pols, EndAction: v1.Deny}}
	}
	return c
}

func newRS(eps []*policy.EndpointRules, pols []*policy.CompiledPolicy, profs []*policy.CompiledProfile, sets []*policy.IPSet) *policy.Ruleset {
	rs := policy.NewRuleset("node1")
	for _, e := range eps {
		rs.Endpoints[e.ID] = e
	}
	for _, p := range pols {
		rs.Policies[p.ID] = p
	}
	for _, p := range profs {
		rs.Profiles[p.ID] = p
	}
	for _, s := range sets {
		rs.IPSets[s.ID] = s
	}
	return rs
}
