package v1

import (
	"net/netip"
	"strings"
)

// DefaultNamespace is the namespace of namespaced objects that do not name
// one, as with kubectl.
const DefaultNamespace = "default"

// SetDefaults fills in the defaults of obj's unset fields: its apiVersion
// and kind, the namespace of namespaced kinds, and the spec defaults that
// each type documents. It is idempotent and leaves invalid values alone
// for Validate to report.
func SetDefaults(obj Object) {
	k, ok := KindOf(obj)
	if !ok {
		return
	}
	tm := obj.GetTypeMeta()
	tm.APIVersion, tm.Kind = APIVersion, k.Kind
	if m := obj.GetObjectMeta(); k.Namespaced && m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	switch o := obj.(type) {
	case *Tier:
		if o.Spec.DefaultAction == "" {
			o.Spec.DefaultAction = Deny
		}
		if o.Metadata.Name == DefaultTierName && o.Spec.Order == nil {
			order := float64(DefaultTierOrder)
			o.Spec.Order = &order
		}
	case *NetworkPolicy:
		defaultTier(&o.Spec.Tier)
		defaultPolicyTypes(&o.Spec.Types, o.Spec.Ingress, o.Spec.Egress)
	case *GlobalNetworkPolicy:
		defaultTier(&o.Spec.Tier)
		defaultPolicyTypes(&o.Spec.Types, o.Spec.Ingress, o.Spec.Egress)
	case *IPPool:
		if pfx, err := netip.ParsePrefix(o.Spec.CIDR); err == nil && o.Spec.BlockSize == 0 {
			o.Spec.BlockSize = DefaultBlockSize(pfx.Addr().Is6())
		}
		if o.Spec.NodeSelector == "" {
			o.Spec.NodeSelector = "all()"
		}
		if len(o.Spec.AllowedUses) == 0 {
			o.Spec.AllowedUses = []IPPoolAllowedUse{IPPoolAllowedUseWorkload}
		}
	case *IPAMConfiguration:
		if o.Spec.AutoAllocateBlocks == nil {
			o.Spec.AutoAllocateBlocks = boolPtr(true)
		}
	case *BGPConfiguration:
		if o.Metadata.Name == "default" {
			s := EffectiveBGPConfiguration(o, nil)
			s.ExtraPrefixes = o.Spec.ExtraPrefixes
			o.Spec = s
		}
	case *BGPPeer:
		if o.Spec.SourceAddress == "" {
			o.Spec.SourceAddress = SourceAddressUseNodeIP
		}
	case *Configuration:
		if o.Metadata.Name == "default" {
			o.Spec = EffectiveConfiguration(o, nil)
		}
		for _, ports := range []*[]ProtoPort{o.Spec.FailsafeInboundHostPorts, o.Spec.FailsafeOutboundHostPorts} {
			if ports == nil {
				continue
			}
			for i := range *ports {
				p := &(*ports)[i]
				if u := strings.ToUpper(p.Protocol); u == "TCP" || u == "UDP" || u == "SCTP" {
					p.Protocol = u
				}
			}
		}
	}
}

// DefaultBlockSize returns the default block prefix length of a pool: 26
// for IPv4 and 122 for IPv6.
func DefaultBlockSize(ipv6 bool) int {
	if ipv6 {
		return 122
	}
	return 26
}

func defaultTier(tier *string) {
	if *tier == "" {
		*tier = DefaultTierName
	}
}

// defaultPolicyTypes sets empty policy types from the rules as Calico
// does: Ingress when there are no egress rules (even when there are no
// rules at all), Egress when there are only egress rules, and both when
// there are both.
func defaultPolicyTypes(types *[]PolicyType, ingress, egress []Rule) {
	if len(*types) > 0 {
		return
	}
	switch {
	case len(egress) == 0:
		*types = []PolicyType{PolicyTypeIngress}
	case len(ingress) == 0:
		*types = []PolicyType{PolicyTypeEgress}
	default:
		*types = []PolicyType{PolicyTypeIngress, PolicyTypeEgress}
	}
}
