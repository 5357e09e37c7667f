package v1

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Kubernetes API versions Tabby converts from.
const (
	k8sNetworkingAPIVersion = "networking.k8s.io/v1"
	k8sCoreAPIVersion       = "v1"
)

// K8sNetworkPolicyOrder is the order of NetworkPolicies converted from
// Kubernetes (Calico's value).
const K8sNetworkPolicyOrder = 1000

// annotationLastApplied is kubectl's copy of the applied manifest, which
// is not carried over to converted objects.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// decodeKubernetes decodes a Kubernetes object into the types of
// k8s.io/api and converts it. Unknown fields are errors, as everywhere;
// the fields the API server sets in metadata (uid, resourceVersion,
// managedFields, …) are checked against their types and then dropped, and
// status, which the server alone writes, is ignored, so that the output
// of "kubectl get -o yaml" decodes.
func decodeKubernetes(apiVersion, kind string, m map[string]any) (Object, fieldErrors, error) {
	switch {
	case apiVersion == k8sNetworkingAPIVersion && kind == "NetworkPolicy":
		var np networkingv1.NetworkPolicy
		fes, err := decodeStrict(&np, withoutKey(m, "status"), "unknown field")
		if err != nil || len(fes) > 0 {
			return nil, fes, err
		}
		obj, fes := convertK8sNetworkPolicy(&np)
		return obj, fes, nil
	case apiVersion == k8sCoreAPIVersion && kind == "Namespace":
		var ns corev1.Namespace
		fes, err := decodeStrict(&ns, withoutKey(m, "status"), "unknown field")
		if err != nil || len(fes) > 0 {
			return nil, fes, err
		}
		return &Namespace{Metadata: ObjectMeta{
			Name:        ns.Name,
			Namespace:   ns.Namespace,
			Labels:      ns.Labels,
			Annotations: withoutLastApplied(ns.Annotations),
		}}, nil, nil
	}
	return nil, nil, fmt.Errorf("%s kind %s is not supported by Tabby", apiVersion, kind)
}

func withoutLastApplied(a map[string]string) map[string]string {
	if _, ok := a[annotationLastApplied]; !ok {
		return a
	}
	out := maps.Clone(a)
	delete(out, annotationLastApplied)
	return out
}

// convertK8sNetworkPolicy converts a Kubernetes NetworkPolicy into a Tabby
// NetworkPolicy with the same meaning, as Calico does. Problems of the
// Kubernetes policy are reported with its own field paths.
func convertK8sNetworkPolicy(np *networkingv1.NetworkPolicy) (*NetworkPolicy, fieldErrors) {
	var errs fieldErrors
	sp := fieldPath("spec")
	if np.Name == "" {
		errs.add("metadata.name", "", "name is required")
	} else {
		checkSubdomain(&errs, "metadata.name", np.Name)
	}
	order := float64(K8sNetworkPolicyOrder)
	out := &NetworkPolicy{
		Metadata: ObjectMeta{
			Name:        K8sNetworkPolicyPrefix + np.Name,
			Namespace:   np.Namespace,
			Labels:      np.Labels,
			Annotations: withoutLastApplied(maps.Clone(np.Annotations)),
		},
		Spec: NetworkPolicySpec{
			Tier:     DefaultTierName,
			Order:    &order,
			Selector: k8sSelector(&errs, sp.child("podSelector"), &np.Spec.PodSelector, true),
		},
	}
	if out.Metadata.Annotations == nil {
		out.Metadata.Annotations = map[string]string{}
	}
	out.Metadata.Annotations[AnnotationK8sNetworkPolicy] = np.Name

	for i, r := range np.Spec.Ingress {
		p := sp.child("ingress").index(i)
		out.Spec.Ingress = append(out.Spec.Ingress, k8sRules(&errs, p, r.Ports, p.child("from"), r.From, true)...)
	}
	for i, r := range np.Spec.Egress {
		p := sp.child("egress").index(i)
		out.Spec.Egress = append(out.Spec.Egress, k8sRules(&errs, p, r.Ports, p.child("to"), r.To, false)...)
	}

	// Kubernetes' default types: Ingress always, Egress when there are
	// egress rules. An Ingress policy without ingress rules denies all
	// ingress to the selected pods.
	if len(np.Spec.PolicyTypes) > 0 {
		for i, t := range np.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs.add(sp.child("policyTypes").index(i), string(t), "policy type must be Ingress or Egress")
			}
			out.Spec.Types = append(out.Spec.Types, PolicyType(t))
		}
	} else {
		out.Spec.Types = []PolicyType{PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			out.Spec.Types = append(out.Spec.Types, PolicyTypeEgress)
		}
	}
	return out, errs
}

