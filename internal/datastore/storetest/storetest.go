// Package storetest is the conformance suite for datastore.Store backends.
// Every backend's tests call Run; the memory and etcd backends must behave
// the same way under it, so that code tested against the memory backend
// works on etcd.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/datastore"
)

// MaxTxnOps is the number of operations every backend accepts in one
// Txn (etcd's default --max-txn-ops); one more must be refused.
const MaxTxnOps = 128

// testTimeout bounds each subtest.
const testTimeout = 30 * time.Second

// NewStoreFunc returns an empty Store for one subtest. It registers the
// store's Close with t.Cleanup; the suite may close the store earlier.
type NewStoreFunc func(t *testing.T) datastore.Store

// CompactFunc compacts the history of s at rev, as etcd's compaction does:
// afterwards a watch from a revision before rev-1 cannot replay events and
// must receive EventResync.
type CompactFunc func(t *testing.T, s datastore.Store, rev int64)

// Run runs the conformance suite. newStore is called once per subtest.
// compact may be nil, which skips the compaction tests.
func Run(t *testing.T, newStore NewStoreFunc, compact CompactFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s datastore.Store)
	}{
		{"GetNotFound", testGetNotFound},
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"KindIsCaseInsensitive", testKindCase},
		{"ValuesAreCopied", testValuesCopied},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidPrefixes", testInvalidPrefixes},
		{"ListOrderAndPrefixes", testList},
		{"RevisionsIncrease", testRevisions},
		{"Txn", testTxn},
		{"TxnFailureAppliesNothing", testTxnFailure},
		{"TxnFirstFailingOpReported", testTxnFirstFailure},
		{"TxnLimits", testTxnLimits},
		{"Watch", testWatch},
		{"WatchNamespace", testWatchNamespace},
		{"WatchFromNow", testWatchFromNow},
		{"WatchReplay", testWatchReplay},
		{"WatchTwoWatchers", testWatchTwoWatchers},
		{"WatchCancel", testWatchCancel},
		{"WatchEndsOnClose", testWatchClose},
		{"ConcurrentCAS", testConcurrentCAS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
	t.Run("WatchCompacted", func(t *testing.T) {
		if compact == nil {
			t.Skip("backend has no compaction hook")
		}
		testWatchCompacted(t, newStore(t), compact)
	})
}

// testContext returns a context for one subtest.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// kvOpts compare KVs and Events: nil and empty values are equal.
var kvOpts = cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateErrors()}

func key(kind, ns, name string) datastore.Key {
	return datastore.Key{Kind: kind, Namespace: ns, Name: name}
}

func mustCreate(t *testing.T, s datastore.Store, k datastore.Key, value string) datastore.KV {
	t.Helper()
	kv, err := s.Create(testContext(t), datastore.KV{Key: k, Value: []byte(value)})
	if err != nil {
		t.Fatalf("Create(%s): %v", k, err)
	}
	return kv
}

func mustGet(t *testing.T, s datastore.Store, k datastore.Key) datastore.KV {
	t.Helper()
	kv, err := s.Get(testContext(t), k)
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	return kv
}

func mustList(t *testing.T, s datastore.Store, p datastore.Prefix) ([]datastore.KV, int64) {
	t.Helper()
	kvs, rev, err := s.List(testContext(t), p)
	if err != nil {
		t.Fatalf("List(%+v): %v", p, err)
	}
	return kvs, rev
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, want)
	}
}

// kvOf returns a KV with a string value.
func kvOf(k datastore.Key, value string, rev int64) datastore.KV {
	return datastore.KV{Key: k, Value: []byte(value), Revision: rev}
}

func testGetNotFound(t *testing.T, s datastore.Store) {
	_, err := s.Get(testContext(t), key("node", "", "missing"))
	wantErr(t, "Get of a missing key", err, datastore.ErrNotFound)
	_, err = s.Get(testContext(t), key("networkpolicy", "default", "missing"))
	wantErr(t, "Get of a missing namespaced key", err, datastore.ErrNotFound)
}

