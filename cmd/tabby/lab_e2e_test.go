package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testkit"
)

// The end-to-end suite: one three-node dual-stack lab, shared by the
// subtests in order (the node failure last, since it breaks the lab):
//
//   - traceroute between workloads shows the hosts as hops, no tunnel;
//   - policy scenarios with real packets (default deny, egress, tiers and
//     Pass, GlobalNetworkPolicy, profiles, named ports, ICMP types), each
//     applied with `tabby apply`, probed with `tabby lab probe` (which
//     waits for convergence first) and deleted again;
//   - the Kubernetes network policy truth tables of internal/policy
//     (testdata/k8s), on the x, y, z × a, b, c model built as workloads,
//     probed pair by pair;
//   - node failure: n3 is cut off and its agent killed; the other nodes
//     withdraw its routes.
//
// TABBY_E2E=1 go test -run TestE2E -v ./cmd/tabby/

// e2eModel is the Kubernetes e2e model: pod a of every namespace on n1, b
// on n2, c on n3.
var (
	e2eNamespaces = []string{"x", "y", "z"}
	e2ePods       = []string{"a", "b", "c"}
)

func e2eNode(pod string) string { return "n" + strconv.Itoa(strings.Index("abc", pod)+1) }

type e2eSuite struct {
	e      *labEnv
	name   string
	st     *lab.State
	client *datastore.Client
	dir    string
}

func TestE2E(t *testing.T) {
	if testing.Short() && os.Getenv(testkit.EnvE2E) != "1" {
		t.Skip("the end-to-end suite is long; TABBY_E2E=1 runs it")
	}
	for _, c := range [][2]string{{"traceroute", "traceroute"}, {"ping", "iputils-ping"}, {"nft", "nftables"}} {
		testkit.RequireCommand(t, c[0], c[1])
	}
	e := newLabEnv(t)
	s := &e2eSuite{e: e, name: fmt.Sprintf("e2e%d", os.Getpid()%1000000), dir: t.TempDir()}
	start := time.Now()
	s.st = e.up(s.name, "--nodes", "3", "--ipv6")
	s.connect(t)
	s.buildModel(t)
	t.Logf("lab with %d workloads ready in %s", len(s.st.Workloads), time.Since(start).Round(time.Millisecond))

	t.Run("Traceroute", s.testTraceroute)
	t.Run("Policy", s.testPolicy)
	t.Run("K8sTruthTables", s.testK8sTables)
	t.Run("NodeFailure", s.testNodeFailure)
}

// connect opens the lab's datastore (through the relay) in-process.
func (s *e2eSuite) connect(t *testing.T) {
	t.Helper()
	cfg := etcd.ClientConfig{Endpoints: []string{s.st.ClientURL}}
	cfg.Defaults()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := etcd.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s.client = datastore.NewClient(store)
}

// reload reads state.json again (after lab run).
func (s *e2eSuite) reload(t *testing.T) {
	t.Helper()
	st, err := lab.Load(s.name)
	if err != nil {
		t.Fatal(err)
	}
	s.st = st
}

