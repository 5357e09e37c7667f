package v1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// k8sPolicy returns a Kubernetes NetworkPolicy manifest named web in
// namespace prod with the given spec lines.
func k8sPolicy(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec:\n" + spec
}

const podsSel = `tabby.dev/orchestrator == "k8s"`

func TestK8sNetworkPolicy(t *testing.T) {
	tcp, udp := ptr(ProtocolTCP), ptr(ProtocolUDP)
	for _, tc := range []struct {
		name, spec string
		want       NetworkPolicySpec
	}{
		{
			name: "empty ingress denies all ingress",
			spec: "  podSelector: {}\n  policyTypes: [Ingress]\n",
			want: NetworkPolicySpec{Selector: podsSel, Types: []PolicyType{PolicyTypeIngress}},
		},
		{
			name: "default types without egress rules",
			spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]\n",
			want: NetworkPolicySpec{
				Selector: podsSel + ` && app == "web"`,
				Ingress:  []Rule{{Action: Allow}},
				Types:    []PolicyType{PolicyTypeIngress},
			},
		},
		{
			name: "default types with egress rules",
			spec: "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]\n",
			want: NetworkPolicySpec{
				Selector: podsSel,
				Egress:   []Rule{{Action: Allow, Destination: EntityRule{Nets: []string{"0.0.0.0/0"}}}},
				Types:    []PolicyType{PolicyTypeIngress, PolicyTypeEgress},
			},
		},
		{
			name: "egress only",
			spec: "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53}]\n",
			want: NetworkPolicySpec{
				Selector: podsSel,
				Egress: []Rule{
					{Action: Allow, Protocol: udp, Destination: EntityRule{Ports: []Port{"53"}}},
					{Action: Allow, Protocol: tcp, Destination: EntityRule{Ports: []Port{"53"}}},
				},
				Types: []PolicyType{PolicyTypeEgress},
			},
		},
		{
			name: "pod and namespace selectors in one peer are ANDed",
			spec: "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {role: client}}\n      namespaceSelector: {matchLabels: {team: a}}\n    - namespaceSelector: {}\n    - podSelector: {}\n",
			want: NetworkPolicySpec{
				Selector: podsSel,
				Ingress: []Rule{
					{Action: Allow, Source: EntityRule{Selector: podsSel + ` && role == "client"`, NamespaceSelector: `team == "a"`}},
					{Action: Allow, Source: EntityRule{Selector: podsSel, NamespaceSelector: "all()"}},
					{Action: Allow, Source: EntityRule{Selector: podsSel}},
				},
				Types: []PolicyType{PolicyTypeIngress},
			},
		},
		{
			name: "ipBlock with except",
			spec: "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}}, {ipBlock: {cidr: \"fd00::/8\"}}]\n",
			want: NetworkPolicySpec{
				Selector: podsSel,
				Ingress: []Rule{
					{Action: Allow, Source: EntityRule{Nets: []string{"10.0.0.0/8"}, NotNets: []string{"10.1.0.0/16", "10.2.0.0/16"}}},
					{Action: Allow, Source: EntityRule{Nets: []string{"fd00::/8"}}},
				},
				Types: []PolicyType{PolicyTypeIngress},
			},
		},
		{
			name: "ports: endPort, named ports, protocol-only, cross product with peers",
			spec: `  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {a: b}}}, {ipBlock: {cidr: 192.0.2.0/24}}]
    ports:
    - {port: 8000, endPort: 8080}
    - {port: http}
    - {protocol: SCTP}
    - {protocol: TCP, port: 443}
`,
			want: NetworkPolicySpec{
				Selector: podsSel,
				Ingress: []Rule{
					{Action: Allow, Protocol: tcp, Source: EntityRule{Selector: podsSel + ` && a == "b"`}, Destination: EntityRule{Ports: []Port{"8000:8080", "http", "443"}}},
					{Action: Allow, Protocol: ptr(ProtocolSCTP), Source: EntityRule{Selector: podsSel + ` && a == "b"`}},
					{Action: Allow, Protocol: tcp, Source: EntityRule{Nets: []string{"192.0.2.0/24"}}, Destination: EntityRule{Ports: []Port{"8000:8080", "http", "443"}}},
					{Action: Allow, Protocol: ptr(ProtocolSCTP), Source: EntityRule{Nets: []string{"192.0.2.0/24"}}},
				},
				Types: []PolicyType{PolicyTypeIngress},
			},
		},
		{
			name: "a port without a number allows the whole protocol",
			spec: "  podSelector: {}\n  ingress: [{ports: [{port: 80}, {protocol: TCP}]}]\n",
			want: NetworkPolicySpec{
				Selector: podsSel,
				Ingress:  []Rule{{Action: Allow, Protocol: tcp}},
				Types:    []PolicyType{PolicyTypeIngress},
			},
		},
		{
			name: "matchExpressions",
			spec: `  podSelector:
    matchLabels: {app: web, tier: front}
    matchExpressions:
    - {key: env, operator: In, values: [prod, staging]}
    - {key: track, operator: NotIn, values: [canary]}
    - {key: example.com/owner, operator: Exists}
    - {key: legacy, operator: DoesNotExist}
`,
			want: NetworkPolicySpec{
				Selector: podsSel + ` && app == "web" && tier == "front" && env in {"prod", "staging"} && track not in {"canary"} && has(example.com/owner) && !has(legacy)`,
				Types:    []PolicyType{PolicyTypeIngress},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustDecode(t, "k8s.yaml", k8sPolicy(tc.spec))
			np, ok := objs[0].(*NetworkPolicy)
			if !ok {
				t.Fatalf("decoded a %T", objs[0])
			}
			want := tc.want
			want.Tier, want.Order = "default", ptr(1000.0)
			if diff := cmp.Diff(want, np.Spec, equateEmpty); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			wantMeta := ObjectMeta{
				Name: "knp.default.web", Namespace: "prod",
				Annotations: map[string]string{AnnotationK8sNetworkPolicy: "web"},
			}
			if diff := cmp.Diff(wantMeta, np.Metadata); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(objs, roundTrip(t, objs), equateEmpty); diff != "" {
				t.Errorf("round trip (-before +after):\n%s", diff)
			}
		})
	}
}

