package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
)

// Live migration (Move) keeps the workload's namespace (its "VM") and its
// addresses and moves its attachment from one node to another:
//
//  1. IPAM: the addresses go from the old attachment's handle to the new
//     one's (ipam.TransferHandle, one transaction per block), so they are
//     never free and no other workload can get them in between. The new
//     attachment has a container ID of its own (ID-mvN), hence a handle,
//     a WorkloadEndpoint name and a host interface of its own.
//  2. The workload's eth0 (the old veth) is deleted. The connectivity gap
//     starts here: the new eth0 cannot exist before, since the plugin
//     creates it under the same name with the same addresses and routes.
//  3. At the same time: CNI DEL of the old attachment on the old node
//     (without the workload's namespace, so that the new eth0 is left
//     alone: the plugin removes the old host side, the old endpoint and
//     releases the old handle, which holds nothing any more), and CNI ADD
//     of the new one on the new node (through the node's configuration,
//     as lab run does), which finds the addresses in its handle, creates
//     eth0 with them and the endpoint with the same labels, and returns
//     once the new node's agent has programmed it.
//  4. The new endpoint is annotated tabby.dev/route-priority=elevated:
//     its node advertises the /32 and /128 with LOCAL_PREF 200, so that
//     every node prefers them to whatever the old node still advertises.
//     Once the old attachment is gone, the annotation is removed.
//
// Policy follows because the new endpoint has the same labels and
// profile. A probe stream (ICMP echo every 10 ms, IPv4 and IPv6) from
// another workload measures the gap.

// MoveConfig describes a live migration.
type MoveConfig struct {
	// Workload is "name" (namespace default) or "namespace/name".
	Workload string
	// Node is the node to move to.
	Node string
	// ProbeFrom is the workload that probes the moving one during the
	// move; empty picks one: the first that gets an ICMP answer from it
	// now, trying workloads on neither the old nor the new node first,
	// then on the old node, then any other.
	ProbeFrom string
	// Interval between probes (default 10ms); a probe counts when its
	// answer comes within ProbeTimeout (default 100ms).
	Interval, ProbeTimeout time.Duration
	// Timeout bounds the move (default 60s).
	Timeout time.Duration
	// Begin, if set, is told once the arguments are checked, before
	// anything changes: what moves where, and who probes (empty: nobody).
	Begin func(workload, from, to, probeFrom string)
	// Step, if set, is told each step of the move and how long it took.
	Step func(step string, took time.Duration)
}

// Defaults fills in the zero fields.
func (c *MoveConfig) Defaults() {
	if c.Interval == 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 100 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
}

