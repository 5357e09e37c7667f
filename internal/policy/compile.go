package policy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/selector"
)

// Protocol numbers the engine needs by name.
const (
	protoICMP   uint8 = 1
	protoTCP    uint8 = 6
	protoUDP    uint8 = 17
	protoICMPv6 uint8 = 58
	protoSCTP   uint8 = 132
)

// policy is the engine's view of a NetworkPolicy or GlobalNetworkPolicy.
type policy struct {
	id       PolicyID
	ns       string // namespace of a NetworkPolicy; "" for a global one
	name     string
	tier     string
	order    float64 // +Inf when unset
	sel      *selector.Selector
	nsSel    *selector.Selector // GlobalNetworkPolicy namespaceSelector; nil if unset
	sa       *saMatch           // serviceAccountSelector; nil if unset
	ingress  bool               // types include Ingress
	egress   bool               // types include Egress
	forward  bool               // applyOnForward
	preDNAT  bool
	untrack  bool // doNotTrack
	invalid  bool // its selector does not parse: it selects nothing
	compiled *CompiledPolicy
	sets     []*setDef    // the sets its rules refer to, without repeats
	refs     int          // local endpoints it selects
	req      *requirement // what its policy index files it under
}

// profile is the engine's view of a Profile (or a synthesised kns.<ns>).
type profile struct {
	name     string
	labels   map[string]string
	compiled *CompiledProfile
	sets     []*setDef
}

// saMatch matches an endpoint's service account: by name (if names is not
// nil) and by the account's labels (if sel is not nil). Tabby has no
// ServiceAccount resource yet, so an account has no labels: sel is
// evaluated against an empty label set.
type saMatch struct {
	names []string // sorted
	sel   *selector.Selector
}

func (m *saMatch) matches(account string) bool {
	if m == nil {
		return true
	}
	if m.names != nil {
		if _, ok := slices.BinarySearch(m.names, account); !ok || account == "" {
			return false
		}
	}
	return m.sel == nil || m.sel.Evaluate(selector.Map(nil))
}

func (m *saMatch) key() string {
	if m == nil {
		return ""
	}
	s := "names=" + strings.Join(m.names, ",")
	if m.sel != nil {
		s += ";sel=" + m.sel.UniqueID()
	}
	return s
}

func newSAMatch(names []string, sel string) (*saMatch, error) {
	if len(names) == 0 && strings.TrimSpace(sel) == "" {
		return nil, nil
	}
	m := &saMatch{}
	if len(names) > 0 {
		m.names = slices.Sorted(slices.Values(names))
		m.names = slices.Compact(m.names)
	}
	if strings.TrimSpace(sel) != "" {
		s, err := selector.Parse(sel)
		if err != nil {
			return nil, fmt.Errorf("service account selector: %w", err)
		}
		m.sel = s
	}
	return m, nil
}

// policyFromNetworkPolicy builds the engine's policy from a NetworkPolicy.
func policyFromNetworkPolicy(np *v1.NetworkPolicy) *policy {
	s := &np.Spec
	p := &policy{
		id:   NetworkPolicyID(np.Metadata.Namespace, np.Metadata.Name),
		ns:   np.Metadata.Namespace,
		name: np.Metadata.Name,
	}
	p.fill(s.Tier, s.Order, s.Selector, "", s.ServiceAccountSelector, s.Types, s.Ingress, s.Egress)
	return p
}

// policyFromGlobalNetworkPolicy builds the engine's policy from a
// GlobalNetworkPolicy.
func policyFromGlobalNetworkPolicy(gnp *v1.GlobalNetworkPolicy) *policy {
	s := &gnp.Spec
	p := &policy{
		id:      GlobalNetworkPolicyID(gnp.Metadata.Name),
		name:    gnp.Metadata.Name,
		forward: s.ApplyOnForward,
		preDNAT: s.PreDNAT,
		untrack: s.DoNotTrack,
	}
	p.fill(s.Tier, s.Order, s.Selector, s.NamespaceSelector, s.ServiceAccountSelector, s.Types, s.Ingress, s.Egress)
	return p
}

