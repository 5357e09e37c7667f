package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// String renders the ruleset as deterministic text: failsafes, endpoints,
// policies, profiles and sets, each sorted by ID. It is meant for humans,
// tests and diffs, not for parsing.
func (rs *Ruleset) String() string {
	var b strings.Builder
	b.WriteString(rs.Failsafe.String())
	for _, id := range sortedKeys(rs.Endpoints) {
		writeEndpoint(&b, rs.Endpoints[id])
	}
	for _, id := range sortedKeys(rs.Policies) {
		writePolicy(&b, rs.Policies[id])
	}
	for _, id := range sortedKeys(rs.Profiles) {
		writeProfile(&b, rs.Profiles[id])
	}
	for _, id := range sortedKeys(rs.IPSets) {
		writeSet(&b, rs.IPSets[id])
	}
	return b.String()
}

// String renders the delta as text, one change per line or block.
func (d *Delta) String() string {
	var b strings.Builder
	for _, s := range d.Sets {
		b.WriteString("+")
		writeSet(&b, s)
	}
	for _, u := range d.SetUpdates {
		fmt.Fprintf(&b, "~set %s", u.ID)
		for _, p := range u.Added {
			fmt.Fprintf(&b, " +%s", p)
		}
		for _, p := range u.Removed {
			fmt.Fprintf(&b, " -%s", p)
		}
		for _, m := range u.AddedNamedPorts {
			fmt.Fprintf(&b, " +%s", m)
		}
		for _, m := range u.RemovedNamedPorts {
			fmt.Fprintf(&b, " -%s", m)
		}
		b.WriteString("\n")
	}
	for _, p := range d.Policies {
		b.WriteString("+")
		writePolicy(&b, p)
	}
	for _, p := range d.Profiles {
		b.WriteString("+")
		writeProfile(&b, p)
	}
	for _, ep := range d.Endpoints {
		b.WriteString("+")
		writeEndpoint(&b, ep)
	}
	for _, id := range d.RemovedEndpoints {
		fmt.Fprintf(&b, "-endpoint %s\n", id)
	}
	for _, id := range d.RemovedPolicies {
		fmt.Fprintf(&b, "-policy %s\n", id)
	}
	for _, id := range d.RemovedProfiles {
		fmt.Fprintf(&b, "-profile %s\n", id)
	}
	for _, id := range d.RemovedSets {
		fmt.Fprintf(&b, "-set %s\n", id)
	}
	if d.Failsafe != nil {
		b.WriteString("~")
		b.WriteString(d.Failsafe.String())
	}
	return b.String()
}

// String renders the failsafe ports on one line.
func (f Failsafe) String() string {
	var b strings.Builder
	b.WriteString("failsafe in:")
	for _, r := range f.Inbound {
		b.WriteString(" " + r.String())
	}
	b.WriteString(" out:")
	for _, r := range f.Outbound {
		b.WriteString(" " + r.String())
	}
	b.WriteString("\n")
	return b.String()
}

// String renders "tcp:22" or "tcp:22@10.0.0.0/8".
func (r FailsafeRule) String() string {
	s := protoName(r.Protocol) + ":" + strconv.Itoa(int(r.Port))
	if r.Net.IsValid() {
		s += "@" + r.Net.String()
	}
	return s
}

// String renders "10.0.0.1/tcp:80".
func (m NamedPortMember) String() string {
	return fmt.Sprintf("%s/%s:%d", m.Addr, protoName(m.Protocol), m.Port)
}

func writeEndpoint(b *strings.Builder, r *EndpointRules) {
	fmt.Fprintf(b, "endpoint %s %s iface=%q addrs=%s", r.ID, r.Kind, r.InterfaceName, prefixList(r.Addrs))
	if len(r.AllowSpoofedSources) > 0 {
		fmt.Fprintf(b, " spoof=%s", prefixList(r.AllowSpoofedSources))
	}
	b.WriteString("\n")
	writeChain(b, "ingress", &r.Ingress)
	writeChain(b, "egress", &r.Egress)
	if h := r.Host; h != nil {
		writeChain(b, "forward-ingress", &h.ForwardIngress)
		writeChain(b, "forward-egress", &h.ForwardEgress)
		writeChain(b, "prednat-ingress", &h.PreDNATIngress)
		writeChain(b, "untracked-ingress", &h.UntrackedIngress)
		writeChain(b, "untracked-egress", &h.UntrackedEgress)
	}
}

func writeChain(b *strings.Builder, name string, c *Chain) {
	fmt.Fprintf(b, "  %s:", name)
	if c.Failsafe {
		b.WriteString(" failsafe")
	}
	for _, t := range c.Tiers {
		ids := make([]string, len(t.Policies))
		for i, id := range t.Policies {
			ids[i] = string(id)
		}
		fmt.Fprintf(b, " tier %s[%s]->%s", t.Name, strings.Join(ids, " "), t.EndAction)
	}
	if len(c.Profiles) > 0 {
		ids := make([]string, len(c.Profiles))
		for i, id := range c.Profiles {
			ids[i] = string(id)
		}
		fmt.Fprintf(b, " profiles[%s]", strings.Join(ids, " "))
	}
	end := string(c.EndAction)
	if end == "" {
		end = "continue"
	}
	fmt.Fprintf(b, " ->%s\n", end)
}

func writePolicy(b *strings.Builder, p *CompiledPolicy) {
	fmt.Fprintf(b, "policy %s tier=%s\n", p.ID, p.Tier)
	writeRules(b, "ingress", p.Ingress)
	writeRules(b, "egress", p.Egress)
}

