package bench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

func init() {
	register("bgp", "time from an endpoint created or migrated to its route on every node (10 and 50 nodes); 10,000 routes converging on 3 nodes", runBGP)
}

const (
	// bgpSamples is how many endpoints are created, and how many
	// migrated, per run and lab.
	bgpSamples = 20
	// bgpRouteReflectors is how many route reflectors a lab of
	// bgpRRFrom nodes or more has instead of the full mesh.
	bgpRouteReflectors = 2
	bgpRRFrom          = 50
	// sampleTimeout bounds the wait for one route on every node.
	sampleTimeout = 30 * time.Second
	// convergeTimeout bounds the wait for the many routes.
	convergeTimeout = 3 * time.Minute
	// txnOps is how many endpoints go in one datastore transaction (etcd's
	// default limit of operations per transaction).
	txnOps = 128
)

// convergeBase is the first address of the many routes: inside the lab's
// pool (10.65.0.0/16) but far from the blocks IPAM hands out first, so
// every address is outside the node's blocks and advertised on its own.
var convergeBase = netip.MustParseAddr("10.65.128.0")

func runBGP(ctx context.Context, o *Options, r *Report) error {
	sizes, samples, routes := []int{10, 50}, bgpSamples, 10000
	if o.Quick {
		sizes, samples, routes = []int{3}, 5, 100
	}
	// Each sample uses an address of a /26 block of its own (62 usable
	// besides the anchor's), never reused.
	if samples*o.Runs > 62 {
		samples = max(1, 62/o.Runs)
		r.Warnings = append(r.Warnings, fmt.Sprintf("only %d endpoints per run and lab: one /26 block holds the samples of every run", samples))
	}
	r.Params["nodes"] = sizes
	r.Params["samplesPerRun"] = samples
	r.Params["convergeRoutes"] = routes
	r.Params["convergeNodes"] = 3
	topo := map[string]string{}
	for _, s := range sizes {
		topo[fmt.Sprint(s)] = "full mesh"
		if s >= bgpRRFrom {
			topo[fmt.Sprint(s)] = fmt.Sprintf("%d route reflectors (n1-n%d), mesh off", bgpRouteReflectors, bgpRouteReflectors)
		}
	}
	r.Params["topology"] = topo
	r.Notes = append(r.Notes,
		"The agent advertises IPAM blocks as aggregates, so an endpoint inside its node's block makes no new route. "+
			"Created: an endpoint on node X with an address borrowed from node n2's block (made by a real workload on n2), which X "+
			"advertises as a /32 of its own. Migrated: an endpoint inside n1's block (made by a real workload on n1) moves to node X: "+
			"one transaction deletes it on n1 and writes it on X with the annotation tabby.dev/route-priority: elevated, as a live "+
			"migration does. X cycles through the other nodes.",
		"Each time runs from the datastore write until the /32 is in the kernel of every other node (n2 and n1 included) with X "+
			"as its next hop, seen through a netlink route subscription in each node's namespace. The endpoints are written "+
			"directly as WorkloadEndpoints without an interface: the agent advertises an endpoint's addresses whether or not "+
			"its interface exists, and this keeps CNI and the veth out of the BGP numbers.",
		fmt.Sprintf("Convergence: %d endpoints on n1 with addresses outside its blocks (10.65.128.0 onwards), written in transactions "+
			"of %d, on a new 3-node mesh per run; timed from the first write until every route is in the kernels of n2 and n3.", routes, txnOps))

	if slices.Max(sizes) >= bgpRRFrom {
		r.Notes = append(r.Notes, fmt.Sprintf("%d nodes and more use %d route reflectors instead of the full mesh: lab up with "+
			"1,225 mesh sessions took over 90 s on the 2-core machine (a few sessions stay Active until GoBGP's connect retry), "+
			"too slow for the suite's budget.", bgpRRFrom, bgpRouteReflectors))
	}
	for _, size := range sizes {
		cfg := lab.Config{Nodes: size, Timeout: 4 * time.Minute}
		if size >= bgpRRFrom {
			cfg.RouteReflectors = bgpRouteReflectors
		}
		var err error
		if cfg.Name, err = labName(o, fmt.Sprintf("b%d", size)); err != nil {
			return err
		}
		o.Progressf("bgp: %d-node lab up", size)
		var created, migrated [2][]float64 // p50s, p99s
		err = withLab(ctx, o, cfg, func(l *benchLab) error {
			b, err := newBGPLab(ctx, o, l)
			if err != nil {
				return err
			}
			defer b.close()
			for run := 1; run <= o.Runs; run++ {
				o.Progressf("bgp: %d nodes, %d endpoints created and %d migrated, run %d/%d", size, samples, samples, run, o.Runs)
				c, m, err := b.samples(ctx, run, samples)
				if err != nil {
					return fmt.Errorf("run %d: %w", run, err)
				}
				for i, p := range []float64{50, 99} {
					created[i] = append(created[i], Percentile(Millis(c), p))
					migrated[i] = append(migrated[i], Percentile(Millis(m), p))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%d nodes: %w", size, err)
		}
		label := fmt.Sprintf("%d nodes: ", size)
		r.Add(NewResult(label+"created → every node p50", "ms", created[0], ""))
		r.Add(NewResult(label+"created → every node p99", "ms", created[1], ""))
		r.Add(NewResult(label+"migrated → every node p50", "ms", migrated[0], ""))
		r.Add(NewResult(label+"migrated → every node p99", "ms", migrated[1], ""))
	}

	var conv, writes []float64
	for run := 1; run <= o.Runs; run++ {
		o.Progressf("bgp: %d routes converging on 3 nodes, run %d/%d", routes, run, o.Runs)
		c, w, err := converge(ctx, o, routes)
		if err != nil {
			return fmt.Errorf("converging %d routes, run %d: %w", routes, run, err)
		}
		conv, writes = append(conv, c.Seconds()), append(writes, w.Seconds())
	}
	name := fmt.Sprintf("3 nodes: %d routes converged", routes)
	r.Add(NewResult(name, "s", conv, ""))
	r.Add(NewResult(name+" (writing them)", "s", writes, ""))
	return nil
}

// bgpLab is a lab measured by the bgp suite: a route watch on every node
// and a /26 block on n1 (migrations) and on n2 (borrowed addresses).
type bgpLab struct {
	l                *benchLab
	c                *datastore.Client
	w                *routeWatch
	migBlock, borrow []netip.Addr // free addresses of the blocks, used in turn
}

func newBGPLab(ctx context.Context, o *Options, l *benchLab) (*bgpLab, error) {
	b := &bgpLab{l: l}
	var err error
	if b.c, err = l.Client(ctx); err != nil {
		return nil, err
	}
	// A real workload on n1 and one on n2 give each a block.
	for _, node := range []string{"n1", "n2"} {
		w, err := lab.Run(ctx, l.Name, lab.WorkloadConfig{Name: "anchor-" + node, Node: node, Binary: o.Binary})
		if err != nil {
			return nil, fmt.Errorf("a workload on %s: %w", node, err)
		}
		block := netip.PrefixFrom(w.IPv4, 26).Masked()
		var free []netip.Addr
		for a := block.Addr(); block.Contains(a); a = a.Next() {
			if a != w.IPv4 {
				free = append(free, a)
			}
		}
		if node == "n1" {
			b.migBlock = free
		} else {
			b.borrow = free
		}
	}
	if b.w, err = watchRoutes(l.State); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bgpLab) close() { b.w.close() }

// samples creates n endpoints and migrates n, one at a time, and returns
// how long each took to be routed by every other node.
func (b *bgpLab) samples(ctx context.Context, run, n int) (created, migrated []time.Duration, err error) {
	nodes := b.l.Nodes
	for i := range n {
		// Created: on any node but n2, with an address of n2's block.
		x := (run*n + i) % (len(nodes) - 1)
		if x >= 1 {
			x++ // skip n2
		}
		a := b.borrow[0]
		b.borrow = b.borrow[1:]
		wep := benchEndpoint(fmt.Sprintf("bgp-c%d-%d", run, i), nodes[x].Name, a, false)
		d, err := b.timeRoute(ctx, x, a, []datastore.Op{createOp(wep)})
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s created on %s: %w", a, nodes[x].Name, err)
		}
		created = append(created, d)

		// Migrated: from n1 to any other node.
		x = 1 + (run*n+i)%(len(nodes)-1)
		a = b.migBlock[0]
		b.migBlock = b.migBlock[1:]
		old := benchEndpoint(fmt.Sprintf("bgp-m%d-%d", run, i), "n1", a, false)
		if _, err := b.c.Store().Txn(ctx, []datastore.Op{createOp(old)}); err != nil {
			return nil, nil, fmt.Errorf("writing endpoint %s on n1: %w", a, err)
		}
		key, _ := datastore.KeyOf(old)
		moved := benchEndpoint(fmt.Sprintf("bgp-m%d-%d-moved", run, i), nodes[x].Name, a, true)
		d, err = b.timeRoute(ctx, x, a, []datastore.Op{{Type: datastore.OpDelete, KV: datastore.KV{Key: key}}, createOp(moved)})
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s migrated to %s: %w", a, nodes[x].Name, err)
		}
		migrated = append(migrated, d)
	}
	return created, migrated, nil
}

// timeRoute writes ops and returns how long it took until every node but
// node x routes a/32 via x.
func (b *bgpLab) timeRoute(ctx context.Context, x int, a netip.Addr, ops []datastore.Op) (time.Duration, error) {
	var others []int
	for k := range b.l.Nodes {
		if k != x {
			others = append(others, k)
		}
	}
	wt := b.w.expect([]netip.Prefix{netip.PrefixFrom(a, 32)}, b.l.Nodes[x].IPv4, others)
	start := time.Now()
	if _, err := b.c.Store().Txn(ctx, ops); err != nil {
		b.w.forget(wt)
		return 0, fmt.Errorf("writing: %w", err)
	}
	end, err := wt.wait(ctx, sampleTimeout)
	if err != nil {
		return 0, err
	}
	return end.Sub(start), nil
}

// converge measures, on a new 3-node lab, how long n endpoints written on
// n1 take to be routed by n2 and n3, and how long writing them took.
func converge(ctx context.Context, o *Options, n int) (total, writing time.Duration, err error) {
	name, err := labName(o, "b3r")
	if err != nil {
		return 0, 0, err
	}
	err = withLab(ctx, o, lab.Config{Name: name, Nodes: 3}, func(l *benchLab) error {
		c, err := l.Client(ctx)
		if err != nil {
			return err
		}
		w, err := watchRoutes(l.State)
		if err != nil {
			return err
		}
		defer w.close()
		ops := make([]datastore.Op, n)
		prefixes := make([]netip.Prefix, n)
		a := convergeBase
		for i := range n {
			prefixes[i] = netip.PrefixFrom(a, 32)
			ops[i] = createOp(benchEndpoint(fmt.Sprintf("bgp-r%d", i), "n1", a, false))
			a = a.Next()
		}
		wt := w.expect(prefixes, l.Nodes[0].IPv4, []int{1, 2})
		start := time.Now()
		for i := 0; i < n; i += txnOps {
			if _, err := c.Store().Txn(ctx, ops[i:min(i+txnOps, n)]); err != nil {
				w.forget(wt)
				return fmt.Errorf("writing endpoints: %w", err)
			}
		}
		writing = time.Since(start)
		end, err := wt.wait(ctx, convergeTimeout)
		if err != nil {
			return err
		}
		total = end.Sub(start)
		return nil
	})
	return total, writing, err
}

// benchEndpoint is a WorkloadEndpoint of the lab's open profile with one
// address and no interface.
func benchEndpoint(name, node string, a netip.Addr, elevated bool) *v1.WorkloadEndpoint {
	w := &v1.WorkloadEndpoint{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"},
		Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.WorkloadEndpointSpec{
			Orchestrator: "bench", Workload: name, Node: node,
			IPNetworks: []string{netip.PrefixFrom(a, 32).String()}, Profiles: []string{"lab-open"},
		},
	}
	if elevated {
		w.Metadata.Annotations = map[string]string{agent.AnnotationRoutePriority: "elevated"}
	}
	return w
}

// createOp is the datastore operation that creates w.
func createOp(w *v1.WorkloadEndpoint) datastore.Op {
	key, err := datastore.KeyOf(w)
	val, err2 := datastore.Encode(w)
	if err != nil || err2 != nil {
		// Both only fail for a bad kind or a missing name: a bug here.
		panic(fmt.Sprintf("bench endpoint %s: %v %v", w.Metadata.Name, err, err2))
	}
	return datastore.Op{Type: datastore.OpCreate, KV: datastore.KV{Key: key, Value: val}}
}

// routeWatch follows the route changes of every node of a lab through a
// netlink subscription in each node's namespace.
type routeWatch struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	waiters map[netip.Prefix][]*routeWaiter
	err     error // a subscription failed (for example its buffer overflowed)
}

