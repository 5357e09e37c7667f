package v1

import "testing"

// manifest returns a tabby.dev/v1 manifest of kind named name with the
// given spec lines.
func manifest(kind, name, spec string) string {
	return "apiVersion: tabby.dev/v1\nkind: " + kind + "\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

func prefixed(prefix string, lines ...string) []string {
	for i, l := range lines {
		lines[i] = "t.yaml: document 1 (" + prefix + "): " + l
	}
	return lines
}

func TestInvalidIPPools(t *testing.T) {
	pool := func(spec string) string { return manifest("IPPool", "p", spec) }
	errs := func(lines ...string) []string { return prefixed("IPPool p", lines...) }
	runInvalidCases(t, []invalidCase{
		{"cidr required", pool("  natOutgoing: true\n"), errs(`spec.cidr: cidr is required`)},
		{"cidr form", pool("  cidr: 10.0.0.1\n"), errs(`spec.cidr: "10.0.0.1": must be a CIDR such as 10.65.0.0/16`)},
		{"cidr syntax", pool("  cidr: 10.0.0.0/40\n"), errs(`spec.cidr: "10.0.0.0/40": invalid CIDR`)},
		{"cidr masked", pool("  cidr: 10.0.0.1/16\n"), errs(`spec.cidr: "10.0.0.1/16": CIDR is not strictly masked: want 10.0.0.0/16`)},
		{"link-local", pool("  cidr: 169.254.0.0/20\n"), errs(`spec.cidr: "169.254.0.0/20": pool overlaps the link-local range`)},
		{"link-local v6", pool("  cidr: \"fe80::/64\"\n"), errs(`spec.cidr: "fe80::/64": pool overlaps the link-local range`)},
		{"block size range v4", pool("  cidr: 10.0.0.0/8\n  blockSize: 19\n"), errs(`spec.blockSize: "19": blockSize must be between 20 and 32 for an IPv4 pool`)},
		{"block size range v6", pool("  cidr: \"fd00::/48\"\n  blockSize: 26\n"), errs(`spec.blockSize: "26": blockSize must be between 116 and 128 for an IPv6 pool`)},
		{"block larger than pool", pool("  cidr: 10.0.0.0/24\n  blockSize: 22\n"), errs(`spec.blockSize: "22": blocks of /22 are larger than the pool 10.0.0.0/24`)},
		{"default block larger than pool", pool("  cidr: 10.0.0.0/28\n"), errs(`spec.blockSize: "26": blocks of /26 are larger than the pool 10.0.0.0/28`)},
		{"overlay modes", pool("  cidr: 10.0.0.0/16\n  ipipMode: Always\n  vxlanMode: CrossSubnet\n"), errs(
			`spec.vxlanMode: "CrossSubnet": Tabby has no overlay: the only mode supported is "Never"`,
			`spec.ipipMode: "Always": Tabby has no overlay: the only mode supported is "Never"`)},
		{"selector and uses", pool("  cidr: 10.0.0.0/16\n  nodeSelector: rack = 'a'\n  allowedUses: [Workload, LoadBalancer, Workload]\n"), errs(
			`spec.nodeSelector: "rack = 'a'": invalid selector at position 5: unexpected character "=" (did you mean "=="?)`,
			`spec.allowedUses[1]: "LoadBalancer": allowed use must be Workload or Tunnel`,
			`spec.allowedUses[2]: "Workload": allowed use is listed more than once`)},
		{"ipam configuration", manifest("IPAMConfiguration", "global", "  strictAffinity: true\n  maxBlocksPerHost: -1\n  releaseCooldownSeconds: -5\n"), prefixed("IPAMConfiguration global",
			`metadata.name: "global": name must be "default"`,
			`spec.maxBlocksPerHost: "-1": maxBlocksPerHost must not be negative (0 means no limit)`,
			`spec.releaseCooldownSeconds: "-5": releaseCooldownSeconds must not be negative`)},
	})
}

func TestInvalidBGP(t *testing.T) {
	peer := func(spec string) string { return manifest("BGPPeer", "peer", spec) }
	errs := func(lines ...string) []string { return prefixed("BGPPeer peer", lines...) }
	runInvalidCases(t, []invalidCase{
		{"configuration name", manifest("BGPConfiguration", "node.", "  listenPort: 179\n"), prefixed("BGPConfiguration node.",
			`metadata.name: "node.": name must be "default" or "node.<nodename>"`)},
		{"per-node configuration", manifest("BGPConfiguration", "node.n1", "  logSeverityScreen: Verbose\n  nodeToNodeMeshEnabled: false\n  asNumber: 65000\n  extraPrefixes: [10.0.0.1/8, x]\n"), prefixed("BGPConfiguration node.n1",
			`spec.logSeverityScreen: "Verbose": log severity must be one of Debug, Info, Warning, Error, Fatal`,
			`spec.nodeToNodeMeshEnabled: nodeToNodeMeshEnabled can only be set in the "default" BGPConfiguration`,
			`spec.asNumber: asNumber can only be set in the "default" BGPConfiguration; set a node's in its spec.bgp.asNumber`,
			`spec.extraPrefixes[0]: "10.0.0.1/8": CIDR is not strictly masked: want 10.0.0.0/8`,
			`spec.extraPrefixes[1]: "x": invalid CIDR`)},
		{"AS numbers", manifest("BGPConfiguration", "default", "  asNumber: 0\n  listenPort: 70000\n"), prefixed("BGPConfiguration default",
			`spec.asNumber: "0": AS number must be between 1 and 4294967295 (or asdot 0.1 to 65535.65535)`,
			`spec.listenPort: "70000": must be an integer between 0 and 65535`)},
		{"peer scope", peer("  node: n1\n  nodeSelector: all()\n  peerIP: 10.0.0.1\n  asNumber: 4294967296\n"), errs(
			`spec.asNumber: "4294967296": AS number must be between 1 and 4294967295 (or asdot 0.1 to 65535.65535)`)},
		{"node and nodeSelector", peer("  node: n1\n  nodeSelector: all()\n  peerIP: 10.0.0.1\n  asNumber: 65001\n"), errs(
			`spec.nodeSelector: "all()": node and nodeSelector cannot both be set`)},
		{"peer required", peer("  node: n1\n"), errs(`spec.peerIP: peerIP or peerSelector is required`)},
		{"peerIP and peerSelector", peer("  peerIP: 10.0.0.1\n  peerSelector: all()\n  asNumber: 65001\n"), errs(
			`spec.peerSelector: "all()": peerIP and peerSelector cannot both be set`,
			`spec.asNumber: "65001": asNumber cannot be set with peerSelector: the peers' AS numbers are their nodes'`)},
		{"peerIP forms", peer("  peerIP: \"fd00::1:179\"\n"), errs(
			`spec.asNumber: asNumber is required with peerIP`)},
		{"bad peerIP", peer("  peerIP: 10.0.0.1:http\n  asNumber: 65001\n"), errs(
			`spec.peerIP: "10.0.0.1:http": peerIP must be an IP address, "<IPv4>:<port>" or "[<IPv6>]:<port>"`)},
		{"peerIP port 0", peer("  peerIP: \"[fd00::1]:0\"\n  asNumber: 65001\n"), errs(
			`spec.peerIP: "[fd00::1]:0": peerIP port must be between 1 and 65535`)},
		{"password secretKeyRef", peer("  peerIP: 10.0.0.1\n  asNumber: 65001\n  password:\n    secretKeyRef: {name: bgp, key: password}\n"), errs(
			`spec.password.secretKeyRef: secretKeyRef is not supported: Tabby does not read Kubernetes secrets; give the password in password.value`)},
		{"password empty", peer("  peerIP: 10.0.0.1\n  asNumber: 65001\n  password: {}\n  sourceAddress: Auto\n"), errs(
			`spec.password.value: password.value is required`,
			`spec.sourceAddress: "Auto": sourceAddress must be UseNodeIP or None`)},
		{"timers", peer("  peerIP: 10.0.0.1\n  asNumber: 65001\n  keepaliveTime: 1500ms\n  maxRestartTime: 2h\n"), errs(
			`spec.keepaliveTime: "1.5s": must be a whole number of seconds`,
			`spec.maxRestartTime: "2h0m0s": must be between 1s and 1h8m15s`)},
		{"timer syntax", peer("  peerIP: 10.0.0.1\n  asNumber: 65001\n  keepaliveTime: 30\n  maxRestartTime: soon\n"), errs(
			`spec.keepaliveTime: "30": must be a duration string such as "90s"`,
			`spec.maxRestartTime: "soon": invalid duration: want a Go duration such as "90s" or "2m"`)},
	})
}

func TestInvalidConfiguration(t *testing.T) {
	runInvalidCases(t, []invalidCase{
		{"name", manifest("Configuration", "node1", "  logSeverityScreen: Info\n"), prefixed("Configuration node1",
			`metadata.name: "node1": name must be "default" or "node.<nodename>"`)},
		{"fields", manifest("Configuration", "node.n1", `  logSeverityScreen: info
  reportingInterval: -5s
  defaultEndpointToHostAction: Reject
  failsafeInboundHostPorts: [{protocol: ICMP, port: 1}, {protocol: tcp, port: 0, net: 10.0.0.0/33}]
  interfacePrefix: toolongprefix
  deviceRouteProtocol: 3
  healthPort: 70000
  prometheusMetricsPort: -1
  logPrefix: 'say "hi"'
  natOutgoingAddress: "fd00::1"
`), prefixed("Configuration node.n1",
			`spec.logSeverityScreen: "info": log severity must be one of Trace, Debug, Info, Warning, Error, Fatal`,
			`spec.reportingInterval: "-5s": must not be negative (0 turns it off)`,
			`spec.defaultEndpointToHostAction: "Reject": defaultEndpointToHostAction must be Drop, Accept or Return`,
			`spec.failsafeInboundHostPorts[0].protocol: "ICMP": protocol must be TCP, UDP or SCTP`,
			`spec.failsafeInboundHostPorts[1].port: port is required (1-65535)`,
			`spec.failsafeInboundHostPorts[1].net: "10.0.0.0/33": invalid CIDR`,
			`spec.interfacePrefix: "toolongprefix": interfacePrefix must be 1-7 letters, digits, '_' or '-'`,
			`spec.deviceRouteProtocol: "3": deviceRouteProtocol must be between 5 and 255 (0-4 belong to the kernel)`,
			`spec.healthPort: "70000": port must be between 1 and 65535`,
			`spec.prometheusMetricsPort: "-1": port must be between 1 and 65535`,
			`spec.logPrefix: "say \"hi\"": logPrefix must be printable ASCII without '"'`,
			`spec.natOutgoingAddress: "fd00::1": must be an IPv4 address`)},
	})
}

func TestInvalidEndpoints(t *testing.T) {
	runInvalidCases(t, []invalidCase{
		{"node", manifest("Node", "n1", "  bgp: {}\n  addresses: [{address: x, type: Hostname}]\n"), prefixed("Node n1",
			`spec.bgp: bgp must not be empty: leave it out for a node without BGP`,
			`spec.addresses[0].address: "x": invalid CIDR`,
			`spec.addresses[0].type: "Hostname": type must be InternalIP or ExternalIP`)},
		{"node bgp", manifest("Node", "n1", "  bgp: {ipv4Address: \"fd00::1/64\", ipv6Address: 10.0.0.1/24, routeReflectorClusterID: \"::1\"}\n"), prefixed("Node n1",
			`spec.bgp.ipv4Address: "fd00::1/64": must be an IPv4 address`,
			`spec.bgp.ipv6Address: "10.0.0.1/24": must be an IPv6 address`,
			`spec.bgp.routeReflectorClusterID: "::1": must be an IPv4 address`)},
		{"workload endpoint", "apiVersion: tabby.dev/v1\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: dev}\nspec:\n" + `  orchestrator: "k 8 s"
  containerID: -abc
  pod: Web
  ipNetworks: [10.65.0.0/24, 10.65.1.1/32, bad]
  ipNATs: [{internalIP: 10.65.9.9, externalIP: "fd00::9"}]
  ipv4Gateway: "fe80::1"
  ipv6Gateway: 169.254.1.1
  profiles: [P]
  interfaceName: averyveryverylongname
  mac: "02:00:00:00:00"
  ports:
  - {protocol: TCP, port: 80}
  - {name: dns, protocol: ICMP, port: 0, hostIP: x}
  allowSpoofedSourcePrefixes: [10.0.0.0/40]
`, prefixed("WorkloadEndpoint dev/w",
			`spec.node: node is required`,
			`spec.orchestrator: "k 8 s": orchestrator is a label value and must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`spec.containerID: "-abc": containerID must consist of letters, digits and '-', and start and end with a letter or digit`,
			`spec.pod: "Web": must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`,
			`spec.ipNetworks[0]: "10.65.0.0/24": must be a single address (/32 or /128)`,
			`spec.ipNetworks[2]: "bad": invalid CIDR`,
			`spec.ipNATs[0].externalIP: "fd00::9": externalIP and internalIP must be of one IP version`,
			`spec.ipNATs[0].internalIP: "10.65.9.9": internalIP must be one of ipNetworks`,
			`spec.ipv4Gateway: "fe80::1": must be an IPv4 address`,
			`spec.ipv6Gateway: "169.254.1.1": must be an IPv6 address`,
			`spec.profiles[0]: "P": must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`,
			`spec.interfaceName: "averyveryverylongname": invalid interface name: want 1-15 letters, digits, '_', '.' or '-'`,
			`spec.mac: "02:00:00:00:00": invalid MAC address`,
			`spec.ports[0].name: a port needs a name or a hostPort`,
			`spec.ports[1].protocol: "ICMP": protocol must be TCP, UDP or SCTP`,
			`spec.ports[1].port: port is required (1-65535)`,
			`spec.ports[1].hostIP: "x": invalid IP address`,
			`spec.allowSpoofedSourcePrefixes[0]: "10.0.0.0/40": invalid CIDR`)},
		{"host endpoint", manifest("HostEndpoint", "h", "  expectedIPs: [10.0.0.0/8]\n  ports: [{protocol: UDP, port: 53}]\n"), prefixed("HostEndpoint h",
			`spec.node: node is required`,
			`spec.expectedIPs[0]: "10.0.0.0/8": invalid IP address`,
			`spec.ports[0].name: name is required`)},
		{"host endpoint interface", manifest("HostEndpoint", "h", "  node: n1\n"), prefixed("HostEndpoint h",
			`spec.interfaceName: interfaceName or expectedIPs is required`)},
	})
}
