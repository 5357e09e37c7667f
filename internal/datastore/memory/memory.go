// Package memory is an in-memory datastore.Store for fast unit tests of the
// code above the datastore. It keeps etcd's semantics: one revision counter
// for the whole store, mod revisions per key, a bounded event history that
// watches replay from, and compaction (by Compact or when the history is
// full) that turns a watch from a too-old revision into an EventResync.
//
// Keys are ordered and matched exactly as the etcd backend orders and
// matches its keys: by the path lower(kind)/[namespace/]name, byte-wise.
package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/datastore"
)

// MaxTxnOps is the largest number of operations Txn accepts. It matches
// etcd's default --max-txn-ops so that code tested against this store does
// not break on etcd.
const MaxTxnOps = 128

// HistoryLimit is how many events the store keeps for watches to replay.
// When the history is longer, the oldest revisions are compacted away; a
// watch that still needs them receives EventResync.
const HistoryLimit = 10000

// watchBuffer is the capacity of each watch channel.
const watchBuffer = 64

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("memory store is closed")

// entry is one stored object.
type entry struct {
	key       datastore.Key // normalised: Kind lower-cased
	value     []byte
	createRev int64
	modRev    int64
}

// record is one event of the history with the path of its key.
type record struct {
	path string
	ev   datastore.Event
}

// Store is an in-memory datastore.Store. Create it with New. Every method
// is safe for concurrent use.
//
// Writers never block on watchers: a write appends to the history and wakes
// the watch goroutines, and each watch goroutine copies events from the
// history into its (buffered) channel at its reader's pace. A watcher that
// falls so far behind that the history it needs has been dropped (more
// than HistoryLimit events, or Compact) receives EventResync with a fresh
// snapshot instead, exactly like an etcd watch after compaction.
type Store struct {
	mu         sync.Mutex
	closed     bool
	rev        int64 // current store revision
	compactRev int64 // history holds every event with revision >= compactRev
	data       map[string]*entry
	history    []record      // sorted by revision
	changed    chan struct{} // closed and replaced on every write; closed on Close
	done       chan struct{} // closed on Close
	wg         sync.WaitGroup
}

var _ datastore.Store = (*Store)(nil)

// New returns an empty Store at revision 1, like a fresh etcd.
func New() *Store {
	return &Store{
		rev:        1,
		compactRev: 1,
		data:       make(map[string]*entry),
		changed:    make(chan struct{}),
		done:       make(chan struct{}),
	}
}

