package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/policy"
)

func newPolicyCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Inspect how network policy decides traffic",
	}
	cmd.AddCommand(newPolicyTraceCommand(a))
	return cmd
}

// policyKinds are the kinds the policy engine reads.
var policyKinds = []string{
	"Tier", "NetworkPolicy", "GlobalNetworkPolicy", "Profile", "Namespace",
	"WorkloadEndpoint", "HostEndpoint", "NetworkSet", "GlobalNetworkSet", "Configuration",
}

// traceFlags are the flags of policy trace.
type traceFlags struct {
	from, to, proto, output string
	port, srcPort           uint16
	icmpType, icmpCode      uint8
}

func newPolicyTraceCommand(a *app) *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace --from FROM --to TO [--proto tcp|udp|icmp|sctp|NUM] [--port P] [-o text|json]",
		Short: "Show how policy decides a flow: egress at the source, ingress at the destination",
		Long: `Show how policy decides a flow, as the nodes enforce it: egress on the node of
the source endpoint, then ingress on the node of the destination endpoint. For
each end it lists every tier, policy, profile and rule considered and what
decided; the flow is allowed only if both ends allow it.

FROM and TO are a workload endpoint as NAMESPACE/NAME, a host endpoint by name,
or an IP address. An IP address that belongs to no endpoint is outside the
cluster: no policy applies at that end. The rules are compiled from the live
datastore, as each node's agent would compile them.`,
		Example: `  tabby policy trace --from prod/frontend-7d4 --to prod/db-0 --port 5432
  tabby policy trace --from prod/frontend-7d4 --to 10.0.0.1 --proto udp --port 53
  tabby policy trace --from 203.0.113.9 --to node-1-eth0 --port 22 -o json
  tabby policy trace --from x/a --to y/b --proto icmp --icmp-type 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pkt, err := f.packet(cmd.Flags().Changed("port"))
			if err != nil {
				return err
			}
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			objs, err := listPolicyObjects(ctx, c)
			if err != nil {
				return err
			}
			tr, err := policy.NewCluster(objs).Trace(f.from, f.to, pkt)
			if err != nil {
				return err
			}
			return printTrace(a.streams.out, tr, f.output)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "source: NAMESPACE/NAME of a workload endpoint, a host endpoint or an IP address")
	fl.StringVar(&f.to, "to", "", "destination: NAMESPACE/NAME of a workload endpoint, a host endpoint or an IP address")
	fl.StringVar(&f.proto, "proto", "tcp", "protocol: tcp, udp, sctp, icmp, icmpv6 or a number")
	fl.Uint16Var(&f.port, "port", 0, "destination port (required for tcp, udp and sctp)")
	fl.Uint16Var(&f.srcPort, "src-port", 49152, "source port")
	fl.Uint8Var(&f.icmpType, "icmp-type", 8, "ICMP type (icmp and icmpv6)")
	fl.Uint8Var(&f.icmpCode, "icmp-code", 0, "ICMP code (icmp and icmpv6)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// packet checks the flags and returns the packet to trace, without its
// addresses.
func (f *traceFlags) packet(portSet bool) (policy.Packet, error) {
	if f.output != "text" && f.output != "json" {
		return policy.Packet{}, fmt.Errorf("-o: unknown output format %q: want text or json", f.output)
	}
	proto, err := policy.ParseProtocol(f.proto)
	if err != nil {
		return policy.Packet{}, fmt.Errorf("--proto: %w", err)
	}
	pkt := policy.Packet{Protocol: proto}
	switch v1.ProtocolNumber(proto) {
	case v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP, v1.ProtocolUDPLite:
		if !portSet || f.port == 0 {
			return pkt, fmt.Errorf("--port: a destination port (1-65535) is required for %s", strings.ToLower(f.proto))
		}
		pkt.SrcPort, pkt.DstPort = f.srcPort, f.port
	case v1.ProtocolICMP, v1.ProtocolICMPv6:
		pkt.ICMPType, pkt.ICMPCode = f.icmpType, f.icmpCode
	}
	return pkt, nil
}

// listPolicyObjects reads every object the policy engine uses.
func listPolicyObjects(ctx context.Context, c *datastore.Client) ([]v1.Object, error) {
	var objs []v1.Object
	for _, kind := range policyKinds {
		info, ok := v1.LookupKind(kind)
		if !ok {
			return nil, fmt.Errorf("internal error: unknown kind %s", kind)
		}
		list, _, err := c.List(ctx, info, "")
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", info.Plural, err)
		}
		objs = append(objs, list...)
	}
	return objs, nil
}

// traceJSON is the JSON form of a trace: "verdict" is "allow" or "deny",
// and each direction names the rule (or tier end) that decided it.
type traceJSON struct {
	Verdict string          `json:"verdict"`
	From    policy.TraceEnd `json:"from"`
	To      policy.TraceEnd `json:"to"`
	Packet  packetJSON      `json:"packet"`
	Egress  *directionJSON  `json:"egress"`
	Ingress *directionJSON  `json:"ingress"`
}

type packetJSON struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
	SrcPort  uint16 `json:"srcPort,omitempty"`
	DstPort  uint16 `json:"dstPort,omitempty"`
	ICMPType *uint8 `json:"icmpType,omitempty"`
	ICMPCode *uint8 `json:"icmpCode,omitempty"`
}

type directionJSON struct {
	// Verdict is "allow", "deny", or "" when the chain gave none.
	Verdict string        `json:"verdict"`
	Reason  policy.Reason `json:"reason"`
	// Rule is the rule that decided (reason "rule").
	Rule *policy.RuleOrigin `json:"rule,omitempty"`
	// Tier is the tier whose end decided (reason "end-of-tier").
	Tier  string        `json:"tier,omitempty"`
	Steps []policy.Step `json:"steps"`
}

func directionOf(v *policy.Verdict) *directionJSON {
	if v == nil {
		return nil
	}
	return &directionJSON{
		Verdict: strings.ToLower(string(v.Action)), Reason: v.Reason, Rule: v.Rule, Tier: v.Tier, Steps: v.Steps,
	}
}

func printTrace(w io.Writer, tr *policy.FlowTrace, output string) error {
	if output == "text" {
		_, err := io.WriteString(w, tr.String())
		return err
	}
	p := tr.Packet
	pj := packetJSON{Src: p.Src.String(), Dst: p.Dst.String(), Protocol: policyProtoName(p.Protocol)}
	switch v1.ProtocolNumber(p.Protocol) {
	case v1.ProtocolICMP, v1.ProtocolICMPv6:
		pj.ICMPType, pj.ICMPCode = &p.ICMPType, &p.ICMPCode
	default:
		pj.SrcPort, pj.DstPort = p.SrcPort, p.DstPort
	}
	out := traceJSON{
		Verdict: strings.ToLower(string(tr.Result.Action)),
		From:    tr.From, To: tr.To, Packet: pj,
		Egress: directionOf(tr.Result.Egress), Ingress: directionOf(tr.Result.Ingress),
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// policyProtoName names a protocol number in lower case ("tcp", "47").
func policyProtoName(n uint8) string { return strings.ToLower(string(v1.ProtocolNumber(n))) }
