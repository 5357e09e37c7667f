package v1

import (
	"math"
	"strings"
	"testing"
)

// invalidCase is a manifest and the exact error DecodeManifests returns
// for it (lines joined with "\n"), with the source "t.yaml".
type invalidCase struct {
	name, manifest string
	want           []string
}

func runInvalidCases(t *testing.T, cases []invalidCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeManifests("t.yaml", []byte(tc.manifest))
			if err == nil {
				t.Fatalf("no error; decoded %d objects", len(objs))
			}
			if objs != nil {
				t.Errorf("returned objects with an error")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestInvalidMetadataAndDecoding(t *testing.T) {
	runInvalidCases(t, []invalidCase{
		{"name required", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {}\n", []string{
			`t.yaml: document 1 (Tier): metadata.name: name is required`}},
		{"name syntax", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: Pool_1}\nspec: {cidr: 10.0.0.0/16}\n", []string{
			`t.yaml: document 1 (IPPool Pool_1): metadata.name: "Pool_1": must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`}},
		{"name too long", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: " + strings.Repeat("a", 254) + "}\n", []string{
			`t.yaml: document 1 (GlobalNetworkSet ` + strings.Repeat("a", 254) + `): metadata.name: "` + strings.Repeat("a", 254) + `": must be at most 253 characters`}},
		{"namespace on a cluster kind", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: s, namespace: dev}\n", []string{
			`t.yaml: document 1 (GlobalNetworkSet dev/s): metadata.namespace: "dev": GlobalNetworkSet is cluster-scoped and has no namespace`}},
		{"namespace syntax", "apiVersion: tabby.dev/v1\nkind: NetworkSet\nmetadata: {name: s, namespace: my.ns}\n", []string{
			`t.yaml: document 1 (NetworkSet my.ns/s): metadata.namespace: "my.ns": must consist of lower case letters, digits and '-', and start and end with a letter or digit`}},
		{"labels", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata:\n  name: t\n  labels: {-bad: x, app: a b, tabby.dev/namespace: dev, Example.com/x: v, " + strings.Repeat("k", 64) + ": v}\n", []string{
			`t.yaml: document 1 (Tier t): metadata.labels: "-bad": invalid label key: name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`t.yaml: document 1 (Tier t): metadata.labels: "Example.com/x": invalid label key: prefix before '/' must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`,
			`t.yaml: document 1 (Tier t): metadata.labels["app"]: "a b": invalid label value: must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`t.yaml: document 1 (Tier t): metadata.labels: "` + strings.Repeat("k", 64) + `": invalid label key: name must be at most 63 characters`,
			`t.yaml: document 1 (Tier t): metadata.labels: "tabby.dev/namespace": label is implicit: Tabby sets it from metadata.namespace`}},
		{"annotation key", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata:\n  name: t\n  annotations: {/x: v}\n", []string{
			`t.yaml: document 1 (Tier t): metadata.annotations: "/x": invalid annotation key: prefix before '/' must not be empty`}},
		{"unknown field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidrs: [10.0.0.0/16]}\n", []string{
			`t.yaml: document 1 (IPPool p): spec.cidrs: unknown field`}},
		{"field names are case-sensitive", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {CIDR: 10.0.0.0/16}\n", []string{
			`t.yaml: document 1 (IPPool p): spec.CIDR: unknown field`}},
		{"wrong types", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p, labels: [a]}\nspec: {cidr: 10.0.0.0/16, blockSize: abc, natOutgoing: 'yes', allowedUses: Workload}\n", []string{
			`t.yaml: document 1 (IPPool p): metadata.labels: must be an object`,
			`t.yaml: document 1 (IPPool p): spec.allowedUses: "Workload": must be a list`,
			`t.yaml: document 1 (IPPool p): spec.blockSize: "abc": must be an integer`,
			`t.yaml: document 1 (IPPool p): spec.natOutgoing: "yes": must be true or false`}},
		{"number out of range", "apiVersion: tabby.dev/v1\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n1, interfaceName: eth0, ports: [{name: a, protocol: TCP, port: 70000}]}\n", []string{
			`t.yaml: document 1 (HostEndpoint h): spec.ports[0].port: "70000": must be an integer between 0 and 65535`}},
		{"bad timestamp", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: t, creationTimestamp: yesterday}\n", []string{
			`t.yaml: document 1 (Tier t): metadata.creationTimestamp: "yesterday": must be an RFC 3339 time such as "2024-05-01T12:00:00Z"`}},
		{"apiVersion required", "kind: Tier\nmetadata: {name: t}\n", []string{
			`t.yaml: document 1 (Tier t): apiVersion is required`}},
		{"kind required", "apiVersion: tabby.dev/v1\nmetadata: {name: t}\n", []string{
			`t.yaml: document 1: kind is required`}},
		{"unknown kind", "apiVersion: tabby.dev/v1\nkind: IPAMBlock\nmetadata: {name: b}\n", []string{
			`t.yaml: document 1 (IPAMBlock b): unknown kind "IPAMBlock" of tabby.dev/v1`}},
		{"unknown apiVersion", "apiVersion: tabby.dev/v2\nkind: Tier\nmetadata: {name: t}\n", []string{
			`t.yaml: document 1 (Tier t): apiVersion "tabby.dev/v2" is not supported: use tabby.dev/v1, projectcalico.org/v3, networking.k8s.io/v1 NetworkPolicy or v1 Namespace`}},
		{"invalid YAML", "apiVersion: tabby.dev/v1\nkind: Tier\n  metadata: {name: t}\n", []string{
			`t.yaml: document 1: invalid YAML: yaml: line 3: mapping values are not allowed in this context`}},
		{"duplicate key", "apiVersion: tabby.dev/v1\nkind: Tier\nkind: Tier\n", []string{
			`t.yaml: document 1: invalid YAML: yaml: unmarshal errors:
  line 3: key "kind" already set in map`}},
		{"not an object", "just a string\n", []string{
			`t.yaml: document 1: a document must be an object or a list of objects`}},
		{"list item not an object", "[1]\n", []string{
			`t.yaml: document 1 item 1: an item must be an object`}},
		{"list item errors", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: tabby.dev/v1, kind: Tier, metadata: {name: a}}\n- {apiVersion: tabby.dev/v1, kind: Tier, metadata: {name: B}}\n", []string{
			`t.yaml: document 1 item 2 (Tier B): metadata.name: "B": must consist of lower case letters, digits and '-', and start and end with a letter or digit`}},
		{"errors in several documents", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: A}\n---\napiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: ok}\n---\napiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: c, namespace: x}\n", []string{
			`t.yaml: document 1 (Tier A): metadata.name: "A": must consist of lower case letters, digits and '-', and start and end with a letter or digit`,
			`t.yaml: document 3 (Tier x/c): metadata.namespace: "x": Tier is cluster-scoped and has no namespace`}},
	})
}

