package v1

import (
	"errors"
	"fmt"
	"strings"
)

// Validate checks every field of obj and returns all the problems found,
// each a *FieldError, joined with errors.Join; nil if obj is valid. It does
// not apply defaults: validate what SetDefaults has filled in.
func Validate(obj Object) error {
	k, ok := KindOf(obj)
	if !ok {
		return fmt.Errorf("validating %T: not a Tabby resource kind", obj)
	}
	var errs fieldErrors
	name := checkSubdomain
	switch o := obj.(type) {
	case *Node:
		checkNodeSpec(&errs, &o.Spec)
	case *WorkloadEndpoint:
		checkWorkloadEndpointSpec(&errs, &o.Spec)
	case *HostEndpoint:
		checkHostEndpointSpec(&errs, &o.Spec)
	case *Namespace:
		name = checkLabelName
	case *Profile:
		sp := fieldPath("spec")
		checkRules(&errs, sp.child("ingress"), o.Spec.Ingress)
		checkRules(&errs, sp.child("egress"), o.Spec.Egress)
		checkLabels(&errs, sp.child("labelsToApply"), o.Spec.LabelsToApply, true)
	case *Tier:
		name = checkLabelName
		checkTier(&errs, o)
	case *NetworkPolicy:
		name = policyNameCheck(o.Spec.Tier, false)
		checkPolicySpec(&errs, &policyCommon{o.Spec.Tier, o.Spec.Order, o.Spec.Ingress, o.Spec.Egress,
			o.Spec.Selector, o.Spec.Types, o.Spec.ServiceAccountSelector})
	case *GlobalNetworkPolicy:
		name = policyNameCheck(o.Spec.Tier, true)
		checkPolicySpec(&errs, &policyCommon{o.Spec.Tier, o.Spec.Order, o.Spec.Ingress, o.Spec.Egress,
			o.Spec.Selector, o.Spec.Types, o.Spec.ServiceAccountSelector})
		checkGlobalPolicyOptions(&errs, &o.Spec)
	case *NetworkSet:
		checkNets(&errs, fieldPath("spec.nets"), o.Spec.Nets)
	case *GlobalNetworkSet:
		checkNets(&errs, fieldPath("spec.nets"), o.Spec.Nets)
	case *IPPool:
		checkIPPoolSpec(&errs, &o.Spec)
	case *IPAMConfiguration:
		name = onlyName("default")
		checkIPAMConfigurationSpec(&errs, &o.Spec)
	case *BGPConfiguration:
		name = configName
		checkBGPConfigurationSpec(&errs, o.Metadata.Name, &o.Spec)
	case *BGPPeer:
		checkBGPPeerSpec(&errs, &o.Spec)
	case *Configuration:
		name = configName
		checkConfigurationSpec(&errs, &o.Spec)
	}
	// Metadata errors come first, as the fields come in manifests.
	var meta fieldErrors
	checkMeta(&meta, k, obj.GetObjectMeta(), name)
	return errors.Join(append(meta, errs...).errs()...)
}

// onlyName returns a name check that accepts only want.
func onlyName(want string) func(*fieldErrors, fieldPath, string) {
	return func(errs *fieldErrors, p fieldPath, s string) {
		if s != want {
			errs.addf(p, s, "name must be %q", want)
		}
	}
}

// configName checks the name of a per-cluster or per-node configuration:
// "default" or "node.<nodename>".
func configName(errs *fieldErrors, p fieldPath, s string) {
	if s == "default" {
		return
	}
	node, ok := strings.CutPrefix(s, "node.")
	if !ok || node == "" {
		errs.add(p, s, `name must be "default" or "node.<nodename>"`)
		return
	}
	checkSubdomain(errs, p, node)
}

// nodeOfConfig returns the node a per-node configuration name names, or
// "" for "default".
func nodeOfConfig(name string) string {
	node, _ := strings.CutPrefix(name, "node.")
	if name == "default" {
		return ""
	}
	return node
}

func checkNets(errs *fieldErrors, p fieldPath, nets []string) {
	for i, n := range nets {
		checkCIDR(errs, p.index(i), n)
	}
}