// routeWaiter waits for prefixes to be routed via gw on some nodes.
type routeWaiter struct {
	gw      netip.Addr
	pending map[netip.Prefix]map[int]bool // prefix → nodes still without it
	left    int                           // prefix and node pairs still missing
	last    time.Time                     // when the last one arrived
	all     chan struct{}                 // closed when left reaches 0
	watch   *routeWatch
}

func watchRoutes(st *lab.State) (*routeWatch, error) {
	w := &routeWatch{done: make(chan struct{}), waiters: map[netip.Prefix][]*routeWaiter{}}
	for k, n := range st.Nodes {
		h, err := nl.Open(netns.NamedPath(n.NetNS))
		if err != nil {
			w.close()
			return nil, fmt.Errorf("opening the namespace of %s: %w", n.Name, err)
		}
		ch := make(chan nl.RouteUpdate, 4096)
		err = h.SubscribeRoutes(ch, w.done, func(err error) {
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("%s: %w", n.Name, err)
			}
			w.mu.Unlock()
		})
		h.Close() // the subscription's socket keeps the namespace
		if err != nil {
			w.close()
			return nil, fmt.Errorf("subscribing to the routes of %s: %w", n.Name, err)
		}
		w.wg.Go(func() {
			for u := range ch {
				w.seen(k, u, time.Now())
			}
		})
	}
	return w, nil
}

