package nft

import (
	"net"
	"net/netip"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/policy"
)

// TestPackets moves real TCP, UDP and ICMP packets, over IPv4 and IPv6,
// between workloads on one host and checks that policy decides:
//
//	A ingress: tier default [a-in]: allow tcp/8080, udp/9090 and ICMP from
//	           set {B}; end of tier Deny
//	B ingress: tier security [pass-c]: pass from set {C}, allow udp/9091
//	           from set {A}; end of tier Deny; then profile allow-all
//	C egress:  tier default [c-out]: deny tcp/7070, allow everything else
//	C ingress, B egress, A egress: allow
//
// It also checks anti-spoofing, workload-to-host traffic and that a
// workload nobody programmed is isolated.
func TestPackets(t *testing.T) {
	l := newLab(t)
	a := l.addWorkload("a", "10.65.0.2", "fd65::2")
	b := l.addWorkload("b", "10.65.0.3", "fd65::3")
	c := l.addWorkload("c", "10.65.0.4", "fd65::4")
	d := l.addWorkload("d", "10.65.0.5", "fd65::5") // never in the first ruleset
	r := newRenderer(t, l.hostNS, Config{})
	r.Set(policy.NewRuleset("node1"))
	mustApply(t, r) // isolate everything before the host routes
	l.program()

	// Host addresses for workload-to-host traffic.
	hostLo, err := l.host.LinkByName("lo")
	must(t, err)
	hostV4, hostV6 := netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("fd09::9")
	must(t, l.host.AddrAdd(nl.Addr{LinkIndex: hostLo.Index, Prefix: netip.PrefixFrom(hostV4, 32)}))
	must(t, l.host.AddrAdd(nl.Addr{LinkIndex: hostLo.Index, Prefix: netip.PrefixFrom(hostV6, 128), NoDAD: true}))

	setOf := func(id policy.SetID, ws ...*workload) *policy.IPSet {
		s := &policy.IPSet{ID: id, Kind: policy.AddrSet}
		for _, w := range ws {
			s.Members = append(s.Members, netip.PrefixFrom(w.v4, 32), netip.PrefixFrom(w.v6, 128))
		}
		return s
	}
	setA, setB, setC := setOf("s:set-a", a), setOf("s:set-b", b), setOf("s:set-c", c)
	fromB := policy.EntityMatch{Set: setB.ID}
	aIn := &policy.CompiledPolicy{ID: policy.NetworkPolicyID("default", "a-in"), Tier: "default", Ingress: []policy.CompiledRule{
		{Action: v1.Allow, Protocol: u8(protoTCP), Src: fromB, Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 8080, Hi: 8080}}}},
		{Action: v1.Allow, Protocol: u8(protoUDP), Src: fromB, Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 9090, Hi: 9090}}}},
		{Action: v1.Allow, IPVersion: 4, Protocol: u8(protoICMP), Src: fromB},
		{Action: v1.Allow, IPVersion: 6, Protocol: u8(protoICMPv6), Src: fromB},
	}}
	passC := &policy.CompiledPolicy{ID: policy.GlobalNetworkPolicyID("security.pass-c"), Tier: "security", Ingress: []policy.CompiledRule{
		{Action: v1.Pass, Src: policy.EntityMatch{Set: setC.ID}},
		{Action: v1.Allow, Protocol: u8(protoUDP), Src: policy.EntityMatch{Set: setA.ID}, Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 9091, Hi: 9091}}}},
	}}
	cOut := &policy.CompiledPolicy{ID: policy.NetworkPolicyID("default", "c-out"), Tier: "default", Egress: []policy.CompiledRule{
		{Action: v1.Deny, Protocol: u8(protoTCP), Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 7070, Hi: 7070}}}},
		{Action: v1.Allow},
	}}
	allowAllProf := &policy.CompiledProfile{ID: "allow-all",
		Ingress: []policy.CompiledRule{{Action: v1.Allow}}, Egress: []policy.CompiledRule{{Action: v1.Allow}}}
	profOnly := policy.Chain{Profiles: []policy.ProfileID{"allow-all"}, EndAction: v1.Deny}

	epA := wep("a", a.iface, []string{"10.65.0.2", "fd65::2"}, tiered([]policy.PolicyID{aIn.ID}), profOnly)
	epB := wep("b", b.iface, []string{"10.65.0.3", "fd65::3"}, policy.Chain{
		Tiers:     []policy.TierPolicies{{Name: "security", Policies: []policy.PolicyID{passC.ID}, EndAction: v1.Deny}},
		Profiles:  []policy.ProfileID{"allow-all"},
		EndAction: v1.Deny,
	}, profOnly)
	epC := wep("c", c.iface, []string{"10.65.0.4", "fd65::4"}, profOnly, tiered([]policy.PolicyID{cOut.ID}))
	rs := newRS([]*policy.EndpointRules{epA, epB, epC}, []*policy.CompiledPolicy{aIn, passC, cOut},
		[]*policy.CompiledProfile{allowAllProf}, []*policy.IPSet{setA, setB, setC})
	r.Set(rs)
	mustApply(t, r)
	for _, w := range []*workload{a, b, c} {
		if st := r.EndpointStatus(w.id); !st.Programmed {
			t.Fatalf("%s not programmed: %+v", w.name, st)
		}
	}
	if st := r.EndpointStatus(d.id); st.Programmed {
		t.Fatalf("d programmed before it is in the ruleset")
	}

	for _, w := range []*workload{a, b, c, d} {
		for _, port := range []int{7070, 8080, 8081} {
			tcpServer(t, w.ns, "tcp", port)
		}
		newUDPServer(t, w.ns, "udp", 9090)
		newUDPServer(t, w.ns, "udp", 9091)
	}
	tcp := func(from, _ *workload, dst netip.Addr, port int) func(time.Duration) error {
		return func(timeout time.Duration) error { return tcpDial(from.ns, dst, port, timeout) }
	}
	udp := func(from *workload, dst netip.Addr, port int) func(time.Duration) error {
		return func(timeout time.Duration) error { return udpExchange(from.ns, netip.Addr{}, dst, port, "x", timeout) }
	}
	icmp := func(from *workload, dst netip.Addr) func(time.Duration) error {
		return func(timeout time.Duration) error { return ping(from.ns, dst, timeout) }
	}

	for _, fam := range []struct {
		name string
		addr func(*workload) netip.Addr
	}{{"v4", func(w *workload) netip.Addr { return w.v4 }}, {"v6", func(w *workload) netip.Addr { return w.v6 }}} {
		ip := fam.addr
		t.Run(fam.name, func(t *testing.T) {
			expect(t,
				flow{"B→A tcp/8080", true, tcp(b, a, ip(a), 8080)},
				flow{"C→A tcp/8080 (C not in A's source set)", false, tcp(c, a, ip(a), 8080)},
				flow{"B→A tcp/8081 (port not allowed)", false, tcp(b, a, ip(a), 8081)},
				flow{"B→A udp/9090", true, udp(b, ip(a), 9090)},
				flow{"C→A udp/9090", false, udp(c, ip(a), 9090)},
				flow{"B→A ping", true, icmp(b, ip(a))},
				flow{"C→A ping", false, icmp(c, ip(a))},
				flow{"C→B tcp/8080 (passed to B's profile)", true, tcp(c, b, ip(b), 8080)},
				flow{"A→B tcp/8080 (end of tier security)", false, tcp(a, b, ip(b), 8080)},
				flow{"A→B udp/9091 (allowed in tier security)", true, udp(a, ip(b), 9091)},
				flow{"C→B tcp/7070 (C's egress denies)", false, tcp(c, b, ip(b), 7070)},
				flow{"A→C tcp/7070", true, tcp(a, c, ip(c), 7070)},
				flow{"D→C ping (D not programmed)", false, icmp(d, ip(c))},
			)
		})
	}

	t.Run("workload-to-host", func(t *testing.T) {
		tcpServer(t, l.hostNS, "tcp", 7000)
		toHost := func(dst netip.Addr) func(time.Duration) error {
			return func(to time.Duration) error { return tcpDial(a.ns, dst, 7000, to) }
		}
		expect(t,
			flow{"A→host tcp v4 (Drop)", false, toHost(hostV4)},
			flow{"A→host tcp v6 (Drop)", false, toHost(hostV6)},
			// The host reaches its workloads whatever the action.
			flow{"host→A tcp/8081", true, func(to time.Duration) error { return tcpDial(l.hostNS, a.v4, 8081, to) }},
		)

		// A restarted agent with Accept: Resync changes only the end of
		// wl-to-host.
		r2 := newRenderer(t, l.hostNS, Config{EndpointToHost: EndpointToHostAccept})
		r2.Set(rs)
		res := mustResync(t, r2)
		if res.RulesReplaced+res.RulesAdded+res.RulesDeleted != 1 {
			t.Errorf("switching to Accept changed more than one rule: %+v", res)
		}
		expect(t,
			flow{"A→host tcp v4 (Accept)", true, toHost(hostV4)},
			flow{"A→host tcp v6 (Accept)", true, toHost(hostV6)},
			flow{"A→host ping v4 (Accept)", true, icmp(a, hostV4)},
			flow{"A→host ping v6 (Accept)", true, icmp(a, hostV6)},
		)
		r.Set(rs)
		mustResync(t, r) // back to Drop
		expect(t, flow{"A→host tcp (Drop again)", false, toHost(hostV4)})
	})

	t.Run("spoofing", func(t *testing.T) {
		// Strict reverse-path filtering would drop these too; turn it off
		// on A's host side so that only the nft rules are tested.
		must(t, l.host.SysctlSet("net.ipv4.conf."+a.iface+".rp_filter", "0"))
		eth0, err := a.h.LinkByName("eth0")
		must(t, err)
		spoof4, spoof6 := netip.MustParseAddr("10.65.0.99"), netip.MustParseAddr("fd65::99")
		must(t, a.h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(spoof4, 32)}))
		must(t, a.h.AddrAdd(nl.Addr{LinkIndex: eth0.Index, Prefix: netip.PrefixFrom(spoof6, 128), NoDAD: true}))
		srv := newUDPServer(t, c.ns, "udp", 9999)
		send := func(src, dst netip.Addr, payload string) {
			must(t, a.ns.Do(func() error {
				conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9999)))
				if err != nil {
					return err
				}
				defer conn.Close()
				for range 5 {
					_, _ = conn.Write([]byte(payload))
					time.Sleep(50 * time.Millisecond)
				}
				return nil
			}))
		}
		check := func(src, dst netip.Addr, payload string, want bool) {
			t.Helper()
			send(src, dst, payload)
			deadline := time.Now().Add(denyTimeout)
			for !srv.got(payload) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if srv.got(payload) != want {
				t.Errorf("from %s to %s: delivered=%v, want %v", src, dst, !want, want)
			}
		}
		check(a.v4, c.v4, "own4", true)
		check(a.v6, c.v6, "own6", true)
		check(spoof4, c.v4, "spoof4", false)
		check(spoof6, c.v6, "spoof6", false)

		// Allowed once they are among A's allowed spoofed sources (an
		// interval rule for the /28, the hash set for the /128).
		epA2 := *epA
		epA2.AllowSpoofedSources = []netip.Prefix{netip.MustParsePrefix("10.65.0.96/28"), netip.PrefixFrom(spoof6, 128)}
		rs.Endpoints[epA.ID] = &epA2
		r.Set(rs)
		mustApply(t, r)
		check(spoof4, c.v4, "spoof4-allowed", true)
		check(spoof6, c.v6, "spoof6-allowed", true)
	})

	t.Run("new-endpoint", func(t *testing.T) {
		epD := wep("d", d.iface, []string{"10.65.0.5", "fd65::5"}, profOnly, profOnly)
		rs.Endpoints[epD.ID] = epD
		r.Set(rs)
		res := mustApply(t, r)
		if res.ChainsAdded != 2 || res.ChainsDeleted != 0 {
			t.Errorf("adding an endpoint: %+v, want 2 chains added", res)
		}
		if !r.EndpointStatus(d.id).Programmed {
			t.Errorf("d not programmed")
		}
		expect(t, flow{"D→C ping", true, icmp(d, c.v4)}, flow{"D→C ping v6", true, icmp(d, c.v6)})
	})
}