func testCreateGet(t *testing.T, s datastore.Store) {
	for _, k := range []datastore.Key{
		key("networkpolicy", "default", "web"),
		key("globalnetworkpolicy", "", "deny-all"),
		key("ipamblock", "", "10.65.0.0-26"),
	} {
		created := mustCreate(t, s, k, "value of "+k.String())
		if created.Revision <= 0 {
			t.Errorf("Create(%s) returned revision %d, want > 0", k, created.Revision)
		}
		want := kvOf(k, "value of "+k.String(), created.Revision)
		if diff := cmp.Diff(want, created, kvOpts); diff != "" {
			t.Errorf("Create(%s) returned (-want +got):\n%s", k, diff)
		}
		if diff := cmp.Diff(want, mustGet(t, s, k), kvOpts); diff != "" {
			t.Errorf("Get(%s) (-want +got):\n%s", k, diff)
		}
	}
	// The same name in another namespace or kind is another key.
	_, err := s.Get(testContext(t), key("networkpolicy", "other", "web"))
	wantErr(t, "Get in another namespace", err, datastore.ErrNotFound)
	_, err = s.Get(testContext(t), key("networkpolicy", "", "web"))
	wantErr(t, "Get of the cluster-scoped twin", err, datastore.ErrNotFound)
	// An empty value is a value.
	k := key("node", "", "empty")
	mustCreate(t, s, k, "")
	if got := mustGet(t, s, k); len(got.Value) != 0 {
		t.Errorf("Get(%s).Value = %q, want empty", k, got.Value)
	}
}

func testCreateExists(t *testing.T, s datastore.Store) {
	k := key("networkpolicy", "default", "web")
	first := mustCreate(t, s, k, "one")
	_, err := s.Create(testContext(t), datastore.KV{Key: k, Value: []byte("two")})
	wantErr(t, "second Create", err, datastore.ErrExists)
	if diff := cmp.Diff(first, mustGet(t, s, k), kvOpts); diff != "" {
		t.Errorf("failed Create changed the object (-want +got):\n%s", diff)
	}
}

func testKindCase(t *testing.T, s datastore.Store) {
	created := mustCreate(t, s, key("NetworkPolicy", "Default", "Web"), "v")
	want := kvOf(key("networkpolicy", "Default", "Web"), "v", created.Revision)
	if diff := cmp.Diff(want, created, kvOpts); diff != "" {
		t.Errorf("Create returned (-want +got):\n%s", diff)
	}
	for _, kind := range []string{"networkpolicy", "NETWORKPOLICY", "NetworkPolicy"} {
		if diff := cmp.Diff(want, mustGet(t, s, key(kind, "Default", "Web")), kvOpts); diff != "" {
			t.Errorf("Get with kind %q (-want +got):\n%s", kind, diff)
		}
	}
	// Namespace and name are case-sensitive.
	_, err := s.Get(testContext(t), key("networkpolicy", "default", "Web"))
	wantErr(t, "Get with another namespace case", err, datastore.ErrNotFound)
	_, err = s.Get(testContext(t), key("networkpolicy", "Default", "web"))
	wantErr(t, "Get with another name case", err, datastore.ErrNotFound)
	_, err = s.Create(testContext(t), kvOf(key("NETWORKPOLICY", "Default", "Web"), "w", 0))
	wantErr(t, "Create with another kind case", err, datastore.ErrExists)
	kvs, _ := mustList(t, s, datastore.Prefix{Kind: "NetworkPOLICY"})
	if diff := cmp.Diff([]datastore.KV{want}, kvs, kvOpts); diff != "" {
		t.Errorf("List with mixed-case kind (-want +got):\n%s", diff)
	}
}

func testValuesCopied(t *testing.T, s datastore.Store) {
	k := key("node", "", "n1")
	in := []byte("original")
	if _, err := s.Create(testContext(t), datastore.KV{Key: k, Value: in}); err != nil {
		t.Fatal(err)
	}
	copy(in, "XXXXXXXX")
	got := mustGet(t, s, k)
	copy(got.Value, "YYYYYYYY")
	if got := mustGet(t, s, k); string(got.Value) != "original" {
		t.Errorf("stored value changed with the caller's slices: %q", got.Value)
	}
}

