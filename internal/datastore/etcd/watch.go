package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/tabbynet/tabby/internal/datastore"
)

// watchBuffer is the capacity of each watch channel. A reader that does not
// keep up slows only its own watch: etcd holds the events back for it.
const watchBuffer = 64

// Backoff between attempts to restart a failed watch.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Watch implements datastore.Store.
//
// It follows prefix with an etcd watch from afterRevision+1 (with the
// previous values, for EventDeleted, and with clientv3.WithRequireLeader,
// so that a member cut off from the quorum ends the watch instead of
// falling silent). When the etcd watch ends for any reason but ctx or
// Close, Watch sends EventError and starts a new one from the last
// revision it delivered + 1, with exponential backoff. While the client's
// connection to every endpoint is down it also sends EventError (the etcd
// client reconnects the watch by itself when the cluster is back). When the
// revision it needs is compacted, it lists prefix and sends EventResync
// with that snapshot, then follows from the snapshot's revision + 1.
//
// afterRevision 0 reads the current revision first, so Watch itself fails
// if etcd cannot be reached before ctx is done.
func (s *Store) Watch(ctx context.Context, prefix datastore.Prefix, afterRevision int64) (<-chan datastore.Event, error) {
	p, err := EncodePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("watching %+v: %w", prefix, err)
	}
	if afterRevision < 0 {
		return nil, fmt.Errorf("watching %+v: negative revision %d", prefix, afterRevision)
	}
	if afterRevision == 0 {
		resp, err := s.cli.Get(ctx, Root)
		if err != nil {
			return nil, fmt.Errorf("watching %+v: reading the current revision: %w", prefix, err)
		}
		afterRevision = resp.Header.Revision
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("watching %+v: store is closed", prefix)
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	w := &watcher{s: s, prefix: p, next: afterRevision + 1, out: make(chan datastore.Event, watchBuffer)}
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer stop()
		w.run(ctx)
	}()
	return w.out, nil
}

// watcher is the state of one Watch.
type watcher struct {
	s      *Store
	prefix string
	next   int64 // the first revision not delivered yet
	out    chan datastore.Event
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	var bo backoff
	resync := false
	for ctx.Err() == nil {
		if resync {
			if err := w.resync(ctx); err != nil {
				if ctx.Err() != nil || !w.sendError(ctx, err) || !bo.wait(ctx) {
					return
				}
				continue
			}
			resync = false
		}
		start := time.Now()
		var err error
		resync, err = w.follow(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 2*maxBackoff {
			bo.reset() // it ran for a while: start the backoff over
		}
		if err != nil && !w.sendError(ctx, err) {
			return
		}
		if !resync && !bo.wait(ctx) {
			return
		}
	}
}

// follow runs one etcd watch from w.next until it ends. It reports whether
// the revision it needed is compacted.
func (w *watcher) follow(ctx context.Context, bo *backoff) (resync bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.s.watcher.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.next), clientv3.WithPrevKV())
	connChanged, _ := w.s.health.get()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()

		case <-connChanged:
			var down error
			connChanged, down = w.s.health.get()
			if down != nil && !w.sendError(ctx, down) {
				return false, ctx.Err()
			}

		case resp, ok := <-wch:
			if !ok {
				return false, fmt.Errorf("watch of %s from revision %d ended", w.prefix, w.next)
			}
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				w.s.log.Info("watch revision compacted, resyncing", "prefix", w.prefix,
					"revision", w.next, "compact_revision", resp.CompactRevision)
				return true, nil
			}
			if err := resp.Err(); err != nil {
				return false, fmt.Errorf("watching %s from revision %d: %w", w.prefix, w.next, err)
			}
			for _, ev := range resp.Events {
				e, err := eventOf(ev)
				if err != nil {
					w.s.log.Warn("skipping a key outside Tabby's layout", "key", string(ev.Kv.Key), "error", err)
				} else if !send(ctx, w.out, e) {
					return false, ctx.Err()
				}
				w.next = ev.Kv.ModRevision + 1
			}
			if len(resp.Events) > 0 {
				bo.reset()
			}
		}
	}
}

// resync lists the prefix and sends it as EventResync.
func (w *watcher) resync(ctx context.Context) error {
	kvs, rev, err := w.s.list(ctx, w.prefix)
	if err != nil {
		return fmt.Errorf("resyncing %s after compaction: %w", w.prefix, err)
	}
	if !send(ctx, w.out, datastore.Event{Type: datastore.EventResync, Snapshot: kvs, Revision: rev}) {
		return ctx.Err()
	}
	w.next = rev + 1
	return nil
}

func (w *watcher) sendError(ctx context.Context, err error) bool {
	return send(ctx, w.out, datastore.Event{Type: datastore.EventError, Err: err, Revision: w.next - 1})
}

func send(ctx context.Context, out chan<- datastore.Event, ev datastore.Event) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// eventOf converts an etcd watch event.
func eventOf(ev *clientv3.Event) (datastore.Event, error) {
	key, err := DecodeKey(string(ev.Kv.Key))
	if err != nil {
		return datastore.Event{}, err
	}
	rev := ev.Kv.ModRevision
	kv := datastore.KV{Key: key, Value: ev.Kv.Value, Revision: rev}
	switch {
	case ev.Type == clientv3.EventTypeDelete:
		kv.Value = nil
		if ev.PrevKv != nil {
			kv.Value = ev.PrevKv.Value
		}
		return datastore.Event{Type: datastore.EventDeleted, KV: kv, Revision: rev}, nil
	case ev.IsCreate():
		return datastore.Event{Type: datastore.EventAdded, KV: kv, Revision: rev}, nil
	}
	return datastore.Event{Type: datastore.EventModified, KV: kv, Revision: rev}, nil
}

// health is whether the client can reach etcd, as the gRPC connection
// state says.
type health struct {
	mu      sync.Mutex
	down    error         // non-nil while no endpoint is reachable
	changed chan struct{} // closed and replaced by every set
}

// get returns a channel closed by the next change and the current state.
func (h *health) get() (changed <-chan struct{}, down error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed, h.down
}

func (h *health) set(down error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
	close(h.changed)
	h.changed = make(chan struct{})
}

// monitor follows the gRPC connection state until Close. Each time the
// connection fails (TRANSIENT_FAILURE: no endpoint reachable) the watches
// send EventError.
func (s *Store) monitor() {
	defer s.wg.Done()
	conn := s.cli.ActiveConnection()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.TransientFailure:
			s.health.set(fmt.Errorf("etcd at %s is unreachable", s.endpoints))
		case connectivity.Ready:
			if _, down := s.health.get(); down != nil {
				s.health.set(nil)
			}
		}
		if !conn.WaitForStateChange(s.ctx, st) {
			return
		}
	}
}

// backoff is an exponential backoff with jitter.
type backoff struct{ d time.Duration }

// wait sleeps for the next backoff interval; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, minBackoff), maxBackoff)
	t := time.NewTimer(b.d/2 + rand.N(b.d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *backoff) reset() { b.d = 0 }