func (p *policy) fill(tier string, order *float64, sel, nsSel, saSel string, types []v1.PolicyType, ingress, egress []v1.Rule) {
	p.tier = tier
	if p.tier == "" {
		p.tier = v1.DefaultTierName
	}
	p.order = math.Inf(1)
	if order != nil {
		p.order = *order
	}
	var err error
	if p.sel, err = parseSelector(sel); err != nil {
		p.invalid = true
	}
	if strings.TrimSpace(nsSel) != "" {
		if p.nsSel, err = selector.Parse(nsSel); err != nil {
			p.invalid = true
		}
	}
	if p.sa, err = newSAMatch(nil, saSel); err != nil {
		p.invalid = true
	}
	if len(types) == 0 {
		// Calico's defaults (api/v1 SetDefaults does the same).
		switch {
		case len(egress) == 0:
			types = []v1.PolicyType{v1.PolicyTypeIngress}
		case len(ingress) == 0:
			types = []v1.PolicyType{v1.PolicyTypeEgress}
		default:
			types = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
		}
	}
	for _, t := range types {
		p.ingress = p.ingress || t == v1.PolicyTypeIngress
		p.egress = p.egress || t == v1.PolicyTypeEgress
	}
	if p.preDNAT {
		p.egress = false // pre-DNAT policy has no egress (API rule)
	}
	c := newRuleCompiler(p.ns)
	// Only forwarded traffic can have an endpoint's rules see another
	// address at the endpoint's own end.
	c.localEnd = !p.forward && !p.preDNAT && !p.untrack
	p.compiled = &CompiledPolicy{ID: p.id, Tier: p.tier}
	if p.ingress {
		p.compiled.Ingress = c.rules(ingress, RuleOrigin{Tier: p.tier, Policy: p.id, Direction: Ingress})
	}
	if p.egress {
		p.compiled.Egress = c.rules(egress, RuleOrigin{Tier: p.tier, Policy: p.id, Direction: Egress})
	}
	p.sets = c.list()
}

// profileFrom builds the engine's profile from a Profile.
func profileFrom(pr *v1.Profile) *profile {
	id := ProfileID(pr.Metadata.Name)
	c := newRuleCompiler("")
	c.localEnd = true // profiles apply to normal chains only
	p := &profile{
		name:   pr.Metadata.Name,
		labels: pr.Spec.LabelsToApply,
		compiled: &CompiledProfile{
			ID:      id,
			Ingress: c.rules(pr.Spec.Ingress, RuleOrigin{Profile: id, Direction: Ingress}),
			Egress:  c.rules(pr.Spec.Egress, RuleOrigin{Profile: id, Direction: Egress}),
		},
	}
	p.sets = c.list()
	return p
}

// K8sNamespaceProfilePrefix starts the names of the namespace profiles that
// the engine gives endpoints with orchestrator "k8s", as Calico does.
const K8sNamespaceProfilePrefix = "kns."

// syntheticProfile returns the allow-all profile kns.<namespace>.
func syntheticProfile(name string) *profile {
	id := ProfileID(name)
	return &profile{
		name: name,
		compiled: &CompiledProfile{
			ID:      id,
			Ingress: []CompiledRule{{Action: v1.Allow, Origin: RuleOrigin{Profile: id, Direction: Ingress}}},
			Egress:  []CompiledRule{{Action: v1.Allow, Origin: RuleOrigin{Profile: id, Direction: Egress}}},
		},
	}
}

func parseSelector(s string) (*selector.Selector, error) {
	if strings.TrimSpace(s) == "" {
		return allSelector, nil
	}
	return selector.Parse(s)
}

var allSelector = selector.MustParse("all()")

