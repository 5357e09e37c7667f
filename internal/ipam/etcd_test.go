package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
)

// startEtcd starts an embedded etcd and returns a Store connected to it.
func startEtcd(t testing.TB) *etcd.Store {
	t.Helper()
	_, cfg := etcdtest.StartTestServer(t)
	return etcdtest.NewStore(t, cfg)
}

// mustApply stores objects through the typed client, with defaults and
// validation as `tabby apply` does.
func mustApply(t testing.TB, s datastore.Store, objs ...v1.Object) {
	t.Helper()
	for _, o := range objs {
		v1.SetDefaults(o)
		if err := v1.Validate(o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := datastore.NewClient(s).Apply(context.Background(), objs, datastore.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testPool(name, cidr string, blockSize int) *v1.IPPool {
	p := &v1.IPPool{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "IPPool"}}
	p.Metadata.Name = name
	p.Spec.CIDR, p.Spec.BlockSize = cidr, blockSize
	return p
}

func testNode(name string) *v1.Node {
	n := &v1.Node{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "Node"}}
	n.Metadata.Name = name
	return n
}

// writeEndpoint creates the workload endpoint default/name with addrs,
// as the CNI plugin does after the assignment.
func writeEndpoint(ctx context.Context, s datastore.Store, name, node string, addrs ...netip.Addr) error {
	w := &v1.WorkloadEndpoint{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"}}
	w.Metadata.Namespace, w.Metadata.Name = "default", name
	w.Spec.Node, w.Spec.Orchestrator, w.Spec.Endpoint = node, "test", "eth0"
	for _, a := range addrs {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(a, a.BitLen()).String())
	}
	val, err := datastore.Encode(w)
	if err != nil {
		return err
	}
	_, err = s.Create(ctx, datastore.KV{Key: datastore.Key{Kind: "WorkloadEndpoint", Namespace: "default", Name: name}, Value: val})
	return err
}

func deleteEndpoint(ctx context.Context, s datastore.Store, name string) error {
	_, err := s.Delete(ctx, datastore.Key{Kind: "WorkloadEndpoint", Namespace: "default", Name: name}, 0)
	return err
}

// TestConcurrentNodes runs 8 simulated nodes, each with its own
// Allocator (as separate hosts would), doing 2,000 assignments each
// against one embedded etcd, with random releases. Each assignment is
// followed by the endpoint write and each release preceded by the
// endpoint delete, as CNI ADD and DEL do. The pool is small enough that
// the nodes race for the last blocks, and some nodes need more than
// maxBlocksPerHost blocks and borrow from the others. No address may be
// handed out twice, and Check must report clean.
func TestConcurrentNodes(t *testing.T) {
	const nodes = 8
	perNode := 2000
	if testing.Short() {
		perNode = 200
	}
	s := startEtcd(t)
	ctx := context.Background()
	// 64 blocks of 64 addresses, at most 8 per node. Node i keeps up to
	// 420+20i addresses, so nodes 5-7 need more than their 8 blocks hold
	// and borrow from the others; 3920 of the 4096 addresses are in use
	// at the end.
	maxLive := func(i int) int { return 420 + 20*i }
	mustApply(t, s, testPool("pool", "10.80.0.0/20", 26))
	cfg := &v1.IPAMConfiguration{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "IPAMConfiguration"}}
	cfg.Metadata.Name = "default"
	cfg.Spec.MaxBlocksPerHost = 8
	mustApply(t, s, cfg)
	for i := range nodes {
		mustApply(t, s, testNode(fmt.Sprintf("node-%d", i)))
	}

	var (
		mu         sync.Mutex
		owner      = map[netip.Addr]string{} // live address → handle
		duplicates int
	)
	start := time.Now()
	errs := make(chan error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			errs <- func() error {
				node := fmt.Sprintf("node-%d", i)
				a, err := New(s, Config{})
				if err != nil {
					return err
				}
				rng := rand.New(rand.NewPCG(uint64(i), 99))
				type held struct {
					handle string
					addr   netip.Addr
				}
				var live []held
				release := func() error {
					k := rng.IntN(len(live))
					h := live[k]
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
					if err := deleteEndpoint(ctx, s, h.handle); err != nil {
						return err
					}
					// Forget the owner before the release commits: from then
					// on another node may legitimately get the address.
					mu.Lock()
					delete(owner, h.addr)
					mu.Unlock()
					got, err := a.ReleaseHandle(ctx, h.handle)
					if err != nil {
						return fmt.Errorf("%s: releasing %s: %w", node, h.handle, err)
					}
					if len(got) != 1 || got[0] != h.addr {
						return fmt.Errorf("%s: releasing %s gave back %v, want %s", node, h.handle, got, h.addr)
					}
					return nil
				}
				for j := range perNode {
					handle := fmt.Sprintf("%s-%d", node, j)
					res, err := a.AutoAssign(ctx, AssignArgs{Node: node, Handle: handle, Num4: 1, Attrs: map[string]string{AttrNamespace: "default", AttrEndpoint: handle}})
					if err != nil {
						return fmt.Errorf("%s: assignment %d: %w", node, j, err)
					}
					addr := res.IPv4[0]
					mu.Lock()
					if prev, taken := owner[addr]; taken {
						duplicates++
						t.Errorf("%s got %s for %s, but %s holds it", node, addr, handle, prev)
					}
					owner[addr] = handle
					mu.Unlock()
					if err := writeEndpoint(ctx, s, handle, node, addr); err != nil {
						return err
					}
					live = append(live, held{handle, addr})
					for len(live) >= maxLive(i) || (len(live) > 0 && rng.IntN(2) == 0) {
						if err := release(); err != nil {
							return err
						}
						if len(live) < maxLive(i) {
							break
						}
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d nodes × %d assignments in %v (%.0f assignments/s)", nodes, perNode, elapsed.Round(time.Millisecond), float64(nodes*perNode)/elapsed.Seconds())
	if duplicates != 0 {
		t.Fatalf("%d duplicate addresses", duplicates)
	}
	r, err := Check(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		t.Errorf("check is not clean:\n%s", formatReport(r))
	}
	if r.Allocated != len(owner) {
		t.Errorf("check counts %d allocated addresses, the test holds %d", r.Allocated, len(owner))
	}
	u, err := ReadUsage(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	borrowed := 0
	for _, n := range u.Nodes {
		borrowed += n.Borrowed
	}
	t.Logf("check: %d blocks, %d allocated, %d borrowed at the end", r.Blocks, r.Allocated, borrowed)
}

// TestCrashLeavesOrphanGCReclaims injects a crash right after an
// assignment reached etcd, so the workload endpoint is never written; GC
// reclaims the address once the grace period has passed, and not before.
func TestCrashLeavesOrphanGCReclaims(t *testing.T) {
	s := &faultStore{Store: startEtcd(t)}
	ctx := context.Background()
	mustApply(t, s, testPool("pool", "10.81.0.0/24", 26), testNode("n1"))
	now := time.Unix(5000, 0)
	clock := func() time.Time { return now }
	a, err := New(s, Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: "ok", Num4: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeEndpoint(ctx, s, "ok", "n1", ok.IPv4...); err != nil {
		t.Fatal(err)
	}
	s.arm("txn", KindBlock)
	if _, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: "crashed", Num4: 1}); !errors.Is(err, errCrash) {
		t.Fatalf("AutoAssign = %v, want the injected crash", err)
	}
	r, err := Check(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AllocationsWithoutEndpoint) != 1 || r.AllocationsWithoutEndpoint[0].Handle != "crashed" {
		t.Fatalf("check after the crash:\n%s", formatReport(r))
	}

	gc, err := NewGC(s, GCConfig{LeakGracePeriod: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 0}, {59 * time.Second, 0}, {time.Second, 1}, {time.Hour, 0}} {
		now = now.Add(step.advance)
		st, err := gc.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ReleasedAddrs != step.want {
			t.Fatalf("after %v: GC released %d addresses, want %d", step.advance, st.ReleasedAddrs, step.want)
		}
	}
	r, err = Check(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() || r.Allocated != 1 {
		t.Fatalf("check after GC:\n%s", formatReport(r))
	}
	got, err := a.IPsByHandle(ctx, "ok")
	if err != nil || len(got) != 1 || got[0] != ok.IPv4[0] {
		t.Fatalf("the live workload lost its address: %v, %v", got, err)
	}
}

// TestGCElection runs two collectors with etcd leader election: exactly
// one leads, and when it stops the other takes over.
func TestGCElection(t *testing.T) {
	s := startEtcd(t)
	mustApply(t, s, testPool("pool", "10.82.0.0/24", 26), testNode("n1"))
	type runner struct {
		el     *etcd.Election
		cancel context.CancelFunc
		done   chan error
	}
	var runners []*runner
	for _, id := range []string{"a", "b"} {
		el, err := s.NewElection("ipam-gc", id, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		gc, err := NewGC(s, GCConfig{Interval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &runner{el: el, cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- gc.Run(ctx, el) }()
		runners = append(runners, r)
		t.Cleanup(func() { cancel(); <-r.done })
	}
	leader := waitLeader(t, runners[0].el, "")
	var first *runner
	for i, id := range []string{"a", "b"} {
		if id == leader {
			first = runners[i]
		}
	}
	first.cancel()
	if err := <-first.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	first.done <- nil // for the cleanup
	if next := waitLeader(t, runners[0].el, leader); next == leader {
		t.Fatalf("leader is still %q", next)
	}
}

// waitLeader waits until there is a leader other than not, and returns
// it.
func waitLeader(t *testing.T, el *etcd.Election, not string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		id, err := el.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if id != "" && id != not {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader other than %q", not)
	return ""
}

// BenchmarkAutoAssign measures assignments of one IPv4 address to new
// handles on one node against embedded etcd: in steady state one
// transaction (block and handle) per assignment, plus a claim every 64.
func BenchmarkAutoAssign(b *testing.B) {
	s := startEtcd(b)
	ctx := context.Background()
	mustApply(b, s, testPool("pool", "10.0.0.0/12", 26), testNode("n1"))
	a, err := New(s, Config{})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: fmt.Sprintf("h%d", i), Num4: 1}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}
