package agent

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/tabbynet/tabby/internal/dataplane/routes"
)

// routeTable merges the agent's own routes (workload /32 and /128, block
// blackholes) with the routes BGP learned, in front of the one routes
// manager of the namespace. The agent loop and the BGP installer both use
// it; it is safe for concurrent use. A learned route for a destination the
// agent routes itself is dropped: local routes win.
//
// Until the installer has delivered its first set of learned routes (it
// waits for the peers' End-of-RIB after a restart), the table keeps the
// Tabby routes it finds in the kernel that are not local: those are what an
// earlier run learned, and deleting them would cut traffic that graceful
// restart is there to keep. They go, if stale, once BGP has synced.
type routeTable struct {
	mu      sync.Mutex
	mgr     *routes.Manager
	local   []routes.Route
	learned []routes.Route
	// learnedSet is true once Set was called, or from the start when no
	// BGP speaker runs.
	learnedSet bool
}

// SetLocal replaces the agent's own routes. It does not touch the kernel.
func (t *routeTable) SetLocal(r []routes.Route) {
	t.mu.Lock()
	t.local = r
	t.mu.Unlock()
}

// Set replaces the learned routes (bgp.RouteTable). It does not touch the
// kernel.
func (t *routeTable) Set(r []routes.Route) {
	t.mu.Lock()
	t.learned, t.learnedSet = r, true
	t.mu.Unlock()
}

// Apply makes the kernel's Tabby routes equal to the merged set.
func (t *routeTable) Apply(ctx context.Context) (routes.Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	own := make(map[netip.Prefix]bool, len(t.local))
	for _, r := range t.local {
		own[r.Dst] = true
	}
	learned := t.learned
	if !t.learnedSet {
		kernel, err := t.mgr.List(ctx)
		if err != nil {
			return routes.Result{}, err
		}
		learned = slices.DeleteFunc(kernel, func(r routes.Route) bool { return r.Type != routes.Unicast || len(r.Nexthops) == 0 })
	}
	merged := slices.Clone(t.local)
	for _, r := range learned {
		if !own[r.Dst] {
			merged = append(merged, r)
		}
	}
	t.mgr.Set(merged)
	return t.mgr.Apply(ctx)
}
