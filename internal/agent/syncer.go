package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
)

// update is one decoded change from the datastore.
type update struct {
	key     datastore.Key
	kv      datastore.KV // the raw value; Value is nil for deletes
	obj     v1.Object    // decoded API object; nil for deletes and non-API kinds
	deleted bool
}

// batch is what the syncer hands the agent loop: every update that arrived
// since the previous batch, in order.
type batch struct {
	updates []update
	// inSync is true once every watched prefix has been listed: from then
	// on the agent's view is complete and the dataplane may be programmed.
	inSync bool
	// errors counts the datastore errors the followers met since the
	// previous batch (the watches retry by themselves; readiness comes from
	// the agent's own datastore probe).
	errors int
	// revision is the highest datastore revision the batch's followers
	// reached: the revision of a list, of a watch event or of a resync.
	revision int64
}

// syncer lists and then watches a set of datastore prefixes and sends the
// changes as batches. Each prefix has its own list+watch, so a busy kind the
// agent does not need (IPAM blocks) costs it nothing.
type syncer struct {
	store    datastore.Store
	prefixes []datastore.Prefix
	log      *slog.Logger
	out      chan batch
}

func newSyncer(store datastore.Store, prefixes []datastore.Prefix, log *slog.Logger) *syncer {
	return &syncer{store: store, prefixes: prefixes, log: log, out: make(chan batch, 1)}
}

// followerEvent is one item from one prefix's follower.
type followerEvent struct {
	updates  []update
	listed   bool  // the prefix's initial list is in updates
	err      error // a datastore error the follower met
	revision int64 // the store revision the follower reached (0: unknown)
}

// run follows every prefix until ctx is done; it closes s.out at the end.
func (s *syncer) run(ctx context.Context) {
	defer close(s.out)
	events := make(chan followerEvent, 16*len(s.prefixes))
	for _, p := range s.prefixes {
		go s.follow(ctx, p, events)
	}
	listed := 0
	var pending batch
	havePending := false
	for {
		var out chan batch
		if havePending {
			out = s.out
		}
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			pending.updates = append(pending.updates, ev.updates...)
			if ev.listed {
				listed++
			}
			pending.inSync = listed == len(s.prefixes)
			if ev.err != nil {
				pending.errors++
			}
			pending.revision = max(pending.revision, ev.revision)
			havePending = true
		case out <- pending:
			pending = batch{inSync: pending.inSync}
			havePending = false
		}
	}
}

// follow lists one prefix, then watches it, forever. Watch resumes by
// itself after disconnects; a failed list or watch set-up is retried with
// backoff. known tracks the keys and revisions under the prefix, so that a
// resync (after compaction or a fresh list) can turn into deletes for the
// keys that are gone.
func (s *syncer) follow(ctx context.Context, p datastore.Prefix, events chan<- followerEvent) {
	known := map[datastore.Key]int64{}
	send := func(ev followerEvent) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	first := true
	for ctx.Err() == nil {
		kvs, rev, err := s.store.List(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("listing the datastore failed", "kind", p.Kind, "err", err)
			if !send(followerEvent{err: fmt.Errorf("listing %s: %w", p.Kind, err)}) {
				return
			}
			backoff.wait(ctx)
			continue
		}
		if !send(followerEvent{updates: s.replace(known, kvs), listed: first, revision: rev}) {
			return
		}
		first = false
		ch, err := s.store.Watch(ctx, p, rev)
		if err != nil {
			s.log.Warn("watching the datastore failed", "kind", p.Kind, "err", err)
			if !send(followerEvent{err: fmt.Errorf("watching %s: %w", p.Kind, err)}) {
				return
			}
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		for ev := range ch {
			fe := followerEvent{revision: max(ev.Revision, ev.KV.Revision)}
			switch ev.Type {
			case datastore.EventAdded, datastore.EventModified:
				known[ev.KV.Key] = ev.KV.Revision
				fe.updates = []update{s.decode(ev.KV)}
			case datastore.EventDeleted:
				delete(known, ev.KV.Key)
				fe.updates = []update{{key: ev.KV.Key, kv: datastore.KV{Key: ev.KV.Key, Revision: ev.Revision}, deleted: true}}
			case datastore.EventResync:
				fe.updates = s.replace(known, ev.Snapshot)
			case datastore.EventError:
				fe.err = ev.Err
			}
			if !send(fe) {
				return
			}
		}
		// The watch ended: ctx is done or the store was closed.
		if ctx.Err() == nil {
			send(followerEvent{err: errors.New("datastore watch ended")})
			backoff.wait(ctx)
		}
	}
}

// replace turns a full snapshot into updates against known: deletes for
// the keys that are gone, and an update for each key that is new or has
// another revision. It updates known.
func (s *syncer) replace(known map[datastore.Key]int64, kvs []datastore.KV) []update {
	var out []update
	present := make(map[datastore.Key]bool, len(kvs))
	for _, kv := range kvs {
		present[kv.Key] = true
		if rev, ok := known[kv.Key]; ok && rev == kv.Revision {
			continue
		}
		known[kv.Key] = kv.Revision
		out = append(out, s.decode(kv))
	}
	for k := range known {
		if !present[k] {
			delete(known, k)
			out = append(out, update{key: k, kv: datastore.KV{Key: k}, deleted: true})
		}
	}
	return out
}

// decode turns a stored value into an update; API objects are decoded,
// other kinds are passed on raw.
func (s *syncer) decode(kv datastore.KV) update {
	u := update{key: kv.Key, kv: kv}
	if _, ok := v1.LookupKind(kv.Key.Kind); !ok {
		return u
	}
	obj, err := datastore.Decode(kv)
	if err != nil {
		// A value that does not decode is treated as absent, so a bad
		// write cannot wedge the agent; it is logged once here.
		s.log.Error("ignoring a stored object that does not decode", "key", kv.Key.String(), "err", err)
		u.deleted = true
		return u
	}
	u.obj = obj
	return u
}

// backoff is a capped exponential backoff with jitter-free doubling; the
// agent's retries are few and per prefix.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(minD, maxD time.Duration) *backoff {
	return &backoff{min: minD, max: maxD, cur: minD}
}

func (b *backoff) reset() { b.cur = b.min }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.cur = min(2*b.cur, b.max)
}
