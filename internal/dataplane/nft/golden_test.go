package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the kernel's listing")

// Sample objects shared by the golden, transition and drift tests.
var (
	polPass = &policy.CompiledPolicy{ID: policy.GlobalNetworkPolicyID("security.internal"), Tier: "security",
		Ingress: []policy.CompiledRule{
			{Action: v1.Log, Origin: policy.RuleOrigin{Tier: "security", Policy: "gnp:security.internal", Index: 0}},
			{Action: v1.Pass, Src: policy.EntityMatch{Nets: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/8")}}},
			{Action: v1.Deny, Src: policy.EntityMatch{NotNets: []netip.Prefix{pfx("10.0.0.0/8")}}, IPVersion: 4},
		},
		Egress: []policy.CompiledRule{
			{Action: v1.Allow, Protocol: u8(protoUDP), Dst: policy.EntityMatch{Nets: []netip.Prefix{pfx("10.96.0.10/32")}, Ports: []policy.PortRange{{Lo: 53, Hi: 53}}}},
			{Action: v1.Pass},
		},
	}
	polWeb = &policy.CompiledPolicy{ID: policy.NetworkPolicyID("default", "web"), Tier: "default",
		Ingress: []policy.CompiledRule{
			{Action: v1.Allow, Protocol: u8(protoTCP), Src: policy.EntityMatch{Set: "s:clients"},
				Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8080}}, NamedPorts: []policy.SetID{"p:http"}}},
			{Action: v1.Allow, IPVersion: 4, Protocol: u8(protoICMP), ICMP: &policy.ICMPMatch{Type: 8, Code: u8(0)}},
			{Action: v1.Allow, IPVersion: 6, Protocol: u8(protoICMPv6), NotICMP: &policy.ICMPMatch{Type: 130}},
			{Action: v1.Deny, Src: policy.EntityMatch{Set: "s:blocked"}, Dst: policy.EntityMatch{NotPorts: []policy.PortRange{{Lo: 22, Hi: 22}}}},
			{Action: v1.Allow, NotProtocol: u8(protoUDP), Src: policy.EntityMatch{NotSet: "s:clients"}},
			{Action: v1.Deny, Invalid: "unknown named port"},
		},
		Egress: []policy.CompiledRule{{Action: v1.Allow}},
	}
	profNS = &policy.CompiledProfile{ID: "kns.default",
		Ingress: []policy.CompiledRule{{Action: v1.Allow}},
		Egress:  []policy.CompiledRule{{Action: v1.Allow}}}
	setClients = &policy.IPSet{ID: "s:clients", Kind: policy.AddrSet, Description: "role == 'client'",
		Members: []netip.Prefix{pfx("10.65.0.3/32"), pfx("10.65.0.9/32"), pfx("fd65::3/128")}}
	setBlocked = &policy.IPSet{ID: "s:blocked", Kind: policy.AddrSet, HasCIDRs: true,
		Members: []netip.Prefix{pfx("192.0.2.0/24"), pfx("192.0.2.7/32"), pfx("198.51.100.1/32"), pfx("2001:db8::/32")}}
	setHTTP = &policy.IPSet{ID: "p:http", Kind: policy.NamedPortSet,
		NamedPorts: []policy.NamedPortMember{{Addr: netip.MustParseAddr("10.65.0.2"), Protocol: protoTCP, Port: 8080}, {Addr: netip.MustParseAddr("fd65::2"), Protocol: protoTCP, Port: 8080}}}
)

// workloadsRuleset has two workloads, tiers with Pass and Log, sets of
// every kind, a profile and extra allowed source networks.
func workloadsRuleset() *policy.Ruleset {
	web := wep("web", "tabby0000000001", []string{"10.65.0.2", "fd65::2"}, policy.Chain{
		Tiers: []policy.TierPolicies{
			{Name: "security", Policies: []policy.PolicyID{polPass.ID}, EndAction: v1.Deny},
			{Name: "default", Policies: []policy.PolicyID{polWeb.ID}, EndAction: v1.Deny},
		},
		Profiles:  []policy.ProfileID{profNS.ID},
		EndAction: v1.Deny,
	}, policy.Chain{
		Tiers:     []policy.TierPolicies{{Name: "security", Policies: []policy.PolicyID{polPass.ID}, EndAction: v1.Pass}},
		Profiles:  []policy.ProfileID{profNS.ID},
		EndAction: v1.Deny,
	})
	client := wep("client", "tabby0000000002", []string{"10.65.0.3", "fd65::3"}, tiered(nil, profNS.ID), tiered(nil, profNS.ID))
	client.AllowSpoofedSources = []netip.Prefix{pfx("10.65.1.0/24"), pfx("10.65.2.1/32")}
	return newRS([]*policy.EndpointRules{web, client}, []*policy.CompiledPolicy{polPass, polWeb},
		[]*policy.CompiledProfile{profNS}, []*policy.IPSet{setClients, setBlocked, setHTTP})
}

