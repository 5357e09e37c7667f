package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

func init() {
	register("policy", "change→nftables latency, agent RSS and CPU with 50k/100k remote endpoints and 5,000 policies", runPolicy)
}

// policyScale is the size of the policy suite.
type policyScale struct {
	// Steps are the numbers of remote endpoints in the datastore at each
	// measurement, ascending: the suite loads up to each in turn.
	Steps    []int
	Policies int
	// Locals is the number of workloads on the node under test.
	Locals int
	// Changes is the number of changes of each kind per step.
	Changes int
	// Namespaces hold the endpoints and policies; the first
	// LocalNamespaces also hold the local workloads.
	Namespaces, LocalNamespaces int
	Apps                        int
}

func policyScaleFor(quick bool) policyScale {
	if quick {
		return policyScale{Steps: []int{2000, 4000}, Policies: 200, Locals: 10, Changes: 5, Namespaces: 20, LocalNamespaces: 4, Apps: 25}
	}
	return policyScale{Steps: []int{50000, 100000}, Policies: 5000, Locals: 200, Changes: 100, Namespaces: 20, LocalNamespaces: 4, Apps: 25}
}

// The synthetic cluster's fixed parts.
const (
	remotePool     = "10.96.0.0/13" // remote endpoints' addresses (524,288)
	sentinelNS     = "ns-00"
	sentinelPolicy = "bench-sentinel"
	sentinelLabel  = "bench.tabby.dev/sentinel"
	// Index ranges of remote endpoints outside the loaded ones.
	sentinelBase = 300000 // one per step, loaded last
	extraBase    = 400000 // created and deleted by the endpoint changes
	changePort   = 30000  // first port the policy changes set
	nftTable     = "tabby"
)

var (
	tiers      = []string{"frontend", "backend", "db", "cache"}
	tierCum    = cumulative([]float64{30, 40, 15, 15})
	versions   = []string{"v1", "v2", "v3"}
	versionCum = cumulative([]float64{20, 60, 20})
	ports      = []uint16{80, 443, 8080, 8443, 9090, 5432, 6379, 3306, 9200, 11211}
)

// procSample is what /proc says about a process.
type procSample struct {
	RSS, HWM int64 // bytes
	CPU      time.Duration
}

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for l := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		if k == "VmRSS" {
			s.RSS = kb << 10
		} else {
			s.HWM = kb << 10
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command (which may hold spaces): state is field
	// 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / userHZ
	return s, nil
}

func sizeLabel(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

// policyRun is one run of the suite: the lab, the datastore and the
// world.
type policyRun struct {
	o     *Options
	r     *Report
	st    *lab.State
	store datastore.Store
	w     *policyWorld
	ns    *netns.NS
	nft   *nftables.Conn // polling, in the node's namespace
	agent int            // the agent's PID
	slow  []slowSample   // changes slower than slowChange
}

type slowSample struct {
	what     string
	n        int
	d, agent time.Duration
}

func (s slowSample) String() string {
	return fmt.Sprintf("%s %d: %.0f ms at agent age %.1f s", s.what, s.n, float64(s.d)/float64(time.Millisecond), s.agent.Seconds())
}

// slowChange is the latency above which a change is listed in a note.
const slowChange = 100 * time.Millisecond

// agentAge is how long the agent has run (0 if unknown).
func (p *policyRun) agentAge() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	var up float64
	if _, err := fmt.Sscan(string(b), &up); err != nil {
		return 0
	}
	return time.Duration((up - float64(p.st.Nodes[0].Agent.StartTime)/userHZ) * float64(time.Second))
}

