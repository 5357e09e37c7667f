package policy

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// This file is the compiled-output contract between the engine and the
// nftables renderer. Every value in a Ruleset or Delta is immutable once
// returned: the engine never modifies it afterwards, and consumers must not
// modify it either (Ruleset.Apply replaces values, it never edits them).

// EndpointID names a local endpoint: "wep:<namespace>/<name>" for a
// workload endpoint, "hep:<name>" for a host endpoint.
type EndpointID string

// WorkloadEndpointID returns the EndpointID of a workload endpoint.
func WorkloadEndpointID(namespace, name string) EndpointID {
	return EndpointID("wep:" + namespace + "/" + name)
}

// HostEndpointID returns the EndpointID of a host endpoint.
func HostEndpointID(name string) EndpointID { return EndpointID("hep:" + name) }

// PolicyID names a policy: "np:<namespace>/<name>" for a NetworkPolicy,
// "gnp:<name>" for a GlobalNetworkPolicy. Names of policies outside the
// default tier start with "<tier>.", as the API requires.
type PolicyID string

// NetworkPolicyID returns the PolicyID of a NetworkPolicy.
func NetworkPolicyID(namespace, name string) PolicyID {
	return PolicyID("np:" + namespace + "/" + name)
}

// GlobalNetworkPolicyID returns the PolicyID of a GlobalNetworkPolicy.
func GlobalNetworkPolicyID(name string) PolicyID { return PolicyID("gnp:" + name) }

