package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// Election is leader election among the processes that may run GC, so
// that exactly one collector runs per cluster. The etcd implementation is
// etcd.Store.NewElection.
type Election interface {
	// Campaign blocks until the caller leads or ctx ends (then it returns
	// ctx's error). It returns a context that is canceled when the
	// leadership is lost or ctx ends. Not idempotent: call Resign before
	// campaigning again. Not safe for concurrent use with itself or
	// Resign.
	Campaign(ctx context.Context) (context.Context, error)
	// Resign gives the leadership up, if held, and releases what
	// Campaign acquired. Idempotent.
	Resign(ctx context.Context) error
}

// GCConfig configures a GC.
type GCConfig struct {
	// Logger receives what GC releases and why (Info) and its failures
	// (Warn). Default: discard.
	Logger *slog.Logger
	// Interval is the time between two runs of Run. Default 1m.
	Interval time.Duration
	// LeakGracePeriod is how long an allocation must have been seen
	// without a workload endpoint before it is released. It must cover
	// the time between assigning an address and writing the endpoint.
	// Default 15m.
	LeakGracePeriod time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Allocator configures the allocator GC releases with; its Now and
	// Logger default to the ones above.
	Allocator Config
}

// Defaults fills in the zero fields.
func (c *GCConfig) Defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.LeakGracePeriod == 0 {
		c.LeakGracePeriod = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Allocator.Now == nil {
		c.Allocator.Now = c.Now
	}
	if c.Allocator.Logger == nil {
		c.Allocator.Logger = c.Logger
	}
	c.Allocator.Defaults()
}

// Validate reports every invalid field.
func (c *GCConfig) Validate() error {
	var errs []error
	if c.Logger == nil {
		errs = append(errs, fieldError("Logger", "nil"))
	}
	if c.Interval <= 0 {
		errs = append(errs, fieldError("Interval", "%v is not positive", c.Interval))
	}
	if c.LeakGracePeriod < 0 {
		errs = append(errs, fieldError("LeakGracePeriod", "%v is negative", c.LeakGracePeriod))
	}
	if c.Now == nil {
		errs = append(errs, fieldError("Now", "nil"))
	}
	if err := c.Allocator.Validate(); err != nil {
		errs = append(errs, fieldError("Allocator", "%v", err))
	}
	return errors.Join(errs...)
}

// GC reclaims what crashed writers, deleted workloads and deleted nodes
// leave behind:
//
//   - allocations whose handle has had no workload endpoint for longer
//     than LeakGracePeriod (checked again just before releasing, and
//     released only if the same handle still holds them);
//   - affinities of nodes that no longer exist (the block is deleted if
//     empty, else it loses its affinity);
//   - blocks seen empty, at the same revision, in two runs in a row (and
//     their affinity);
//   - pending affinities seen, at the same revision, in two runs in a row
//     (a crashed claim): confirmed if the block is affine to the node,
//     else deleted;
//   - handles that record addresses their blocks do not hold, and
//     allocations that no handle records, seen in two runs in a row.
//
// Its memory (what it saw in the previous run) is its own: a new leader
// starts from scratch, which only delays reclaiming. Every write is a
// compare-and-swap on what the run read.
type GC struct {
	store datastore.Store
	alloc *Allocator
	cfg   GCConfig
	log   *slog.Logger

	mu          sync.Mutex
	orphanSince map[string]orphan // by handle
	emptySeen   map[string]int64  // block name → revision seen empty
	pendingSeen map[string]int64  // "node/block" → revision seen pending
	goneSeen    map[string]int64  // "node/block" → affinity revision seen with the node missing
	handleSeen  map[string]string // handle → fingerprint of a mismatch seen
}

// orphan is a handle seen without endpoint.
type orphan struct {
	since time.Time
	addrs string // the addresses seen, as text; a change restarts the clock
}

