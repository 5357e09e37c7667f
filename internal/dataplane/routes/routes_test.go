package routes

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

func TestConfig(t *testing.T) {
	var c Config
	c.Defaults()
	if c.Protocol != DefaultProtocol {
		t.Errorf("default protocol %d, want %d", c.Protocol, DefaultProtocol)
	}
	for _, tc := range []struct {
		proto int
		ok    bool
	}{
		{80, true}, {5, true}, {255, true}, {200, true},
		{0, false}, {2, false}, {4, false}, {256, false}, {-1, false},
		{11, false}, {12, false}, {186, false}, {188, false},
	} {
		err := Config{Protocol: tc.proto}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(protocol %d) = %v, want ok=%v", tc.proto, err, tc.ok)
		}
	}
	if _, err := New(Config{Protocol: 12}, nil, nil); err == nil {
		t.Errorf("New with the bird protocol succeeded")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Route
		want string // substring of the error; "" for valid
	}{
		{"dev", Route{Dst: pfx("10.0.0.1/32"), Dev: "tabbya"}, ""},
		{"gateway", Route{Dst: pfx("10.0.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4a}}}, ""},
		{"ecmp v6", Route{Dst: pfx("fd00::/64"), Nexthops: []Nexthop{{Gateway: gw6a}, {Gateway: gw6b}}}, ""},
		{"blackhole", Route{Dst: pfx("10.0.0.0/26"), Type: Blackhole}, ""},
		{"no dst", Route{Dev: "x"}, "no destination"},
		{"nothing", Route{Dst: pfx("10.0.0.1/32")}, "without Dev or Nexthops"},
		{"both", Route{Dst: pfx("10.0.0.1/32"), Dev: "x", Nexthops: []Nexthop{{Gateway: gw4a}}}, "both"},
		{"blackhole dev", Route{Dst: pfx("10.0.0.0/26"), Type: Blackhole, Dev: "x"}, "blackhole"},
		{"family", Route{Dst: pfx("10.0.0.0/24"), Nexthops: []Nexthop{{Gateway: gw6a}}}, "family"},
		{"src family", Route{Dst: pfx("10.0.0.1/32"), Dev: "x", Src: gw6a}, "family"},
		{"dup hop", Route{Dst: pfx("10.0.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4a}, {Gateway: gw4a}}}, "duplicate"},
		{"long dev", Route{Dst: pfx("10.0.0.1/32"), Dev: "averyveryverylongname"}, "longer"},
		{"ll gw", Route{Dst: pfx("fd00::/64"), Nexthops: []Nexthop{{Gateway: addr("fe80::1")}}}, "link-local"},
		{"v6 ecmp devs", Route{Dst: pfx("fd00::/64"), Nexthops: []Nexthop{{Dev: "a"}, {Dev: "b"}}}, "need gateways"},
		{"type", Route{Dst: pfx("10.0.0.1/32"), Type: 9, Dev: "x"}, "unknown type"},
		{"metric", Route{Dst: pfx("10.0.0.1/32"), Dev: "x", Metric: -1}, "metric"},
	} {
		err := validate(tc.r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: validate = %v, want ok", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: validate = %v, want error with %q", tc.name, err, tc.want)
		}
	}
}

func TestApplyAddUpdateDeleteStrays(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)

	// A route of another protocol, which the manager must never touch.
	static := nl.Route{Dst: pfx("10.77.0.0/24"), Protocol: nl.ProtoStatic, Gateway: gw4a}
	if err := e.host.RouteAdd(static); err != nil {
		t.Fatal(err)
	}

	desired := []Route{
		{Dst: pfx("10.1.0.2/32"), Dev: "tabbya"},
		{Dst: pfx("10.1.0.3/32"), Dev: "tabbyb"},
		{Dst: pfx("10.1.0.0/26"), Type: Blackhole},
		{Dst: pfx("10.2.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4a}, {Gateway: gw4b}}},
		{Dst: pfx("10.3.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4a, Dev: "fab0"}}, Metric: 50},
		{Dst: pfx("fd01::2/128"), Dev: "tabbya"},
		{Dst: pfx("fd01::3/128"), Dev: "tabbyb"},
		{Dst: pfx("fd01::/122"), Type: Blackhole},
		{Dst: pfx("fd02::/64"), Nexthops: []Nexthop{{Gateway: gw6a}, {Gateway: gw6b, Dev: "fab0"}}},
	}
	m.Set(desired)
	res := e.applyTwice(t, m)
	if want := (Result{Added: len(desired)}); !cmp.Equal(res, want) {
		t.Errorf("first Apply = %+v, want %+v", res, want)
	}
	if diff := cmp.Diff(expected(desired, "fab0"), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}

	// Change two routes, drop one, keep the rest.
	desired[3].Nexthops = []Nexthop{{Gateway: gw4b}}           // ECMP -> single
	desired[8].Nexthops = []Nexthop{{Gateway: gw6a}}           // v6 ECMP -> single
	desired[0] = Route{Dst: pfx("10.1.0.2/32"), Dev: "tabbyb"} // moved workload
	desired = desired[:7]                                      // drop the v6 ECMP and blackhole
	m.Set(desired)
	res = e.applyTwice(t, m)
	if want := (Result{Updated: 2, Deleted: 2}); !cmp.Equal(res, want) {
		t.Errorf("second Apply = %+v, want %+v", res, want)
	}
	if diff := cmp.Diff(expected(desired, "fab0"), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}

	// Strays of our protocol, made behind the manager's back, go away;
	// drift in a desired route is repaired.
	for _, r := range []nl.Route{
		{Dst: pfx("10.66.0.0/24"), Protocol: DefaultProtocol, Gateway: gw4a},
		{Dst: pfx("fd66::/64"), Protocol: DefaultProtocol, Type: nl.RouteBlackhole},
		{Dst: pfx("10.1.0.2/32"), Protocol: DefaultProtocol, Priority: 7, LinkIndex: e.idx["tabbya"], Scope: nl.ScopeLink},
		{Dst: pfx("10.67.0.0/24"), Protocol: DefaultProtocol, Type: nl.RouteUnreachable},
	} {
		if err := e.host.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.host.RouteReplace(nl.Route{Dst: pfx("10.1.0.3/32"), Protocol: DefaultProtocol, LinkIndex: e.idx["tabbya"], Scope: nl.ScopeLink}); err != nil {
		t.Fatal(err)
	}
	res = e.applyTwice(t, m)
	if want := (Result{Updated: 1, Deleted: 4}); !cmp.Equal(res, want) {
		t.Errorf("resync = %+v, want %+v", res, want)
	}
	if diff := cmp.Diff(expected(desired, "fab0"), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes after resync (-want +got):\n%s", diff)
	}

	// Nothing desired: everything of ours goes, the static route stays.
	m.Set(nil)
	res = e.applyTwice(t, m)
	if res.Deleted != len(desired) {
		t.Errorf("Apply(nil) deleted %d, want %d", res.Deleted, len(desired))
	}
	if got := e.listed(t, m); len(got) != 0 {
		t.Errorf("routes left: %v", got)
	}
	assertStatic(t, e, static)
}

func assertStatic(t *testing.T, e *testEnv, want nl.Route) {
	t.Helper()
	all, err := e.host.RouteList(nl.RouteFilter{Protocol: want.Protocol})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Dst == want.Dst && r.Gateway == want.Gateway {
			return
		}
	}
	t.Errorf("route %s of protocol %d is gone: %v", want.Dst, want.Protocol, all)
}

func TestForeignProtocolUntouched(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	boot := nl.Route{Dst: pfx("10.5.0.0/24"), Protocol: nl.ProtoBoot, Gateway: gw4a}
	static6 := nl.Route{Dst: pfx("fd05::/64"), Protocol: nl.ProtoStatic, Gateway: gw6a}
	for _, r := range []nl.Route{boot, static6} {
		if err := e.host.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	m.Set([]Route{
		// Same destination and metric as foreign routes: refused, since
		// installing would replace them.
		{Dst: pfx("10.5.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4b}}},
		{Dst: pfx("fd05::/64"), Nexthops: []Nexthop{{Gateway: gw6b}}},
		// Same destination, another metric: a different route, fine.
		{Dst: pfx("10.5.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4b}}, Metric: 10},
	})
	res := e.applyTwice(t, m)
	if res.Added != 1 || len(res.Refused) != 2 {
		t.Fatalf("Apply = %+v, want 1 added and 2 refused", res)
	}
	for _, s := range res.Refused {
		if !strings.Contains(s.Reason, "conflicts with a route of protocol") {
			t.Errorf("refused %s: %q, want a conflict", s.Route, s.Reason)
		}
	}
	m.Set(nil)
	if res := e.applyTwice(t, m); res.Deleted != 1 {
		t.Errorf("Apply(nil) = %+v, want 1 deleted", res)
	}
	assertStatic(t, e, boot)
	assertStatic(t, e, static6)
}

func TestRefusesUnsafeRoutes(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	unsafe := []Route{
		{Dst: pfx(fabricV4), Nexthops: []Nexthop{{Gateway: gw4a}}},        // the connected subnet itself
		{Dst: pfx("10.9.0.128/25"), Nexthops: []Nexthop{{Gateway: gw4a}}}, // inside it
		{Dst: pfx("10.9.0.7/32"), Dev: "tabbya"},                          // a host in it
		{Dst: pfx("10.0.0.0/8"), Nexthops: []Nexthop{{Gateway: gw4a}}},    // covering it
		{Dst: pfx("0.0.0.0/0"), Nexthops: []Nexthop{{Gateway: gw4a}}},     // default route
		{Dst: pfx(fabricV6), Nexthops: []Nexthop{{Gateway: gw6a}}},        // IPv6 connected subnet
		{Dst: pfx("fd09::1/128"), Type: Blackhole},                        // a local address
		{Dst: pfx("fd00::/8"), Nexthops: []Nexthop{{Gateway: gw6a}}},      // covering it
	}
	safe := Route{Dst: pfx("10.1.0.2/32"), Dev: "tabbya"}
	m.Set(append(unsafe, safe))
	res := e.applyTwice(t, m)
	if res.Added != 1 || len(res.Refused) != len(unsafe) || len(res.Pending) != 0 {
		t.Fatalf("Apply = %+v, want 1 added, %d refused", res, len(unsafe))
	}
	for i, s := range res.Refused {
		if !strings.HasPrefix(s.Reason, "unsafe:") || !cmp.Equal(s.Route, unsafe[i], cmpOpts) {
			t.Errorf("refused[%d] = %v %q, want %v refused as unsafe", i, s.Route, s.Reason, unsafe[i])
		}
	}
	if diff := cmp.Diff(expected([]Route{safe}, ""), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}

	// A route of ours becomes unsafe when the host gets an address in it:
	// it is refused and taken out of the kernel.
	learned := Route{Dst: pfx("10.50.0.0/24"), Nexthops: []Nexthop{{Gateway: gw4a}}}
	m.Set([]Route{safe, learned})
	if res := e.applyTwice(t, m); res.Added != 1 {
		t.Fatalf("Apply = %+v, want 1 added", res)
	}
	if err := e.host.AddrAdd(nl.Addr{LinkIndex: e.idx["tabbyb"], Prefix: pfx("10.50.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	res = e.applyTwice(t, m)
	if res.Deleted != 1 || len(res.Refused) != 1 || !strings.Contains(res.Refused[0].Reason, "connected subnet 10.50.0.0/24") {
		t.Errorf("Apply after address = %+v, want the learned route refused and deleted", res)
	}
	if diff := cmp.Diff(expected([]Route{safe}, ""), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}
}

func TestPendingUntilLinkIsUp(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	late := []Route{
		{Dst: pfx("10.1.0.9/32"), Dev: "tabbylate"},
		{Dst: pfx("fd01::9/128"), Dev: "tabbylate"},
	}
	other := Route{Dst: pfx("10.1.0.2/32"), Dev: "tabbya"}
	m.Set(append(late, other))

	res := e.applyTwice(t, m)
	if res.Added != 1 || len(res.Pending) != 2 || len(res.Refused) != 0 {
		t.Fatalf("Apply = %+v, want 1 added, 2 pending", res)
	}
	if !strings.Contains(res.Pending[0].Reason, "does not exist") {
		t.Errorf("pending reason %q", res.Pending[0].Reason)
	}

	// The link appears, down: still pending.
	l, err := e.host.CreateVeth(nl.Veth{Name: "tabbylate", PeerName: "tabbylatep"})
	if err != nil {
		t.Fatal(err)
	}
	res = e.applyTwice(t, m)
	if len(res.Pending) != 2 || !strings.Contains(res.Pending[0].Reason, "is down") {
		t.Fatalf("Apply with link down = %+v, want 2 pending (down)", res)
	}

	// Up: installed.
	if err := e.host.LinkSetUp(l.Index); err != nil {
		t.Fatal(err)
	}
	res = e.applyTwice(t, m)
	if res.Added != 2 || len(res.Pending) != 0 {
		t.Fatalf("Apply with link up = %+v, want 2 added", res)
	}
	if diff := cmp.Diff(expected(append(late, other), ""), e.listed(t, m), cmpOpts); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}

	// The link goes away: the kernel drops its routes, and they are
	// pending again (not an error).
	if err := e.host.LinkDel(l.Index); err != nil {
		t.Fatal(err)
	}
	res = e.applyTwice(t, m)
	if res.Writes() != 0 || len(res.Pending) != 2 {
		t.Errorf("Apply after link deleted = %+v, want 2 pending, no writes", res)
	}
}

func TestInvalidAndDuplicateRefused(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	m.Set([]Route{
		{Dst: pfx("10.1.0.2/32"), Dev: "tabbya"},
		{Dst: pfx("10.1.0.2/32"), Dev: "tabbyb"},            // duplicate key
		{Dst: pfx("10.1.0.2/32"), Dev: "tabbyb", Metric: 5}, // another metric: fine
		{Dst: pfx("10.1.0.3/32")},                           // invalid
	})
	res := e.applyTwice(t, m)
	if res.Added != 2 || len(res.Refused) != 2 {
		t.Fatalf("Apply = %+v, want 2 added, 2 refused", res)
	}
	if !strings.HasPrefix(res.Refused[0].Reason, "duplicate") || !strings.HasPrefix(res.Refused[1].Reason, "invalid") {
		t.Errorf("reasons: %q, %q", res.Refused[0].Reason, res.Refused[1].Reason)
	}
}

func TestApplyCancelled(t *testing.T) {
	e := newTestEnv(t)
	m := e.manager(t)
	m.Set([]Route{{Dst: pfx("10.1.0.2/32"), Dev: "tabbya"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Apply(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v", err)
	}
	if got := e.listed(t, m); len(got) != 0 {
		t.Errorf("routes written despite cancellation: %v", got)
	}
}
