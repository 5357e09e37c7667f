package nodeaddr_test

import (
	"errors"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/bgp/nodeaddr"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// host is a made-up host: loopback, docker0, a Tabby veth, two uplinks
// (one down) and a VLAN interface.
var host = []nodeaddr.Interface{
	{Name: "lo", Index: 1, Up: true, Loopback: true, Addrs: []netip.Prefix{pfx("127.0.0.1/8"), pfx("::1/128")}},
	{Name: "docker0", Index: 2, Up: true, Addrs: []netip.Prefix{pfx("172.17.0.1/16")}},
	{Name: "tabby1234abcd", Index: 3, Up: true, Addrs: []netip.Prefix{pfx("169.254.1.1/32"), pfx("fe80::1/64")}},
	{Name: "eth0", Index: 4, Up: false, Addrs: []netip.Prefix{pfx("192.168.9.9/24")}},
	{Name: "eth1", Index: 5, Up: true, Addrs: []netip.Prefix{pfx("fe80::5/64"), pfx("10.0.0.11/24"), pfx("10.0.1.11/24"), pfx("fd00::11/64")}},
	{Name: "eth1.100", Index: 6, Up: true, Addrs: []netip.Prefix{pfx("10.100.0.11/16"), pfx("fd00:100::11/64")}},
}

func TestDetect(t *testing.T) {
	route := func(dest netip.Addr) (netip.Addr, error) {
		switch {
		case pfx("10.100.0.0/16").Contains(dest):
			return netip.MustParseAddr("10.100.0.11"), nil
		case pfx("fd00:100::/64").Contains(dest):
			return netip.MustParseAddr("fd00:100::11"), nil
		case dest.Is4():
			return netip.MustParseAddr("10.0.0.11"), nil
		}
		return netip.Addr{}, errors.New("network is unreachable")
	}
	tests := []struct {
		method string
		fam    nodeaddr.Family
		want   string // "" means an error
	}{
		{"first-found", nodeaddr.IPv4, "10.0.0.11/24"},
		{"", nodeaddr.IPv6, "fd00::11/64"},
		{"interface=eth1\\.100", nodeaddr.IPv4, "10.100.0.11/16"},
		{"interface=eth1\\..*", nodeaddr.IPv6, "fd00:100::11/64"},
		{"interface=eth", nodeaddr.IPv4, ""}, // anchored: no interface is named "eth"
		{"interface=wlan.*,eth0", nodeaddr.IPv4, "192.168.9.9/24"},
		{"interface=docker0", nodeaddr.IPv4, "172.17.0.1/16"},
		{"interface=tabby.*", nodeaddr.IPv6, ""}, // link-local only
		{"cidr=10.0.1.0/24", nodeaddr.IPv4, "10.0.1.11/24"},
		{"cidr=172.16.0.0/12", nodeaddr.IPv4, ""}, // docker0 is excluded
		{"cidr=192.168.0.0/16,10.100.0.0/16", nodeaddr.IPv4, "10.100.0.11/16"},
		{"cidr=fd00::/8", nodeaddr.IPv6, "fd00::11/64"},
		{"can-reach=10.100.200.1", nodeaddr.IPv4, "10.100.0.11/16"},
		{"can-reach=8.8.8.8", nodeaddr.IPv4, "10.0.0.11/24"},
		{"can-reach=fd00:100::99", nodeaddr.IPv6, "fd00:100::11/64"},
		{"can-reach=2001:db8::1", nodeaddr.IPv6, ""},
		{"can-reach=10.0.0.1", nodeaddr.IPv6, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			m, err := nodeaddr.ParseMethod(tt.method)
			if err != nil {
				t.Fatal(err)
			}
			got, err := nodeaddr.Detect(m, tt.fam, host, route)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Detect = %s, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != pfx(tt.want) {
				t.Errorf("Detect = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDetectNothing(t *testing.T) {
	_, err := nodeaddr.Detect(nodeaddr.Method{}, nodeaddr.IPv4, host[:4], nil)
	if !errors.Is(err, nodeaddr.ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}

func TestParseMethod(t *testing.T) {
	for _, s := range []string{"first-found", "interface=eth0,ens.*", "can-reach=10.0.0.1", "can-reach=fd00::1", "cidr=10.0.0.0/8,fd00::/8"} {
		m, err := nodeaddr.ParseMethod(s)
		if err != nil {
			t.Errorf("ParseMethod(%q): %v", s, err)
			continue
		}
		if got := m.String(); got != s {
			t.Errorf("ParseMethod(%q).String() = %q", s, got)
		}
	}
	for _, s := range []string{"first", "interface=", "interface=(", "can-reach=example.com", "cidr=10.0.0.0", "skip-interface=eth0"} {
		if _, err := nodeaddr.ParseMethod(s); err == nil {
			t.Errorf("ParseMethod(%q) succeeded, want an error", s)
		}
	}
}

// TestInNetns reads real interfaces and asks the kernel for can-reach
// inside a namespace with two veth pairs.
func TestInNetns(t *testing.T) {
	ns := testkit.NetNS(t)
	name := ns.Path()[len(netns.RunDir)+1:]
	ip := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
	ip("link", "add", "tabbyw0", "type", "veth", "peer", "name", "tabbyw0p")
	ip("link", "add", "up1", "type", "veth", "peer", "name", "up1p")
	for _, l := range []string{"lo", "up0", "up0p", "tabbyw0", "tabbyw0p", "up1", "up1p"} {
		ip("link", "set", l, "up")
	}
	ip("addr", "add", "10.20.0.2/24", "dev", "up0")
	ip("addr", "add", "10.30.0.2/16", "dev", "up1")
	ip("addr", "add", "10.40.0.1/24", "dev", "tabbyw0")
	ip("-6", "addr", "add", "fd00:20::2/64", "dev", "up0", "nodad")
	ip("-6", "addr", "add", "fd00:30::2/64", "dev", "up1", "nodad")
	ip("route", "add", "10.99.0.0/16", "via", "10.30.0.1")

	type result struct {
		Method string
		Fam    nodeaddr.Family
		Addr   netip.Prefix
	}
	var got []result
	want := []result{
		{"first-found", nodeaddr.IPv4, pfx("10.20.0.2/24")},
		{"first-found", nodeaddr.IPv6, pfx("fd00:20::2/64")},
		{"can-reach=10.99.1.1", nodeaddr.IPv4, pfx("10.30.0.2/16")},
		{"can-reach=fd00:30::77", nodeaddr.IPv6, pfx("fd00:30::2/64")},
		{"interface=up1", nodeaddr.IPv4, pfx("10.30.0.2/16")},
		{"cidr=10.40.0.0/16,10.30.0.0/16", nodeaddr.IPv4, pfx("10.30.0.2/16")},
	}
	err := ns.Do(func() error {
		for _, w := range want {
			m, err := nodeaddr.ParseMethod(w.Method)
			if err != nil {
				return err
			}
			p, err := nodeaddr.Autodetect(m, w.Fam)
			if err != nil {
				return err
			}
			got = append(got, result{w.Method, w.Fam, p})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("autodetection (-want +got):\n%s", diff)
	}
}