func runPolicy(ctx context.Context, o *Options, r *Report) (err error) {
	scale := policyScaleFor(o.Quick)
	// The load and sync happen once per step (loading again would need a
	// fresh lab); the changes are measured in r.Runs rounds.
	r.Runs = min(o.Runs, maxPolicyRounds)
	w, err := newPolicyWorld(scale, 9)
	if err != nil {
		return err
	}
	r.Params["endpoints"] = scale.Steps
	r.Params["policies"] = scale.Policies
	r.Params["localWorkloads"] = scale.Locals
	r.Params["changesPerKind"] = scale.Changes
	r.Params["namespaces"] = scale.Namespaces

	name := o.LabPrefix + "-p"
	o.Progressf("policy: lab %s (1 node)", name)
	st, err := lab.Up(ctx, lab.Config{Name: name, Nodes: 1, Binary: o.Binary, Log: o.Log})
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	defer func() {
		o.Progressf("policy: lab %s down", name)
		if derr := lab.Down(name, func(e error) { o.Log.Warn("lab down", "err", e) }); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	cfg := etcd.ClientConfig{Endpoints: []string{st.ClientURL}}
	cfg.Defaults()
	store, err := etcd.New(ctx, cfg, o.Log)
	if err != nil {
		return err
	}
	defer store.Close()
	ns, err := netns.Open(netns.NamedPath(st.Nodes[0].NetNS))
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return err
	}
	p := &policyRun{o: o, r: r, st: st, store: store, w: w, ns: ns, nft: c, agent: st.Nodes[0].Agent.PID}
	return p.run(ctx)
}