// k8sProtocolPorts is the ports of one protocol in a Kubernetes rule.
type k8sProtocolPorts struct {
	protocol Protocol
	ports    []Port
	anyPort  bool
}

// k8sRules converts one Kubernetes rule into Tabby rules: one per (peer,
// protocol), with the protocol's ports as a list; no peers means any
// source or destination, and no ports means any protocol.
func k8sRules(errs *fieldErrors, p fieldPath, ports []networkingv1.NetworkPolicyPort, peersPath fieldPath, peers []networkingv1.NetworkPolicyPeer, ingress bool) []Rule {
	var groups []*k8sProtocolPorts
	for i, kp := range ports {
		pp := p.child("ports").index(i)
		proto := ProtocolTCP
		if kp.Protocol != nil {
			switch *kp.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
				proto = Protocol(*kp.Protocol)
			default:
				errs.add(pp.child("protocol"), string(*kp.Protocol), "protocol must be TCP, UDP or SCTP")
			}
		}
		idx := slices.IndexFunc(groups, func(g *k8sProtocolPorts) bool { return g.protocol == proto })
		if idx < 0 {
			groups = append(groups, &k8sProtocolPorts{protocol: proto})
			idx = len(groups) - 1
		}
		g := groups[idx]
		if port, ok := k8sPortMatch(errs, pp, kp); !ok {
			continue
		} else if port == "" {
			g.anyPort = true
		} else {
			g.ports = append(g.ports, port)
		}
	}

	var matches []EntityRule
	for i := range peers {
		if e, ok := k8sPeerMatch(errs, peersPath.index(i), &peers[i]); ok {
			matches = append(matches, e)
		}
	}
	if len(peers) == 0 {
		matches = []EntityRule{{}}
	}

	var rules []Rule
	for _, peer := range matches {
		if len(groups) == 0 {
			groups = []*k8sProtocolPorts{nil}
		}
		for _, g := range groups {
			r := Rule{Action: Allow}
			if ingress {
				r.Source = peer
			} else {
				r.Destination = peer
			}
			if g != nil {
				proto := g.protocol
				r.Protocol = &proto
				if !g.anyPort {
					r.Destination.Ports = slices.Clone(g.ports)
				}
			}
			rules = append(rules, r)
		}
	}
	return rules
}

// k8sPortMatch converts a Kubernetes port (number, name, or number with
// endPort) to a Tabby Port; "" means any port of the protocol.
func k8sPortMatch(errs *fieldErrors, p fieldPath, kp networkingv1.NetworkPolicyPort) (Port, bool) {
	if kp.Port == nil {
		if kp.EndPort != nil {
			errs.add(p.child("endPort"), strconv.Itoa(int(*kp.EndPort)), "endPort needs port")
			return "", false
		}
		return "", true
	}
	port := Port(kp.Port.StrVal)
	if kp.Port.Type == intstr.Int {
		port = Port(strconv.Itoa(int(kp.Port.IntVal)))
	}
	if r := portProblem(port); r != "" || strings.Contains(string(port), ":") {
		if r == "" {
			r = "port must be a number or a port name"
		}
		errs.add(p.child("port"), string(port), r)
		return "", false
	}
	if kp.EndPort == nil {
		return port, true
	}
	lo, _, ok := port.Range()
	end := *kp.EndPort
	switch {
	case !ok:
		errs.add(p.child("endPort"), strconv.Itoa(int(end)), "endPort cannot be used with a named port")
	case end < int32(lo) || end > 65535:
		errs.addf(p.child("endPort"), strconv.Itoa(int(end)), "endPort must be between port (%d) and 65535", lo)
	default:
		return PortRange(lo, uint16(end)), true
	}
	return "", false
}

