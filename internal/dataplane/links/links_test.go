package links

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

func TestInterfaceName(t *testing.T) {
	seen := map[string]string{}
	for i := range 2000 {
		id := fmt.Sprintf("k8s/default/pod-%d/eth0", i)
		name := InterfaceName("tabby", id)
		if len(name) != nl.MaxNameLen || !strings.HasPrefix(name, "tabby") {
			t.Fatalf("InterfaceName(tabby, %q) = %q, want 15 bytes starting with tabby", id, name)
		}
		if err := nl.CheckName(name); err != nil {
			t.Fatal(err)
		}
		if again := InterfaceName("tabby", id); again != name {
			t.Fatalf("not deterministic: %q then %q", name, again)
		}
		if other, ok := seen[name]; ok {
			t.Fatalf("%q and %q both map to %q", other, id, name)
		}
		seen[name] = id
	}
	for _, p := range []string{"t", "tab", "cali", "tabbyxy"} {
		if n := InterfaceName(p, "x"); len(n) != 15 || !strings.HasPrefix(n, p) {
			t.Errorf("InterfaceName(%q) = %q", p, n)
		}
	}
	if n := InterfaceName("averyveryverylongprefix", "x"); len(n) > nl.MaxNameLen {
		t.Errorf("long prefix gives %q, longer than %d", n, nl.MaxNameLen)
	}
}