// policy returns a GlobalNetworkPolicy manifest named gnp with the given
// spec lines (indented by two spaces).
func policy(spec string) string {
	return "apiVersion: tabby.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: gnp}\nspec:\n" + spec
}

func gnpErrs(lines ...string) []string {
	for i, l := range lines {
		lines[i] = "t.yaml: document 1 (GlobalNetworkPolicy gnp): " + l
	}
	return lines
}

func TestInvalidRules(t *testing.T) {
	runInvalidCases(t, []invalidCase{
		{"action", policy("  ingress: [{action: Accept}, {}]\n"), gnpErrs(
			`spec.ingress[0].action: "Accept": action must be Allow, Deny, Log or Pass`,
			`spec.ingress[1].action: action is required: Allow, Deny, Log or Pass`)},
		{"ipVersion", policy("  ingress: [{action: Allow, ipVersion: 5}]\n"), gnpErrs(
			`spec.ingress[0].ipVersion: "5": ipVersion must be 4 or 6`)},
		{"protocols", policy("  ingress: [{action: Allow, protocol: GRE}, {action: Allow, protocol: 256}, {action: Allow, notProtocol: 0}]\n"), gnpErrs(
			`spec.ingress[0].protocol: "GRE": unknown protocol: want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number between 1 and 255`,
			`spec.ingress[1].protocol: "256": protocol number must be between 1 and 255`,
			`spec.ingress[2].notProtocol: "0": protocol number must be between 1 and 255`)},
		{"protocol type", policy("  ingress: [{action: Allow, protocol: [TCP]}]\n"), gnpErrs(
			`spec.ingress[0].protocol: protocol must be a number or a string`)},
		{"ports need a port protocol", policy("  ingress:\n  - {action: Allow, source: {ports: [80]}}\n  - {action: Allow, protocol: ICMP, destination: {notPorts: [80]}}\n  - {action: Allow, protocol: 6, destination: {ports: [80]}}\n"), gnpErrs(
			`spec.ingress[0].source.ports: rules with ports must set protocol to TCP, UDP or SCTP`,
			`spec.ingress[1].destination.notPorts: rules with ports must set protocol to TCP, UDP or SCTP`)},
		{"ports", policy("  egress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [0, 70000, \"80:70\", \"a:b\", \"1:\", -bad, http--x, \"1234\", \"123456789012345678901\", abcdefghijklmnop, \"\"]\n"), gnpErrs(
			`spec.egress[0].destination.ports[0]: "0": port must be between 1 and 65535`,
			`spec.egress[0].destination.ports[1]: "70000": port must be between 1 and 65535`,
			`spec.egress[0].destination.ports[2]: "80:70": range start is after end`,
			`spec.egress[0].destination.ports[3]: "a:b": invalid port range: want "min:max" with ports between 1 and 65535`,
			`spec.egress[0].destination.ports[4]: "1:": invalid port range: want "min:max" with ports between 1 and 65535`,
			`spec.egress[0].destination.ports[5]: "-bad": invalid named port: must consist of lower case letters, digits and '-', and start and end with a letter or digit`,
			`spec.egress[0].destination.ports[6]: "http--x": invalid named port: must not contain '--'`,
			`spec.egress[0].destination.ports[8]: "123456789012345678901": port must be between 1 and 65535`,
			`spec.egress[0].destination.ports[9]: "abcdefghijklmnop": invalid named port: must be at most 15 characters`,
			`spec.egress[0].destination.ports[10]: port must not be empty`)},
		{"negative port number", policy("  egress: [{action: Allow, protocol: TCP, destination: {ports: [-1]}}]\n"), gnpErrs(
			`spec.egress[0].destination.ports[0]: "-1": port must be a non-negative integer`)},
		{"icmp", policy("  ingress:\n  - {action: Allow, icmp: {type: 8}}\n  - {action: Allow, protocol: ICMP, icmp: {type: 255, code: 256}}\n  - {action: Allow, protocol: ICMPv6, notICMP: {code: 1}}\n"), gnpErrs(
			`spec.ingress[0].icmp: rules with ICMP fields must set protocol to ICMP or ICMPv6`,
			`spec.ingress[1].icmp.type: "255": ICMP type must be between 0 and 254`,
			`spec.ingress[1].icmp.code: "256": ICMP code must be between 0 and 255`,
			`spec.ingress[2].notICMP.code: "1": ICMP code needs an ICMP type`)},
		{"icmp and ip version", policy("  ingress:\n  - {action: Allow, ipVersion: 6, protocol: ICMP}\n  - {action: Allow, ipVersion: 4, notProtocol: ICMPv6}\n"), gnpErrs(
			`spec.ingress[0].protocol: "ICMP": protocol ICMP needs ipVersion 4; use ICMPv6`,
			`spec.ingress[1].notProtocol: "ICMPv6": protocol ICMPv6 needs ipVersion 6; use ICMP`)},
		{"nets", policy("  ingress:\n  - {action: Allow, source: {nets: [10.0.0.0/33, 300.1.1.1, \"fe80::1%eth0\"]}}\n  - {action: Allow, ipVersion: 4, source: {nets: [10.0.0.0/8, \"fd00::/8\"]}}\n  - {action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: [\"::/0\"]}}\n"), gnpErrs(
			`spec.ingress[0].source.nets[0]: "10.0.0.0/33": invalid CIDR`,
			`spec.ingress[0].source.nets[1]: "300.1.1.1": invalid CIDR`,
			`spec.ingress[0].source.nets[2]: "fe80::1%eth0": invalid CIDR`,
			`spec.ingress[1].source.nets[1]: "fd00::/8": IPv6 CIDR in a rule with ipVersion 4`,
			`spec.ingress[2].destination.notNets[0]: "::/0": rule mixes IPv4 and IPv6 CIDRs`)},
		{"selectors", policy("  selector: app == \n  ingress:\n  - {action: Allow, source: {selector: global(), notSelector: \"a in {'x'\", namespaceSelector: global() && a == 'b'}}\n"), gnpErrs(
			`spec.ingress[0].source.selector: "global()": global() can only be used in a rule's namespaceSelector`,
			`spec.ingress[0].source.notSelector: "a in {'x'": invalid selector at position 9: expected "," or "}", found end of input`,
			`spec.ingress[0].source.namespaceSelector: "global() && a == 'b'": global() cannot be combined with other selectors`,
			`spec.selector: "app ==": invalid selector at position 6: expected a quoted string, found end of input`)},
		// global() is found in the parsed selector, not in its text: with a
		// space, and not inside a quoted value.
		{"global() by syntax", policy("  selector: a == \"global(\"\n  ingress:\n  - {action: Allow, source: {selector: global (), namespaceSelector: global () || a == 'b'}}\n"), gnpErrs(
			`spec.ingress[0].source.selector: "global ()": global() can only be used in a rule's namespaceSelector`,
			`spec.ingress[0].source.namespaceSelector: "global () || a == 'b'": global() cannot be combined with other selectors`)},
		{"service accounts and rule metadata", policy("  egress:\n  - action: Allow\n    destination: {serviceAccounts: {names: [Web], selector: '!'}}\n    metadata: {annotations: {'a b': c}}\n"), gnpErrs(
			`spec.egress[0].destination.serviceAccounts.names[0]: "Web": must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`,
			`spec.egress[0].destination.serviceAccounts.selector: "!": invalid selector at position 1: expected an expression, found end of input`,
			`spec.egress[0].metadata.annotations: "a b": invalid annotation key: name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`)},
		{"unsupported Calico rule fields", policy("  ingress: [{action: Allow, http: {methods: [GET]}, source: {services: {name: x}}}]\n"), gnpErrs(
			`spec.ingress[0].http: unknown field`,
			`spec.ingress[0].source.services: unknown field`)},
	})
}

