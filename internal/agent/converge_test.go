package agent

import (
	"context"
	"strconv"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// waitApplied waits until the agent reports AppliedRevision >= rev and
// returns its status.
func (h *testHost) waitApplied(rev int64) Status {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last Status
	for time.Now().Before(deadline) {
		st, err := h.status.Status(context.Background())
		if err == nil && st.AppliedRevision >= rev {
			return st
		}
		last = st
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("appliedRevision did not reach %d in 10s: %+v", rev, last)
	return last
}

// putMarker bumps SyncMarkerKey and returns the revision of the write.
func putMarker(t *testing.T, s datastore.Store) int64 {
	t.Helper()
	rev, err := s.Txn(context.Background(), []datastore.Op{{Type: datastore.OpPut, KV: datastore.KV{Key: SyncMarkerKey, Value: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// The revision the agent reports applied is programmed: a probe right
// after it sees the new policy, with no polling.
func TestAgentReportsAppliedRevision(t *testing.T) {
	h := newTestHost(t)
	wa, ifa := h.addWorkload("a", "10.65.0.1", "fd00:65::1")
	_, ifb := h.addWorkload("b", "10.65.0.2", "fd00:65::2")
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.65.0.1", "fd00:65::1", "app: a") + "---\n" + wep("b", ifb, "10.65.0.2", "fd00:65::2", "app: b"))
	h.start()
	h.waitProgrammed("a")
	h.waitProgrammed("b")
	waitFor(t, "a to ping b", func() bool { return ping(t, wa, "10.65.0.2") })
	ctx := context.Background()

	h.apply(`apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: default}
spec: {selector: app == 'b', types: [Ingress]}
`)
	info, _ := v1.LookupKind("NetworkPolicy")
	obj, err := h.client.Get(ctx, info, "default", "deny-b")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := strconv.ParseInt(obj.GetObjectMeta().ResourceVersion, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if st := h.waitApplied(rev); !st.Ready || st.LastApplyError != "" {
		t.Errorf("status after the policy: %+v", st)
	}
	if ping(t, wa, "10.65.0.2") {
		t.Error("a pings b after the agent reported the deny policy applied")
	}

	// A delete is a change too: its revision is reached, and applied.
	if _, err := h.client.Store().Delete(ctx, datastore.Key{Kind: info.Kind, Namespace: "default", Name: "deny-b"}, 0); err != nil {
		t.Fatal(err)
	}
	_, delRev, err := h.client.Store().List(ctx, datastore.Prefix{Kind: info.Kind})
	if err != nil {
		t.Fatal(err)
	}
	h.waitApplied(delRev)
	if !ping(t, wa, "10.65.0.2") {
		t.Error("a cannot ping b after the agent reported the policy's deletion applied")
	}

	// A write to a kind the agent does not follow (another node's IPAM
	// affinity) gives it no event, so it cannot report that revision;
	// the sync marker, which every agent follows, is there to wait for.
	other, err := h.client.Store().Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: datastore.KV{
		Key: datastore.Key{Kind: ipam.KindAffinity, Namespace: "node-2", Name: "x"}, Value: []byte("{}")}}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if st, err := h.status.Status(ctx); err != nil || st.AppliedRevision >= other {
		t.Errorf("appliedRevision %d after an unfollowed write at %d (err %v)", st.AppliedRevision, other, err)
	}
	marker := putMarker(t, h.client.Store())
	if marker <= other {
		t.Fatalf("marker revision %d <= %d", marker, other)
	}
	h.waitApplied(marker)
}
