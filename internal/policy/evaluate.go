package policy

import (
	"net/netip"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// Packet is what the evaluator decides on: the first packet of a flow.
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP,
	// 58 ICMPv6, …).
	Protocol uint8
	// SrcPort and DstPort are used for TCP, UDP and SCTP.
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are used for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
}

// hasPorts reports whether the packet's protocol has ports that rules can
// match (TCP, UDP, SCTP, and UDP-Lite).
func (p Packet) hasPorts() bool {
	switch p.Protocol {
	case protoTCP, protoUDP, protoSCTP, 136:
		return true
	}
	return false
}

func (p Packet) isICMP() bool { return p.Protocol == protoICMP || p.Protocol == protoICMPv6 }

// Reason says what decided a Verdict.
type Reason string

// The reasons.
const (
	// ReasonRule: a rule with action Allow or Deny matched (Verdict.Rule).
	ReasonRule Reason = "rule"
	// ReasonEndOfTier: a tier selected the endpoint, none of its rules
	// matched, and its default action is Deny (Verdict.Tier).
	ReasonEndOfTier Reason = "end-of-tier"
	// ReasonFailsafe: a failsafe port of a host endpoint allowed it.
	ReasonFailsafe Reason = "failsafe"
	// ReasonEndOfChain: nothing decided and the chain's EndAction applies;
	// for normal chains that is Deny ("no profile matched").
	ReasonEndOfChain Reason = "end-of-chain"
	// ReasonUnknownEndpoint: the ruleset has no such endpoint (Deny).
	ReasonUnknownEndpoint Reason = "unknown-endpoint"
)

// Verdict is the outcome of evaluating one chain.
type Verdict struct {
	// Action is Allow or Deny; "" means no verdict (a pre-DNAT or
	// untracked chain that nothing decided: the packet goes on).
	Action v1.Action `json:"action"`
	Reason Reason    `json:"reason"`
	// Rule is the rule that decided, for ReasonRule.
	Rule *RuleOrigin `json:"rule,omitempty"`
	// Tier is the tier whose end decided, for ReasonEndOfTier.
	Tier string `json:"tier,omitempty"`
	// Steps are the tiers, policies, profiles and rules considered, in
	// order.
	Steps []Step `json:"steps"`
}

// StepKind says what a Step is about.
type StepKind string

// The step kinds.
const (
	StepFailsafe StepKind = "failsafe"  // a failsafe port matched
	StepPolicy   StepKind = "policy"    // a policy's rules were tried
	StepTierEnd  StepKind = "tier-end"  // no rule of the tier decided
	StepProfile  StepKind = "profile"   // a profile's rules were tried
	StepChainEnd StepKind = "chain-end" // nothing decided
)

// Step is one thing the evaluator considered. For a policy or profile,
// Rule is the index of the rule that matched (-1: none did) and Action its
// action; a Log rule that matched is a step of its own, and evaluation goes
// on. For the end of a tier or chain, Action is the action that applied.
type Step struct {
	Kind    StepKind  `json:"kind"`
	Tier    string    `json:"tier,omitempty"`
	Policy  PolicyID  `json:"policy,omitempty"`
	Profile ProfileID `json:"profile,omitempty"`
	Rule    int       `json:"rule"`
	Action  v1.Action `json:"action,omitempty"`
}

// ChainKind selects one of an endpoint's chains.
type ChainKind uint8

// The chain kinds; the last five exist only for host endpoints.
const (
	ChainIngress ChainKind = iota
	ChainEgress
	ChainForwardIngress
	ChainForwardEgress
	ChainPreDNATIngress
	ChainUntrackedIngress
	ChainUntrackedEgress
)

// Direction returns the direction of the chain's traffic.
func (k ChainKind) Direction() Direction {
	switch k {
	case ChainEgress, ChainForwardEgress, ChainUntrackedEgress:
		return Egress
	}
	return Ingress
}

// Chain returns one of the endpoint's chains, nil if it has no such chain.
func (r *EndpointRules) Chain(k ChainKind) *Chain {
	switch k {
	case ChainIngress:
		return &r.Ingress
	case ChainEgress:
		return &r.Egress
	}
	if r.Host == nil {
		return nil
	}
	switch k {
	case ChainForwardIngress:
		return &r.Host.ForwardIngress
	case ChainForwardEgress:
		return &r.Host.ForwardEgress
	case ChainPreDNATIngress:
		return &r.Host.PreDNATIngress
	case ChainUntrackedIngress:
		return &r.Host.UntrackedIngress
	case ChainUntrackedEgress:
		return &r.Host.UntrackedEgress
	}
	return nil
}

