package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/lab"
)

// moveLabName is unique per test process and call, and starts with "mv".
func moveLabName() string {
	return fmt.Sprintf("mv%d-%d", os.Getpid(), labCounter.Add(1))
}

// maxMoveGap is the goal for the connectivity gap of a move.
const maxMoveGap = time.Second

const labMoveDenyPolicy = `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-to-mover, namespace: default}
spec:
  selector: app == 'mover'
  types: [Ingress]
`

// move runs lab move --json and checks what every move must do: the
// addresses kept, the workload on the new node in the lab's state and in
// the datastore, and (when the probes got through before the move) a
// gap below maxMoveGap.
func (e *labEnv) move(name, wl, node string, extra ...string) lab.MoveResult {
	e.t.Helper()
	before, err := lab.Load(name)
	if err != nil {
		e.t.Fatal(err)
	}
	w0, _ := before.Workload(wl)
	out := e.must(append([]string{"lab", "--name", name, "move", wl, "--node", node, "--json"}, extra...)...)
	var res lab.MoveResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("lab move output: %v\n%s", err, out)
	}
	e.t.Logf("moved %s %s -> %s in %s: %+v", wl, res.From, res.To, res.Took, res.Steps)
	if res.Probe != nil {
		for _, f := range res.Probe.Families {
			e.t.Logf("  probes from %s, IPv%d: gap %s, %d of %d answered, baseline %v, restored %v",
				res.Probe.From, f.Family, f.Gap, f.Answered, f.Sent, f.Baseline, f.Restored)
		}
	}
	if res.From != w0.Node || res.To != node || res.IPv4 != w0.IPv4 || res.IPv6 != w0.IPv6 {
		e.t.Errorf("move result %+v, want %s -> %s keeping %s %s", res, w0.Node, node, w0.IPv4, w0.IPv6)
	}
	after, err := lab.Load(name)
	if err != nil {
		e.t.Fatal(err)
	}
	w1, _ := after.Workload(wl)
	if w1.Node != node || w1.IPv4 != w0.IPv4 || w1.IPv6 != w0.IPv6 || w1.Endpoint != res.Endpoint ||
		w1.ContainerID == w0.ContainerID || w1.Interface != res.Interface || w1.NetNS != w0.NetNS {
		e.t.Errorf("state after the move: %+v; before: %+v", w1, w0)
	}
	// The datastore: the new endpoint on the new node, with the
	// addresses, the labels and without the elevated priority; the old
	// endpoint gone.
	var list struct {
		Items []v1.WorkloadEndpoint `json:"items"`
	}
	weps := e.must("--context", "lab-"+name, "get", "workloadendpoints", "-A", "-o", "json")
	if err := json.Unmarshal([]byte(weps), &list); err != nil {
		e.t.Fatalf("get workloadendpoints: %v\n%s", err, weps)
	}
	if !strings.Contains(weps, `"items"`) { // one object is printed alone
		list.Items = make([]v1.WorkloadEndpoint, 1)
		if err := json.Unmarshal([]byte(weps), &list.Items[0]); err != nil {
			e.t.Fatalf("get workloadendpoints: %v\n%s", err, weps)
		}
	}
	found := false
	for _, wep := range list.Items {
		switch wep.Metadata.Name {
		case w0.Endpoint:
			e.t.Errorf("the old endpoint %s is still there: %+v", w0.Endpoint, wep)
		case res.Endpoint:
			found = true
			nets := strings.Join(wep.Spec.IPNetworks, ",")
			if wep.Spec.Node != node || !strings.Contains(nets, w0.IPv4.String()+"/32") || !strings.Contains(nets, w0.IPv6.String()+"/128") ||
				wep.Metadata.Labels["app"] != w0.Labels["app"] || wep.Metadata.Annotations[agent.AnnotationRoutePriority] != "" {
				e.t.Errorf("the new endpoint: %+v", wep)
			}
		}
	}
	if !found {
		e.t.Errorf("no endpoint %s:\n%s", res.Endpoint, weps)
	}
	// Inside the workload: the same addresses on the new eth0.
	addrs := e.must("lab", "--name", name, "exec", wl, "--", "ip", "-br", "addr", "show", "eth0")
	for _, a := range []string{w0.IPv4.String() + "/32", w0.IPv6.String() + "/128"} {
		if !strings.Contains(addrs, a) {
			e.t.Errorf("eth0 of %s lacks %s: %s", wl, a, addrs)
		}
	}
	if out := e.must("--context", "lab-"+name, "ipam", "check"); !strings.Contains(out, "Clean") {
		e.t.Errorf("ipam check after the move:\n%s", out)
	}
	if p := res.Probe; p != nil {
		for _, f := range p.Families {
			if f.Baseline && (!f.Restored || f.Gap >= maxMoveGap) {
				e.t.Errorf("moving %s to %s: IPv%d connectivity gap %s seen from %s (restored %v; goal: under %s); steps %+v",
					wl, node, f.Family, f.Gap, p.From, f.Restored, maxMoveGap, res.Steps)
			}
		}
	}
	return res
}

