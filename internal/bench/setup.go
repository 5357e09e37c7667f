package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

func init() {
	register("setup", "workloads created through CNI per second, and their time to ready (1 and 3 nodes)", runSetup)
}

const (
	// setupParallel is how many CNI ADDs run at once: enough to keep
	// both cores busy while some ADDs wait for the datastore or the
	// agent, few enough that ADDs do not just queue for the CPU.
	setupParallel = 8
	// probeInterval is how often the prober pings a workload that has not
	// answered yet.
	probeInterval = 5 * time.Millisecond
	// readyTimeout bounds the wait for the last workloads to answer.
	readyTimeout = 60 * time.Second
	// setupBudget is how long the suite may take: it starts no run that
	// would end later.
	setupBudget = 5 * time.Minute
)

func runSetup(ctx context.Context, o *Options, r *Report) error {
	n := 500
	if o.Quick {
		n = 20
	}
	r.Params["workloads"] = n
	r.Params["parallelADDs"] = setupParallel
	r.Params["nodes"] = []int{1, 3}
	r.Params["probeIntervalMs"] = float64(probeInterval) / float64(time.Millisecond)
	r.Notes = append(r.Notes,
		"Workloads are created with the lab's CNI path (libcni ADD from the node's namespace, the real plugin and IPAM), "+
			fmt.Sprintf("%d ADDs at a time; their network namespaces are created before timing starts, ", setupParallel)+
			"as a container runtime creates the namespace before it calls CNI.",
		"Time-to-ready runs from the start of a workload's ADD to the first ICMP echo reply it sends to the prober, "+
			"a workload made first on n1 (on 3 nodes, workloads go round-robin over the nodes, so two thirds of the probes cross "+
			"the fabric over BGP-learned routes). The prober pings a workload every 5 ms from the moment its address is known: "+
			"when the plugin writes its WorkloadEndpoint (seen through a datastore watch; after IPAM and the veth, before the "+
			"plugin waits for the agent), or when its ADD returns, whichever comes first. The lab's profile allows everything.",
		"workloads/s is the number of workloads divided by the time from the first ADD's start until the last workload answered.",
		"The goals (>= 200/s, p99 <= 250 ms) are for one 2-core node; 3 nodes share the same cores.")
	type series struct{ rates, p50s, p99s []float64 }
	results := map[int]*series{1: {}, 3: {}}
	start := time.Now()
	runs := 0
	for run := 1; run <= o.Runs; run++ {
		// Stay within the budget: a node with many endpoints makes the
		// agent slow, and a run's time is not known in advance.
		if perRun := time.Since(start) / time.Duration(max(runs, 1)); runs > 0 && time.Since(start)+perRun > setupBudget {
			r.Warnings = append(r.Warnings, fmt.Sprintf("stopped after %d of %d runs: another run (%s each) would take the suite past %s",
				runs, o.Runs, perRun.Round(time.Second), setupBudget))
			break
		}
		for _, nodes := range []int{1, 3} {
			o.Progressf("setup: %d workloads on %d node(s), run %d/%d", n, nodes, run, o.Runs)
			m, err := setupOnce(ctx, o, nodes, n)
			if err != nil {
				return fmt.Errorf("%d node(s), run %d: %w", nodes, run, err)
			}
			ttr := Millis(m.ready)
			s := results[nodes]
			s.rates = append(s.rates, m.rate)
			s.p50s = append(s.p50s, Percentile(ttr, 50))
			s.p99s = append(s.p99s, Percentile(ttr, 99))
			o.Log.Info("setup run", "nodes", nodes, "run", run, "rate", m.rate, "p50", Percentile(ttr, 50), "p99", Percentile(ttr, 99),
				"addP50", Percentile(Millis(m.add), 50), "addP99", Percentile(Millis(m.add), 99))
		}
		runs++
	}
	r.Runs = runs
	for _, nodes := range []int{1, 3} {
		s := results[nodes]
		label := fmt.Sprintf("%d node", nodes)
		rateGoal, p99Goal := "", ""
		if nodes == 1 {
			rateGoal, p99Goal = ">= 200", "<= 250"
		} else {
			label += "s"
		}
		r.Add(NewResult(label+": workloads/s", "/s", s.rates, rateGoal))
		r.Add(NewResult(label+": time-to-ready p50", "ms", s.p50s, ""))
		r.Add(NewResult(label+": time-to-ready p99", "ms", s.p99s, p99Goal))
	}
	return nil
}

// setupRun is what one run of the setup suite measured.
type setupRun struct {
	rate  float64         // workloads per second
	ready []time.Duration // time-to-ready of each workload
	add   []time.Duration // duration of each ADD
}

