package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// The Store kinds of IPAM's own objects. Keys read back from a Store may
// have the kind lower-cased; compare with strings.EqualFold.
const (
	// KindBlock is a block.Block, named by BlockName.
	KindBlock = "IPAMBlock"
	// KindAffinity is an Affinity, in the namespace of its node and named
	// by BlockName.
	KindAffinity = "BlockAffinity"
	// KindHandle is a Handle, named by its ID.
	KindHandle = "IPAMHandle"
)

// Secondary attributes that Tabby sets or reads on allocations.
const (
	// AttrNode is the node an address was allocated for; AutoAssign and
	// AssignIP always set it. An address whose AttrNode differs from its
	// block's affinity is borrowed.
	AttrNode = "node"
	// AttrNamespace and AttrEndpoint name the WorkloadEndpoint that uses
	// the address, when the caller knows it. GC and Check treat an
	// allocation as in use if that endpoint exists or if any endpoint
	// lists the address.
	AttrNamespace = "namespace"
	AttrEndpoint  = "endpoint"
)

// AffinityState is the state of a block affinity.
type AffinityState string

// The affinity states.
const (
	// AffinityPending is a claim in progress: the node has announced that
	// it wants the block but has not created it yet.
	AffinityPending AffinityState = "pending"
	// AffinityConfirmed means the block exists and is affine to the node.
	AffinityConfirmed AffinityState = "confirmed"
)

// Affinity records that a node claims (pending) or owns (confirmed) a
// block. A confirmed affinity and the block's Affinity field are written
// in the same transaction, so they agree.
type Affinity struct {
	Node  string        `json:"node"`
	CIDR  netip.Prefix  `json:"cidr"`
	State AffinityState `json:"state"`
}

// Handle lists where a handle's addresses are: how many it holds in each
// block, by block name. It is written in the same transaction as every
// block change that involves the handle, so release by handle reads only
// the blocks listed here.
type Handle struct {
	ID     string         `json:"id"`
	Blocks map[string]int `json:"blocks"`
}

// BlockName returns the Store name of the block cidr: the CIDR with '/'
// replaced by '-' ("10.65.0.0-26", "fd00:10:65::-122").
func BlockName(cidr netip.Prefix) string {
	return strings.Replace(cidr.String(), "/", "-", 1)
}

// ParseBlockName is the inverse of BlockName.
func ParseBlockName(name string) (netip.Prefix, error) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("block name %q: no '-'", name)
	}
	p, err := netip.ParsePrefix(name[:i] + "/" + name[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("block name %q: %w", name, err)
	}
	return p, nil
}

func blockKey(cidr netip.Prefix) datastore.Key {
	return datastore.Key{Kind: KindBlock, Name: BlockName(cidr)}
}

func blockKeyByName(name string) datastore.Key {
	return datastore.Key{Kind: KindBlock, Name: name}
}

func affinityKey(node string, cidr netip.Prefix) datastore.Key {
	return datastore.Key{Kind: KindAffinity, Namespace: node, Name: BlockName(cidr)}
}

func handleKey(id string) datastore.Key {
	return datastore.Key{Kind: KindHandle, Name: id}
}

// isKind reports whether a key read back from a Store is of kind.
func isKind(k datastore.Key, kind string) bool { return strings.EqualFold(k.Kind, kind) }

// checkName rejects names that cannot be a Store key part.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case strings.Contains(s, "/"):
		return fmt.Errorf("%s %q contains '/'", what, s)
	}
	return nil
}

func decodeBlock(kv datastore.KV) (*block.Block, error) {
	var b block.Block
	if err := json.Unmarshal(kv.Value, &b); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	return &b, nil
}

// decodeSummary decodes the part of a stored block that choosing a block
// needs: its CIDR, affinity and reuse queue. It skips the allocations
// and their attributes, which are most of the work of decoding a block,
// and does not validate. The result is a partial Block: use only its
// CIDR, Affinity, Unallocated and Available.
func decodeSummary(kv datastore.KV) (*block.Block, error) {
	var s struct {
		CIDR        netip.Prefix `json:"cidr"`
		Affinity    string       `json:"affinity"`
		Unallocated []block.Free `json:"unallocated"`
	}
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	return &block.Block{CIDR: s.CIDR, Affinity: s.Affinity, Unallocated: s.Unallocated}, nil
}

func decodeAffinity(kv datastore.KV) (*Affinity, error) {
	var a Affinity
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	return &a, nil
}

func decodeHandle(kv datastore.KV) (*Handle, error) {
	var h Handle
	if err := json.Unmarshal(kv.Value, &h); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	if h.Blocks == nil {
		h.Blocks = map[string]int{}
	}
	return &h, nil
}

// encode marshals an IPAM object.
func encode(key datastore.Key, v any) (datastore.KV, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return datastore.KV{}, fmt.Errorf("encoding %s: %w", key, err)
	}
	return datastore.KV{Key: key, Value: data}, nil
}
