// Package etcd is the etcd v3 backend of datastore.Store, and an embedded
// single-member etcd server (StartServer) that Tabby runs by default.
//
// Objects live under Root as /tabby/v1/<lower(kind)>/[<namespace>/]<name>
// (see EncodeKey); the value is whatever the caller stores. Kind is
// compared case-insensitively, and keys read back have a lower-case Kind.
// Every write is one etcd transaction with compare-and-swap conditions on
// the keys' create or mod revisions. Watches resume by themselves after a
// disconnect and turn a compacted revision into datastore.EventResync.
//
// The Store works the same against the embedded server and against a 3-
// or 5-member etcd cluster: only ClientConfig.Endpoints (and TLS files)
// change.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/tabbynet/tabby/internal/datastore"
)

// MaxTxnOps is the largest number of operations Txn accepts: etcd's
// default --max-txn-ops. Txn refuses more with an error before sending
// anything, so the limit is the same against any etcd.
const MaxTxnOps = 128

// listPageSize is how many keys List reads per etcd request.
const listPageSize = 1000

// Keepalive of the client's gRPC connections: a member that stops
// answering (dead host, half-open TCP) is noticed within about 15s.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// Store is a datastore.Store over etcd v3. Create it with New. Every
// method is safe for concurrent use.
type Store struct {
	cli       *clientv3.Client
	watcher   clientv3.Watcher // cli.Watcher; tests wrap it to inject failures
	log       *slog.Logger
	endpoints string

	ctx    context.Context // canceled by Close; ends watches
	cancel context.CancelFunc
	health health

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // watches and the connection monitor
}

var _ datastore.Store = (*Store)(nil)

// New connects to etcd. It applies cfg.Defaults, validates cfg, and reads
// once from etcd (bounded by ctx and cfg.DialTimeout) so that a wrong
// address, certificate or a cluster without quorum is reported here; after
// that the Store reconnects by itself. log receives etcd client messages
// of level error and the Store's own warnings.
func New(ctx context.Context, cfg ClientConfig, log *slog.Logger) (*Store, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd client config: %w", err)
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  tlsCfg,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    keepaliveTime,
		DialKeepAliveTimeout: keepaliveTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			// Reconnect quickly after a member restarts.
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: cfg.DialTimeout,
		})},
		Logger: newZapLogger(log, zapcore.ErrorLevel, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("creating etcd client for %v: %w", cfg.Endpoints, err)
	}
	s := &Store{cli: cli, watcher: cli.Watcher, log: log, endpoints: strings.Join(cfg.Endpoints, ",")}
	s.health.changed = make(chan struct{})

	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	_, err = cli.Get(cctx, Root)
	cancel()
	if err != nil {
		cli.Close()
		if why := probe(ctx, cfg.Endpoints, tlsCfg); why != nil {
			err = fmt.Errorf("%w (%w)", err, why)
		}
		return nil, fmt.Errorf("connecting to etcd at %s: %w", s.endpoints, err)
	}

	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.monitor()
	return s, nil
}

// Client returns the underlying etcd client, for tools that need etcd
// itself (status, defragmentation). Writes under Root must go through
// the Store.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key datastore.Key) (datastore.KV, error) {
	k, err := EncodeKey(key)
	if err != nil {
		return datastore.KV{}, fmt.Errorf("getting %s: %w", key, err)
	}
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return datastore.KV{}, fmt.Errorf("getting %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return datastore.KV{}, fmt.Errorf("getting %s: %w", key, datastore.ErrNotFound)
	}
	return kvOf(resp.Kvs[0])
}

// List implements datastore.Store. It reads in pages, all at the revision
// of the first page, so the result is one consistent snapshot.
func (s *Store) List(ctx context.Context, prefix datastore.Prefix) ([]datastore.KV, int64, error) {
	p, err := EncodePrefix(prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %+v: %w", prefix, err)
	}
	kvs, rev, err := s.list(ctx, p)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %+v: %w", prefix, err)
	}
	return kvs, rev, nil
}

// list reads every key under the etcd prefix p. Keys that are not in
// Tabby's layout are skipped with a warning.
func (s *Store) list(ctx context.Context, p string) ([]datastore.KV, int64, error) {
	end := clientv3.GetPrefixRangeEnd(p)
	for attempt := 0; ; attempt++ {
		kvs, rev, err := s.listOnce(ctx, p, end)
		// A compaction between two pages: start again at a newer revision.
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		return kvs, rev, err
	}
}

func (s *Store) listOnce(ctx context.Context, start, end string) ([]datastore.KV, int64, error) {
	var (
		kvs []datastore.KV
		rev int64
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			kvs = make([]datastore.KV, 0, len(resp.Kvs))
		}
		for _, ekv := range resp.Kvs {
			kv, err := kvOf(ekv)
			if err != nil {
				s.log.Warn("skipping a key outside Tabby's layout", "key", string(ekv.Key), "error", err)
				continue
			}
			kvs = append(kvs, kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	resp, err := s.txn(ctx, []datastore.Op{{Type: datastore.OpCreate, KV: kv}})
	if err != nil {
		return datastore.KV{}, err
	}
	return stored(kv, resp.Header.Revision), nil
}

// Update implements datastore.Store.
func (s *Store) Update(ctx context.Context, kv datastore.KV) (datastore.KV, error) {
	resp, err := s.txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, KV: kv}})
	if err != nil {
		return datastore.KV{}, err
	}
	return stored(kv, resp.Header.Revision), nil
}