// file writes content to a file of the suite and returns its path.
func (s *e2eSuite) file(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildModel creates the namespaces x, y, z (labels ns=NS and
// kubernetes.io/metadata.name=NS), the nine pods serving tcp and udp on 80
// and 81 (and tcp 82, which endport.txt probes) with the e2e named ports, and the workloads of the policy
// scenarios in namespace default.
func (s *e2eSuite) buildModel(t *testing.T) {
	t.Helper()
	var nsYAML strings.Builder // quoted: YAML 1.1 reads a bare y as true
	for _, ns := range e2eNamespaces {
		fmt.Fprintf(&nsYAML, "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %q\n  labels: {ns: %q, kubernetes.io/metadata.name: %q}\n", ns, ns, ns)
	}
	s.env(t).must("--context", "lab-"+s.name, "apply", "-f", s.file(t, "namespaces.yaml", nsYAML.String()))
	for _, ns := range e2eNamespaces {
		for _, pod := range e2ePods {
			s.env(t).must("lab", "--name", s.name, "run", pod, "--namespace", ns, "--node", e2eNode(pod),
				"--labels", "pod="+pod, "--serve", "tcp:80,tcp:81,tcp:82,udp:80,udp:81")
		}
	}
	s.env(t).must("lab", "--name", s.name, "run", "client", "--node", "n1", "--labels", "app=client", "--serve", "tcp:80")
	s.env(t).must("lab", "--name", s.name, "run", "web", "--node", "n2", "--labels", "app=web", "--serve", "tcp:80,tcp:8080,udp:53")
	s.env(t).must("lab", "--name", s.name, "run", "db", "--node", "n3", "--labels", "app=db", "--serve", "tcp:80")
	s.reload(t)

	// Named ports: the CNI plugin writes no ports on the endpoint (a CNI
	// runtime has none to give), so they are set on the WorkloadEndpoints
	// as an orchestrator would.
	var ports []v1.WorkloadEndpointPort
	for _, p := range []uint16{80, 81} {
		for _, proto := range []string{"tcp", "udp", "sctp"} {
			ports = append(ports, v1.WorkloadEndpointPort{Name: fmt.Sprintf("serve-%d-%s", p, proto), Protocol: v1.Protocol(strings.ToUpper(proto)), Port: p})
		}
	}
	for _, ns := range e2eNamespaces {
		for _, pod := range e2ePods {
			s.setPorts(t, ns+"/"+pod, ports)
		}
	}
	s.setPorts(t, "web", []v1.WorkloadEndpointPort{{Name: "http-alt", Protocol: "TCP", Port: 8080}})
}

// endpoint returns the WorkloadEndpoint of the workload ref.
func (s *e2eSuite) endpoint(t *testing.T, ref string) *v1.WorkloadEndpoint {
	t.Helper()
	w, ok := s.st.Workload(ref)
	if !ok {
		t.Fatalf("no workload %s", ref)
	}
	info, _ := v1.LookupKind("WorkloadEndpoint")
	obj, err := s.client.Get(context.Background(), info, w.Namespace, w.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*v1.WorkloadEndpoint)
}

func (s *e2eSuite) put(t *testing.T, obj v1.Object) {
	t.Helper()
	if _, err := s.client.Apply(context.Background(), []v1.Object{obj}, datastore.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s *e2eSuite) setPorts(t *testing.T, ref string, ports []v1.WorkloadEndpointPort) {
	t.Helper()
	wep := s.endpoint(t, ref)
	wep.Spec.Ports = ports
	s.put(t, wep)
}

// converge waits until every agent has applied the datastore's state.
func (s *e2eSuite) converge(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := lab.WaitConverged(ctx, s.st); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("converged in %s", d.Round(time.Millisecond))
	}
}

// ---- a) traceroute ----

var hopRE = regexp.MustCompile(`^\s*(\d+)\s+(\S+)`)

func (s *e2eSuite) testTraceroute(t *testing.T) {
	from, to := "x/a", "x/b" // n1 → n2
	src, _ := s.st.Workload(from)
	dst, _ := s.st.Workload(to)
	n1, _ := s.st.Node(src.Node)
	n2, _ := s.st.Node(dst.Node)
	for _, fam := range []int{4, 6} {
		want := []string{n1.IPv4.String(), n2.IPv4.String(), dst.IPv4.String()}
		args := []string{"traceroute", "-n", "-q", "1", "-w", "1", "-m", "6"}
		if fam == 6 {
			want = []string{n1.IPv6.String(), n2.IPv6.String(), dst.IPv6.String()}
			args = append(args, "-6")
		}
		out := s.env(t).must(append([]string{"lab", "--name", s.name, "exec", from, "--"}, append(args, want[2])...)...)
		var hops []string
		for _, line := range strings.Split(out, "\n") {
			if m := hopRE.FindStringSubmatch(line); m != nil {
				hops = append(hops, m[2])
			}
		}
		if !slices.Equal(hops, want) {
			t.Errorf("IPv%d traceroute %s → %s: hops %v, want %v (node %s, node %s, the workload)\n%s", fam, from, to, hops, want, n1.Name, n2.Name, out)
		}
	}
}

// ---- c) policy scenarios ----

// e2eProbe is one expected verdict: "FROM TO PROTO[/PORT] [v6] allow|deny".
type e2eProbe struct {
	from, to, proto string
	port, family    int
	allow           bool
}

func parseProbes(t *testing.T, lines string) []e2eProbe {
	t.Helper()
	var out []e2eProbe
	for _, line := range strings.Split(strings.TrimSpace(lines), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			t.Fatalf("bad probe line %q", line)
		}
		p := e2eProbe{from: f[0], to: f[1], family: 4, allow: f[len(f)-1] == "allow"}
		proto, port, _ := strings.Cut(f[2], "/")
		p.proto = proto
		if port != "" {
			p.port, _ = strconv.Atoi(port)
		}
		if slices.Contains(f, "v6") {
			p.family = 6
		}
		out = append(out, p)
	}
	return out
}

// e2eScenario is one policy scenario: manifests applied, probes checked,
// manifests deleted (restore is applied after the delete, if set).
type e2eScenario struct {
	name, manifests, restore, probes string
	steps                            []e2eStep // further manifests and probes
}

type e2eStep struct{ manifests, probes string }

var e2eScenarios = []e2eScenario{{
	name: "DefaultDeny",
	manifests: `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web-8080-only, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
`,
	probes: `client web tcp/8080 allow
client web tcp/80 deny
client web tcp/80 v6 deny
client web udp/53 deny
client web icmp deny
db web tcp/80 deny
web client tcp/80 allow`,
}, {
	name: "Egress",
	manifests: `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: default}
spec:
  selector: app == 'client'
  types: [Egress]
  egress: [{action: Allow, protocol: TCP, destination: {selector: app == 'web', ports: [80]}}]
`,
	probes: `client web tcp/80 allow
client web tcp/80 v6 allow
client web tcp/8080 deny
client db tcp/80 deny
client web udp/53 deny
web db tcp/80 allow
web client tcp/80 allow`,
}, {
	name: "TiersAndPass",
	manifests: `apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: security.web}
spec:
  tier: security
  order: 10
  selector: app == 'web'
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, source: {selector: app == 'db'}}
  - {action: Pass}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [80]}}]
---
apiVersion: tabby.dev/v1
kind: Tier
metadata: {name: security}
spec: {order: 100}
`,
	// security denies db, passes the rest to the default tier, which
	// allows client on 80 and ends in Deny.
	probes: `client web tcp/80 allow
client web tcp/80 v6 allow
client web tcp/8080 deny
db web tcp/80 deny
db web tcp/8080 deny`,
}, {
	name: "GlobalNetworkPolicy",
	manifests: `apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: db-from-web}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}}]
`,
	probes: `web db tcp/80 allow
web db tcp/80 v6 allow
client db tcp/80 deny
x/a db tcp/80 deny
client web tcp/80 allow`,
}, {
	name: "Profile",
	// With no policy, the profile decides: lab-open narrowed to tcp/80.
	manifests: `apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: lab-open}
spec:
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
  egress: [{action: Allow}]
`,
	restore: `apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: lab-open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
`,
	probes: `client web tcp/80 allow
client web tcp/80 v6 allow
client web tcp/8080 deny
client web icmp deny
x/a web tcp/8080 deny
web x/a tcp/81 allow`,
}, {
	name: "NamedPort",
	manifests: `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web-http-alt, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http-alt]}}]
`,
	probes: `client web tcp/8080 allow
client web tcp/8080 v6 allow
client web tcp/80 deny`,
}, {
	name: "ICMPType",
	manifests: `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web-icmp, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 13}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 130}}
`,
	probes: `client web icmp deny
client web icmp v6 deny
client web tcp/80 deny`,
	steps: []e2eStep{{
		manifests: `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web-icmp, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 8}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}
`,
		probes: `client web icmp allow
client web icmp v6 allow
client web tcp/80 deny`,
	}},
}}

func (s *e2eSuite) testPolicy(t *testing.T) {
	ctx := []string{"--context", "lab-" + s.name}
	for _, sc := range e2eScenarios {
		t.Run(sc.name, func(t *testing.T) {
			path := s.file(t, sc.name+".yaml", sc.manifests)
			t.Cleanup(func() {
				if out, code := s.env(t).run(append(ctx, "delete", "-f", path)...); code != 0 && !strings.Contains(out, "Profile") {
					t.Errorf("delete: %s", out)
				}
				if sc.restore != "" {
					s.env(t).must(append(ctx, "apply", "-f", s.file(t, sc.name+"-restore.yaml", sc.restore))...)
				}
			})
			steps := append([]e2eStep{{sc.manifests, sc.probes}}, sc.steps...)
			for i, step := range steps {
				s.env(t).must(append(ctx, "apply", "-f", s.file(t, fmt.Sprintf("%s-%d.yaml", sc.name, i), step.manifests))...)
				s.checkProbes(t, parseProbes(t, step.probes))
			}
		})
	}
}

// checkProbes runs each probe with `tabby lab probe`, which first waits
// until every agent has applied the policy: no polling here.
func (s *e2eSuite) checkProbes(t *testing.T, probes []e2eProbe) {
	t.Helper()
	for _, p := range probes {
		args := []string{"lab", "--name", s.name, "probe", p.from, p.to, "--proto", p.proto, "--family", strconv.Itoa(p.family), "--timeout", "1s"}
		if p.port != 0 {
			args = append(args, "--port", strconv.Itoa(p.port))
		}
		out, code := s.env(t).run(args...)
		if code != 0 && code != 1 {
			t.Fatalf("tabby %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
		if (code == 0) != p.allow {
			t.Errorf("%s -> %s %s/%d IPv%d: want allowed=%v, got: %s", p.from, p.to, p.proto, p.port, p.family, p.allow, strings.TrimSpace(out))
		}
	}
}

// ---- d) Kubernetes truth tables ----

// ddCase is one case of a scenario file of internal/policy/testdata
// (datadriven style: command line, input, "----", expected output up to
// a blank line).
type ddCase struct {
	pos      string
	cmd      []string
	input    string
	expected string
}

func readScenario(t *testing.T, path string) []ddCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ddCase
	sc := bufio.NewScanner(f)
	n := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		n++
		return sc.Text(), true
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := ddCase{pos: fmt.Sprintf("%s:%d", filepath.Base(path), n), cmd: strings.Fields(line)}
		var in, exp []string
		for {
			l, ok := next()
			if !ok || l == "----" {
				break
			}
			in = append(in, l)
		}
		for {
			l, ok := next()
			if !ok || strings.TrimSpace(l) == "" {
				break
			}
			exp = append(exp, l)
		}
		c.input, c.expected = strings.Join(in, "\n"), strings.Join(exp, "\n")
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// modelAddrRE matches the model's pod addresses (10.0.NS.POD/32) in
// manifests; they are replaced by the lab workloads' addresses. The
// model's 10.0.0.0/8 holds every pod of the lab too (pool 10.65.0.0/16).
var modelAddrRE = regexp.MustCompile(`10\.0\.([1-3])\.([1-3])/32`)

func (s *e2eSuite) rewriteAddrs(manifest string) string {
	return modelAddrRE.ReplaceAllStringFunc(manifest, func(m string) string {
		sub := modelAddrRE.FindStringSubmatch(m)
		ns, _ := strconv.Atoi(sub[1])
		pod, _ := strconv.Atoi(sub[2])
		w, _ := s.st.Workload(e2eNamespaces[ns-1] + "/" + e2ePods[pod-1])
		return w.IPv4.String() + "/32"
	})
}

// modelRefs are the nine pods in table order.
func modelRefs() []string {
	var out []string
	for _, ns := range e2eNamespaces {
		for _, pod := range e2ePods {
			out = append(out, ns+"/"+pod)
		}
	}
	return out
}

// k8sState is what a table file changes and what is put back after it.
type k8sState struct {
	applied  []v1.Object
	labels   map[string]map[string]string // WorkloadEndpoint ref → original labels
	nsLabels map[string]map[string]string // Namespace → original labels
}

func (s *e2eSuite) testK8sTables(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "internal", "policy", "testdata", "k8s", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no truth tables: %v", err)
	}
	start := time.Now()
	tables, skipped := 0, 0
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			st := &k8sState{labels: map[string]map[string]string{}, nsLabels: map[string]map[string]string{}}
			t.Cleanup(func() { s.restoreK8s(t, st) })
			for _, c := range readScenario(t, f) {
				switch c.cmd[0] {
				case "cluster":
					// The model is the lab's nine pods (buildModel).
				case "apply":
					objs, err := v1.DecodeManifests(c.pos, []byte(s.rewriteAddrs(c.input)))
					if err != nil {
						t.Fatalf("%s: %v", c.pos, err)
					}
					if _, err := s.client.Apply(context.Background(), objs, datastore.ApplyOptions{}); err != nil {
						t.Fatalf("%s: %v", c.pos, err)
					}
					st.applied = append(st.applied, objs...)
				case "delete":
					for _, line := range strings.Split(strings.TrimSpace(c.input), "\n") {
						kind, ref, _ := strings.Cut(strings.TrimSpace(line), " ")
						ns, n, _ := strings.Cut(ref, "/")
						info, _ := v1.LookupKind(kind)
						if _, err := s.client.Delete(context.Background(), info, ns, n, ""); err != nil {
							t.Fatalf("%s: %v", c.pos, err)
						}
					}
				case "label":
					s.k8sLabel(t, st, c)
				case "reach":
					if c.cmd[1] == "sctp" {
						skipped++
						t.Logf("%s: reach sctp skipped: the lab's echo servers serve tcp and udp only", c.pos)
						continue
					}
					port, _ := strconv.Atoi(c.cmd[2])
					s.checkTable(t, c, c.cmd[1], port)
					tables++
				default:
					t.Fatalf("%s: unknown command %q", c.pos, c.cmd[0])
				}
			}
		})
	}
	t.Logf("%d truth tables from %d files checked with real packets in %s (%d sctp tables skipped)",
		tables, len(files), time.Since(start).Round(time.Millisecond), skipped)
}