// Validate checks the fields that do not need the lab's state.
func (c *MoveConfig) Validate() error {
	var errs []error
	if c.Workload == "" {
		errs = append(errs, errors.New("workload: missing"))
	}
	if c.Node == "" {
		errs = append(errs, errors.New("node: missing"))
	}
	if c.Interval < time.Millisecond || c.Interval > time.Second {
		errs = append(errs, fmt.Errorf("probe interval %s: want 1ms to 1s", c.Interval))
	}
	if c.ProbeTimeout < c.Interval || c.ProbeTimeout > 10*time.Second {
		errs = append(errs, fmt.Errorf("probe timeout %s: want the interval (%s) to 10s", c.ProbeTimeout, c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want more than 0", c.Timeout))
	}
	return errors.Join(errs...)
}

// MoveResult is what Move did. Durations are in nanoseconds in JSON.
type MoveResult struct {
	Workload string     `json:"workload"`
	From     string     `json:"from"`
	To       string     `json:"to"`
	IPv4     netip.Addr `json:"ipv4,omitzero"`
	IPv6     netip.Addr `json:"ipv6,omitzero"`
	// OldEndpoint and Endpoint are the WorkloadEndpoints before and
	// after (in the workload's namespace); ContainerID and Interface are
	// the new attachment's.
	OldEndpoint string `json:"oldEndpoint"`
	Endpoint    string `json:"endpoint"`
	ContainerID string `json:"containerID"`
	Interface   string `json:"interface"`
	// Took is the whole move, from the IPAM transfer to the removal of
	// the elevated priority; Steps its parts.
	Took  time.Duration `json:"took"`
	Steps []MoveStep    `json:"steps"`
	// Probe is the connectivity measured during the move; nil (and
	// NoProbe says why) when there was nothing to probe from.
	Probe   *GapReport `json:"probe,omitempty"`
	NoProbe string     `json:"noProbe,omitempty"`
}

// MoveStep is one step of a move.
type MoveStep struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took"`
}

// GapReport is what the probe stream saw.
type GapReport struct {
	From     string        `json:"from"`
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	// Gap is the longest of the families' gaps.
	Gap      time.Duration `json:"gap"`
	Families []FamilyGap   `json:"families"`
}

// FamilyGap is the probe stream of one address family.
type FamilyGap struct {
	Family int        `json:"family"`
	To     netip.Addr `json:"to"`
	Sent   int        `json:"sent"`
	// Answered counts the probes answered within the timeout.
	Answered int `json:"answered"`
	// Gap is the longest time between two answered probes (by their send
	// times; at least the interval), or, if the stream never got an
	// answer again after the move, from the last answered probe to the
	// end of the stream.
	Gap time.Duration `json:"gap"`
	// Baseline is false if no probe was answered before the move (the
	// path was not open: a policy, for instance); Gap is then not
	// measured. Restored is false if none was answered after it.
	Baseline bool `json:"baseline"`
	Restored bool `json:"restored"`
}

// Move live-migrates a workload to another node, keeping its addresses
// (see the comment at the top of this file), while a probe stream from
// another workload measures the connectivity gap. Bad arguments (an
// unknown workload or node, the node the workload is on) change nothing.
// If the new attachment fails, the old one is restored.
func Move(ctx context.Context, labName string, cfg MoveConfig) (*MoveResult, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := Load(labName)
	if err != nil {
		return nil, err
	}
	w, probers, err := moveArgs(st, cfg)
	if err != nil {
		return nil, err
	}
	if !st.Datastore.Alive() {
		return nil, fmt.Errorf("lab %s: the datastore is not running", st.Name)
	}
	c, err := connect(ctx, st)
	if err != nil {
		return nil, err
	}
	defer c.Store().Close()
	alloc, err := ipam.New(c.Store(), ipam.Config{})
	if err != nil {
		return nil, err
	}
	old := *w
	nw := old
	nw.Node, nw.ContainerID, nw.Interface, nw.Endpoint = cfg.Node, nextContainerID(st, old), "", ""
	oldHandle := cni.HandleID(networkName, old.ContainerID, "eth0")
	newHandle := cni.HandleID(networkName, nw.ContainerID, "eth0")
	if err := checkHandles(ctx, alloc, old, oldHandle, newHandle); err != nil {
		return nil, err
	}

	probeFrom := pickProber(ctx, st, old, probers)
	res := &MoveResult{Workload: old.ID(), From: old.Node, To: nw.Node, IPv4: old.IPv4, IPv6: old.IPv6, OldEndpoint: old.Endpoint}
	if cfg.Begin != nil {
		pf := ""
		if probeFrom != nil {
			pf = probeFrom.ID()
		}
		cfg.Begin(res.Workload, res.From, res.To, pf)
	}
	var stream *probeStream
	if probeFrom == nil {
		res.NoProbe = fmt.Sprintf("lab %s has no other workload to probe %s from, so no gap was measured", st.Name, old.ID())
	} else {
		if stream, err = startProbeStream(ctx, *probeFrom, old, cfg.Interval, cfg.ProbeTimeout); err != nil {
			return nil, err
		}
		defer stream.close()
		stream.waitBaseline(ctx, 3*time.Second)
	}

	start := time.Now()
	last := start
	step := func(name string) {
		now := time.Now()
		res.Steps = append(res.Steps, MoveStep{Name: name, Took: now.Sub(last)})
		if cfg.Step != nil {
			cfg.Step(name, now.Sub(last))
		}
		last = now
	}
	err = moveAttachment(ctx, st, c, alloc, &old, &nw, oldHandle, newHandle, step)
	res.Took = time.Since(start)
	if stream != nil {
		res.Probe = stream.finish(ctx, start, start.Add(res.Took))
	}
	if err != nil {
		return res, err
	}
	res.Endpoint, res.ContainerID, res.Interface = nw.Endpoint, nw.ContainerID, nw.Interface
	return res, nil
}

// pickProber returns the first of the candidates whose ICMP echo the
// workload answers now (policy may deny some), else the first candidate,
// else nil. With one candidate (--probe-from) it does not probe.
func pickProber(ctx context.Context, st *State, w Workload, candidates []*Workload) *Workload {
	if len(candidates) < 2 {
		if len(candidates) == 0 {
			return nil
		}
		return candidates[0]
	}
	for _, c := range candidates {
		if Probe(ctx, st, ProbeSpec{From: c.ID(), To: w.ID(), Proto: "icmp", Family: 4, Timeout: 300 * time.Millisecond}) == nil {
			return c
		}
	}
	return candidates[0]
}

// moveArgs finds the workload and the candidate probers (in order of
// preference), and checks the node.
func moveArgs(st *State, cfg MoveConfig) (w *Workload, probers []*Workload, err error) {
	w, ok := st.Workload(cfg.Workload)
	if !ok {
		return nil, nil, fmt.Errorf("lab %s has no workload %q", st.Name, cfg.Workload)
	}
	if _, ok := st.Node(cfg.Node); !ok {
		var names []string
		for _, n := range st.Nodes {
			names = append(names, n.Name)
		}
		return nil, nil, fmt.Errorf("--node %q: lab %s has no such node (it has %s)", cfg.Node, st.Name, strings.Join(names, ", "))
	}
	if w.Node == cfg.Node {
		return nil, nil, fmt.Errorf("--node %s: workload %s is on %s already", cfg.Node, w.ID(), cfg.Node)
	}
	if w.ContainerID == "" || w.Endpoint == "" || !w.IPv4.IsValid() {
		return nil, nil, fmt.Errorf("workload %s is not attached (its lab run did not finish)", w.ID())
	}
	if cfg.ProbeFrom != "" {
		p, ok := st.Workload(cfg.ProbeFrom)
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("--probe-from %q: lab %s has no such workload", cfg.ProbeFrom, st.Name)
		case p.ID() == w.ID():
			return nil, nil, fmt.Errorf("--probe-from %s: the moving workload cannot probe itself", p.ID())
		}
		return w, []*Workload{p}, nil
	}
	// Elsewhere first (the probe then crosses the fabric before and
	// after), then the old node, then the new one.
	seen := map[string]bool{}
	for _, pass := range []func(o *Workload) bool{
		func(o *Workload) bool { return o.Node != w.Node && o.Node != cfg.Node },
		func(o *Workload) bool { return o.Node == w.Node },
		func(*Workload) bool { return true },
	} {
		for i := range st.Workloads {
			o := &st.Workloads[i]
			if o.ID() != w.ID() && o.IPv4.IsValid() && pass(o) && !seen[o.ID()] {
				seen[o.ID()] = true
				probers = append(probers, o)
			}
		}
	}
	return w, probers, nil
}

