package v1

import (
	"errors"
	"fmt"
)

// calicoAPIVersion is Calico's resource API, whose kinds Tabby shares.
const calicoAPIVersion = "projectcalico.org/v3"

// calicoKinds are the projectcalico.org/v3 kinds that decode into the
// Tabby kind of the same name.
var calicoKinds = map[string]bool{
	"BGPConfiguration":    true,
	"BGPPeer":             true,
	"GlobalNetworkPolicy": true,
	"GlobalNetworkSet":    true,
	"HostEndpoint":        true,
	"IPAMConfiguration":   true,
	"IPPool":              true,
	"NetworkPolicy":       true,
	"NetworkSet":          true,
	"Node":                true,
	"Profile":             true,
	"Tier":                true,
	"WorkloadEndpoint":    true,
}

const calicoUnsupportedField = "field is not supported by Tabby"

// decodeCalico decodes a projectcalico.org/v3 object. The shared kinds
// have the same fields; Calico fields that Tabby does not have are
// errors, never dropped. Calico's status (of Node) is ignored, as Tabby
// keeps none. FelixConfiguration becomes a Configuration.
func decodeCalico(kind string, m map[string]any) (Object, fieldErrors, error) {
	m = withoutKey(m, "status")
	switch {
	case calicoKinds[kind]:
		k, _ := lookupExactKind(kind)
		obj := k.New()
		fes, err := decodeStrict(obj, m, calicoUnsupportedField)
		return obj, fes, err
	case kind == "FelixConfiguration":
		return decodeFelixConfiguration(m)
	}
	return nil, nil, fmt.Errorf("%s kind %s is not supported by Tabby", calicoAPIVersion, kind)
}

// decodeFelixConfiguration decodes a FelixConfiguration as a
// Configuration. Its fields have the same names, except that Calico's
// iptablesRefreshInterval becomes nftablesRefreshInterval. Every other
// Felix setting is rejected by name.
func decodeFelixConfiguration(m map[string]any) (Object, fieldErrors, error) {
	if spec, ok := m["spec"].(map[string]any); ok {
		if v, ok := spec["iptablesRefreshInterval"]; ok {
			if _, both := spec["nftablesRefreshInterval"]; both {
				return nil, nil, errors.New("spec: iptablesRefreshInterval and nftablesRefreshInterval cannot both be set (Tabby uses nftables only)")
			}
			spec = withoutKey(spec, "iptablesRefreshInterval")
			spec["nftablesRefreshInterval"] = v
			m["spec"] = spec
		}
	}
	m["kind"] = "Configuration"
	obj := &Configuration{}
	fes, err := decodeStrict(obj, m, "FelixConfiguration "+calicoUnsupportedField)
	return obj, fes, err
}

// withoutKey returns a copy of m without key.
func withoutKey(m map[string]any, key string) map[string]any {
	if _, ok := m[key]; !ok {
		return m
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}
