package policy

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// Config is the engine's configuration. Everything else comes from the
// datastore objects the engine is fed.
type Config struct {
	// Node is the name of the node whose endpoints the engine compiles
	// rules for (WorkloadEndpoint and HostEndpoint spec.node).
	Node string
}

// Validate reports what is wrong with c.
func (c *Config) Validate() error {
	if c.Node == "" {
		return errors.New("policy engine: node name is required")
	}
	return nil
}

// Engine compiles the ruleset of one node, incrementally. It is not safe
// for concurrent use: feed it from one goroutine (the agent's syncer).
//
// OnUpdate and OnDelete take datastore objects in any order; they are
// idempotent (the same object twice changes nothing). Flush returns what
// changed since the previous Flush (or Ruleset), and Ruleset the whole
// state.
type Engine struct {
	node string

	tiers      map[string]*tier
	policies   map[PolicyID]*policy
	profiles   map[string]*profile // from Profile resources
	synthetic  map[string]*profile // kns.<ns> profiles the engine made
	namespaces map[string]*namespace
	local      map[EndpointID]*localEndpoint
	globalCfg  *v1.Configuration
	nodeCfg    *v1.Configuration
	failsafe   Failsafe
	strings    map[string]string // interned strings

	// Indexes of the policies by what they select.
	globalPolicies policyIndex
	nsPolicies     map[string]*policyIndex
	polCands       []*policy // scratch list of candidate policies

	// Local endpoints' use of profiles, by name (listed by how many), and
	// the profiles in use that exist.
	profileRefs    map[string]int
	activeProfiles map[string]*profile

	// Active sets and their indexes.
	sets     map[SetID]*ipSet
	byKey    map[string]*keyIndex                      // label key → sets whose selector reads it
	byNSKey  map[string]map[*ipSet]struct{}            // namespace label key → scopeNamespaces sets
	nsSets   map[string]map[*ipSet]struct{}            // namespace → its scopeNamespace sets without requirement
	wideSets map[*ipSet]struct{}                       // sets of the other scopes without requirement
	reqSets  map[string]map[string]map[*ipSet]struct{} // required key → value → sets
	reqKeys  map[string]int                            // keys of reqSets, with the number of sets
	epoch    uint64                                    // marks sets visited in one pass
	cands    []*ipSet                                  // scratch list of candidate sets

	// The number of Profile resources whose labelsToApply set each key
	// (the postings cannot answer for those keys).
	profileKeys map[string]int

	// Flush bookkeeping: what changed, and what was last emitted.
	dirtyEndpoints map[EndpointID]struct{}
	dirtyPolicies  map[PolicyID]struct{}
	dirtyProfiles  map[string]struct{}
	dirtySets      map[*ipSet]struct{}
	droppedSets    map[SetID]struct{}
	dirtyFailsafe  bool
	out            emitted

	// Scratch label views, so that evaluation does not allocate.
	viewOld, viewNew, viewPol entityView
	nsNew, nsPol              nsView
}

// emitted is the state the last Flush reported.
type emitted struct {
	endpoints map[EndpointID]*EndpointRules
	policies  map[PolicyID]*CompiledPolicy
	profiles  map[ProfileID]*CompiledProfile
	sets      map[SetID]bool // ID → HasCIDRs as emitted
	failsafe  Failsafe
}

// tier is a Tier resource.
type tier struct {
	order  float64
	action v1.Action
}

// namespace holds a namespace's labels and its namespaced entities. The
// bucket "" holds the cluster-scoped entities.
type namespace struct {
	name     string
	exists   bool // a Namespace resource exists
	labels   map[string]string
	entities map[entityKey]*entity
	// postings: own label key → value → the entities that have it.
	postings map[string]map[string]map[*entity]struct{}
}

// keyIndex holds the active sets whose selector reads one label key:
// namespace-scoped sets by namespace, the others together.
type keyIndex struct {
	byNS map[string]map[*ipSet]struct{}
	wide map[*ipSet]struct{}
}

// localEndpoint is one of the node's own endpoints.
type localEndpoint struct {
	id       EndpointID
	en       *entity
	selected map[PolicyID]*policy
}

