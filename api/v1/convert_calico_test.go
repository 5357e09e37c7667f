package v1

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

const calicoGNP = `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.edge
  labels:
    owner: netops
spec:
  tier: security
  order: 150.5
  selector: role == 'edge' && !has(quarantine)
  namespaceSelector: has(projectcalico.org/name)
  serviceAccountSelector: team in {'a', 'b'}
  types:
  - Ingress
  - Egress
  ingress:
  - action: Log
    protocol: TCP
    source:
      notNets:
      - 10.0.0.0/8
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'lb'
      namespaceSelector: global()
      notPorts:
      - 1:1023
    destination:
      ports:
      - 80
      - 8080:8090
      - http-alt
  - action: Allow
    protocol: ICMP
    icmp:
      type: 8
      code: 0
  - action: Deny
    protocol: ICMPv6
    ipVersion: 6
    notICMP:
      type: 128
  - action: Pass
  egress:
  - action: Allow
    protocol: UDP
    destination:
      selector: k8s-app == 'kube-dns'
      ports: [53]
      serviceAccounts:
        names: [coredns]
  - action: Deny
    notProtocol: TCP
    destination:
      nets: ["fd00::/8"]
`

func TestCalicoGlobalNetworkPolicy(t *testing.T) {
	objs := mustDecode(t, "calico.yaml", calicoGNP)
	want := &GlobalNetworkPolicy{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "GlobalNetworkPolicy"},
		Metadata: ObjectMeta{Name: "security.edge", Labels: map[string]string{"owner": "netops"}},
		Spec: GlobalNetworkPolicySpec{
			Tier:                   "security",
			Order:                  ptr(150.5),
			Selector:               "role == 'edge' && !has(quarantine)",
			NamespaceSelector:      "has(projectcalico.org/name)",
			ServiceAccountSelector: "team in {'a', 'b'}",
			Types:                  []PolicyType{PolicyTypeIngress, PolicyTypeEgress},
			Ingress: []Rule{
				{Action: Log, Protocol: ptr(ProtocolTCP), Source: EntityRule{NotNets: []string{"10.0.0.0/8"}}},
				{
					Action:   Allow,
					Protocol: ptr(ProtocolTCP),
					Source: EntityRule{
						Selector:          "role == 'lb'",
						NamespaceSelector: "global()",
						NotPorts:          []Port{PortRange(1, 1023)},
					},
					Destination: EntityRule{Ports: []Port{PortNumber(80), PortRange(8080, 8090), NamedPort("http-alt")}},
				},
				{Action: Allow, Protocol: ptr(ProtocolICMP), ICMP: &ICMPFields{Type: ptr(8), Code: ptr(0)}},
				{Action: Deny, Protocol: ptr(ProtocolICMPv6), IPVersion: ptr(6), NotICMP: &ICMPFields{Type: ptr(128)}},
				{Action: Pass},
			},
			Egress: []Rule{
				{
					Action:   Allow,
					Protocol: ptr(ProtocolUDP),
					Destination: EntityRule{
						Selector:        "k8s-app == 'kube-dns'",
						Ports:           []Port{PortNumber(53)},
						ServiceAccounts: &ServiceAccountMatch{Names: []string{"coredns"}},
					},
				},
				{Action: Deny, NotProtocol: ptr(ProtocolTCP), Destination: EntityRule{Nets: []string{"fd00::/8"}}},
			},
		},
	}
	if diff := cmp.Diff([]Object{want}, objs); diff != "" {
		t.Errorf("decoded policy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(objs, roundTrip(t, objs), equateEmpty); diff != "" {
		t.Errorf("round trip (-before +after):\n%s", diff)
	}
}

func TestCalicoKinds(t *testing.T) {
	objs := mustDecode(t, "calico.yaml", `
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool, creationTimestamp: "2024-01-02T03:04:05Z", resourceVersion: "812", uid: 6d2e}
spec:
  cidr: 192.168.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
  allowedUses: [Workload, Tunnel]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-tcp-6379, namespace: production}
spec:
  selector: role == 'database'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: role == 'frontend'}
    destination: {ports: [6379]}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-1}
spec:
  bgp: {ipv4Address: 10.0.0.1/24}
status:
  podCIDRs: [192.168.12.0/24]
`)
	if len(objs) != 3 {
		t.Fatalf("decoded %d objects, want 3", len(objs))
	}
	for _, o := range objs {
		if o.GetTypeMeta().APIVersion != APIVersion {
			t.Errorf("%s has apiVersion %q", o.GetObjectMeta().Name, o.GetTypeMeta().APIVersion)
		}
	}
	np := objs[1].(*NetworkPolicy)
	if np.Metadata.Namespace != "production" || np.Spec.Tier != "default" || len(np.Spec.Types) != 1 {
		t.Errorf("NetworkPolicy = %+v", np)
	}
}

