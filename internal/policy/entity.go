package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"unique"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/selector"
)

// entityKind is the kind of something that selectors match and that has
// addresses: an endpoint or a network set.
type entityKind uint8

const (
	kindWorkload entityKind = iota + 1
	kindHost
	kindNetworkSet
	kindGlobalNetworkSet
)

// entityKey names an entity within its namespace bucket.
type entityKey struct {
	kind entityKind
	name string
}

// label is one of an entity's own labels. Keys and values are interned:
// the same strings recur across thousands of endpoints.
type label struct {
	key, value unique.Handle[string]
}

// entity is the engine's compact, immutable view of an endpoint or network
// set. An update replaces the whole entity, so the old one can still be
// evaluated to find the sets it was in. Remote entities keep only what set
// membership needs; local endpoints also carry localInfo.
type entity struct {
	kind     entityKind
	ns       string // "" for cluster-scoped kinds
	name     string
	orch     string // workloads: spec.orchestrator
	sa       string // workloads: spec.serviceAccountName
	labels   []label
	profiles []string       // in order; workloads of orchestrator k8s start with kns.<ns>
	addrs    []netip.Prefix // sorted, masked
	ports    []namedPort
	local    *localInfo // set for the node's own endpoints
}

// namedPort is a named port of an endpoint.
type namedPort struct {
	name  string
	proto uint8
	port  uint16
}

// localInfo is what only the node's own endpoints need.
type localInfo struct {
	iface string
	spoof []netip.Prefix
}

func (en *entity) key() entityKey { return entityKey{en.kind, en.name} }

// endpointID returns the EndpointID of an endpoint entity.
func (en *entity) endpointID() EndpointID {
	if en.kind == kindHost {
		return HostEndpointID(en.name)
	}
	return WorkloadEndpointID(en.ns, en.name)
}

// ownLabel returns the value of one of the entity's own labels.
func (en *entity) ownLabel(key string) (string, bool) {
	for _, l := range en.labels {
		if l.key.Value() == key {
			return l.value.Value(), true
		}
	}
	return "", false
}

// entityView is the labels selectors see on an entity: the implicit
// labels (namespace, orchestrator), then its own labels, then the
// labelsToApply of its profiles in order (the first profile that sets a
// key wins). One profile's labels can be overridden, to evaluate the
// entity as it was before that profile changed. Get does not allocate.
type entityView struct {
	e          *Engine
	en         *entity
	prof       string            // profile whose labels are overridden
	profLabels map[string]string // its labels to use instead
}

func (v *entityView) Get(key string) (string, bool) {
	en := v.en
	switch key {
	case v1.LabelNamespace:
		return en.ns, en.ns != ""
	case v1.LabelOrchestrator:
		if en.kind == kindWorkload && en.orch != "" {
			return en.orch, true
		}
	}
	if val, ok := en.ownLabel(key); ok {
		return val, true
	}
	for _, p := range en.profiles {
		labels := v.profLabels
		if p != v.prof {
			labels = v.e.profileLabels(p)
		}
		if val, ok := labels[key]; ok {
			return val, true
		}
	}
	return "", false
}

// nsView is the labels a namespace selector sees: the namespace's labels
// plus the implicit LabelNamespace with its name.
type nsView struct {
	name   string
	labels map[string]string
}

func (v *nsView) Get(key string) (string, bool) {
	if key == v1.LabelNamespace {
		return v.name, true
	}
	val, ok := v.labels[key]
	return val, ok
}

var globalSelector = selector.MustParse("global()")

// intern returns a shared copy of s, for the strings that recur across
// entities (namespaces, orchestrators, profile and port names).
func (e *Engine) intern(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := e.strings[s]; ok {
		return c
	}
	s = strings.Clone(s)
	e.strings[s] = s
	return s
}

// newEntity allocates an entity with room for its own labels; up to four
// labels are stored in the same allocation as the entity, so that
// evaluating selectors over many entities touches less memory.
func newEntity(labels map[string]string) *entity {
	var en *entity
	if len(labels) <= 4 {
		x := &struct {
			entity
			inline [4]label
		}{}
		en = &x.entity
		en.labels = x.inline[:0:len(labels)]
	} else {
		en = &entity{labels: make([]label, 0, len(labels))}
	}
	for k, v := range labels {
		en.labels = append(en.labels, label{unique.Make(k), unique.Make(v)})
	}
	slices.SortFunc(en.labels, func(a, b label) int { return strings.Compare(a.key.Value(), b.key.Value()) })
	return en
}

