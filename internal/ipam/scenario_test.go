package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memory"
	"github.com/tabbynet/tabby/internal/ipam/scenario"
)

// TestScenarios runs testdata/*.txt against the in-memory store. Each
// file starts with an empty store at time 1000. Commands:
//
//	apply                                   apply the YAML manifests of the input
//	pool name=N cidr=P [blockSize=B] [disabled] [selector=S] [uses=(U,…)]
//	node name=N [labels=(k:v,…)]            create or update a Node
//	config [strict] [maxBlocks=N] [noauto] [cooldown=S]
//	time now=S | advance=S                  set or advance the clock
//	assign node=N handle=H [v4=K] [v6=K] [pools4=(…)] [pools6=(…)] [use=U] [endpoint=NS/NAME]
//	assign-ip node=N handle=H ip=A [endpoint=NS/NAME]
//	release ips=(A,…) | handle=H
//	ips handle=H                            IPsByHandle
//	wep name=NS/NAME node=N ips=(A,…)       create a workload endpoint
//	delete kind=K name=N [ns=NS]            delete any object
//	release-node name=N                     ReleaseNodeAffinities
//	crash after=create|update|delete|txn kind=K
//	                                        the next such write is applied, then fails
//	gc                                      one GC run (grace period 60s)
//	check                                   the Check report
//	show                                    every IPAM object
//	usage                                   ReadUsage, in short
//	pool-in-use name=N                      PoolInUse
//
// Each simulated node has its own Allocator, as separate hosts would.
func TestScenarios(t *testing.T) {
	scenario.Run(t, "testdata/*.txt", func(t *testing.T) func(*testing.T, *scenario.Command) string {
		h := newHarness(t)
		return h.run
	})
}

type harness struct {
	ctx    context.Context
	store  *faultStore
	client *datastore.Client
	now    time.Time
	allocs map[string]*Allocator
	gc     *GC
}

func newHarness(t *testing.T) *harness {
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	fs := &faultStore{Store: mem}
	h := &harness{ctx: context.Background(), store: fs, client: datastore.NewClient(fs), now: time.Unix(1000, 0), allocs: map[string]*Allocator{}}
	gc, err := NewGC(fs, GCConfig{LeakGracePeriod: time.Minute, Now: h.clock, Allocator: Config{EnvTTL: -1}})
	if err != nil {
		t.Fatal(err)
	}
	h.gc = gc
	return h
}

func (h *harness) clock() time.Time { return h.now }