func testUpdate(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	k := key("networkpolicy", "default", "web")
	v1 := mustCreate(t, s, k, "v1")

	v2, err := s.Update(ctx, kvOf(k, "v2", v1.Revision))
	if err != nil {
		t.Fatalf("Update at the current revision: %v", err)
	}
	if v2.Revision <= v1.Revision {
		t.Errorf("Update returned revision %d, not above %d", v2.Revision, v1.Revision)
	}
	if diff := cmp.Diff(kvOf(k, "v2", v2.Revision), v2, kvOpts); diff != "" {
		t.Errorf("Update returned (-want +got):\n%s", diff)
	}

	_, err = s.Update(ctx, kvOf(k, "stale", v1.Revision))
	wantErr(t, "Update at a stale revision", err, datastore.ErrConflict)
	_, err = s.Update(ctx, kvOf(k, "future", v2.Revision+100))
	wantErr(t, "Update at a future revision", err, datastore.ErrConflict)
	if diff := cmp.Diff(v2, mustGet(t, s, k), kvOpts); diff != "" {
		t.Errorf("failed Updates changed the object (-want +got):\n%s", diff)
	}

	v3, err := s.Update(ctx, kvOf(k, "v3", 0))
	if err != nil {
		t.Fatalf("Update at revision 0: %v", err)
	}
	if diff := cmp.Diff(kvOf(k, "v3", v3.Revision), mustGet(t, s, k), kvOpts); diff != "" || v3.Revision <= v2.Revision {
		t.Errorf("after Update at revision 0 (rev %d after %d), Get (-want +got):\n%s", v3.Revision, v2.Revision, diff)
	}

	missing := key("networkpolicy", "default", "missing")
	_, err = s.Update(ctx, kvOf(missing, "x", 0))
	wantErr(t, "Update of a missing key at revision 0", err, datastore.ErrNotFound)
	_, err = s.Update(ctx, kvOf(missing, "x", v3.Revision))
	wantErr(t, "Update of a missing key at a revision", err, datastore.ErrNotFound)
	_, err = s.Get(ctx, missing)
	wantErr(t, "Get after failed Updates", err, datastore.ErrNotFound)
}

func testDelete(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	k := key("globalnetworkpolicy", "", "deny-all")
	v1 := mustCreate(t, s, k, "v1")
	v2, err := s.Update(ctx, kvOf(k, "v2", v1.Revision))
	if err != nil {
		t.Fatal(err)
	}

	_, err = s.Delete(ctx, k, v1.Revision)
	wantErr(t, "Delete at a stale revision", err, datastore.ErrConflict)
	if diff := cmp.Diff(v2, mustGet(t, s, k), kvOpts); diff != "" {
		t.Errorf("failed Delete changed the object (-want +got):\n%s", diff)
	}

	deleted, err := s.Delete(ctx, k, v2.Revision)
	if err != nil {
		t.Fatalf("Delete at the current revision: %v", err)
	}
	// The deleted KV is the object as it was stored.
	if diff := cmp.Diff(v2, deleted, kvOpts); diff != "" {
		t.Errorf("Delete returned (-want +got):\n%s", diff)
	}
	_, err = s.Get(ctx, k)
	wantErr(t, "Get after Delete", err, datastore.ErrNotFound)
	_, err = s.Delete(ctx, k, 0)
	wantErr(t, "second Delete", err, datastore.ErrNotFound)
	_, err = s.Delete(ctx, k, v2.Revision)
	wantErr(t, "second Delete at a revision", err, datastore.ErrNotFound)

	// Revision 0 deletes whatever the revision; the key can be created again.
	again := mustCreate(t, s, k, "v3")
	if again.Revision <= v2.Revision {
		t.Errorf("re-created at revision %d, not above %d", again.Revision, v2.Revision)
	}
	deleted, err = s.Delete(ctx, k, 0)
	if err != nil {
		t.Fatalf("Delete at revision 0: %v", err)
	}
	if diff := cmp.Diff(again, deleted, kvOpts); diff != "" {
		t.Errorf("Delete at revision 0 returned (-want +got):\n%s", diff)
	}
}