// ruleCompiler compiles the rules of one policy or profile and collects
// the sets they refer to.
type ruleCompiler struct {
	ns   string // namespace scope of selectors: a NetworkPolicy's namespace
	sets map[SetID]*setDef
	// localEnd says the rules apply only to traffic whose address at the
	// endpoint's own end (destination of ingress, source of egress) is a
	// local endpoint's: then a named port there without a selector needs
	// only the local endpoints' ports.
	localEnd bool
}

func newRuleCompiler(ns string) *ruleCompiler {
	return &ruleCompiler{ns: ns, sets: map[SetID]*setDef{}}
}

// list returns the collected sets sorted by ID.
func (c *ruleCompiler) list() []*setDef {
	out := make([]*setDef, 0, len(c.sets))
	for _, d := range c.sets {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *setDef) int { return strings.Compare(string(a.id), string(b.id)) })
	return out
}

func (c *ruleCompiler) rules(rules []v1.Rule, origin RuleOrigin) []CompiledRule {
	if len(rules) == 0 {
		return nil
	}
	out := make([]CompiledRule, len(rules))
	for i := range rules {
		origin.Index = i
		sets := map[SetID]*setDef{}
		r, err := compileRule(&rules[i], c.ns, c.localEnd, origin.Direction, sets)
		if err != nil {
			r = CompiledRule{Action: rules[i].Action, Invalid: err.Error()}
		} else {
			for id, d := range sets {
				c.sets[id] = d
			}
		}
		r.Origin = origin
		out[i] = r
	}
	return out
}

