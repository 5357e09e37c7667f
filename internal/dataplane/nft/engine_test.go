package nft

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

const engineManifests = `
apiVersion: tabby.dev/v1
kind: Namespace
metadata: {name: ops, labels: {tier: ops}}
---
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: server, namespace: ops, labels: {app: server}}
spec:
  node: n1
  interfaceName: tabbyserver
  ipNetworks: [10.5.0.1/32, fd00:5::1/128]
  ports: [{name: metrics, protocol: TCP, port: 9090}]
---
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: probe, namespace: ops, labels: {app: probe}}
spec:
  node: n1
  interfaceName: tabbyprobe
  ipNetworks: [10.5.0.2/32, fd00:5::2/128]
  profiles: [allow-egress]
---
apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: allow-egress}
spec:
  egress: [{action: Allow}]
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: partners, labels: {kind: partner}}
spec: {nets: [203.0.113.0/24, 198.51.100.7]}
---
apiVersion: tabby.dev/v1
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: security.partners}
spec:
  tier: security
  selector: all()
  ingress:
  - action: Log
  - action: Pass
    source: {namespaceSelector: global(), selector: kind == 'partner'}
  - action: Deny
    protocol: TCP
    destination: {ports: [23]}
  - action: Pass
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: server, namespace: ops}
spec:
  selector: app == 'server'
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    protocol: TCP
    source: {selector: app == 'probe'}
    destination: {ports: [metrics, 8080]}
`

const engineUpdate = `
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: partners, labels: {kind: partner}}
spec: {nets: [203.0.113.0/24, 198.51.100.8]}
---
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: probe2, namespace: ops, labels: {app: probe}}
spec:
  node: n1
  interfaceName: tabbyprobe2
  ipNetworks: [10.5.0.3/32]
  profiles: [allow-egress]
`

// TestEngine renders what the real policy engine compiles from manifests,
// then follows the engine's Deltas, and checks the result against a
// from-scratch render of the final state.
func TestEngine(t *testing.T) {
	requireNft(t)
	objs, err := v1.DecodeManifests("engine_test", []byte(engineManifests))
	must(t, err)
	more, err := v1.DecodeManifests("engine_test", []byte(engineUpdate))
	must(t, err)

	e, err := policy.NewEngine(policy.Config{Node: "n1"})
	must(t, err)
	for _, o := range objs {
		e.OnUpdate(o)
	}
	rs := policy.NewRuleset("n1")
	rs.Apply(e.Flush())
	ns := testkit.NetNS(t)
	r := newRenderer(t, ns, Config{})
	r.Set(rs)
	res := mustApply(t, r)
	if len(res.Problems) != 0 || len(rs.Endpoints) != 2 {
		t.Fatalf("first Apply: %d endpoints, problems %v", len(rs.Endpoints), res.Problems)
	}
	for id := range rs.Endpoints {
		if !r.EndpointStatus(id).Programmed {
			t.Errorf("%s not programmed", id)
		}
	}

	for _, o := range more {
		e.OnUpdate(o)
	}
	d := e.Flush()
	if d.Empty() {
		t.Fatal("update made no delta")
	}
	rs.Apply(d)
	r.Set(rs)
	res = mustApply(t, r)
	if res.ChainsAdded != 2 || res.ChainsDeleted != 0 {
		t.Errorf("update: %+v, want the new endpoint's 2 chains added", res)
	}
	if res := mustApply(t, r); res.Writes != 0 {
		t.Errorf("second Apply wrote: %+v", res)
	}

	all, err := policy.Compile(policy.Config{Node: "n1"}, append(objs, more...))
	must(t, err)
	fresh := testkit.NetNS(t)
	want := canonical(renderFresh(t, fresh, all))
	if diff := cmp.Diff(want, canonical(listTable(t, ns, "tabby"))); diff != "" {
		t.Errorf("incremental table differs from a fresh render (-fresh +incremental):\n%s", diff)
	}
}
