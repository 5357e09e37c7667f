package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
)

func testTxn(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	upd, put, del := key("node", "", "upd"), key("node", "", "put"), key("node", "", "del")
	created, fresh := key("networkpolicy", "default", "new"), key("networkpolicy", "default", "fresh")
	u := mustCreate(t, s, upd, "u1")
	mustCreate(t, s, put, "p1")
	d := mustCreate(t, s, del, "d1")

	rev, err := s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpCreate, KV: kvOf(created, "c1", 0)},
		{Type: datastore.OpUpdate, KV: kvOf(upd, "u2", u.Revision)},
		{Type: datastore.OpPut, KV: kvOf(put, "p2", 0)},
		{Type: datastore.OpPut, KV: kvOf(fresh, "f1", 0)},
		{Type: datastore.OpDelete, KV: kvOf(del, "", d.Revision)},
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if rev <= d.Revision {
		t.Errorf("Txn returned revision %d, not above %d", rev, d.Revision)
	}
	// Every write of a transaction has its revision.
	got, listRev := mustList(t, s, datastore.Prefix{})
	want := []datastore.KV{
		kvOf(fresh, "f1", rev),
		kvOf(created, "c1", rev),
		kvOf(put, "p2", rev),
		kvOf(upd, "u2", rev),
	}
	if diff := cmp.Diff(want, got, kvOpts); diff != "" {
		t.Errorf("after Txn, List (-want +got):\n%s", diff)
	}
	if listRev != rev {
		t.Errorf("List revision %d after Txn, want %d", listRev, rev)
	}

	// A transaction without ops changes nothing and returns the revision.
	empty, err := s.Txn(ctx, nil)
	if err != nil {
		t.Fatalf("empty Txn: %v", err)
	}
	if empty != rev {
		t.Errorf("empty Txn returned revision %d, want %d", empty, rev)
	}
}

func testTxnFailure(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	a, b := key("node", "", "a"), key("node", "", "b")
	missing := key("node", "", "missing")
	ka := mustCreate(t, s, a, "a1")
	kb := mustCreate(t, s, b, "b1")
	kb, err := s.Update(ctx, kvOf(b, "b2", kb.Revision))
	if err != nil {
		t.Fatal(err)
	}
	stale := kb.Revision - 1
	before, beforeRev := mustList(t, s, datastore.Prefix{})

	// Each transaction has good ops around one failing op.
	good := []datastore.Op{
		{Type: datastore.OpPut, KV: kvOf(key("node", "", "new"), "n", 0)},
		{Type: datastore.OpUpdate, KV: kvOf(a, "a2", ka.Revision)},
	}
	tests := []struct {
		name string
		bad  datastore.Op
		want error
	}{
		{"create existing", datastore.Op{Type: datastore.OpCreate, KV: kvOf(b, "x", 0)}, datastore.ErrExists},
		{"update stale", datastore.Op{Type: datastore.OpUpdate, KV: kvOf(b, "x", stale)}, datastore.ErrConflict},
		{"update missing", datastore.Op{Type: datastore.OpUpdate, KV: kvOf(missing, "x", 0)}, datastore.ErrNotFound},
		{"update missing at revision", datastore.Op{Type: datastore.OpUpdate, KV: kvOf(missing, "x", kb.Revision)}, datastore.ErrNotFound},
		{"delete stale", datastore.Op{Type: datastore.OpDelete, KV: kvOf(b, "", stale)}, datastore.ErrConflict},
		{"delete missing", datastore.Op{Type: datastore.OpDelete, KV: kvOf(missing, "", 0)}, datastore.ErrNotFound},
	}
	for _, tt := range tests {
		for pos := range len(good) + 1 {
			ops := append(append(append([]datastore.Op{}, good[:pos]...), tt.bad), good[pos:]...)
			_, err := s.Txn(ctx, ops)
			wantErr(t, fmt.Sprintf("Txn with %s at position %d", tt.name, pos), err, tt.want)
			after, afterRev := mustList(t, s, datastore.Prefix{})
			if diff := cmp.Diff(before, after, kvOpts); diff != "" {
				t.Errorf("failed Txn with %s at position %d applied writes (-before +after):\n%s", tt.name, pos, diff)
			}
			if afterRev != beforeRev {
				t.Errorf("failed Txn with %s at position %d moved the revision from %d to %d", tt.name, pos, beforeRev, afterRev)
			}
		}
	}
}

func testTxnFirstFailure(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	a := key("node", "", "a")
	mustCreate(t, s, a, "a1")
	_, err := s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpPut, KV: kvOf(key("node", "", "ok"), "x", 0)},
		{Type: datastore.OpUpdate, KV: kvOf(key("node", "", "missing"), "x", 0)},
		{Type: datastore.OpCreate, KV: kvOf(a, "x", 0)},
	})
	wantErr(t, "Txn failing at update then create", err, datastore.ErrNotFound)
	if errors.Is(err, datastore.ErrExists) {
		t.Errorf("Txn error %v also wraps ErrExists; want only the first failing op's error", err)
	}
	_, err = s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpCreate, KV: kvOf(a, "x", 0)},
		{Type: datastore.OpUpdate, KV: kvOf(key("node", "", "missing"), "x", 0)},
	})
	wantErr(t, "Txn failing at create then update", err, datastore.ErrExists)
	if errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("Txn error %v also wraps ErrNotFound; want only the first failing op's error", err)
	}
}

func testTxnLimits(t *testing.T, s datastore.Store) {
	ctx := testContext(t)
	puts := func(n int) []datastore.Op {
		ops := make([]datastore.Op, n)
		for i := range ops {
			ops[i] = datastore.Op{Type: datastore.OpPut, KV: kvOf(key("node", "", fmt.Sprintf("n%03d", i)), "x", 0)}
		}
		return ops
	}
	_, err := s.Txn(ctx, puts(MaxTxnOps+1))
	wantInvalid(t, fmt.Sprintf("Txn with %d ops", MaxTxnOps+1), err)
	if kvs, _ := mustList(t, s, datastore.Prefix{}); len(kvs) != 0 {
		t.Errorf("refused Txn stored %d objects", len(kvs))
	}
	if _, err := s.Txn(ctx, puts(MaxTxnOps)); err != nil {
		t.Errorf("Txn with %d ops: %v", MaxTxnOps, err)
	}
	if kvs, _ := mustList(t, s, datastore.Prefix{}); len(kvs) != MaxTxnOps {
		t.Errorf("Txn with %d ops stored %d objects", MaxTxnOps, len(kvs))
	}

	// A key may appear in one op only.
	dup := key("node", "", "dup")
	_, err = s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpPut, KV: kvOf(dup, "one", 0)},
		{Type: datastore.OpPut, KV: kvOf(key("NODE", "", "dup"), "two", 0)},
	})
	wantInvalid(t, "Txn with a key twice", err)
	_, err = s.Get(ctx, dup)
	wantErr(t, "Get after refused Txn", err, datastore.ErrNotFound)
}
