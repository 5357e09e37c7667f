package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memory"
	"github.com/tabbynet/tabby/internal/datastore/storetest"
)

func newStore(t *testing.T) datastore.Store {
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	return s
}

func compact(t *testing.T, s datastore.Store, rev int64) {
	if err := s.(*memory.Store).Compact(rev); err != nil {
		t.Fatalf("Compact(%d): %v", rev, err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newStore, compact)
}

func TestCompactFutureRevision(t *testing.T) {
	s := memory.New()
	defer s.Close()
	if err := s.Compact(s.Revision() + 1); err == nil {
		t.Error("Compact beyond the current revision: no error")
	}
	if err := s.Compact(s.Revision()); err != nil {
		t.Errorf("Compact at the current revision: %v", err)
	}
}

// A reader that does not keep up does not slow writers down; once the
// history it needs is gone it gets EventResync and then the later events.
func TestSlowWatcherGetsResync(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := memory.New()
	defer s.Close()
	_, rev, err := s.List(ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, datastore.Prefix{Kind: "node"}, rev)
	if err != nil {
		t.Fatal(err)
	}
	const writes = memory.HistoryLimit + 1000
	for i := range writes {
		k := datastore.Key{Kind: "node", Name: fmt.Sprintf("n%d", i%10)}
		if _, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: datastore.KV{Key: k, Value: []byte(fmt.Sprint(i))}}}); err != nil {
			t.Fatal(err)
		}
	}
	snapshot, snapRev, err := s.List(ctx, datastore.Prefix{Kind: "node"})
	if err != nil {
		t.Fatal(err)
	}

	// The first events were buffered before the reader fell behind; then
	// comes a resync with the state as it is now.
	var got datastore.Event
	n := 0
	for got = range ch {
		n++
		if got.Type == datastore.EventResync {
			break
		}
		if got.Type != datastore.EventAdded && got.Type != datastore.EventModified {
			t.Fatalf("event %d: %+v", n, got)
		}
	}
	if got.Type != datastore.EventResync {
		t.Fatal("watch closed without EventResync")
	}
	want := datastore.Event{Type: datastore.EventResync, Snapshot: snapshot, Revision: snapRev}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resync (-want +got):\n%s", diff)
	}
	if n > 400 {
		t.Errorf("resync came after %d events; want it after about the channel buffer", n)
	}

	kv, err := s.Create(ctx, datastore.KV{Key: datastore.Key{Kind: "node", Name: "late"}, Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		want := datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: kv.Revision}
		if diff := cmp.Diff(want, ev); diff != "" {
			t.Errorf("event after resync (-want +got):\n%s", diff)
		}
	case <-ctx.Done():
		t.Fatal("no event after resync")
	}
}

func TestClosedStore(t *testing.T) {
	ctx := t.Context()
	s := memory.New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	k := datastore.Key{Kind: "node", Name: "n1"}
	if _, err := s.Get(ctx, k); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Create(ctx, datastore.KV{Key: k}); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("Create after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Watch(ctx, datastore.Prefix{}, 0); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}
