package nft

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// firstHandle returns the handle of the first rule of a chain, from
// `nft -a list chain`.
func firstHandle(t *testing.T, ns *netns.NS, chain string) string {
	t.Helper()
	out := runNft(t, ns, "-a", "list", "chain", "inet", "tabby", chain)
	m := regexp.MustCompile(`\n\t\t[^\n]*# handle (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rule in chain %s:\n%s", chain, out)
	}
	return m[1]
}

// TestDriftRepair changes the table behind the renderer's back, with the
// nft tool, and checks that Resync restores it exactly, counts the
// repairs, deletes strays and leaves other tables alone.
func TestDriftRepair(t *testing.T) {
	requireNft(t)
	tc := goldenCases[1] // workloads
	ns := testkit.NetNS(t)
	r := newRenderer(t, ns, tc.cfg)
	r.Set(tc.rs())
	mustApply(t, r)
	want, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden"))
	must(t, err)

	// Tables that are not ours, one with our name in another family.
	runNft(t, ns, "add", "table", "inet", "foreign")
	runNft(t, ns, "add", "chain", "inet", "foreign", "c", "{ type filter hook input priority 10; policy accept; }")
	runNft(t, ns, "add", "rule", "inet", "foreign", "c", "tcp", "dport", "22", "counter", "accept")
	runNft(t, ns, "add", "table", "ip", "tabby")
	runNft(t, ns, "add", "chain", "ip", "tabby", "mine")
	foreign := runNft(t, ns, "list", "table", "inet", "foreign")
	ipTabby := runNft(t, ns, "list", "table", "ip", "tabby")

	// Drift: a deleted rule, element, map element and chain; a base
	// chain's policy; strays of every kind.
	runNft(t, ns, "delete", "rule", "inet", "tabby", "pi-np/default/web", "handle", firstHandle(t, ns, "pi-np/default/web"))
	runNft(t, ns, "delete", "element", "inet", "tabby", "spoof-v4", `{ "tabby0000000001" . 10.65.0.2 }`)
	runNft(t, ns, "delete", "element", "inet", "tabby", "from-wl", `{ "tabby0000000002" }`)
	runNft(t, ns, "flush", "chain", "inet", "tabby", "fw-tabby0000000002")
	runNft(t, ns, "delete", "chain", "inet", "tabby", "fw-tabby0000000002")
	runNft(t, ns, "add", "chain", "inet", "tabby", "forward", "{ policy drop; }")
	runNft(t, ns, "add", "chain", "inet", "tabby", "stray")
	runNft(t, ns, "add", "rule", "inet", "tabby", "stray", "counter")
	runNft(t, ns, "add", "rule", "inet", "tabby", "forward", "jump", "stray")
	runNft(t, ns, "add", "set", "inet", "tabby", "stray-set", "{ type ipv4_addr; }")
	runNft(t, ns, "add", "element", "inet", "tabby", "s-clients-v4", "{ 192.0.2.99 }")
	runNft(t, ns, "add", "element", "inet", "tabby", "s-blocked-v4net", "{ 203.0.113.0/24 }")

	// Apply trusts its record and sees none of this.
	if res := mustApply(t, r); res.Writes != 0 {
		t.Errorf("Apply after drift: %+v, want no writes", res)
	}
	res := mustResync(t, r)
	// Objects: the deleted rule, spoof element and map element (3); the
	// deleted chain and its 4 rules (5); forward's policy (1); the stray
	// chain and its rule, the stray rule, set and 2 elements (6).
	if res.Repairs != 15 {
		t.Errorf("Resync repairs = %d, want 15 (%+v)", res.Repairs, res)
	}
	if res.ChainsUpdated != 1 {
		t.Errorf("forward's policy not repaired: %+v", res)
	}
	// A chain made again lists last: compare blocks in a canonical order.
	if diff := cmp.Diff(canonical(string(want)), canonical(listTable(t, ns, "tabby"))); diff != "" {
		t.Errorf("table after Resync differs from the golden (-want +got):\n%s", diff)
	}
	if got := runNft(t, ns, "list", "table", "inet", "foreign"); got != foreign {
		t.Errorf("foreign table changed:\n%s\nwas:\n%s", got, foreign)
	}
	if got := runNft(t, ns, "list", "table", "ip", "tabby"); got != ipTabby {
		t.Errorf("table ip tabby changed:\n%s\nwas:\n%s", got, ipTabby)
	}
	if res := mustResync(t, r); res.Repairs != 0 || res.Writes != 0 {
		t.Errorf("second Resync: %+v, want nothing", res)
	}
	checkRecord(t, r)
}

// TestRebuild starts over a table of ours that holds objects of the wrong
// kind (a set of another type, a base chain on another hook): Resync
// replaces the table in one transaction.
func TestRebuild(t *testing.T) {
	requireNft(t)
	tc := goldenCases[1]
	ns := testkit.NetNS(t)
	runNft(t, ns, "add", "table", "inet", "tabby")
	runNft(t, ns, "add", "set", "inet", "tabby", "spoof-v4", "{ type ipv4_addr; }")
	runNft(t, ns, "add", "chain", "inet", "tabby", "forward", "{ type filter hook input priority 0; }")
	r := newRenderer(t, ns, tc.cfg)
	r.Set(tc.rs())
	res := mustResync(t, r)
	if !res.Rebuilt {
		t.Errorf("Resync did not rebuild: %+v", res)
	}
	want, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden"))
	must(t, err)
	if diff := cmp.Diff(string(want), listTable(t, ns, "tabby")); diff != "" {
		t.Errorf("rebuilt table differs from the golden (-want +got):\n%s", diff)
	}
	if res := mustResync(t, r); res.Writes != 0 || res.Rebuilt {
		t.Errorf("second Resync: %+v", res)
	}
}

// TestFailureRecovery makes a transaction fail (a rule added by hand
// still jumps to a chain the renderer deletes): the kernel keeps its old
// state, Apply reports the failure, and the next Apply reads the kernel
// afresh and succeeds.
func TestFailureRecovery(t *testing.T) {
	requireNft(t)
	ns := testkit.NetNS(t)
	r := newRenderer(t, ns, Config{})
	rs := workloadsRuleset()
	r.Set(rs)
	mustApply(t, r)
	before := listTable(t, ns, "tabby")
	gen := genID(t, r)

	runNft(t, ns, "add", "rule", "inet", "tabby", "input", "jump", "fw-tabby0000000002")
	client := policy.WorkloadEndpointID("default", "client")
	delete(rs.Endpoints, client)
	r.Set(rs)
	res, err := r.Apply(ctxT(t))
	if err == nil {
		t.Fatalf("Apply deleted a chain that is still referenced: %+v", res)
	}
	if res.Writes != 0 || res.ChainsDeleted != 0 {
		t.Errorf("failed Apply reports changes: %+v", res)
	}
	if g := genID(t, r); g != gen+1 {
		// The hand-made rule is one generation; the failed
		// transaction must not be another.
		t.Errorf("generation %d, want %d", g, gen+1)
	}
	if got := listTable(t, ns, "tabby"); got == before {
		t.Errorf("the hand-made rule is gone")
	}

	res = mustApply(t, r)
	// Deleted: client's 2 chains, its anti-spoofing rule for extra
	// source networks, and the stray rule.
	if res.ChainsDeleted != 2 || res.RulesDeleted != 2 {
		t.Errorf("recovery Apply: %+v, want 2 chains and 2 rules deleted", res)
	}
	if st := r.EndpointStatus(policy.WorkloadEndpointID("default", "web")); !st.Programmed {
		t.Errorf("web not programmed after recovery: %+v", st)
	}
	checkRecord(t, r)
}
