package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/datastore"
)

// watchBatch is how many events a watch goroutine copies out of the
// history under one lock; a batch never splits a revision.
const watchBatch = 256

// Watch implements datastore.Store. Each watch has a goroutine that copies
// events from the store's history into the returned channel; writers never
// wait for it. A watch that needs history that is gone (afterRevision
// before a compaction, or a reader so slow that HistoryLimit newer events
// piled up) receives EventResync with every object under prefix at the
// current revision and continues after it. The channel is closed when ctx
// is done or the store is closed.
func (s *Store) Watch(ctx context.Context, prefix datastore.Prefix, afterRevision int64) (<-chan datastore.Event, error) {
	p, err := prefix.Path()
	if err != nil {
		return nil, fmt.Errorf("watching %+v: %w", prefix, err)
	}
	if afterRevision < 0 {
		return nil, fmt.Errorf("watching %+v: negative revision %d", prefix, afterRevision)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if afterRevision == 0 {
		afterRevision = s.rev
	}
	s.wg.Add(1)
	s.mu.Unlock()

	out := make(chan datastore.Event, watchBuffer)
	go s.watch(ctx, p, afterRevision+1, out)
	return out, nil
}

// watch sends the events under path prefix p from revision next on.
func (s *Store) watch(ctx context.Context, p string, next int64, out chan<- datastore.Event) {
	defer s.wg.Done()
	defer close(out)
	for {
		evs, after, changed, ok := s.pending(p, next)
		if !ok {
			return
		}
		for _, ev := range evs {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
		next = after
		if len(evs) > 0 {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// pending returns up to about watchBatch events under p from revision next
// on, the revision to continue from, and a channel closed on the next
// write. ok is false once the store is closed.
func (s *Store) pending(p string, next int64) (evs []datastore.Event, after int64, changed <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, nil, false
	}
	if next < s.compactRev {
		ev := datastore.Event{Type: datastore.EventResync, Snapshot: s.listLocked(p), Revision: s.rev}
		return []datastore.Event{ev}, s.rev + 1, s.changed, true
	}
	i, _ := slices.BinarySearchFunc(s.history, next, func(r record, rev int64) int {
		return cmpInt64(r.ev.Revision, rev)
	})
	var last int64
	for ; i < len(s.history); i++ {
		r := s.history[i]
		if len(evs) >= watchBatch && r.ev.Revision != last {
			return evs, r.ev.Revision, s.changed, true
		}
		if strings.HasPrefix(r.path, p) {
			ev := r.ev
			ev.KV.Value = clone(ev.KV.Value)
			evs = append(evs, ev)
			last = ev.Revision
		}
	}
	return evs, max(next, s.rev+1), s.changed, true
}
