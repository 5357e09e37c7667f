package nft

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
)

// This file renders the fixed skeleton of the table (base chains and
// dispatch chains) and the per-endpoint chains.

// Base chain hooks. All base chains accept by default: Tabby's verdicts
// are explicit drops, and traffic Tabby has no opinion about is left to
// the host's other tables.
var (
	hookRaw     = &hookSpec{typ: nftables.ChainTypeFilter, hook: unix.NF_INET_PRE_ROUTING, priority: -300, policy: 1}
	hookForward = &hookSpec{typ: nftables.ChainTypeFilter, hook: unix.NF_INET_FORWARD, priority: 0, policy: 1}
	hookInput   = &hookSpec{typ: nftables.ChainTypeFilter, hook: unix.NF_INET_LOCAL_IN, priority: 0, policy: 1}
	hookOutput  = &hookSpec{typ: nftables.ChainTypeFilter, hook: unix.NF_INET_LOCAL_OUT, priority: 0, policy: 1}
	hookNAT     = &hookSpec{typ: nftables.ChainTypeNAT, hook: unix.NF_INET_POST_ROUTING, priority: 100, policy: 1}
)

// ICMPv6 neighbour discovery types a workload may always send to its host:
// router solicitation, neighbour solicitation and advertisement.
var ndTypes = []uint8{133, 135, 136}

func chain(name string, hook *hookSpec, rules ...*ruleSpec) *chainSpec {
	return &chainSpec{name: name, hook: hook, rules: rules}
}

// staticChains are the chains that depend only on the configuration.
func staticChains(cfg *Config) []*chainSpec {
	p := cfg.InterfacePrefix
	estRel := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	var endAction *ruleSpec
	switch cfg.EndpointToHost {
	case EndpointToHostDrop:
		endAction = newRule().drop().withComment("defaultEndpointToHostAction Drop").rule()
	case EndpointToHostAccept:
		endAction = newRule().accept().withComment("defaultEndpointToHostAction Accept").rule()
	}
	wlToHost := chain(chainWlToHost, nil,
		newRule().l4proto(protoICMPv6, false).icmp6TypesIn(ndTypes...).accept().withComment("neighbour discovery").rule(),
		newRule().jump(chainFromWl).rule(),
	)
	if endAction != nil {
		wlToHost.rules = append(wlToHost.rules, endAction)
	}
	return []*chainSpec{
		chain(chainForward, hookForward,
			newRule().ctState(estRel, "established,related").accept().rule(),
			newRule().ifname(false, p, true, false).jump(chainFromWl).rule(),
			newRule().ifname(false, p, true, true).jump(chainHepFwdIn).rule(),
			newRule().ifname(true, p, true, false).jump(chainToWl).rule(),
			newRule().ifname(true, p, true, true).jump(chainHepFwdOut).rule(),
		),
		chain(chainInput, hookInput,
			newRule().ctState(estRel, "established,related").accept().rule(),
			newRule().ifname(false, "lo", false, false).accept().rule(),
			newRule().ifname(false, p, true, false).jump(chainWlToHost).rule(),
			newRule().jump(chainHepIn).rule(),
		),
		chain(chainOutput, hookOutput,
			newRule().ctState(estRel, "established,related").accept().rule(),
			newRule().ifname(true, "lo", false, false).accept().rule(),
			newRule().ifname(true, p, true, false).accept().withComment("host to local workloads").rule(),
			newRule().jump(chainHepOut).rule(),
		),
		wlToHost,
		chain(chainFromWl, nil,
			newRule().ctState(expr.CtStateBitINVALID, "invalid").drop().rule(),
			newRule().vmap(false, mapFromWl).rule(),
			newRule().drop().withComment("unknown workload interface").rule(),
		),
		chain(chainToWl, nil,
			newRule().ctState(expr.CtStateBitINVALID, "invalid").drop().rule(),
			newRule().vmap(true, mapToWl).rule(),
			newRule().drop().withComment("unknown workload interface").rule(),
		),
		natChain(cfg),
	}
}

// natChain masquerades traffic from natOutgoing pools to destinations
// outside all pools.
func natChain(cfg *Config) *chainSpec {
	v4 := newRule().nfproto(fam4).addrLookup(fam4, false, setNATOut4, false).addrLookup(fam4, true, setAllPool4, true)
	if cfg.NATOutgoingAddress.IsValid() {
		v4.snat4(cfg.NATOutgoingAddress)
	} else {
		v4.masquerade()
	}
	v6 := newRule().nfproto(fam6).addrLookup(fam6, false, setNATOut6, false).addrLookup(fam6, true, setAllPool6, true).masquerade()
	return chain(chainNAT, hookNAT, v4.rule(), v6.rule())
}

// poolSets are the sets natChain uses.
func poolSets(nat, all []netip.Prefix) []*setSpec {
	return []*setSpec{
		addrSetSpec(setNATOut4, fam4, prefixesOf(nat, fam4), true),
		addrSetSpec(setNATOut6, fam6, prefixesOf(nat, fam6), true),
		addrSetSpec(setAllPool4, fam4, prefixesOf(all, fam4), true),
		addrSetSpec(setAllPool6, fam6, prefixesOf(all, fam6), true),
	}
}

// dispatch is what the endpoints contribute to the shared chains and maps.
type dispatch struct {
	spoofRules []*ruleSpec         // raw chain: extra allowed source networks
	star       map[string]string   // dispatch chain → all-interfaces host endpoint chain
	maps       map[string]*setSpec // dispatch maps
	spoof      [2]*setSpec         // (interface, source) pairs, per family
}