// alloc returns the Allocator of a node.
func (h *harness) alloc(t *testing.T, node string) *Allocator {
	if a, ok := h.allocs[node]; ok {
		return a
	}
	a, err := New(h.store, Config{EnvTTL: -1, Now: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.allocs[node] = a
	return a
}

func (h *harness) run(t *testing.T, c *scenario.Command) string {
	ctx := h.ctx
	switch c.Name {
	case "apply":
		objs, err := v1.DecodeManifests(c.Pos, []byte(c.Input))
		if err != nil {
			return "error: " + err.Error()
		}
		return h.apply(objs...)
	case "pool":
		p := &v1.IPPool{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "IPPool"}}
		p.Metadata.Name = c.String("name", "")
		p.Spec = v1.IPPoolSpec{CIDR: c.String("cidr", ""), BlockSize: c.Int(t, "blockSize", 0), Disabled: c.Has("disabled"),
			NodeSelector: strings.ReplaceAll(c.String("selector", ""), "_", " ")}
		for _, u := range c.Values("uses") {
			p.Spec.AllowedUses = append(p.Spec.AllowedUses, v1.IPPoolAllowedUse(u))
		}
		return h.apply(p)
	case "node":
		n := &v1.Node{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Node"}}
		n.Metadata.Name = c.String("name", "")
		n.Metadata.Labels = pairs(c.Values("labels"))
		return h.apply(n)
	case "config":
		cfg := &v1.IPAMConfiguration{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "IPAMConfiguration"}}
		cfg.Metadata.Name = "default"
		auto := !c.Has("noauto")
		cfg.Spec = v1.IPAMConfigurationSpec{StrictAffinity: c.Has("strict"), MaxBlocksPerHost: c.Int(t, "maxBlocks", 0),
			AutoAllocateBlocks: &auto, ReleaseCooldownSeconds: c.Int(t, "cooldown", 0)}
		return h.apply(cfg)
	case "time":
		if c.Has("now") {
			h.now = time.Unix(int64(c.Int(t, "now", 0)), 0)
		}
		h.now = h.now.Add(time.Duration(c.Int(t, "advance", 0)) * time.Second)
		return fmt.Sprintf("now %d", h.now.Unix())
	case "assign":
		node := c.String("node", "")
		args := AssignArgs{Node: node, Handle: c.String("handle", ""), Num4: c.Int(t, "v4", 0), Num6: c.Int(t, "v6", 0),
			IPv4Pools: c.Values("pools4"), IPv6Pools: c.Values("pools6"), Use: v1.IPPoolAllowedUse(c.String("use", "")),
			Attrs: endpointAttrs(c.String("endpoint", ""))}
		got, err := h.alloc(t, node).AutoAssign(ctx, args)
		if err != nil {
			return "error: " + err.Error()
		}
		var lines []string
		if len(got.IPv4) > 0 {
			lines = append(lines, "ipv4: "+joinAddrs(got.IPv4))
		}
		if len(got.IPv6) > 0 {
			lines = append(lines, "ipv6: "+joinAddrs(got.IPv6))
		}
		return strings.Join(lines, "\n")
	case "assign-ip":
		node := c.String("node", "")
		err := h.alloc(t, node).AssignIP(ctx, AssignIPArgs{Addr: netip.MustParseAddr(c.String("ip", "")), Node: node,
			Handle: c.String("handle", ""), Attrs: endpointAttrs(c.String("endpoint", ""))})
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "release":
		a := h.alloc(t, "cli")
		var got []netip.Addr
		var err error
		if c.Has("handle") {
			got, err = a.ReleaseHandle(ctx, c.String("handle", ""))
		} else {
			var addrs []netip.Addr
			for _, s := range c.Values("ips") {
				addrs = append(addrs, netip.MustParseAddr(s))
			}
			got, err = a.ReleaseIPs(ctx, addrs...)
		}
		if err != nil {
			return "error: " + err.Error()
		}
		return "released: " + joinAddrs(got)
	case "ips":
		got, err := h.alloc(t, "cli").IPsByHandle(ctx, c.String("handle", ""))
		if err != nil {
			return "error: " + err.Error()
		}
		return joinAddrs(got)
	case "wep":
		ns, name, _ := strings.Cut(c.String("name", ""), "/")
		w := &v1.WorkloadEndpoint{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"}}
		w.Metadata.Namespace, w.Metadata.Name = ns, name
		w.Spec.Node = c.String("node", "")
		w.Spec.Orchestrator, w.Spec.Endpoint = "test", "eth0"
		for _, ip := range c.Values("ips") {
			a := netip.MustParseAddr(ip)
			w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(a, a.BitLen()).String())
		}
		return h.apply(w)
	case "delete":
		_, err := h.store.Delete(ctx, datastore.Key{Kind: c.String("kind", ""), Namespace: c.String("ns", ""), Name: c.String("name", "")}, 0)
		if err != nil {
			return "error: " + err.Error()
		}
		return "deleted"
	case "release-node":
		if err := h.alloc(t, "cli").ReleaseNodeAffinities(ctx, c.String("name", "")); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "crash":
		h.store.arm(c.String("after", ""), c.String("kind", ""))
		return "armed"
	case "gc":
		st, err := h.gc.RunOnce(ctx)
		if err != nil {
			return "error: " + err.Error()
		}
		return st.String()
	case "check":
		r, err := Check(ctx, h.store)
		if err != nil {
			return "error: " + err.Error()
		}
		return formatReport(r)
	case "show":
		return h.show(t)
	case "usage":
		u, err := ReadUsage(ctx, h.store)
		if err != nil {
			return "error: " + err.Error()
		}
		return formatUsage(u)
	case "pool-in-use":
		obj, err := h.client.Get(ctx, mustKind("IPPool"), "", c.String("name", ""))
		if err != nil {
			return "error: " + err.Error()
		}
		inUse, reason, err := PoolInUse(ctx, h.store, obj.(*v1.IPPool))
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("in use: %v %s", inUse, reason)
	}
	t.Fatalf("%s: unknown command %q", c.Pos, c.Name)
	return ""
}

func (h *harness) apply(objs ...v1.Object) string {
	for _, o := range objs {
		v1.SetDefaults(o)
		if err := v1.Validate(o); err != nil {
			return "error: " + err.Error()
		}
	}
	res, err := h.client.Apply(h.ctx, objs, datastore.ApplyOptions{})
	if err != nil {
		return "error: " + err.Error()
	}
	var lines []string
	for _, r := range res {
		m := r.Object.GetObjectMeta()
		lines = append(lines, fmt.Sprintf("%s %s %s", r.Object.GetTypeMeta().Kind, m.Name, r.Action))
	}
	return strings.Join(lines, "\n")
}

func mustKind(k string) v1.KindInfo {
	info, _ := v1.LookupKind(k)
	return info
}

func pairs(vals []string) map[string]string {
	if len(vals) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, kv := range vals {
		k, v, _ := strings.Cut(kv, ":")
		m[k] = v
	}
	return m
}

func endpointAttrs(ref string) map[string]string {
	if ref == "" {
		return nil
	}
	ns, name, _ := strings.Cut(ref, "/")
	return map[string]string{AttrNamespace: ns, AttrEndpoint: name}
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// show prints every IPAM object: blocks with their allocations (an
// address allocated for another node than the block's is marked
// "@node"), affinities and handles.
func (h *harness) show(t *testing.T) string {
	kvs, _, err := h.store.List(h.ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, kv := range kvs {
		switch {
		case isKind(kv.Key, KindBlock):
			b, err := decodeBlock(kv)
			if err != nil {
				t.Fatal(err)
			}
			line := fmt.Sprintf("block %s affinity=%s %d/%d", b.CIDR, orNone(b.Affinity), b.InUse(), b.Size())
			var allocs []string
			for _, al := range b.Allocated() {
				s := al.Addr.String() + "=" + al.Attribute.Handle
				if n := al.Attribute.Secondary[AttrNode]; n != b.Affinity {
					s += "@" + n
				}
				allocs = append(allocs, s)
			}
			if len(allocs) > 0 {
				line += ": " + strings.Join(allocs, " ")
			}
			lines = append(lines, line)
		case isKind(kv.Key, KindAffinity):
			af, err := decodeAffinity(kv)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("affinity %s %s %s", kv.Key.Namespace, af.CIDR, af.State))
		case isKind(kv.Key, KindHandle):
			hd, err := decodeHandle(kv)
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, name := range slices.Sorted(maps.Keys(hd.Blocks)) {
				parts = append(parts, fmt.Sprintf("%s=%d", name, hd.Blocks[name]))
			}
			lines = append(lines, fmt.Sprintf("handle %s: %s", hd.ID, strings.Join(parts, " ")))
		}
	}
	if len(lines) == 0 {
		return "(nothing)"
	}
	return strings.Join(lines, "\n")
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatReport(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "blocks=%d allocated=%d handles=%d endpoints=%d clean=%v", r.Blocks, r.Allocated, r.Handles, r.Endpoints, r.Clean())
	for _, sec := range []struct {
		name string
		fs   []Finding
	}{
		{"leaked", r.Leaked}, {"handles without allocations", r.HandlesWithoutAllocations},
		{"allocations without endpoint", r.AllocationsWithoutEndpoint}, {"duplicates", r.Duplicates},
		{"inconsistent", r.Inconsistent},
	} {
		for _, f := range sec.fs {
			fmt.Fprintf(&b, "\n%s: %s", sec.name, f)
		}
	}
	return b.String()
}

func formatUsage(u *Usage) string {
	var lines []string
	for _, p := range u.Pools {
		lines = append(lines, fmt.Sprintf("pool %s %s /%d disabled=%v capacity=%s blocks=%d in-blocks=%d allocated=%d",
			p.Name, p.CIDR, p.BlockSize, p.Disabled, p.Capacity, p.Blocks, p.InBlocks, p.Allocated))
	}
	for _, n := range u.Nodes {
		lines = append(lines, fmt.Sprintf("node %s blocks=%d pending=%d allocated=%d free=%d borrowed=%d lent=%d",
			n.Node, n.Blocks, n.Pending, n.Allocated, n.Free, n.Borrowed, n.Lent))
	}
	for _, bl := range u.Borrowed {
		lines = append(lines, fmt.Sprintf("borrowed %s block=%s affinity=%s node=%s handle=%s", bl.Addr, bl.Block, orNone(bl.BlockAffinity), bl.Node, bl.Handle))
	}
	return strings.Join(lines, "\n")
}

// faultStore injects crashes: when armed, the next write of the given
// type on the given kind (for txn: the kind of its first operation) is
// applied and then reported as failed, as if the writer died right after
// the write reached the datastore.
type faultStore struct {
	datastore.Store
	mu    sync.Mutex
	after string
	kind  string
}

// errCrash is the error an injected crash returns.
var errCrash = errors.New("injected crash")

func (f *faultStore) arm(after, kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after, f.kind = after, kind
}

func (f *faultStore) hit(after string, k datastore.Key) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.after == after && strings.EqualFold(f.kind, k.Kind) {
		f.after, f.kind = "", ""
		return true
	}
	return false
}

func (f *faultStore) Create(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	out, err := f.Store.Create(ctx, kv)
	if err == nil && f.hit("create", kv.Key) {
		return datastore.KV{}, errCrash
	}
	return out, err
}

func (f *faultStore) Update(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	out, err := f.Store.Update(ctx, kv)
	if err == nil && f.hit("update", kv.Key) {
		return datastore.KV{}, errCrash
	}
	return out, err
}

func (f *faultStore) Delete(ctx context.Context, key datastore.Key, rev int64) (datastore.KV, error) {
	out, err := f.Store.Delete(ctx, key, rev)
	if err == nil && f.hit("delete", key) {
		return datastore.KV{}, errCrash
	}
	return out, err
}

func (f *faultStore) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	rev, err := f.Store.Txn(ctx, ops)
	if err == nil && len(ops) > 0 && f.hit("txn", ops[0].KV.Key) {
		return 0, errCrash
	}
	return rev, err
}