// nextContainerID is the container ID of a workload's next attachment:
// its base ID (the workload's name) with "-mvN", N one more than now (or
// more, if another workload has or would have that ID: the API allows
// only letters, digits and '-' in container IDs).
func nextContainerID(st *State, w Workload) string {
	base, gen := w.ContainerID, 0
	if i := strings.LastIndex(base, "-mv"); i >= 0 {
		if n, err := strconv.Atoi(base[i+3:]); err == nil && n > 0 {
			base, gen = base[:i], n
		}
	}
	for {
		gen++
		id := base + "-mv" + strconv.Itoa(gen)
		if !slices.ContainsFunc(st.Workloads, func(o Workload) bool { return o.ContainerID == id || containerID(o) == id }) {
			return id
		}
	}
}

// checkHandles checks that the old handle holds exactly the workload's
// addresses and that the new one holds nothing, before anything changes.
func checkHandles(ctx context.Context, alloc *ipam.Allocator, w Workload, oldHandle, newHandle string) error {
	have, err := alloc.IPsByHandle(ctx, oldHandle)
	if err != nil {
		return err
	}
	want := []netip.Addr{w.IPv4}
	if w.IPv6.IsValid() {
		want = append(want, w.IPv6)
	}
	slices.SortFunc(have, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(have, want) {
		return fmt.Errorf("workload %s: IPAM handle %s holds %v, but the workload has %v; not moving it", w.ID(), oldHandle, have, want)
	}
	if have, err = alloc.IPsByHandle(ctx, newHandle); err != nil {
		return err
	}
	if len(have) > 0 {
		return fmt.Errorf("workload %s: the new attachment's IPAM handle %s holds %v already (left by a failed move?); not moving it", w.ID(), newHandle, have)
	}
	return nil
}

// moveAttachment does steps 1 to 4 and records the new attachment in the
// state. If the new attachment fails, it restores the old one.
func moveAttachment(ctx context.Context, st *State, c *datastore.Client, alloc *ipam.Allocator, old, nw *Workload, oldHandle, newHandle string, step func(string)) error {
	attrs := map[string]string{ipam.AttrNamespace: old.Namespace}
	if _, err := alloc.TransferHandle(ctx, ipam.TransferArgs{From: oldHandle, To: newHandle, Node: nw.Node, Attrs: attrs}); err != nil {
		return fmt.Errorf("moving the addresses to IPAM handle %s: %w", newHandle, err)
	}
	step(fmt.Sprintf("IPAM: addresses moved from handle %s to %s", oldHandle, newHandle))

	if err := deleteWorkloadIf(old.NetNS, "eth0"); err != nil {
		// Nothing is lost yet: give the addresses back.
		_, terr := alloc.TransferHandle(ctx, ipam.TransferArgs{From: newHandle, To: oldHandle, Node: old.Node, Attrs: attrs})
		return errors.Join(fmt.Errorf("deleting eth0 of %s: %w", old.ID(), err), terr)
	}
	step("old eth0 deleted (the gap starts)")

	delDone := make(chan error, 1)
	go func() { delDone <- detachOld(ctx, st, *old) }()
	addErr := cniAdd(ctx, st, nw)
	if addErr == nil && (nw.IPv4 != old.IPv4 || nw.IPv6 != old.IPv6) {
		addErr = fmt.Errorf("the new attachment got %v %v instead of %v %v", nw.IPv4, nw.IPv6, old.IPv4, old.IPv6)
	}
	if addErr == nil {
		nw.Endpoint, addErr = endpointName(ctx, c, *nw)
	}
	if addErr != nil {
		delErr := <-delDone
		return errors.Join(addErr, delErr, restore(ctx, st, alloc, old, nw, oldHandle, newHandle))
	}
	step(fmt.Sprintf("CNI ADD on %s: endpoint %s, interface %s", nw.Node, nw.Endpoint, nw.Interface))
	elevErr := setRoutePriority(ctx, c, nw.Namespace, nw.Endpoint, true)
	if elevErr == nil {
		step("route priority of " + nw.Endpoint + " elevated")
	}
	// The workload is attached to the new node: record it before
	// anything else can fail, so that Down detaches the right attachment.
	if err := update(st.Name, func(s *State) error {
		p, ok := s.Workload(old.ID())
		if !ok {
			return fmt.Errorf("workload %s vanished from the lab's state", old.ID())
		}
		p.Node, p.ContainerID, p.Interface, p.Endpoint = nw.Node, nw.ContainerID, nw.Interface, nw.Endpoint
		return nil
	}); err != nil {
		return errors.Join(err, <-delDone)
	}
	if err := <-delDone; err != nil {
		return fmt.Errorf("the workload moved, but %w; its old endpoint %s may be left in the datastore", err, old.Endpoint)
	}
	step(fmt.Sprintf("CNI DEL on %s: endpoint %s removed", old.Node, old.Endpoint))
	if elevErr != nil {
		return fmt.Errorf("the workload moved, but elevating its route priority failed: %w", elevErr)
	}
	if err := setRoutePriority(ctx, c, nw.Namespace, nw.Endpoint, false); err != nil {
		return fmt.Errorf("the workload moved, but its route priority is still elevated: %w", err)
	}
	step("route priority back to normal")
	return nil
}

// restore puts the old attachment back after a failed ADD: the
// addresses back to the old handle (the plugin's undo may have released
// them already: then they are assigned again) and ADD on the old node.
func restore(ctx context.Context, st *State, alloc *ipam.Allocator, old, nw *Workload, oldHandle, newHandle string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	attrs := map[string]string{ipam.AttrNamespace: old.Namespace}
	if _, err := alloc.TransferHandle(ctx, ipam.TransferArgs{From: newHandle, To: oldHandle, Node: old.Node, Attrs: attrs}); err != nil {
		return fmt.Errorf("restoring: %w", err)
	}
	// The failed ADD undid itself; DEL once more in case it could not
	// (its handle holds nothing now).
	_ = detachOld(ctx, st, *nw)
	for _, a := range []netip.Addr{old.IPv4, old.IPv6} {
		if !a.IsValid() {
			continue
		}
		if err := alloc.AssignIP(ctx, ipam.AssignIPArgs{Addr: a, Node: old.Node, Handle: oldHandle, Attrs: attrs}); err != nil {
			return fmt.Errorf("restoring: %w", err)
		}
	}
	w := *old
	if err := cniAdd(ctx, st, &w); err != nil {
		return fmt.Errorf("restoring the attachment on %s: %w", old.Node, err)
	}
	return nil
}

// deleteWorkloadIf deletes the veth ifName in the namespace nsName (its
// peer, the host side, goes with it).
func deleteWorkloadIf(nsName, ifName string) error {
	h, err := nl.Open(netns.NamedPath(nsName))
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if errors.Is(err, nl.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.LinkDel(l.Index); err != nil && !errors.Is(err, nl.ErrNotFound) {
		return err
	}
	return nil
}

// detachOld runs CNI DEL for the attachment w on its node without the
// workload's namespace (CNI_NETNS is optional for DEL): the plugin
// removes the host side by name, the endpoint and the handle's
// addresses, and leaves the namespace's (new) eth0 alone.
func detachOld(ctx context.Context, st *State, w Workload) error {
	list, err := workloadConf(st.Name, w)
	if err != nil {
		return err
	}
	rt := runtimeConf(w)
	rt.NetNS = ""
	err = inNode(st, w.Node, func(c *libcni.CNIConfig) error { return c.DelNetworkList(ctx, list, rt) })
	if err != nil {
		return fmt.Errorf("CNI DEL of %s (container %s) on %s: %w", w.ID(), w.ContainerID, w.Node, err)
	}
	return nil
}

// setRoutePriority sets or removes the annotation that makes the
// endpoint's node advertise its addresses with elevated priority.
func setRoutePriority(ctx context.Context, c *datastore.Client, namespace, name string, elevated bool) error {
	info, _ := v1.LookupKind("WorkloadEndpoint")
	for attempt := 0; ; attempt++ {
		o, err := c.Get(ctx, info, namespace, name)
		if err != nil {
			return err
		}
		wep, ok := o.(*v1.WorkloadEndpoint)
		if !ok {
			return fmt.Errorf("%s/%s: not a WorkloadEndpoint", namespace, name)
		}
		if elevated {
			if wep.Metadata.Annotations == nil {
				wep.Metadata.Annotations = map[string]string{}
			}
			wep.Metadata.Annotations[agent.AnnotationRoutePriority] = "elevated"
		} else {
			delete(wep.Metadata.Annotations, agent.AnnotationRoutePriority)
		}
		// The resourceVersion read makes it a compare-and-swap.
		_, err = c.Apply(ctx, []v1.Object{wep}, datastore.ApplyOptions{})
		if errors.Is(err, datastore.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("annotating WorkloadEndpoint %s/%s: %w", namespace, name, err)
		}
		return nil
	}
}

// probeStream sends ICMP echo requests from one workload to the moving
// one, every interval, per address family, and records the answers.
type probeStream struct {
	from              string
	interval, timeout time.Duration
	fams              []*pingFamily
	stop              chan struct{} // closed to stop sending
	sending           sync.WaitGroup
	receiving         sync.WaitGroup
	closeOnce         sync.Once
}

// pingFamily is the stream of one family: a raw ICMP socket in the
// prober's namespace and, by sequence number, when each probe left and
// how long its answer took (0: none yet).
type pingFamily struct {
	family int
	dst    netip.Addr
	conn   *icmp.PacketConn
	id     int
	mu     sync.Mutex
	sent   []time.Time
	rtt    []time.Duration
}

// maxProbes is the number of sequence numbers: the stream stops sending
// after that many probes (11 minutes at 10ms).
const maxProbes = 1 << 16

// startProbeStream opens the sockets in the prober's namespace and starts
// sending.
func startProbeStream(ctx context.Context, from, to Workload, interval, timeout time.Duration) (*probeStream, error) {
	s := &probeStream{from: from.ID(), interval: interval, timeout: timeout, stop: make(chan struct{})}
	ns, err := netns.Open(netns.NamedPath(from.NetNS))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	for _, fam := range []int{4, 6} {
		dst, src := to.Addr(fam), from.Addr(fam)
		if !dst.IsValid() || !src.IsValid() {
			continue
		}
		network, laddr := "ip4:icmp", "0.0.0.0"
		if fam == 6 {
			network, laddr = "ip6:ipv6-icmp", "::"
		}
		var conn *icmp.PacketConn
		// The socket is created in the prober's namespace and keeps it.
		if err := ns.Do(func() (err error) { conn, err = icmp.ListenPacket(network, laddr); return err }); err != nil {
			s.close()
			return nil, fmt.Errorf("probe stream from %s: %w", from.ID(), err)
		}
		s.fams = append(s.fams, &pingFamily{family: fam, dst: dst, conn: conn, id: int(rand.Uint32N(1 << 16))})
	}
	if len(s.fams) == 0 {
		return nil, fmt.Errorf("probe stream: %s and %s share no address family", from.ID(), to.ID())
	}
	for _, f := range s.fams {
		s.receiving.Go(func() { f.receive() })
	}
	s.sending.Go(func() { s.send(ctx) })
	return s, nil
}

func (s *probeStream) send(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		for _, f := range s.fams {
			f.sendOne()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// sendOne sends the next echo request, if sequence numbers are left.
func (f *pingFamily) sendOne() {
	f.mu.Lock()
	seq := len(f.sent)
	if seq >= maxProbes {
		f.mu.Unlock()
		return
	}
	f.sent = append(f.sent, time.Now())
	f.rtt = append(f.rtt, 0)
	f.mu.Unlock()
	typ := icmp.Type(ipv4.ICMPTypeEcho)
	if f.family == 6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	// The kernel computes the ICMPv6 checksum of raw sockets itself.
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: f.id, Seq: seq, Data: []byte("tabby-move")}}).Marshal(nil)
	if err == nil {
		_, _ = f.conn.WriteTo(b, &net.IPAddr{IP: f.dst.AsSlice()})
	}
	// A failed send (no route for a moment) is a probe without answer.
}

// receive records echo replies from the destination with the stream's
// ID until the socket is closed.
func (f *pingFamily) receive() {
	proto, reply := 1, icmp.Type(ipv4.ICMPTypeEchoReply) // IANA protocol numbers: ICMP, IPv6-ICMP
	if f.family == 6 {
		proto, reply = 58, ipv6.ICMPTypeEchoReply
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := f.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		ip, _ := peer.(*net.IPAddr)
		if !ok || echo.ID != f.id || ip == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(ip.IP); !ok || a.Unmap() != f.dst {
			continue
		}
		f.mu.Lock()
		if echo.Seq < len(f.sent) && f.rtt[echo.Seq] == 0 {
			f.rtt[echo.Seq] = max(now.Sub(f.sent[echo.Seq]), time.Nanosecond)
		}
		f.mu.Unlock()
	}
}

// answeredSince reports whether a probe sent at or after t was answered
// in time.
func (f *pingFamily) answeredSince(t time.Time, timeout time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.sent) - 1; i >= 0 && !f.sent[i].Before(t); i-- {
		if f.rtt[i] > 0 && f.rtt[i] <= timeout {
			return true
		}
	}
	return false
}