// k8sLabel runs "label KIND REF k=v k2-" against the lab's objects.
func (s *e2eSuite) k8sLabel(t *testing.T, st *k8sState, c ddCase) {
	t.Helper()
	var obj v1.Object
	switch c.cmd[1] {
	case "WorkloadEndpoint":
		wep := s.endpoint(t, c.cmd[2])
		if _, ok := st.labels[c.cmd[2]]; !ok {
			st.labels[c.cmd[2]] = maps.Clone(wep.Metadata.Labels)
		}
		obj = wep
	case "Namespace":
		info, _ := v1.LookupKind("Namespace")
		o, err := s.client.Get(context.Background(), info, "", c.cmd[2])
		if err != nil {
			t.Fatalf("%s: %v", c.pos, err)
		}
		if _, ok := st.nsLabels[c.cmd[2]]; !ok {
			st.nsLabels[c.cmd[2]] = maps.Clone(o.GetObjectMeta().Labels)
		}
		obj = o
	default:
		t.Fatalf("%s: label of %s", c.pos, c.cmd[1])
	}
	m := obj.GetObjectMeta()
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	for _, kv := range c.cmd[3:] {
		if k, ok := strings.CutSuffix(kv, "-"); ok {
			delete(m.Labels, k)
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		m.Labels[k] = v
	}
	s.put(t, obj)
}

// restoreK8s deletes what a table file applied and puts labels back.
func (s *e2eSuite) restoreK8s(t *testing.T, st *k8sState) {
	ctx := context.Background()
	for _, o := range st.applied {
		info, _ := v1.LookupKind(o.GetTypeMeta().Kind)
		m := o.GetObjectMeta()
		if _, err := s.client.Delete(ctx, info, m.Namespace, m.Name, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			t.Errorf("deleting %s %s/%s: %v", o.GetTypeMeta().Kind, m.Namespace, m.Name, err)
		}
	}
	for ref, labels := range st.labels {
		wep := s.endpoint(t, ref)
		wep.Metadata.Labels = labels
		s.put(t, wep)
	}
	for name, labels := range st.nsLabels {
		info, _ := v1.LookupKind("Namespace")
		cur, err := s.client.Get(ctx, info, "", name)
		if err != nil {
			t.Error(err)
			continue
		}
		cur.GetObjectMeta().Labels = labels
		s.put(t, cur)
	}
}

// checkTable waits for convergence, probes the 72 ordered pairs of
// distinct pods in parallel and compares with the expected table. A pod
// to itself never leaves its namespace (loopback), so the diagonal is
// not probed. A probe that times out although allowed is tried again
// with a longer timeout (a loaded machine), never the other way round.
func (s *e2eSuite) checkTable(t *testing.T, c ddCase, proto string, port int) {
	t.Helper()
	want := parseTable(t, c)
	s.converge(t)
	refs := modelRefs()
	type result struct {
		from, to string
		allowed  bool
		err      error
	}
	var results []*result
	var wg sync.WaitGroup
	for _, from := range refs {
		for _, to := range refs {
			if from == to {
				continue
			}
			r := &result{from: from, to: to}
			results = append(results, r)
			wg.Go(func() {
				p := lab.ProbeSpec{From: from, To: to, Proto: proto, Port: port, Family: 4, Timeout: 500 * time.Millisecond}
				r.err = lab.Probe(context.Background(), s.st, p)
				if r.err != nil && want[[2]string{from, to}] {
					p.Timeout = 3 * time.Second
					r.err = lab.Probe(context.Background(), s.st, p)
				}
				r.allowed = r.err == nil
			})
		}
	}
	wg.Wait()
	bad := 0
	for _, r := range results {
		if w := want[[2]string{r.from, r.to}]; w != r.allowed {
			bad++
			t.Errorf("%s: %s %d: %s -> %s: want allowed=%v, got allowed=%v (%v)", c.pos, proto, port, r.from, r.to, w, r.allowed, r.err)
		}
	}
	if bad > 0 {
		t.Logf("expected:\n%s", c.expected)
	}
}

// parseTable reads "PROTO/PORT x/a x/b …" then one row per source with
// "." (allowed) or "X" (denied) per destination.
func parseTable(t *testing.T, c ddCase) map[[2]string]bool {
	t.Helper()
	lines := strings.Split(c.expected, "\n")
	cols := strings.Fields(lines[0])[1:]
	want := map[[2]string]bool{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != len(cols)+1 {
			t.Fatalf("%s: bad table row %q", c.pos, line)
		}
		for i, cell := range f[1:] {
			want[[2]string{f[0], cols[i]}] = cell == "."
		}
	}
	if len(want) != 81 {
		t.Fatalf("%s: table has %d cells, want 81", c.pos, len(want))
	}
	return want
}

// ---- b) node failure ----

// learnedVia returns the routes of node's table with Tabby's protocol
// (80) whose next hop is via.
func (s *e2eSuite) learnedVia(t *testing.T, node string, via netip.Addr) []string {
	t.Helper()
	fam := "-4"
	if via.Is6() {
		fam = "-6"
	}
	out, code := s.env(t).run("lab", "--name", s.name, "exec", node, "--", "ip", fam, "route", "show", "proto", "80")
	if code != 0 {
		t.Fatalf("ip route on %s: exit %d: %s", node, code, out)
	}
	var routes []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "via "+via.String()+" ") {
			routes = append(routes, strings.Fields(line)[0])
		}
	}
	return routes
}

