package datastore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// maxTxnOps is how many operations Client.Apply puts in one transaction:
// etcd's default --max-txn-ops. A larger batch is written in several
// transactions, so it is atomic per chunk only.
const maxTxnOps = 128

// maxApplyRetries bounds how often Apply starts again after a concurrent
// writer changed an object between its read and its write.
const maxApplyRetries = 5

// Client stores api/v1 resources in a Store as JSON. It is safe for
// concurrent use. The stored value never contains resourceVersion; it is
// filled from the KV revision on read.
type Client struct {
	store Store
	now   func() time.Time
}

// NewClient returns a Client over s.
func NewClient(s Store) *Client {
	return &Client{store: s, now: time.Now}
}

// Store returns the Store under the client.
func (c *Client) Store() Store { return c.store }

// KeyOf returns the datastore key of obj from its kind and metadata.
func KeyOf(obj v1.Object) (Key, error) {
	info, err := kindOf(obj)
	if err != nil {
		return Key{}, err
	}
	m := obj.GetObjectMeta()
	k := Key{Kind: info.Kind, Name: m.Name}
	if info.Namespaced {
		k.Namespace = m.Namespace
	}
	if k.Name == "" || (info.Namespaced && k.Namespace == "") {
		return Key{}, fmt.Errorf("%s %q: name and namespace must be set", info.Kind, k)
	}
	return k, nil
}

func kindOf(obj v1.Object) (v1.KindInfo, error) {
	kind := obj.GetTypeMeta().Kind
	info, ok := v1.LookupKind(kind)
	if !ok || info.Kind != kind {
		return v1.KindInfo{}, fmt.Errorf("object of type %T: unknown kind %q", obj, kind)
	}
	return info, nil
}

// Encode returns the stored form of obj: JSON with apiVersion tabby.dev/v1
// and without resourceVersion.
func Encode(obj v1.Object) ([]byte, error) {
	m := obj.GetObjectMeta()
	rv := m.ResourceVersion
	m.ResourceVersion = ""
	defer func() { m.ResourceVersion = rv }()
	tm := obj.GetTypeMeta()
	if tm.APIVersion != v1.APIVersion {
		return nil, fmt.Errorf("%s %s: apiVersion %q, want %q", tm.Kind, m.Name, tm.APIVersion, v1.APIVersion)
	}
	return json.Marshal(obj)
}

// Decode turns a stored KV back into an object with ResourceVersion set.
func Decode(kv KV) (v1.Object, error) {
	info, ok := v1.LookupKind(kv.Key.Kind)
	if !ok {
		return nil, fmt.Errorf("decoding %s: unknown kind", kv.Key)
	}
	obj := info.New()
	if err := json.Unmarshal(kv.Value, obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	obj.GetTypeMeta().APIVersion, obj.GetTypeMeta().Kind = v1.APIVersion, info.Kind
	obj.GetObjectMeta().ResourceVersion = strconv.FormatInt(kv.Revision, 10)
	return obj, nil
}

// Get returns one object; the error wraps ErrNotFound if it does not exist.
func (c *Client) Get(ctx context.Context, info v1.KindInfo, namespace, name string) (v1.Object, error) {
	if !info.Namespaced {
		namespace = ""
	}
	kv, err := c.store.Get(ctx, Key{Kind: info.Kind, Namespace: namespace, Name: name})
	if err != nil {
		return nil, err
	}
	return Decode(kv)
}

// List returns the objects of a kind, in one namespace or (namespace "")
// all of them, sorted by namespace and name, and the store revision.
func (c *Client) List(ctx context.Context, info v1.KindInfo, namespace string) ([]v1.Object, int64, error) {
	if !info.Namespaced {
		namespace = ""
	}
	kvs, rev, err := c.store.List(ctx, Prefix{Kind: info.Kind, Namespace: namespace})
	if err != nil {
		return nil, 0, err
	}
	out := make([]v1.Object, 0, len(kvs))
	for _, kv := range kvs {
		obj, err := Decode(kv)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, obj)
	}
	return out, rev, nil
}

// Delete removes one object. If resourceVersion is not empty the delete is
// a compare-and-swap on it. The error wraps ErrNotFound if it is missing.
func (c *Client) Delete(ctx context.Context, info v1.KindInfo, namespace, name, resourceVersion string) (v1.Object, error) {
	if !info.Namespaced {
		namespace = ""
	}
	rev, err := parseRevision(resourceVersion)
	if err != nil {
		return nil, err
	}
	kv, err := c.store.Delete(ctx, Key{Kind: info.Kind, Namespace: namespace, Name: name}, rev)
	if err != nil {
		return nil, err
	}
	return Decode(kv)
}

func parseRevision(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	rev, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || rev <= 0 {
		return 0, fmt.Errorf("metadata.resourceVersion: %q: not a datastore revision", rv)
	}
	return rev, nil
}

// Action says what Apply did with one object.
type Action string

// Actions reported by Apply, as kubectl words them.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
)

// ApplyResult is the outcome for one object of Apply.
type ApplyResult struct {
	Object v1.Object
	Action Action
}

// ApplyOptions change how Apply writes.
type ApplyOptions struct {
	// CreateOnly fails the whole apply if any object exists already.
	CreateOnly bool
	// DryRun validates and computes the actions without writing.
	DryRun bool
}