// compileRule resolves one rule; the sets it needs are added to sets.
func compileRule(r *v1.Rule, ns string, localEnd bool, dir Direction, sets map[SetID]*setDef) (CompiledRule, error) {
	out := CompiledRule{Action: r.Action}
	switch r.Action {
	case v1.Allow, v1.Deny, v1.Log, v1.Pass:
	default:
		return out, fmt.Errorf("unknown action %q", r.Action)
	}
	var err error
	if out.Protocol, err = protocolNumber(r.Protocol); err != nil {
		return out, err
	}
	if out.NotProtocol, err = protocolNumber(r.NotProtocol); err != nil {
		return out, err
	}
	if out.ICMP, err = icmpMatch(r.ICMP); err != nil {
		return out, err
	}
	if out.NotICMP, err = icmpMatch(r.NotICMP); err != nil {
		return out, err
	}
	var proto uint8
	if out.Protocol != nil {
		proto = *out.Protocol
	}
	if out.Src, err = compileEntity(&r.Source, ns, proto, localEnd && dir == Egress, sets); err != nil {
		return out, fmt.Errorf("source: %w", err)
	}
	if out.Dst, err = compileEntity(&r.Destination, ns, proto, localEnd && dir == Ingress, sets); err != nil {
		return out, fmt.Errorf("destination: %w", err)
	}
	switch {
	case r.IPVersion != nil:
		if *r.IPVersion != 4 && *r.IPVersion != 6 {
			return out, fmt.Errorf("ipVersion %d", *r.IPVersion)
		}
		out.IPVersion = uint8(*r.IPVersion)
	default:
		for _, nets := range [][]netip.Prefix{out.Src.Nets, out.Src.NotNets, out.Dst.Nets, out.Dst.NotNets} {
			if len(nets) > 0 && out.IPVersion == 0 {
				out.IPVersion = family(nets[0].Addr())
			}
		}
		if out.IPVersion == 0 && out.Protocol != nil {
			switch *out.Protocol {
			case protoICMP:
				out.IPVersion = 4
			case protoICMPv6:
				out.IPVersion = 6
			}
		}
	}
	return out, nil
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func protocolNumber(p *v1.Protocol) (*uint8, error) {
	if p == nil {
		return nil, nil
	}
	n, ok := p.Number()
	if !ok {
		return nil, fmt.Errorf("invalid protocol %q", *p)
	}
	return &n, nil
}

func icmpMatch(f *v1.ICMPFields) (*ICMPMatch, error) {
	if f == nil || f.Type == nil {
		if f != nil && f.Code != nil {
			return nil, errors.New("ICMP code without type")
		}
		return nil, nil
	}
	if *f.Type < 0 || *f.Type > 255 {
		return nil, fmt.Errorf("ICMP type %d", *f.Type)
	}
	m := &ICMPMatch{Type: uint8(*f.Type)}
	if f.Code != nil {
		if *f.Code < 0 || *f.Code > 255 {
			return nil, fmt.Errorf("ICMP code %d", *f.Code)
		}
		c := uint8(*f.Code)
		m.Code = &c
	}
	return m, nil
}

// compileEntity resolves one end of a rule. Selectors are scoped as in
// Calico: in a NetworkPolicy, selector (and a notSelector alone) match only
// in the policy's namespace unless namespaceSelector is set; notSelector
// itself is never scoped. A named port refers to the endpoints the same
// end's selector matches (all endpoints if none; the node's own endpoints
// if local says that this end is always one of them).
func compileEntity(e *v1.EntityRule, ns string, proto uint8, local bool, sets map[SetID]*setDef) (EntityMatch, error) {
	var m EntityMatch
	var err error
	if m.Nets, err = parseNets(e.Nets); err != nil {
		return m, err
	}
	if m.NotNets, err = parseNets(e.NotNets); err != nil {
		return m, err
	}
	var sa *saMatch
	if e.ServiceAccounts != nil {
		if sa, err = newSAMatch(e.ServiceAccounts.Names, e.ServiceAccounts.Selector); err != nil {
			return m, err
		}
	}
	base := &setDef{kind: AddrSet, sel: allSelector, scope: scopeAll, sa: sa}
	positive := e.Selector != "" || e.NamespaceSelector != "" || sa != nil || (e.NotSelector != "" && ns != "")
	if positive {
		if base.sel, err = parseSelector(e.Selector); err != nil {
			return m, fmt.Errorf("selector: %w", err)
		}
		switch nsSel := strings.TrimSpace(e.NamespaceSelector); {
		case nsSel == "global()":
			base.scope = scopeGlobal
		case nsSel != "":
			base.scope = scopeNamespaces
			if base.nsSel, err = selector.Parse(nsSel); err != nil {
				return m, fmt.Errorf("namespaceSelector: %w", err)
			}
		case ns != "":
			base.scope, base.ns = scopeNamespace, ns
		}
		m.Set = addSet(sets, base)
	}
	if e.NotSelector != "" {
		notSel, err := selector.Parse(e.NotSelector)
		if err != nil {
			return m, fmt.Errorf("notSelector: %w", err)
		}
		m.NotSet = addSet(sets, &setDef{kind: AddrSet, sel: notSel, scope: scopeAll})
	}
	if (len(e.Ports) > 0 || len(e.NotPorts) > 0) && proto != protoTCP && proto != protoUDP && proto != protoSCTP {
		return m, errors.New("ports need protocol TCP, UDP or SCTP")
	}
	compilePorts := func(ports []v1.Port) ([]PortRange, []SetID, error) {
		var ranges []PortRange
		var named []SetID
		for _, p := range ports {
			if lo, hi, ok := p.Range(); ok {
				ranges = append(ranges, PortRange{lo, hi})
				continue
			}
			name := p.Name()
			if name == "" {
				return nil, nil, fmt.Errorf("invalid port %q", p)
			}
			d := *base
			d.kind, d.port, d.proto = NamedPortSet, name, proto
			if local && !positive {
				d.scope = scopeLocal
			}
			if id := addSet(sets, &d); !slices.Contains(named, id) {
				named = append(named, id)
			}
		}
		return ranges, named, nil
	}
	if m.Ports, m.NamedPorts, err = compilePorts(e.Ports); err != nil {
		return m, err
	}
	if m.NotPorts, m.NotNamedPorts, err = compilePorts(e.NotPorts); err != nil {
		return m, err
	}
	return m, nil
}

// parseNets parses CIDRs (or bare addresses, as host routes), masked.
func parseNets(nets []string) ([]netip.Prefix, error) {
	if len(nets) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		p, err := parseNet(n)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