// k8sPeerMatch converts a Kubernetes peer to the matching EntityRule.
func k8sPeerMatch(errs *fieldErrors, p fieldPath, peer *networkingv1.NetworkPolicyPeer) (EntityRule, bool) {
	var e EntityRule
	n := len(*errs)
	switch {
	case peer.IPBlock != nil:
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			errs.add(p.child("ipBlock"), "", "ipBlock cannot be combined with podSelector or namespaceSelector")
			break
		}
		bp := p.child("ipBlock")
		cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			errs.add(bp.child("cidr"), peer.IPBlock.CIDR, "invalid CIDR")
			break
		}
		e.Nets = []string{peer.IPBlock.CIDR}
		for i, x := range peer.IPBlock.Except {
			ex, err := netip.ParsePrefix(x)
			switch {
			case err != nil:
				errs.add(bp.child("except").index(i), x, "invalid CIDR")
			case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() < cidr.Bits() || !cidr.Contains(ex.Addr()):
				errs.addf(bp.child("except").index(i), x, "must be within cidr %s", peer.IPBlock.CIDR)
			}
		}
		e.NotNets = slices.Clone(peer.IPBlock.Except)
	case peer.PodSelector == nil && peer.NamespaceSelector == nil:
		errs.add(p, "", "a peer needs podSelector, namespaceSelector or ipBlock")
	default:
		// Pods of the policy's namespace, or of the namespaces that the
		// namespace selector selects; both selectors must match.
		pods := peer.PodSelector
		if pods == nil {
			pods = &metav1.LabelSelector{}
		}
		e.Selector = k8sSelector(errs, p.child("podSelector"), pods, true)
		if peer.NamespaceSelector != nil {
			e.NamespaceSelector = k8sSelector(errs, p.child("namespaceSelector"), peer.NamespaceSelector, false)
		}
	}
	return e, len(*errs) == n
}

// k8sSelector converts a Kubernetes label selector to a Tabby selector.
// A pod selector also requires LabelOrchestrator == "k8s"; an empty
// namespace selector selects all namespaces.
func k8sSelector(errs *fieldErrors, p fieldPath, s *metav1.LabelSelector, pods bool) string {
	var parts []string
	if pods {
		parts = append(parts, fmt.Sprintf("%s == %q", LabelOrchestrator, OrchestratorKubernetes))
	}
	checkKey := func(kp fieldPath, k string) bool {
		if r := labelKeyProblem(k); r != "" {
			errs.add(kp, k, "invalid label key: "+r)
			return false
		}
		return true
	}
	checkValue := func(vp fieldPath, v string) bool {
		if r := labelValueProblem(v); r != "" {
			errs.add(vp, v, "invalid label value: "+r)
			return false
		}
		return true
	}
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		v := s.MatchLabels[k]
		if checkKey(p.child("matchLabels"), k) && checkValue(p.child("matchLabels").key(k), v) {
			parts = append(parts, fmt.Sprintf("%s == %q", k, v))
		}
	}
	for i, req := range s.MatchExpressions {
		rp := p.child("matchExpressions").index(i)
		if !checkKey(rp.child("key"), req.Key) {
			continue
		}
		valid := true
		quoted := make([]string, len(req.Values))
		for j, v := range req.Values {
			valid = checkValue(rp.child("values").index(j), v) && valid
			quoted[j] = strconv.Quote(v)
		}
		if !valid {
			continue
		}
		set := "{" + strings.Join(quoted, ", ") + "}"
		op := string(req.Operator)
		switch req.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(req.Values) == 0 {
				errs.add(rp.child("values"), "", "values must not be empty for operator "+op)
			} else if req.Operator == metav1.LabelSelectorOpIn {
				parts = append(parts, req.Key+" in "+set)
			} else {
				parts = append(parts, req.Key+" not in "+set)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(req.Values) > 0 {
				errs.add(rp.child("values"), "", "values must be empty for operator "+op)
			} else if req.Operator == metav1.LabelSelectorOpExists {
				parts = append(parts, "has("+req.Key+")")
			} else {
				parts = append(parts, "!has("+req.Key+")")
			}
		default:
			errs.add(rp.child("operator"), op, "operator must be In, NotIn, Exists or DoesNotExist")
		}
	}
	if len(parts) == 0 {
		return "all()"
	}
	return strings.Join(parts, " && ")
}