// dispatchChains are the chains whose rules depend on the endpoints: the
// anti-spoofing chain and the host endpoint dispatch chains.
func dispatchChains(cfg *Config, d *dispatch) []*chainSpec {
	raw := chain(chainRaw, hookRaw,
		newRule().ifname(false, cfg.InterfacePrefix, true, true).ret().rule(),
		newRule().nfproto(fam4).spoofLookup(fam4, setSpoof4).ret().rule(),
		newRule().nfproto(fam6).spoofLookup(fam6, setSpoof6).ret().rule(),
		newRule().nfproto(fam6).addrPrefix(fam6, false, netip.MustParsePrefix("fe80::/10"), false).ret().withComment("link-local").rule(),
		newRule().nfproto(fam6).addrPrefix(fam6, false, netip.MustParsePrefix("::/128"), false).l4proto(protoICMPv6, false).ret().withComment("duplicate address detection").rule(),
	)
	raw.rules = append(raw.rules, d.spoofRules...)
	raw.rules = append(raw.rules, newRule().drop().withComment("source address not owned by the workload").rule())

	out := []*chainSpec{raw}
	for _, dc := range []struct {
		name string
		out  bool
	}{{chainHepIn, false}, {chainHepOut, true}, {chainHepFwdIn, false}, {chainHepFwdOut, true}} {
		c := chain(dc.name, nil, newRule().vmap(dc.out, dc.name).rule())
		if star := d.star[dc.name]; star != "" {
			c.rules = append(c.rules, newRule().goTo(star).withComment("all-interfaces host endpoint").rule())
		}
		out = append(out, c)
	}
	return out
}

// failsafeChains accept the failsafe ports of host endpoints.
func failsafeChains(fs policy.Failsafe) []*chainSpec {
	render := func(rs []policy.FailsafeRule, inbound bool) []*ruleSpec {
		var out []*ruleSpec
		for _, r := range rs {
			b := newRule()
			if r.Net.IsValid() {
				f := famOf(r.Net.Addr())
				b.nfproto(f)
				b.l4proto(r.Protocol, false)
				if r.Net.Bits() > 0 {
					b.addrPrefix(f, !inbound, r.Net, false)
				}
			} else {
				b.l4proto(r.Protocol, false)
			}
			b.ports(true, []policy.PortRange{{Lo: r.Port, Hi: r.Port}}, false).accept()
			out = append(out, b.rule())
		}
		return out
	}
	return []*chainSpec{
		chain(chainFailIn, nil, render(fs.Inbound, true)...),
		chain(chainFailOut, nil, render(fs.Outbound, false)...),
	}
}

// endpointChain renders one chain of an endpoint:
//
//	meta mark set meta mark & ~(ACCEPT|PASS)
//	[ct state invalid drop]                      host endpoints
//	[jump failsafe-in]                           Chain.Failsafe
//	for each tier:
//	  [meta mark set meta mark & ~PASS]          tiers after the first
//	  for each policy:
//	    [meta mark & PASS == 0] jump pi-POLICY   guard from the second policy
//	    meta mark & ACCEPT == ACCEPT return
//	  meta mark & PASS == 0 drop                 tier end action Deny
//	for each profile:
//	  jump ri-PROFILE
//	  meta mark & ACCEPT == ACCEPT return
//	drop | meta mark set meta mark | ACCEPT      EndAction Deny | Allow
//
// A policy chain allows with "meta mark set meta mark | ACCEPT return",
// denies with "drop" and passes with "meta mark set meta mark | PASS
// return". So the endpoint chain returns with ACCEPT set if the packet is
// allowed, and drops it otherwise; the base chain then goes on (a
// forwarded packet from one local workload to another is checked by the
// destination's ingress chain too).
func endpointChain(cfg *Config, name string, ch *policy.Chain, d policy.Direction, host bool) *chainSpec {
	acc, pass := cfg.AcceptMark, cfg.PassMark
	c := chain(name, nil, newRule().markClear(acc|pass).rule())
	if host {
		c.rules = append(c.rules, newRule().ctState(expr.CtStateBitINVALID, "invalid").drop().rule())
	}
	if ch.Failsafe {
		fs := chainFailIn
		if d == policy.Egress {
			fs = chainFailOut
		}
		c.rules = append(c.rules, newRule().jump(fs).rule())
	}
	accepted := newRule().markIs(acc, acc).ret().rule()
	for ti, t := range ch.Tiers {
		if ti > 0 {
			c.rules = append(c.rules, newRule().markClear(pass).withComment("tier "+t.Name).rule())
		}
		for pi, pid := range t.Policies {
			b := newRule()
			if pi > 0 {
				b.markIs(pass, 0)
			}
			b.jump(policyChainName(pid, d))
			if pi == 0 && ti == 0 {
				b.withComment("tier " + t.Name)
			}
			c.rules = append(c.rules, b.rule(), accepted)
		}
		if t.EndAction != v1.Pass && len(t.Policies) > 0 {
			c.rules = append(c.rules, newRule().markIs(pass, 0).drop().withComment("end of tier "+t.Name).rule())
		}
	}
	for _, pid := range ch.Profiles {
		c.rules = append(c.rules, newRule().jump(profileChainName(pid, d)).rule(), accepted)
	}
	switch ch.EndAction {
	case v1.Deny:
		c.rules = append(c.rules, newRule().drop().withComment("no policy or profile allowed it").rule())
	case v1.Allow:
		c.rules = append(c.rules, newRule().markSet(acc).rule())
	}
	return c
}
