package links_test

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// workload is a workload namespace wired to the host the way the CNI
// plugin will do it.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func requirePing(t *testing.T) {
	t.Helper()
	testkit.RequireCommand(t, "ping", "iputils-ping")
}

// pingOnce runs `ip netns exec NAME ping -c1 -W1 dst`.
func pingOnce(ns *netns.NS, dst netip.Addr) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name := ns.Path()[len(netns.RunDir)+1:]
	return exec.CommandContext(ctx, "ip", "netns", "exec", name, "ping", "-c1", "-W1", dst.String()).CombinedOutput()
}

// ping pings dst from inside ns, trying up to three times (the first
// packet may wait for neighbour resolution).
func ping(t *testing.T, ns *netns.NS, dst netip.Addr) {
	t.Helper()
	var out []byte
	var err error
	for range 3 {
		if out, err = pingOnce(ns, dst); err == nil {
			return
		}
	}
	t.Errorf("ping %s from %s: %v\n%s", dst, ns.Path(), err, out)
}

// TestEndToEndPing wires a host namespace and two workload namespaces as
// Tabby will, lets the links and routes managers program the host, and
// pings between the workloads over IPv4 and IPv6.
func TestEndToEndPing(t *testing.T) {
	testkit.RequireRoot(t)
	requirePing(t)
	hostNS := testkit.NetNS(t)
	host, err := nl.Open(hostNS.Path())
	must(t, err)
	t.Cleanup(func() { host.Close() })
	lo, err := host.LinkByName("lo")
	must(t, err)
	must(t, host.LinkSetUp(lo.Index))

	a := testkit.NewWorkload(t, host, links.InterfaceName("tabby", "wl-a"), netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("fd65::2"))
	b := testkit.NewWorkload(t, host, links.InterfaceName("tabby", "wl-b"), netip.MustParseAddr("10.65.0.3"), netip.MustParseAddr("fd65::3"))

	lm, err := links.New(links.Config{}, host, nil)
	must(t, err)
	rm, err := routes.New(routes.Config{}, host, nil)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var want []routes.Route
	var ifaces []links.Interface
	for _, w := range []*testkit.Workload{a, b} {
		ifaces = append(ifaces, links.Interface{Name: w.HostIface, IPv4: true, IPv6: true})
		want = append(want,
			routes.Route{Dst: netip.PrefixFrom(w.V4, 32), Dev: w.HostIface},
			routes.Route{Dst: netip.PrefixFrom(w.V6, 128), Dev: w.HostIface})
	}

	// Before the host is programmed, workloads cannot reach each other.
	if out, err := pingOnce(a.NS, b.V4); err == nil {
		t.Fatalf("ping worked before the host was programmed:\n%s", out)
	}

	// Routes first: the host sides are still down, so they wait.
	rm.Set(want)
	res, err := rm.Apply(ctx)
	must(t, err)
	if len(res.Pending) != 4 {
		t.Fatalf("routes before links: %+v, want 4 pending", res)
	}

	lm.Set(ifaces)
	lres, err := lm.Apply(ctx)
	must(t, err)
	for _, st := range lres.Interfaces {
		if !st.Configured {
			t.Fatalf("interface not configured: %+v", st)
		}
	}
	res, err = rm.Apply(ctx)
	must(t, err)
	if res.Added != 4 {
		t.Fatalf("routes after links: %+v, want 4 added", res)
	}

	ping(t, a.NS, b.V4)
	ping(t, a.NS, b.V6)
	ping(t, b.NS, a.V4)
	ping(t, b.NS, a.V6)

	// Nothing to do any more.
	if lres, err := lm.Apply(ctx); err != nil || lres.Writes != 0 {
		t.Errorf("links re-Apply = %+v, %v; want no writes", lres, err)
	}
	if res, err := rm.Apply(ctx); err != nil || res.Writes() != 0 {
		t.Errorf("routes re-Apply = %+v, %v; want no writes", res, err)
	}
}
