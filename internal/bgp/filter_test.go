package bgp_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/bgp"
)

func route(prefix string, hops ...string) bgp.Route {
	r := bgp.Route{Prefix: netip.MustParsePrefix(prefix)}
	for _, h := range hops {
		r.NextHops = append(r.NextHops, addr(h))
	}
	return r
}

func TestFilterLearned(t *testing.T) {
	protected := bgp.Protected{
		Local: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.1/8"),
			netip.MustParsePrefix("10.0.0.1/24"), // the fabric
			netip.MustParsePrefix("fd00::1/64"),
			netip.MustParsePrefix("fe80::1/64"),
			netip.MustParsePrefix("192.168.50.7/32"), // a lone address, e.g. on lo
		},
		Own: []netip.Prefix{netip.MustParsePrefix("10.65.1.0/26"), netip.MustParsePrefix("fd00:65:1::/122")},
	}
	in := []bgp.Route{
		route("10.65.2.0/26", "10.0.0.2"),                         // another node's block
		route("10.65.1.5/32", "10.0.0.2"),                         // a migrated endpoint of our block
		route("fd00:65:2::/122", "fd00::2"),                       // IPv6 block, IPv6 next hop
		route("10.65.3.0/26", "10.0.0.3", "10.0.0.2", "10.0.0.3"), // ECMP, sorted and deduplicated
		route("10.65.4.0/26", "10.0.0.4", "10.0.0.1"),             // one next hop is ours: dropped
		route("10.0.0.0/24", "10.0.0.2"),                          // the fabric itself
		route("10.0.0.0/16", "10.0.0.2"),                          // covers the fabric
		route("0.0.0.0/0", "10.0.0.254"),                          // default route covers it too
		route("10.0.0.9/32", "10.0.0.2"),                          // inside the fabric
		route("192.168.50.0/24", "10.0.0.2"),                      // contains a local address
		route("fd00::/48", "fd00::2"),                             // covers the IPv6 fabric
		route("10.65.1.0/26", "10.0.0.2"),                         // our own block
		route("fd00:65:1::/122", "fd00::2"),                       // our own IPv6 block
		route("127.0.0.0/8", "10.0.0.2"),                          // loopback
		route("169.254.1.1/32", "10.0.0.2"),                       // link-local
		route("10.65.5.0/26", "fd00::5"),                          // next hop of another family
		route("fd00:65:5::/122", "fe80::5"),                       // link-local next hop
		route("10.65.6.0/26", "10.0.0.1"),                         // next hop is this node
		{Prefix: netip.MustParsePrefix("10.65.7.1/24")},           // not masked
	}
	keep, rejected := bgp.FilterLearned(in, protected)

	wantKeep := []bgp.Route{
		route("10.65.2.0/26", "10.0.0.2"),
		route("10.65.1.5/32", "10.0.0.2"),
		route("fd00:65:2::/122", "fd00::2"),
		route("10.65.3.0/26", "10.0.0.2", "10.0.0.3"),
		route("10.65.4.0/26", "10.0.0.4"),
	}
	if diff := cmp.Diff(wantKeep, keep, addrCmp, prefixCmp); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	wantRejected := map[string]string{
		"10.0.0.0/24":     "equals connected subnet 10.0.0.0/24",
		"10.0.0.0/16":     "covers connected subnet 10.0.0.0/24",
		"0.0.0.0/0":       "covers connected subnet",
		"10.0.0.9/32":     "inside connected subnet 10.0.0.0/24",
		"192.168.50.0/24": "contains local address 192.168.50.7",
		"fd00::/48":       "covers connected subnet fd00::/64",
		"10.65.1.0/26":    "advertised by this node",
		"fd00:65:1::/122": "advertised by this node",
		"127.0.0.0/8":     "special range",
		"169.254.1.1/32":  "special range",
		"10.65.5.0/26":    "no usable next hop",
		"fd00:65:5::/122": "no usable next hop",
		"10.65.6.0/26":    "no usable next hop",
		"10.65.7.1/24":    "not masked",
	}
	got := map[string]string{}
	for _, r := range rejected {
		got[r.Route.Prefix.String()] = r.Reason
	}
	if len(got) != len(wantRejected) {
		t.Errorf("rejected %d routes, want %d: %v", len(got), len(wantRejected), got)
	}
	for p, want := range wantRejected {
		if !strings.Contains(got[p], want) {
			t.Errorf("%s rejected for %q, want %q", p, got[p], want)
		}
	}
}

var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
