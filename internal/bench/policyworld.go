package bench

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/lab"
)

// This file generates the synthetic cluster of the policy suite:
// namespaces, tiers, 5,000 policies and the remote endpoints, all
// deterministic for a seed.

func cumulative(w []float64) []float64 {
	out := make([]float64, len(w))
	sum := 0.0
	for i, x := range w {
		sum += x
		out[i] = sum
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func pick(r *rand.Rand, cum []float64) int {
	x := r.Float64()
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}

// policyWorld generates the synthetic cluster deterministically: remote
// endpoint i is always the same object.
type policyWorld struct {
	scale  policyScale
	seed   uint64
	appCum []float64 // Zipf-like popularity of the apps
	locals []lab.WorkloadConfig
	// policies are every generated policy (NetworkPolicy and
	// GlobalNetworkPolicy), active the number that apply to a local
	// workload.
	policies []v1.Object
	active   int
	// activeNPs are the NetworkPolicies of local namespaces that apply to
	// a local workload: the policy changes edit them.
	activeNPs []*v1.NetworkPolicy
	// used holds, per local namespace, the (app, tier) pairs that active
	// policies' ingress rules select: endpoints with them are in a set
	// the node uses.
	used map[string]map[[2]string]bool
}

func nsName(i int) string  { return fmt.Sprintf("ns-%02d", i) }
func appName(i int) string { return fmt.Sprintf("app-%02d", i) }

func newPolicyWorld(s policyScale, seed uint64) (*policyWorld, error) {
	w := &policyWorld{scale: s, seed: seed, used: map[string]map[[2]string]bool{}}
	pop := make([]float64, s.Apps)
	for i := range pop {
		pop[i] = 1 / math.Pow(float64(i+1), 0.8)
	}
	w.appCum = cumulative(pop)

	r := rand.New(rand.NewPCG(seed, 1))
	localApps := map[string]map[string]bool{}     // ns → apps
	localPairs := map[[2]string]map[string]bool{} // (tier, app) → namespaces
	for i := range s.Locals {
		ns := nsName(i % s.LocalNamespaces)
		app := appName((i / s.LocalNamespaces) % s.Apps)
		tier := tiers[pick(r, tierCum)]
		w.locals = append(w.locals, lab.WorkloadConfig{
			Namespace: ns, Name: fmt.Sprintf("w%03d", i), Node: "n1",
			Labels: map[string]string{"app": app, "tier": tier, "version": versions[pick(r, versionCum)]},
		})
		if localApps[ns] == nil {
			localApps[ns] = map[string]bool{}
		}
		localApps[ns][app] = true
		k := [2]string{tier, app}
		if localPairs[k] == nil {
			localPairs[k] = map[string]bool{}
		}
		localPairs[k][ns] = true
	}
	team := func(ns int) string { return fmt.Sprintf("team-%d", ns%10) }
	localTeams := map[string]bool{}
	for i := range s.LocalNamespaces {
		localTeams[team(i)] = true
	}

	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	for j := range s.Policies {
		order := float64(10 + j%90)
		app := appName(pick(r, w.appCum))
		port := v1.PortNumber(ports[r.IntN(len(ports))])
		var obj v1.Object
		active := false
		switch {
		case j%20 == 0: // 5%: security GlobalNetworkPolicies
			t := team(r.IntN(s.Namespaces))
			obj = &v1.GlobalNetworkPolicy{
				TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "GlobalNetworkPolicy"},
				Metadata: v1.ObjectMeta{Name: fmt.Sprintf("security.gnp-%04d", j)},
				Spec: v1.GlobalNetworkPolicySpec{
					Tier: "security", Order: &order,
					Selector:          fmt.Sprintf("app == '%s'", app),
					NamespaceSelector: fmt.Sprintf("team == '%s'", t),
					Ingress:           []v1.Rule{{Action: v1.Deny, Source: v1.EntityRule{Selector: "quarantine == 'true'"}}},
					Egress:            []v1.Rule{{Action: v1.Deny, Destination: v1.EntityRule{Nets: []string{"198.51.100.0/24"}}}},
				},
			}
			active = localTeams[t] && anyNS(localApps, app)
		case j%20 == 1: // 5%: platform GlobalNetworkPolicies
			t := team(r.IntN(s.Namespaces))
			tier := tiers[pick(r, tierCum)]
			obj = &v1.GlobalNetworkPolicy{
				TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "GlobalNetworkPolicy"},
				Metadata: v1.ObjectMeta{Name: fmt.Sprintf("platform.gnp-%04d", j)},
				Spec: v1.GlobalNetworkPolicySpec{
					Tier: "platform", Order: &order,
					Selector:          fmt.Sprintf("tier == '%s' && app == '%s'", tier, app),
					NamespaceSelector: fmt.Sprintf("team == '%s'", t),
					Ingress: []v1.Rule{{Action: v1.Allow, Protocol: &tcp,
						Source: v1.EntityRule{
							Selector:          fmt.Sprintf("tier == '%s'", tiers[pick(r, tierCum)]),
							NamespaceSelector: fmt.Sprintf("env == '%s'", []string{"prod", "staging"}[r.IntN(2)]),
						},
						Destination: v1.EntityRule{Ports: []v1.Port{port}}}},
				},
			}
			active = localTeams[t] && len(localPairs[[2]string{tier, app}]) > 0
		default: // 90%: NetworkPolicies, a fifth of them in tier platform
			ns := nsName(r.IntN(s.Namespaces))
			name, tier := fmt.Sprintf("np-%04d", j), ""
			if r.IntN(5) == 0 {
				name, tier = "platform."+name, "platform"
			}
			src := [2]string{appName(pick(r, w.appCum)), tiers[pick(r, tierCum)]}
			np := &v1.NetworkPolicy{
				TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "NetworkPolicy"},
				Metadata: v1.ObjectMeta{Name: name, Namespace: ns},
				Spec: v1.NetworkPolicySpec{
					Tier: tier, Order: &order,
					Selector: fmt.Sprintf("app == '%s'", app),
					Ingress: []v1.Rule{{Action: v1.Allow, Protocol: &tcp,
						Source:      v1.EntityRule{Selector: fmt.Sprintf("app == '%s' && tier == '%s'", src[0], src[1])},
						Destination: v1.EntityRule{Ports: []v1.Port{port}}}},
					Egress: []v1.Rule{
						{Action: v1.Allow, Protocol: &tcp, Destination: v1.EntityRule{
							Selector: fmt.Sprintf("app == '%s'", appName(pick(r, w.appCum))),
							Ports:    []v1.Port{v1.PortNumber(ports[r.IntN(len(ports))])}}},
						{Action: v1.Allow, Protocol: &udp, Destination: v1.EntityRule{
							Nets: []string{"10.96.0.10/32"}, Ports: []v1.Port{v1.PortNumber(53)}}},
					},
				},
			}
			obj = np
			if active = localApps[ns][app]; active {
				w.activeNPs = append(w.activeNPs, np)
				if w.used[ns] == nil {
					w.used[ns] = map[[2]string]bool{}
				}
				w.used[ns][src] = true
			}
		}
		if active {
			w.active++
		}
		v1.SetDefaults(obj)
		if err := v1.Validate(obj); err != nil {
			return nil, fmt.Errorf("generated policy %s: %w", obj.GetObjectMeta().Name, err)
		}
		w.policies = append(w.policies, obj)
	}
	if len(w.activeNPs) == 0 || len(w.used) == 0 {
		return nil, errors.New("no generated NetworkPolicy applies to a local workload")
	}
	return w, nil
}

