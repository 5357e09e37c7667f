package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// Errors of the allocator. Test with errors.Is.
var (
	// ErrExhausted means the eligible pools have no free address left
	// for the request. The error is an *ExhaustedError.
	ErrExhausted = errors.New("IP pool exhausted")
	// ErrNoPool means no pool of the family, the use and the node
	// exists.
	ErrNoPool = errors.New("no usable IP pool")
	// ErrInUse means a requested address is held by another handle.
	ErrInUse = block.ErrInUse
	// ErrTooManyConflicts means an operation lost the compare-and-swap
	// race Config.MaxRetries times in a row.
	ErrTooManyConflicts = errors.New("too many concurrent changes")
)

// ExhaustedError reports that the eligible pools could not give enough
// addresses. Its message names the pools and the use.
type ExhaustedError struct {
	Family int
	Use    v1.IPPoolAllowedUse
	Node   string
	Pools  []string // `"name" (cidr)` of each eligible pool
	Want   int
	Why    string // what stopped the node from claiming or borrowing, if anything
}

func (e *ExhaustedError) Error() string {
	what := "pool " + e.Pools[0] + " is"
	if len(e.Pools) > 1 {
		what = "pools " + strings.Join(e.Pools, ", ") + " are"
	}
	msg := fmt.Sprintf("IPv%d %s exhausted for use %s: cannot assign %d address(es) to node %q", e.Family, what, e.Use, e.Want, e.Node)
	if e.Why != "" {
		msg += " (" + e.Why + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// Config configures an Allocator.
type Config struct {
	// Logger receives debug messages about claims, conflicts and
	// repairs. Default: discard.
	Logger *slog.Logger
	// MaxRetries bounds how often one step (one block write, one claim)
	// is tried again after losing a compare-and-swap. Default 20.
	MaxRetries int
	// EnvTTL is how long the IP pools, the IPAM configuration and node
	// labels are reused once read. Default 5s; negative: read them for
	// every request.
	EnvTTL time.Duration
	// Now returns the current time: release timestamps and cooldowns use
	// it. Default time.Now.
	Now func() time.Time
}

// Defaults fills in the zero fields.
func (c *Config) Defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 20
	}
	if c.EnvTTL == 0 {
		c.EnvTTL = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid field.
func (c *Config) Validate() error {
	var errs []error
	if c.Logger == nil {
		errs = append(errs, fieldError("Logger", "nil"))
	}
	if c.MaxRetries < 1 || c.MaxRetries > 1000 {
		errs = append(errs, fieldError("MaxRetries", "%d is not between 1 and 1000", c.MaxRetries))
	}
	if c.Now == nil {
		errs = append(errs, fieldError("Now", "nil"))
	}
	return errors.Join(errs...)
}

// fieldError is a Validate error about one field of a config.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

// Allocator assigns and releases addresses in a Store. It is safe for
// concurrent use. Requests for the same node are serialized inside one
// Allocator (they would only race for the same block); requests from
// other processes are resolved by compare-and-swap.
//
// The Allocator caches blocks it has read or written, with their
// revisions, and the list of each node's affine blocks. A stale cache
// entry only costs a failed compare-and-swap and a fresh read, so an
// assignment on a node with a free affine block takes one transaction.
type Allocator struct {
	store datastore.Store
	cfg   Config
	log   *slog.Logger

	mu        sync.Mutex
	cachedEnv *env
	labels    map[string]cachedLabels
	blocks    map[string]cachedBlock // by block name
	nodes     map[string]*nodeState
}

// nodeState is one node's view inside an Allocator.
type nodeState struct {
	mu     sync.Mutex // serializes the node's assignments
	loaded bool       // affine was read from the Store
	affine []string   // names of the node's confirmed affine blocks, sorted
}

// New returns an Allocator over s. cfg is defaulted and validated.
func New(s datastore.Store, cfg Config) (*Allocator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ipam config: %w", err)
	}
	return &Allocator{
		store:  s,
		cfg:    cfg,
		log:    cfg.Logger,
		labels: map[string]cachedLabels{},
		blocks: map[string]cachedBlock{},
		nodes:  map[string]*nodeState{},
	}, nil
}

// AssignArgs is a request for automatically chosen addresses.
type AssignArgs struct {
	// Node is the node the workload runs on. Required.
	Node string
	// Handle identifies the workload attachment; release goes by it.
	// Required; no '/'.
	Handle string
	// Num4 and Num6 are how many IPv4 and IPv6 addresses to assign.
	Num4, Num6 int
	// Attrs are stored with every address (AttrNamespace and
	// AttrEndpoint are worth setting; AttrNode is set to Node).
	Attrs map[string]string
	// Use is what the addresses are for. Default Workload.
	Use v1.IPPoolAllowedUse
	// IPv4Pools and IPv6Pools restrict the request to these pools, by
	// name. Empty: every enabled pool that selects the node.
	IPv4Pools, IPv6Pools []string
}

// Assigned is the result of AutoAssign.
type Assigned struct {
	IPv4, IPv6 []netip.Addr
}

// AutoAssign assigns args.Num4 IPv4 and args.Num6 IPv6 addresses to
// args.Handle on args.Node: first from the node's affine blocks, then
// from blocks it claims, then (unless strictAffinity) from other nodes'
// blocks. It assigns all or nothing: if either family cannot be
// satisfied, whatever was assigned is released and the error (an
// *ExhaustedError for a lack of addresses) is returned.
//
// Not idempotent: a second call assigns more addresses to the same
// handle. Safe for concurrent use.
func (a *Allocator) AutoAssign(ctx context.Context, args AssignArgs) (*Assigned, error) {
	if err := checkAssignArgs(&args); err != nil {
		return nil, err
	}
	st := a.node(args.Node)
	st.mu.Lock()
	defer st.mu.Unlock()
	h := &handleState{id: args.Handle}
	attr := attribute(args.Handle, args.Node, args.Attrs)
	out := &Assigned{}
	var err error
	if args.Num4 > 0 {
		out.IPv4, err = a.assignFamily(ctx, st, h, &args, attr, 4, args.Num4, args.IPv4Pools)
		if err != nil {
			return nil, err
		}
	}
	if args.Num6 > 0 {
		out.IPv6, err = a.assignFamily(ctx, st, h, &args, attr, 6, args.Num6, args.IPv6Pools)
		if err != nil {
			return nil, a.rollback(ctx, err, out.IPv4, args.Handle)
		}
	}
	return out, nil
}

func checkAssignArgs(args *AssignArgs) error {
	var errs []error
	if err := checkName("node", args.Node); err != nil {
		errs = append(errs, err)
	}
	if err := checkName("handle", args.Handle); err != nil {
		errs = append(errs, err)
	}
	if args.Num4 < 0 || args.Num6 < 0 || args.Num4+args.Num6 == 0 {
		errs = append(errs, fmt.Errorf("asked for %d IPv4 and %d IPv6 addresses", args.Num4, args.Num6))
	}
	if args.Use == "" {
		args.Use = v1.IPPoolAllowedUseWorkload
	}
	return errors.Join(errs...)
}

func attribute(handle, node string, attrs map[string]string) block.Attribute {
	sec := maps.Clone(attrs)
	if sec == nil {
		sec = map[string]string{}
	}
	sec[AttrNode] = node
	return block.Attribute{Handle: handle, Secondary: sec}
}

// assignFamily assigns n addresses of one family; on failure it releases
// what it assigned.
func (a *Allocator) assignFamily(ctx context.Context, st *nodeState, h *handleState, args *AssignArgs, attr block.Attribute, family, n int, poolNames []string) ([]netip.Addr, error) {
	e, err := a.env(ctx)
	if err != nil {
		return nil, err
	}
	pools, err := a.eligiblePools(ctx, e, args.Node, family, args.Use, poolNames)
	if err != nil {
		return nil, err
	}
	var got []netip.Addr
	fail := func(err error) ([]netip.Addr, error) {
		return nil, a.rollback(ctx, err, got, args.Handle)
	}
	take := func(name string, accept func(*block.Block) bool) (gone bool, err error) {
		ips, gone, err := a.assignInBlock(ctx, name, n-len(got), attr, h, e.cooldown, accept)
		got = append(got, ips...)
		return gone, err
	}
	affine := func(b *block.Block) bool { return b.Affinity == args.Node }

	// 1. The node's affine blocks.
	names, err := a.affineBlocks(ctx, st, args.Node)
	if err != nil {
		return fail(err)
	}
	for _, name := range blocksInPools(names, pools) {
		if a.cachedFull(name) {
			continue // step 2 reads it again if the cache is stale
		}
		gone, err := take(name, affine)
		if err != nil {
			return fail(err)
		}
		if gone {
			st.drop(name)
		}
		if len(got) == n {
			return got, nil
		}
	}

	// 2. The cache may be stale: read every block once, and try the
	// node's blocks again as they are now.
	kvs, _, err := a.store.List(ctx, datastore.Prefix{Kind: KindBlock})
	if err != nil {
		return fail(fmt.Errorf("listing blocks: %w", err))
	}
	now := a.cfg.Now()
	var others []datastore.KV
	cooling := 0
	for _, kv := range kvs {
		b, err := decodeSummary(kv)
		if err != nil {
			a.log.Warn("skipping a bad block", "block", kv.Key.Name, "error", err)
			continue
		}
		if poolOfBlock(pools, b.CIDR) == nil {
			continue
		}
		a.remember(kv, len(b.Unallocated))
		avail := b.Available(now, e.cooldown)
		cooling += len(b.Unallocated) - avail
		switch {
		case avail == 0:
		case b.Affinity != args.Node:
			others = append(others, kv)
		case len(got) < n:
			st.add(kv.Key.Name)
			if _, err := take(kv.Key.Name, affine); err != nil {
				return fail(err)
			}
		}
	}
	if len(got) == n {
		return got, nil
	}

	// 3. Blocks the node claims.
	var why []string
	if !e.autoAllocate {
		why = append(why, "autoAllocateBlocks is off")
	}
	for claims := 0; len(got) < n && e.autoAllocate; claims++ {
		if claims >= a.cfg.MaxRetries {
			return fail(fmt.Errorf("claimed %d blocks for node %q and still lack addresses: %w", claims, args.Node, ErrTooManyConflicts))
		}
		name, err := a.claim(ctx, st, args.Node, pools, e)
		if errors.Is(err, errNoFreeBlock) || errors.Is(err, errMaxBlocks) {
			why = append(why, err.Error())
			break
		}
		if err != nil {
			return fail(err)
		}
		if _, err := take(name, affine); err != nil {
			return fail(err)
		}
	}
	if len(got) == n {
		return got, nil
	}

	// 4. Other nodes' blocks, and blocks without affinity.
	if e.strict {
		why = append(why, "strictAffinity forbids borrowing")
	} else {
		for _, kv := range others {
			if _, err := take(kv.Key.Name, func(b *block.Block) bool { return b.Affinity != args.Node }); err != nil {
				return fail(err)
			}
			if len(got) == n {
				return got, nil
			}
		}
	}
	if cooling > 0 {
		why = append(why, fmt.Sprintf("%d address(es) are in their release cooldown of %v", cooling, e.cooldown))
	}
	ps := make([]string, len(pools))
	for i, p := range pools {
		ps[i] = p.String()
	}
	return fail(&ExhaustedError{Family: family, Use: args.Use, Node: args.Node, Pools: ps, Want: n, Why: strings.Join(why, "; ")})
}

// rollback releases the addresses a failed request assigned to handle,
// even if ctx has ended (the request failing may be why), and returns
// err with the release's error, if any, joined.
func (a *Allocator) rollback(ctx context.Context, err error, addrs []netip.Addr, handle string) error {
	if len(addrs) == 0 {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, rerr := a.releaseAddrs(rctx, addrs, handle); rerr != nil {
		return errors.Join(err, fmt.Errorf("releasing %v again: %w", addrs, rerr))
	}
	return err
}

// rollbackTimeout bounds the release of a failed request's addresses.
const rollbackTimeout = 10 * time.Second

// blocksInPools returns the block names that lie in pools, in the order
// of the pools and then of the names.
func blocksInPools(names []string, pools []*pool) []string {
	var out []string
	for _, p := range pools {
		for _, name := range names {
			cidr, err := ParseBlockName(name)
			if err == nil && poolOfBlock([]*pool{p}, cidr) != nil {
				out = append(out, name)
			}
		}
	}
	return out
}

// handleState is what an operation knows about one handle: whether it
// exists and, if it does, its value and revision. Before it is read, it
// is assumed not to exist.
type handleState struct {
	id     string
	exists bool
	rev    int64
	h      Handle
}

// refresh reads the handle.
func (hs *handleState) refresh(ctx context.Context, s datastore.Store) error {
	kv, err := s.Get(ctx, handleKey(hs.id))
	if errors.Is(err, datastore.ErrNotFound) {
		hs.exists, hs.rev, hs.h = false, 0, Handle{ID: hs.id, Blocks: map[string]int{}}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading handle %q: %w", hs.id, err)
	}
	h, err := decodeHandle(kv)
	if err != nil {
		return err
	}
	hs.exists, hs.rev, hs.h = true, kv.Revision, *h
	return nil
}

// op returns the write of the handle with delta more addresses in block
// name (delta may be negative), and the new value. A handle not read yet
// is assumed not to exist (the common case of a new workload); the Create
// fails with ErrExists if it does.
func (hs *handleState) op(name string, delta int) (datastore.Op, Handle, error) {
	next := Handle{ID: hs.id, Blocks: map[string]int{}}
	if hs.exists {
		maps.Copy(next.Blocks, hs.h.Blocks)
	}
	next.Blocks[name] += delta
	if next.Blocks[name] <= 0 {
		delete(next.Blocks, name)
	}
	key := handleKey(hs.id)
	if !hs.exists {
		kv, err := encode(key, next)
		return datastore.Op{Type: datastore.OpCreate, KV: kv}, next, err
	}
	if len(next.Blocks) == 0 {
		return datastore.Op{Type: datastore.OpDelete, KV: datastore.KV{Key: key, Revision: hs.rev}}, next, nil
	}
	kv, err := encode(key, next)
	kv.Revision = hs.rev
	return datastore.Op{Type: datastore.OpUpdate, KV: kv}, next, err
}

// written records a successful write of next at rev.
func (hs *handleState) written(next Handle, rev int64) {
	hs.h = next
	hs.exists = len(next.Blocks) > 0
	hs.rev = 0
	if hs.exists {
		hs.rev = rev
	}
}

// assignInBlock assigns up to n addresses in block name for attr, if
// accept agrees with the block, writing the block and the handle in one
// transaction. It returns the addresses (none if the block is full), and
// gone if the block does not exist or accept refused it.
func (a *Allocator) assignInBlock(ctx context.Context, name string, n int, attr block.Attribute, h *handleState, cooldown time.Duration, accept func(*block.Block) bool) (ips []netip.Addr, gone bool, err error) {
	fresh := false
	for attempt := 0; attempt < a.cfg.MaxRetries; attempt++ {
		kv, b, ok, err := a.readBlock(ctx, name, fresh)
		if err != nil || !ok {
			return nil, !ok, err
		}
		if !accept(b) {
			return nil, true, nil
		}
		ips := b.Assign(n, attr, a.cfg.Now(), cooldown)
		if len(ips) == 0 {
			return nil, false, nil
		}
		bkv, err := encode(kv.Key, b)
		if err != nil {
			return nil, false, err
		}
		bkv.Revision = kv.Revision
		hop, next, err := h.op(name, len(ips))
		if err != nil {
			return nil, false, err
		}
		rev, err := a.store.Txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, KV: bkv}, hop})
		if err == nil {
			bkv.Revision = rev
			a.remember(bkv, len(b.Unallocated))
			h.written(next, rev)
			return ips, false, nil
		}
		if !isCASFailure(err) {
			return nil, false, fmt.Errorf("assigning in block %s: %w", name, err)
		}
		a.log.Debug("assign lost a race; retrying", "block", name, "handle", h.id, "attempt", attempt, "error", err)
		fresh = true
		if errors.Is(err, datastore.ErrExists) || hop.Type != datastore.OpCreate {
			if err := h.refresh(ctx, a.store); err != nil {
				return nil, false, err
			}
		}
		a.backoff(ctx, attempt)
	}
	return nil, false, fmt.Errorf("assigning in block %s: %d attempts: %w", name, a.cfg.MaxRetries, ErrTooManyConflicts)
}

// isCASFailure reports whether err is a lost compare-and-swap.
func isCASFailure(err error) bool {
	return errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrExists) || errors.Is(err, datastore.ErrNotFound)
}

// backoff sleeps a little, growing with attempt, with jitter so that the
// losers of a race do not collide again.
func (a *Allocator) backoff(ctx context.Context, attempt int) {
	if attempt == 0 {
		return
	}
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
