package nft

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// Resync reads the kernel without the renderer's lock, so Applies from
// another goroutine go on meanwhile; a read that a transaction made stale
// is not trusted (it would show as drift, and be "repaired"). With a
// table large enough that each read takes a while, Applies that change a
// set run while Resyncs run: no Resync may find drift, and the table ends
// up exactly as rendered.
func TestResyncConcurrentApply(t *testing.T) {
	requireNft(t)
	ns := testkit.NetNS(t)
	r := newRenderer(t, ns, Config{})
	ruleset := func(extra int) *policy.Ruleset {
		rs := scaleRulesetSets(20, 100, 700) // 70,000 set elements
		set := rs.IPSets["s:bench000"]
		for i := range extra {
			set.Members = append(set.Members, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32))
		}
		return rs
	}
	r.Set(ruleset(0))
	mustApply(t, r)

	var wg sync.WaitGroup
	var resyncs []Result
	var errs []error
	var mu sync.Mutex
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := r.Resync(ctxT(t))
			mu.Lock()
			resyncs, errs = append(resyncs, res), append(errs, err)
			mu.Unlock()
		}
	})
	for i := 1; i <= 30; i++ {
		r.Set(ruleset(i))
		// A Resync may have written the new element already: it applies
		// the desired state too.
		mustApply(t, r)
	}
	close(stop)
	wg.Wait()
	if len(resyncs) == 0 {
		t.Fatal("no Resync ran")
	}
	for i, res := range resyncs {
		if errs[i] != nil || res.Repairs != 0 {
			t.Errorf("Resync %d during Applies: repairs %d, err %v", i, res.Repairs, errs[i])
		}
	}
	// The table holds exactly the last desired state (all 30 extra
	// elements): a Resync finds nothing to do.
	if res := mustResync(t, r); res.Repairs != 0 || res.Writes != 0 {
		t.Errorf("final Resync: %+v, want nothing to do", res)
	}
	checkRecord(t, r)
	t.Logf("%d Resyncs ran during 30 Applies", len(resyncs))
}