// reachable checks that from reaches wl on tcp/80 and by ping, over IPv4
// and IPv6.
func (e *labEnv) reachable(name, from, wl string) {
	e.t.Helper()
	for _, fam := range []string{"4", "6"} {
		e.waitProbe(true, "--name", name, from, wl, "--proto", "tcp", "--port", "80", "--family", fam)
		e.waitProbe(true, "--name", name, from, wl, "--proto", "icmp", "--family", fam)
	}
}

func TestLabMove(t *testing.T) {
	e := newLabEnv(t)
	name := moveLabName()
	e.up(name, "--nodes", "3", "--ipv6")
	e.must("lab", "--name", name, "run", "a", "--node", "n1", "--labels", "app=mover", "--serve", "tcp:80")
	// Alone in the lab: it moves, and nothing measures the gap.
	if out := e.must("lab", "--name", name, "move", "a", "--node", "n2"); !strings.Contains(out, "no other workload to probe default/a from") {
		t.Errorf("lab move of a lone workload:\n%s", out)
	}
	if res := e.move(name, "a", "n1"); res.Probe != nil || res.NoProbe == "" {
		t.Errorf("lone workload: probe %+v, noProbe %q", res.Probe, res.NoProbe)
	}
	e.must("lab", "--name", name, "run", "b", "--node", "n2", "--labels", "app=b", "--serve", "tcp:80")
	e.must("lab", "--name", name, "run", "c", "--node", "n3", "--labels", "app=c", "--serve", "tcp:80")
	e.reachable(name, "b", "a")
	e.reachable(name, "c", "a")

	// Mistakes change nothing.
	st0, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"zz", "--node", "n2"}, `no workload "zz"`},
		{[]string{"a", "--node", "n9"}, `--node "n9"`},
		{[]string{"a", "--node", "n1"}, "on n1 already"},
		{[]string{"a", "--node", "n2", "--probe-from", "zz"}, `--probe-from "zz"`},
		{[]string{"a"}, `"node" not set`},
	} {
		out, code := e.run(append([]string{"lab", "--name", name, "move"}, tc.args...)...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("lab move %s: exit %d, want an error with %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
	if st, err := lab.Load(name); err != nil || mustJSON(t, st.Workloads) != mustJSON(t, st0.Workloads) {
		t.Errorf("a failed move changed the state: %v\n%s\nbefore:\n%s", err, mustJSON(t, st.Workloads), mustJSON(t, st0.Workloads))
	}

	// n1 -> n2 (a leaves the node whose block holds its addresses); the
	// prober is c on n3, on neither node.
	res := e.move(name, "a", "n2")
	if res.Probe == nil || res.Probe.From != "default/c" {
		t.Errorf("default prober: %+v, want default/c", res.Probe)
	}
	if res.Probe != nil && len(res.Probe.Families) != 2 {
		t.Errorf("probe families %+v, want IPv4 and IPv6", res.Probe.Families)
	}
	e.reachable(name, "b", "a")
	e.reachable(name, "c", "a")
	e.reachable(name, "a", "c")

	// And back to n1 (the owner of the block: only the elevated /32
	// beats n2's route while n2 still has it), probed from b on n2.
	res = e.move(name, "a", "n1", "--probe-from", "b")
	if res.Probe == nil || res.Probe.From != "default/b" || res.Probe.Gap <= 0 {
		t.Errorf("probe from b: %+v", res.Probe)
	}
	e.reachable(name, "b", "a")
	e.reachable(name, "c", "a")

	// Policy follows: a deny-ingress policy for app=mover still applies
	// on the new node.
	policy := e.apply(name, labMoveDenyPolicy)
	for _, fam := range []string{"4", "6"} {
		e.waitProbe(false, "--name", name, "b", "a", "--proto", "tcp", "--port", "80", "--family", fam)
	}
	res = e.move(name, "a", "n3")
	if res.Probe == nil || res.Probe.From != "default/b" {
		t.Errorf("probe from b: %+v", res.Probe)
	} else {
		for _, f := range res.Probe.Families {
			if f.Baseline || f.Answered > 0 {
				t.Errorf("IPv%d probes got through the deny policy: %+v", f.Family, f)
			}
		}
	}
	for _, fam := range []string{"4", "6"} {
		for _, from := range []string{"b", "c"} {
			e.waitProbe(false, "--name", name, from, "a", "--proto", "tcp", "--port", "80", "--family", fam)
			e.waitProbe(false, "--name", name, from, "a", "--proto", "icmp", "--family", fam)
		}
		e.waitProbe(true, "--name", name, "a", "b", "--proto", "tcp", "--port", "80", "--family", fam)
	}
	e.must("--context", "lab-"+name, "delete", "-f", policy)
	e.reachable(name, "b", "a")

	e.downAndCheck(name)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