func writeProfile(b *strings.Builder, p *CompiledProfile) {
	fmt.Fprintf(b, "profile %s\n", p.ID)
	writeRules(b, "ingress", p.Ingress)
	writeRules(b, "egress", p.Egress)
}

func writeRules(b *strings.Builder, dir string, rules []CompiledRule) {
	for i := range rules {
		fmt.Fprintf(b, "  %s %d: %s\n", dir, i, rules[i].String())
	}
}

func writeSet(b *strings.Builder, s *IPSet) {
	fmt.Fprintf(b, "set %s %s %q:", s.ID, s.Kind, s.Description)
	if s.HasCIDRs {
		b.WriteString(" (cidrs)")
	}
	for _, p := range s.Members {
		b.WriteString(" " + p.String())
	}
	for _, m := range s.NamedPorts {
		b.WriteString(" " + m.String())
	}
	b.WriteString("\n")
}

// String renders a rule on one line, fields in a fixed order.
func (r *CompiledRule) String() string {
	parts := []string{string(r.Action)}
	if r.IPVersion != 0 {
		parts = append(parts, "ipv"+strconv.Itoa(int(r.IPVersion)))
	}
	if r.Protocol != nil {
		parts = append(parts, "proto="+protoName(*r.Protocol))
	}
	if r.NotProtocol != nil {
		parts = append(parts, "!proto="+protoName(*r.NotProtocol))
	}
	if r.ICMP != nil {
		parts = append(parts, "icmp="+r.ICMP.String())
	}
	if r.NotICMP != nil {
		parts = append(parts, "!icmp="+r.NotICMP.String())
	}
	if s := r.Src.String(); s != "" {
		parts = append(parts, "src("+s+")")
	}
	if s := r.Dst.String(); s != "" {
		parts = append(parts, "dst("+s+")")
	}
	if r.Invalid != "" {
		parts = append(parts, fmt.Sprintf("invalid(%s)", r.Invalid))
	}
	return strings.Join(parts, " ")
}

// String renders "8" or "8/0".
func (m *ICMPMatch) String() string {
	s := strconv.Itoa(int(m.Type))
	if m.Code != nil {
		s += "/" + strconv.Itoa(int(*m.Code))
	}
	return s
}

// String renders the fields that are set, space-separated.
func (m EntityMatch) String() string {
	var parts []string
	if len(m.Nets) > 0 {
		parts = append(parts, "nets="+prefixList(m.Nets))
	}
	if len(m.NotNets) > 0 {
		parts = append(parts, "!nets="+prefixList(m.NotNets))
	}
	if m.Set != "" {
		parts = append(parts, "set="+string(m.Set))
	}
	if m.NotSet != "" {
		parts = append(parts, "!set="+string(m.NotSet))
	}
	if len(m.Ports) > 0 || len(m.NamedPorts) > 0 {
		parts = append(parts, "ports="+portList(m.Ports, m.NamedPorts))
	}
	if len(m.NotPorts) > 0 || len(m.NotNamedPorts) > 0 {
		parts = append(parts, "!ports="+portList(m.NotPorts, m.NotNamedPorts))
	}
	return strings.Join(parts, " ")
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

func portList(ranges []PortRange, named []SetID) string {
	var s []string
	for _, r := range ranges {
		if r.Lo == r.Hi {
			s = append(s, strconv.Itoa(int(r.Lo)))
		} else {
			s = append(s, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
		}
	}
	for _, id := range named {
		s = append(s, string(id))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// String renders the verdict's steps and outcome, one line each.
func (v *Verdict) String() string {
	var b strings.Builder
	for _, s := range v.Steps {
		b.WriteString(s.String() + "\n")
	}
	fmt.Fprintf(&b, "=> %s", v.Summary())
	return b.String()
}

// Summary renders the outcome on one line: action and what decided it.
func (v *Verdict) Summary() string {
	a := string(v.Action)
	if a == "" {
		a = "no verdict"
	}
	switch v.Reason {
	case ReasonRule:
		return fmt.Sprintf("%s by %s", a, v.Rule)
	case ReasonEndOfTier:
		return fmt.Sprintf("%s at the end of tier %s", a, v.Tier)
	case ReasonEndOfChain:
		return fmt.Sprintf("%s: nothing matched (end of chain)", a)
	case ReasonFailsafe:
		return fmt.Sprintf("%s by a failsafe port", a)
	}
	return fmt.Sprintf("%s (%s)", a, v.Reason)
}

// String names the rule: "tier default policy np:x/p ingress rule 0" or
// "profile kns.x egress rule 0".
func (o *RuleOrigin) String() string {
	if o == nil {
		return "nothing"
	}
	if o.Profile != "" {
		return fmt.Sprintf("profile %s %s rule %d", o.Profile, o.Direction, o.Index)
	}
	return fmt.Sprintf("tier %s policy %s %s rule %d", o.Tier, o.Policy, o.Direction, o.Index)
}

// String renders one step.
func (s Step) String() string {
	result := string(s.Action)
	switch {
	case s.Kind == StepPolicy || s.Kind == StepProfile:
		if s.Rule < 0 {
			result = "no rule matched"
		} else {
			result = fmt.Sprintf("rule %d matched: %s", s.Rule, s.Action)
		}
	case result == "":
		result = "continue"
	}
	switch s.Kind {
	case StepFailsafe:
		return "failsafe port: " + result
	case StepPolicy:
		return fmt.Sprintf("tier %s policy %s: %s", s.Tier, s.Policy, result)
	case StepTierEnd:
		return fmt.Sprintf("tier %s end: %s", s.Tier, result)
	case StepProfile:
		return fmt.Sprintf("profile %s: %s", s.Profile, result)
	}
	return "end of chain: " + result
}