// Namespace returns the namespace of a NetworkPolicy's ID, "" for a
// GlobalNetworkPolicy.
func (id PolicyID) Namespace() string {
	rest, ok := strings.CutPrefix(string(id), "np:")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

// Name returns the policy's metadata.name.
func (id PolicyID) Name() string {
	s := string(id)
	if rest, ok := strings.CutPrefix(s, "np:"); ok {
		_, name, _ := strings.Cut(rest, "/")
		return name
	}
	return strings.TrimPrefix(s, "gnp:")
}

// ProfileID is the name of a Profile. Profiles named "kns.<namespace>" that
// no Profile resource defines are synthesised by the engine (allow all, in
// both directions) for endpoints with orchestrator "k8s".
type ProfileID string

// SetID names an IP set: "s:" and 28 base64url characters for a set of
// addresses, "p:" and 28 characters for a named-port set. The ID is a hash
// of the set's definition (selector UniqueID, scope, port), so rules that
// select the same things share one set, and the ID is stable across
// restarts and nodes.
type SetID string

// Direction is the direction of traffic relative to an endpoint.
type Direction uint8

// The directions. Ingress is traffic into the endpoint (for a host
// endpoint: arriving through its interface), Egress traffic out of it.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// MarshalText writes "ingress" or "egress".
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "ingress" or "egress".
func (d *Direction) UnmarshalText(text []byte) error {
	switch string(text) {
	case "ingress":
		*d = Ingress
	case "egress":
		*d = Egress
	default:
		return fmt.Errorf("direction %q: want ingress or egress", text)
	}
	return nil
}

// EndpointKind says whether an endpoint is a workload or a host interface.
type EndpointKind string

// The endpoint kinds.
const (
	WorkloadEndpoint EndpointKind = "workload"
	HostEndpoint     EndpointKind = "host"
)

// Ruleset is everything one node enforces. It is deterministic: the same
// resources give an equal Ruleset whatever the order they were fed in.
type Ruleset struct {
	// Node is the node the ruleset is for.
	Node string `json:"node"`
	// Endpoints are the node's own workload and host endpoints.
	Endpoints map[EndpointID]*EndpointRules `json:"endpoints"`
	// Policies are the policies that some chain of Endpoints refers to,
	// and only those.
	Policies map[PolicyID]*CompiledPolicy `json:"policies"`
	// Profiles are the profiles that some chain of Endpoints refers to.
	Profiles map[ProfileID]*CompiledProfile `json:"profiles"`
	// IPSets are the sets that some rule of Policies or Profiles refers to.
	IPSets map[SetID]*IPSet `json:"ipSets"`
	// Failsafe holds the failsafe ports of host endpoints.
	Failsafe Failsafe `json:"failsafe"`
}

// EndpointRules is the policy of one local endpoint.
type EndpointRules struct {
	ID   EndpointID   `json:"id"`
	Kind EndpointKind `json:"kind"`
	// InterfaceName is the host-side interface of a workload, or the
	// interface of a host endpoint ("*" for all of the host's
	// interfaces; "" for a host endpoint that gives only expectedIPs, whose
	// interface the renderer finds by those addresses).
	InterfaceName string `json:"interfaceName"`
	// Addrs are the endpoint's own addresses as /32 and /128 prefixes,
	// sorted: a workload's ipNetworks, a host endpoint's expectedIPs. The
	// renderer uses them for anti-spoofing (a workload may send only from
	// Addrs and AllowSpoofedSources).
	Addrs []netip.Prefix `json:"addrs,omitempty"`
	// AllowSpoofedSources are further source prefixes a workload may use.
	AllowSpoofedSources []netip.Prefix `json:"allowSpoofedSources,omitempty"`
	// Ingress and Egress are the chains for traffic into and out of the
	// endpoint. For a host endpoint they apply to traffic to and from the
	// host itself (not forwarded traffic).
	Ingress Chain `json:"ingress"`
	Egress  Chain `json:"egress"`
	// Host holds the further chains of a host endpoint; nil for workloads.
	Host *HostChains `json:"host,omitempty"`
}

// HostChains are the chains of a host endpoint besides Ingress and Egress.
type HostChains struct {
	// ForwardIngress and ForwardEgress apply to traffic forwarded through
	// the interface (arriving and leaving): only policies with
	// applyOnForward. No profiles; EndAction Allow.
	ForwardIngress Chain `json:"forwardIngress"`
	ForwardEgress  Chain `json:"forwardEgress"`
	// PreDNATIngress applies before DNAT to traffic arriving through the
	// interface: only preDNAT policies. EndAction "" (no verdict).
	PreDNATIngress Chain `json:"preDNATIngress"`
	// UntrackedIngress and UntrackedEgress apply before connection
	// tracking: only doNotTrack policies; an allowed packet is not
	// tracked. EndAction "" (no verdict).
	UntrackedIngress Chain `json:"untrackedIngress"`
	UntrackedEgress  Chain `json:"untrackedEgress"`
}

// Chain is what one endpoint enforces for one kind of traffic: failsafes,
// then tiers, then profiles, then EndAction.
type Chain struct {
	// Failsafe applies the Ruleset's failsafe ports first: Inbound for an
	// ingress chain, Outbound for an egress chain. Set only on host
	// endpoints' normal, pre-DNAT and untracked chains.
	Failsafe bool `json:"failsafe,omitempty"`
	// Tiers are the tiers that have a policy selecting the endpoint for
	// this kind of traffic, in order.
	Tiers []TierPolicies `json:"tiers,omitempty"`
	// Profiles are tried in order after the tiers, if every tier passed
	// (or no tier applies). Profiles that do not exist are left out.
	Profiles []ProfileID `json:"profiles,omitempty"`
	// EndAction is what happens to a packet that nothing decided: Deny for
	// normal chains ("no profile matched"), Allow for forward chains, ""
	// for pre-DNAT and untracked chains (no verdict: the packet goes on to
	// the next stage).
	EndAction v1.Action `json:"endAction,omitempty"`
}

// TierPolicies is one tier of a chain.
type TierPolicies struct {
	Name string `json:"name"`
	// Policies are in evaluation order: by order (unset last), then name.
	Policies []PolicyID `json:"policies"`
	// EndAction applies when no rule of the tier's policies matched: Deny
	// (drop) or Pass (go on to the next tier, then the profiles). It is
	// always Pass in pre-DNAT and untracked chains.
	EndAction v1.Action `json:"endAction"`
}

// CompiledPolicy is a policy with every rule resolved.
type CompiledPolicy struct {
	ID   PolicyID `json:"id"`
	Tier string   `json:"tier"`
	// Ingress and Egress are the rules for each direction, in order, one
	// per rule of the resource. A direction that is not among the policy's
	// types has no rules (and the policy is not in that direction's
	// chains).
	Ingress []CompiledRule `json:"ingress,omitempty"`
	Egress  []CompiledRule `json:"egress,omitempty"`
}

// Rules returns the rules of one direction.
func (p *CompiledPolicy) Rules(d Direction) []CompiledRule {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// CompiledProfile is a profile with every rule resolved.
type CompiledProfile struct {
	ID      ProfileID      `json:"id"`
	Ingress []CompiledRule `json:"ingress,omitempty"`
	Egress  []CompiledRule `json:"egress,omitempty"`
}

// Rules returns the rules of one direction.
func (p *CompiledProfile) Rules(d Direction) []CompiledRule {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// CompiledRule is one rule. A packet matches when it matches every field
// that is set. Action is Allow, Deny, Log (log with the rule's origin, go on
// with the next rule) or Pass (skip the rest of the tier; in a profile, go
// on with the next profile).
type CompiledRule struct {
	Action v1.Action `json:"action"`
	// IPVersion, 4 or 6, limits the rule to one family; 0 matches both. It
	// is set from the rule's ipVersion, or else from its CIDRs, or else
	// from protocol ICMP (4) or ICMPv6 (6).
	IPVersion uint8 `json:"ipVersion,omitempty"`
	// Protocol and NotProtocol are IP protocol numbers.
	Protocol    *uint8 `json:"protocol,omitempty"`
	NotProtocol *uint8 `json:"notProtocol,omitempty"`
	// ICMP and NotICMP match the ICMP (or ICMPv6) type and code.
	ICMP    *ICMPMatch `json:"icmp,omitempty"`
	NotICMP *ICMPMatch `json:"notICMP,omitempty"`
	// Src and Dst match the source and destination of the packet.
	Src EntityMatch `json:"src,omitzero"`
	Dst EntityMatch `json:"dst,omitzero"`
	// Origin names where the rule comes from, for log prefixes and traces.
	Origin RuleOrigin `json:"origin"`
	// Invalid, when set, says why the rule could not be compiled (an
	// object that skipped validation); such a rule matches no packet and
	// the renderer renders nothing for it.
	Invalid string `json:"invalid,omitempty"`
}

// ICMPMatch matches an ICMP type and, if Code is set, code.
type ICMPMatch struct {
	Type uint8  `json:"type"`
	Code *uint8 `json:"code,omitempty"`
}

// EntityMatch matches one end (source or destination) of a packet. All the
// fields that are set must match.
type EntityMatch struct {
	// Nets: the address is in one of them. NotNets: in none of them.
	Nets    []netip.Prefix `json:"nets,omitempty"`
	NotNets []netip.Prefix `json:"notNets,omitempty"`
	// Set: the address is in the address set (selector, namespace
	// selector, service accounts). NotSet: it is not in that set.
	Set    SetID `json:"set,omitempty"`
	NotSet SetID `json:"notSet,omitempty"`
	// Ports and NamedPorts together: the port is in one of the ranges, or
	// (address, protocol, port) is in one of the named-port sets. Either
	// may be empty; if both are, ports are not matched.
	Ports      []PortRange `json:"ports,omitempty"`
	NamedPorts []SetID     `json:"namedPorts,omitempty"`
	// NotPorts and NotNamedPorts: the port is in none of the ranges and
	// (address, protocol, port) in none of the named-port sets.
	NotPorts      []PortRange `json:"notPorts,omitempty"`
	NotNamedPorts []SetID     `json:"notNamedPorts,omitempty"`
}

// IsZero reports whether m matches everything.
func (m EntityMatch) IsZero() bool {
	return len(m.Nets) == 0 && len(m.NotNets) == 0 && m.Set == "" && m.NotSet == "" &&
		len(m.Ports) == 0 && len(m.NamedPorts) == 0 && len(m.NotPorts) == 0 && len(m.NotNamedPorts) == 0
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct {
	Lo uint16 `json:"lo"`
	Hi uint16 `json:"hi"`
}

// RuleOrigin names the rule a CompiledRule came from: a policy (with its
// tier) or a profile, the direction and the index of the rule in that
// direction's list.
type RuleOrigin struct {
	Tier      string    `json:"tier,omitempty"`
	Policy    PolicyID  `json:"policy,omitempty"`
	Profile   ProfileID `json:"profile,omitempty"`
	Direction Direction `json:"direction"`
	Index     int       `json:"index"`
}

// SetKind says what an IPSet holds.
type SetKind string

// The set kinds.
const (
	// AddrSet holds address prefixes (Members).
	AddrSet SetKind = "addr"
	// NamedPortSet holds (address, protocol, port) triples (NamedPorts).
	NamedPortSet SetKind = "namedport"
)

// IPSet is a set that rules refer to by ID.
type IPSet struct {
	ID   SetID   `json:"id"`
	Kind SetKind `json:"kind"`
	// Description says what the set selects, for comments and traces.
	Description string `json:"description"`
	// Members of an AddrSet: sorted (IPv4 first), masked, without
	// duplicates. They may overlap when network sets do.
	Members []netip.Prefix `json:"members,omitempty"`
	// NamedPorts of a NamedPortSet: sorted, without duplicates.
	NamedPorts []NamedPortMember `json:"namedPorts,omitempty"`
	// HasCIDRs reports that some member is a network shorter than a host
	// route (/32, /128): the renderer needs an interval set. A set whose
	// HasCIDRs changes is sent again in full in Delta.Sets.
	HasCIDRs bool `json:"hasCIDRs,omitempty"`
}

// NamedPortMember is one member of a named-port set.
type NamedPortMember struct {
	Addr     netip.Addr `json:"addr"`
	Protocol uint8      `json:"protocol"`
	Port     uint16     `json:"port"`
}

// Failsafe holds the ports that host endpoints always allow, whatever the
// policy, so that a bad policy cannot cut a host off. They apply in the
// chains that have Chain.Failsafe set.
type Failsafe struct {
	// Inbound: traffic to the host with this protocol and destination
	// port (from Net, if set).
	Inbound []FailsafeRule `json:"inbound,omitempty"`
	// Outbound: traffic from the host with this protocol and destination
	// port (to Net, if set).
	Outbound []FailsafeRule `json:"outbound,omitempty"`
}

// FailsafeRule is one failsafe port.
type FailsafeRule struct {
	Protocol uint8        `json:"protocol"`
	Port     uint16       `json:"port"`
	Net      netip.Prefix `json:"net,omitzero"`
}

// Delta is what changed between two flushes. Apply it in this order: create
// or replace Sets and apply SetUpdates, then Policies and Profiles, then
// Endpoints; then remove RemovedEndpoints, RemovedPolicies and
// RemovedProfiles, and last RemovedSets. That way nothing ever refers to
// something that does not exist. Every list is sorted by ID.
type Delta struct {
	// Endpoints are added or changed endpoints, in full.
	Endpoints        []*EndpointRules `json:"endpoints,omitempty"`
	RemovedEndpoints []EndpointID     `json:"removedEndpoints,omitempty"`
	// Policies and Profiles are added or changed, in full.
	Policies        []*CompiledPolicy  `json:"policies,omitempty"`
	RemovedPolicies []PolicyID         `json:"removedPolicies,omitempty"`
	Profiles        []*CompiledProfile `json:"profiles,omitempty"`
	RemovedProfiles []ProfileID        `json:"removedProfiles,omitempty"`
	// Sets are new sets, or sets replaced in full (their HasCIDRs changed,
	// or they were removed and created again).
	Sets        []*IPSet `json:"sets,omitempty"`
	RemovedSets []SetID  `json:"removedSets,omitempty"`
	// SetUpdates are member changes of sets that exist already.
	SetUpdates []SetUpdate `json:"setUpdates,omitempty"`
	// Failsafe is set when the failsafe ports changed.
	Failsafe *Failsafe `json:"failsafe,omitempty"`
}

// SetUpdate is the change of one set's members.
type SetUpdate struct {
	ID                SetID             `json:"id"`
	Added             []netip.Prefix    `json:"added,omitempty"`
	Removed           []netip.Prefix    `json:"removed,omitempty"`
	AddedNamedPorts   []NamedPortMember `json:"addedNamedPorts,omitempty"`
	RemovedNamedPorts []NamedPortMember `json:"removedNamedPorts,omitempty"`
}

// Empty reports whether d changes nothing.
func (d *Delta) Empty() bool {
	return len(d.Endpoints) == 0 && len(d.RemovedEndpoints) == 0 &&
		len(d.Policies) == 0 && len(d.RemovedPolicies) == 0 &&
		len(d.Profiles) == 0 && len(d.RemovedProfiles) == 0 &&
		len(d.Sets) == 0 && len(d.RemovedSets) == 0 && len(d.SetUpdates) == 0 &&
		d.Failsafe == nil
}
