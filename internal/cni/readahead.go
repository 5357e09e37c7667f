package cni

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// readAhead is the Store the plugin gives its IPAM Allocator. The reads
// that do not depend on the IPAM lock (the IP pools, the IPAM
// configuration, the node's block affinities, the attachment's own
// handle) are made before the lock is taken, in parallel with other
// plugin processes; readAhead then answers the Allocator's first Get of
// such a key or List of such a prefix from them, and every later read
// from the store. The lock is then held only for the reads and writes of
// the blocks. An answer read ahead is at worst a little stale, which the
// Allocator allows for everywhere: its writes are compare-and-swaps, and
// a lost one re-reads from the store.
type readAhead struct {
	datastore.Store

	mu    sync.Mutex
	gets  map[datastore.Key]getResult
	lists map[datastore.Prefix]listResult
}

type getResult struct {
	kv  datastore.KV
	err error
}

type listResult struct {
	kvs []datastore.KV
	rev int64
}

func newReadAhead(s datastore.Store) *readAhead {
	return &readAhead{Store: s, gets: map[datastore.Key]getResult{}, lists: map[datastore.Prefix]listResult{}}
}

// Kinds are stored case-insensitively; so are the keys here.
func normKey(k datastore.Key) datastore.Key { k.Kind = strings.ToLower(k.Kind); return k }
func normPrefix(p datastore.Prefix) datastore.Prefix {
	p.Kind = strings.ToLower(p.Kind)
	return p
}

// Get answers from a read made ahead once, else from the store.
func (r *readAhead) Get(ctx context.Context, key datastore.Key) (datastore.KV, error) {
	k := normKey(key)
	r.mu.Lock()
	res, ok := r.gets[k]
	delete(r.gets, k)
	r.mu.Unlock()
	if ok {
		return res.kv, res.err
	}
	return r.Store.Get(ctx, key)
}

// List answers from a list made ahead once, else from the store.
func (r *readAhead) List(ctx context.Context, prefix datastore.Prefix) ([]datastore.KV, int64, error) {
	p := normPrefix(prefix)
	r.mu.Lock()
	res, ok := r.lists[p]
	delete(r.lists, p)
	r.mu.Unlock()
	if ok {
		return res.kvs, res.rev, nil
	}
	return r.Store.List(ctx, prefix)
}

// prefetch reads ahead, in parallel, the given keys and prefixes. A
// failed read is not kept (the Allocator then reads again and reports
// the error); a missing key is kept as missing.
func (r *readAhead) prefetch(ctx context.Context, keys []datastore.Key, prefixes []datastore.Prefix) {
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			kv, err := r.Store.Get(ctx, k)
			if err != nil && !errors.Is(err, datastore.ErrNotFound) {
				return
			}
			r.mu.Lock()
			r.gets[normKey(k)] = getResult{kv, err}
			r.mu.Unlock()
		})
	}
	for _, p := range prefixes {
		wg.Go(func() {
			kvs, rev, err := r.Store.List(ctx, p)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.lists[normPrefix(p)] = listResult{kvs, rev}
			r.mu.Unlock()
		})
	}
	wg.Wait()
}

// prefetchAssign reads ahead what AutoAssign reads before it touches a
// block: the pools, the IPAM configuration and the node's affinities.
func (r *readAhead) prefetchAssign(ctx context.Context, node string) {
	r.prefetch(ctx,
		[]datastore.Key{{Kind: "IPAMConfiguration", Name: "default"}},
		[]datastore.Prefix{{Kind: "IPPool"}, {Kind: ipam.KindAffinity, Namespace: node}})
}

// prefetchRelease reads ahead the handle that ReleaseHandle starts with;
// only this attachment changes it.
func (r *readAhead) prefetchRelease(ctx context.Context, handle string) {
	r.prefetch(ctx, []datastore.Key{{Kind: ipam.KindHandle, Name: handle}}, nil)
}

// names returns the names of the objects of a list read ahead (without
// using it up), and whether it was read.
func (r *readAhead) names(prefix datastore.Prefix) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.lists[normPrefix(prefix)]
	var out []string
	for _, kv := range res.kvs {
		out = append(out, kv.Key.Name)
	}
	return out, ok
}
