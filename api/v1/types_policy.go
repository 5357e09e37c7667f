package v1

// Tier is an ordered group of policies. Policies are evaluated tier by
// tier; a packet that no policy of a tier allows or denies gets the tier's
// default action. The tier "default" always exists, with order
// DefaultTierOrder, whether or not a Tier resource names it. Tier is
// cluster-scoped.
type Tier struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	Spec     TierSpec   `json:"spec"`
}

// TierSpec is the specification of a Tier.
type TierSpec struct {
	// Order orders tiers, lowest first; tiers without an order come after
	// all others, by name. The default tier's order is DefaultTierOrder.
	Order *float64 `json:"order,omitempty"`
	// DefaultAction is what happens to a packet that policies of this
	// tier select but do not decide: Deny (the default) or Pass to the
	// next tier.
	DefaultAction Action `json:"defaultAction,omitempty"`
}

// DefaultTierName is the name of the tier that always exists and that
// policies without spec.tier belong to.
const DefaultTierName = "default"

// DefaultTierOrder is the order of the default tier (Calico's value).
const DefaultTierOrder = 1e6

// NetworkPolicy is a policy for the endpoints of one namespace.
type NetworkPolicy struct {
	TypeMeta
	Metadata ObjectMeta        `json:"metadata"`
	Spec     NetworkPolicySpec `json:"spec"`
}

// NetworkPolicySpec is the specification of a NetworkPolicy.
type NetworkPolicySpec struct {
	// Tier is the policy's tier, "default" if empty. A policy in another
	// tier must be named "<tier>.<name>".
	Tier string `json:"tier,omitempty"`
	// Order orders policies within a tier, lowest first; policies without
	// an order come last.
	Order *float64 `json:"order,omitempty"`
	// Ingress rules apply to traffic into the selected endpoints.
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress rules apply to traffic out of the selected endpoints.
	Egress []Rule `json:"egress,omitempty"`
	// Selector selects the endpoints the policy applies to, within the
	// policy's namespace. Empty selects all of them.
	Selector string `json:"selector,omitempty"`
	// Types says which directions the policy applies to. When empty it is
	// set from the rules as Calico does: Egress only if there are egress
	// rules and no ingress rules, both if there are both, else Ingress.
	Types []PolicyType `json:"types,omitempty"`
	// ServiceAccountSelector further selects endpoints by the labels of
	// their service account.
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
}

// GlobalNetworkPolicy is a policy for endpoints of all namespaces and for
// host endpoints. It is cluster-scoped.
type GlobalNetworkPolicy struct {
	TypeMeta
	Metadata ObjectMeta              `json:"metadata"`
	Spec     GlobalNetworkPolicySpec `json:"spec"`
}

// GlobalNetworkPolicySpec is the specification of a GlobalNetworkPolicy.
// The fields shared with NetworkPolicySpec mean the same.
type GlobalNetworkPolicySpec struct {
	Tier    string   `json:"tier,omitempty"`
	Order   *float64 `json:"order,omitempty"`
	Ingress []Rule   `json:"ingress,omitempty"`
	Egress  []Rule   `json:"egress,omitempty"`
	// Selector selects endpoints in every namespace and host endpoints.
	Selector string       `json:"selector,omitempty"`
	Types    []PolicyType `json:"types,omitempty"`
	// DoNotTrack applies the policy before connection tracking, to host
	// endpoints; allowed packets are not tracked. It needs ApplyOnForward.
	DoNotTrack bool `json:"doNotTrack,omitempty"`
	// PreDNAT applies the policy to host endpoints before DNAT; only
	// ingress is allowed. It needs ApplyOnForward.
	PreDNAT bool `json:"preDNAT,omitempty"`
	// ApplyOnForward applies the policy to host endpoints for forwarded
	// traffic too, not only for traffic to and from the host.
	ApplyOnForward         bool   `json:"applyOnForward,omitempty"`
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
	// NamespaceSelector limits the policy to endpoints of namespaces
	// whose labels it matches.
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
}

// PolicyType is a direction a policy applies to.
type PolicyType string

// The policy types.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// Action is what a rule does with the packets it matches.
type Action string

// The rule actions. Allow and Deny end evaluation; Log logs the packet
// (with the configured log prefix) and goes on to the next rule; Pass
// skips the rest of the tier and goes on to the next tier (or, for the
// last tier, to the endpoint's profiles).
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
	Log   Action = "Log"
	Pass  Action = "Pass"
)

