package v1

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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

// TestK8sNetworkPolicyFromKubectlGet decodes objects as "kubectl get -o
// yaml" prints them: the fields the API server sets in metadata are
// accepted and dropped, and so is status (which NetworkPolicy printed as
// "status: {}" in Kubernetes 1.24 to 1.27).
func TestK8sNetworkPolicyFromKubectlGet(t *testing.T) {
	objs := mustDecode(t, "kubectl-get.yaml", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"annotations":{"team.example.com/owner":"payments"},"name":"api-allow","namespace":"storefront"},"spec":{"podSelector":{"matchLabels":{"app":"api"}}}}
    team.example.com/owner: payments
  creationTimestamp: "2025-03-04T10:11:12Z"
  deletionGracePeriodSeconds: 30
  deletionTimestamp: "2025-03-05T00:00:00+01:00"
  finalizers: [example.com/keep]
  generateName: api-
  generation: 3
  labels:
    app: api
  managedFields:
  - apiVersion: networking.k8s.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          .: {}
          f:kubectl.kubernetes.io/last-applied-configuration: {}
          f:team.example.com/owner: {}
      f:spec:
        f:ingress: {}
        f:podSelector: {}
        f:policyTypes: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2025-03-04T10:11:12Z"
  - manager: kube-controller-manager
    operation: Update
    subresource: status
    time: null
  name: api-allow
  namespace: storefront
  ownerReferences:
  - apiVersion: apps/v1
    blockOwnerDeletion: true
    controller: true
    kind: Deployment
    name: api
    uid: 5b0c3f7e-8d1a-4c4e-9a57-0d9c2b1f6a10
  resourceVersion: "123456"
  selfLink: /apis/networking.k8s.io/v1/namespaces/storefront/networkpolicies/api-allow
  uid: 9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b
spec:
  egress:
  - ports:
    - endPort: 5433
      port: 5432
      protocol: TCP
    to:
    - podSelector:
        matchLabels:
          app: db
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: web
      podSelector:
        matchExpressions:
        - key: role
          operator: In
          values: [frontend]
    - ipBlock:
        cidr: 172.17.0.0/16
        except: [172.17.1.0/24]
    ports:
    - port: 8080
      protocol: TCP
    - port: http-metrics
      protocol: TCP
  podSelector:
    matchLabels:
      app: api
  policyTypes:
  - Ingress
  - Egress
status: {}
---
apiVersion: v1
kind: Namespace
metadata:
  creationTimestamp: "2025-03-04T10:00:00Z"
  labels:
    kubernetes.io/metadata.name: storefront
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          .: {}
          f:kubernetes.io/metadata.name: {}
    manager: kubectl-create
    operation: Update
    time: "2025-03-04T10:00:00Z"
  name: storefront
  resourceVersion: "4711"
  uid: 1d2c3b4a-5e6f-7a8b-9c0d-1e2f3a4b5c6d
spec:
  finalizers:
  - kubernetes
status:
  conditions:
  - lastTransitionTime: "2025-03-04T10:00:00Z"
    message: all good
    reason: ContentDeleted
    status: "False"
    type: NamespaceDeletionContentFailure
  phase: Active
`)
	ports := []Port{"8080", "http-metrics"}
	web := EntityRule{Selector: podsSel + ` && role in {"frontend"}`, NamespaceSelector: `team == "web"`}
	want := []Object{
		&NetworkPolicy{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"},
			Metadata: ObjectMeta{
				Name: "knp.default.api-allow", Namespace: "storefront", Labels: map[string]string{"app": "api"},
				Annotations: map[string]string{AnnotationK8sNetworkPolicy: "api-allow", "team.example.com/owner": "payments"},
			},
			Spec: NetworkPolicySpec{
				Tier: "default", Order: ptr(1000.0), Selector: podsSel + ` && app == "api"`,
				Ingress: []Rule{
					{Action: Allow, Protocol: ptr(ProtocolTCP), Source: web, Destination: EntityRule{Ports: ports}},
					{Action: Allow, Protocol: ptr(ProtocolTCP), Source: EntityRule{Nets: []string{"172.17.0.0/16"}, NotNets: []string{"172.17.1.0/24"}}, Destination: EntityRule{Ports: ports}},
				},
				Egress: []Rule{
					{Action: Allow, Protocol: ptr(ProtocolTCP), Destination: EntityRule{Selector: podsSel + ` && app == "db"`, Ports: []Port{"5432:5433"}}},
				},
				Types: []PolicyType{PolicyTypeIngress, PolicyTypeEgress},
			},
		},
		&Namespace{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "Namespace"},
			Metadata: ObjectMeta{Name: "storefront", Labels: map[string]string{"kubernetes.io/metadata.name": "storefront"}},
		},
	}
	if diff := cmp.Diff(want, objs, equateEmpty); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestK8sEndPort(t *testing.T) {
	for _, tc := range []struct {
		name, ports string
		want        []Port
	}{
		{"range", "[{port: 8000, endPort: 8080}]", []Port{"8000:8080"}},
		{"endPort equal to port", "[{port: 80, endPort: 80}]", []Port{"80"}},
		{"port number as a string", `[{port: "8000", endPort: 8080}]`, []Port{"8000:8080"}},
		{"up to 65535", "[{port: 1024, endPort: 65535}, {port: 22}]", []Port{"1024:65535", "22"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustDecode(t, "k8s.yaml", k8sPolicy("  podSelector: {}\n  ingress: [{ports: "+tc.ports+"}]\n"))
			want := []Rule{{Action: Allow, Protocol: ptr(ProtocolTCP), Destination: EntityRule{Ports: tc.want}}}
			if diff := cmp.Diff(want, objs[0].(*NetworkPolicy).Spec.Ingress, equateEmpty); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInvalidK8sTypes checks that the strict decoding into the k8s.io/api
// types reports unknown fields and values of the wrong type at any depth,
// with their paths.
func TestInvalidK8sTypes(t *testing.T) {
	errs := func(lines ...string) []string { return prefixed("NetworkPolicy prod/web", lines...) }
	runInvalidCases(t, []invalidCase{
		{"unknown fields in spec", k8sPolicy(`  podSelector: {matchLabel: {a: b}}
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: a, operator: Exists, value: [x]}]}
    - ipBlock: {cidr: 10.0.0.0/8, exept: []}
    ports: [{port: 80, end_port: 90}]
  Egress: []
