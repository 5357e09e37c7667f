package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// Cluster compiles rulesets for any node from one set of objects (a
// snapshot of the datastore), resolves endpoint references and traces
// flows. tabby policy trace is built on it. It is not safe for concurrent
// use.
type Cluster struct {
	objs     []v1.Object
	weps     map[string]*v1.WorkloadEndpoint // by namespace/name
	heps     map[string]*v1.HostEndpoint     // by name
	rulesets map[string]*Ruleset             // by node, compiled on demand
}

// NewCluster returns a Cluster over objs (not copied; do not modify them).
func NewCluster(objs []v1.Object) *Cluster {
	c := &Cluster{
		objs:     objs,
		weps:     map[string]*v1.WorkloadEndpoint{},
		heps:     map[string]*v1.HostEndpoint{},
		rulesets: map[string]*Ruleset{},
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *v1.WorkloadEndpoint:
			c.weps[o.Metadata.Namespace+"/"+o.Metadata.Name] = o
		case *v1.HostEndpoint:
			c.heps[o.Metadata.Name] = o
		}
	}
	return c
}

// Ruleset returns the ruleset of node, compiled from scratch (and cached).
func (c *Cluster) Ruleset(node string) (*Ruleset, error) {
	if rs := c.rulesets[node]; rs != nil {
		return rs, nil
	}
	rs, err := Compile(Config{Node: node}, c.objs)
	if err != nil {
		return nil, err
	}
	c.rulesets[node] = rs
	return rs, nil
}

// TraceEnd is one end of a traced flow.
type TraceEnd struct {
	// Spec is the reference as given.
	Spec string `json:"spec"`
	// Endpoint and Node are the endpoint and its node; both empty for an
	// address outside the cluster.
	Endpoint EndpointID `json:"endpoint,omitempty"`
	Node     string     `json:"node,omitempty"`
	// Addr is the address the flow uses at this end.
	Addr netip.Addr `json:"ip"`

	addrs []netip.Addr // candidates, before the family is chosen
}

// Resolve finds what spec names: "NAMESPACE/NAME" is a workload endpoint,
// an IP address is the endpoint that has it (or, if none has, an address
// outside the cluster), and anything else is a host endpoint's name.
func (c *Cluster) Resolve(spec string) (TraceEnd, error) {
	end := TraceEnd{Spec: spec}
	if a, err := netip.ParseAddr(spec); err == nil {
		a = a.Unmap()
		end.addrs = []netip.Addr{a}
		for _, key := range sortedKeys(c.weps) {
			w := c.weps[key]
			if containsAddr(w.Spec.IPNetworks, a) {
				end.Endpoint, end.Node = WorkloadEndpointID(w.Metadata.Namespace, w.Metadata.Name), w.Spec.Node
				return end, nil
			}
		}
		for _, name := range sortedKeys(c.heps) {
			h := c.heps[name]
			if containsAddr(h.Spec.ExpectedIPs, a) {
				end.Endpoint, end.Node = HostEndpointID(name), h.Spec.Node
				return end, nil
			}
		}
		return end, nil
	}
	if strings.Contains(spec, "/") {
		w := c.weps[spec]
		if w == nil {
			return end, fmt.Errorf("workload endpoint %s not found", spec)
		}
		end.Endpoint, end.Node = WorkloadEndpointID(w.Metadata.Namespace, w.Metadata.Name), w.Spec.Node
		end.addrs = addrsOf(w.Spec.IPNetworks)
		if len(end.addrs) == 0 {
			return end, fmt.Errorf("workload endpoint %s has no addresses", spec)
		}
		return end, nil
	}
	h := c.heps[spec]
	if h == nil {
		return end, fmt.Errorf("%q is not an IP address, NAMESPACE/NAME of a workload endpoint or the name of a host endpoint", spec)
	}
	end.Endpoint, end.Node = HostEndpointID(h.Metadata.Name), h.Spec.Node
	end.addrs = addrsOf(h.Spec.ExpectedIPs)
	if len(end.addrs) == 0 {
		return end, fmt.Errorf("host endpoint %s has no expectedIPs to trace from or to", spec)
	}
	return end, nil
}

func containsAddr(list []string, a netip.Addr) bool {
	return slices.Contains(addrsOf(list), a)
}