// NewEngine returns an engine for cfg.Node with no objects.
func NewEngine(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		node:           cfg.Node,
		tiers:          map[string]*tier{},
		policies:       map[PolicyID]*policy{},
		nsPolicies:     map[string]*policyIndex{},
		profiles:       map[string]*profile{},
		synthetic:      map[string]*profile{},
		namespaces:     map[string]*namespace{},
		local:          map[EndpointID]*localEndpoint{},
		strings:        map[string]string{},
		profileRefs:    map[string]int{},
		activeProfiles: map[string]*profile{},
		sets:           map[SetID]*ipSet{},
		byKey:          map[string]*keyIndex{},
		byNSKey:        map[string]map[*ipSet]struct{}{},
		nsSets:         map[string]map[*ipSet]struct{}{},
		wideSets:       map[*ipSet]struct{}{},
		reqSets:        map[string]map[string]map[*ipSet]struct{}{},
		reqKeys:        map[string]int{},
		profileKeys:    map[string]int{},
		dirtyEndpoints: map[EndpointID]struct{}{},
		dirtyPolicies:  map[PolicyID]struct{}{},
		dirtyProfiles:  map[string]struct{}{},
		dirtySets:      map[*ipSet]struct{}{},
		droppedSets:    map[SetID]struct{}{},
		out: emitted{
			endpoints: map[EndpointID]*EndpointRules{},
			policies:  map[PolicyID]*CompiledPolicy{},
			profiles:  map[ProfileID]*CompiledProfile{},
			sets:      map[SetID]bool{},
		},
	}
	e.viewOld.e, e.viewNew.e, e.viewPol.e = e, e, e
	e.failsafe = failsafeFrom(v1.EffectiveConfiguration(nil, nil))
	e.dirtyFailsafe = true // the first Flush reports the default failsafe ports
	return e, nil
}

// Node returns the node the engine compiles for.
func (e *Engine) Node() string { return e.node }

// OnUpdate takes a created or updated object. Objects of kinds that do not
// affect policy (IP pools, BGP settings, nodes, …) are ignored. The engine
// keeps no reference to obj (except a Profile's labelsToApply map) and
// does not modify it. Idempotent.
func (e *Engine) OnUpdate(obj v1.Object) {
	switch o := obj.(type) {
	case *v1.WorkloadEndpoint:
		e.upsertEntity(e.workloadEntity(o))
	case *v1.HostEndpoint:
		e.upsertEntity(e.hostEntity(o))
	case *v1.NetworkSet:
		e.upsertEntity(e.networkSetEntity(kindNetworkSet, o.Metadata.Namespace, o.Metadata.Name, o.Metadata.Labels, o.Spec.Nets))
	case *v1.GlobalNetworkSet:
		e.upsertEntity(e.networkSetEntity(kindGlobalNetworkSet, "", o.Metadata.Name, o.Metadata.Labels, o.Spec.Nets))
	case *v1.NetworkPolicy:
		e.upsertPolicy(policyFromNetworkPolicy(o))
	case *v1.GlobalNetworkPolicy:
		e.upsertPolicy(policyFromGlobalNetworkPolicy(o))
	case *v1.Profile:
		e.upsertProfile(profileFrom(o))
	case *v1.Tier:
		t := &tier{order: math.Inf(1), action: v1.Deny}
		if o.Spec.Order != nil {
			t.order = *o.Spec.Order
		} else if o.Metadata.Name == v1.DefaultTierName {
			t.order = v1.DefaultTierOrder
		}
		if o.Spec.DefaultAction == v1.Pass {
			t.action = v1.Pass
		}
		e.setTier(o.Metadata.Name, t)
	case *v1.Namespace:
		e.setNamespace(o.Metadata.Name, true, o.Metadata.Labels)
	case *v1.Configuration:
		e.setConfiguration(o.Metadata.Name, o)
	}
}

// OnDelete takes the deletion of the object of the given kind (as in
// manifests: "WorkloadEndpoint", "NetworkPolicy", …), namespace (for
// namespaced kinds) and name. Deleting what does not exist does nothing.
func (e *Engine) OnDelete(kind, namespace, name string) {
	switch kind {
	case "WorkloadEndpoint":
		e.deleteEntity(namespace, entityKey{kindWorkload, name})
	case "HostEndpoint":
		e.deleteEntity("", entityKey{kindHost, name})
	case "NetworkSet":
		e.deleteEntity(namespace, entityKey{kindNetworkSet, name})
	case "GlobalNetworkSet":
		e.deleteEntity("", entityKey{kindGlobalNetworkSet, name})
	case "NetworkPolicy":
		e.deletePolicy(NetworkPolicyID(namespace, name))
	case "GlobalNetworkPolicy":
		e.deletePolicy(GlobalNetworkPolicyID(name))
	case "Profile":
		e.deleteProfile(name)
	case "Tier":
		e.setTier(name, nil)
	case "Namespace":
		e.setNamespace(name, false, nil)
	case "Configuration":
		e.setConfiguration(name, nil)
	}
}