func TestFelixConfiguration(t *testing.T) {
	objs := mustDecode(t, "felix.yaml", `
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  logSeverityScreen: Warning
  iptablesRefreshInterval: 60s
  reportingInterval: 0s
  defaultEndpointToHostAction: Return
  failsafeInboundHostPorts:
  - {protocol: tcp, port: 22}
  - {protocol: udp, port: 68, net: 0.0.0.0/0}
  interfacePrefix: cali
  healthPort: 9099
  ipv6Support: false
`)
	got, ok := objs[0].(*Configuration)
	if !ok {
		t.Fatalf("FelixConfiguration decoded as %T", objs[0])
	}
	want := DefaultConfigurationSpec()
	want.LogSeverityScreen = "Warning"
	want.NftablesRefreshInterval = &Duration{time.Minute}
	want.ReportingInterval = &Duration{0}
	want.DefaultEndpointToHostAction = "Return"
	want.FailsafeInboundHostPorts = &[]ProtoPort{{Protocol: "TCP", Port: 22}, {Protocol: "UDP", Port: 68, Net: "0.0.0.0/0"}}
	want.InterfacePrefix = "cali"
	want.IPv6Support = ptr(false)
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("Configuration spec (-want +got):\n%s", diff)
	}
	if got.Kind != "Configuration" || got.APIVersion != APIVersion || got.Metadata.Name != "default" {
		t.Errorf("Configuration meta = %+v %+v", got.TypeMeta, got.Metadata)
	}
}

func TestInvalidCalico(t *testing.T) {
	runInvalidCases(t, []invalidCase{
		{"unsupported Felix fields", "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {bpfEnabled: true, wireguardEnabled: false, logSeverityScreen: Info}\n", []string{
			`t.yaml: document 1 (FelixConfiguration default): spec.bpfEnabled: FelixConfiguration field is not supported by Tabby`,
			`t.yaml: document 1 (FelixConfiguration default): spec.wireguardEnabled: FelixConfiguration field is not supported by Tabby`}},
		{"both refresh intervals", "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {iptablesRefreshInterval: 10s, nftablesRefreshInterval: 10s}\n", []string{
			`t.yaml: document 1 (FelixConfiguration default): spec: iptablesRefreshInterval and nftablesRefreshInterval cannot both be set (Tabby uses nftables only)`}},
		{"Felix values are validated", "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {deviceRouteProtocol: 3}\n", []string{
			`t.yaml: document 1 (FelixConfiguration node.n1): spec.deviceRouteProtocol: "3": deviceRouteProtocol must be between 5 and 255 (0-4 belong to the kernel)`}},
		{"unsupported kind", "apiVersion: projectcalico.org/v3\nkind: KubeControllersConfiguration\nmetadata: {name: default}\nspec: {}\n", []string{
			`t.yaml: document 1 (KubeControllersConfiguration default): projectcalico.org/v3 kind KubeControllersConfiguration is not supported by Tabby`}},
		{"Tabby-only kind", "apiVersion: projectcalico.org/v3\nkind: Configuration\nmetadata: {name: default}\nspec: {}\n", []string{
			`t.yaml: document 1 (Configuration default): projectcalico.org/v3 kind Configuration is not supported by Tabby`}},
		{"unsupported Calico fields", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: CrossSubnet, assignmentMode: Automatic}\n", []string{
			`t.yaml: document 1 (IPPool p): spec.assignmentMode: field is not supported by Tabby`}},
		{"overlay", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: CrossSubnet}\n", []string{
			`t.yaml: document 1 (IPPool p): spec.ipipMode: "CrossSubnet": Tabby has no overlay: the only mode supported is "Never"`}},
		{"Calico rule fields", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\nspec:\n  ingress: [{action: Allow, http: {methods: [GET]}}]\n", []string{
			`t.yaml: document 1 (NetworkPolicy dev/p): spec.ingress[0].http: field is not supported by Tabby`}},
	})
}