// Evaluate decides a packet into (Ingress) or out of (Egress) a local
// endpoint of rs: its normal chain, as the renderer enforces it. For a
// host endpoint that is traffic to or from the host itself.
func Evaluate(rs *Ruleset, ep EndpointID, dir Direction, pkt Packet) Verdict {
	k := ChainIngress
	if dir == Egress {
		k = ChainEgress
	}
	return EvaluateChain(rs, ep, k, pkt)
}

// EvaluateChain decides a packet in one chain of a local endpoint of rs.
func EvaluateChain(rs *Ruleset, ep EndpointID, k ChainKind, pkt Packet) Verdict {
	r := rs.Endpoints[ep]
	var c *Chain
	if r != nil {
		c = r.Chain(k)
	}
	if c == nil {
		return Verdict{Action: v1.Deny, Reason: ReasonUnknownEndpoint}
	}
	return evalChain(rs, c, k.Direction(), pkt)
}

func evalChain(rs *Ruleset, c *Chain, dir Direction, pkt Packet) Verdict {
	var v Verdict
	decide := func(a v1.Action, reason Reason) Verdict {
		v.Action, v.Reason = a, reason
		return v
	}
	if c.Failsafe {
		rules := rs.Failsafe.Inbound
		if dir == Egress {
			rules = rs.Failsafe.Outbound
		}
		for _, f := range rules {
			if matchFailsafe(f, dir, pkt) {
				v.Steps = append(v.Steps, Step{Kind: StepFailsafe, Rule: -1, Action: v1.Allow})
				return decide(v1.Allow, ReasonFailsafe)
			}
		}
	}
	for _, t := range c.Tiers {
		passed := false
		for _, id := range t.Policies {
			var rules []CompiledRule
			if p := rs.Policies[id]; p != nil {
				rules = p.Rules(dir)
			}
			i, action := evalRules(rs, rules, pkt, func(i int) {
				v.Steps = append(v.Steps, Step{Kind: StepPolicy, Tier: t.Name, Policy: id, Rule: i, Action: v1.Log})
			})
			v.Steps = append(v.Steps, Step{Kind: StepPolicy, Tier: t.Name, Policy: id, Rule: i, Action: action})
			switch action {
			case v1.Allow, v1.Deny:
				origin := rules[i].Origin
				v.Rule = &origin
				return decide(action, ReasonRule)
			case v1.Pass:
				passed = true
			}
			if passed {
				break
			}
		}
		if passed {
			continue
		}
		v.Steps = append(v.Steps, Step{Kind: StepTierEnd, Tier: t.Name, Rule: -1, Action: t.EndAction})
		if t.EndAction != v1.Pass {
			v.Tier = t.Name
			return decide(v1.Deny, ReasonEndOfTier)
		}
	}
	for _, id := range c.Profiles {
		var rules []CompiledRule
		if p := rs.Profiles[id]; p != nil {
			rules = p.Rules(dir)
		}
		i, action := evalRules(rs, rules, pkt, func(i int) {
			v.Steps = append(v.Steps, Step{Kind: StepProfile, Profile: id, Rule: i, Action: v1.Log})
		})
		v.Steps = append(v.Steps, Step{Kind: StepProfile, Profile: id, Rule: i, Action: action})
		if action == v1.Allow || action == v1.Deny {
			origin := rules[i].Origin
			v.Rule = &origin
			return decide(action, ReasonRule)
		}
	}
	v.Steps = append(v.Steps, Step{Kind: StepChainEnd, Rule: -1, Action: c.EndAction})
	return decide(c.EndAction, ReasonEndOfChain)
}

// evalRules returns the index and action of the first rule that matches
// and is not Log (-1 and "" if none); logged is called for each matching
// Log rule.
func evalRules(rs *Ruleset, rules []CompiledRule, pkt Packet, logged func(int)) (int, v1.Action) {
	for i := range rules {
		r := &rules[i]
		if !matchRule(rs, r, pkt) {
			continue
		}
		if r.Action == v1.Log {
			logged(i)
			continue
		}
		return i, r.Action
	}
	return -1, ""
}

