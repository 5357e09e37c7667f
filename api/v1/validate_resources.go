package v1

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	containerIDRegexp     = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	interfacePrefixRegexp = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,7}$`)
)

// IPv4 and IPv6 link-local ranges, which pools must not overlap.
var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
)

func checkASNumber(errs *fieldErrors, p fieldPath, a *ASNumber) {
	if a != nil && *a == 0 {
		errs.add(p, "0", "AS number must be between 1 and 4294967295")
	}
}

func checkNodeSpec(errs *fieldErrors, s *NodeSpec) {
	sp := fieldPath("spec")
	if b := s.BGP; b != nil {
		bp := sp.child("bgp")
		if *b == (NodeBGPSpec{}) {
			errs.add(bp, "", "bgp must not be empty: leave it out for a node without BGP")
		}
		for _, a := range []struct {
			name, value string
			fam         int
		}{{"ipv4Address", b.IPv4Address, 4}, {"ipv6Address", b.IPv6Address, 6}} {
			if a.value == "" {
				continue
			}
			if fam := checkCIDR(errs, bp.child(a.name), a.value); fam != 0 && fam != a.fam {
				errs.addf(bp.child(a.name), a.value, "must be an IPv%d address", a.fam)
			}
		}
		checkASNumber(errs, bp.child("asNumber"), b.ASNumber)
		if id := b.RouteReflectorClusterID; id != "" {
			if fam := checkIP(errs, bp.child("routeReflectorClusterID"), id); fam == 6 {
				errs.add(bp.child("routeReflectorClusterID"), id, "must be an IPv4 address")
			}
		}
	}
	for i, a := range s.Addresses {
		ap := sp.child("addresses").index(i)
		checkCIDR(errs, ap.child("address"), a.Address)
		switch a.Type {
		case "", NodeInternalIP, NodeExternalIP:
		default:
			errs.add(ap.child("type"), a.Type, "type must be InternalIP or ExternalIP")
		}
	}
}

func checkWorkloadEndpointSpec(errs *fieldErrors, s *WorkloadEndpointSpec) {
	sp := fieldPath("spec")
	if s.Node == "" {
		errs.add(sp.child("node"), "", "node is required")
	} else {
		checkSubdomain(errs, sp.child("node"), s.Node)
	}
	if r := labelValueProblem(s.Orchestrator); r != "" {
		errs.add(sp.child("orchestrator"), s.Orchestrator, "orchestrator is a label value and "+r)
	}
	if s.ContainerID != "" && !containerIDRegexp.MatchString(s.ContainerID) {
		errs.add(sp.child("containerID"), s.ContainerID, "containerID must consist of letters, digits and '-', and start and end with a letter or digit")
	}
	if s.Pod != "" {
		checkSubdomain(errs, sp.child("pod"), s.Pod)
	}
	if s.ServiceAccountName != "" {
		checkSubdomain(errs, sp.child("serviceAccountName"), s.ServiceAccountName)
	}
	var addrs []netip.Prefix
	for i, n := range s.IPNetworks {
		np := sp.child("ipNetworks").index(i)
		pfx, err := parseCIDROrIP(n)
		switch {
		case err != nil:
			errs.add(np, n, "invalid CIDR")
		case pfx.Bits() != pfx.Addr().BitLen():
			errs.add(np, n, "must be a single address (/32 or /128)")
		default:
			addrs = append(addrs, pfx)
		}
	}
	for i, nat := range s.IPNATs {
		np := sp.child("ipNATs").index(i)
		in := checkIP(errs, np.child("internalIP"), nat.InternalIP)
		ex := checkIP(errs, np.child("externalIP"), nat.ExternalIP)
		if in != 0 && ex != 0 && in != ex {
			errs.add(np.child("externalIP"), nat.ExternalIP, "externalIP and internalIP must be of one IP version")
		}
		if in != 0 {
			a := netip.MustParseAddr(nat.InternalIP)
			found := false
			for _, pfx := range addrs {
				found = found || pfx.Contains(a)
			}
			if !found {
				errs.add(np.child("internalIP"), nat.InternalIP, "internalIP must be one of ipNetworks")
			}
		}
	}
	for _, gw := range []struct {
		name, value string
		fam         int
	}{{"ipv4Gateway", s.IPv4Gateway, 4}, {"ipv6Gateway", s.IPv6Gateway, 6}} {
		if gw.value == "" {
			continue
		}
		if fam := checkIP(errs, sp.child(gw.name), gw.value); fam != 0 && fam != gw.fam {
			errs.addf(sp.child(gw.name), gw.value, "must be an IPv%d address", gw.fam)
		}
	}
	for i, pr := range s.Profiles {
		checkSubdomain(errs, sp.child("profiles").index(i), pr)
	}
	if s.InterfaceName != "" {
		checkInterfaceName(errs, sp.child("interfaceName"), s.InterfaceName)
	}
	if s.MAC != "" {
		checkMAC(errs, sp.child("mac"), s.MAC)
	}
	for i, port := range s.Ports {
		pp := sp.child("ports").index(i)
		if port.Name == "" && port.HostPort == 0 {
			errs.add(pp.child("name"), "", "a port needs a name or a hostPort")
		}
		checkEndpointPort(errs, pp, port.Name, port.Protocol, port.Port)
		if port.HostIP != "" {
			checkIP(errs, pp.child("hostIP"), port.HostIP)
		}
	}
	checkNets(errs, sp.child("allowSpoofedSourcePrefixes"), s.AllowSpoofedSourcePrefixes)
}

// checkEndpointPort checks the common fields of a named or host port.
func checkEndpointPort(errs *fieldErrors, p fieldPath, name string, proto Protocol, port uint16) {
	if name != "" {
		if r := portNameProblem(name); r != "" {
			errs.add(p.child("name"), name, "invalid port name: "+r)
		}
	}
	if proto == "" {
		errs.add(p.child("protocol"), "", "protocol is required: TCP, UDP or SCTP")
	} else if !proto.SupportsPorts() {
		errs.add(p.child("protocol"), string(proto), "protocol must be TCP, UDP or SCTP")
	}
	if port == 0 {
		errs.add(p.child("port"), "", "port is required (1-65535)")
	}
}

func checkHostEndpointSpec(errs *fieldErrors, s *HostEndpointSpec) {
	sp := fieldPath("spec")
	if s.Node == "" {
		errs.add(sp.child("node"), "", "node is required")
	} else {
		checkSubdomain(errs, sp.child("node"), s.Node)
	}
	switch {
	case s.InterfaceName == "" && len(s.ExpectedIPs) == 0:
		errs.add(sp.child("interfaceName"), "", "interfaceName or expectedIPs is required")
	case s.InterfaceName != "" && s.InterfaceName != "*":
		checkInterfaceName(errs, sp.child("interfaceName"), s.InterfaceName)
	}
	for i, ip := range s.ExpectedIPs {
		checkIP(errs, sp.child("expectedIPs").index(i), ip)
	}
	for i, pr := range s.Profiles {
		checkSubdomain(errs, sp.child("profiles").index(i), pr)
	}
	for i, port := range s.Ports {
		pp := sp.child("ports").index(i)
		if port.Name == "" {
			errs.add(pp.child("name"), "", "name is required")
		}
		checkEndpointPort(errs, pp, port.Name, port.Protocol, port.Port)
	}
}

func checkIPPoolSpec(errs *fieldErrors, s *IPPoolSpec) {
	sp := fieldPath("spec")
	cp := sp.child("cidr")
	var pfx netip.Prefix
	switch {
	case s.CIDR == "":
		errs.add(cp, "", "cidr is required")
	case !strings.Contains(s.CIDR, "/"):
		errs.add(cp, s.CIDR, "must be a CIDR such as 10.65.0.0/16")
	default:
		var err error
		if pfx, err = netip.ParsePrefix(s.CIDR); err != nil {
			errs.add(cp, s.CIDR, "invalid CIDR")
		} else if pfx.Masked() != pfx {
			errs.addf(cp, s.CIDR, "CIDR is not strictly masked: want %s", pfx.Masked())
		} else if pfx.Overlaps(linkLocal4) || pfx.Overlaps(linkLocal6) {
			errs.add(cp, s.CIDR, "pool overlaps the link-local range")
		}
	}
	if pfx.IsValid() && s.BlockSize != 0 {
		lo, hi := 20, 32
		if pfx.Addr().Is6() {
			lo, hi = 116, 128
		}
		switch {
		case s.BlockSize < lo || s.BlockSize > hi:
			errs.addf(sp.child("blockSize"), strconv.Itoa(s.BlockSize), "blockSize must be between %d and %d for an IPv%d pool", lo, hi, family(pfx.Addr()))
		case s.BlockSize < pfx.Bits():
			errs.addf(sp.child("blockSize"), strconv.Itoa(s.BlockSize), "blocks of /%d are larger than the pool %s", s.BlockSize, s.CIDR)
		}
	}
	for _, m := range []struct {
		name string
		mode EncapMode
	}{{"vxlanMode", s.VXLANMode}, {"ipipMode", s.IPIPMode}} {
		if m.mode != "" && m.mode != EncapNever {
			errs.add(sp.child(m.name), string(m.mode), `Tabby has no overlay: the only mode supported is "Never"`)
		}
	}
	checkSelector(errs, sp.child("nodeSelector"), s.NodeSelector, false)
	seen := map[IPPoolAllowedUse]bool{}
	for i, u := range s.AllowedUses {
		up := sp.child("allowedUses").index(i)
		switch {
		case u != IPPoolAllowedUseWorkload && u != IPPoolAllowedUseTunnel:
			errs.add(up, string(u), "allowed use must be Workload or Tunnel")
		case seen[u]:
			errs.add(up, string(u), "allowed use is listed more than once")
		}
		seen[u] = true
	}
}

func checkIPAMConfigurationSpec(errs *fieldErrors, s *IPAMConfigurationSpec) {
	sp := fieldPath("spec")
	if s.MaxBlocksPerHost < 0 {
		errs.add(sp.child("maxBlocksPerHost"), strconv.Itoa(s.MaxBlocksPerHost), "maxBlocksPerHost must not be negative (0 means no limit)")
	}
	if s.ReleaseCooldownSeconds < 0 {
		errs.add(sp.child("releaseCooldownSeconds"), strconv.Itoa(s.ReleaseCooldownSeconds), "releaseCooldownSeconds must not be negative")
	}
}

func checkLogSeverity(errs *fieldErrors, p fieldPath, s string, allowed ...string) {
	if s == "" {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	errs.add(p, s, "log severity must be one of "+strings.Join(allowed, ", "))
}

func checkBGPConfigurationSpec(errs *fieldErrors, name string, s *BGPConfigurationSpec) {
	sp := fieldPath("spec")
	checkLogSeverity(errs, sp.child("logSeverityScreen"), s.LogSeverityScreen, "Debug", "Info", "Warning", "Error", "Fatal")
	if nodeOfConfig(name) != "" {
		if s.NodeToNodeMeshEnabled != nil {
			errs.add(sp.child("nodeToNodeMeshEnabled"), "", `nodeToNodeMeshEnabled can only be set in the "default" BGPConfiguration`)
		}
		if s.ASNumber != nil {
			errs.add(sp.child("asNumber"), "", `asNumber can only be set in the "default" BGPConfiguration; set a node's in its spec.bgp.asNumber`)
		}
	}
	checkASNumber(errs, sp.child("asNumber"), s.ASNumber)
	for i, n := range s.ExtraPrefixes {
		p := sp.child("extraPrefixes").index(i)
		pfx, err := netip.ParsePrefix(n)
		switch {
		case err != nil:
			errs.add(p, n, "invalid CIDR")
		case pfx.Masked() != pfx:
			errs.addf(p, n, "CIDR is not strictly masked: want %s", pfx.Masked())
		}
	}
}

