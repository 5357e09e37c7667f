package main

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/internal/ipam"
)

const ipamManifests = `apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 10.70.0.0/24, blockSize: 28}
---
apiVersion: tabby.dev/v1
kind: Node
metadata: {name: node-1}
---
apiVersion: tabby.dev/v1
kind: Node
metadata: {name: node-2}
`

const ipamEndpoint = `apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: default}
spec: {node: node-1, orchestrator: test, endpoint: eth0, ipNetworks: [%s/32]}
`

func TestIPAMCommands(t *testing.T) {
	tb, _, alloc := newIPAMEnv(t)
	ctx := context.Background()
	web, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: "node-1", Handle: "web", Num4: 1})
	if err != nil {
		t.Fatal(err)
	}
	tb.ok(strings.Replace(ipamEndpoint, "%s", web.IPv4[0].String(), 1), "apply", "-f", "-")
	if _, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: "node-1", Handle: "leak", Num4: 1}); err != nil {
		t.Fatal(err)
	}
	// node-2 borrows an address of node-1's block by name.
	vmAddr := web.IPv4[0].Next().Next().String()
	if err := alloc.AssignIP(ctx, ipam.AssignIPArgs{Node: "node-2", Handle: "vm", Addr: netip.MustParseAddr(vmAddr)}); err != nil {
		t.Fatal(err)
	}

	show := tb.ok("", "ipam", "show", "--blocks", "--borrowed")
	lines := strings.Split(show, "\n")
	var normalized []string
	for _, l := range lines {
		normalized = append(normalized, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"POOL CIDR BLOCK SIZE DISABLED BLOCKS ALLOCATED FREE IN BLOCKS CAPACITY USED",
		"pool-a 10.70.0.0/24 /28 false 1 3 13 256 1.17%",
		"NODE BLOCKS PENDING ALLOCATED FREE BORROWED LENT",
		"node-1 1 0 2 13 0 1",
		"node-2 0 0 1 0 1 0",
		"BLOCK POOL AFFINITY IN USE SIZE BORROWED",
		"10.70.0.48/28 pool-a node-1 3 16 1",
		"ADDRESS BLOCK BLOCK AFFINITY NODE HANDLE",
		vmAddr + " 10.70.0.48/28 node-1 node-2 vm",
	} {
		if !slices.Contains(normalized, want) {
			t.Errorf("ipam show lacks the line %q:\n%s", want, show)
		}
	}
	// The tables are aligned: each column starts where its header does.
	if len(lines) > 1 && strings.Index(lines[0], "CIDR") != strings.Index(lines[1], "10.70.0.0/24") {
		t.Errorf("ipam show is not aligned:\n%s", show)
	}

	code, out, _ := tb.run("", "ipam", "check")
	if code != 1 || !strings.Contains(out, "Allocations without endpoint (2):") || !strings.Contains(out, "handle leak") {
		t.Errorf("ipam check: exit %d, want 1 with two allocations without endpoint:\n%s", code, out)
	}

	out = tb.ok("", "ipam", "release", "--handle", "leak")
	if !strings.HasSuffix(out, " released\n") {
		t.Errorf("release --handle: %q", out)
	}
	out = tb.ok("", "ipam", "release", "--handle", "leak")
	if out != "handle \"leak\" holds no addresses\n" {
		t.Errorf("second release --handle: %q", out)
	}
	out = tb.ok("", "ipam", "release", "--ip", vmAddr+",10.70.0.200")
	if out != vmAddr+" released\n10.70.0.200 was not allocated\n" {
		t.Errorf("release --ip: %q", out)
	}
	out = tb.ok("", "ipam", "check")
	if !strings.Contains(out, "Clean: no problems found.") {
		t.Errorf("ipam check after the releases:\n%s", out)
	}

	for _, args := range [][]string{
		{"ipam", "release"},
		{"ipam", "release", "--ip", "1.2.3.4", "--handle", "x"},
		{"ipam", "release", "--ip", "nope"},
	} {
		if code, _, errs := tb.run("", args...); code != 1 || !strings.HasPrefix(errs, "error: ") {
			t.Errorf("tabby %s: exit %d, stderr %q; want an error", strings.Join(args, " "), code, errs)
		}
	}
	for _, cmd := range []string{"show", "check", "release"} {
		if help := tb.ok("", "ipam", cmd, "--help"); !strings.Contains(help, "Examples:") {
			t.Errorf("ipam %s --help has no examples:\n%s", cmd, help)
		}
	}
}

func TestDeleteRefusesPoolInUse(t *testing.T) {
	tb, _, alloc := newIPAMEnv(t)
	ctx := context.Background()
	if _, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: "node-1", Handle: "web", Num4: 1}); err != nil {
		t.Fatal(err)
	}
	code, _, errs := tb.run("", "delete", "ippool", "pool-a")
	if code == 0 || !strings.Contains(errs, `ippool "pool-a": cannot delete a pool that is in use`) {
		t.Fatalf("delete of a pool in use: exit %d, stderr %q", code, errs)
	}
	tb.ok("", "get", "ippool", "pool-a") // still there
	if _, err := alloc.ReleaseHandle(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if out := tb.ok("", "delete", "ippool", "pool-a"); out != "ippool.tabby.dev/pool-a deleted\n" {
		t.Errorf("delete of an unused pool: %q", out)
	}
}

func TestDeleteNodeReleasesAffinities(t *testing.T) {
	tb, store, alloc := newIPAMEnv(t)
	ctx := context.Background()
	// node-2 claims a block, and gives its address back: the block stays affine.
	if _, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: "node-2", Handle: "tmp", Num4: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := alloc.ReleaseHandle(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	before := tb.ok("", "ipam", "show", "--blocks")
	if !strings.Contains(before, "node-2") {
		t.Fatalf("node-2 has no block before the delete:\n%s", before)
	}
	tb.ok("", "delete", "node", "node-2")
	kvs, _, err := store.List(ctx, datastore.Prefix{Kind: ipam.KindAffinity, Namespace: "node-2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 0 {
		t.Errorf("node-2 still has %d block affinities after its Node was deleted", len(kvs))
	}
}

// newIPAMEnv is a datastore with ipamManifests applied, a raw store and an
// allocator on it.
func newIPAMEnv(t *testing.T) (*tabby, *etcd.Store, *ipam.Allocator) {
	t.Helper()
	tb := newTabby(t)
	tb.ok(ipamManifests, "apply", "-f", "-")
	store := etcdtest.NewStore(t, etcd.ClientConfig{Endpoints: strings.Split(tb.endpoints, ",")})
	alloc, err := ipam.New(store, ipam.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tb, store, alloc
}
