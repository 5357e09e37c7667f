package v1

import (
	"reflect"
	"sort"
	"strings"
)

// KindInfo describes one kind of user resource.
type KindInfo struct {
	// Kind is the kind's name, as in manifests ("NetworkPolicy").
	Kind string
	// Plural is the lower-case plural ("networkpolicies").
	Plural string
	// ShortNames are further lower-case names the CLI accepts.
	ShortNames []string
	// Namespaced says whether objects of the kind live in a namespace.
	Namespaced bool
	// New returns a new, empty object of the kind with its TypeMeta set.
	New func() Object
}

var kinds = []KindInfo{
	kindInfo[BGPConfiguration]("BGPConfiguration", "bgpconfigurations", false, "bgpconfig", "bgpconfigs"),
	kindInfo[BGPPeer]("BGPPeer", "bgppeers", false, "bgpp", "bgpps", "bp", "bps"),
	kindInfo[Configuration]("Configuration", "configurations", false,
		"config", "configs", "felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"),
	kindInfo[GlobalNetworkPolicy]("GlobalNetworkPolicy", "globalnetworkpolicies", false, "gnp", "gnps"),
	kindInfo[GlobalNetworkSet]("GlobalNetworkSet", "globalnetworksets", false, "gns", "gnset", "gnsets"),
	kindInfo[HostEndpoint]("HostEndpoint", "hostendpoints", false, "hep", "heps"),
	kindInfo[IPAMConfiguration]("IPAMConfiguration", "ipamconfigurations", false, "ipamconfig", "ipamconfigs"),
	kindInfo[IPPool]("IPPool", "ippools", false, "ipp", "ipps", "pool", "pools"),
	kindInfo[Namespace]("Namespace", "namespaces", false, "ns"),
	kindInfo[NetworkPolicy]("NetworkPolicy", "networkpolicies", true, "netpol", "netpols", "np", "nps", "pol", "pols"),
	kindInfo[NetworkSet]("NetworkSet", "networksets", true, "netset", "netsets"),
	kindInfo[Node]("Node", "nodes", false, "no"),
	kindInfo[Profile]("Profile", "profiles", false, "pro", "pros"),
	kindInfo[Tier]("Tier", "tiers", false),
	kindInfo[WorkloadEndpoint]("WorkloadEndpoint", "workloadendpoints", true, "wep", "weps"),
}

// kindByType maps the struct type of each kind to its KindInfo.
var kindByType = func() map[reflect.Type]KindInfo {
	m := make(map[reflect.Type]KindInfo, len(kinds))
	for _, k := range kinds {
		m[reflect.TypeOf(k.New()).Elem()] = k
	}
	return m
}()

// object is the constraint that kindInfo needs: a pointer to a kind's
// struct is an Object.
type object[T any] interface {
	*T
	Object
}

func kindInfo[T any, P object[T]](kind, plural string, namespaced bool, short ...string) KindInfo {
	return KindInfo{
		Kind: kind, Plural: plural, ShortNames: short, Namespaced: namespaced,
		New: func() Object {
			o := P(new(T))
			*o.GetTypeMeta() = TypeMeta{APIVersion: APIVersion, Kind: kind}
			return o
		},
	}
}

// Kinds returns every kind of user resource, sorted by Kind.
func Kinds() []KindInfo {
	out := make([]KindInfo, len(kinds))
	copy(out, kinds)
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// LookupKind finds a kind by its Kind, its plural or one of its short
// names, ignoring case.
func LookupKind(name string) (KindInfo, bool) {
	for _, k := range kinds {
		if strings.EqualFold(name, k.Kind) || strings.EqualFold(name, k.Plural) {
			return k, true
		}
		for _, s := range k.ShortNames {
			if strings.EqualFold(name, s) {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// KindOf returns the KindInfo of obj's type, whatever its TypeMeta says.
func KindOf(obj Object) (KindInfo, bool) {
	t := reflect.TypeOf(obj)
	if t == nil || t.Kind() != reflect.Pointer {
		return KindInfo{}, false
	}
	k, ok := kindByType[t.Elem()]
	return k, ok
}

// lookupExactKind finds a kind by its exact Kind, as manifests spell it.
func lookupExactKind(kind string) (KindInfo, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// GetObjectMeta returns the object's metadata.
func (o *BGPConfiguration) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *BGPPeer) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *Configuration) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *GlobalNetworkPolicy) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *GlobalNetworkSet) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *HostEndpoint) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *IPAMConfiguration) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *IPPool) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *Namespace) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *NetworkPolicy) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *NetworkSet) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *Node) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *Profile) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *Tier) GetObjectMeta() *ObjectMeta { return &o.Metadata }

// GetObjectMeta returns the object's metadata.
func (o *WorkloadEndpoint) GetObjectMeta() *ObjectMeta { return &o.Metadata }