func (s *e2eSuite) testNodeFailure(t *testing.T) {
	// Short timers, so the test takes seconds and not the mesh's 90s hold
	// time and 120s restart time: a global BGPPeer between all nodes
	// replaces the mesh sessions (keepalive 1s, hold 3s, graceful restart
	// 3s).
	path := s.file(t, "fast-bgp.yaml", `apiVersion: tabby.dev/v1
kind: BGPPeer
metadata: {name: fast-mesh}
spec: {peerSelector: all(), keepaliveTime: 1s, maxRestartTime: 3s}
`)
	s.env(t).must("--context", "lab-"+s.name, "apply", "-f", path)
	s.converge(t)
	dead, _ := s.st.Node("n3")
	waitUntil(t, 30*time.Second, "sessions with the fast timers established and n3's routes learned", func() bool {
		for _, n := range s.st.Nodes[:2] {
			peers, err := agent.NewStatusClient(n.Socket).BGP(context.Background())
			if err != nil {
				return false
			}
			up := 0
			for _, p := range peers {
				if p.State == "Established" && p.Type == "global" {
					up++
				}
			}
			if up != 2 || len(s.learnedVia(t, n.Name, dead.IPv4)) == 0 || len(s.learnedVia(t, n.Name, dead.IPv6)) == 0 {
				return false
			}
		}
		return true
	})
	before := map[string][]string{}
	for _, n := range s.st.Nodes[:2] {
		before[n.Name] = append(s.learnedVia(t, n.Name, dead.IPv4), s.learnedVia(t, n.Name, dead.IPv6)...)
	}
	t.Logf("routes via n3 before the failure: %v", before)
	s.env(t).must("lab", "--name", s.name, "probe", "x/a", "x/c", "--proto", "tcp", "--port", "80")

	// The failure: n3's fabric port goes down (no FIN, no NOTIFICATION
	// reaches anyone), then its agent is killed.
	t.Cleanup(func() { // let lab down detach n3's workloads through the datastore
		s.env(t).run("lab", "--name", s.name, "exec", "fabric", "--", "ip", "link", "set", dead.Name, "up")
	})
	s.env(t).must("lab", "--name", s.name, "exec", "fabric", "--", "ip", "link", "set", dead.Name, "down")
	failed := time.Now()
	if dead.Agent == nil || !dead.Agent.Alive() {
		t.Fatalf("the agent of n3 is not running: %+v", dead.Agent)
	}
	if err := syscall.Kill(dead.Agent.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// The bound: hold time 3s, then graceful restart keeps the stale
	// routes for n3's restart time 3s; 20s leaves room for a loaded machine.
	var gone time.Duration
	waitUntil(t, 20*time.Second, "n1 and n2 to withdraw n3's routes", func() bool {
		for _, n := range s.st.Nodes[:2] {
			if len(s.learnedVia(t, n.Name, dead.IPv4))+len(s.learnedVia(t, n.Name, dead.IPv6)) > 0 {
				return false
			}
		}
		gone = time.Since(failed)
		return true
	})
	t.Logf("n3's routes withdrawn by n1 and n2 %s after the failure (hold time 3s + restart time 3s)", gone.Round(10*time.Millisecond))
	// n1 and n2 still reach each other; n3's workloads are unreachable.
	s.env(t).must("lab", "--name", s.name, "probe", "--no-wait", "x/a", "x/b", "--proto", "tcp", "--port", "80")
	s.env(t).must("lab", "--name", s.name, "probe", "--no-wait", "x/a", "x/b", "--proto", "tcp", "--port", "80", "--family", "6")
	if out, code := s.env(t).run("lab", "--name", s.name, "probe", "--no-wait", "x/a", "x/c", "--proto", "tcp", "--port", "80"); code != 1 {
		t.Errorf("x/a reaches x/c on the failed node: %s", out)
	}
	// WaitConverged names the failed node.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := lab.WaitConverged(ctx, s.st); err == nil || !strings.Contains(err.Error(), "lagging: n3 (") {
		t.Errorf("WaitConverged with n3 dead: %v", err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// env is the suite's labEnv reporting to t (a subtest must not fail its
// parent).
func (s *e2eSuite) env(t *testing.T) *labEnv {
	e := *s.e
	e.t = t
	return &e
}