// GCStats counts what one run changed.
type GCStats struct {
	ReleasedAddrs      int
	ReleasedBlocks     int
	ReleasedAffinities int
	RepairedAffinities int
	RepairedHandles    int
}

// NewGC returns a GC over s.
func NewGC(s datastore.Store, cfg GCConfig) (*GC, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ipam gc config: %w", err)
	}
	alloc, err := New(s, cfg.Allocator)
	if err != nil {
		return nil, err
	}
	g := &GC{store: s, alloc: alloc, cfg: cfg, log: cfg.Logger}
	g.reset()
	return g, nil
}

func (g *GC) reset() {
	g.orphanSince = map[string]orphan{}
	g.emptySeen = map[string]int64{}
	g.pendingSeen = map[string]int64{}
	g.goneSeen = map[string]int64{}
	g.handleSeen = map[string]string{}
}

// Run campaigns for leadership with e and, while leading, runs RunOnce
// every Interval (and once at once). When the leadership is lost it
// forgets what it saw and campaigns again. It returns when ctx ends,
// with ctx's error. Not safe for concurrent use with itself.
func (g *GC) Run(ctx context.Context, e Election) error {
	for {
		leadCtx, err := e.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			g.log.Warn("ipam gc: campaigning for leadership", "error", err)
			if !sleep(ctx, g.cfg.Interval) {
				return ctx.Err()
			}
			continue
		}
		g.log.Info("ipam gc: leading")
		g.lead(leadCtx)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := e.Resign(rctx); err != nil {
			g.log.Warn("ipam gc: resigning", "error", err)
		}
		cancel()
		g.mu.Lock()
		g.reset()
		g.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.log.Info("ipam gc: leadership lost")
	}
}