var invalidKeys = []datastore.Key{
	{Kind: "", Name: "a"},
	{Kind: "node", Name: ""},
	{Kind: "node", Namespace: "default", Name: ""},
	{Kind: "a/b", Name: "x"},
	{Kind: "networkpolicy", Namespace: "a/b", Name: "x"},
	{Kind: "networkpolicy", Namespace: "default", Name: "a/b"},
	{Kind: "node", Name: "/"},
}

// wantInvalid checks that err reports a bad argument, not a sentinel.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
	case errors.Is(err, datastore.ErrNotFound), errors.Is(err, datastore.ErrExists), errors.Is(err, datastore.ErrConflict):
		t.Errorf("%s: error %v wraps a sentinel; want an invalid-argument error", what, err)
	}
}

func testInvalidKeys(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	for _, k := range invalidKeys {
		_, err := s.Create(ctx, kvOf(k, "x", 0))
		wantInvalid(t, fmt.Sprintf("Create(%#v)", k), err)
		_, err = s.Get(ctx, k)
		wantInvalid(t, fmt.Sprintf("Get(%#v)", k), err)
		_, err = s.Update(ctx, kvOf(k, "x", 0))
		wantInvalid(t, fmt.Sprintf("Update(%#v)", k), err)
		_, err = s.Delete(ctx, k, 0)
		wantInvalid(t, fmt.Sprintf("Delete(%#v)", k), err)
		_, err = s.Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: kvOf(k, "x", 0)}})
		wantInvalid(t, fmt.Sprintf("Txn(put %#v)", k), err)
	}
	kvs, _ := mustList(t, s, datastore.Prefix{})
	if len(kvs) != 0 {
		t.Errorf("invalid writes stored %v", kvs)
	}
	// Bad ops.
	good := key("node", "", "n1")
	_, err := s.Txn(ctx, []datastore.Op{{Type: 0, KV: kvOf(good, "x", 0)}})
	wantInvalid(t, "Txn with op type 0", err)
	_, err = s.Update(ctx, kvOf(good, "x", -1))
	wantInvalid(t, "Update at a negative revision", err)
	_, err = s.Delete(ctx, good, -1)
	wantInvalid(t, "Delete at a negative revision", err)
}

func testInvalidPrefixes(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	for _, p := range []datastore.Prefix{
		{Namespace: "default"},
		{Kind: "a/b"},
		{Kind: "networkpolicy", Namespace: "a/b"},
	} {
		_, _, err := s.List(ctx, p)
		wantInvalid(t, fmt.Sprintf("List(%#v)", p), err)
		_, err = s.Watch(ctx, p, 0)
		wantInvalid(t, fmt.Sprintf("Watch(%#v)", p), err)
	}
	_, err := s.Watch(ctx, datastore.Prefix{}, -1)
	wantInvalid(t, "Watch from revision -1", err)
}

