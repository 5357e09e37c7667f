package v1

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/selector"
)

const (
	labelFmt     = `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
	subdomainFmt = labelFmt + `(\.` + labelFmt + `)*`
	// qualifiedNameFmt is the name part of a label key and the form of a
	// label value (Kubernetes').
	qualifiedNameFmt = `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
)

var (
	labelRegexp         = regexp.MustCompile(`^` + labelFmt + `$`)
	subdomainRegexp     = regexp.MustCompile(`^` + subdomainFmt + `$`)
	qualifiedNameRegexp = regexp.MustCompile(`^` + qualifiedNameFmt + `$`)
	interfaceRegexp     = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
	portNameRegexp      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// NetworkPolicy names are a DNS label, two DNS labels joined by a dot
	// (<tier>.<name>), or a converted Kubernetes policy's name.
	networkPolicyNameRegexp = regexp.MustCompile(`^(` + labelFmt + `(\.` + labelFmt + `)?|knp\.default\.` + subdomainFmt + `)$`)
	// GlobalNetworkPolicy names are a DNS label, optionally after
	// "<tier>.".
	globalNetworkPolicyNameRegexp = regexp.MustCompile(`^(` + labelFmt + `\.)?` + labelFmt + `$`)
)

const (
	subdomainReason = "must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit"
	labelReason     = "must consist of lower case letters, digits and '-', and start and end with a letter or digit"
	maxSubdomainLen = 253
	maxLabelLen     = 63
	// maxAnnotationBytes is Kubernetes' limit on the total size of an
	// object's annotations.
	maxAnnotationBytes = 256 << 10
)

// checkSubdomain checks a DNS-1123 subdomain name (dots allowed, as
// Calico does for most names).
func checkSubdomain(errs *fieldErrors, p fieldPath, s string) {
	switch {
	case len(s) > maxSubdomainLen:
		errs.addf(p, s, "must be at most %d characters", maxSubdomainLen)
	case !subdomainRegexp.MatchString(s):
		errs.add(p, s, subdomainReason)
	}
}

// checkLabelName checks a DNS-1123 label (no dots).
func checkLabelName(errs *fieldErrors, p fieldPath, s string) {
	switch {
	case len(s) > maxLabelLen:
		errs.addf(p, s, "must be at most %d characters", maxLabelLen)
	case !labelRegexp.MatchString(s):
		errs.add(p, s, labelReason)
	}
}

// labelKeyProblem returns what is wrong with a label or annotation key, or
// "" when it is valid: an optional DNS subdomain prefix and "/", then a
// name of at most 63 characters.
func labelKeyProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = k
	} else {
		switch {
		case prefix == "":
			return "prefix before '/' must not be empty"
		case len(prefix) > maxSubdomainLen:
			return fmt.Sprintf("prefix before '/' must be at most %d characters", maxSubdomainLen)
		case !subdomainRegexp.MatchString(prefix):
			return "prefix before '/' " + subdomainReason
		}
	}
	switch {
	case name == "":
		return "name must not be empty"
	case len(name) > maxLabelLen:
		return fmt.Sprintf("name must be at most %d characters", maxLabelLen)
	case !qualifiedNameRegexp.MatchString(name):
		return "name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
	}
	return ""
}

// labelValueProblem returns what is wrong with a label value, or "".
func labelValueProblem(v string) string {
	switch {
	case v == "":
		return ""
	case len(v) > maxLabelLen:
		return fmt.Sprintf("must be at most %d characters", maxLabelLen)
	case !qualifiedNameRegexp.MatchString(v):
		return "must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
	}
	return ""
}

// checkLabels checks a label map; implicit says whether the map belongs
// to metadata.labels, where implicit labels must not be set.
func checkLabels(errs *fieldErrors, p fieldPath, labels map[string]string, implicit bool) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if r := labelKeyProblem(k); r != "" {
			errs.add(p, k, "invalid label key: "+r)
			continue
		}
		if implicit && k == LabelNamespace {
			errs.add(p, k, "label is implicit: Tabby sets it from metadata.namespace")
		}
		if r := labelValueProblem(labels[k]); r != "" {
			errs.add(p.key(k), labels[k], "invalid label value: "+r)
		}
	}
}