func (g *GC) lead(ctx context.Context) {
	for {
		if _, err := g.RunOnce(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("ipam gc run failed", "error", err)
		}
		if !sleep(ctx, g.cfg.Interval) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// RunOnce runs one collection: it reads the Store at one revision,
// decides, and writes each repair as a compare-and-swap on what it read.
// The decisions that need two observations use what the previous RunOnce
// saw. It goes on after a failed repair and returns every error joined.
// Safe for concurrent use (runs are serialized), but meant to run in one
// process per cluster.
func (g *GC) RunOnce(ctx context.Context) (GCStats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var st GCStats
	snap, err := readSnapshot(ctx, g.store)
	if err != nil {
		return st, err
	}
	now := g.cfg.Now()
	var errs []error
	errs = append(errs, g.collectNodes(ctx, snap, &st)...)
	errs = append(errs, g.collectPending(ctx, snap, &st)...)
	orphans := map[string]bool{}
	for h := range g.orphanSince {
		orphans[h] = true
	}
	errs = append(errs, g.collectOrphans(ctx, snap, now, &st)...)
	for h := range g.orphanSince {
		orphans[h] = true
	}
	errs = append(errs, g.collectHandles(ctx, snap, orphans, &st)...)
	errs = append(errs, g.collectEmpty(ctx, snap, &st)...)
	return st, errors.Join(errs...)
}

// collectNodes releases the affinities of nodes that do not exist, seen
// so twice in a row.
func (g *GC) collectNodes(ctx context.Context, snap *snapshot, st *GCStats) []error {
	var errs []error
	seen := map[string]int64{}
	for _, af := range snap.affinities {
		node := af.kv.Key.Namespace
		if snap.nodes[node] {
			continue
		}
		key := node + "/" + af.kv.Key.Name
		seen[key] = af.kv.Revision
		if g.goneSeen[key] != af.kv.Revision {
			continue
		}
		if err := g.alloc.releaseAffinity(ctx, af); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(seen, key)
		st.ReleasedAffinities++
		g.log.Info("ipam gc: released the affinity of a deleted node", "node", node, "prefix", af.a.CIDR)
	}
	g.goneSeen = seen
	return errs
}

// collectPending finishes or undoes claims that stayed pending for two
// runs.
func (g *GC) collectPending(ctx context.Context, snap *snapshot, st *GCStats) []error {
	var errs []error
	seen := map[string]int64{}
	for _, af := range snap.affinities {
		if af.a.State != AffinityPending || !snap.nodes[af.kv.Key.Namespace] {
			continue
		}
		key := af.kv.Key.Namespace + "/" + af.kv.Key.Name
		seen[key] = af.kv.Revision
		if g.pendingSeen[key] != af.kv.Revision {
			continue
		}
		node := af.kv.Key.Namespace
		b := snap.block(af.kv.Key.Name)
		var err error
		if b != nil && b.Affinity == node {
			kv, eerr := encode(af.kv.Key, Affinity{Node: node, CIDR: af.a.CIDR, State: AffinityConfirmed})
			if eerr != nil {
				errs = append(errs, eerr)
				continue
			}
			kv.Revision = af.kv.Revision
			_, err = g.store.Update(ctx, kv)
		} else {
			_, err = g.store.Delete(ctx, af.kv.Key, af.kv.Revision)
		}
		if err != nil && !isCASFailure(err) {
			errs = append(errs, fmt.Errorf("repairing pending affinity %s: %w", af.kv.Key, err))
			continue
		}
		delete(seen, key)
		st.RepairedAffinities++
		g.log.Info("ipam gc: repaired a stale pending affinity", "node", node, "prefix", af.a.CIDR)
	}
	g.pendingSeen = seen
	return errs
}

// collectOrphans releases allocations whose handle has had no endpoint
// for LeakGracePeriod.
func (g *GC) collectOrphans(ctx context.Context, snap *snapshot, now time.Time, st *GCStats) []error {
	byHandle := map[string][]block.Allocation{}
	live := map[string]bool{}
	for _, sb := range snap.blocks {
		for _, al := range sb.b.Allocated() {
			h := al.Attribute.Handle
			byHandle[h] = append(byHandle[h], al)
			if snap.endpoints.uses(al) {
				live[h] = true
			}
		}
	}
	next := map[string]orphan{}
	var due []string
	for h, als := range byHandle {
		if live[h] {
			continue
		}
		text := fmt.Sprint(addrsOf(als))
		o, ok := g.orphanSince[h]
		if !ok || o.addrs != text {
			o = orphan{since: now, addrs: text}
		}
		next[h] = o
		if now.Sub(o.since) >= g.cfg.LeakGracePeriod {
			due = append(due, h)
		}
	}
	g.orphanSince = next
	if len(due) == 0 {
		return nil
	}
	// Check again, just before releasing, with the endpoints as they are
	// now.
	ix, err := readEndpoints(ctx, g.store)
	if err != nil {
		return []error{err}
	}
	var errs []error
	slices.Sort(due)
	for _, h := range due {
		als := byHandle[h]
		if slices.ContainsFunc(als, ix.uses) {
			delete(g.orphanSince, h)
			continue
		}
		released, err := g.alloc.releaseAddrs(ctx, addrsOf(als), h)
		if err != nil {
			errs = append(errs, fmt.Errorf("releasing the addresses of handle %q: %w", h, err))
			continue
		}
		delete(g.orphanSince, h)
		st.ReleasedAddrs += len(released)
		if len(released) > 0 {
			g.log.Info("ipam gc: released addresses without a workload endpoint", "handle", h, "addresses", released, "grace", g.cfg.LeakGracePeriod)
		}
	}
	return errs
}

func addrsOf(als []block.Allocation) []netip.Addr {
	out := make([]netip.Addr, len(als))
	for i, al := range als {
		out[i] = al.Addr
	}
	return out
}

// collectHandles makes handles match the blocks when the same mismatch
// was seen in two runs in a row. It leaves the handles in skip alone:
// they are orphans that collectOrphans releases.
func (g *GC) collectHandles(ctx context.Context, snap *snapshot, skip map[string]bool, st *GCStats) []error {
	actual := map[string]map[string]int{}
	for _, sb := range snap.blocks {
		for h, n := range sb.b.Handles() {
			if actual[h] == nil {
				actual[h] = map[string]int{}
			}
			actual[h][sb.kv.Key.Name] = n
		}
	}
	ids := slices.Collect(maps.Keys(actual))
	for id := range snap.handles {
		if actual[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	seen := map[string]string{}
	var errs []error
	for _, id := range ids {
		if skip[id] {
			continue
		}
		sh, exists := snap.handles[id]
		var recorded map[string]int
		var rev int64
		if exists {
			recorded, rev = sh.h.Blocks, sh.kv.Revision
		}
		want := actual[id]
		if maps.Equal(recorded, want) || (len(recorded) == 0 && len(want) == 0) {
			continue
		}
		fp := fmt.Sprintf("%d %v %v", rev, recorded, want)
		seen[id] = fp
		if g.handleSeen[id] != fp {
			continue
		}
		key := handleKey(id)
		var err error
		switch {
		case !exists:
			var kv datastore.KV
			if kv, err = encode(key, Handle{ID: id, Blocks: want}); err == nil {
				_, err = g.store.Create(ctx, kv)
			}
		case len(want) == 0:
			_, err = g.store.Delete(ctx, key, rev)
		default:
			var kv datastore.KV
			if kv, err = encode(key, Handle{ID: id, Blocks: want}); err == nil {
				kv.Revision = rev
				_, err = g.store.Update(ctx, kv)
			}
		}
		if err != nil {
			if !isCASFailure(err) {
				errs = append(errs, fmt.Errorf("repairing handle %q: %w", id, err))
			}
			continue
		}
		delete(seen, id)
		st.RepairedHandles++
		g.log.Info("ipam gc: repaired a handle", "handle", id, "recorded", recorded, "actual", want)
	}
	g.handleSeen = seen
	return errs
}

// collectEmpty gives back blocks seen empty at the same revision in two
// runs in a row, with their affinity.
func (g *GC) collectEmpty(ctx context.Context, snap *snapshot, st *GCStats) []error {
	seen := map[string]int64{}
	var errs []error
	for _, sb := range snap.blocks {
		name := sb.kv.Key.Name
		if !sb.b.Empty() {
			continue
		}
		seen[name] = sb.kv.Revision
		if g.emptySeen[name] != sb.kv.Revision {
			continue
		}
		ops := []datastore.Op{{Type: datastore.OpDelete, KV: datastore.KV{Key: sb.kv.Key, Revision: sb.kv.Revision}}}
		if sb.b.Affinity != "" {
			if af := snap.affinityOf(sb.b.Affinity, name); af != nil {
				ops = append(ops, datastore.Op{Type: datastore.OpDelete, KV: datastore.KV{Key: af.kv.Key, Revision: af.kv.Revision}})
			}
		}
		if _, err := g.store.Txn(ctx, ops); err != nil {
			if !isCASFailure(err) {
				errs = append(errs, fmt.Errorf("deleting empty block %s: %w", name, err))
			}
			continue
		}
		delete(seen, name)
		g.alloc.forget(name)
		st.ReleasedBlocks++
		g.log.Info("ipam gc: gave back an empty block", "prefix", sb.b.CIDR, "node", sb.b.Affinity)
	}
	g.emptySeen = seen
	return errs
}

// String summarizes the stats for logs and the CLI.
func (s GCStats) String() string {
	parts := []string{
		fmt.Sprintf("%d address(es) released", s.ReleasedAddrs),
		fmt.Sprintf("%d block(s) given back", s.ReleasedBlocks),
		fmt.Sprintf("%d affinity(ies) released", s.ReleasedAffinities),
		fmt.Sprintf("%d pending affinity(ies) repaired", s.RepairedAffinities),
		fmt.Sprintf("%d handle(s) repaired", s.RepairedHandles),
	}
	return strings.Join(parts, ", ")
}
