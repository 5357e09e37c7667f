package etcd

import clientv3 "go.etcd.io/etcd/client/v3"

// WrapWatcher replaces the etcd watcher of s by wrap(the current one).
// Call it before the first Watch.
func WrapWatcher(s *Store, wrap func(clientv3.Watcher) clientv3.Watcher) {
	s.watcher = wrap(s.watcher)
}
