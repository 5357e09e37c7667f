package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
)

// Result says what an Apply or Resync did.
type Result struct {
	// Writes is the number of netlink messages in the transaction; 0
	// means nothing was written (and no transaction was made).
	Writes int
	// Object counts.
	ChainsAdded, ChainsUpdated, ChainsDeleted int
	RulesAdded, RulesReplaced, RulesDeleted   int
	SetsAdded, SetsDeleted                    int
	ElementsAdded, ElementsDeleted            int
	// On failure every count is 0: the kernel applied nothing.
	//
	// Repairs (Resync only) counts the objects (chains, rules, sets,
	// elements) in which the kernel differed from what the renderer had
	// written: drift and strays. On the first Resync of a renderer, which
	// has no record, it is the number of objects it changed.
	Repairs int
	// Rebuilt says the table held something that cannot be changed in
	// place and was deleted and written again, in the same transaction.
	Rebuilt bool
	// Problems lists the endpoints that cannot be programmed, and why.
	Problems map[policy.EndpointID]string
	// Duration is how long the call took.
	Duration time.Duration
}

func (r Result) changes() int {
	return r.ChainsAdded + r.ChainsUpdated + r.ChainsDeleted + r.RulesAdded + r.RulesReplaced + r.RulesDeleted +
		r.SetsAdded + r.SetsDeleted + r.ElementsAdded + r.ElementsDeleted
}

// EndpointStatus says whether an endpoint's policy is in the kernel.
type EndpointStatus struct {
	// Programmed: the endpoint's chains and dispatch entries, as last
	// passed to Set, were in the kernel after the last successful Apply
	// or Resync. Until then its interface's traffic is dropped.
	Programmed bool
	// Problem says why it cannot be programmed, if so.
	Problem string
}

// Renderer keeps Tabby's nftables table in one network namespace equal
// to a policy.Ruleset. Its methods are safe for concurrent use; Apply and
// Resync are serialised.
type Renderer struct {
	cfg Config
	log *slog.Logger

	// in guards the desired state and the endpoint status, so that Set
	// and EndpointStatus never wait for an Apply.
	in       sync.Mutex
	rs       *policy.Ruleset
	natPools []netip.Prefix
	allPools []netip.Prefix
	// applied is the rendering of each endpoint that is in the kernel.
	applied  map[policy.EndpointID]*epRender
	problems map[policy.EndpointID]string

	// mu serialises Apply and Resync and guards the rest. Lock order: mu,
	// then in.
	mu   sync.Mutex
	k    *kernel
	memo *memo
	// st is the kernel's table as of the last successful transaction or
	// read; nil when unknown (before the first read, after a failure).
	st *kState
	// gen counts the transactions tried (and the times st was dropped):
	// a Resync that read the kernel without mu uses its read only if gen
	// did not change meanwhile.
	gen uint64
	// done is the desired state of the last successful Apply or Resync:
	// an Apply with the same state (same pointers) has nothing to do.
	done struct {
		rs       *policy.Ruleset
		nat, all []netip.Prefix
	}
}

// New returns a Renderer for the network namespace ns (nil: the process's
// own). ns must stay open until Close. cfg gets Defaults and must pass
// Validate; log may be nil. New does not touch the ruleset: the first
// Apply or Resync reads the table and changes what differs, without
// flushing anything first.
func New(cfg Config, ns *netns.NS, log *slog.Logger) (*Renderer, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fd := 0
	if ns != nil {
		fd = ns.Fd()
	}
	k, err := openKernel(fd, cfg.TableName)
	if err != nil {
		return nil, err
	}
	return &Renderer{
		cfg:      cfg,
		log:      log.With("table", "inet "+cfg.TableName),
		k:        k,
		rs:       policy.NewRuleset(""),
		natPools: slices.Clone(cfg.NATOutgoingPools),
		allPools: slices.Clone(cfg.AllPools),
		memo:     newMemo(&cfg),
		applied:  map[policy.EndpointID]*epRender{},
	}, nil
}

// Close releases the netlink sockets. The table stays in the kernel.
func (r *Renderer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.k.close()
}

// Set records the desired ruleset; Apply programs it. It copies rs's maps
// (whose values are immutable, see package policy), so the caller may go
// on applying Deltas to rs. Set is cheap and never touches the kernel.
func (r *Renderer) Set(rs *policy.Ruleset) {
	cp := &policy.Ruleset{
		Node:      rs.Node,
		Endpoints: cloneMap(rs.Endpoints),
		Policies:  cloneMap(rs.Policies),
		Profiles:  cloneMap(rs.Profiles),
		IPSets:    cloneMap(rs.IPSets),
		Failsafe:  rs.Failsafe,
	}
	r.in.Lock()
	r.rs = cp
	r.in.Unlock()
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return maps.Clone(m)
}

// SetPools records the IP pools: traffic from natOutgoing pools to
// destinations outside all pools is masqueraded. Apply programs it.
func (r *Renderer) SetPools(natOutgoing, all []netip.Prefix) {
	r.in.Lock()
	r.natPools, r.allPools = slices.Clone(natOutgoing), slices.Clone(all)
	r.in.Unlock()
}

