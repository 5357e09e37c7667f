package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// snapshot is everything IPAM's checks look at, read at one revision.
type snapshot struct {
	rev        int64
	pools      []*pool
	nodes      map[string]bool
	blocks     []snapBlock // sorted by name
	affinities []affinityEntry
	affByKey   map[string]*affinityEntry // "node/block name"
	handles    map[string]snapHandle
	endpoints  *endpointIndex
	bad        []Finding // objects that do not decode
}

type snapBlock struct {
	kv datastore.KV
	b  *block.Block
}

type snapHandle struct {
	kv datastore.KV
	h  *Handle
}

// endpointIndex answers "does a workload endpoint use this allocation".
type endpointIndex struct {
	byAddr map[netip.Addr][]string // addr → "namespace/name" of the endpoints listing it
	names  map[string]bool         // "namespace/name" of every endpoint
}

// uses reports whether an endpoint uses the allocation: one lists its
// address, or the endpoint its attributes name exists.
func (ix *endpointIndex) uses(al block.Allocation) bool {
	if len(ix.byAddr[al.Addr]) > 0 {
		return true
	}
	ns, name := al.Attribute.Secondary[AttrNamespace], al.Attribute.Secondary[AttrEndpoint]
	return name != "" && ix.names[ns+"/"+name]
}

// readSnapshot reads the whole Store in one List, so that blocks,
// handles, affinities and endpoints are consistent with each other.
func readSnapshot(ctx context.Context, s datastore.Store) (*snapshot, error) {
	kvs, rev, err := s.List(ctx, datastore.Prefix{})
	if err != nil {
		return nil, fmt.Errorf("reading the datastore: %w", err)
	}
	return parseSnapshot(kvs, rev), nil
}

func parseSnapshot(kvs []datastore.KV, rev int64) *snapshot {
	snap := &snapshot{
		rev:       rev,
		nodes:     map[string]bool{},
		handles:   map[string]snapHandle{},
		endpoints: &endpointIndex{byAddr: map[netip.Addr][]string{}, names: map[string]bool{}},
	}
	var poolKVs, wepKVs []datastore.KV
	for _, kv := range kvs {
		k := kv.Key
		switch {
		case isKind(k, "IPPool"):
			poolKVs = append(poolKVs, kv)
		case isKind(k, "Node"):
			snap.nodes[k.Name] = true
		case isKind(k, "WorkloadEndpoint"):
			wepKVs = append(wepKVs, kv)
		case isKind(k, KindBlock):
			b, err := decodeBlock(kv)
			if err != nil {
				snap.bad = append(snap.bad, Finding{Block: k.Name, Detail: err.Error()})
				continue
			}
			if BlockName(b.CIDR) != k.Name {
				snap.bad = append(snap.bad, Finding{Block: k.Name, Detail: fmt.Sprintf("block %s is stored under the name %q", b.CIDR, k.Name)})
				continue
			}
			snap.blocks = append(snap.blocks, snapBlock{kv: kv, b: b})
		case isKind(k, KindAffinity):
			af, err := decodeAffinity(kv)
			if err != nil {
				snap.bad = append(snap.bad, Finding{Block: k.Name, Detail: err.Error()})
				continue
			}
			snap.affinities = append(snap.affinities, affinityEntry{kv: kv, a: af})
		case isKind(k, KindHandle):
			h, err := decodeHandle(kv)
			if err != nil {
				snap.bad = append(snap.bad, Finding{Handle: k.Name, Detail: err.Error()})
				continue
			}
			snap.handles[k.Name] = snapHandle{kv: kv, h: h}
		}
	}
	pools, err := poolsOf(poolKVs)
	if err != nil {
		snap.bad = append(snap.bad, Finding{Detail: err.Error()})
	}
	snap.pools = pools
	ix, bad := indexEndpoints(wepKVs)
	snap.endpoints = ix
	snap.bad = append(snap.bad, bad...)
	slices.SortFunc(snap.blocks, func(a, b snapBlock) int { return strings.Compare(a.kv.Key.Name, b.kv.Key.Name) })
	snap.affByKey = make(map[string]*affinityEntry, len(snap.affinities))
	for i := range snap.affinities {
		af := &snap.affinities[i]
		snap.affByKey[af.kv.Key.Namespace+"/"+af.kv.Key.Name] = af
	}
	return snap
}

// indexEndpoints indexes workload endpoints by address and by name.
func indexEndpoints(kvs []datastore.KV) (*endpointIndex, []Finding) {
	ix := &endpointIndex{byAddr: map[netip.Addr][]string{}, names: map[string]bool{}}
	var bad []Finding
	for _, kv := range kvs {
		obj, err := datastore.Decode(kv)
		if err != nil {
			bad = append(bad, Finding{Detail: err.Error()})
			continue
		}
		wep, ok := obj.(*v1.WorkloadEndpoint)
		if !ok {
			continue
		}
		ref := kv.Key.Namespace + "/" + kv.Key.Name
		ix.names[ref] = true
		for _, n := range wep.Spec.IPNetworks {
			addr, err := parseAddrOrPrefix(n)
			if err != nil {
				bad = append(bad, Finding{Detail: fmt.Sprintf("workload endpoint %s: ipNetworks: %v", ref, err)})
				continue
			}
			if !slices.Contains(ix.byAddr[addr], ref) {
				ix.byAddr[addr] = append(ix.byAddr[addr], ref)
			}
		}
	}
	return ix, bad
}

// readEndpoints lists the workload endpoints.
func readEndpoints(ctx context.Context, s datastore.Store) (*endpointIndex, error) {
	kvs, _, err := s.List(ctx, datastore.Prefix{Kind: "WorkloadEndpoint"})
	if err != nil {
		return nil, fmt.Errorf("listing workload endpoints: %w", err)
	}
	ix, _ := indexEndpoints(kvs)
	return ix, nil
}

func parseAddrOrPrefix(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}

// affinityOf returns the affinity of node for block name, if any.
func (snap *snapshot) affinityOf(node, name string) *affinityEntry {
	return snap.affByKey[node+"/"+name]
}

// block returns the block named name, or nil.
func (snap *snapshot) block(name string) *block.Block {
	i, found := slices.BinarySearchFunc(snap.blocks, name, func(sb snapBlock, name string) int {
		return strings.Compare(sb.kv.Key.Name, name)
	})
	if !found {
		return nil
	}
	return snap.blocks[i].b
}
