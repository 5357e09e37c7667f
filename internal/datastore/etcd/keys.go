package etcd

import (
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Root is the etcd key prefix under which Tabby stores everything. The
// "v1" is the version of the key layout, not of the API.
const Root = "/tabby/v1/"

// EncodeKey returns the etcd key of k:
//
//	/tabby/v1/<lower(kind)>/<namespace>/<name>   namespaced
//	/tabby/v1/<lower(kind)>/<name>               cluster-scoped (Namespace "")
//
// Kind must be non-empty, Name must be non-empty, and no part may contain
// '/'.
func EncodeKey(k datastore.Key) (string, error) {
	path, err := k.Path()
	if err != nil {
		return "", err
	}
	return Root + path, nil
}

// EncodePrefix returns the etcd key prefix that p selects; it always ends
// in '/', so kind "policy" does not select kind "policyx", and namespace
// "default" does not select a cluster-scoped object named "default".
func EncodePrefix(p datastore.Prefix) (string, error) {
	path, err := p.Path()
	if err != nil {
		return "", err
	}
	return Root + path, nil
}

// DecodeKey turns an etcd key back into a datastore.Key. Kind comes back
// lower-case, as it is stored.
func DecodeKey(key string) (datastore.Key, error) {
	rest, ok := strings.CutPrefix(key, Root)
	if !ok {
		return datastore.Key{}, fmt.Errorf("etcd key %q is not under %s", key, Root)
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" {
			return datastore.Key{}, fmt.Errorf("etcd key %q has an empty part", key)
		}
	}
	switch len(parts) {
	case 2:
		return datastore.Key{Kind: parts[0], Name: parts[1]}, nil
	case 3:
		return datastore.Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, nil
	}
	return datastore.Key{}, fmt.Errorf("etcd key %q has %d parts after %s, want 2 or 3", key, len(parts), Root)
}