// waitBaseline waits (at most limit) until every family has had an answer.
func (s *probeStream) waitBaseline(ctx context.Context, limit time.Duration) {
	start := time.Now()
	s.waitAnswers(ctx, start, start.Add(limit), s.fams)
}

// waitAnswers waits until each of fams has an answer to a probe sent
// since since, or until deadline.
func (s *probeStream) waitAnswers(ctx context.Context, since, deadline time.Time, fams []*pingFamily) {
	for time.Now().Before(deadline) {
		if !slices.ContainsFunc(fams, func(f *pingFamily) bool { return !f.answeredSince(since, s.timeout) }) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.interval):
		}
	}
}

// restoreWait is how long after the move the stream waits for answers
// to come back; gapTail how long it goes on after they have, so that a
// late interruption is seen too.
const (
	restoreWait = 5 * time.Second
	gapTail     = 300 * time.Millisecond
)

// finish waits until every family that had answers before the move
// (which began at start and ended at end) has them again, goes on for
// gapTail, stops the stream and reports the gaps.
func (s *probeStream) finish(ctx context.Context, start, end time.Time) *GapReport {
	var before []*pingFamily
	for _, f := range s.fams {
		if f.answeredBefore(start, s.timeout) {
			before = append(before, f)
		}
	}
	s.waitAnswers(ctx, end, end.Add(restoreWait), before)
	select {
	case <-ctx.Done():
	case <-time.After(gapTail):
	}
	close(s.stop)
	s.sending.Wait()
	time.Sleep(s.timeout) // the last answers
	s.close()
	r := &GapReport{From: s.from, Interval: s.interval, Timeout: s.timeout}
	for _, f := range s.fams {
		fg := f.gap(start, end, s.timeout)
		r.Families = append(r.Families, fg)
		if fg.Baseline {
			r.Gap = max(r.Gap, fg.Gap)
		}
	}
	return r
}

