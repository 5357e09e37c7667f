package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
)

// eventTimeout bounds the wait for one expected watch event.
const eventTimeout = 10 * time.Second

// quietPeriod is how long a watch must stay silent to count as having no
// further events.
const quietPeriod = 300 * time.Millisecond

// nextEvent returns the next event of ch, skipping EventError (a backend
// may report transient problems at any time).
func nextEvent(t *testing.T, ch <-chan datastore.Event) datastore.Event {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed, want an event")
			}
			if ev.Type == datastore.EventError {
				t.Logf("watch reported an error: %v", ev.Err)
				continue
			}
			return ev
		case <-timer.C:
			t.Fatalf("no watch event within %v", eventTimeout)
		}
	}
}

// expectEvents checks that the next events of ch are want.
func expectEvents(t *testing.T, ch <-chan datastore.Event, want ...datastore.Event) {
	t.Helper()
	got := make([]datastore.Event, 0, len(want))
	for range want {
		got = append(got, nextEvent(t, ch))
	}
	if diff := cmp.Diff(want, got, kvOpts); diff != "" {
		t.Errorf("watch events (-want +got):\n%s", diff)
	}
}

// expectQuiet checks that ch has no event other than EventError for a while.
func expectQuiet(t *testing.T, ch <-chan datastore.Event) {
	t.Helper()
	timer := time.NewTimer(quietPeriod)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Error("watch channel closed, want it open")
				return
			}
			if ev.Type != datastore.EventError {
				t.Errorf("unexpected watch event %+v", ev)
			}
		case <-timer.C:
			return
		}
	}
}

// expectClosed drains ch and checks that it is closed in time.
func expectClosed(t *testing.T, ch <-chan datastore.Event) {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("watch channel not closed within %v", eventTimeout)
		}
	}
}

func mustWatch(t *testing.T, ctx context.Context, s datastore.Store, p datastore.Prefix, after int64) <-chan datastore.Event {
	t.Helper()
	ch, err := s.Watch(ctx, p, after)
	if err != nil {
		t.Fatalf("Watch(%+v, %d): %v", p, after, err)
	}
	return ch
}

func mustTxn(t *testing.T, s datastore.Store, ops ...datastore.Op) int64 {
	t.Helper()
	rev, err := s.Txn(testContext(t), ops)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	return rev
}

func mustUpdate(t *testing.T, s datastore.Store, kv datastore.KV) datastore.KV {
	t.Helper()
	kv, err := s.Update(testContext(t), kv)
	if err != nil {
		t.Fatalf("Update(%s): %v", kv.Key, err)
	}
	return kv
}

// mustDelete deletes k and returns the revision of the deletion.
func mustDelete(t *testing.T, s datastore.Store, k datastore.Key) int64 {
	t.Helper()
	if _, err := s.Delete(testContext(t), k, 0); err != nil {
		t.Fatalf("Delete(%s): %v", k, err)
	}
	_, rev := mustList(t, s, datastore.Prefix{Kind: "nothing-is-stored-here"})
	return rev
}

func added(kv datastore.KV) datastore.Event {
	return datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: kv.Revision}
}

func modified(kv datastore.KV) datastore.Event {
	return datastore.Event{Type: datastore.EventModified, KV: kv, Revision: kv.Revision}
}

func deleted(k datastore.Key, last string, rev int64) datastore.Event {
	return datastore.Event{Type: datastore.EventDeleted, KV: kvOf(k, last, rev), Revision: rev}
}

func testWatch(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	mustCreate(t, s, key("policy", "default", "before"), "not seen")
	_, rev := mustList(t, s, datastore.Prefix{Kind: "policy"})
	ch := mustWatch(t, ctx, s, datastore.Prefix{Kind: "Policy"}, rev)

	a, b, c := key("policy", "default", "a"), key("policy", "", "b"), key("policy", "other", "c")
	a1 := mustCreate(t, s, a, "a1")
	mustCreate(t, s, key("policyx", "default", "a"), "other kind")
	mustCreate(t, s, key("pol", "", "a"), "other kind")
	a2 := mustUpdate(t, s, kvOf(a, "a2", a1.Revision))
	r1 := mustTxn(t, s, datastore.Op{Type: datastore.OpPut, KV: kvOf(b, "b1", 0)})
	r2 := mustTxn(t, s,
		datastore.Op{Type: datastore.OpCreate, KV: kvOf(c, "c1", 0)},
		datastore.Op{Type: datastore.OpDelete, KV: kvOf(b, "", 0)},
		datastore.Op{Type: datastore.OpPut, KV: kvOf(a, "a3", 0)},
		datastore.Op{Type: datastore.OpPut, KV: kvOf(key("node", "", "n"), "other kind", 0)},
	)
	r3 := mustDelete(t, s, a)

	expectEvents(t, ch,
		added(a1),
		modified(a2),
		added(kvOf(b, "b1", r1)),
		added(kvOf(c, "c1", r2)),
		deleted(b, "b1", r2),
		modified(kvOf(a, "a3", r2)),
		deleted(a, "a3", r3),
	)
	expectQuiet(t, ch)
}

