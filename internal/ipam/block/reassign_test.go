package block

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReassign(t *testing.T) {
	b, err := New(netip.MustParsePrefix("10.1.0.0/29"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	old := Attribute{Handle: "net.a.eth0", Secondary: map[string]string{"node": "n1"}}
	other := Attribute{Handle: "net.b.eth0", Secondary: map[string]string{"node": "n1"}}
	mine := b.Assign(2, old, now, 0)
	theirs := b.Assign(1, other, now, 0)
	queue := append([]Free(nil), b.Unallocated...)

	moved := Attribute{Handle: "net.a.mv1.eth0", Secondary: map[string]string{"node": "n2"}}
	got := b.Reassign("net.a.eth0", moved)
	if diff := cmp.Diff(mine, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Reassign returned (-want +got):\n%s", diff)
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("after Reassign: %v", err)
	}
	for _, a := range mine {
		if o, ok := b.Owner(a); !ok || !o.equal(moved) {
			t.Errorf("owner of %s = %+v, %v; want %+v", a, o, ok, moved)
		}
	}
	if o, ok := b.Owner(theirs[0]); !ok || !o.equal(other) {
		t.Errorf("owner of %s = %+v, %v; want it untouched", theirs[0], o, ok)
	}
	if !cmp.Equal(queue, b.Unallocated) {
		t.Errorf("the reuse queue changed: %v -> %v", queue, b.Unallocated)
	}
	if len(b.Attributes) != 2 {
		t.Errorf("attributes %+v: want the old one dropped", b.Attributes)
	}
	if got := b.Reassign("net.a.eth0", moved); got != nil {
		t.Errorf("second Reassign = %v, want nothing", got)
	}
	// Back again, onto an attribute that exists already.
	if got := b.Reassign("net.a.mv1.eth0", other); len(got) != 2 || len(b.Handles()) != 1 || b.Handles()["net.b.eth0"] != 3 {
		t.Errorf("Reassign onto an existing attribute: %v, handles %v", got, b.Handles())
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
}