// EndpointStatus reports whether an endpoint is programmed.
func (r *Renderer) EndpointStatus(id policy.EndpointID) EndpointStatus {
	r.in.Lock()
	defer r.in.Unlock()
	er := r.applied[id]
	return EndpointStatus{
		Programmed: er != nil && r.rs.Endpoints[id] == er.src,
		Problem:    r.problems[id],
	}
}

// Apply makes the kernel's table equal to the desired state, changing only
// what differs, in one transaction. It compares against its record of
// the table (read from the kernel on first use and after a failure; see
// Resync for repairing changes made behind its back). With nothing to
// change it makes no writes. Safe to call at any time; idempotent.
func (r *Renderer) Apply(ctx context.Context) (Result, error) {
	return r.run(ctx, false, nil, 0)
}

// Resync reads the whole table from the kernel, compares it with the
// desired state and repairs every difference, deleting chains, rules,
// sets and elements that are not desired, in one transaction. Objects that
// are already right are not touched: rules keep their handles, so a
// restarted agent can Resync over the table its predecessor left without
// interrupting traffic. Result.Repairs counts the differences found.
//
// Reading a large table takes a while (~300 ms with 140,000 set
// elements), so Resync reads it without holding the lock that Apply
// takes: an Apply from another goroutine meanwhile is not held up. If a
// transaction was made while it read, the read may be stale and Resync
// reads again under the lock.
func (r *Renderer) Resync(ctx context.Context) (Result, error) {
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	read, err := r.k.readState()
	if err != nil {
		read = nil // read again, under the lock, and report the error then
	}
	return r.run(ctx, true, read, gen)
}

// run applies the desired state. With full it compares with the
// kernel's table: read, if it is not nil and no transaction was tried
// since gen, else a read made now.
func (r *Renderer) run(ctx context.Context, full bool, read *kState, gen uint64) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if read != nil && r.gen != gen {
		read = nil // stale: a transaction was made while it was read
	}
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	r.in.Lock()
	rs, natPools, allPools, problems := r.rs, r.natPools, r.allPools, r.problems
	r.in.Unlock()
	if !full && r.st != nil && rs == r.done.rs && slices.Equal(natPools, r.done.nat) && slices.Equal(allPools, r.done.all) {
		return Result{Problems: problems, Duration: time.Since(start)}, nil
	}
	d, problems := r.memo.build(&r.cfg, r.log, rs, natPools, allPools)
	r.in.Lock()
	r.problems = problems
	r.in.Unlock()
	res := Result{Problems: problems}

	st := r.st
	hadRecord := st != nil
	if full || st == nil {
		now, err := read, error(nil)
		if now == nil {
			now, err = r.k.readState()
		}
		if err != nil {
			r.st = nil
			r.gen++
			return res, fmt.Errorf("reading table %s: %w", r.cfg.TableName, err)
		}
		if full && hadRecord {
			res.Repairs = drift(st, now)
		}
		st = now
	}

	p := &planner{k: r.k, b: r.k.newBatch(), st: st, res: &res}
	err := p.plan(d)
	if errors.Is(err, errRebuild) {
		r.log.Warn("table holds objects that cannot be changed in place; rebuilding it in one transaction")
		res = Result{Problems: problems, Repairs: res.Repairs, Rebuilt: true}
		fresh := newKState()
		p = &planner{k: r.k, b: r.k.newBatch(), st: fresh, res: &res}
		if st.table {
			p.b.delTable()
		}
		err = p.plan(d)
	}
	if err == nil {
		res.Writes = p.b.n
		r.gen++
		err = p.b.commit()
	} else {
		p.b.discard()
	}
	if err != nil {
		// The kernel applied nothing. Our record may be wrong, though (a
		// change behind our back can make a transaction fail): read the
		// kernel again next time.
		r.st = nil
		r.in.Lock()
		for id, er := range r.applied {
			if rs.Endpoints[id] != er.src {
				delete(r.applied, id)
			}
		}
		r.in.Unlock()
		return Result{Problems: problems, Repairs: res.Repairs, Duration: time.Since(start)}, err
	}
	for _, f := range p.post {
		f()
	}
	r.st = p.st
	r.done.rs, r.done.nat, r.done.all = rs, natPools, allPools
	if full && !hadRecord {
		res.Repairs = res.changes()
	}
	r.in.Lock()
	clear(r.applied)
	for id, er := range r.memo.endpoints {
		if problems[id] == "" {
			r.applied[id] = er
		}
	}
	r.in.Unlock()
	res.Duration = time.Since(start)
	if res.Writes > 0 || res.Repairs > 0 {
		r.log.Info("nftables updated", "writes", res.Writes, "repairs", res.Repairs, "full", full,
			"rules_added", res.RulesAdded, "rules_deleted", res.RulesDeleted, "duration", res.Duration)
	}
	return res, nil
}