func testWatchNamespace(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	_, rev := mustList(t, s, datastore.Prefix{})
	ch := mustWatch(t, ctx, s, datastore.Prefix{Kind: "policy", Namespace: "default"}, rev)
	a := mustCreate(t, s, key("policy", "default", "a"), "a")
	mustCreate(t, s, key("policy", "", "default"), "cluster-scoped, named like the namespace")
	mustCreate(t, s, key("policy", "default0", "a"), "other namespace")
	mustCreate(t, s, key("policy", "other", "a"), "other namespace")
	mustCreate(t, s, key("policyx", "default", "a"), "other kind")
	b := mustCreate(t, s, key("policy", "default", "b"), "b")
	expectEvents(t, ch, added(a), added(b))
	expectQuiet(t, ch)

	// Cluster-scoped objects have their own prefix too.
	_, rev = mustList(t, s, datastore.Prefix{})
	ch = mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, rev)
	mustCreate(t, s, key("nodex", "", "n1"), "other kind")
	n1 := mustCreate(t, s, key("node", "", "n1"), "n1")
	expectEvents(t, ch, added(n1))
	expectQuiet(t, ch)
}

func testWatchFromNow(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	mustCreate(t, s, key("node", "", "before"), "x")
	ch := mustWatch(t, ctx, s, datastore.Prefix{}, 0)
	after := mustCreate(t, s, key("node", "", "after"), "y")
	expectEvents(t, ch, added(after))
	expectQuiet(t, ch)
}

func testWatchReplay(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	a, b, c := key("node", "", "a"), key("node", "", "b"), key("node", "", "c")
	a1 := mustCreate(t, s, a, "a1")
	a2 := mustUpdate(t, s, kvOf(a, "a2", a1.Revision))
	b1 := mustCreate(t, s, b, "b1")
	rb := mustDelete(t, s, b)

	ch := mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, a1.Revision)
	expectEvents(t, ch, modified(a2), added(b1), deleted(b, "b1", rb))
	c1 := mustCreate(t, s, c, "c1")
	expectEvents(t, ch, added(c1))
	expectQuiet(t, ch)

	// From the very first revision of this test.
	ch = mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, a1.Revision-1)
	expectEvents(t, ch, added(a1), modified(a2), added(b1), deleted(b, "b1", rb), added(c1))
	expectQuiet(t, ch)
}

func testWatchTwoWatchers(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	_, rev := mustList(t, s, datastore.Prefix{})
	ch1 := mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, rev)
	ch2 := mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, rev)
	var want []datastore.Event
	for _, name := range []string{"a", "b", "c"} {
		want = append(want, added(mustCreate(t, s, key("node", "", name), name)))
	}
	expectEvents(t, ch1, want...)
	expectEvents(t, ch2, want...)
}

func testWatchCancel(t *testing.T, s datastore.Store) {
	ctx, cancel := context.WithCancel(testContext(t))
	ch := mustWatch(t, ctx, s, datastore.Prefix{}, 0)
	expectEvents(t, ch, added(mustCreate(t, s, key("node", "", "a"), "a")))
	cancel()
	expectClosed(t, ch)

	// A watch whose reader stopped reading ends too.
	ctx, cancel = context.WithCancel(testContext(t))
	ch = mustWatch(t, ctx, s, datastore.Prefix{}, 0)
	for i := range 200 {
		mustTxn(t, s, datastore.Op{Type: datastore.OpPut, KV: kvOf(key("node", "", "a"), string(rune('a'+i%26)), 0)})
	}
	cancel()
	time.Sleep(quietPeriod)
	expectClosed(t, ch)
}

func testWatchClose(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	ch := mustWatch(t, ctx, s, datastore.Prefix{}, 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectClosed(t, ch)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testWatchCompacted(t *testing.T, s datastore.Store, compact CompactFunc) {
	ctx := testContext(t)
	a, b, c := key("node", "", "a"), key("node", "", "b"), key("node", "", "c")
	a1 := mustCreate(t, s, a, "a1")
	b1 := mustCreate(t, s, b, "b1")
	mustCreate(t, s, key("policy", "default", "p"), "other kind")
	a2 := mustUpdate(t, s, kvOf(a, "a2", a1.Revision))
	gone := mustCreate(t, s, key("node", "", "gone"), "deleted before the compaction")
	last := mustDelete(t, s, gone.Key)
	compact(t, s, last)

	// The watch needs revisions from b1's on, which are compacted: it gets
	// the objects under its prefix as they are now, then the changes.
	ch := mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, a1.Revision)
	expectEvents(t, ch, datastore.Event{
		Type:     datastore.EventResync,
		Snapshot: []datastore.KV{a2, b1},
		Revision: last,
	})
	c1 := mustCreate(t, s, c, "c1")
	a3 := mustUpdate(t, s, kvOf(a, "a3", a2.Revision))
	expectEvents(t, ch, added(c1), modified(a3))
	expectQuiet(t, ch)

	// A watch from the compaction revision itself needs nothing compacted.
	ch = mustWatch(t, ctx, s, datastore.Prefix{Kind: "node"}, last)
	expectEvents(t, ch, added(c1), modified(a3))
	expectQuiet(t, ch)
}