// setupOnce creates n workloads on a new lab of the given number of
// nodes and measures them.
func setupOnce(ctx context.Context, o *Options, nodes, n int) (m setupRun, err error) {
	name, err := labName(o, fmt.Sprintf("s%d", nodes))
	if err != nil {
		return m, err
	}
	err = withLab(ctx, o, lab.Config{Name: name, Nodes: nodes}, func(l *benchLab) error {
		pw, err := lab.Run(ctx, l.Name, lab.WorkloadConfig{Name: "prober", Node: "n1", Binary: o.Binary})
		if err != nil {
			return fmt.Errorf("the prober: %w", err)
		}
		pr, err := newProber(pw.NetNS, n)
		if err != nil {
			return err
		}
		defer pr.close()

		cfgs := make([]lab.WorkloadConfig, n)
		index := map[string]int{}
		for i := range cfgs {
			cfgs[i] = lab.WorkloadConfig{Name: fmt.Sprintf("w%04d", i), Node: fmt.Sprintf("n%d", i%nodes+1)}
			index[cfgs[i].Name] = i // the CNI container ID of a workload of namespace default
		}
		c, err := l.Client(ctx)
		if err != nil {
			return err
		}
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		if err := watchEndpointAddrs(wctx, c, func(containerID string, a netip.Addr) {
			if i, ok := index[containerID]; ok {
				pr.add(i, a)
			}
		}); err != nil {
			return err
		}

		starts := make([]time.Time, n)
		m.add = make([]time.Duration, n)
		_, err = lab.RunBatch(ctx, l.Name, cfgs, lab.BatchOptions{
			Parallel: setupParallel,
			Added: func(i int, w lab.Workload, started time.Time, err error) {
				starts[i], m.add[i] = started, time.Since(started)
				if err == nil {
					pr.add(i, w.IPv4)
				}
			},
		})
		if err != nil {
			return fmt.Errorf("creating %d workloads: %w", n, err)
		}
		replies, err := pr.wait(ctx, readyTimeout)
		if err != nil {
			return err
		}
		first, last := slices.MinFunc(starts, time.Time.Compare), slices.MaxFunc(replies, time.Time.Compare)
		m.rate = float64(n) / last.Sub(first).Seconds()
		for i := range n {
			m.ready = append(m.ready, replies[i].Sub(starts[i]))
		}
		return nil
	})
	return m, err
}

// watchEndpointAddrs calls fn (from one goroutine) with the CNI container
// ID and IPv4 address of every WorkloadEndpoint written from now on, until
// ctx ends.
func watchEndpointAddrs(ctx context.Context, c *datastore.Client, fn func(containerID string, a netip.Addr)) error {
	info, _ := v1.LookupKind("WorkloadEndpoint")
	prefix := datastore.Prefix{Kind: info.Kind}
	_, rev, err := c.Store().List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("listing the workload endpoints: %w", err)
	}
	ch, err := c.Store().Watch(ctx, prefix, rev)
	if err != nil {
		return fmt.Errorf("watching the workload endpoints: %w", err)
	}
	go func() {
		for ev := range ch {
			if ev.Type != datastore.EventAdded && ev.Type != datastore.EventModified {
				continue
			}
			obj, err := datastore.Decode(ev.KV)
			wep, ok := obj.(*v1.WorkloadEndpoint)
			if err != nil || !ok {
				continue
			}
			for _, s := range wep.Spec.IPNetworks {
				if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
					fn(wep.Spec.ContainerID, p.Addr())
				}
			}
		}
	}()
	return nil
}

// prober pings workloads from inside one workload's namespace (a raw
// ICMP socket made there) until each answers once, and records when.
type prober struct {
	conn *icmp.PacketConn
	id   int
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	pending map[netip.Addr]int // address → workload, not answered yet
	known   []bool             // the workload's address is known
	replies []time.Time        // first reply of each workload
	left    int                // workloads that have not answered
	all     chan struct{}      // closed when left reaches 0
}

func newProber(nsName string, n int) (*prober, error) {
	ns, err := netns.Open(netns.NamedPath(nsName))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var conn *icmp.PacketConn
	if err := ns.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("opening an ICMP socket in %s: %w", nsName, err)
	}
	p := &prober{
		conn: conn, id: os.Getpid() & 0xffff, done: make(chan struct{}),
		pending: map[netip.Addr]int{}, known: make([]bool, n), replies: make([]time.Time, n),
		left: n, all: make(chan struct{}),
	}
	p.wg.Add(2)
	go p.send()
	go p.receive()
	return p, nil
}

// add starts pinging workload i at address a (again calls do nothing).
func (p *prober) add(i int, a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[i] || !a.IsValid() {
		return
	}
	p.known[i] = true
	p.pending[a] = i
	p.ping(a, 0)
}

// ping sends one echo request to a.
func (p *prober) ping(a netip.Addr, seq int) {
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq & 0xffff, Data: []byte("tabby-bench")}}
	b, err := msg.Marshal(nil)
	if err == nil {
		// Errors (no route yet) are expected until the workload is ready.
		_, _ = p.conn.WriteTo(b, &net.IPAddr{IP: a.AsSlice()})
	}
}

func (p *prober) send() {
	defer p.wg.Done()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for a := range p.pending {
			p.ping(a, seq)
		}
		p.mu.Unlock()
	}
}

func (p *prober) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, peer, err := p.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		ipa, ok2 := peer.(*net.IPAddr)
		if !ok || !ok2 || echo.ID != p.id {
			continue
		}
		a, _ := netip.AddrFromSlice(ipa.IP)
		p.mu.Lock()
		if i, ok := p.pending[a.Unmap()]; ok {
			delete(p.pending, a.Unmap())
			p.replies[i] = now
			if p.left--; p.left == 0 {
				close(p.all)
			}
		}
		p.mu.Unlock()
	}
}

// wait returns the first reply of every workload once all have
// answered.
func (p *prober) wait(ctx context.Context, timeout time.Duration) ([]time.Time, error) {
	select {
	case <-p.all:
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.Clone(p.replies), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(timeout):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	unknown := 0
	for _, k := range p.known {
		if !k {
			unknown++
		}
	}
	return nil, fmt.Errorf("%d of %d workloads did not answer the prober within %s (%d with an unknown address)", p.left, len(p.replies), timeout, unknown)
}

func (p *prober) close() {
	close(p.done)
	p.conn.Close()
	p.wg.Wait()
}
