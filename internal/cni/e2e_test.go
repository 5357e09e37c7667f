package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/testkit"
)

// TestCNIToolAddCheckDel drives the built plugin with the real cnitool:
// add, check, del and del again, on a throwaway workload namespace, and
// checks the kernel, the datastore and IPAM at each step.
func TestCNIToolAddCheckDel(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	wl := testkit.NetNS(t)
	env := []string{"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"}
	out, err := h.cnitool(env, "add", h.network, wl.Path())
	if err != nil {
		t.Fatal(err)
	}
	var res types100.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	if res.CNIVersion != "1.1.0" || len(res.IPs) != 2 || len(res.Interfaces) != 2 || len(res.Routes) != 2 {
		t.Fatalf("result: %s", out)
	}
	hostIf := res.Interfaces[0].Name
	if res.Interfaces[0].Mac != "ee:ee:ee:ee:ee:ee" || res.Interfaces[0].Sandbox != "" ||
		res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != wl.Path() {
		t.Errorf("interfaces: %s", out)
	}
	var v4, v6 string
	for _, ipc := range res.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		ones, _ := ipc.Address.Mask.Size()
		switch {
		case a.Unmap().Is4() && ones == 32 && ipc.Gateway.String() == "169.254.1.1":
			v4 = a.Unmap().String()
		case !a.Unmap().Is4() && ones == 128 && ipc.Gateway.String() == "fe80::ecee:eeff:feee:eeee":
			v6 = a.String()
		default:
			t.Errorf("address %+v", ipc)
		}
	}

	// The workload side, as the agent test plumbs it by hand.
	n := filepath.Base(wl.Path())
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-o", "addr", "show", "dev", "eth0"}, []string{v4 + "/32", v6 + "/128"}},
		{[]string{"route", "show"}, []string{"default via 169.254.1.1 dev eth0", "169.254.1.1 dev eth0", "scope link"}},
		{[]string{"-6", "route", "show", "default"}, []string{"default via fe80::ecee:eeff:feee:eeee dev eth0"}},
		{[]string{"neigh", "show", "dev", "eth0"}, []string{"169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT"}},
	} {
		o, err := exec.Command("ip", append([]string{"-n", n}, c.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v", c.args, err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(o), w) {
				t.Errorf("ip %v: want %q in\n%s", c.args, w, o)
			}
		}
	}

	// The endpoint: Kubernetes pod in namespace shop, labels from args.
	eps := h.endpoints()
	if len(eps) != 1 {
		t.Fatalf("%d endpoints, want 1", len(eps))
	}
	w := eps[0]
	if w.Metadata.Namespace != "shop" || w.Spec.Orchestrator != "k8s" || w.Spec.Pod != "web-0" || w.Spec.Endpoint != "eth0" ||
		w.Spec.InterfaceName != hostIf || w.Spec.Node != "node-1" || w.Metadata.Labels["app"] != "test" ||
		!strings.HasPrefix(w.Spec.ContainerID, "cnitool-") || !strings.HasPrefix(hostIf, links.DefaultInterfacePrefix) {
		t.Errorf("endpoint: %+v", w)
	}
	if diff := cmp.Diff([]string{v4 + "/32", v6 + "/128"}, w.Spec.IPNetworks); diff != "" {
		t.Errorf("ipNetworks (-want +got):\n%s", diff)
	}
	alloc, err := ipam.New(h.client.Store(), ipam.Config{})
	if err != nil {
		t.Fatal(err)
	}
	handle := HandleID(h.network, w.Spec.ContainerID, "eth0")
	if got, _ := alloc.IPsByHandle(t.Context(), handle); len(got) != 2 {
		t.Errorf("IPAM handle %s holds %v", handle, got)
	}

	if _, err := h.cnitool(env, "check", h.network, wl.Path()); err != nil {
		t.Errorf("check: %v", err)
	}
	// CHECK notices a missing route.
	h2 := exec.Command("ip", "-n", n, "route", "del", "default")
	if out, err := h2.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := h.cnitool(env, "check", h.network, wl.Path()); err == nil || !strings.Contains(err.Error(), "route 0.0.0.0/0") {
		t.Errorf("check after deleting the default route: %v", err)
	}

	for i := range 2 { // DEL is idempotent
		if _, err := h.cnitool(env, "del", h.network, wl.Path()); err != nil {
			t.Fatalf("del #%d: %v", i+1, err)
		}
		if eps := h.endpoints(); len(eps) != 0 {
			t.Errorf("after del #%d: endpoints %v", i+1, eps)
		}
		if l := h.hostLinks(); len(l) != 0 {
			t.Errorf("after del #%d: host links %v", i+1, l)
		}
		if got, _ := alloc.IPsByHandle(t.Context(), handle); len(got) != 0 {
			t.Errorf("after del #%d: IPAM handle holds %v", i+1, got)
		}
	}
	if o, _ := exec.Command("ip", "-n", n, "link", "show", "eth0").CombinedOutput(); !strings.Contains(string(o), "does not exist") {
		t.Errorf("eth0 still in the workload: %s", o)
	}
}