// OnDeleteObject is OnDelete for the kind, namespace and name of obj.
func (e *Engine) OnDeleteObject(obj v1.Object) {
	k, ok := v1.KindOf(obj)
	if !ok {
		return
	}
	m := obj.GetObjectMeta()
	e.OnDelete(k.Kind, m.Namespace, m.Name)
}

// Compile returns the ruleset of cfg.Node for objs, compiled from scratch.
func Compile(cfg Config, objs []v1.Object) (*Ruleset, error) {
	e, err := NewEngine(cfg)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		e.OnUpdate(o)
	}
	return e.Ruleset(), nil
}

// setConfiguration records the "default" or "node.<this node>"
// Configuration (nil: deleted) and recomputes the failsafe ports.
func (e *Engine) setConfiguration(name string, c *v1.Configuration) {
	switch {
	case name == "default":
		e.globalCfg = c
	case name == "node."+e.node:
		e.nodeCfg = c
	default:
		return
	}
	fs := failsafeFrom(v1.EffectiveConfiguration(e.globalCfg, e.nodeCfg))
	if !reflect.DeepEqual(fs, e.failsafe) {
		e.failsafe = fs
		e.dirtyFailsafe = true
	}
}

func failsafeFrom(s v1.ConfigurationSpec) Failsafe {
	conv := func(ports *[]v1.ProtoPort) []FailsafeRule {
		if ports == nil {
			return nil
		}
		var out []FailsafeRule
		for _, pp := range *ports {
			n, ok := v1.Protocol(strings.ToUpper(pp.Protocol)).Number()
			if !ok || pp.Port == 0 {
				continue
			}
			r := FailsafeRule{Protocol: n, Port: pp.Port}
			if pp.Net != "" {
				p, err := parseNet(pp.Net)
				if err != nil {
					continue
				}
				r.Net = p
			}
			out = append(out, r)
		}
		return out
	}
	return Failsafe{Inbound: conv(s.FailsafeInboundHostPorts), Outbound: conv(s.FailsafeOutboundHostPorts)}
}

// tierInfo returns a tier's order and default action. The default tier
// exists without a resource; a tier that a policy names but that does not
// exist sorts last and denies.
func (e *Engine) tierInfo(name string) (float64, v1.Action) {
	if t := e.tiers[name]; t != nil {
		return t.order, t.action
	}
	if name == v1.DefaultTierName {
		return v1.DefaultTierOrder, v1.Deny
	}
	return math.Inf(1), v1.Deny
}

func (e *Engine) setTier(name string, t *tier) {
	old := e.tiers[name]
	if t == nil {
		delete(e.tiers, name)
	} else {
		e.tiers[name] = t
	}
	if old != nil && t != nil && *old == *t {
		return
	}
	for _, ep := range e.local {
		for _, p := range ep.selected {
			if p.tier == name {
				e.dirtyEndpoints[ep.id] = struct{}{}
				break
			}
		}
	}
}

// profileLabels returns the labelsToApply of a profile (nil if it does not
// exist or is synthetic).
func (e *Engine) profileLabels(name string) map[string]string {
	if p := e.profiles[name]; p != nil {
		return p.labels
	}
	return nil
}

// resolveProfile returns the profile an endpoint's profile name refers to:
// a Profile resource, else a synthetic kns.<ns> profile, else nil.
func (e *Engine) resolveProfile(name string) *profile {
	if p := e.profiles[name]; p != nil {
		return p
	}
	if strings.HasPrefix(name, K8sNamespaceProfilePrefix) {
		p := e.synthetic[name]
		if p == nil {
			p = syntheticProfile(name)
			e.synthetic[name] = p
		}
		return p
	}
	return nil
}

// String describes the engine's size, for logs.
func (e *Engine) String() string {
	n := 0
	for _, b := range e.namespaces {
		n += len(b.entities)
	}
	return fmt.Sprintf("policy engine for %s: %d entities, %d local endpoints, %d policies (%d active), %d active sets",
		e.node, n, len(e.local), len(e.policies), e.activePolicyCount(), len(e.sets))
}

func (e *Engine) activePolicyCount() int {
	n := 0
	for _, p := range e.policies {
		if p.refs > 0 {
			n++
		}
	}
	return n
}