// Apply creates or updates objs, which must already be defaulted and
// validated one by one (api/v1.DecodeManifests does that). It first checks
// everything that involves the stored state (fields that cannot change,
// overlapping pools, resourceVersion preconditions, existence for
// CreateOnly) and writes nothing if any check fails. Writes go in one
// transaction per 128 objects, each a compare-and-swap on the revision read,
// and the whole apply starts again (a bounded number of times) when another
// writer got in between. Objects equal to the stored ones are left alone.
// Idempotent: applying the same objects again reports Unchanged.
func (c *Client) Apply(ctx context.Context, objs []v1.Object, opts ApplyOptions) ([]ApplyResult, error) {
	// With a resourceVersion precondition a conflict is the caller's to
	// resolve. Decide before the first attempt: planOne rewrites metadata.
	retry := !hasResourceVersion(objs)
	for attempt := 0; ; attempt++ {
		res, err := c.applyOnce(ctx, objs, opts)
		if errors.Is(err, ErrConflict) && retry && attempt < maxApplyRetries {
			continue
		}
		return res, err
	}
}

func hasResourceVersion(objs []v1.Object) bool {
	for _, o := range objs {
		if o.GetObjectMeta().ResourceVersion != "" {
			return true
		}
	}
	return false
}

func (c *Client) applyOnce(ctx context.Context, objs []v1.Object, opts ApplyOptions) ([]ApplyResult, error) {
	keys := make([]Key, len(objs))
	seen := make(map[Key]int, len(objs))
	var errs []error
	for i, obj := range objs {
		k, err := KeyOf(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if j, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice (objects %d and %d)", k, j+1, i+1))
		}
		seen[k] = i
		keys[i] = k
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	results := make([]ApplyResult, len(objs))
	ops := make([]Op, 0, len(objs))
	opResult := make([]int, 0, len(objs)) // the result each op writes
	for i, obj := range objs {
		op, action, err := c.planOne(ctx, keys[i], obj, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results[i] = ApplyResult{Object: obj, Action: action}
		if action != Unchanged {
			ops, opResult = append(ops, op), append(opResult, i)
		}
	}
	if err := c.checkPools(ctx, objs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.DryRun {
		return results, nil
	}
	// Each object gets the revision of the transaction that wrote it.
	for start := 0; start < len(ops); start += maxTxnOps {
		end := min(start+maxTxnOps, len(ops))
		rev, err := c.store.Txn(ctx, ops[start:end])
		if err != nil {
			return nil, fmt.Errorf("writing: %w", err)
		}
		for _, i := range opResult[start:end] {
			results[i].Object.GetObjectMeta().ResourceVersion = strconv.FormatInt(rev, 10)
		}
	}
	return results, nil
}

// planOne reads the stored object and returns the write for obj.
func (c *Client) planOne(ctx context.Context, key Key, obj v1.Object, opts ApplyOptions) (Op, Action, error) {
	meta := obj.GetObjectMeta()
	want, err := parseRevision(meta.ResourceVersion)
	if err != nil {
		return Op{}, "", fmt.Errorf("%s: %w", key, err)
	}
	cur, err := c.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		if want != 0 {
			return Op{}, "", fmt.Errorf("%s: resourceVersion %d given but the object does not exist: %w", key, want, ErrNotFound)
		}
		now := c.now().UTC().Truncate(time.Second)
		meta.CreationTimestamp = &now
		meta.UID = newUID()
		val, err := Encode(obj)
		if err != nil {
			return Op{}, "", err
		}
		return Op{Type: OpCreate, KV: KV{Key: key, Value: val}}, Created, nil
	}
	if err != nil {
		return Op{}, "", fmt.Errorf("reading %s: %w", key, err)
	}
	if opts.CreateOnly {
		return Op{}, "", fmt.Errorf("%s: %w", key, ErrExists)
	}
	if want != 0 && want != cur.Revision {
		return Op{}, "", fmt.Errorf("%s: resourceVersion %d is stale, the stored object is at %d: %w", key, want, cur.Revision, ErrConflict)
	}
	old, err := Decode(cur)
	if err != nil {
		return Op{}, "", err
	}
	if err := v1.ValidateUpdate(old, obj); err != nil {
		return Op{}, "", fmt.Errorf("%s: %w", key, err)
	}
	om := old.GetObjectMeta()
	meta.UID, meta.CreationTimestamp = om.UID, om.CreationTimestamp
	meta.ResourceVersion = om.ResourceVersion
	if reflect.DeepEqual(normalized(old), normalized(obj)) {
		return Op{}, Unchanged, nil
	}
	meta.ResourceVersion = ""
	val, err := Encode(obj)
	if err != nil {
		return Op{}, "", err
	}
	return Op{Type: OpUpdate, KV: KV{Key: key, Value: val, Revision: cur.Revision}}, Configured, nil
}

// normalized returns obj as a generic JSON value so that nil and empty
// maps and slices compare equal.
func normalized(obj v1.Object) any {
	data, err := json.Marshal(obj)
	if err != nil {
		return err.Error()
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err.Error()
	}
	return v
}

// checkPools rejects IP pools that would overlap once objs are stored.
func (c *Client) checkPools(ctx context.Context, objs []v1.Object) error {
	byName := map[string]*v1.IPPool{}
	found := false
	for _, o := range objs {
		if p, ok := o.(*v1.IPPool); ok {
			byName[p.Metadata.Name] = p
			found = true
		}
	}
	if !found {
		return nil
	}
	info, _ := v1.LookupKind("IPPool")
	stored, _, err := c.List(ctx, info, "")
	if err != nil {
		return fmt.Errorf("listing IP pools: %w", err)
	}
	for _, o := range stored {
		p := o.(*v1.IPPool)
		if _, replaced := byName[p.Metadata.Name]; !replaced {
			byName[p.Metadata.Name] = p
		}
	}
	pools := make([]*v1.IPPool, 0, len(byName))
	for _, p := range byName {
		pools = append(pools, p)
	}
	slices.SortFunc(pools, func(a, b *v1.IPPool) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return v1.CheckPoolOverlap(pools)
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