// TestDelMissingNamespace: DEL after the namespace is gone, and DEL of
// something that never existed, both succeed.
func TestDelMissingNamespace(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "", nil))
	wl := testkit.NetNS(t)
	rt := h.runtimeConf(wl, "c-gone")
	if _, err := h.add(l, rt); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "netns", "delete", filepath.Base(wl.Path())).Run(); err != nil {
		t.Fatal(err)
	}
	if err := h.del(l, rt); err != nil {
		t.Fatalf("DEL without namespace: %v", err)
	}
	if eps := h.endpoints(); len(eps) != 0 {
		t.Errorf("endpoints left: %v", eps)
	}
	rt = &libcni.RuntimeConf{ContainerID: "never-added", NetNS: "/run/netns/does-not-exist", IfName: "eth0"}
	if err := h.del(l, rt); err != nil {
		t.Fatalf("DEL of nothing: %v", err)
	}
}

// TestTwoContainersPing: two containers on one host reach each other over
// IPv4 and IPv6 as soon as ADD returns.
func TestTwoContainersPing(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "", nil))
	wa, wb := testkit.NetNS(t), testkit.NetNS(t)
	ra, err := h.add(l, h.runtimeConf(wa, "ctr-a"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := h.add(l, h.runtimeConf(wb, "ctr-b"))
	if err != nil {
		t.Fatal(err)
	}
	pairs := []struct {
		name string
		from *types100.Result
		to   *types100.Result
	}{{"a→b", ra, rb}, {"b→a", rb, ra}}
	for _, p := range pairs {
		src := wa
		if p.from == rb {
			src = wb
		}
		for _, dst := range addrsOfResult(p.to) {
			if !ping(src, dst) {
				t.Errorf("%s: ping %s failed right after ADD", p.name, dst)
			}
		}
	}
}

// TestPolicyInForceWhenAddReturns: a deny policy applied before ADD is in
// force the moment ADD returns (the first probe is denied), and an allowed
// workload answers the first probe.
func TestPolicyInForceWhenAddReturns(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	wa, wb := testkit.NetNS(t), testkit.NetNS(t)
	la := h.list(h.conflist("1.1.0", "", nil))
	lb := h.list(h.conflist("1.1.0", "", func(pc map[string]any) {
		pc["args"] = map[string]any{"cni": map[string]any{"labels": []map[string]string{{"key": "role", "value": "db"}}}}
	}))
	// Ingress to role=db allows only TCP 5432: no ping.
	h.apply(`apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: db-only-5432, namespace: default}
spec:
  selector: role == "db"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [5432]}}]
`)
	ra, err := h.add(la, h.runtimeConf(wa, "ctr-a"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := h.add(lb, h.runtimeConf(wb, "ctr-b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range addrsOfResult(rb) {
		if ping(wa, dst) {
			t.Errorf("ping a→b %s answered right after ADD although policy denies it", dst)
		}
	}
	// b is not selected: it reaches a at the first try.
	for _, dst := range addrsOfResult(ra) {
		if !ping(wb, dst) {
			t.Errorf("ping b→a %s failed right after ADD although policy allows it", dst)
		}
	}
	// The deny came from the policy: without it b answers.
	if _, err := h.client.Delete(t.Context(), mustKind("NetworkPolicy"), "default", "db-only-5432", ""); err != nil {
		t.Fatal(err)
	}
	dst := addrsOfResult(rb)[0]
	deadline := time.Now().Add(10 * time.Second)
	for !ping(wa, dst) {
		if time.Now().After(deadline) {
			t.Fatalf("ping a→b %s still fails 10s after the policy was deleted", dst)
		}
	}
}

// TestParallelAdds: 50 ADDs at once all succeed, with distinct addresses,
// and 50 DELs leave nothing behind.
func TestParallelAdds(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "30s", nil))
	const n = 50
	wls := make([]*struct {
		rt  *libcni.RuntimeConf
		res *types100.Result
		err error
	}, n)
	for i := range wls {
		wl := testkit.NetNS(t)
		wls[i] = &struct {
			rt  *libcni.RuntimeConf
			res *types100.Result
			err error
		}{rt: h.runtimeConf(wl, fmt.Sprintf("par-%d", i))}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range wls {
		wg.Go(func() { w.res, w.err = h.add(l, w.rt) })
	}
	wg.Wait()
	t.Logf("%d parallel ADDs took %v", n, time.Since(start))
	seen := map[string]string{}
	for _, w := range wls {
		if w.err != nil {
			t.Errorf("ADD %s: %v", w.rt.ContainerID, w.err)
			continue
		}
		for _, a := range addrsOfResult(w.res) {
			if other, dup := seen[a]; dup {
				t.Errorf("%s has %s, like %s", w.rt.ContainerID, a, other)
			}
			seen[a] = w.rt.ContainerID
		}
	}
	if len(seen) != 2*n {
		t.Errorf("%d distinct addresses, want %d", len(seen), 2*n)
	}
	if eps := h.endpoints(); len(eps) != n {
		t.Errorf("%d endpoints, want %d", len(eps), n)
	}
	for _, w := range wls {
		wg.Go(func() {
			if err := h.del(l, w.rt); err != nil {
				t.Errorf("DEL %s: %v", w.rt.ContainerID, err)
			}
		})
	}
	wg.Wait()
	if eps := h.endpoints(); len(eps) != 0 {
		t.Errorf("%d endpoints after DEL", len(eps))
	}
	if l := h.hostLinks(); len(l) != 0 {
		t.Errorf("host links after DEL: %v", l)
	}
	rep, err := ipam.Check(t.Context(), h.client.Store())
	if err != nil {
		t.Fatal(err)
	}
	u, err := ipam.ReadUsage(t.Context(), h.client.Store())
	if err != nil {
		t.Fatal(err)
	}
	for _, nu := range u.Nodes {
		if nu.Allocated != 0 {
			t.Errorf("node %s still has %d addresses; check: %+v", nu.Node, nu.Allocated, rep)
		}
	}
}

// TestAddAgainAndRollback: ADD for the same container again keeps its
// addresses and leaves one interface; an ADD that fails part-way (no agent
// to program the policy) undoes everything.
func TestAddAgainAndRollback(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "", nil))
	wl := testkit.NetNS(t)
	rt := h.runtimeConf(wl, "ctr-again")
	r1, err := h.add(l, rt)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.add(l, rt)
	if err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if diff := cmp.Diff(addrsOfResult(r1), addrsOfResult(r2)); diff != "" {
		t.Errorf("second ADD changed the addresses (-first +second):\n%s", diff)
	}
	if links := h.hostLinks(); len(links) != 1 {
		t.Errorf("host links after two ADDs: %v", links)
	}
	if err := h.check(l, rt); err != nil {
		t.Errorf("CHECK after the second ADD: %v", err)
	}
	peer := testkit.NetNS(t)
	if _, err := h.add(l, h.runtimeConf(peer, "ctr-peer")); err != nil {
		t.Fatal(err)
	}
	if !ping(peer, addrsOfResult(r2)[0]) {
		t.Errorf("the re-added container does not answer")
	}

	// Without an agent, ADD times out waiting for the policy and undoes
	// everything it did.
	h.stop()
	short := h.list(h.conflist("1.1.0", "1s", nil))
	fail := testkit.NetNS(t)
	before := len(h.endpoints())
	_, err = h.add(short, h.runtimeConf(fail, "ctr-fail"))
	if cniCode(err) != CodePolicyTimeout || !strings.Contains(err.Error(), "tabby agent --node node-1") {
		t.Fatalf("ADD without agent: %v (code %d), want code %d with advice", err, cniCode(err), CodePolicyTimeout)
	}
	if got := len(h.endpoints()); got != before {
		t.Errorf("endpoints after the failed ADD: %d, want %d", got, before)
	}
	if links := h.hostLinks(); len(links) != 2 {
		t.Errorf("host links after the failed ADD: %v, want the 2 of the earlier containers", links)
	}
	if o, _ := exec.Command("ip", "-n", filepath.Base(fail.Path()), "link", "show", "eth0").CombinedOutput(); !strings.Contains(string(o), "does not exist") {
		t.Errorf("eth0 left in the workload: %s", o)
	}
	alloc, _ := ipam.New(h.client.Store(), ipam.Config{})
	if got, _ := alloc.IPsByHandle(t.Context(), HandleID(h.network, "ctr-fail", "eth0")); len(got) != 0 {
		t.Errorf("addresses left after the failed ADD: %v", got)
	}
}

// TestResultVersions: ADD returns a result in the configuration's version,
// for every version from 0.3.1 to 1.1.0, and VERSION lists them.
func TestResultVersions(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		l := h.list(h.conflist(ver, "", nil))
		wl := testkit.NetNS(t)
		rt := h.runtimeConf(wl, "ver-"+strings.ReplaceAll(ver, ".", "-"))
		var r types.Result
		err := h.inHost(func() (err error) {
			r, err = h.cniConfig().AddNetworkList(t.Context(), l, rt)
			return err
		})
		if err != nil {
			t.Fatalf("ADD %s: %v", ver, err)
		}
		if r.Version() != ver {
			t.Errorf("result version %s, want %s", r.Version(), ver)
		}
		cur, err := types100.NewResultFromResult(r)
		if err != nil || len(cur.IPs) != 2 {
			t.Errorf("%s result: %+v, %v", ver, cur, err)
		}
		if ver != "0.3.1" {
			if err := h.check(l, rt); err != nil {
				t.Errorf("CHECK %s: %v", ver, err)
			}
		}
		if err := h.del(l, rt); err != nil {
			t.Errorf("DEL %s: %v", ver, err)
		}
	}
	info, err := h.cniConfig().GetVersionInfo(t.Context(), PluginType)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.SupportedVersions(); !slices.Contains(got, "0.3.1") || !slices.Contains(got, "1.1.0") {
		t.Errorf("VERSION: %v", got)
	}
}