func checkBGPPeerSpec(errs *fieldErrors, s *BGPPeerSpec) {
	sp := fieldPath("spec")
	if s.Node != "" {
		checkSubdomain(errs, sp.child("node"), s.Node)
		if s.NodeSelector != "" {
			errs.add(sp.child("nodeSelector"), s.NodeSelector, "node and nodeSelector cannot both be set")
		}
	}
	checkSelector(errs, sp.child("nodeSelector"), s.NodeSelector, false)
	checkSelector(errs, sp.child("peerSelector"), s.PeerSelector, false)
	switch {
	case s.PeerIP == "" && s.PeerSelector == "":
		errs.add(sp.child("peerIP"), "", "peerIP or peerSelector is required")
	case s.PeerIP != "" && s.PeerSelector != "":
		errs.add(sp.child("peerSelector"), s.PeerSelector, "peerIP and peerSelector cannot both be set")
	case s.PeerIP != "":
		if r := peerIPProblem(s.PeerIP); r != "" {
			errs.add(sp.child("peerIP"), s.PeerIP, r)
		}
		if s.ASNumber == 0 {
			errs.add(sp.child("asNumber"), "", "asNumber is required with peerIP")
		}
	}
	if s.PeerSelector != "" && s.ASNumber != 0 {
		errs.add(sp.child("asNumber"), strconv.FormatUint(uint64(s.ASNumber), 10), "asNumber cannot be set with peerSelector: the peers' AS numbers are their nodes'")
	}
	if pw := s.Password; pw != nil {
		pp := sp.child("password")
		switch {
		case pw.SecretKeyRef != nil:
			errs.add(pp.child("secretKeyRef"), "", "secretKeyRef is not supported: Tabby does not read Kubernetes secrets; give the password in password.value")
		case pw.Value == "":
			errs.add(pp.child("value"), "", "password.value is required")
		case len(pw.Value) > 80:
			errs.add(pp.child("value"), "", "password must be at most 80 characters (TCP MD5 key size)")
		}
	}
	switch s.SourceAddress {
	case "", SourceAddressUseNodeIP, SourceAddressNone:
	default:
		errs.add(sp.child("sourceAddress"), string(s.SourceAddress), "sourceAddress must be UseNodeIP or None")
	}
	checkBGPTimer(errs, sp.child("keepaliveTime"), s.KeepaliveTime, 21845*time.Second)
	checkBGPTimer(errs, sp.child("maxRestartTime"), s.MaxRestartTime, 4095*time.Second)
}

