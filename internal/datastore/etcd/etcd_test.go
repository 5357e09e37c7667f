package etcd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/storetest"
)

// TestConformance runs the suite against one embedded server; each subtest
// gets a new client and an empty /tabby/v1/.
func TestConformance(t *testing.T) {
	_, cfg := etcdtest.StartTestServer(t)
	admin := etcdtest.NewStore(t, cfg)
	newStore := func(t *testing.T) datastore.Store {
		if _, err := admin.Client().Delete(t.Context(), etcd.Root, clientv3.WithPrefix()); err != nil {
			t.Fatalf("emptying %s: %v", etcd.Root, err)
		}
		return etcdtest.NewStore(t, cfg)
	}
	compact := func(t *testing.T, s datastore.Store, rev int64) {
		if err := s.(*etcd.Store).Compact(t.Context(), rev); err != nil {
			t.Fatal(err)
		}
	}
	storetest.Run(t, newStore, compact)
}

// recvEvent returns the next event, or fails after timeout.
func recvEvent(t *testing.T, ch <-chan datastore.Event, timeout time.Duration) datastore.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no watch event within %v", timeout)
	}
	return datastore.Event{}
}

// TestWatchResumesAfterRestart stops the server under an open watch and
// starts it again on the same data dir and URLs. Writes made after the
// restart, by another client before the watch has reconnected, arrive
// exactly once and in order; EventError is reported while the server is
// down.
func TestWatchResumesAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	cfg := etcdtest.ServerConfig(t)
	srv, cc := etcdtest.StartServer(t, cfg)
	s := etcdtest.NewStore(t, cc)

	k := func(name string) datastore.Key { return datastore.Key{Kind: "node", Name: name} }
	first, err := s.Create(ctx, datastore.KV{Key: k("first"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, datastore.Prefix{Kind: "node"}, first.Revision)
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Create(ctx, datastore.KV{Key: k("before"), Value: []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	want := datastore.Event{Type: datastore.EventAdded, KV: before, Revision: before.Revision}
	if diff := cmp.Diff(want, recvEvent(t, ch, 10*time.Second), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("event before restart (-want +got):\n%s", diff)
	}

	srv.Close()
	// While the server is down the watch reports errors.
	if ev := recvEvent(t, ch, 15*time.Second); ev.Type != datastore.EventError || ev.Err == nil {
		t.Fatalf("event while the server is down: %+v, want EventError", ev)
	} else {
		t.Logf("while down: %v", ev.Err)
	}

	etcdtest.StartServer(t, cfg)
	w := etcdtest.NewStore(t, cc)
	var wantEvents []datastore.Event
	for i := range 20 {
		kv, err := w.Create(ctx, datastore.KV{Key: k(fmt.Sprintf("after-%02d", i)), Value: []byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		wantEvents = append(wantEvents, datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: kv.Revision})
	}
	upd, err := w.Update(ctx, datastore.KV{Key: k("before"), Value: []byte("b2"), Revision: before.Revision})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents = append(wantEvents, datastore.Event{Type: datastore.EventModified, KV: upd, Revision: upd.Revision})
	if _, err := w.Delete(ctx, k("first"), 0); err != nil {
		t.Fatal(err)
	}
	_, delRev, err := w.List(ctx, datastore.Prefix{Kind: "node"})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents = append(wantEvents, datastore.Event{Type: datastore.EventDeleted,
		KV: datastore.KV{Key: k("first"), Value: []byte("1"), Revision: delRev}, Revision: delRev})

	var got []datastore.Event
	errorsAfter := 0
	for len(got) < len(wantEvents) {
		ev := recvEvent(t, ch, 15*time.Second)
		if ev.Type == datastore.EventError {
			errorsAfter++
			continue
		}
		got = append(got, ev)
	}
	// Nothing more: no duplicates.
	select {
	case ev := <-ch:
		if ev.Type != datastore.EventError {
			t.Errorf("extra event after the expected ones: %+v", ev)
		}
	case <-time.After(500 * time.Millisecond):
	}
	if diff := cmp.Diff(wantEvents, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("events after restart (-want +got):\n%s", diff)
	}
	t.Logf("%d more EventError before the watch resumed", errorsAfter)
}

// TestSkipsForeignKeys checks that keys under /tabby/v1/ that are not in
// the layout do not break List or Watch.
func TestSkipsForeignKeys(t *testing.T) {
	ctx := t.Context()
	_, cc := etcdtest.StartTestServer(t)
	s := etcdtest.NewStore(t, cc)
	_, rev, err := s.List(ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, datastore.Prefix{}, rev)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{etcd.Root + "junk", etcd.Root + "a/b/c/d", etcd.Root + "a//b"} {
		if _, err := s.Client().Put(ctx, k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := s.Create(ctx, datastore.KV{Key: datastore.Key{Kind: "node", Name: "n1"}, Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	kvs, _, err := s.List(ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]datastore.KV{kv}, kvs); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	want := datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: kv.Revision}
	if diff := cmp.Diff(want, recvEvent(t, ch, 10*time.Second)); diff != "" {
		t.Errorf("first event (-want +got):\n%s", diff)
	}
}

func TestKeyLayout(t *testing.T) {
	tests := []struct {
		key  datastore.Key
		etcd string
	}{
		{datastore.Key{Kind: "NetworkPolicy", Namespace: "default", Name: "web"}, "/tabby/v1/networkpolicy/default/web"},
		{datastore.Key{Kind: "GlobalNetworkPolicy", Name: "deny-all"}, "/tabby/v1/globalnetworkpolicy/deny-all"},
		{datastore.Key{Kind: "IPAMBlock", Name: "10.65.0.0-26"}, "/tabby/v1/ipamblock/10.65.0.0-26"},
	}
	for _, tt := range tests {
		got, err := etcd.EncodeKey(tt.key)
		if err != nil || got != tt.etcd {
			t.Errorf("EncodeKey(%#v) = %q, %v; want %q", tt.key, got, err, tt.etcd)
		}
		back, err := etcd.DecodeKey(tt.etcd)
		want := tt.key
		want.Kind = strings.ToLower(want.Kind)
		if err != nil || back != want {
			t.Errorf("DecodeKey(%q) = %#v, %v; want %#v", tt.etcd, back, err, want)
		}
	}
	prefixes := []struct {
		p    datastore.Prefix
		etcd string
	}{
		{datastore.Prefix{}, "/tabby/v1/"},
		{datastore.Prefix{Kind: "Policy"}, "/tabby/v1/policy/"},
		{datastore.Prefix{Kind: "policy", Namespace: "default"}, "/tabby/v1/policy/default/"},
	}
	for _, tt := range prefixes {
		if got, err := etcd.EncodePrefix(tt.p); err != nil || got != tt.etcd {
			t.Errorf("EncodePrefix(%#v) = %q, %v; want %q", tt.p, got, err, tt.etcd)
		}
	}
	for _, bad := range []string{"/other/x", "/tabby/v1/x", "/tabby/v1/a/b/c/d", "/tabby/v1/a//b", "/tabby/v1/a/b/"} {
		if k, err := etcd.DecodeKey(bad); err == nil {
			t.Errorf("DecodeKey(%q) = %#v, want an error", bad, k)
		}
	}
}