func addrsOf(list []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		if p, err := parseNet(s); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// FlowTrace is a traced flow.
type FlowTrace struct {
	From   TraceEnd    `json:"from"`
	To     TraceEnd    `json:"to"`
	Packet Packet      `json:"packet"`
	Result FlowVerdict `json:"result"`
}

// Trace resolves from and to (see Resolve), picks addresses of one family
// (IPv4 if both ends have one), and evaluates the flow: egress at the
// source's node and ingress at the destination's node. pkt's addresses are
// filled in; its protocol, ports and ICMP fields are used as given.
func (c *Cluster) Trace(from, to string, pkt Packet) (*FlowTrace, error) {
	src, err := c.Resolve(from)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	dst, err := c.Resolve(to)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	if src.Endpoint == "" && dst.Endpoint == "" {
		return nil, errors.New("neither end is an endpoint of the cluster: no policy applies")
	}
	found := false
	for _, want4 := range []bool{true, false} {
		s, ok1 := pickFamily(src.addrs, want4)
		d, ok2 := pickFamily(dst.addrs, want4)
		if ok1 && ok2 {
			src.Addr, dst.Addr, found = s, d, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%s and %s have no IP version in common", from, to)
	}
	pkt.Src, pkt.Dst = src.Addr, dst.Addr
	var fs, fd FlowEnd
	if src.Endpoint != "" {
		if fs.Ruleset, err = c.Ruleset(src.Node); err != nil {
			return nil, err
		}
		fs.Endpoint = src.Endpoint
	}
	if dst.Endpoint != "" {
		if fd.Ruleset, err = c.Ruleset(dst.Node); err != nil {
			return nil, err
		}
		fd.Endpoint = dst.Endpoint
	}
	return &FlowTrace{From: src, To: dst, Packet: pkt, Result: EvaluateFlow(fs, fd, pkt)}, nil
}

func pickFamily(addrs []netip.Addr, want4 bool) (netip.Addr, bool) {
	for _, a := range addrs {
		if a.Is4() == want4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// String renders the trace for humans.
func (t *FlowTrace) String() string {
	var b strings.Builder
	end := func(e TraceEnd) string {
		if e.Endpoint == "" {
			return fmt.Sprintf("%s (outside the cluster)", e.Addr)
		}
		return fmt.Sprintf("%s %s on node %s", e.Endpoint, e.Addr, e.Node)
	}
	fmt.Fprintf(&b, "from: %s\nto:   %s\n", end(t.From), end(t.To))
	fmt.Fprintf(&b, "packet: %s\n", t.Packet)
	section := func(title string, v *Verdict, e TraceEnd) {
		fmt.Fprintf(&b, "\n%s:\n", title)
		if v == nil {
			fmt.Fprintf(&b, "  %s is outside the cluster: no policy\n", e.Addr)
			return
		}
		for _, line := range strings.Split(v.String(), "\n") {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	section("egress at "+describeEnd(t.From), t.Result.Egress, t.From)
	section("ingress at "+describeEnd(t.To), t.Result.Ingress, t.To)
	fmt.Fprintf(&b, "\nverdict: %s\n", strings.ToLower(string(t.Result.Action)))
	return b.String()
}

func describeEnd(e TraceEnd) string {
	if e.Endpoint == "" {
		return e.Addr.String()
	}
	return fmt.Sprintf("%s (node %s)", e.Endpoint, e.Node)
}

// String renders "10.0.0.1:40000 -> 10.0.0.2:80 tcp" or
// "10.0.0.1 -> 10.0.0.2 icmp type 8 code 0".
func (p Packet) String() string {
	switch {
	case p.hasPorts():
		return fmt.Sprintf("%s -> %s %s", netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), protoName(p.Protocol))
	case p.isICMP():
		return fmt.Sprintf("%s -> %s %s type %d code %d", p.Src, p.Dst, protoName(p.Protocol), p.ICMPType, p.ICMPCode)
	}
	return fmt.Sprintf("%s -> %s protocol %s", p.Src, p.Dst, protoName(p.Protocol))
}

// ParseProtocol parses a protocol name (tcp, udp, icmp, icmpv6, sctp,
// udplite; any case) or number (1-255).
func ParseProtocol(s string) (uint8, error) {
	n, ok := v1.Protocol(s).Number()
	if !ok {
		return 0, fmt.Errorf("unknown protocol %q: want tcp, udp, icmp, icmpv6, sctp or a number 1-255", s)
	}
	return n, nil
}