// hostPrefixes parses addresses or CIDRs into sorted, masked prefixes,
// skipping invalid ones.
func hostPrefixes(addrs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		if p, err := parseNet(a); err == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func (e *Engine) workloadEntity(w *v1.WorkloadEndpoint) *entity {
	s := &w.Spec
	en := newEntity(w.Metadata.Labels)
	en.kind = kindWorkload
	en.ns = e.intern(w.Metadata.Namespace)
	en.name = w.Metadata.Name
	en.orch = e.intern(s.Orchestrator)
	en.sa = e.intern(s.ServiceAccountName)
	en.addrs = hostPrefixes(s.IPNetworks)
	if s.Orchestrator == v1.OrchestratorKubernetes {
		kns := K8sNamespaceProfilePrefix + w.Metadata.Namespace
		if !slices.Contains(s.Profiles, kns) {
			en.profiles = append(en.profiles, e.intern(kns))
		}
	}
	for _, p := range s.Profiles {
		if !slices.Contains(en.profiles, p) {
			en.profiles = append(en.profiles, e.intern(p))
		}
	}
	for _, p := range s.Ports {
		if n, ok := p.Protocol.Number(); ok && p.Name != "" {
			en.ports = append(en.ports, namedPort{e.intern(p.Name), n, p.Port})
		}
	}
	if s.Node == e.node {
		en.local = &localInfo{iface: s.InterfaceName, spoof: hostPrefixes(s.AllowSpoofedSourcePrefixes)}
	}
	return en
}

func (e *Engine) hostEntity(h *v1.HostEndpoint) *entity {
	s := &h.Spec
	en := newEntity(h.Metadata.Labels)
	en.kind = kindHost
	en.name = h.Metadata.Name
	en.addrs = hostPrefixes(s.ExpectedIPs)
	for _, p := range s.Profiles {
		if !slices.Contains(en.profiles, p) {
			en.profiles = append(en.profiles, e.intern(p))
		}
	}
	for _, p := range s.Ports {
		if n, ok := p.Protocol.Number(); ok && p.Name != "" {
			en.ports = append(en.ports, namedPort{e.intern(p.Name), n, p.Port})
		}
	}
	if s.Node == e.node {
		en.local = &localInfo{iface: s.InterfaceName}
	}
	return en
}

func (e *Engine) networkSetEntity(kind entityKind, ns, name string, labels map[string]string, nets []string) *entity {
	en := newEntity(labels)
	en.kind = kind
	en.ns = e.intern(ns)
	en.name = name
	en.addrs = hostPrefixes(nets)
	return en
}

// sameButLabels reports whether two versions of an entity differ at most in
// their own labels (and the details of a local endpoint), so that only the
// sets whose selectors read a changed label can change.
func sameButLabels(a, b *entity) bool {
	return a.kind == b.kind && a.ns == b.ns && a.orch == b.orch && a.sa == b.sa &&
		(a.local == nil) == (b.local == nil) &&
		slices.Equal(a.profiles, b.profiles) && slices.Equal(a.addrs, b.addrs) && slices.Equal(a.ports, b.ports)
}

// changedLabelKeys returns the keys of the own labels that differ between
// two versions of an entity.
func changedLabelKeys(a, b *entity) []string {
	var keys []string
	i, j := 0, 0
	for i < len(a.labels) || j < len(b.labels) {
		switch {
		case j == len(b.labels):
			keys = append(keys, a.labels[i].key.Value())
			i++
		case i == len(a.labels):
			keys = append(keys, b.labels[j].key.Value())
			j++
		default:
			ka, kb := a.labels[i].key.Value(), b.labels[j].key.Value()
			switch c := cmp.Compare(ka, kb); {
			case c < 0:
				keys = append(keys, ka)
				i++
			case c > 0:
				keys = append(keys, kb)
				j++
			default:
				if a.labels[i].value != b.labels[j].value {
					keys = append(keys, ka)
				}
				i++
				j++
			}
		}
	}
	return keys
}

// changedMapKeys returns the keys whose values differ between two maps.
func changedMapKeys(a, b map[string]string) []string {
	var keys []string
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