func TestInterfaceNameStable(t *testing.T) {
	// Pinned (sha256("ep1") starts f56865fef7): changing the hash would
	// orphan every existing workload veth.
	if got, want := InterfaceName("tabby", "ep1"), "tabbyf56865fef7"; got != want {
		t.Errorf("InterfaceName = %q, want %q", got, want)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.Defaults()
	if diff := cmp.Diff(Config{InterfacePrefix: "tabby", MAC: "ee:ee:ee:ee:ee:ee"}, c); diff != "" {
		t.Errorf("Defaults (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
	for _, bad := range []Config{
		{InterfacePrefix: "", MAC: DefaultMAC},
		{InterfacePrefix: "tabbytab", MAC: DefaultMAC}, // 8 bytes
		{InterfacePrefix: "ta/b", MAC: DefaultMAC},
		{InterfacePrefix: "tabby", MAC: "nope"},
		{InterfacePrefix: "tabby", MAC: "01:00:5e:00:00:01"}, // multicast
		{InterfacePrefix: "tabby", MAC: "00:00:00:00:00:00:00:01"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

// countingKernel is the real kernel, counting writes.
type countingKernel struct {
	*nl.Handle
	writes atomic.Int64
	reads  atomic.Int64 // sysctl reads and neighbour lists
}

func (c *countingKernel) SysctlGet(name string) (string, error) {
	c.reads.Add(1)
	return c.Handle.SysctlGet(name)
}

func (c *countingKernel) NeighList(i int, f nl.Family) ([]nl.Neigh, error) {
	c.reads.Add(1)
	return c.Handle.NeighList(i, f)
}

func (c *countingKernel) LinkSetMAC(i int, mac net.HardwareAddr) error {
	c.writes.Add(1)
	return c.Handle.LinkSetMAC(i, mac)
}

func (c *countingKernel) LinkSetUp(i int) error {
	c.writes.Add(1)
	return c.Handle.LinkSetUp(i)
}

func (c *countingKernel) SysctlSet(name, value string) error {
	c.writes.Add(1)
	return c.Handle.SysctlSet(name, value)
}

func (c *countingKernel) NeighSet(n nl.Neigh) error {
	c.writes.Add(1)
	return c.Handle.NeighSet(n)
}

func (c *countingKernel) NeighDel(n nl.Neigh) error {
	c.writes.Add(1)
	return c.Handle.NeighDel(n)
}

func openHandle(t testing.TB, ns *netns.NS) *nl.Handle {
	t.Helper()
	h, err := nl.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// veth makes a down veth name in host with its peer "eth0" in a new
// namespace, whose handle it returns.
func veth(t testing.TB, host *nl.Handle, name string) *nl.Handle {
	t.Helper()
	wl := testkit.NetNS(t)
	if _, err := host.CreateVeth(nl.Veth{Name: name, PeerName: "eth0", PeerNS: wl}); err != nil {
		t.Fatal(err)
	}
	return openHandle(t, wl)
}

func sysctls(t *testing.T, h *nl.Handle, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		v, err := h.SysctlGet(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

func TestApply(t *testing.T) {
	host := openHandle(t, testkit.NetNS(t))
	k := &countingKernel{Handle: host}
	m, err := New(Config{}, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	dual := InterfaceName("tabby", "dual")
	v4 := InterfaceName("tabby", "v4only")
	missing := InterfaceName("tabby", "missing")
	stray := InterfaceName("tabby", "stray")
	veth(t, host, dual)
	veth(t, host, v4)
	veth(t, host, stray)
	veth(t, host, "eth7")

	m.Set([]Interface{
		{Name: dual, IPv4: true, IPv6: true},
		{Name: v4, IPv4: true},
		{Name: missing, IPv4: true, IPv6: true},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := m.Apply(ctx)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := Result{
		Interfaces: []Status{
			{Name: dual, Present: true, Configured: true},
			{Name: v4, Present: true, Configured: true},
			{Name: missing},
		},
		Strays: []string{stray},
		// 2 global (which also turn on every interface's forwarding),
		// dual: 6 sysctls, MAC, up; v4: 3 sysctls, MAC, up.
		Writes: 2 + 8 + 5,
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Apply (-want +got):\n%s", diff)
	}

	got := sysctls(t, host,
		"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
		"net.ipv4.conf."+dual+".proxy_arp", "net.ipv4.neigh."+dual+".proxy_delay",
		"net.ipv4.conf."+dual+".forwarding", "net.ipv4.conf."+dual+".rp_filter",
		"net.ipv6.conf."+dual+".proxy_ndp", "net.ipv6.conf."+dual+".forwarding",
		"net.ipv6.conf."+dual+".accept_ra", "net.ipv6.conf."+dual+".accept_dad",
		"net.ipv4.conf."+v4+".proxy_arp", "net.ipv4.conf."+v4+".rp_filter",
		"net.ipv6.conf."+v4+".accept_ra", "net.ipv6.conf."+v4+".proxy_ndp",
		"net.ipv4.conf."+stray+".proxy_arp",
	)
	wantSysctls := map[string]string{
		"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
		"net.ipv4.conf." + dual + ".proxy_arp": "1", "net.ipv4.neigh." + dual + ".proxy_delay": "0",
		"net.ipv4.conf." + dual + ".forwarding": "1", "net.ipv4.conf." + dual + ".rp_filter": "1",
		"net.ipv6.conf." + dual + ".proxy_ndp": "1", "net.ipv6.conf." + dual + ".forwarding": "1",
		"net.ipv6.conf." + dual + ".accept_ra": "0", "net.ipv6.conf." + dual + ".accept_dad": "0",
		"net.ipv4.conf." + v4 + ".proxy_arp": "1", "net.ipv4.conf." + v4 + ".rp_filter": "1",
		// IPv6 of an IPv4-only interface is left alone (accept_ra
		// shows 1 only because all.forwarding made it inert).
		"net.ipv6.conf." + v4 + ".accept_ra": "1", "net.ipv6.conf." + v4 + ".proxy_ndp": "0",
		// Strays are not touched.
		"net.ipv4.conf." + stray + ".proxy_arp": "0",
	}
	if diff := cmp.Diff(wantSysctls, got); diff != "" {
		t.Errorf("sysctls (-want +got):\n%s", diff)
	}
	for _, name := range []string{dual, v4, stray} {
		l, err := host.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		isOurs := name != stray
		if (l.MAC.String() == DefaultMAC) != isOurs || l.Up != isOurs {
			t.Errorf("%s: MAC %s up %v; want configured=%v", name, l.MAC, l.Up, isOurs)
		}
	}

	// Idempotent: no writes at all the second time.
	before := k.writes.Load()
	res, err = m.Apply(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := k.writes.Load() - before; n != 0 || res.Writes != 0 {
		t.Errorf("second Apply made %d writes (result %d), want 0", n, res.Writes)
	}

	// Drift is repaired: a sysctl and the MAC.
	if err := host.SysctlSet("net.ipv4.conf."+dual+".proxy_arp", "0"); err != nil {
		t.Fatal(err)
	}
	l, _ := host.LinkByName(v4)
	if err := host.LinkSetMAC(l.Index, net.HardwareAddr{0x02, 0, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	// Apply sees the MAC in the link list it reads anyway, but does not
	// read the sysctls of interfaces it configured already: Verify does.
	if res, err = m.Apply(ctx); err != nil || res.Writes != 1 {
		t.Errorf("Apply after drift = %+v, %v; want 1 write (the MAC)", res, err)
	}
	if l, _ = host.LinkByName(v4); l.MAC.String() != DefaultMAC {
		t.Errorf("MAC not repaired: %s", l.MAC)
	}
	if v := sysctls(t, host, "net.ipv4.conf."+dual+".proxy_arp"); v["net.ipv4.conf."+dual+".proxy_arp"] != "0" {
		t.Errorf("Apply read and repaired the sysctls of a configured interface")
	}
	if res, err = m.Verify(ctx); err != nil || res.Writes != 1 {
		t.Errorf("Verify after drift = %+v, %v; want 1 write (the sysctl)", res, err)
	}
	if v := sysctls(t, host, "net.ipv4.conf."+dual+".proxy_arp"); v["net.ipv4.conf."+dual+".proxy_arp"] != "1" {
		t.Errorf("Verify did not repair proxy_arp")
	}
	// Apply reads nothing per configured interface: the reads of a second
	// Apply do not depend on how many interfaces there are.
	before = k.reads.Load()
	if _, err = m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := k.reads.Load() - before; n != 2 {
		t.Errorf("Apply with every interface configured read %d sysctls/neighbour lists, want 2 (the global switches)", n)
	}

	// The missing interface appears (as the CNI plugin creates it).
	veth(t, host, missing)
	res, err = m.Apply(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Interfaces[2]; !st.Present || !st.Configured {
		t.Errorf("after creating %s: %+v", missing, st)
	}

	// An interface without our prefix is never touched.
	m.Set([]Interface{{Name: "eth7", IPv4: true}})
	res, err = m.Apply(ctx)
	if err == nil || res.Interfaces[0].Configured || res.Interfaces[0].Problem == "" {
		t.Errorf("Apply(eth7) = %+v, %v; want a problem", res, err)
	}
	if v := sysctls(t, host, "net.ipv4.conf.eth7.proxy_arp"); v["net.ipv4.conf.eth7.proxy_arp"] != "0" {
		t.Errorf("eth7 was touched")
	}
	if diff := cmp.Diff([]string{missing, dual, stray, v4}, res.Strays, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("strays (-want +got):\n%s", diff)
	}
}

func TestApplyNeighbors(t *testing.T) {
	host := openHandle(t, testkit.NetNS(t))
	k := &countingKernel{Handle: host}
	m, err := New(Config{}, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := InterfaceName("tabby", "neigh")
	veth(t, host, name)
	mac, _ := net.ParseMAC("02:00:00:00:00:07")
	other, _ := net.ParseMAC("02:00:00:00:00:08")
	want := []Neighbor{{IP: netip.MustParseAddr("10.65.0.7"), MAC: mac}, {IP: netip.MustParseAddr("fd00:65::7"), MAC: mac}}
	ctx := context.Background()
	permanent := func() map[netip.Addr]string {
		links, err := host.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		idx := 0
		for _, l := range links {
			if l.Name == name {
				idx = l.Index
			}
		}
		ns, err := host.NeighList(idx, nl.FamilyAll)
		if err != nil {
			t.Fatal(err)
		}
		out := map[netip.Addr]string{}
		for _, n := range ns {
			if n.Permanent {
				out[n.IP] = n.MAC.String()
			}
		}
		return out
	}

	m.Set([]Interface{{Name: name, IPv4: true, IPv6: true, Neighbors: want}})
	if _, err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[netip.Addr]string{want[0].IP: mac.String(), want[1].IP: mac.String()}, permanent()); d != "" {
		t.Errorf("neighbours after Apply (-want +got):\n%s", d)
	}
	before := k.writes.Load()
	if _, err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := k.writes.Load() - before; n != 0 {
		t.Errorf("second Apply made %d writes", n)
	}

	// A new MAC (the workload was recreated), and a stray permanent entry
	// added by hand: both are repaired.
	if err := host.NeighSet(nl.Neigh{LinkIndex: linkIndex(t, host, name), IP: netip.MustParseAddr("10.65.0.99"), MAC: other, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	want = []Neighbor{{IP: netip.MustParseAddr("10.65.0.7"), MAC: other}}
	m.Set([]Interface{{Name: name, IPv4: true, Neighbors: want}})
	if _, err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[netip.Addr]string{want[0].IP: other.String()}, permanent()); d != "" {
		t.Errorf("neighbours after the change (-want +got):\n%s", d)
	}
}

func linkIndex(t *testing.T, h *nl.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Index
}