// answeredBefore reports whether a probe sent before t was answered.
func (f *pingFamily) answeredBefore(t time.Time, timeout time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.sent {
		if !f.sent[i].Before(t) {
			break
		}
		if f.rtt[i] > 0 && f.rtt[i] <= timeout {
			return true
		}
	}
	return false
}

// gap computes the family's report for a move from start to end.
func (f *pingFamily) gap(start, end time.Time, timeout time.Duration) FamilyGap {
	f.mu.Lock()
	defer f.mu.Unlock()
	return computeGap(FamilyGap{Family: f.family, To: f.dst}, f.sent, f.rtt, start, end, timeout)
}

// computeGap fills in the counts and the gap of a stream: probes sent at
// sent[i], answered after rtt[i] (0: never), during a move from start to
// end.
func computeGap(g FamilyGap, sent []time.Time, rtt []time.Duration, start, end time.Time, timeout time.Duration) FamilyGap {
	g.Sent = len(sent)
	last := -1
	for i := range sent {
		if rtt[i] <= 0 || rtt[i] > timeout {
			continue
		}
		g.Answered++
		if sent[i].Before(start) {
			g.Baseline = true
		}
		if !sent[i].Before(end) {
			g.Restored = true
		}
		if last >= 0 {
			g.Gap = max(g.Gap, sent[i].Sub(sent[last]))
		}
		last = i
	}
	if !g.Baseline {
		g.Gap = 0
		return g
	}
	if !g.Restored && len(sent) > 0 {
		g.Gap = max(g.Gap, sent[len(sent)-1].Sub(sent[last]))
	}
	return g
}

// close stops the stream and closes its sockets. Idempotent.
func (s *probeStream) close() {
	s.closeOnce.Do(func() {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		s.sending.Wait()
		for _, f := range s.fams {
			f.conn.Close()
		}
		s.receiving.Wait()
	})
}
