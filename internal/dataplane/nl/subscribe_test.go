package nl_test

import (
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

// A route subscription sees routes added and deleted in its namespace
// (not in others), converted to nl.Route, and ends when done is closed.
func TestSubscribeRoutes(t *testing.T) {
	e := newEnv(t)
	if err := e.host.LinkSetUp(e.veth.Index); err != nil {
		t.Fatal(err)
	}
	updates := make(chan nl.RouteUpdate, 64)
	done := make(chan struct{})
	errs := make(chan error, 1)
	if err := e.host.SubscribeRoutes(updates, done, func(err error) { errs <- err }); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			close(done)
		}
	})
	r := nl.Route{Dst: mustPrefix("10.77.0.9/32"), LinkIndex: e.veth.Index, Protocol: 80, Scope: nl.ScopeLink}
	if err := e.host.RouteAdd(r); err != nil {
		t.Fatal(err)
	}
	// A route in the other namespace is not reported.
	if err := e.wl.LinkSetUp(e.peer.Index); err != nil {
		t.Fatal(err)
	}
	if err := e.wl.RouteAdd(nl.Route{Dst: mustPrefix("10.88.0.1/32"), LinkIndex: e.peer.Index, Scope: nl.ScopeLink}); err != nil {
		t.Fatal(err)
	}
	if err := e.host.RouteDel(r); err != nil {
		t.Fatal(err)
	}
	want := []nl.RouteUpdate{{Route: r}, {Deleted: true, Route: r}}
	for i := 0; i < len(want); {
		select {
		case u := <-updates:
			if u.Route.Dst == mustPrefix("10.88.0.1/32") {
				t.Fatalf("saw a route of another namespace: %+v", u)
			}
			if u.Route.Dst != r.Dst {
				continue // e.g. the kernel's own link-local routes
			}
			if u.Deleted != want[i].Deleted || u.Route.LinkIndex != r.LinkIndex || u.Route.Protocol != 80 {
				t.Fatalf("update %d = %+v, want %+v", i, u, want[i])
			}
			i++
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no update %d after 5s", i)
		}
	}
	close(done)
	closed = true
	// Closing done ends the subscription: updates is closed (the
	// netlink library notices at its next read, so make one).
	_ = e.host.RouteAdd(r)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-updates:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("updates not closed after done")
		}
	}
}

func TestCreateVXLAN(t *testing.T) {
	e := newEnv(t)
	v, err := e.host.CreateVXLAN(nl.VXLAN{Name: "vx0", VNI: 42, Port: 4789, Local: mustAddr("192.0.2.1"), Remote: mustAddr("192.0.2.2"), Parent: e.veth.Index})
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind != "vxlan" || v.MTU != 1400-50 {
		t.Errorf("vxlan = %+v, want kind vxlan and MTU 1350 (the parent's 1400 less 50)", v)
	}
	if _, err := e.host.CreateVXLAN(nl.VXLAN{Name: "vx0", VNI: 42}); err == nil {
		t.Error("creating vx0 twice succeeded")
	}
	if _, err := e.host.CreateVXLAN(nl.VXLAN{Name: "a-name-far-too-long", VNI: 1}); err == nil {
		t.Error("a bad name was accepted")
	}
}