func matchFailsafe(f FailsafeRule, dir Direction, pkt Packet) bool {
	if pkt.Protocol != f.Protocol || !pkt.hasPorts() || pkt.DstPort != f.Port {
		return false
	}
	if !f.Net.IsValid() {
		return true
	}
	if dir == Egress {
		return f.Net.Contains(pkt.Dst)
	}
	return f.Net.Contains(pkt.Src)
}

func matchRule(rs *Ruleset, r *CompiledRule, pkt Packet) bool {
	if r.Invalid != "" {
		return false
	}
	if r.IPVersion != 0 && family(pkt.Src) != r.IPVersion {
		return false
	}
	if r.Protocol != nil && pkt.Protocol != *r.Protocol {
		return false
	}
	if r.NotProtocol != nil && pkt.Protocol == *r.NotProtocol {
		return false
	}
	if r.ICMP != nil && (!pkt.isICMP() || !r.ICMP.matches(pkt)) {
		return false
	}
	if r.NotICMP != nil && pkt.isICMP() && r.NotICMP.matches(pkt) {
		return false
	}
	return matchEntity(rs, &r.Src, pkt.Src, pkt, pkt.SrcPort) && matchEntity(rs, &r.Dst, pkt.Dst, pkt, pkt.DstPort)
}

func (m *ICMPMatch) matches(pkt Packet) bool {
	return pkt.ICMPType == m.Type && (m.Code == nil || pkt.ICMPCode == *m.Code)
}

func matchEntity(rs *Ruleset, m *EntityMatch, addr netip.Addr, pkt Packet, port uint16) bool {
	if len(m.Nets) > 0 && !anyContains(m.Nets, addr) {
		return false
	}
	if anyContains(m.NotNets, addr) {
		return false
	}
	if m.Set != "" && !setContains(rs, m.Set, addr) {
		return false
	}
	if m.NotSet != "" && setContains(rs, m.NotSet, addr) {
		return false
	}
	if len(m.Ports) > 0 || len(m.NamedPorts) > 0 {
		if !pkt.hasPorts() || !(portIn(m.Ports, port) || namedPortIn(rs, m.NamedPorts, addr, pkt.Protocol, port)) {
			return false
		}
	}
	if len(m.NotPorts) > 0 || len(m.NotNamedPorts) > 0 {
		if !pkt.hasPorts() || portIn(m.NotPorts, port) || namedPortIn(rs, m.NotNamedPorts, addr, pkt.Protocol, port) {
			return false
		}
	}
	return true
}

func anyContains(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func setContains(rs *Ruleset, id SetID, a netip.Addr) bool {
	s := rs.IPSets[id]
	return s != nil && s.Contains(a)
}

func portIn(ranges []PortRange, port uint16) bool {
	for _, r := range ranges {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

func namedPortIn(rs *Ruleset, ids []SetID, a netip.Addr, proto uint8, port uint16) bool {
	for _, id := range ids {
		if s := rs.IPSets[id]; s != nil && s.ContainsNamedPort(a, proto, port) {
			return true
		}
	}
	return false
}

// FlowEnd is one end of a flow: an endpoint of a node's ruleset, or (zero
// value) an address outside the cluster, where no policy applies.
type FlowEnd struct {
	Ruleset  *Ruleset
	Endpoint EndpointID
}

// FlowVerdict is the outcome of a flow checked at both ends.
type FlowVerdict struct {
	// Action is Allow if both ends allow, else Deny.
	Action v1.Action `json:"action"`
	// Egress is the verdict at the source, Ingress at the destination;
	// nil for an end outside the cluster.
	Egress  *Verdict `json:"egress,omitempty"`
	Ingress *Verdict `json:"ingress,omitempty"`
}

// EvaluateFlow checks a flow as the dataplane does: egress on the sending
// node, then ingress on the receiving node. Both ends are evaluated, even
// when the first denies, so that a trace shows both.
func EvaluateFlow(src, dst FlowEnd, pkt Packet) FlowVerdict {
	fv := FlowVerdict{Action: v1.Allow}
	if src.Ruleset != nil {
		v := Evaluate(src.Ruleset, src.Endpoint, Egress, pkt)
		fv.Egress = &v
		if v.Action != v1.Allow {
			fv.Action = v1.Deny
		}
	}
	if dst.Ruleset != nil {
		v := Evaluate(dst.Ruleset, dst.Endpoint, Ingress, pkt)
		fv.Ingress = &v
		if v.Action != v1.Allow {
			fv.Action = v1.Deny
		}
	}
	return fv
}