func (p *policyRun) run(ctx context.Context) error {
	o, r, w := p.o, p.r, p.w
	if err := p.put(ctx, w.base()); err != nil {
		return fmt.Errorf("writing tiers, namespaces and pool: %w", err)
	}

	t0 := time.Now()
	if err := p.runLocals(ctx); err != nil {
		return err
	}
	o.Progressf("policy: %d local workloads in %.1f s", len(w.locals), time.Since(t0).Seconds())
	r.Notes = append(r.Notes, fmt.Sprintf("%d local workloads attached through the CNI plugin in %.1f s, before the load.", len(w.locals), time.Since(t0).Seconds()))

	loaded := 0
	for si, n := range p.w.scale.Steps {
		label := sizeLabel(n) + " endpoints"
		last := si == len(p.w.scale.Steps)-1
		before, err := readProc(p.agent)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		start := time.Now()
		var objs []v1.Object
		if si == 0 {
			objs = append(append(objs, w.policies...), w.sentinel())
		}
		if err := p.put(ctx, objs); err != nil {
			return fmt.Errorf("writing policies: %w", err)
		}
		if err := p.putRemotes(ctx, loaded, n); err != nil {
			return fmt.Errorf("writing endpoints: %w", err)
		}
		sent := w.remote(sentinelBase + si)
		sent.Metadata.Namespace = sentinelNS
		sent.Metadata.Labels = map[string]string{"app": "bench-sentinel", sentinelLabel: strconv.Itoa(si)}
		if err := p.put(ctx, []v1.Object{sent}); err != nil {
			return err
		}
		written := time.Now()
		o.Progressf("policy: %s: %d objects written in %.1f s; waiting for the agent", label, n-loaded+len(objs)+1, written.Sub(start).Seconds())
		loaded = n
		at, err := p.waitSentinel(ctx, remoteAddr(sentinelBase+si), 4*time.Minute)
		if err != nil {
			return fmt.Errorf("%s: waiting for the agent to sync: %w", label, err)
		}
		settled, err := p.settle(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		after, err := readProc(p.agent)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		what := "the endpoints"
		if si == 0 {
			what = "the policies and endpoints"
		}
		o.Progressf("policy: %s: in the kernel %.1f s after the first write (%.1f s after the last), settled %.1f s later; agent RSS %d MB",
			label, at.Sub(start).Seconds(), at.Sub(written).Seconds(), settled.Seconds(), after.RSS>>20)
		r.Add(NewResult(label+": load+sync", "s", []float64{at.Sub(start).Seconds()}, ""))
		r.Add(NewResult(label+": sync after last write", "s", []float64{at.Sub(written).Seconds()}, ""))
		r.Add(NewResult(label+": agent CPU for load+sync", "s", []float64{(after.CPU - before.CPU).Seconds()}, ""))
		r.Notes = append(r.Notes, fmt.Sprintf("%s: writing %s took %.1f s; load+sync runs from the first write until the last (sentinel) endpoint is in the kernel.",
			label, what, written.Sub(start).Seconds()))
		if sets, elems, err := setStats(p.nft, nftTable); err == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: the node's table has %d sets with %d elements in all after the sync.", label, sets, elems))
		} else {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: counting the node's set elements: %v", label, err))
		}
		goal := ""
		if last {
			goal = "<= 500"
		}
		r.Add(NewResult(label+": agent RSS", "MB", []float64{float64(after.RSS) / (1 << 20)}, goal))
		r.Add(NewResult(label+": agent peak RSS", "MB", []float64{float64(after.HWM) / (1 << 20)}, ""))

		// Per round: each kind's p50 and p99, all changes' p50 and p99,
		// and the agent's CPU per change.
		perKind := map[string][2][]float64{}
		var all50, all99, cpuPer []float64
		for round := range r.Runs {
			lat, cpu, err := p.measureChanges(ctx, si, round, label)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", label, round+1, err)
			}
			var step []float64
			for _, k := range changeKinds {
				ms := Millis(lat[k])
				step = append(step, ms...)
				pk := perKind[k]
				pk[0], pk[1] = append(pk[0], Percentile(ms, 50)), append(pk[1], Percentile(ms, 99))
				perKind[k] = pk
			}
			all50, all99 = append(all50, Percentile(step, 50)), append(all99, Percentile(step, 99))
			cpuPer = append(cpuPer, float64(cpu)/float64(time.Millisecond)/float64(len(step)))
		}
		for _, k := range changeKinds {
			r.Add(NewResult(fmt.Sprintf("%s: %s→nftables p50", label, k), "ms", perKind[k][0], ""))
			r.Add(NewResult(fmt.Sprintf("%s: %s→nftables p99", label, k), "ms", perKind[k][1], ""))
		}
		goal = ""
		if last {
			goal = "<= 100"
		}
		r.Add(NewResult(label+": change→nftables p50", "ms", all50, ""))
		r.Add(NewResult(label+": change→nftables p99", "ms", all99, goal))
		r.Add(NewResult(label+": agent CPU per change", "ms", cpuPer, ""))
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d of %d policies apply to the node's workloads (all tiers); their rules select remote endpoints, so most endpoints are in a set the node uses; plus the sentinel policy %s/%s.",
			w.active, len(w.policies), sentinelNS, sentinelPolicy),
		fmt.Sprintf("Each step has %d changes of each kind: %s. Latency runs from just before the datastore write to the netlink notification of the nftables transaction that holds the expected set element or rule (a monitor in the node's namespace): the etcd write, the agent's watch, its batching (ApplyDelay 10 ms), the compile and the commit.",
			w.scale.Changes, strings.Join(changeKindsText, "; ")),
		fmt.Sprintf("The changes are measured in %d rounds per step; each change result is the median (min–max) of the rounds' percentiles. Percentiles per kind are over %d samples a round and the combined ones over %d (linear interpolation): p99 of %d samples lies between the two largest. Load, sync and RSS are measured once per step (a second load would need a fresh lab).",
			r.Runs, w.scale.Changes, 3*w.scale.Changes, w.scale.Changes),
		"Remote endpoints are WorkloadEndpoints of fake nodes (no Node resources) written straight into etcd, 128 per transaction; addresses from the pool "+remotePool+" that the node never allocates from.",
		"RSS: VmRSS of the agent after the sync settled (no nftables change for 1 s); peak: VmHWM. CPU: utime+stime from /proc/PID/stat; per change it is the agent's CPU over the change phase divided by the changes, so its background work counts too.")
	if o.Runs > maxPolicyRounds {
		r.Warnings = append(r.Warnings, fmt.Sprintf("--runs %d: this suite measures at most %d rounds of changes", o.Runs, maxPolicyRounds))
	}
	if len(p.slow) > 0 {
		byWhat := map[string]int{}
		for _, sc := range p.slow {
			byWhat[sc.what]++
		}
		var counts []string
		for _, k := range slices.Sorted(maps.Keys(byWhat)) {
			counts = append(counts, fmt.Sprintf("%s %d", k, byWhat[k]))
		}
		slices.SortFunc(p.slow, func(a, b slowSample) int { return cmp.Compare(b.d, a.d) })
		var top []string
		for _, sc := range p.slow[:min(5, len(p.slow))] {
			top = append(top, sc.String())
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%d changes took over %s (%s); the slowest: %s. (The agent resyncs nftables, routes and links in its loop every 90 s of its age.)",
			len(p.slow), slowChange, strings.Join(counts, ", "), strings.Join(top, "; ")))
	}
	return nil
}