func testList(t *testing.T, s datastore.Store) {
	// Created in an order that is not the key order. Keys sort byte-wise
	// by kind/[namespace/]name, as etcd sorts its keys: '-' < '/' < '0'.
	keys := []datastore.Key{
		key("policyx", "default", "web"),
		key("policy", "", "default0"),
		key("policy", "other", "web"),
		key("policy", "default", "web"),
		key("node", "", "n1"),
		key("policy", "", "deny-all"),
		key("policy", "default", "db"),
		key("policy", "", "default-x"),
	}
	byKey := map[datastore.Key]datastore.KV{}
	var last int64
	for _, k := range keys {
		kv := mustCreate(t, s, k, k.String())
		byKey[k] = kv
		last = kv.Revision
	}
	want := func(ks ...datastore.Key) []datastore.KV {
		out := []datastore.KV{}
		for _, k := range ks {
			out = append(out, byKey[k])
		}
		return out
	}
	allPolicy := want(
		key("policy", "", "default-x"),
		key("policy", "default", "db"),
		key("policy", "default", "web"),
		key("policy", "", "default0"),
		key("policy", "", "deny-all"),
		key("policy", "other", "web"),
	)
	tests := []struct {
		prefix datastore.Prefix
		want   []datastore.KV
	}{
		{datastore.Prefix{}, append(append(want(key("node", "", "n1")), allPolicy...), want(key("policyx", "default", "web"))...)},
		{datastore.Prefix{Kind: "policy"}, allPolicy},
		{datastore.Prefix{Kind: "Policy"}, allPolicy},
		{datastore.Prefix{Kind: "policy", Namespace: "default"}, want(key("policy", "default", "db"), key("policy", "default", "web"))},
		{datastore.Prefix{Kind: "policy", Namespace: "other"}, want(key("policy", "other", "web"))},
		{datastore.Prefix{Kind: "policy", Namespace: "default0"}, want()},
		{datastore.Prefix{Kind: "policyx"}, want(key("policyx", "default", "web"))},
		{datastore.Prefix{Kind: "polic"}, want()},
		{datastore.Prefix{Kind: "node"}, want(key("node", "", "n1"))},
		{datastore.Prefix{Kind: "none"}, want()},
	}
	for _, tt := range tests {
		got, rev := mustList(t, s, tt.prefix)
		if diff := cmp.Diff(tt.want, got, kvOpts); diff != "" {
			t.Errorf("List(%+v) (-want +got):\n%s", tt.prefix, diff)
		}
		if rev != last {
			t.Errorf("List(%+v) revision %d, want the last write's %d", tt.prefix, rev, last)
		}
	}
}

func testRevisions(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	_, start := mustList(t, s, datastore.Prefix{})
	a, b := key("node", "", "a"), key("node", "", "b")
	var revs []int64
	ka := mustCreate(t, s, a, "a1")
	revs = append(revs, ka.Revision)
	kb := mustCreate(t, s, b, "b1")
	revs = append(revs, kb.Revision)
	ka, err := s.Update(ctx, kvOf(a, "a2", ka.Revision))
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, ka.Revision)
	r, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: kvOf(a, "a3", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, r)
	del, err := s.Delete(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if del.Revision != r {
		t.Errorf("Delete returned revision %d, want the last modification's %d", del.Revision, r)
	}
	_, afterDelete := mustList(t, s, datastore.Prefix{})
	revs = append(revs, afterDelete)

	prev := start
	for i, r := range revs {
		if r <= prev {
			t.Errorf("write %d: revision %d, not above the previous %d (all: %d, %v)", i, r, prev, start, revs)
		}
		prev = r
	}
	// An object keeps the revision of its last change.
	if got := mustGet(t, s, b); got.Revision != kb.Revision {
		t.Errorf("Get(b).Revision = %d after writes to a, want %d", got.Revision, kb.Revision)
	}
	// Failed writes do not change the revision.
	_, _ = s.Create(ctx, kvOf(b, "again", 0))
	_, _ = s.Update(ctx, kvOf(b, "stale", 1))
	if _, rev := mustList(t, s, datastore.Prefix{}); rev != afterDelete {
		t.Errorf("revision %d after failed writes, want %d", rev, afterDelete)
	}
}

func testConcurrentCAS(t *testing.T, s datastore.Store) {
	const goroutines, increments = 8, 25
	ctx := testContext(t)
	k := key("counter", "", "c")
	mustCreate(t, s, k, "0")

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < increments; {
				cur, err := s.Get(ctx, k)
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(cur.Value))
				if err != nil {
					errs <- err
					return
				}
				_, err = s.Update(ctx, kvOf(k, strconv.Itoa(n+1), cur.Revision))
				switch {
				case errors.Is(err, datastore.ErrConflict):
					continue
				case err != nil:
					errs <- err
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("incrementing: %v", err)
	}
	if got, want := string(mustGet(t, s, k).Value), strconv.Itoa(goroutines*increments); got != want {
		t.Errorf("counter = %s after %d×%d CAS increments, want %s", got, goroutines, increments, want)
	}
}
