package policy

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// The benchmarks model the design target: 100,000 endpoints cluster-wide
// in 100 namespaces, 5,000 policies (4,900 Kubernetes-style namespaced
// policies, 100 global ones), and a node with 200 local endpoints.
//
//	go test ./internal/policy -run '^$' -bench . -benchtime 1x   (memory, compile)
//	go test ./internal/policy -run '^$' -bench RemoteLabelChange

const (
	benchEndpoints  = 100_000
	benchNamespaces = 100
	benchApps       = 50 // app label values per namespace
	benchPolicies   = 5_000
	benchGlobal     = 100 // of benchPolicies
	benchLocal      = 200
	benchNode       = "node-local"
)

var benchData struct {
	once      sync.Once
	policies  []v1.Object // namespaces, tiers, policies
	local     []v1.Object // the local node's endpoints
	remote    []*v1.WorkloadEndpoint
	relabeled []*v1.WorkloadEndpoint // remote[i] with another app label
	// Remote endpoints (and relabeled versions) whose app label moves them
	// between sets that the local endpoints' policies use.
	hitBefore, hitAfter []*v1.WorkloadEndpoint
}

func benchWorkload(i int, node string) *v1.WorkloadEndpoint {
	ns := fmt.Sprintf("ns%d", i%benchNamespaces)
	app := fmt.Sprintf("app%d", (i/benchNamespaces)%benchApps)
	return &v1.WorkloadEndpoint{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"},
		Metadata: v1.ObjectMeta{
			Name: fmt.Sprintf("pod-%d", i), Namespace: ns,
			Labels: map[string]string{
				"app":               app,
				"tier":              []string{"web", "api", "db"}[i%3],
				"version":           fmt.Sprintf("v%d", i%4),
				"pod-template-hash": ns + "-" + app,
			},
		},
		Spec: v1.WorkloadEndpointSpec{
			Orchestrator:  v1.OrchestratorKubernetes,
			Node:          node,
			Pod:           fmt.Sprintf("pod-%d", i),
			Endpoint:      "eth0",
			InterfaceName: fmt.Sprintf("tabby%x", i),
			IPNetworks:    []string{fmt.Sprintf("10.%d.%d.%d/32", i>>16&255, i>>8&255, i&255)},
			Ports:         []v1.WorkloadEndpointPort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 8080}},
		},
	}
}

