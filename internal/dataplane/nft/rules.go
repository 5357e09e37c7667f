package nft

import (
	"crypto/sha256"
	"fmt"
	"net/netip"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
)

// This file renders compiled policy and profile rules.

// IP protocol numbers.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

// setNames resolves a SetID to the names of its kernel sets, per family;
// ok is false if the ruleset has no such set.
type setNames func(id policy.SetID) (names [2]string, ok bool)

func famIndex(f family) int {
	if f == fam6 {
		return 1
	}
	return 0
}

// ruleCtx is what rendering a list of rules needs besides the rules.
type ruleCtx struct {
	cfg     *Config
	profile bool // profile rules: Pass goes on with the next profile
	names   setNames
	// deps records every set the rules looked up, with the names found.
	deps map[policy.SetID][2]string
	// sets are named sets made for long lists of networks.
	sets map[string]*setSpec
	// chain and index name the rule being rendered (for those sets).
	chain string
	index int
}

// maxInlineNets is the longest list of networks a rule holds in a
// constant set of its own. A constant set is sent in one message, whose
// element list is one netlink attribute (at most 64 KiB); longer lists go
// into a named interval set, named after the rule's place (chain, rule
// index, end, negation), so that a change of the list changes only the
// set's elements.
const maxInlineNets = 64

