package nft

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/policy"
)

// stream is a TCP connection that keeps sending and reading back.
type stream struct {
	bytes atomic.Int64
	err   atomic.Value // error
	done  chan struct{}
}

func startStream(t *testing.T, from *workload, to netip.Addr, port int) *stream {
	t.Helper()
	var c net.Conn
	must(t, from.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(to, uint16(port)).String(), okTimeout)
		return err
	}))
	s := &stream{done: make(chan struct{})}
	go func() {
		defer c.Close()
		buf := make([]byte, 1024)
		for {
			select {
			case <-s.done:
				return
			default:
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(buf); err != nil {
				s.err.Store(err)
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				s.err.Store(err)
				return
			}
			s.bytes.Add(int64(len(buf)))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { close(s.done) })
	return s
}

// flowing checks that the stream moves data and has not failed.
func (s *stream) flowing(t *testing.T, when string) {
	t.Helper()
	n := s.bytes.Load()
	deadline := time.Now().Add(okTimeout)
	for s.bytes.Load() < n+10*1024 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err, _ := s.err.Load().(error); err != nil {
		t.Fatalf("%s: stream failed: %v", when, err)
	}
	if s.bytes.Load() < n+10*1024 {
		t.Fatalf("%s: stream stalled at %d bytes", when, s.bytes.Load())
	}
}

// kernelRules lists (chain, handle, identity) of every rule of the table.
func kernelRules(t *testing.T, r *Renderer) []kernelRule {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	rules, err := r.k.rules("")
	must(t, err)
	return rules
}

// TestRestart simulates an agent restart: while a TCP stream runs between
// two workloads, a new renderer instance takes over the table left by the
// old one and Resyncs with the same desired state (rebuilt from scratch,
// as a new agent would). Nothing is written, no rule gets a new handle,
// and the stream goes on. Then a change to another policy rewrites only
// that policy's chain.
func TestRestart(t *testing.T) {
	l := newLab(t)
	a := l.addWorkload("a", "10.65.0.2", "fd65::2")
	b := l.addWorkload("b", "10.65.0.3", "fd65::3")
	l.program()

	// Each call builds new objects with equal content: what a restarted
	// agent's policy engine produces.
	ruleset := func(extra bool) *policy.Ruleset {
		setA := &policy.IPSet{ID: "s:a", Kind: policy.AddrSet, Members: []netip.Prefix{netip.PrefixFrom(a.v4, 32), netip.PrefixFrom(a.v6, 128)}}
		bIn := &policy.CompiledPolicy{ID: policy.NetworkPolicyID("default", "b-in"), Tier: "default", Ingress: []policy.CompiledRule{
			{Action: v1.Allow, Protocol: u8(protoTCP), Src: policy.EntityMatch{Set: setA.ID}, Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 5000, Hi: 5000}}}},
		}}
		aIn := &policy.CompiledPolicy{ID: policy.NetworkPolicyID("default", "a-in"), Tier: "default", Ingress: []policy.CompiledRule{
			{Action: v1.Allow, Protocol: u8(protoTCP), Dst: policy.EntityMatch{Ports: []policy.PortRange{{Lo: 6000, Hi: 6000}}}},
		}}
		if extra {
			aIn.Ingress = append(aIn.Ingress, policy.CompiledRule{Action: v1.Allow, Protocol: u8(protoUDP)})
		}
		prof := &policy.CompiledProfile{ID: "allow", Ingress: []policy.CompiledRule{{Action: v1.Allow}}, Egress: []policy.CompiledRule{{Action: v1.Allow}}}
		epA := wep("a", a.iface, []string{a.v4.String(), a.v6.String()}, tiered([]policy.PolicyID{aIn.ID}), tiered(nil, prof.ID))
		epB := wep("b", b.iface, []string{b.v4.String(), b.v6.String()}, tiered([]policy.PolicyID{bIn.ID}), tiered(nil, prof.ID))
		return newRS([]*policy.EndpointRules{epA, epB}, []*policy.CompiledPolicy{aIn, bIn}, []*policy.CompiledProfile{prof}, []*policy.IPSet{setA})
	}

	r1, err := New(Config{}, l.hostNS, nil)
	must(t, err)
	r1.Set(ruleset(false))
	mustApply(t, r1)
	tcpServer(t, b.ns, "tcp", 5000)
	s4 := startStream(t, a, b.v4, 5000)
	s6 := startStream(t, a, b.v6, 5000)
	s4.flowing(t, "before the restart")
	s6.flowing(t, "before the restart")
	rulesBefore := kernelRules(t, r1)
	gen := genID(t, r1)
	must(t, r1.Close()) // the agent exits; the table stays

	r2 := newRenderer(t, l.hostNS, Config{})
	r2.Set(ruleset(false))
	res := mustResync(t, r2)
	if res.Writes != 0 || res.Repairs != 0 {
		t.Errorf("Resync after restart: %+v, want no writes", res)
	}
	if g := genID(t, r2); g != gen {
		t.Errorf("ruleset generation changed from %d to %d", gen, g)
	}
	if got := kernelRules(t, r2); !slices.Equal(got, rulesBefore) {
		t.Errorf("rules changed across the restart:\n%v\nwas\n%v", got, rulesBefore)
	}
	s4.flowing(t, "after the restart")
	s6.flowing(t, "after the restart")

	// A restart with a changed policy touches only its chain.
	r3 := newRenderer(t, l.hostNS, Config{})
	r3.Set(ruleset(true))
	res = mustResync(t, r3)
	if res.RulesAdded != 1 || res.RulesDeleted+res.RulesReplaced+res.ChainsAdded+res.ChainsDeleted != 0 {
		t.Errorf("Resync with one more rule: %+v", res)
	}
	after := kernelRules(t, r3)
	changed := 0
	for _, kr := range after {
		if !slices.Contains(rulesBefore, kr) {
			changed++
			if kr.chain != policyChainName(policy.NetworkPolicyID("default", "a-in"), policy.Ingress) {
				t.Errorf("rule in %s changed", kr.chain)
			}
		}
	}
	if changed != 1 || len(after) != len(rulesBefore)+1 {
		t.Errorf("%d rules changed, %d → %d rules; want one added", changed, len(rulesBefore), len(after))
	}
	s4.flowing(t, "after the policy change")
	s6.flowing(t, "after the policy change")
	expect(t, flow{"new connection A→B", true, func(to time.Duration) error { return tcpDial(a.ns, b.v4, 5000, to) }})
}
