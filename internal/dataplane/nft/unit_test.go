package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
)

// Tests of the pure parts: no kernel needed.

func TestConfigValidate(t *testing.T) {
	var ok Config
	ok.Defaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"table name":   func(c *Config) { c.TableName = "bad name" },
		"prefix":       func(c *Config) { c.InterfacePrefix = "waytoolong" },
		"action":       func(c *Config) { c.EndpointToHost = "Maybe" },
		"log quote":    func(c *Config) { c.LogPrefix = `a"b` },
		"log long":     func(c *Config) { c.LogPrefix = strings.Repeat("x", 128) },
		"marks equal":  func(c *Config) { c.PassMark = c.AcceptMark },
		"marks 2 bits": func(c *Config) { c.AcceptMark = 3 },
		"nat v6 addr":  func(c *Config) { c.NATOutgoingAddress = netip.MustParseAddr("fd00::1") },
		"bad pool":     func(c *Config) { c.AllPools = []netip.Prefix{{}} },
	} {
		c := ok
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{policyChainName(policy.NetworkPolicyID("default", "web"), policy.Ingress), "pi-np/default/web"},
		{policyChainName(policy.GlobalNetworkPolicyID("security.x"), policy.Egress), "po-gnp/security.x"},
		{profileChainName("kns.default", policy.Egress), "ro-kns.default"},
		{addrSetName("s:AbC-_1", fam4, false), "s-AbC-_1-v4"},
		{addrSetName("s:AbC-_1", fam6, true), "s-AbC-_1-v6net"},
		{namedPortSetName("p:xyz", fam6), "p-xyz-v6"},
		{objName(kindHostIn, "*"), "hi-_nbeirqhlwf7toquy"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	long := policyChainName(policy.NetworkPolicyID(strings.Repeat("n", 63), strings.Repeat("p", 200)), policy.Ingress)
	if len(long) > maxNameLen || !strings.HasPrefix(long, "pi-_") {
		t.Errorf("long name not hashed: %q", long)
	}
	if objName("pi", "a:b") == objName("pi", "a/b") {
		t.Errorf("hashed and readable names collide")
	}
}

func TestLCS(t *testing.T) {
	for _, tc := range []struct {
		a, b         string
		keptA, keptB string
	}{
		{"abc", "abc", "abc", "abc"},
		{"abc", "axc", "ac", "ac"},
		{"", "abc", "", ""},
		{"abcd", "bd", "bd", "bd"},
		{"aab", "aba", "ab", "ab"},
	} {
		a, b := strings.Split(tc.a, ""), strings.Split(tc.b, "")
		if tc.a == "" {
			a = nil
		}
		ka, kb := lcs(a, b)
		var gotA, gotB string
		for i, k := range ka {
			if k {
				gotA += a[i]
			}
		}
		for i, k := range kb {
			if k {
				gotB += b[i]
			}
		}
		if gotA != tc.keptA || gotB != tc.keptB {
			t.Errorf("lcs(%q, %q) kept %q, %q; want %q, %q", tc.a, tc.b, gotA, gotB, tc.keptA, tc.keptB)
		}
	}
}

func TestRanges(t *testing.T) {
	got := outermost([]netip.Prefix{pfx("10.1.0.0/16"), pfx("10.0.0.0/8"), pfx("192.168.1.1/32"), pfx("10.2.3.4/32"), pfx("192.168.1.0/24")})
	want := []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.1.0/24")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("outermost (-want +got):\n%s", diff)
	}
	r := rangeOf(pfx("10.1.2.0/23"))
	if netip.AddrFrom4([4]byte(r.start)) != netip.MustParseAddr("10.1.2.0") || netip.AddrFrom4([4]byte(r.end)) != netip.MustParseAddr("10.1.4.0") {
		t.Errorf("rangeOf(10.1.2.0/23) = %v", r)
	}
	if r := rangeOf(pfx("255.255.255.0/24")); r.end != nil {
		t.Errorf("range to the top has end %v", r.end)
	}
	if r := rangeOf(pfx("::/0")); r.end != nil || len(r.start) != 16 {
		t.Errorf("rangeOf(::/0) = %v", r)
	}
	ports := mergePortRanges([]policy.PortRange{{Lo: 90, Hi: 80}, {Lo: 81, Hi: 85}, {Lo: 100, Hi: 100}, {Lo: 101, Hi: 101}})
	if diff := cmp.Diff([]policy.PortRange{{Lo: 80, Hi: 90}, {Lo: 100, Hi: 101}}, ports); diff != "" {
		t.Errorf("mergePortRanges (-want +got):\n%s", diff)
	}
}