// hostRuleset has a named and an all-interfaces host endpoint with
// failsafe ports and forward policy.
func hostRuleset() *policy.Ruleset {
	hostPol := &policy.CompiledPolicy{ID: policy.GlobalNetworkPolicyID("host-ssh"), Tier: "default",
		Ingress: []policy.CompiledRule{{Action: v1.Allow, Protocol: u8(protoTCP), Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 2222, Hi: 2222}}}}},
		Egress:  []policy.CompiledRule{{Action: v1.Allow}}}
	fwdPol := &policy.CompiledPolicy{ID: policy.GlobalNetworkPolicyID("fwd"), Tier: "default",
		Ingress: []policy.CompiledRule{{Action: v1.Deny, Src: policy.EntityMatch{Nets: []netip.Prefix{pfx("203.0.113.0/24")}}}}}
	normal := func(failsafe bool) policy.Chain {
		return policy.Chain{Failsafe: failsafe, Tiers: []policy.TierPolicies{{Name: "default", Policies: []policy.PolicyID{hostPol.ID}, EndAction: v1.Deny}}, EndAction: v1.Deny}
	}
	eth0 := &policy.EndpointRules{ID: policy.HostEndpointID("node1-eth0"), Kind: policy.HostEndpoint, InterfaceName: "eth0",
		Addrs: []netip.Prefix{pfx("192.168.1.10/32")}, Ingress: normal(true), Egress: normal(true),
		Host: &policy.HostChains{
			ForwardIngress: policy.Chain{Tiers: []policy.TierPolicies{{Name: "default", Policies: []policy.PolicyID{fwdPol.ID}, EndAction: v1.Pass}}, EndAction: v1.Allow},
			ForwardEgress:  policy.Chain{EndAction: v1.Allow},
		}}
	all := &policy.EndpointRules{ID: policy.HostEndpointID("node1-all"), Kind: policy.HostEndpoint, InterfaceName: "*",
		Ingress: normal(true), Egress: normal(true), Host: &policy.HostChains{ForwardIngress: policy.Chain{EndAction: v1.Allow}, ForwardEgress: policy.Chain{EndAction: v1.Allow}}}
	byIP := &policy.EndpointRules{ID: policy.HostEndpointID("node1-byip"), Kind: policy.HostEndpoint, Addrs: []netip.Prefix{pfx("192.168.1.10/32")}}
	rs := newRS([]*policy.EndpointRules{eth0, all, byIP}, []*policy.CompiledPolicy{hostPol, fwdPol}, nil, nil)
	rs.Failsafe = policy.Failsafe{
		Inbound:  []policy.FailsafeRule{{Protocol: protoTCP, Port: 22}, {Protocol: protoTCP, Port: 179, Net: pfx("192.168.1.0/24")}, {Protocol: protoUDP, Port: 68}},
		Outbound: []policy.FailsafeRule{{Protocol: protoUDP, Port: 53}, {Protocol: protoTCP, Port: 2379, Net: pfx("fd00:1::/64")}},
	}
	return rs
}

var goldenCases = []struct {
	name string
	cfg  Config
	rs   func() *policy.Ruleset
}{
	{"skeleton", Config{}, func() *policy.Ruleset { return policy.NewRuleset("node1") }},
	{"workloads", Config{
		NATOutgoingPools: []netip.Prefix{pfx("10.65.0.0/16"), pfx("fd65::/48")},
		AllPools:         []netip.Prefix{pfx("10.65.0.0/16"), pfx("10.66.0.0/16"), pfx("fd65::/48")},
	}, workloadsRuleset},
	{"host-endpoints", Config{EndpointToHost: EndpointToHostReturn, LogPrefix: "host", NATOutgoingAddress: netip.MustParseAddr("192.168.1.10"),
		NATOutgoingPools: []netip.Prefix{pfx("10.65.0.0/16")}, AllPools: []netip.Prefix{pfx("10.65.0.0/16")}}, hostRuleset},
}

// TestGolden renders representative states into a fresh namespace and
// compares `nft -n list table inet tabby` with testdata/NAME.golden
// (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	requireNft(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			ns := testkit.NetNS(t)
			r := newRenderer(t, ns, tc.cfg)
			r.Set(tc.rs())
			mustApply(t, r)
			got := listTable(t, ns, "tabby")
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				must(t, os.MkdirAll("testdata", 0o755))
				must(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			must(t, err)
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("nft list table differs from %s (-want +got):\n%s", path, diff)
			}
			// The same state again, as new objects (rendered again):
			// nothing to write, no transaction.
			gen := genID(t, r)
			r.Set(tc.rs())
			if res := mustApply(t, r); res.Writes != 0 {
				t.Errorf("second Apply wrote %d messages: %+v", res.Writes, res)
			}
			if res := mustResync(t, r); res.Writes != 0 || res.Repairs != 0 {
				t.Errorf("Resync after Apply: %+v, want no writes and no repairs", res)
			}
			if g := genID(t, r); g != gen {
				t.Errorf("ruleset generation changed from %d to %d without changes", gen, g)
			}
		})
	}
}