`), errs(
			`spec.Egress: unknown field`,
			`spec.ingress[0].from[0].podSelector.matchExpressions[0].value: unknown field`,
			`spec.ingress[0].from[1].ipBlock.exept: unknown field`,
			`spec.ingress[0].ports[0].end_port: unknown field`,
			`spec.podSelector.matchLabel: unknown field`)},
		{"wrong types in spec", k8sPolicy(`  podSelector: {}
  ingress:
  - ports:
    - {port: true}
    - {port: 1.5}
    - {port: 99999999999}
    - {port: [80]}
    - {port: 80, endPort: "90"}
    - {protocol: 6}
  egress: {to: []}
  policyTypes: Ingress
`), errs(
			`spec.egress: must be a list`,
			`spec.ingress[0].ports[0].port: "true": must be a string or an integer`,
			`spec.ingress[0].ports[1].port: "1.5": must be a string or an integer between -2147483648 and 2147483647`,
			`spec.ingress[0].ports[2].port: "99999999999": must be a string or an integer between -2147483648 and 2147483647`,
			`spec.ingress[0].ports[3].port: must be a string or an integer`,
			`spec.ingress[0].ports[4].endPort: "90": must be an integer`,
			`spec.ingress[0].ports[5].protocol: "6": must be a string`,
			`spec.policyTypes: "Ingress": must be a list`)},
		{"metadata", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: prod
  creationTimestamp: yesterday
  generation: one
  labels: {app: [web]}
  managedFields: [{manger: kubectl, time: "2025-13-01T00:00:00Z", fieldsV1: {f:spec: {}}}]
  ownerReferences: [{kind: Deployment, controller: "yes"}]
  resourceVersion: 12
  uuid: x
spec: {podSelector: {}}
`, errs(
			`metadata.creationTimestamp: "yesterday": must be an RFC 3339 time such as "2024-05-01T12:00:00Z"`,
			`metadata.generation: "one": must be an integer`,
			`metadata.labels["app"]: must be a string`,
			`metadata.managedFields[0].manger: unknown field`,
			`metadata.managedFields[0].time: "2025-13-01T00:00:00Z": must be an RFC 3339 time such as "2024-05-01T12:00:00Z"`,
			`metadata.ownerReferences[0].controller: "yes": must be true or false`,
			`metadata.resourceVersion: "12": must be a string`,
			`metadata.uuid: unknown field`)},
		{"namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, Labels: {}}\nspec: {finalizers: kubernetes, phase: Active}\nstatus: {phase: [x]}\n", []string{
			`t.yaml: document 1 (Namespace shop): metadata.Labels: unknown field`,
			`t.yaml: document 1 (Namespace shop): spec.finalizers: "kubernetes": must be a list`,
			`t.yaml: document 1 (Namespace shop): spec.phase: unknown field`}},
	})
}

// TestStrictCheckerCoversK8sTypes walks the k8s.io/api types that
// Kubernetes manifests decode into and fails on any type the strict
// checker cannot check as encoding/json decodes it, so that a new field
// in a future k8s.io/api is noticed here.
func TestStrictCheckerCoversK8sTypes(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(t2 reflect.Type, path string)
	walk = func(t2 reflect.Type, path string) {
		if seen[t2] {
			return
		}
		seen[t2] = true
		for t2.Kind() == reflect.Pointer {
			t2 = t2.Elem()
		}
		if t2 == intOrStringType || reflect.PointerTo(t2).Implements(unmarshalerType) {
			return
		}
		switch t2.Kind() {
		case reflect.Struct:
			for name, ft := range jsonFields(t2) {
				walk(ft, path+"."+name)
			}
		case reflect.Map:
			if t2.Key().Kind() != reflect.String {
				t.Errorf("%s: map key %s is not a string", path, t2.Key())
			}
			walk(t2.Elem(), path+"[key]")
		case reflect.Slice:
			if t2.Elem().Kind() == reflect.Uint8 {
				t.Errorf("%s: []byte is base64 in JSON, which the checker does not know", path)
			}
			walk(t2.Elem(), path+"[]")
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		default:
			t.Errorf("%s: the strict checker cannot check a %s", path, t2)
		}
	}
	walk(reflect.TypeFor[networkingv1.NetworkPolicy](), "NetworkPolicy")
	walk(reflect.TypeFor[corev1.Namespace](), "Namespace")
}