// seen takes one route update of node k.
func (w *routeWatch) seen(k int, u nl.RouteUpdate, now time.Time) {
	p := u.Route.Dst
	if u.Deleted || !p.IsValid() || !p.IsSingleIP() {
		return
	}
	gws := []netip.Addr{u.Route.Gateway}
	for _, nh := range u.Route.Nexthops {
		gws = append(gws, nh.Gateway)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, wt := range w.waiters[p] {
		if !slices.Contains(gws, wt.gw) {
			continue
		}
		if nodes := wt.pending[p]; nodes[k] {
			delete(nodes, k)
			if wt.left--; wt.left == 0 {
				wt.last = now
				close(wt.all)
			}
		}
	}
}

// expect starts waiting for every prefix to be routed via gw on each of
// the nodes (indexes into the lab's nodes). Call it before the write that
// makes the routes.
func (w *routeWatch) expect(prefixes []netip.Prefix, gw netip.Addr, nodes []int) *routeWaiter {
	wt := &routeWaiter{gw: gw, pending: map[netip.Prefix]map[int]bool{}, all: make(chan struct{}), watch: w}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range prefixes {
		set := map[int]bool{}
		for _, k := range nodes {
			set[k] = true
		}
		wt.pending[p] = set
		wt.left += len(nodes)
		w.waiters[p] = append(w.waiters[p], wt)
	}
	if wt.left == 0 {
		close(wt.all)
	}
	return wt
}

// forget stops a waiter.
func (w *routeWatch) forget(wt *routeWaiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p := range wt.pending {
		w.waiters[p] = slices.DeleteFunc(w.waiters[p], func(o *routeWaiter) bool { return o == wt })
		if len(w.waiters[p]) == 0 {
			delete(w.waiters, p)
		}
	}
}

// wait returns when the last route arrived, or an error saying which are
// missing.
func (wt *routeWaiter) wait(ctx context.Context, timeout time.Duration) (time.Time, error) {
	defer wt.watch.forget(wt)
	t := time.NewTimer(timeout)
	defer t.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-wt.all:
			return wt.last, nil
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
			wt.watch.mu.Lock()
			defer wt.watch.mu.Unlock()
			var missing []string
			for p, nodes := range wt.pending {
				for k := range nodes {
					if len(missing) < 5 {
						missing = append(missing, fmt.Sprintf("%s on node %d", p, k+1))
					}
				}
			}
			return time.Time{}, fmt.Errorf("%d routes via %s not installed within %s (e.g. %v)", wt.left, wt.gw, timeout, missing)
		case <-tick.C:
			wt.watch.mu.Lock()
			err := wt.watch.err
			wt.watch.mu.Unlock()
			if err != nil {
				return time.Time{}, err
			}
		}
	}
}

// close ends every subscription.
func (w *routeWatch) close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}