// Rule is one rule of a policy or profile. A packet matches a rule when it
// matches every field that is set.
type Rule struct {
	Action Action `json:"action"`
	// IPVersion limits the rule to IPv4 (4) or IPv6 (6).
	IPVersion *int `json:"ipVersion,omitempty"`
	// Protocol matches the IP protocol.
	Protocol *Protocol `json:"protocol,omitempty"`
	// ICMP matches the ICMP type and code; it needs protocol ICMP or
	// ICMPv6.
	ICMP *ICMPFields `json:"icmp,omitempty"`
	// NotProtocol matches every protocol but this one.
	NotProtocol *Protocol `json:"notProtocol,omitempty"`
	// NotICMP matches every ICMP type and code but this one.
	NotICMP *ICMPFields `json:"notICMP,omitempty"`
	// Source and Destination match the two ends of the packet.
	Source      EntityRule `json:"source,omitzero"`
	Destination EntityRule `json:"destination,omitzero"`
	// Metadata holds annotations that are not used for matching.
	Metadata *RuleMetadata `json:"metadata,omitempty"`
}

// ICMPFields matches an ICMP type and, optionally, code.
type ICMPFields struct {
	// Type is the ICMP type, 0-254.
	Type *int `json:"type,omitempty"`
	// Code is the ICMP code, 0-255; it needs Type.
	Code *int `json:"code,omitempty"`
}

// EntityRule matches one end of a packet. Selectors match endpoints and
// network sets by their labels: in a NetworkPolicy those of the policy's
// namespace unless NamespaceSelector is set.
type EntityRule struct {
	// Nets matches addresses in any of these CIDRs.
	Nets []string `json:"nets,omitempty"`
	// Selector matches endpoints and network sets.
	Selector string `json:"selector,omitempty"`
	// NamespaceSelector matches endpoints and network sets of the
	// namespaces whose labels it matches.
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// Ports matches any of these ports; it needs protocol TCP, UDP or
	// SCTP.
	Ports []Port `json:"ports,omitempty"`
	// NotNets matches addresses in none of these CIDRs.
	NotNets []string `json:"notNets,omitempty"`
	// NotSelector matches what the selector does not match.
	NotSelector string `json:"notSelector,omitempty"`
	// NotPorts matches none of these ports.
	NotPorts []Port `json:"notPorts,omitempty"`
	// ServiceAccounts matches endpoints by their service account.
	ServiceAccounts *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
}

// ServiceAccountMatch matches endpoints whose service account is named in
// Names or has labels that Selector matches (both, if both are set).
type ServiceAccountMatch struct {
	Names    []string `json:"names,omitempty"`
	Selector string   `json:"selector,omitempty"`
}

// RuleMetadata holds annotations of a rule.
type RuleMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Profile holds rules that apply to the endpoints that list it in
// spec.profiles, after their policies, and labels that those endpoints
// inherit. It is cluster-scoped.
type Profile struct {
	TypeMeta
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ProfileSpec `json:"spec"`
}

// ProfileSpec is the specification of a Profile.
type ProfileSpec struct {
	Ingress []Rule `json:"ingress,omitempty"`
	Egress  []Rule `json:"egress,omitempty"`
	// LabelsToApply are added to the labels of the endpoints that use the
	// profile (the endpoint's own labels win).
	LabelsToApply map[string]string `json:"labelsToApply,omitempty"`
}

// NetworkSet is a set of networks of one namespace that rules can select
// by its labels.
type NetworkSet struct {
	TypeMeta
	Metadata ObjectMeta     `json:"metadata"`
	Spec     NetworkSetSpec `json:"spec"`
}

// NetworkSetSpec is the specification of a NetworkSet or a
// GlobalNetworkSet.
type NetworkSetSpec struct {
	// Nets are CIDRs (or single addresses).
	Nets []string `json:"nets,omitempty"`
}

// GlobalNetworkSet is a cluster-scoped set of networks that rules can
// select by its labels.
type GlobalNetworkSet struct {
	TypeMeta
	Metadata ObjectMeta           `json:"metadata"`
	Spec     GlobalNetworkSetSpec `json:"spec"`
}

// GlobalNetworkSetSpec is the specification of a GlobalNetworkSet.
type GlobalNetworkSetSpec struct {
	Nets []string `json:"nets,omitempty"`
}