// The kinds of change, in the order they are measured.
var (
	changeKinds     = []string{"label change", "policy change", "endpoint add/delete"}
	changeKindsText = []string{
		"a remote endpoint's app label switched out of and back into a set the node uses (element deleted, added)",
		"the port of an active NetworkPolicy's ingress rule changed (a new rule in its chain)",
		"a remote endpoint that an active set selects created, then deleted (element added, deleted)",
	}
)

// put writes objects straight into the store, 128 to a transaction, four
// transactions at a time.
func (p *policyRun) put(ctx context.Context, objs []v1.Object) error {
	return p.putN(ctx, len(objs), func(i int) v1.Object { return objs[i] })
}

func (p *policyRun) putRemotes(ctx context.Context, from, to int) error {
	return p.putN(ctx, to-from, func(i int) v1.Object { return p.w.remote(from + i) })
}

func (p *policyRun) putN(ctx context.Context, n int, obj func(int) v1.Object) error {
	const workers = 4
	chunks := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for lo := range chunks {
				ops := make([]datastore.Op, 0, etcd.MaxTxnOps)
				for i := lo; i < min(lo+etcd.MaxTxnOps, n); i++ {
					o := obj(i)
					k, err := datastore.KeyOf(o)
					if err != nil {
						errc <- err
						return
					}
					b, err := datastore.Encode(o)
					if err != nil {
						errc <- err
						return
					}
					ops = append(ops, datastore.Op{Type: datastore.OpPut, KV: datastore.KV{Key: k, Value: b}})
				}
				if _, err := p.store.Txn(ctx, ops); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for lo := 0; lo < n; lo += etcd.MaxTxnOps {
		select {
		case chunks <- lo:
		case err = <-errc:
			break feed
		}
	}
	close(chunks)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errc:
	default:
	}
	return err
}

