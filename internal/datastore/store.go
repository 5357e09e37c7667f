// Package datastore defines how Tabby stores its state: a small key-value
// Store interface with compare-and-swap writes and resumable watches,
// implemented by the etcd v3 backend (package etcd) and an in-memory backend
// for unit tests (package memory), plus a typed Client that stores api/v1
// resources in any Store. Package storetest holds the conformance suite that
// every backend must pass.
package datastore

import (
	"context"
	"errors"
	"fmt"
)

// Key names one stored object. Namespace is empty for cluster-scoped kinds.
// Kind, Namespace and Name must be non-empty where used and must not contain
// '/'. Kind is stored case-insensitively (lower-cased in the backend key).
type Key struct {
	Kind      string
	Namespace string
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Prefix selects a set of keys for List and Watch. An empty Kind selects
// every key; an empty Namespace selects every namespace of Kind (and the
// cluster-scoped objects of Kind).
type Prefix struct {
	Kind      string
	Namespace string
}

// KV is one stored object. Revision is the store revision at which the
// object was last modified (etcd's mod revision); it is 0 for an object
// that is not stored yet.
type KV struct {
	Key      Key
	Value    []byte
	Revision int64
}

// EventType says what a watch Event reports.
type EventType int

const (
	// EventAdded reports a key that was created.
	EventAdded EventType = iota + 1
	// EventModified reports a key whose value changed.
	EventModified
	// EventDeleted reports a key that was deleted. Event.KV.Value holds the
	// last value when the backend knows it, and KV.Revision is the revision
	// of the deletion.
	EventDeleted
	// EventResync replaces the watcher's whole view of the prefix: it is
	// sent when the watch could not resume because the revision it needed
	// was compacted. Event.Snapshot holds every object under the prefix at
	// Event.Revision; the watch continues after that revision.
	EventResync
	// EventError reports a non-fatal problem (for example the datastore is
	// unreachable); the watch keeps retrying with backoff. Event.Err is set.
	EventError
)

func (t EventType) String() string {
	switch t {
	case EventAdded:
		return "added"
	case EventModified:
		return "modified"
	case EventDeleted:
		return "deleted"
	case EventResync:
		return "resync"
	case EventError:
		return "error"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one item of a watch stream.
type Event struct {
	Type     EventType
	KV       KV    // Added, Modified, Deleted
	Snapshot []KV  // Resync
	Revision int64 // the store revision of this event
	Err      error // Error
}

// OpType is the kind of one transaction operation.
type OpType int

const (
	// OpCreate creates KV.Key; it fails the transaction if the key exists.
	OpCreate OpType = iota + 1
	// OpUpdate replaces KV.Key if its revision is KV.Revision; a
	// KV.Revision of 0 means "whatever the revision, but it must exist".
	OpUpdate
	// OpPut creates or replaces KV.Key unconditionally.
	OpPut
	// OpDelete deletes KV.Key if its revision is KV.Revision (0: any
	// revision); the key must exist.
	OpDelete
)

// Op is one operation of a transaction.
type Op struct {
	Type OpType
	KV   KV
}

// Errors returned by every Store. Test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict means a compare-and-swap failed: the object changed
	// since the revision the caller read.
	ErrConflict = errors.New("revision conflict")
)

// Store is Tabby's datastore. Every method is safe for concurrent use.
// Errors for a missing, existing or changed key wrap ErrNotFound, ErrExists
// or ErrConflict.
type Store interface {
	// Get returns the object at key, or ErrNotFound. Read-only.
	Get(ctx context.Context, key Key) (KV, error)
	// List returns every object under prefix sorted by key, and the store
	// revision the list was read at (pass it to Watch to follow changes
	// without gaps). Read-only.
	List(ctx context.Context, prefix Prefix) ([]KV, int64, error)
	// Create stores kv.Value at kv.Key if the key does not exist, else
	// ErrExists. It returns the stored KV with its new Revision. Not
	// idempotent: a second call returns ErrExists.
	Create(ctx context.Context, kv KV) (KV, error)
	// Update replaces the value at kv.Key only if its current revision is
	// kv.Revision (compare-and-swap), else ErrConflict; ErrNotFound if the
	// key does not exist. kv.Revision 0 skips the revision check. It
	// returns the stored KV with its new Revision.
	Update(ctx context.Context, kv KV) (KV, error)
	// Delete removes key if its revision is revision (0: any revision),
	// else ErrConflict; ErrNotFound if it does not exist. It returns the
	// deleted KV. Callers that want idempotent deletes ignore ErrNotFound.
	Delete(ctx context.Context, key Key, revision int64) (KV, error)
	// Txn applies ops atomically: either every op succeeds or none is
	// applied. The error of the first failing op is returned, wrapping
	// ErrExists, ErrNotFound or ErrConflict. It returns the store revision
	// after the transaction.
	Txn(ctx context.Context, ops []Op) (int64, error)
	// Watch streams the changes under prefix with a revision greater than
	// afterRevision (from List). Afterwards it resumes by itself after a
	// disconnect at the last seen revision + 1, and sends EventResync when
	// the revision it needs has been compacted. The channel is closed when
	// ctx is done or the store is closed. afterRevision 0 means "from now".
	Watch(ctx context.Context, prefix Prefix, afterRevision int64) (<-chan Event, error)
	// Close releases the store's resources; watches end. Idempotent.
	Close() error
}
