package nl

import (
	"fmt"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteUpdate is a route the kernel added (or replaced) or deleted.
type RouteUpdate struct {
	Deleted bool
	Route   Route
}

// SubscribeRoutes reports every route added to or deleted from any table
// of the handle's namespace on updates, from now until done is closed;
// then it closes updates. The subscription's socket has a 32 MiB receive
// buffer, so that bursts (thousands of routes from BGP) are not lost; if
// the kernel drops messages anyway, or the socket fails, onError (which
// may be nil) is told, and the subscription ends.
func (h *Handle) SubscribeRoutes(updates chan<- RouteUpdate, done <-chan struct{}, onError func(error)) error {
	raw := make(chan netlink.RouteUpdate, cap(updates))
	// The socket is made in the namespace before this returns, and keeps
	// it; the handle may be closed afterwards.
	handle := vnetns.NsHandle(h.ns.Fd())
	err := netlink.RouteSubscribeWithOptions(raw, done, netlink.RouteSubscribeOptions{
		Namespace: &handle,
		ErrorCallback: func(err error) {
			if onError != nil {
				onError(fmt.Errorf("route subscription: %w", err))
			}
		},
		ReceiveBufferSize:      32 << 20,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		return wrap("subscribing to routes", err)
	}
	go func() {
		defer close(updates)
		for u := range raw {
			if u.Type != unix.RTM_NEWROUTE && u.Type != unix.RTM_DELROUTE {
				continue
			}
			updates <- RouteUpdate{Deleted: u.Type == unix.RTM_DELROUTE, Route: fromNetlinkRoute(u.Route)}
		}
	}()
	return nil
}
