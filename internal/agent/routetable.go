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
type routeTable struct {
	mu      sync.Mutex
	mgr     *routes.Manager
	local   []routes.Route
	learned []routes.Route
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
	t.learned = r
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
	merged := slices.Clone(t.local)
	for _, r := range t.learned {
		if !own[r.Dst] {
			merged = append(merged, r)
		}
	}
	t.mgr.Set(merged)
	return t.mgr.Apply(ctx)
}