func anyNS(m map[string]map[string]bool, app string) bool {
	for _, apps := range m {
		if apps[app] {
			return true
		}
	}
	return false
}

// base returns the resources the policies need: tiers, namespaces with
// labels, and the pool of the remote endpoints' addresses, which the lab's
// node never allocates from.
func (w *policyWorld) base() []v1.Object {
	order := func(f float64) *float64 { return &f }
	objs := []v1.Object{
		&v1.Tier{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Tier"}, Metadata: v1.ObjectMeta{Name: "security"},
			Spec: v1.TierSpec{Order: order(100), DefaultAction: v1.Pass}},
		&v1.Tier{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Tier"}, Metadata: v1.ObjectMeta{Name: "platform"},
			Spec: v1.TierSpec{Order: order(200), DefaultAction: v1.Pass}},
		&v1.IPPool{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "IPPool"}, Metadata: v1.ObjectMeta{Name: "bench-remote"},
			Spec: v1.IPPoolSpec{CIDR: remotePool, BlockSize: 26, DisableBGPExport: true, NodeSelector: "has(bench.tabby.dev/remote)"}},
	}
	for i := range w.scale.Namespaces {
		env := "prod"
		if i%2 == 1 {
			env = "staging"
		}
		objs = append(objs, &v1.Namespace{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Namespace"},
			Metadata: v1.ObjectMeta{Name: nsName(i), Labels: map[string]string{"env": env, "team": fmt.Sprintf("team-%d", i%10)}}})
	}
	return objs
}