func TestInvalidPolicies(t *testing.T) {
	np := func(name, spec string) string {
		return "apiVersion: tabby.dev/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: dev}\nspec:\n" + spec
	}
	runInvalidCases(t, []invalidCase{
		{"policy in another tier needs the tier prefix", np("web", "  tier: security\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/web): metadata.name: "web": a policy in tier "security" must be named "security.<name>"`}},
		{"wrong tier prefix", np("ops.web", "  tier: security\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/ops.web): metadata.name: "ops.web": a policy in tier "security" must be named "security.<name>"`}},
		{"dotted name in the default tier", np("security.web", "  order: 1\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/security.web): metadata.name: "security.web": a policy in tier "default" must be named "<name>" or "default.<name>" (set spec.tier to "security" to put it in that tier)`}},
		{"policy name form", np("a.b.c", "  tier: a\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/a.b.c): metadata.name: "a.b.c": policy name must be a DNS label, "<tier>.<name>" with DNS labels, or "knp.default.<name>"`}},
		{"global policy name form", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: knp.default.x}\nspec: {}\n", []string{
			`t.yaml: document 1 (GlobalNetworkPolicy knp.default.x): metadata.name: "knp.default.x": policy name must be a DNS label or "<tier>.<name>" with DNS labels`}},
		{"tier and types", np("Sec.web", "  tier: Sec\n  types: [Ingress, Both, Ingress]\n  serviceAccountSelector: (\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/Sec.web): metadata.name: "Sec.web": policy name must be a DNS label, "<tier>.<name>" with DNS labels, or "knp.default.<name>"`,
			`t.yaml: document 1 (NetworkPolicy dev/Sec.web): spec.tier: "Sec": must consist of lower case letters, digits and '-', and start and end with a letter or digit`,
			`t.yaml: document 1 (NetworkPolicy dev/Sec.web): spec.types[1]: "Both": type must be Ingress or Egress`,
			`t.yaml: document 1 (NetworkPolicy dev/Sec.web): spec.types[2]: "Ingress": type is listed more than once`,
			`t.yaml: document 1 (NetworkPolicy dev/Sec.web): spec.serviceAccountSelector: "(": invalid selector at position 1: expected an expression, found end of input`}},
		{"global-only fields", np("web", "  doNotTrack: true\n"), []string{
			`t.yaml: document 1 (NetworkPolicy dev/web): spec.doNotTrack: unknown field`}},
		{"preDNAT and doNotTrack", policy("  preDNAT: true\n  doNotTrack: true\n  types: [Egress]\n  egress: [{action: Allow}]\n  namespaceSelector: x ==\n"), gnpErrs(
			`spec.namespaceSelector: "x ==": invalid selector at position 4: expected a quoted string, found end of input`,
			`spec.preDNAT: preDNAT and doNotTrack cannot both be true`,
			`spec.egress: a preDNAT policy cannot have egress rules`,
			`spec.types[0]: "Egress": a preDNAT policy cannot have type Egress`,
			`spec.applyOnForward: applyOnForward must be true when preDNAT or doNotTrack is true`)},
		{"default tier order", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: default}\nspec: {order: 5, defaultAction: Allow}\n", []string{
			`t.yaml: document 1 (Tier default): spec.order: "5": the default tier's order must be 1e+06`,
			`t.yaml: document 1 (Tier default): spec.defaultAction: "Allow": defaultAction must be Deny or Pass`}},
		{"tier name", "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: a.b}\n", []string{
			`t.yaml: document 1 (Tier a.b): metadata.name: "a.b": must consist of lower case letters, digits and '-', and start and end with a letter or digit`}},
		{"profile", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: p}\nspec:\n  labelsToApply: {tabby.dev/namespace: x}\n  egress: [{action: Drop}]\n", []string{
			`t.yaml: document 1 (Profile p): spec.egress[0].action: "Drop": action must be Allow, Deny, Log or Pass`,
			`t.yaml: document 1 (Profile p): spec.labelsToApply: "tabby.dev/namespace": label is implicit: Tabby sets it from metadata.namespace`}},
		{"network sets", "apiVersion: tabby.dev/v1\nkind: NetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/8, bad]}\n", []string{
			`t.yaml: document 1 (NetworkSet default/s): spec.nets[1]: "bad": invalid CIDR`}},
		{"namespace name", "apiVersion: tabby.dev/v1\nkind: Namespace\nmetadata: {name: my.ns}\n", []string{
			`t.yaml: document 1 (Namespace my.ns): metadata.name: "my.ns": must consist of lower case letters, digits and '-', and start and end with a letter or digit`}},
	})
}

func TestInvalidOrder(t *testing.T) {
	for _, o := range []float64{math.NaN(), math.Inf(1)} {
		gnp := &GlobalNetworkPolicy{Metadata: ObjectMeta{Name: "p"}, Spec: GlobalNetworkPolicySpec{Order: &o}}
		SetDefaults(gnp)
		err := Validate(gnp)
		want := `spec.order: "` + formatOrder(&o) + `": order must be a finite number`
		if err == nil || err.Error() != want {
			t.Errorf("Validate(order %v) = %v, want %s", o, err, want)
		}
	}
}