// runLocals attaches the local workloads through the CNI plugin, four at
// a time.
func (p *policyRun) runLocals(ctx context.Context) error {
	const workers = 4
	todo := make(chan lab.WorkloadConfig)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for cfg := range todo {
				cfg.Binary, cfg.Timeout = p.o.Binary, time.Minute
				if _, err := lab.Run(ctx, p.st.Name, cfg); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("workload %s/%s: %w", cfg.Namespace, cfg.Name, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, cfg := range p.w.locals {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		todo <- cfg
	}
	close(todo)
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// waitSentinel polls the sentinel policy's set until it holds a.
func (p *policyRun) waitSentinel(ctx context.Context, a netip.Addr, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	chain := "pi-np/" + sentinelNS + "/" + sentinelPolicy
	for {
		ok, err := chainSetHas(p.nft, nftTable, chain, a)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return time.Now(), nil
		}
		if !p.st.Nodes[0].Agent.Alive() {
			return time.Time{}, fmt.Errorf("the agent exited (log %s)", p.st.Nodes[0].Agent.Log)
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("sentinel %s not in the set of chain %s after %s", a, chain, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle waits until the node's ruleset has not changed for a second.
func (p *policyRun) settle(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < 2*time.Minute {
		wt, err := watchNFT(p.ns.Fd())
		if err != nil {
			return 0, err
		}
		_, err = wt.quiet(ctx, time.Second, 2*time.Minute-time.Since(start))
		wt.Close()
		if err == nil {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// The monitor overflowed under a large transaction: watch again.
	}
	return 0, errors.New("the nftables ruleset is still changing after 2 minutes")
}

// measureChanges makes the changes of each kind one at a time and returns
// their latencies by kind, and the agent's CPU time over all of them.
// maxPolicyRounds bounds the rounds of changes per step: each round's
// ports and extra endpoints have a range of their own (1,000 wide).
const maxPolicyRounds = 5

func (p *policyRun) measureChanges(ctx context.Context, step, round int, label string) (map[string][]time.Duration, time.Duration, error) {
	w := p.w
	n := w.scale.Changes
	// Each round changes endpoints of its own: with an odd number of
	// changes, a round leaves its last endpoint out of its set.
	per := (n + 1) / 2
	cands := w.labelCandidates(per*(round+1), w.scale.Steps[step], step*1000)
	if len(cands) < per*(round+1) {
		return nil, 0, fmt.Errorf("only %d remote endpoints in used sets", len(cands))
	}
	cands = cands[per*round:]
	wt, err := watchNFT(p.ns.Fd())
	if err != nil {
		return nil, 0, err
	}
	defer wt.Close()
	before, err := readProc(p.agent)
	if err != nil {
		return nil, 0, err
	}
	jitter := rand.New(rand.NewPCG(uint64(step), uint64(7+round)))
	base := step*10000 + round*1000 // distinct ports and endpoints per step and round
	lat := map[string][]time.Duration{}
	for _, kind := range changeKinds {
		for k := range n {
			var obj v1.Object
			var del bool
			var match func(*nftables.MonitorEvent) bool
			switch kind {
			case "label change":
				e := w.remote(cands[k/2])
				ev := nftables.MonitorEventTypeNewSetElem
				if k%2 == 0 {
					e.Metadata.Labels["app"] = "app-none"
					ev = nftables.MonitorEventTypeDelSetElem
				}
				obj, match = e, elemChange(ev, remoteAddr(cands[k/2]))
			case "policy change":
				np := *w.activeNPs[k%len(w.activeNPs)]
				np.Spec.Ingress = []v1.Rule{np.Spec.Ingress[0]}
				port := uint16(changePort + base + k)
				np.Spec.Ingress[0].Destination.Ports = []v1.Port{v1.PortNumber(port)}
				obj = &np
				match = newRuleWithPort("pi-np/"+np.Metadata.Namespace+"/"+np.Metadata.Name, port)
			case "endpoint add/delete":
				i := extraBase + base + k/2
				ev := nftables.MonitorEventTypeNewSetElem
				if k%2 == 1 {
					del, ev = true, nftables.MonitorEventTypeDelSetElem
				}
				obj, match = w.usedRemote(i), elemChange(ev, remoteAddr(i))
			}
			d, err := p.change(ctx, wt, obj, del, match)
			if err != nil {
				return nil, 0, fmt.Errorf("%s %d: %w", kind, k+1, err)
			}
			lat[kind] = append(lat[kind], d)
			if d > slowChange {
				sc := slowSample{label + " " + kind, k + 1, d, p.agentAge()}
				p.slow = append(p.slow, sc)
				p.o.Progressf("policy: %s", sc)
			}
			// Let the agent's batching window pass, at a random phase.
			time.Sleep(time.Duration(20+jitter.IntN(30)) * time.Millisecond)
		}
		ms := Millis(lat[kind])
		var even, odd []float64 // label: out/in; endpoint: add/delete
		for i, v := range ms {
			if i%2 == 0 {
				even = append(even, v)
			} else {
				odd = append(odd, v)
			}
		}
		p.o.Progressf("policy: %s: %d %ss: p50 %.1f ms, p99 %.1f ms, max %.1f ms (1st/2nd of each pair: p50 %.1f/%.1f ms)",
			label, n, kind, Percentile(ms, 50), Percentile(ms, 99), slices.Max(ms), Percentile(even, 50), Percentile(odd, 50))
	}
	after, err := readProc(p.agent)
	if err != nil {
		return nil, 0, err
	}
	return lat, after.CPU - before.CPU, nil
}

// change writes (or deletes) obj and returns the time until the watch
// sees a change that match accepts.
func (p *policyRun) change(ctx context.Context, wt *nftWatch, obj v1.Object, del bool, match func(*nftables.MonitorEvent) bool) (time.Duration, error) {
	if err := wt.drain(); err != nil {
		return 0, err
	}
	k, err := datastore.KeyOf(obj)
	if err != nil {
		return 0, err
	}
	b, err := datastore.Encode(obj)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if del {
		_, err = p.store.Delete(ctx, k, 0)
	} else {
		_, err = p.store.Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: datastore.KV{Key: k, Value: b}}})
	}
	if err != nil {
		return 0, err
	}
	at, err := wt.wait(ctx, 10*time.Second, match)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", k, err)
	}
	return at.Sub(start), nil
}