// peerIPProblem checks "<ip>", "<ipv4>:<port>" or "[<ipv6>]:<port>".
func peerIPProblem(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return ""
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || ap.Addr().Zone() != "":
		return `peerIP must be an IP address, "<IPv4>:<port>" or "[<IPv6>]:<port>"`
	case ap.Port() == 0:
		return "peerIP port must be between 1 and 65535"
	}
	return ""
}

// checkBGPTimer checks a BGP timer: whole seconds from 1s to max.
func checkBGPTimer(errs *fieldErrors, p fieldPath, d *Duration, max time.Duration) {
	switch {
	case d == nil:
	case d.Duration < time.Second || d.Duration > max:
		errs.addf(p, d.String(), "must be between 1s and %s", max)
	case d.Duration%time.Second != 0:
		errs.add(p, d.String(), "must be a whole number of seconds")
	}
}

func checkConfigurationSpec(errs *fieldErrors, s *ConfigurationSpec) {
	sp := fieldPath("spec")
	checkLogSeverity(errs, sp.child("logSeverityScreen"), s.LogSeverityScreen, "Trace", "Debug", "Info", "Warning", "Error", "Fatal")
	for _, d := range []struct {
		name string
		d    *Duration
	}{
		{"reportingInterval", s.ReportingInterval},
		{"routeRefreshInterval", s.RouteRefreshInterval},
		{"nftablesRefreshInterval", s.NftablesRefreshInterval},
	} {
		if d.d != nil && d.d.Duration < 0 {
			errs.add(sp.child(d.name), d.d.String(), "must not be negative (0 turns it off)")
		}
	}
	switch s.DefaultEndpointToHostAction {
	case "", "Drop", "Accept", "Return":
	default:
		errs.add(sp.child("defaultEndpointToHostAction"), s.DefaultEndpointToHostAction, "defaultEndpointToHostAction must be Drop, Accept or Return")
	}
	for _, f := range []struct {
		name  string
		ports *[]ProtoPort
	}{{"failsafeInboundHostPorts", s.FailsafeInboundHostPorts}, {"failsafeOutboundHostPorts", s.FailsafeOutboundHostPorts}} {
		if f.ports == nil {
			continue
		}
		for i, pp := range *f.ports {
			p := sp.child(f.name).index(i)
			switch strings.ToUpper(pp.Protocol) {
			case "TCP", "UDP", "SCTP":
			default:
				errs.add(p.child("protocol"), pp.Protocol, "protocol must be TCP, UDP or SCTP")
			}
			if pp.Port == 0 {
				errs.add(p.child("port"), "", "port is required (1-65535)")
			}
			if pp.Net != "" {
				checkCIDR(errs, p.child("net"), pp.Net)
			}
		}
	}
	if s.InterfacePrefix != "" && !interfacePrefixRegexp.MatchString(s.InterfacePrefix) {
		errs.add(sp.child("interfacePrefix"), s.InterfacePrefix, "interfacePrefix must be 1-7 letters, digits, '_' or '-'")
	}
	if r := s.DeviceRouteProtocol; r != 0 && (r < 5 || r > 255) {
		errs.add(sp.child("deviceRouteProtocol"), strconv.Itoa(r), "deviceRouteProtocol must be between 5 and 255 (0-4 belong to the kernel)")
	}
	for _, port := range []struct {
		name string
		v    int
	}{{"healthPort", s.HealthPort}, {"prometheusMetricsPort", s.PrometheusMetricsPort}} {
		if port.v < 0 || port.v > 65535 {
			errs.add(sp.child(port.name), strconv.Itoa(port.v), "port must be between 1 and 65535")
		}
	}
	if r := logPrefixProblem(s.LogPrefix); r != "" {
		errs.add(sp.child("logPrefix"), s.LogPrefix, r)
	}
	if a := s.NATOutgoingAddress; a != "" {
		if fam := checkIP(errs, sp.child("natOutgoingAddress"), a); fam == 6 {
			errs.add(sp.child("natOutgoingAddress"), a, "must be an IPv4 address")
		}
	}
}

func logPrefixProblem(s string) string {
	if len(s) > 127 {
		return fmt.Sprintf("logPrefix must be at most 127 characters, not %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' || s[i] == '"' {
			return "logPrefix must be printable ASCII without '\"'"
		}
	}
	return ""
}