func benchSetup() {
	d := &benchData
	for n := range benchNamespaces {
		d.policies = append(d.policies, &v1.Namespace{
			Metadata: v1.ObjectMeta{Name: fmt.Sprintf("ns%d", n), Labels: map[string]string{"team": fmt.Sprintf("t%d", n%10)}},
		})
	}
	d.policies = append(d.policies, &v1.Tier{Metadata: v1.ObjectMeta{Name: "platform"}, Spec: v1.TierSpec{Order: ptr(100.0), DefaultAction: v1.Pass}})
	tcp := v1.ProtocolTCP
	for i := range benchPolicies - benchGlobal {
		ns := fmt.Sprintf("ns%d", i%benchNamespaces)
		app := i / benchNamespaces % benchApps
		sel := func(a int) string {
			return fmt.Sprintf("tabby.dev/orchestrator == 'k8s' && app == 'app%d'", a%benchApps)
		}
		d.policies = append(d.policies, &v1.NetworkPolicy{
			Metadata: v1.ObjectMeta{Name: fmt.Sprintf("knp.default.p%d", i), Namespace: ns},
			Spec: v1.NetworkPolicySpec{
				Tier: "default", Order: ptr(1000.0), Selector: sel(app),
				Types: []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
				Ingress: []v1.Rule{
					{Action: v1.Allow, Protocol: &tcp,
						Source:      v1.EntityRule{Selector: sel(app+1) + " && tier == 'web'"},
						Destination: v1.EntityRule{Ports: []v1.Port{"8080"}}},
					{Action: v1.Allow, Protocol: &tcp,
						Source:      v1.EntityRule{Selector: sel(app + 2), NamespaceSelector: fmt.Sprintf("team == 't%d'", i%10)},
						Destination: v1.EntityRule{Ports: []v1.Port{"http"}}},
				},
				Egress: []v1.Rule{
					{Action: v1.Allow, Protocol: &tcp,
						Destination: v1.EntityRule{Selector: sel(app + 3), Ports: []v1.Port{"http"}}},
					{Action: v1.Allow, Destination: v1.EntityRule{Nets: []string{"10.200.0.0/16"}}},
				},
			},
		})
	}
	for i := range benchGlobal {
		d.policies = append(d.policies, &v1.GlobalNetworkPolicy{
			Metadata: v1.ObjectMeta{Name: fmt.Sprintf("platform.g%d", i)},
			Spec: v1.GlobalNetworkPolicySpec{
				Tier: "platform", Order: ptr(float64(i)),
				Selector: fmt.Sprintf("tier == '%s' && version == 'v%d'", []string{"web", "api", "db"}[i%3], i%4),
				Ingress: []v1.Rule{
					{Action: v1.Deny, Source: v1.EntityRule{Selector: fmt.Sprintf("version == 'v%d' && tier == 'db'", (i+1)%4)}},
					{Action: v1.Pass},
				},
			},
		})
	}
	for i := range benchEndpoints {
		if i < benchLocal {
			d.local = append(d.local, benchWorkload(i, benchNode))
			continue
		}
		w := benchWorkload(i, fmt.Sprintf("node-%d", i%1000))
		d.remote = append(d.remote, w)
		if len(d.relabeled) < 1000 {
			r := benchWorkload(i, w.Spec.Node)
			r.Metadata.Labels["app"] = fmt.Sprintf("app%d", (i/benchNamespaces+1)%benchApps)
			d.relabeled = append(d.relabeled, r)
		}
		if (i/benchNamespaces)%benchApps == 2 && i >= benchLocal+1000 && len(d.hitBefore) < 1000 {
			r := benchWorkload(i, w.Spec.Node)
			r.Metadata.Labels["app"] = "app3"
			d.hitBefore, d.hitAfter = append(d.hitBefore, w), append(d.hitAfter, r)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// benchEngine returns an engine fed the whole cluster.
func benchEngine(b *testing.B) *Engine {
	benchData.once.Do(benchSetup)
	e, err := NewEngine(Config{Node: benchNode})
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range benchData.policies {
		e.OnUpdate(o)
	}
	for _, o := range benchData.local {
		e.OnUpdate(o)
	}
	for _, w := range benchData.remote {
		e.OnUpdate(w)
	}
	e.Flush()
	return e
}

// BenchmarkRemoteLabelChange measures one label change on a remote
// endpoint (its app label, which many selectors read) and the Flush that
// reports it. "mixed" changes the first thousand remote endpoints, about a
// third of them in sets that the node uses; "in-sets" only endpoints that
// move between such sets. Goal: under 1 ms.
func BenchmarkRemoteLabelChange(b *testing.B) {
	e := benchEngine(b)
	b.Logf("%s", e)
	run := func(b *testing.B, before, after []*v1.WorkloadEndpoint) {
		i, changes := 0, 0
		for b.Loop() {
			k := i % len(before)
			w := after[k]
			if i/len(before)%2 == 1 {
				w = before[k]
			}
			e.OnUpdate(w)
			if !e.Flush().Empty() {
				changes++
			}
			i++
		}
		b.ReportMetric(float64(changes)/float64(i), "deltas/op")
	}
	b.Run("mixed", func(b *testing.B) { run(b, benchData.remote[:len(benchData.relabeled)], benchData.relabeled) })
	b.Run("in-sets", func(b *testing.B) { run(b, benchData.hitBefore, benchData.hitAfter) })
}

// BenchmarkFullCompile measures compiling a node's ruleset from nothing:
// a new engine fed every object of the cluster (100,000 endpoints, 5,000
// policies), with 200 local endpoints, and the Ruleset. Goal: under 100
// ms.
func BenchmarkFullCompile(b *testing.B) {
	benchData.once.Do(benchSetup)
	for b.Loop() {
		e := benchEngine(b)
		rs := e.Ruleset()
		if len(rs.Endpoints) != benchLocal {
			b.Fatalf("%d local endpoints", len(rs.Endpoints))
		}
	}
}

// BenchmarkLocalCompile measures the part of a compile that depends on the
// local endpoints: 200 local endpoints added to an engine that knows the
// rest of the cluster, selecting their policies and filling their sets,
// and the Flush.
func BenchmarkLocalCompile(b *testing.B) {
	benchData.once.Do(benchSetup)
	e, _ := NewEngine(Config{Node: benchNode})
	for _, o := range benchData.policies {
		e.OnUpdate(o)
	}
	for _, w := range benchData.remote {
		e.OnUpdate(w)
	}
	e.Flush()
	for b.Loop() {
		for _, o := range benchData.local {
			e.OnUpdate(o)
		}
		if d := e.Flush(); len(d.Endpoints) != benchLocal {
			b.Fatalf("%d local endpoints", len(d.Endpoints))
		}
		b.StopTimer()
		for _, o := range benchData.local {
			e.OnDeleteObject(o)
		}
		e.Flush()
		b.StartTimer()
	}
}

// BenchmarkMemoryPerRemoteEndpoint reports the engine's heap per remote
// endpoint: the growth of the live heap when 99,800 remote endpoints are
// added to an engine that already has the policies and the local
// endpoints (so set memberships are included). Goal: 1 KiB or less.
func BenchmarkMemoryPerRemoteEndpoint(b *testing.B) {
	benchData.once.Do(benchSetup)
	var perEndpoint float64
	for b.Loop() {
		e, _ := NewEngine(Config{Node: benchNode})
		for _, o := range benchData.policies {
			e.OnUpdate(o)
		}
		for _, o := range benchData.local {
			e.OnUpdate(o)
		}
		e.Flush()
		before := liveHeap()
		for _, w := range benchData.remote {
			e.OnUpdate(w)
		}
		e.Flush()
		after := liveHeap()
		perEndpoint = float64(after-before) / float64(len(benchData.remote))
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perEndpoint, "bytes/endpoint")
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
