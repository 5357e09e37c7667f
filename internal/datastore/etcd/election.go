package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ElectionRoot is the etcd key prefix of leader elections. It is outside
// Root, so the Store's List and Watch never see election keys.
const ElectionRoot = "/tabby/election/"

// Election is leader election among the processes that share an etcd,
// on go.etcd.io/etcd/client/v3/concurrency: the candidate whose key
// (bound to its session's lease) is oldest leads. The leadership is lost
// when the lease expires, that is when the leader cannot reach etcd for
// the TTL. It implements the Election interface of package ipam.
type Election struct {
	cli *clientv3.Client
	key string
	id  string
	ttl int

	mu      sync.Mutex
	session *concurrency.Session
	el      *concurrency.Election
	cancel  context.CancelFunc
}

// NewElection returns an election named name (no '/'; "ipam-gc", say)
// in which this process is the candidate id (its node name, say; shown
// to observers). ttl, at least one second, bounds how long a dead
// leader keeps the leadership. The Election uses the Store's client and
// must not be used after the Store is closed.
func (s *Store) NewElection(name, id string, ttl time.Duration) (*Election, error) {
	var errs []error
	if name == "" || strings.Contains(name, "/") {
		errs = append(errs, fmt.Errorf("election name %q: must be non-empty without '/'", name))
	}
	if id == "" {
		errs = append(errs, errors.New("election candidate id: empty"))
	}
	if ttl < time.Second {
		errs = append(errs, fmt.Errorf("election ttl %v: less than 1s", ttl))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Election{cli: s.cli, key: ElectionRoot + name, id: id, ttl: int((ttl + time.Second - 1) / time.Second)}, nil
}

// Campaign blocks until this candidate leads or ctx ends (then it returns
// ctx's error and withdraws the candidacy). The returned context is
// canceled when the leadership is lost (the session's lease expired) or
// ctx ends. Call Resign before campaigning again. Not safe for concurrent
// use with itself or Resign.
func (e *Election) Campaign(ctx context.Context) (context.Context, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session != nil {
		return nil, errors.New("campaigning: already a candidate; resign first")
	}
	// Grant the lease here, bounded by ctx; the session then keeps it
	// alive with the client's own context, so that Resign can still
	// revoke it after ctx has ended.
	lease, err := e.cli.Grant(ctx, int64(e.ttl))
	if err != nil {
		return nil, fmt.Errorf("campaigning in %s: granting a lease: %w", e.key, err)
	}
	session, err := concurrency.NewSession(e.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(e.ttl))
	if err != nil {
		return nil, fmt.Errorf("campaigning in %s: starting a session: %w", e.key, err)
	}
	el := concurrency.NewElection(session, e.key)
	if err := el.Campaign(ctx, e.id); err != nil {
		_ = session.Close()
		return nil, fmt.Errorf("campaigning in %s: %w", e.key, err)
	}
	leadCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-session.Done():
		case <-leadCtx.Done():
		}
		cancel()
	}()
	e.session, e.el, e.cancel = session, el, cancel
	return leadCtx, nil
}

// Resign gives up the leadership (or the candidacy) and ends the
// session, so that another candidate leads at once instead of after the
// TTL. Idempotent.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session == nil {
		return nil
	}
	e.cancel()
	err := e.el.Resign(ctx)
	if cerr := e.session.Close(); cerr != nil && err == nil {
		err = cerr
	}
	e.session, e.el, e.cancel = nil, nil, nil
	if err != nil {
		return fmt.Errorf("resigning from %s: %w", e.key, err)
	}
	return nil
}

// Leader returns the id of the current leader; empty if there is none.
// Read-only; safe for concurrent use.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.cli.Get(ctx, e.key+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("reading the leader of %s: %w", e.key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
