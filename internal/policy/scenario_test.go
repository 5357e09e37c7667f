package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// The scenario files in testdata/ (and the Kubernetes e2e truth tables in
// testdata/k8s/) drive a whole cluster: one incremental engine per node,
// fed every object, whose Flush deltas are applied to a shadow ruleset.
// Every command that evaluates something first checks, for every node,
// that the shadow ruleset equals both the engine's Ruleset and a
// from-scratch Compile, and every verdict is checked against the naive
// reference evaluator.
//
// Commands:
//
//	cluster k8s                   load testdata/k8s/cluster.yaml (x, y, z × a, b, c)
//	apply                         input: YAML manifests (any apiVersion DecodeManifests reads)
//	delete                        input: lines "Kind namespace/name" or "Kind name"
//	label KIND NAME k=v k2-       set or remove labels of a stored object
//	reach PROTO PORT              truth table of every workload pair ("." allowed, "X" denied)
//	verdict from=A to=B [proto=P] [port=N] [icmp=T/C]   trace one flow
//	compile node=N                the node's ruleset
//	flush node=N                  the node's delta since the last command that synced

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := filepath.Glob("testdata/k8s/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, k8s...)
	if len(files) == 0 {
		t.Fatal("no scenario files")
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "testdata/"), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newScenarioWorld(t)
			runDataDriven(t, f, w.run)
		})
	}
}

// scenarioWorld is the cluster a scenario file drives.
type scenarioWorld struct {
	t       *testing.T
	naive   *naiveWorld
	engines map[string]*Engine
	shadows map[string]*Ruleset
}

func newScenarioWorld(t *testing.T) *scenarioWorld {
	return &scenarioWorld{t: t, naive: newNaiveWorld(), engines: map[string]*Engine{}, shadows: map[string]*Ruleset{}}
}

func (w *scenarioWorld) run(t *testing.T, d *ddCase) string {
	switch d.Cmd {
	case "cluster":
		data, err := os.ReadFile(filepath.Join("testdata", "k8s", "cluster.yaml"))
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		return w.applyYAML(t, d, string(data))
	case "apply":
		return w.applyYAML(t, d, d.Input)
	case "delete":
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			kind, ref, ok := strings.Cut(strings.TrimSpace(line), " ")
			if !ok {
				d.Fatalf(t, "want \"Kind [namespace/]name\", got %q", line)
			}
			ns, name, namespaced := strings.Cut(ref, "/")
			if !namespaced {
				ns, name = "", ref
			}
			w.delete(kind, ns, name)
		}
		return "ok"
	case "label":
		return w.label(t, d)
	case "reach":
		return w.reach(t, d)
	case "verdict":
		return w.verdict(t, d)
	case "compile":
		node, _ := d.Arg("node")
		w.sync(t)
		if w.shadows[node] == nil {
			d.Fatalf(t, "no node %q", node)
		}
		return w.shadows[node].String()
	case "flush":
		node, _ := d.Arg("node")
		e := w.engines[node]
		if e == nil {
			d.Fatalf(t, "no node %q", node)
		}
		delta := e.Flush()
		w.shadows[node].Apply(delta)
		if delta.Empty() {
			return "(no change)"
		}
		return delta.String()
	}
	d.Fatalf(t, "unknown command")
	return ""
}

func (w *scenarioWorld) applyYAML(t *testing.T, d *ddCase, data string) string {
	objs, err := v1.DecodeManifests("scenario", []byte(data))
	if err != nil {
		return "error: " + err.Error()
	}
	for _, o := range objs {
		w.put(o)
	}
	return "ok"
}

// put stores an object and feeds it to every engine, starting engines for
// nodes that appear.
func (w *scenarioWorld) put(o v1.Object) {
	w.naive.put(o)
	node := ""
	switch o := o.(type) {
	case *v1.WorkloadEndpoint:
		node = o.Spec.Node
	case *v1.HostEndpoint:
		node = o.Spec.Node
	}
	for _, e := range w.engines {
		e.OnUpdate(o)
	}
	if node != "" && w.engines[node] == nil {
		e, err := NewEngine(Config{Node: node})
		if err != nil {
			w.t.Fatal(err)
		}
		for _, obj := range w.naive.list() {
			e.OnUpdate(obj)
		}
		w.engines[node] = e
		w.shadows[node] = NewRuleset(node)
	}
}

func (w *scenarioWorld) delete(kind, ns, name string) {
	w.naive.remove(kind, ns, name)
	for _, e := range w.engines {
		e.OnDelete(kind, ns, name)
	}
}

// label changes the labels of a stored object (a copy of it) and updates.
func (w *scenarioWorld) label(t *testing.T, d *ddCase) string {
	if len(d.Args) < 2 {
		d.Fatalf(t, "want label KIND NAME k=v …")
	}
	info, ok := v1.LookupKind(d.Args[0].Key)
	if !ok {
		d.Fatalf(t, "unknown kind %q", d.Args[0].Key)
	}
	ns, name, namespaced := strings.Cut(d.Args[1].Key, "/")
	if !namespaced {
		ns, name = "", d.Args[1].Key
	}
	old := w.naive.objs[naiveKey(info.Kind, ns, name)]
	if old == nil {
		d.Fatalf(t, "%s %s not found", info.Kind, d.Args[1].Key)
	}
	data, err := json.Marshal(old)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	obj := info.New()
	if err := json.Unmarshal(data, obj); err != nil {
		d.Fatalf(t, "%v", err)
	}
	m := obj.GetObjectMeta()
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	for _, a := range d.Args[2:] {
		switch {
		case len(a.Vals) == 1:
			m.Labels[a.Key] = a.Vals[0]
		case strings.HasSuffix(a.Key, "-"):
			delete(m.Labels, strings.TrimSuffix(a.Key, "-"))
		default:
			d.Fatalf(t, "bad label argument %q", a.Key)
		}
	}
	w.put(obj)
	return "ok"
}