func TestK8sObjectsFromKubectl(t *testing.T) {
	objs := mustDecode(t, "kubectl.yaml", `
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
    uid: 0c2f
    resourceVersion: "77"
    creationTimestamp: "2024-01-01T00:00:00Z"
    labels: {kubernetes.io/metadata.name: shop, team: web}
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"v1"}'
  spec: {finalizers: [kubernetes]}
  status: {phase: Active}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: deny
    generation: 1
    managedFields: [{manager: kubectl}]
    labels: {app: shop}
  spec:
    podSelector: {}
`)
	want := []Object{
		&Namespace{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "Namespace"},
			Metadata: ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop", "team": "web"}, Annotations: map[string]string{}},
		},
		&NetworkPolicy{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"},
			Metadata: ObjectMeta{
				Name: "knp.default.deny", Namespace: "default", Labels: map[string]string{"app": "shop"},
				Annotations: map[string]string{AnnotationK8sNetworkPolicy: "deny"},
			},
			Spec: NetworkPolicySpec{Tier: "default", Order: ptr(1000.0), Selector: podsSel, Types: []PolicyType{PolicyTypeIngress}},
		},
	}
	if diff := cmp.Diff(want, objs, equateEmpty); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestInvalidK8s(t *testing.T) {
	errs := func(lines ...string) []string { return prefixed("NetworkPolicy prod/web", lines...) }
	runInvalidCases(t, []invalidCase{
		{"peers and ports", k8sPolicy(`  podSelector: {}
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16, 10.0.0.0/4, x]}
    - ipBlock: {cidr: 10.0.0.0/33}
    - ipBlock: {cidr: 10.0.0.0/8}
      podSelector: {}
    ports:
    - {protocol: ICMP}
    - {port: http, endPort: 90}
    - {port: 90, endPort: 80}
    - {endPort: 80}
    - {port: "1:2"}
    - {port: 0}
`), errs(
			`spec.ingress[0].ports[0].protocol: "ICMP": protocol must be TCP, UDP or SCTP`,
			`spec.ingress[0].ports[1].endPort: "90": endPort cannot be used with a named port`,
			`spec.ingress[0].ports[2].endPort: "80": endPort must be between port (90) and 65535`,
			`spec.ingress[0].ports[3].endPort: "80": endPort needs port`,
			`spec.ingress[0].ports[4].port: "1:2": port must be a number or a port name`,
			`spec.ingress[0].ports[5].port: "0": port must be between 1 and 65535`,
			`spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock`,
			`spec.ingress[0].from[1].ipBlock.except[0]: "11.0.0.0/16": must be within cidr 10.0.0.0/8`,
			`spec.ingress[0].from[1].ipBlock.except[1]: "10.0.0.0/4": must be within cidr 10.0.0.0/8`,
			`spec.ingress[0].from[1].ipBlock.except[2]: "x": invalid CIDR`,
			`spec.ingress[0].from[2].ipBlock.cidr: "10.0.0.0/33": invalid CIDR`,
			`spec.ingress[0].from[3].ipBlock: ipBlock cannot be combined with podSelector or namespaceSelector`)},
		{"selectors", k8sPolicy(`  podSelector:
    matchLabels: {"a b": c, d: "e f"}
    matchExpressions:
    - {key: env, operator: Equals, values: [x]}
    - {key: env, operator: In}
    - {key: env, operator: Exists, values: [x]}
    - {key: "-x", operator: Exists}
  policyTypes: [Inbound]
`), errs(
			`spec.podSelector.matchLabels: "a b": invalid label key: name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`spec.podSelector.matchLabels["d"]: "e f": invalid label value: must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`spec.podSelector.matchExpressions[0].operator: "Equals": operator must be In, NotIn, Exists or DoesNotExist`,
			`spec.podSelector.matchExpressions[1].values: values must not be empty for operator In`,
			`spec.podSelector.matchExpressions[2].values: values must be empty for operator Exists`,
			`spec.podSelector.matchExpressions[3].key: "-x": invalid label key: name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit`,
			`spec.policyTypes[0]: "Inbound": policy type must be Ingress or Egress`)},
		{"unknown field", k8sPolicy("  podSelector: {}\n  ingres: []\n"), errs(`spec.ingres: unknown field`)},
		{"name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Web}\nspec: {podSelector: {}}\n", []string{
			`t.yaml: document 1 (NetworkPolicy default/Web): metadata.name: "Web": must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit`}},
		{"other kinds", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", []string{
			`t.yaml: document 1 (Service s): v1 kind Service is not supported by Tabby`}},
	})
}