func checkAnnotations(errs *fieldErrors, p fieldPath, annotations map[string]string) {
	total := 0
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if r := labelKeyProblem(k); r != "" {
			errs.add(p, k, "invalid annotation key: "+r)
		}
		total += len(k) + len(annotations[k])
	}
	if total > maxAnnotationBytes {
		errs.addf(p, "", "annotations must total at most %d bytes, not %d", maxAnnotationBytes, total)
	}
}

// checkMeta checks the metadata of an object of kind k; the name's form is
// checked by the caller's nameCheck.
func checkMeta(errs *fieldErrors, k KindInfo, m *ObjectMeta, nameCheck func(*fieldErrors, fieldPath, string)) {
	p := fieldPath("metadata")
	if m.Name == "" {
		errs.add(p.child("name"), "", "name is required")
	} else {
		nameCheck(errs, p.child("name"), m.Name)
	}
	switch {
	case k.Namespaced && m.Namespace == "":
		errs.add(p.child("namespace"), "", "namespace is required for "+k.Kind)
	case k.Namespaced:
		checkLabelName(errs, p.child("namespace"), m.Namespace)
	case m.Namespace != "":
		errs.add(p.child("namespace"), m.Namespace, k.Kind+" is cluster-scoped and has no namespace")
	}
	checkLabels(errs, p.child("labels"), m.Labels, true)
	checkAnnotations(errs, p.child("annotations"), m.Annotations)
}

// checkSelector checks selector syntax; global() is allowed only where
// allowGlobal is true (a rule's namespaceSelector).
func checkSelector(errs *fieldErrors, p fieldPath, s string, allowGlobal bool) {
	if s == "" {
		return
	}
	sel, err := selector.Parse(s)
	if err != nil {
		var pe *selector.ParseError
		if errors.As(err, &pe) {
			errs.addf(p, s, "invalid selector at position %d: %s", pe.Pos, pe.Msg)
		} else {
			errs.addf(p, s, "invalid selector: %v", err)
		}
		return
	}
	switch {
	case !sel.UsesGlobal():
	case !allowGlobal:
		errs.add(p, s, "global() can only be used in a rule's namespaceSelector")
	case !sel.IsGlobal():
		errs.add(p, s, "global() cannot be combined with other selectors")
	}
}

// parseCIDROrIP parses a CIDR, or a single address as a full-length
// prefix. Zoned addresses are rejected.
func parseCIDROrIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zoned address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkCIDR checks a CIDR or a single address and returns its family (4
// or 6), or 0 when it is invalid.
func checkCIDR(errs *fieldErrors, p fieldPath, s string) int {
	pfx, err := parseCIDROrIP(s)
	if err != nil {
		errs.add(p, s, "invalid CIDR")
		return 0
	}
	return family(pfx.Addr())
}

// checkIP checks a single address and returns its family, or 0.
func checkIP(errs *fieldErrors, p fieldPath, s string) int {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		errs.add(p, s, "invalid IP address")
		return 0
	}
	return family(a)
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func checkInterfaceName(errs *fieldErrors, p fieldPath, s string) {
	if !interfaceRegexp.MatchString(s) {
		errs.add(p, s, "invalid interface name: want 1-15 letters, digits, '_', '.' or '-'")
	}
}

func checkMAC(errs *fieldErrors, p fieldPath, s string) {
	if hw, err := net.ParseMAC(s); err != nil || len(hw) != 6 {
		errs.add(p, s, "invalid MAC address")
	}
}

// portNameProblem returns what is wrong with a named port (Kubernetes'
// IANA service name rule), or "".
func portNameProblem(s string) string {
	switch {
	case len(s) > 15:
		return "must be at most 15 characters"
	case !portNameRegexp.MatchString(s):
		return "must consist of lower case letters, digits and '-', and start and end with a letter or digit"
	case strings.Contains(s, "--"):
		return "must not contain '--'"
	case strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' }) < 0:
		return "must contain a letter"
	}
	return ""
}
