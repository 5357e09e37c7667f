package etcd_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
)

// breakableWatcher passes etcd watches through until Break ends every
// watch it started, as a lost connection or a canceled watch would.
type breakableWatcher struct {
	clientv3.Watcher
	mu      sync.Mutex
	breaks  []chan bool
	started int
}

func (b *breakableWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	ctx, cancel := context.WithCancel(ctx)
	in := b.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	brk := make(chan bool, 1)
	b.mu.Lock()
	b.breaks = append(b.breaks, brk)
	b.started++
	b.mu.Unlock()
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case resp, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- resp:
				case <-ctx.Done():
					return
				}
			case withErr := <-brk:
				if withErr {
					// A canceled response without a reason: Err() is
					// ErrFutureRev, which Watch must treat like any error.
					select {
					case out <- clientv3.WatchResponse{Canceled: true}:
					case <-ctx.Done():
					}
				}
				return
			}
		}
	}()
	return out
}

// Break ends every running watch: with a canceled response first if
// withErr, else by closing its channel.
func (b *breakableWatcher) Break(withErr bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, brk := range b.breaks {
		brk <- withErr
	}
	b.breaks = nil
}

func (b *breakableWatcher) Started() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

// TestWatchResumesAfterWatchEnds ends the etcd watch under a Watch again
// and again, with writes made while it is down; every event arrives once
// and in order, and each break is reported as EventError.
func TestWatchResumesAfterWatchEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, cc := etcdtest.StartTestServer(t)
	s := etcdtest.NewStore(t, cc)
	bw := &breakableWatcher{}
	etcd.WrapWatcher(s, func(w clientv3.Watcher) clientv3.Watcher {
		bw.Watcher = w
		return bw
	})
	writer := etcdtest.NewStore(t, cc)

	_, rev, err := s.List(ctx, datastore.Prefix{Kind: "node"})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, datastore.Prefix{Kind: "node"}, rev)
	if err != nil {
		t.Fatal(err)
	}

	var want, got []datastore.Event
	errorEvents := 0
	n := 0
	write := func(count int) {
		for range count {
			kv, err := writer.Create(ctx, datastore.KV{Key: datastore.Key{Kind: "node", Name: fmt.Sprintf("n%03d", n)}, Value: []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			n++
			want = append(want, datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: kv.Revision})
		}
	}
	// receive waits until every written event has arrived.
	receive := func() {
		for len(got) < len(want) {
			ev := recvEvent(t, ch, 10*time.Second)
			if ev.Type == datastore.EventError {
				errorEvents++
				continue
			}
			got = append(got, ev)
		}
	}
	const rounds = 4
	for round := range rounds {
		write(5)
		receive() // the watch is running now
		bw.Break(round%2 == 1)
		write(5) // while the watch is down
	}
	write(5)
	receive()
	select {
	case ev := <-ch:
		if ev.Type != datastore.EventError {
			t.Errorf("extra event: %+v", ev)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if errorEvents < rounds {
		t.Errorf("%d EventError for %d broken watches", errorEvents, rounds)
	}
	if started := bw.Started(); started != rounds+1 {
		t.Errorf("%d etcd watches started, want %d", started, rounds+1)
	}
}
