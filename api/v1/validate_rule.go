package v1

import (
	"math"
	"strconv"
	"strings"
)

const (
	protocolPortsReason = "rules with ports must set protocol to TCP, UDP or SCTP"
	protocolICMPReason  = "rules with ICMP fields must set protocol to ICMP or ICMPv6"
)

// checkRules checks the rules of one direction of a policy or profile.
func checkRules(errs *fieldErrors, p fieldPath, rules []Rule) {
	for i := range rules {
		checkRule(errs, p.index(i), &rules[i])
	}
}

func checkRule(errs *fieldErrors, p fieldPath, r *Rule) {
	switch r.Action {
	case Allow, Deny, Log, Pass:
	case "":
		errs.add(p.child("action"), "", "action is required: Allow, Deny, Log or Pass")
	default:
		errs.add(p.child("action"), string(r.Action), "action must be Allow, Deny, Log or Pass")
	}
	if r.IPVersion != nil && *r.IPVersion != 4 && *r.IPVersion != 6 {
		errs.add(p.child("ipVersion"), strconv.Itoa(*r.IPVersion), "ipVersion must be 4 or 6")
	}
	checkProtocol(errs, p.child("protocol"), r.Protocol)
	checkProtocol(errs, p.child("notProtocol"), r.NotProtocol)

	// Ports need a protocol that has ports (Calico's rule).
	if r.Protocol == nil || !r.Protocol.SupportsPorts() {
		for _, f := range []struct {
			path  fieldPath
			ports []Port
		}{
			{p.child("source").child("ports"), r.Source.Ports},
			{p.child("source").child("notPorts"), r.Source.NotPorts},
			{p.child("destination").child("ports"), r.Destination.Ports},
			{p.child("destination").child("notPorts"), r.Destination.NotPorts},
		} {
			if len(f.ports) > 0 {
				errs.add(f.path, "", protocolPortsReason)
			}
		}
	}

	// ICMP fields need protocol ICMP or ICMPv6, which fixes the IP
	// version.
	isICMP := r.Protocol != nil && (r.Protocol.normalize() == ProtocolICMP || r.Protocol.normalize() == ProtocolICMPv6)
	for _, f := range []struct {
		name string
		icmp *ICMPFields
	}{{"icmp", r.ICMP}, {"notICMP", r.NotICMP}} {
		if f.icmp == nil {
			continue
		}
		if !isICMP {
			errs.add(p.child(f.name), "", protocolICMPReason)
		}
		checkICMP(errs, p.child(f.name), f.icmp)
	}
	if r.IPVersion != nil {
		for _, f := range []struct {
			name  string
			proto *Protocol
		}{{"protocol", r.Protocol}, {"notProtocol", r.NotProtocol}} {
			if f.proto == nil {
				continue
			}
			switch {
			case f.proto.normalize() == ProtocolICMP && *r.IPVersion == 6:
				errs.add(p.child(f.name), string(*f.proto), "protocol ICMP needs ipVersion 4; use ICMPv6")
			case f.proto.normalize() == ProtocolICMPv6 && *r.IPVersion == 4:
				errs.add(p.child(f.name), string(*f.proto), "protocol ICMPv6 needs ipVersion 6; use ICMP")
			}
		}
	}

	// The nets of a rule must all be of one family, and of the rule's
	// ipVersion when it has one.
	var seen4, seen6 bool
	checkNets := func(np fieldPath, nets []string) {
		for i, n := range nets {
			fam := checkCIDR(errs, np.index(i), n)
			switch {
			case fam == 0:
			case r.IPVersion != nil && (*r.IPVersion == 4 || *r.IPVersion == 6) && fam != *r.IPVersion:
				errs.addf(np.index(i), n, "IPv%d CIDR in a rule with ipVersion %d", fam, *r.IPVersion)
			case r.IPVersion == nil && (fam == 4 && seen6 || fam == 6 && seen4):
				errs.add(np.index(i), n, "rule mixes IPv4 and IPv6 CIDRs")
			}
			seen4 = seen4 || fam == 4
			seen6 = seen6 || fam == 6
		}
	}
	for _, end := range []struct {
		name string
		e    *EntityRule
	}{{"source", &r.Source}, {"destination", &r.Destination}} {
		ep := p.child(end.name)
		checkNets(ep.child("nets"), end.e.Nets)
		checkNets(ep.child("notNets"), end.e.NotNets)
		checkEntityRule(errs, ep, end.e)
	}
	if r.Metadata != nil {
		checkAnnotations(errs, p.child("metadata").child("annotations"), r.Metadata.Annotations)
	}
}