// sync flushes every engine into its shadow ruleset and checks that the
// shadow equals the engine's own snapshot and a from-scratch compile.
func (w *scenarioWorld) sync(t *testing.T) {
	t.Helper()
	objs := w.naive.list()
	for node, e := range w.engines {
		w.shadows[node].Apply(e.Flush())
		fresh, err := Compile(Config{Node: node}, objs)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(fresh, w.shadows[node], rulesetCmpOpts...); diff != "" {
			t.Fatalf("node %s: incremental deltas differ from a fresh compile (-fresh +incremental):\n%s", node, diff)
		}
		if diff := cmp.Diff(e.Ruleset(), w.shadows[node], rulesetCmpOpts...); diff != "" {
			t.Fatalf("node %s: Ruleset differs from the applied deltas (-Ruleset +deltas):\n%s", node, diff)
		}
	}
}

var rulesetCmpOpts = []cmp.Option{
	cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{}),
	cmpopts.EquateEmpty(),
}

// flow evaluates a packet over the shadow rulesets and checks the naive
// reference agrees.
func (w *scenarioWorld) flow(t *testing.T, pkt Packet) FlowVerdict {
	t.Helper()
	var src, dst FlowEnd
	for node, rs := range w.shadows {
		for id, ep := range rs.Endpoints {
			for _, p := range ep.Addrs {
				if p.Addr() == pkt.Src {
					src = FlowEnd{w.shadows[node], id}
				}
				if p.Addr() == pkt.Dst {
					dst = FlowEnd{w.shadows[node], id}
				}
			}
		}
	}
	fv := EvaluateFlow(src, dst, pkt)
	negress, ningress := w.naive.flow(pkt)
	compare := func(dir string, got *Verdict, want *naiveResult) {
		if (got == nil) != (want == nil) {
			t.Errorf("%s %s: engine evaluated %v, naive %v", pkt, dir, got != nil, want != nil)
			return
		}
		if got == nil {
			return
		}
		var origin RuleOrigin
		if got.Rule != nil {
			origin = *got.Rule
		}
		if got.Action != want.action || got.Reason != want.reason || origin != want.origin || got.Tier != want.tier {
			t.Errorf("%s %s: engine %s (%s), naive %s %s %+v %s", pkt, dir, got.Action, got.Summary(),
				want.action, want.reason, want.origin, want.tier)
		}
	}
	compare("egress", fv.Egress, negress)
	compare("ingress", fv.Ingress, ningress)
	return fv
}

// reach prints the truth table of every pair of workload endpoints, rows
// the clients and columns the servers, as the Kubernetes e2e tests do.
func (w *scenarioWorld) reach(t *testing.T, d *ddCase) string {
	if len(d.Args) != 2 {
		d.Fatalf(t, "want reach PROTO PORT")
	}
	proto, err := ParseProtocol(d.Args[0].Key)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	port, err := strconv.ParseUint(d.Args[1].Key, 10, 16)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	w.sync(t)
	type pod struct {
		name string
		addr netip.Addr
	}
	var pods []pod
	for _, th := range w.naive.things() {
		if th.isWEP && len(th.addrs) > 0 {
			pods = append(pods, pod{strings.TrimPrefix(string(th.id), "wep:"), th.addrs[0].Addr()})
		}
	}
	slices.SortFunc(pods, func(a, b pod) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s", d.Args[0].Key+"/"+d.Args[1].Key)
	for _, p := range pods {
		fmt.Fprintf(&b, " %s", p.name)
	}
	for _, from := range pods {
		fmt.Fprintf(&b, "\n%-8s", from.name)
		for _, to := range pods {
			fv := w.flow(t, Packet{Src: from.addr, Dst: to.addr, Protocol: proto, SrcPort: 40000, DstPort: uint16(port)})
			mark := "X"
			if fv.Action == v1.Allow {
				mark = "."
			}
			fmt.Fprintf(&b, " %*s", len(to.name), mark)
		}
	}
	return b.String()
}

// verdict traces one flow with Cluster.Trace and checks it against the
// incremental rulesets and the naive reference.
func (w *scenarioWorld) verdict(t *testing.T, d *ddCase) string {
	from, _ := d.Arg("from")
	to, _ := d.Arg("to")
	pkt := Packet{Protocol: protoTCP, SrcPort: 40000, DstPort: 80}
	if p, ok := d.Arg("proto"); ok {
		n, err := ParseProtocol(p)
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		pkt.Protocol = n
	}
	if p, ok := d.Arg("port"); ok {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		pkt.DstPort = uint16(n)
	}
	if p, ok := d.Arg("sport"); ok {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		pkt.SrcPort = uint16(n)
	}
	if p, ok := d.Arg("icmp"); ok {
		typ, code, _ := strings.Cut(p, "/")
		n, _ := strconv.ParseUint(typ, 10, 8)
		c, _ := strconv.ParseUint(code, 10, 8)
		pkt.ICMPType, pkt.ICMPCode = uint8(n), uint8(c)
	}
	w.sync(t)
	tr, err := NewCluster(w.naive.list()).Trace(from, to, pkt)
	if err != nil {
		return "error: " + err.Error()
	}
	fv := w.flow(t, tr.Packet)
	if fv.Action != tr.Result.Action {
		t.Errorf("%s: trace says %s, incremental rulesets %s", d.Pos, tr.Result.Action, fv.Action)
	}
	return tr.String()
}