// TestElementsFromKernel pairs interval starts and ends as the kernel
// lists them (in any order, adjacent ranges sharing a key, nft's extra end
// element at zero, a range open to the top).
func TestElementsFromKernel(t *testing.T) {
	want := addrSetSpec("x", fam4, []netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.1.0/24"), pfx("255.0.0.0/8")}, true)
	var kes []kernelElem
	for _, e := range want.elems {
		for _, ke := range e.kernelElements() {
			var flags uint32
			if ke.IntervalEnd {
				flags = unix.NFT_SET_ELEM_INTERVAL_END
			}
			kes = append([]kernelElem{{key: ke.Key, flags: flags}}, kes...)
		}
	}
	kes = append(kes, kernelElem{key: []byte{0, 0, 0, 0}, flags: unix.NFT_SET_ELEM_INTERVAL_END})
	got := elementsFromKernel(want.shape, kes)
	if diff := cmp.Diff(want.elems, got, cmp.AllowUnexported(element{})); diff != "" {
		t.Errorf("elementsFromKernel (-want +got):\n%s", diff)
	}
}

// TestRuleText checks how compiled rules expand into nft rules.
func TestRuleText(t *testing.T) {
	cfg := Config{}
	cfg.Defaults()
	names := func(id policy.SetID) ([2]string, bool) {
		if id == "s:missing" {
			return [2]string{}, false
		}
		return [2]string{string(id) + "-4", string(id) + "-6"}, true
	}
	origin := policy.RuleOrigin{Tier: "default", Policy: "np:ns/p", Direction: policy.Egress, Index: 3}
	for _, tc := range []struct {
		name string
		rule policy.CompiledRule
		want []string
	}{
		{"allow all", policy.CompiledRule{Action: v1.Allow}, []string{"meta mark set meta mark | 0x00010000 return"}},
		{"pass", policy.CompiledRule{Action: v1.Pass}, []string{"meta mark set meta mark | 0x00020000 return"}},
		{"log", policy.CompiledRule{Action: v1.Log, Origin: origin}, []string{`log prefix "tabby-packet default/np:ns/p/egress/3 "`}},
		{"invalid", policy.CompiledRule{Action: v1.Allow, Invalid: "x"}, nil},
		{"set both families", policy.CompiledRule{Action: v1.Deny, Src: policy.EntityMatch{Set: "s:a"}}, []string{
			"meta nfproto ipv4 ip saddr @s:a-4 drop", "meta nfproto ipv6 ip6 saddr @s:a-6 drop"}},
		{"v4 nets only", policy.CompiledRule{Action: v1.Deny, Dst: policy.EntityMatch{Nets: []netip.Prefix{pfx("10.0.0.0/8")}}}, []string{
			"meta nfproto ipv4 ip daddr 10.0.0.0/8 drop"}},
		{"missing set", policy.CompiledRule{Action: v1.Deny, Src: policy.EntityMatch{Set: "s:missing"}}, nil},
		{"missing not-set", policy.CompiledRule{Action: v1.Deny, IPVersion: 4, Src: policy.EntityMatch{NotSet: "s:missing"}}, []string{"meta nfproto ipv4 drop"}},
		{"ports or named ports", policy.CompiledRule{Action: v1.Deny, IPVersion: 6, Protocol: u8(protoTCP),
			Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 80, Hi: 80}}, NamedPorts: []policy.SetID{"p:n"}}}, []string{
			"meta nfproto ipv6 meta l4proto 6 th dport 80 drop",
			"meta nfproto ipv6 meta l4proto 6 ip6 daddr . meta l4proto . th dport @p:n-6 drop"}},
		{"not ports without protocol", policy.CompiledRule{Action: v1.Deny, Dst: policy.EntityMatch{NotPorts: []policy.PortRange{{Lo: 1, Hi: 1023}}}}, []string{
			"meta l4proto { 6, 17, 132, 136 } th dport != 1-1023 drop"}},
		{"icmp code", policy.CompiledRule{Action: v1.Allow, IPVersion: 4, ICMP: &policy.ICMPMatch{Type: 3, Code: u8(4)}}, []string{
			"meta nfproto ipv4 meta l4proto 1 icmp type . icmp code 3 . 4 meta mark set meta mark | 0x00010000 return"}},
		{"not nets /0", policy.CompiledRule{Action: v1.Allow, Src: policy.EntityMatch{NotNets: []netip.Prefix{pfx("0.0.0.0/0")}}}, []string{
			"meta nfproto ipv6 meta mark set meta mark | 0x00010000 return"}},
	} {
		ctx := &ruleCtx{cfg: &cfg, names: names}
		var got []string
		for _, r := range ctx.renderRule(&tc.rule) {
			got = append(got, r.text)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestUserData(t *testing.T) {
	r := newRule().drop().withComment("hello").rule()
	if got := ruleIDFromUserData(r.userData()); got != r.id {
		t.Errorf("id round trip: %q, want %q", got, r.id)
	}
	if ruleIDFromUserData([]byte{0, 3, 'a', 0}) != "" {
		t.Errorf("truncated user data gave an id")
	}
	if a, b := newRule().drop().rule(), newRule().drop().withComment("x").rule(); a.id == b.id {
		t.Errorf("comment not part of the identity")
	}
}