// sentinel is the policy whose set holds the sentinel endpoints: the
// sentinel endpoint of a step is written last, so when it is in the
// kernel everything written before it is too.
func (w *policyWorld) sentinel() *v1.NetworkPolicy {
	tcp := v1.ProtocolTCP
	return &v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "NetworkPolicy"},
		Metadata: v1.ObjectMeta{Name: sentinelPolicy, Namespace: sentinelNS},
		Spec: v1.NetworkPolicySpec{Selector: "all()", Types: []v1.PolicyType{v1.PolicyTypeIngress},
			Ingress: []v1.Rule{{Action: v1.Allow, Protocol: &tcp,
				Source:      v1.EntityRule{Selector: "has(" + sentinelLabel + ")"},
				Destination: v1.EntityRule{Ports: []v1.Port{v1.PortNumber(7)}}}}},
	}
}

// remoteAddr is the address of remote endpoint i.
func remoteAddr(i int) netip.Addr {
	base := netip.MustParsePrefix(remotePool).Addr().As4()
	n := binary.BigEndian.Uint32(base[:]) + 1 + uint32(i)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, n)))
}

// remote returns remote endpoint i: a pod of a fake node, with labels
// drawn from the world's distributions.
func (w *policyWorld) remote(i int) *v1.WorkloadEndpoint {
	r := rand.New(rand.NewPCG(w.seed, uint64(i)+1<<32))
	ns := nsName(r.IntN(w.scale.Namespaces))
	app := appName(pick(r, w.appCum))
	labels := map[string]string{"app": app, "tier": tiers[pick(r, tierCum)], "version": versions[pick(r, versionCum)]}
	if r.IntN(200) == 0 {
		labels["quarantine"] = "true"
	}
	node := fmt.Sprintf("fake-%04d", i/100)
	pod := fmt.Sprintf("%s-%06d", app, i)
	mac := make([]byte, 6)
	binary.BigEndian.PutUint32(mac[2:], uint32(i))
	mac[0] = 0x0e
	return &v1.WorkloadEndpoint{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"},
		Metadata: v1.ObjectMeta{Name: node + "-k8s-" + pod + "-eth0", Namespace: ns, Labels: labels},
		Spec: v1.WorkloadEndpointSpec{
			Orchestrator: "k8s", Workload: pod, Pod: pod, Node: node, Endpoint: "eth0",
			ContainerID:   fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()),
			IPNetworks:    []string{remoteAddr(i).String() + "/32"},
			InterfaceName: fmt.Sprintf("tabby%010x", r.Uint64()>>24),
			MAC:           fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]),
		},
	}
}

// usedRemote returns remote endpoint i moved into a local namespace with
// labels that an active policy's set selects (for the endpoint changes).
func (w *policyWorld) usedRemote(i int) *v1.WorkloadEndpoint {
	e := w.remote(i)
	r := rand.New(rand.NewPCG(w.seed, uint64(i)+2<<32))
	ns := nsName(r.IntN(w.scale.LocalNamespaces))
	for w.used[ns] == nil {
		ns = nsName(r.IntN(w.scale.LocalNamespaces))
	}
	pairs := sortedPairs(w.used[ns])
	p := pairs[r.IntN(len(pairs))]
	e.Metadata.Namespace = ns
	e.Metadata.Labels["app"], e.Metadata.Labels["tier"] = p[0], p[1]
	return e
}

func sortedPairs(m map[[2]string]bool) [][2]string {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, func(a, b [2]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	return out
}

// inUsedSet reports whether endpoint e is in a set that the node uses
// because of its (app, tier).
func (w *policyWorld) inUsedSet(e *v1.WorkloadEndpoint) bool {
	return w.used[e.Metadata.Namespace][[2]string{e.Metadata.Labels["app"], e.Metadata.Labels["tier"]}]
}

// labelCandidates returns up to n loaded remote endpoints (index < below)
// that are in a set the node uses.
func (w *policyWorld) labelCandidates(n, below, skip int) []int {
	var out []int
	for i := skip; i < below && len(out) < n; i++ {
		if w.inUsedSet(w.remote(i)) {
			out = append(out, i)
		}
	}
	return out
}