// Delete implements datastore.Store. The returned KV holds the deleted
// value and the revision at which it was last modified.
func (s *Store) Delete(ctx context.Context, key datastore.Key, revision int64) (datastore.KV, error) {
	resp, err := s.txn(ctx, []datastore.Op{{Type: datastore.OpDelete, KV: datastore.KV{Key: key, Revision: revision}}})
	if err != nil {
		return datastore.KV{}, err
	}
	prev := resp.Responses[0].GetResponseDeleteRange().GetPrevKvs()
	if len(prev) != 1 {
		return datastore.KV{}, fmt.Errorf("deleting %s: etcd returned %d previous values, want 1", key, len(prev))
	}
	return kvOf(prev[0])
}

// Txn implements datastore.Store with one etcd transaction: the
// conditions of all ops are its compares. It accepts at most MaxTxnOps
// ops, and a key may appear in only one op.
func (s *Store) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	resp, err := s.txn(ctx, ops)
	if err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	return resp.Header.Revision, nil
}

// Compact discards etcd's history before rev (physically, waiting for
// it). Watches from before rev-1 then start with EventResync. Compacting
// at or below an earlier compaction does nothing. Safe for concurrent use.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("compacting etcd at revision %d: %w", rev, err)
	}
	return nil
}

// Close implements datastore.Store: watches end, then the client closes.
// Idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing etcd client: %w", err)
	}
	return nil
}

// txn checks ops and runs them as one etcd transaction. When a condition
// fails, the transaction's else branch reads every conditional key, and
// the error describes the first failing op.
func (s *Store) txn(ctx context.Context, ops []datastore.Op) (*clientv3.TxnResponse, error) {
	if len(ops) > MaxTxnOps {
		return nil, fmt.Errorf("%d operations, more than the limit of %d", len(ops), MaxTxnOps)
	}
	keys := make([]string, len(ops))
	seen := make(map[string]bool, len(ops))
	var (
		cmps       []clientv3.Cmp
		then, orIf []clientv3.Op
		checked    []int // index in ops of each else-branch read
	)
	for i, op := range ops {
		k, err := checkOp(op)
		if err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("%s %s: key appears in more than one operation", op.Type, op.KV.Key)
		}
		seen[k] = true
		keys[i] = k

		switch op.Type {
		case datastore.OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			then = append(then, clientv3.OpPut(k, string(op.KV.Value)))
		case datastore.OpUpdate:
			cmps = append(cmps, revisionIs(k, op.KV.Revision))
			then = append(then, clientv3.OpPut(k, string(op.KV.Value)))
		case datastore.OpPut:
			then = append(then, clientv3.OpPut(k, string(op.KV.Value)))
		case datastore.OpDelete:
			cmps = append(cmps, revisionIs(k, op.KV.Revision))
			then = append(then, clientv3.OpDelete(k, clientv3.WithPrevKV()))
		}
		if op.Type != datastore.OpPut {
			orIf = append(orIf, clientv3.OpGet(k, clientv3.WithKeysOnly()))
			checked = append(checked, i)
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(orIf...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd transaction: %w", err)
	}
	if resp.Succeeded {
		return resp, nil
	}
	for j, i := range checked {
		var cur *mvccpb.KeyValue
		if r := resp.Responses[j].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			cur = r.Kvs[0]
		}
		if err := checkCondition(ops[i], cur); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("etcd transaction failed, but every condition holds when read back")
}

// revisionIs is the condition of an update or delete at rev (0: any).
func revisionIs(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

// checkOp validates op and returns its etcd key.
func checkOp(op datastore.Op) (string, error) {
	path, err := datastore.CheckOp(op)
	if err != nil {
		return "", err
	}
	return Root + path, nil
}

// checkCondition returns the error of op when the key's current value is
// cur (nil if it does not exist), or nil if op may be applied.
func checkCondition(op datastore.Op, cur *mvccpb.KeyValue) error {
	if cur == nil {
		return datastore.CheckCondition(op, false, 0)
	}
	return datastore.CheckCondition(op, true, cur.ModRevision)
}

// kvOf converts an etcd key-value.
func kvOf(ekv *mvccpb.KeyValue) (datastore.KV, error) {
	k, err := DecodeKey(string(ekv.Key))
	if err != nil {
		return datastore.KV{}, err
	}
	return datastore.KV{Key: k, Value: ekv.Value, Revision: ekv.ModRevision}, nil
}

// stored returns kv as stored at rev: Kind lower-cased, value copied.
func stored(kv datastore.KV, rev int64) datastore.KV {
	kv.Key.Kind = strings.ToLower(kv.Key.Kind)
	if kv.Value != nil {
		kv.Value = append([]byte(nil), kv.Value...)
	}
	kv.Revision = rev
	return kv
}
