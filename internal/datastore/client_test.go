package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memory"
)

func decode(t *testing.T, manifest string) []v1.Object {
	t.Helper()
	objs, err := v1.DecodeManifests("test.yaml", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func actions(res []datastore.ApplyResult) []string {
	var out []string
	for _, r := range res {
		m := r.Object.GetObjectMeta()
		out = append(out, r.Object.GetTypeMeta().Kind+"/"+m.Name+" "+string(r.Action))
	}
	return out
}

const twoPools = `apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.60.0.0/16}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: dns}
spec: {nets: [10.1.1.1/32]}
`

func TestApplyCreatesUpdatesAndLeavesEqualObjects(t *testing.T) {
	ctx := context.Background()
	c := datastore.NewClient(memory.New())
	res, err := c.Apply(ctx, decode(t, twoPools), datastore.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"IPPool/a created", "GlobalNetworkSet/dns created"}, actions(res)); d != "" {
		t.Errorf("first apply (-want +got):\n%s", d)
	}
	res, err = c.Apply(ctx, decode(t, twoPools), datastore.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"IPPool/a unchanged", "GlobalNetworkSet/dns unchanged"}, actions(res)); d != "" {
		t.Errorf("second apply (-want +got):\n%s", d)
	}
	changed := strings.Replace(twoPools, "10.1.1.1/32", "10.1.1.2/32", 1)
	res, err = c.Apply(ctx, decode(t, changed), datastore.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"IPPool/a unchanged", "GlobalNetworkSet/dns configured"}, actions(res)); d != "" {
		t.Errorf("third apply (-want +got):\n%s", d)
	}
	info, _ := v1.LookupKind("GlobalNetworkSet")
	got, err := c.Get(ctx, info, "", "dns")
	if err != nil {
		t.Fatal(err)
	}
	gns := got.(*v1.GlobalNetworkSet)
	if d := cmp.Diff([]string{"10.1.1.2/32"}, gns.Spec.Nets); d != "" {
		t.Errorf("stored nets (-want +got):\n%s", d)
	}
	if gns.Metadata.UID == "" || gns.Metadata.CreationTimestamp == nil || gns.Metadata.ResourceVersion == "" {
		t.Errorf("metadata not kept across updates: %+v", gns.Metadata)
	}
}

func TestApplyChecksEverythingBeforeWriting(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	c := datastore.NewClient(store)
	if _, err := c.Apply(ctx, decode(t, twoPools), datastore.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	_, before, err := store.List(ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, manifest string
		opts           datastore.ApplyOptions
		want           string
	}{
		{
			name: "immutable pool cidr",
			manifest: `apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: new}
spec: {nets: [10.9.9.9/32]}
---
apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.61.0.0/16}
`,
			want: "spec.cidr",
		},
		{
			name: "overlapping pool",
			manifest: `apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: b}
spec: {cidr: 10.60.64.0/18}
`,
			want: "overlap",
		},
		{
			name:     "create of an existing object",
			manifest: twoPools,
			opts:     datastore.ApplyOptions{CreateOnly: true},
			want:     "already exists",
		},
		{
			name: "stale resourceVersion",
			manifest: `apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: dns, resourceVersion: "1"}
spec: {nets: [10.1.1.3/32]}
`,
			want: "stale",
		},
		{
			name: "same object twice",
			manifest: `apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: x}
spec: {nets: [10.1.1.3/32]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: x}
spec: {nets: [10.1.1.4/32]}
`,
			want: "given twice",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Apply(ctx, decode(t, tc.manifest), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply: got %v, want an error containing %q", err, tc.want)
			}
			_, after, err := store.List(ctx, datastore.Prefix{})
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Errorf("store revision moved from %d to %d: something was written", before, after)
			}
		})
	}
}

func TestApplyDryRunWritesNothing(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	c := datastore.NewClient(store)
	res, err := c.Apply(ctx, decode(t, twoPools), datastore.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"IPPool/a created", "GlobalNetworkSet/dns created"}, actions(res)); d != "" {
		t.Errorf("dry run (-want +got):\n%s", d)
	}
	kvs, _, err := store.List(ctx, datastore.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 0 {
		t.Errorf("dry run wrote %d objects", len(kvs))
	}
}

// racingStore changes an object between Apply's read and its write once,
// so the first transaction fails with a conflict.
type racingStore struct {
	datastore.Store
	raced bool
}

func (s *racingStore) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	if !s.raced {
		s.raced = true
		kv, err := s.Store.Get(ctx, ops[0].KV.Key)
		if err == nil {
			if _, err := s.Store.Update(ctx, kv); err != nil {
				return 0, err
			}
		}
	}
	return s.Store.Txn(ctx, ops)
}

func TestApplyRetriesAfterConflict(t *testing.T) {
	ctx := context.Background()
	base := memory.New()
	c := datastore.NewClient(base)
	if _, err := c.Apply(ctx, decode(t, twoPools), datastore.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	rs := &racingStore{Store: base}
	rc := datastore.NewClient(rs)
	changed := strings.Replace(twoPools, "10.1.1.1/32", "10.1.1.5/32", 1)
	res, err := rc.Apply(ctx, decode(t, changed)[1:], datastore.ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply after a concurrent write: %v", err)
	}
	if !rs.raced || res[0].Action != datastore.Configured {
		t.Errorf("raced=%v action=%v", rs.raced, res[0].Action)
	}
	// With a resourceVersion precondition there is no retry.
	rs.raced = false
	obj := decode(t, changed)[1]
	info, _ := v1.LookupKind("GlobalNetworkSet")
	cur, err := c.Get(ctx, info, "", "dns")
	if err != nil {
		t.Fatal(err)
	}
	obj.GetObjectMeta().ResourceVersion = cur.GetObjectMeta().ResourceVersion
	obj.(*v1.GlobalNetworkSet).Spec.Nets = []string{"10.1.1.6/32"}
	if _, err := rc.Apply(ctx, []v1.Object{obj}, datastore.ApplyOptions{}); !errors.Is(err, datastore.ErrConflict) {
		t.Errorf("Apply with a precondition after a concurrent write: got %v, want ErrConflict", err)
	}
}

// An apply of more objects than one transaction holds writes several
// transactions; every object comes back with the revision it was written
// at, so that a compare-and-swap with it succeeds.
func TestApplyManyReturnsEachRevision(t *testing.T) {
	ctx := context.Background()
	c := datastore.NewClient(memory.New())
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "---\napiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: s%03d}\nspec: {nets: [10.1.%d.%d/32]}\n", i, i/200, i%200+1)
	}
	res, err := c.Apply(ctx, decode(t, b.String()), datastore.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := v1.LookupKind("GlobalNetworkSet")
	revs := map[string]bool{}
	for _, r := range res {
		m := r.Object.GetObjectMeta()
		got, err := c.Get(ctx, info, "", m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if stored := got.GetObjectMeta().ResourceVersion; stored != m.ResourceVersion {
			t.Errorf("%s: apply returned resourceVersion %s, stored %s", m.Name, m.ResourceVersion, stored)
		}
		revs[m.ResourceVersion] = true
	}
	if len(revs) < 3 {
		t.Errorf("300 objects written at %d revisions, want one per transaction (3)", len(revs))
	}
	// The returned object updates with a compare-and-swap.
	obj := res[0].Object
	obj.(*v1.GlobalNetworkSet).Spec.Nets = []string{"10.9.9.9/32"}
	if _, err := c.Apply(ctx, []v1.Object{obj}, datastore.ApplyOptions{}); err != nil {
		t.Errorf("updating with the returned resourceVersion: %v", err)
	}
}