func checkTier(errs *fieldErrors, t *Tier) {
	sp := fieldPath("spec")
	checkOrder(errs, sp.child("order"), t.Spec.Order)
	if t.Metadata.Name == DefaultTierName && (t.Spec.Order == nil || *t.Spec.Order != DefaultTierOrder) {
		errs.addf(sp.child("order"), formatOrder(t.Spec.Order), "the default tier's order must be %v", float64(DefaultTierOrder))
	}
	switch t.Spec.DefaultAction {
	case Deny, Pass, "":
	default:
		errs.add(sp.child("defaultAction"), string(t.Spec.DefaultAction), "defaultAction must be Deny or Pass")
	}
}

func formatOrder(o *float64) string {
	if o == nil {
		return ""
	}
	return fmt.Sprint(*o)
}

// policyCommon is what NetworkPolicySpec and GlobalNetworkPolicySpec
// share.
type policyCommon struct {
	tier                   string
	order                  *float64
	ingress, egress        []Rule
	selector               string
	types                  []PolicyType
	serviceAccountSelector string
}

func checkPolicySpec(errs *fieldErrors, s *policyCommon) {
	sp := fieldPath("spec")
	if s.tier != "" {
		checkLabelName(errs, sp.child("tier"), s.tier)
	}
	checkOrder(errs, sp.child("order"), s.order)
	checkRules(errs, sp.child("ingress"), s.ingress)
	checkRules(errs, sp.child("egress"), s.egress)
	checkSelector(errs, sp.child("selector"), s.selector, false)
	checkTypes(errs, sp.child("types"), s.types)
	checkSelector(errs, sp.child("serviceAccountSelector"), s.serviceAccountSelector, false)
}

func checkGlobalPolicyOptions(errs *fieldErrors, s *GlobalNetworkPolicySpec) {
	sp := fieldPath("spec")
	checkSelector(errs, sp.child("namespaceSelector"), s.NamespaceSelector, false)
	if s.DoNotTrack && s.PreDNAT {
		errs.add(sp.child("preDNAT"), "", "preDNAT and doNotTrack cannot both be true")
	}
	if s.PreDNAT {
		if len(s.Egress) > 0 {
			errs.add(sp.child("egress"), "", "a preDNAT policy cannot have egress rules")
		}
		for i, t := range s.Types {
			if t == PolicyTypeEgress {
				errs.add(sp.child("types").index(i), string(t), "a preDNAT policy cannot have type Egress")
			}
		}
	}
	if (s.DoNotTrack || s.PreDNAT) && !s.ApplyOnForward {
		errs.add(sp.child("applyOnForward"), "", "applyOnForward must be true when preDNAT or doNotTrack is true")
	}
}

// policyNameCheck returns the name check of a policy in tier, which
// follows Calico: a policy in the default tier is named "<name>" or
// "default.<name>", and one in another tier "<tier>.<name>".
func policyNameCheck(tier string, global bool) func(*fieldErrors, fieldPath, string) {
	return func(errs *fieldErrors, p fieldPath, name string) {
		re, form := networkPolicyNameRegexp, `a DNS label, "<tier>.<name>" with DNS labels, or "knp.default.<name>"`
		if global {
			re, form = globalNetworkPolicyNameRegexp, `a DNS label or "<tier>.<name>" with DNS labels`
		}
		switch {
		case len(name) > maxSubdomainLen:
			errs.addf(p, name, "must be at most %d characters", maxSubdomainLen)
			return
		case !re.MatchString(name):
			errs.add(p, name, "policy name must be "+form)
			return
		case !global && strings.HasPrefix(name, K8sNetworkPolicyPrefix):
			return
		}
		t := tier
		if t == "" {
			t = DefaultTierName
		}
		prefix, _, dotted := strings.Cut(name, ".")
		switch {
		case !dotted && t == DefaultTierName, dotted && prefix == t:
		case t != DefaultTierName:
			errs.addf(p, name, "a policy in tier %q must be named %q", t, t+".<name>")
		default:
			errs.addf(p, name, `a policy in tier "default" must be named "<name>" or "default.<name>" (set spec.tier to %q to put it in that tier)`, prefix)
		}
	}
}