func checkEntityRule(errs *fieldErrors, p fieldPath, e *EntityRule) {
	checkSelector(errs, p.child("selector"), e.Selector, false)
	checkSelector(errs, p.child("notSelector"), e.NotSelector, false)
	checkSelector(errs, p.child("namespaceSelector"), e.NamespaceSelector, true)
	checkPorts(errs, p.child("ports"), e.Ports)
	checkPorts(errs, p.child("notPorts"), e.NotPorts)
	if sa := e.ServiceAccounts; sa != nil {
		sp := p.child("serviceAccounts")
		for i, n := range sa.Names {
			checkSubdomain(errs, sp.child("names").index(i), n)
		}
		checkSelector(errs, sp.child("selector"), sa.Selector, false)
	}
}

func checkPorts(errs *fieldErrors, p fieldPath, ports []Port) {
	for i, port := range ports {
		if r := portProblem(port); r != "" {
			errs.add(p.index(i), string(port), r)
		}
	}
}

// portProblem returns what is wrong with a rule port, or "".
func portProblem(port Port) string {
	s := string(port)
	if s == "" {
		return "port must not be empty"
	}
	if !port.isNumeric() {
		if r := portNameProblem(s); r != "" {
			return "invalid named port: " + r
		}
		return ""
	}
	first, last, isRange := strings.Cut(s, ":")
	lo, err := parsePortNumber(first)
	if err != nil {
		if isRange {
			return "invalid port range: want \"min:max\" with ports between 1 and 65535"
		}
		return err.Error()
	}
	if !isRange {
		return ""
	}
	hi, err := parsePortNumber(last)
	if err != nil {
		return "invalid port range: want \"min:max\" with ports between 1 and 65535"
	}
	if lo > hi {
		return "range start is after end"
	}
	return ""
}

func checkProtocol(errs *fieldErrors, p fieldPath, proto *Protocol) {
	if proto == nil {
		return
	}
	if _, ok := proto.Number(); !ok {
		if isDigits(string(*proto)) {
			errs.add(p, string(*proto), "protocol number must be between 1 and 255")
		} else {
			errs.add(p, string(*proto), "unknown protocol: want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number between 1 and 255")
		}
	}
}

func checkICMP(errs *fieldErrors, p fieldPath, f *ICMPFields) {
	if f.Type != nil && (*f.Type < 0 || *f.Type > 254) {
		errs.add(p.child("type"), strconv.Itoa(*f.Type), "ICMP type must be between 0 and 254")
	}
	if f.Code != nil {
		if *f.Code < 0 || *f.Code > 255 {
			errs.add(p.child("code"), strconv.Itoa(*f.Code), "ICMP code must be between 0 and 255")
		}
		if f.Type == nil {
			errs.add(p.child("code"), strconv.Itoa(*f.Code), "ICMP code needs an ICMP type")
		}
	}
}

// checkOrder checks that an order is a finite number.
func checkOrder(errs *fieldErrors, p fieldPath, order *float64) {
	if order != nil && (math.IsNaN(*order) || math.IsInf(*order, 0)) {
		errs.add(p, strconv.FormatFloat(*order, 'g', -1, 64), "order must be a finite number")
	}
}

// checkTypes checks a policy's types.
func checkTypes(errs *fieldErrors, p fieldPath, types []PolicyType) {
	seen := map[PolicyType]bool{}
	for i, t := range types {
		switch t {
		case PolicyTypeIngress, PolicyTypeEgress:
			if seen[t] {
				errs.add(p.index(i), string(t), "type is listed more than once")
			}
			seen[t] = true
		default:
			errs.add(p.index(i), string(t), "type must be Ingress or Egress")
		}
	}
}