// Revision returns the current store revision. Safe for concurrent use.
func (s *Store) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Compact drops the history before rev, as etcd's compaction at rev does:
// afterwards a Watch with afterRevision < rev-1 cannot replay and starts
// with EventResync. rev beyond the current revision is an error; a rev at
// or below an earlier compaction does nothing. Safe for concurrent use.
func (s *Store) Compact(rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if rev > s.rev {
		return fmt.Errorf("compacting at revision %d: beyond the current revision %d", rev, s.rev)
	}
	if rev <= s.compactRev {
		return nil
	}
	s.compactRev = rev
	i, _ := slices.BinarySearchFunc(s.history, rev, func(r record, rev int64) int {
		return cmpInt64(r.ev.Revision, rev)
	})
	s.history = slices.Delete(s.history, 0, i)
	return nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key datastore.Key) (datastore.KV, error) {
	path, err := key.Path()
	if err != nil {
		return datastore.KV{}, fmt.Errorf("getting %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.KV{}, ErrClosed
	}
	e, ok := s.data[path]
	if !ok {
		return datastore.KV{}, fmt.Errorf("getting %s: %w", key, datastore.ErrNotFound)
	}
	return e.kv(), nil
}

// List implements datastore.Store.
func (s *Store) List(ctx context.Context, prefix datastore.Prefix) ([]datastore.KV, int64, error) {
	p, err := prefix.Path()
	if err != nil {
		return nil, 0, fmt.Errorf("listing %+v: %w", prefix, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, ErrClosed
	}
	return s.listLocked(p), s.rev, nil
}

// listLocked returns the objects under path prefix p sorted by path.
func (s *Store) listLocked(p string) []datastore.KV {
	paths := make([]string, 0, len(s.data))
	for path := range s.data {
		if strings.HasPrefix(path, p) {
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	kvs := make([]datastore.KV, len(paths))
	for i, path := range paths {
		kvs[i] = s.data[path].kv()
	}
	return kvs
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	rev, err := s.apply([]datastore.Op{{Type: datastore.OpCreate, KV: kv}})
	if err != nil {
		return datastore.KV{}, err
	}
	return stored(kv, rev), nil
}

// Update implements datastore.Store.
func (s *Store) Update(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	rev, err := s.apply([]datastore.Op{{Type: datastore.OpUpdate, KV: kv}})
	if err != nil {
		return datastore.KV{}, err
	}
	return stored(kv, rev), nil
}

// Delete implements datastore.Store. The returned KV holds the deleted
// value and the revision at which it was last modified.
func (s *Store) Delete(ctx context.Context, key datastore.Key, revision int64) (datastore.KV, error) {
	path, err := key.Path()
	if err != nil {
		return datastore.KV{}, fmt.Errorf("deleting %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.KV{}, ErrClosed
	}
	var prev datastore.KV
	if e, ok := s.data[path]; ok {
		prev = e.kv()
	}
	if _, err := s.applyLocked([]datastore.Op{{Type: datastore.OpDelete, KV: datastore.KV{Key: key, Revision: revision}}}); err != nil {
		return datastore.KV{}, err
	}
	return prev, nil
}

// Txn implements datastore.Store. It accepts at most MaxTxnOps ops, and a
// key may appear in only one op.
func (s *Store) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	rev, err := s.apply(ops)
	if err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	return rev, nil
}

// Close implements datastore.Store: every watch channel is closed, and
// later calls return ErrClosed. Idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.changed)
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Store) apply(ops []datastore.Op) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.applyLocked(ops)
}

// applyLocked checks every op and, if all pass, applies them at one new
// revision. It returns the store revision after the transaction.
func (s *Store) applyLocked(ops []datastore.Op) (int64, error) {
	if len(ops) > MaxTxnOps {
		return 0, fmt.Errorf("%d operations, more than the limit of %d", len(ops), MaxTxnOps)
	}
	paths := make([]string, len(ops))
	seen := make(map[string]bool, len(ops))
	for i, op := range ops {
		path, err := datastore.CheckOp(op)
		if err != nil {
			return 0, err
		}
		if seen[path] {
			return 0, fmt.Errorf("%s %s: key appears in more than one operation", op.Type, op.KV.Key)
		}
		seen[path] = true
		paths[i] = path
	}
	for i, op := range ops {
		if err := checkCondition(op, s.data[paths[i]]); err != nil {
			return 0, err
		}
	}
	if len(ops) == 0 {
		return s.rev, nil
	}

	s.rev++
	for i, op := range ops {
		path := paths[i]
		old := s.data[path]
		if op.Type == datastore.OpDelete {
			delete(s.data, path)
			kv := old.kv()
			kv.Revision = s.rev
			s.recordLocked(path, datastore.Event{Type: datastore.EventDeleted, KV: kv, Revision: s.rev})
			continue
		}
		e := &entry{key: normalize(op.KV.Key), value: clone(op.KV.Value), createRev: s.rev, modRev: s.rev}
		typ := datastore.EventAdded
		if old != nil {
			e.createRev = old.createRev
			typ = datastore.EventModified
		}
		s.data[path] = e
		s.recordLocked(path, datastore.Event{Type: typ, KV: e.kv(), Revision: s.rev})
	}
	s.trimHistoryLocked()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.rev, nil
}

// recordLocked appends ev to the history.
func (s *Store) recordLocked(path string, ev datastore.Event) {
	s.history = append(s.history, record{path: path, ev: ev})
}

// trimHistoryLocked drops the oldest whole revisions while the history is
// longer than HistoryLimit.
func (s *Store) trimHistoryLocked() {
	if len(s.history) <= HistoryLimit {
		return
	}
	n := len(s.history) - HistoryLimit
	last := s.history[n-1].ev.Revision
	for n < len(s.history) && s.history[n].ev.Revision == last {
		n++
	}
	s.compactRev = last + 1
	s.history = slices.Delete(s.history, 0, n)
}

// checkCondition reports whether op may be applied when the key's current
// entry is cur (nil if the key does not exist).
func checkCondition(op datastore.Op, cur *entry) error {
	if cur == nil {
		return datastore.CheckCondition(op, false, 0)
	}
	return datastore.CheckCondition(op, true, cur.modRev)
}

func (e *entry) kv() datastore.KV {
	return datastore.KV{Key: e.key, Value: clone(e.value), Revision: e.modRev}
}

// stored returns kv as stored at rev.
func stored(kv datastore.KV, rev int64) datastore.KV {
	return datastore.KV{Key: normalize(kv.Key), Value: clone(kv.Value), Revision: rev}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return slices.Clone(b)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
