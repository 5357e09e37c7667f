package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
)

func TestConfigValidate(t *testing.T) {
	if _, err := NewEngine(Config{}); err == nil {
		t.Error("NewEngine without a node: no error")
	}
}

func decode(t *testing.T, yaml string) []v1.Object {
	t.Helper()
	objs, err := v1.DecodeManifests("test", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

const engineTestObjects = `apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: w, namespace: ns, labels: {app: w}}
spec: {node: n1, interfaceName: tabbyw, ipNetworks: [10.0.0.1/32]}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  selector: app == 'w'
  ingress:
  - action: Allow
    source: {selector: app == 'w'}
`

// An update with the same content, and deleting what does not exist,
// change nothing.
func TestIdempotent(t *testing.T) {
	e, err := NewEngine(Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, engineTestObjects)
	for _, o := range objs {
		e.OnUpdate(o)
	}
	first := e.Flush()
	if first.Empty() {
		t.Fatal("first flush is empty")
	}
	for _, o := range decode(t, engineTestObjects) {
		e.OnUpdate(o)
	}
	e.OnDelete("NetworkPolicy", "ns", "nope")
	e.OnDelete("WorkloadEndpoint", "other", "w")
	e.OnDelete("NoSuchKind", "", "x")
	if d := e.Flush(); !d.Empty() {
		t.Errorf("second flush: %s", d)
	}
}

// A rule that could not be compiled (an object that skipped validation)
// is marked Invalid, matches nothing and keeps the rule indexes.
func TestInvalidRule(t *testing.T) {
	bad := v1.Protocol("nope")
	np := &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: v1.NetworkPolicySpec{
			Selector: "all()",
			Ingress: []v1.Rule{
				{Action: v1.Allow, Protocol: &bad},
				{Action: v1.Allow, Source: v1.EntityRule{Selector: "app ==="}},
				{Action: v1.Deny},
			},
		},
	}
	objs := append(decode(t, engineTestObjects)[:1], np)
	rs, err := Compile(Config{Node: "n1"}, objs)
	if err != nil {
		t.Fatal(err)
	}
	p := rs.Policies[NetworkPolicyID("ns", "p")]
	if p == nil || len(p.Ingress) != 3 {
		t.Fatalf("policy: %+v", p)
	}
	for i := range 2 {
		if p.Ingress[i].Invalid == "" || p.Ingress[i].Origin.Index != i {
			t.Errorf("rule %d: %+v", i, p.Ingress[i])
		}
	}
	pkt := Packet{Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.1"), Protocol: protoTCP, DstPort: 80}
	v := Evaluate(rs, WorkloadEndpointID("ns", "w"), Ingress, pkt)
	if v.Action != v1.Deny || v.Rule == nil || v.Rule.Index != 2 {
		t.Errorf("verdict %s", v.Summary())
	}
	// A policy whose own selector does not parse selects nothing.
	np.Spec.Selector = "(("
	rs, _ = Compile(Config{Node: "n1"}, objs)
	if len(rs.Policies) != 0 || len(rs.Endpoints[WorkloadEndpointID("ns", "w")].Ingress.Tiers) != 0 {
		t.Errorf("a policy with a bad selector applies: %s", rs)
	}
}

// The ruleset is plain data: it survives a JSON round trip.
func TestRulesetJSON(t *testing.T) {
	rs, err := Compile(Config{Node: "n1"}, decode(t, engineTestObjects))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"wep:ns/w"`, `"np:ns/p"`, `"10.0.0.1/32"`, `"direction":"ingress"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s:\n%s", want, data)
		}
	}
	var back Ruleset
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rs.IPSets, back.IPSets, rulesetCmpOpts...); diff != "" {
		t.Errorf("sets after a round trip (-want +got):\n%s", diff)
	}
}

func TestIDs(t *testing.T) {
	id := NetworkPolicyID("ns", "tier.p")
	if id.Namespace() != "ns" || id.Name() != "tier.p" {
		t.Errorf("%s: namespace %q name %q", id, id.Namespace(), id.Name())
	}
	g := GlobalNetworkPolicyID("tier.p")
	if g.Namespace() != "" || g.Name() != "tier.p" {
		t.Errorf("%s: namespace %q name %q", g, g.Namespace(), g.Name())
	}
}
