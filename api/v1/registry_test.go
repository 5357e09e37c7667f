package v1

import (
	"sort"
	"testing"
)

func TestKindsSortedAndNew(t *testing.T) {
	ks := Kinds()
	if !sort.SliceIsSorted(ks, func(i, j int) bool { return ks[i].Kind < ks[j].Kind }) {
		t.Errorf("Kinds() is not sorted by Kind")
	}
	if len(ks) != 15 {
		t.Errorf("Kinds() has %d kinds, want 15", len(ks))
	}
	for _, k := range ks {
		o := k.New()
		if tm := o.GetTypeMeta(); tm.APIVersion != APIVersion || tm.Kind != k.Kind {
			t.Errorf("%s: New() has TypeMeta %+v", k.Kind, *tm)
		}
		got, ok := KindOf(o)
		if !ok || got.Kind != k.Kind {
			t.Errorf("KindOf(%s.New()) = %q, %v", k.Kind, got.Kind, ok)
		}
	}
}

func TestLookupKind(t *testing.T) {
	for name, want := range map[string]string{
		"networkpolicy":       "NetworkPolicy",
		"NetworkPolicies":     "NetworkPolicy",
		"netpol":              "NetworkPolicy",
		"np":                  "NetworkPolicy",
		"gnp":                 "GlobalNetworkPolicy",
		"GlobalNetworkPolicy": "GlobalNetworkPolicy",
		"pool":                "IPPool",
		"ippool":              "IPPool",
		"ippools":             "IPPool",
		"wep":                 "WorkloadEndpoint",
		"hep":                 "HostEndpoint",
		"bgppeer":             "BGPPeer",
		"nodes":               "Node",
		"config":              "Configuration",
		"configuration":       "Configuration",
		"felixconfiguration":  "Configuration",
		"ipamconfig":          "IPAMConfiguration",
		"bgpconfig":           "BGPConfiguration",
		"tier":                "Tier",
		"ns":                  "Namespace",
		"gns":                 "GlobalNetworkSet",
		"networksets":         "NetworkSet",
		"profile":             "Profile",
	} {
		k, ok := LookupKind(name)
		if !ok || k.Kind != want {
			t.Errorf("LookupKind(%q) = %q, %v; want %q", name, k.Kind, ok, want)
		}
	}
	for _, name := range []string{"", "policy", "ipamblock", "blockaffinity", "kubecontrollersconfiguration"} {
		if k, ok := LookupKind(name); ok {
			t.Errorf("LookupKind(%q) = %q, want not found", name, k.Kind)
		}
	}
	// Short names must not be ambiguous.
	seen := map[string]string{}
	for _, k := range Kinds() {
		for _, n := range append([]string{k.Kind, k.Plural}, k.ShortNames...) {
			if prev, dup := seen[n]; dup {
				t.Errorf("name %q is used by %s and %s", n, prev, k.Kind)
			}
			seen[n] = k.Kind
		}
	}
}

// notAKind implements Object but is no registered kind.
type notAKind struct {
	TypeMeta
	Metadata ObjectMeta
}

func (o *notAKind) GetObjectMeta() *ObjectMeta { return &o.Metadata }

func TestKindOfForeignType(t *testing.T) {
	if _, ok := KindOf(&notAKind{}); ok {
		t.Errorf("KindOf(notAKind) found a kind")
	}
	if err := Validate(&notAKind{}); err == nil {
		t.Errorf("Validate(notAKind) succeeded")
	}
	if _, err := ToYAML(&notAKind{}); err == nil {
		t.Errorf("ToYAML(notAKind) succeeded")
	}
	if _, ok := KindOf(nil); ok {
		t.Errorf("KindOf(nil) found a kind")
	}
}