// nets matches the address against a list of networks of family f.
func (c *ruleCtx) nets(b *builder, f family, dst bool, nets []netip.Prefix, neq bool) {
	nets = outermost(nets)
	if len(nets) <= maxInlineNets {
		b.addrAnon(f, dst, nets, neq)
		return
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%v/%v", c.chain, c.index, dst, neq))
	name := "n-" + hashEnc.EncodeToString(sum[:10]) + "-" + f.String() + "net"
	if c.sets == nil {
		c.sets = map[string]*setSpec{}
	}
	c.sets[name] = addrSetSpec(name, f, nets, true)
	b.addrLookup(f, dst, name, neq)
}

func (c *ruleCtx) resolve(id policy.SetID, f family) (string, bool) {
	n, ok := c.names(id)
	if c.deps != nil {
		c.deps[id] = n
	}
	if !ok {
		return "", false
	}
	return n[famIndex(f)], true
}

// renderRules renders the compiled rules of a chain, in order.
func (c *ruleCtx) renderRules(chain string, rules []policy.CompiledRule) []*ruleSpec {
	var out []*ruleSpec
	c.chain = chain
	for i := range rules {
		c.index = i
		out = append(out, c.renderRule(&rules[i])...)
	}
	return out
}

// families returns the address families a rule needs rendering for: one
// rule for both (0) unless something in it depends on the family.
func families(cr *policy.CompiledRule) []family {
	switch cr.IPVersion {
	case 4:
		return []family{fam4}
	case 6:
		return []family{fam6}
	}
	needs := cr.ICMP != nil || cr.NotICMP != nil
	for _, e := range []*policy.EntityMatch{&cr.Src, &cr.Dst} {
		needs = needs || len(e.Nets) > 0 || len(e.NotNets) > 0 || e.Set != "" || e.NotSet != "" ||
			len(e.NamedPorts) > 0 || len(e.NotNamedPorts) > 0
	}
	if needs {
		return []family{fam4, fam6}
	}
	return []family{famAny}
}

// portAlt is one alternative of an end's port match: port ranges, or one
// named-port set. An empty alternative matches any port.
type portAlt struct {
	ports []policy.PortRange
	set   string
}

// renderRule renders one compiled rule into zero or more nft rules: one
// per family it needs, and per alternative of "Ports or NamedPorts"
// (an nft rule is a conjunction). A Log rule that two alternatives both
// match logs twice.
func (c *ruleCtx) renderRule(cr *policy.CompiledRule) []*ruleSpec {
	if cr.Invalid != "" {
		return nil
	}
	switch cr.Action {
	case v1.Allow, v1.Deny, v1.Pass, v1.Log:
	default:
		return nil
	}
	var out []*ruleSpec
	for _, f := range families(cr) {
		srcAlts, ok1 := c.portAlts(&cr.Src, f)
		dstAlts, ok2 := c.portAlts(&cr.Dst, f)
		if !ok1 || !ok2 {
			continue
		}
		for _, sa := range srcAlts {
			for _, da := range dstAlts {
				if r := c.buildRule(cr, f, sa, da); r != nil {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

func (c *ruleCtx) portAlts(e *policy.EntityMatch, f family) ([]portAlt, bool) {
	var alts []portAlt
	if len(e.Ports) > 0 {
		alts = append(alts, portAlt{ports: e.Ports})
	}
	for _, id := range e.NamedPorts {
		if name, ok := c.resolve(id, f); ok {
			alts = append(alts, portAlt{set: name})
		}
	}
	if len(alts) == 0 {
		if len(e.Ports) > 0 || len(e.NamedPorts) > 0 {
			return nil, false // only missing named-port sets: never matches
		}
		alts = []portAlt{{}}
	}
	return alts, true
}

// buildRule builds one nft rule, or nil if it can never match.
func (c *ruleCtx) buildRule(cr *policy.CompiledRule, f family, sa, da portAlt) *ruleSpec {
	b := newRule()
	if f != famAny {
		b.nfproto(f)
	}
	if cr.Protocol != nil {
		b.l4proto(*cr.Protocol, false)
	}
	if cr.NotProtocol != nil {
		b.l4proto(*cr.NotProtocol, true)
	}
	if cr.ICMP != nil || cr.NotICMP != nil {
		if cr.Protocol == nil {
			p := uint8(protoICMP)
			if f == fam6 {
				p = protoICMPv6
			}
			b.l4proto(p, false)
		}
		if cr.ICMP != nil {
			b.icmp(f, cr.ICMP, false)
		}
		if cr.NotICMP != nil {
			b.icmp(f, cr.NotICMP, true)
		}
	}
	usesPorts := len(sa.ports) > 0 || len(da.ports) > 0 || len(cr.Src.NotPorts) > 0 || len(cr.Dst.NotPorts) > 0
	if usesPorts && cr.Protocol == nil {
		// Ports mean nothing without a protocol that has them.
		b.l4protoIn(protoTCP, protoUDP, protoSCTP, protoUDPLite)
	}
	if !c.entity(b, &cr.Src, f, false, sa) || !c.entity(b, &cr.Dst, f, true, da) {
		return nil
	}
	switch cr.Action {
	case v1.Allow:
		b.markSet(c.cfg.AcceptMark).ret()
	case v1.Deny:
		b.drop()
	case v1.Pass:
		if c.profile {
			b.ret()
		} else {
			b.markSet(c.cfg.PassMark).ret()
		}
	case v1.Log:
		b.log(c.logPrefix(cr.Origin))
	}
	return b.rule()
}

// entity adds one end's matches; false if it can never match.
func (c *ruleCtx) entity(b *builder, e *policy.EntityMatch, f family, dst bool, alt portAlt) bool {
	if f != famAny {
		if len(e.Nets) > 0 {
			nets := prefixesOf(e.Nets, f)
			switch {
			case len(nets) == 0:
				return false
			case !hasZero(nets):
				c.nets(b, f, dst, nets, false)
			}
		}
		if nets := prefixesOf(e.NotNets, f); len(nets) > 0 {
			if hasZero(nets) {
				return false
			}
			c.nets(b, f, dst, nets, true)
		}
		if e.Set != "" {
			name, ok := c.resolve(e.Set, f)
			if !ok {
				return false
			}
			b.addrLookup(f, dst, name, false)
		}
		if e.NotSet != "" {
			if name, ok := c.resolve(e.NotSet, f); ok {
				b.addrLookup(f, dst, name, true)
			}
		}
	}
	switch {
	case len(alt.ports) > 0:
		b.ports(dst, alt.ports, false)
	case alt.set != "":
		b.namedPorts(f, dst, alt.set, false)
	}
	if len(e.NotPorts) > 0 {
		b.ports(dst, e.NotPorts, true)
	}
	if f != famAny {
		for _, id := range e.NotNamedPorts {
			if name, ok := c.resolve(id, f); ok {
				b.namedPorts(f, dst, name, true)
			}
		}
	}
	return true
}

func hasZero(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Bits() == 0 {
			return true
		}
	}
	return false
}

// logPrefix is "<LogPrefix> <tier>/<policy>/<direction>/<index> " for a
// policy rule and "<LogPrefix> profile/<profile>/<direction>/<index> " for
// a profile rule; the trailing space separates it from the kernel's
// fields. builder.log truncates it to the kernel's 127 bytes.
func (c *ruleCtx) logPrefix(o policy.RuleOrigin) string {
	if o.Profile != "" {
		return fmt.Sprintf("%s profile/%s/%s/%d ", c.cfg.LogPrefix, o.Profile, o.Direction, o.Index)
	}
	return fmt.Sprintf("%s %s/%s/%s/%d ", c.cfg.LogPrefix, o.Tier, o.Policy, o.Direction, o.Index)
}
