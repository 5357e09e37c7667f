package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memory"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// testHost is a host namespace with workloads plumbed as the CNI plugin
// does it, and an agent programming the host namespace.
type testHost struct {
	t *testing.T
	// Set before start to change the agent's config or its store.
	health string
	store  datastore.Store
	host   *netns.NS
	client *datastore.Client
	status *StatusClient
	cancel context.CancelFunc
	done   chan error
}

func newTestHost(t *testing.T) *testHost {
	testkit.RequireRoot(t)
	h := &testHost{t: t, host: testkit.NetNS(t), client: datastore.NewClient(memory.New())}
	return h
}

func (h *testHost) ip(args ...string) {
	h.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addWorkload creates a workload namespace wired to the host as the CNI
// plugin does (testkit.NewWorkload) and returns it with the host-side
// interface name.
func (h *testHost) addWorkload(name, addr4, addr6 string) (*netns.NS, string) {
	h.t.Helper()
	k, err := nl.Open(h.host.Path())
	if err != nil {
		h.t.Fatal(err)
	}
	defer k.Close()
	w := testkit.NewWorkload(h.t, k, links.InterfaceName("tabby", "default/"+name), netip.MustParseAddr(addr4), netip.MustParseAddr(addr6))
	return w.NS, w.HostIface
}

func (h *testHost) apply(manifest string) {
	h.t.Helper()
	objs, err := v1.DecodeManifests("test.yaml", []byte(manifest))
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.client.Apply(context.Background(), objs, datastore.ApplyOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testHost) start() {
	h.t.Helper()
	socket := filepath.Join(h.t.TempDir(), "agent.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	store := h.store
	if store == nil {
		store = h.client.Store()
	}
	a, err := New(Config{NodeName: "node-1", NetNSPath: h.host.Path(), StatusSocket: socket, DisableBGP: true,
		HealthAddr: h.health, ProbeInterval: 50 * time.Millisecond}, store, log)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done, h.status = cancel, make(chan error, 1), NewStatusClient(socket)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *testHost) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("agent: %v", err)
	}
	h.cancel = nil
}

// waitProgrammed waits until the agent reports the endpoint programmed at
// least at the revision of its current datastore object.
func (h *testHost) waitProgrammed(name string) {
	h.t.Helper()
	info, _ := v1.LookupKind("WorkloadEndpoint")
	deadline := time.Now().Add(10 * time.Second)
	var last EndpointStatus
	for time.Now().Before(deadline) {
		obj, err := h.client.Get(context.Background(), info, "default", name)
		if err != nil {
			h.t.Fatal(err)
		}
		st, known, err := h.status.Endpoint(context.Background(), "default", name)
		if err == nil && known && st.Programmed && fmt.Sprint(st.Revision) == obj.GetObjectMeta().ResourceVersion {
			return
		}
		last = st
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("endpoint %s not programmed after 10s: %+v", name, last)
}

func ping(t *testing.T, from *netns.NS, to string) bool {
	t.Helper()
	args := []string{"netns", "exec", filepath.Base(from.Path()), "ping", "-c1", "-W1"}
	if strings.Contains(to, ":") {
		args = append(args, "-6")
	}
	return exec.Command("ip", append(args, to)...).Run() == nil
}

func wep(name, iface, addr4, addr6, labels string) string {
	return fmt.Sprintf(`apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: %s, namespace: default, labels: {%s}}
spec:
  node: node-1
  orchestrator: tabby
  interfaceName: %s
  ipNetworks: [%s/32, %s/128]
  profiles: [open]
`, name, labels, iface, addr4, addr6)
}

const openProfile = `apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
`

func TestAgentProgramsWorkloadsAndPolicy(t *testing.T) {
	h := newTestHost(t)
	wa, ifa := h.addWorkload("a", "10.65.0.1", "fd00:65::1")
	wb, ifb := h.addWorkload("b", "10.65.0.2", "fd00:65::2")
	if ping(t, wa, "10.65.0.2") {
		t.Fatal("ping works before the agent programmed anything")
	}
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.65.0.1", "fd00:65::1", "app: a") + "---\n" + wep("b", ifb, "10.65.0.2", "fd00:65::2", "app: b"))
	h.start()
	h.waitProgrammed("a")
	h.waitProgrammed("b")
	for _, dst := range []string{"10.65.0.2", "fd00:65::2"} {
		ok := false
		for i := 0; i < 5 && !ok; i++ {
			ok = ping(t, wa, dst)
		}
		if !ok {
			t.Errorf("a cannot ping %s with an allow-all profile", dst)
		}
	}

	// A policy selecting b with no ingress rule that allows ICMP denies it.
	h.apply(`apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: b-only-tcp, namespace: default}
spec:
  selector: app == "b"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
`)
	waitFor(t, "ping a→b to be denied", func() bool { return !ping(t, wa, "10.65.0.2") && !ping(t, wa, "fd00:65::2") })
	if !ping(t, wb, "10.65.0.1") {
		t.Error("b cannot ping a, although no policy selects a")
	}

	// Routes: one /32 and one /128 per workload, with Tabby's protocol.
	k, err := nl.Open(h.host.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	rts, err := k.RouteList(nl.RouteFilter{Family: nl.FamilyAll, Protocol: 80})
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]bool{}
	for _, r := range rts {
		got[r.Dst] = true
	}
	for _, p := range []string{"10.65.0.1/32", "10.65.0.2/32", "fd00:65::1/128", "fd00:65::2/128"} {
		if !got[netip.MustParsePrefix(p)] {
			t.Errorf("route %s missing; have %v", p, got)
		}
	}

	// Deleting a workload endpoint removes its routes.
	info, _ := v1.LookupKind("WorkloadEndpoint")
	if _, err := h.client.Delete(context.Background(), info, "default", "b", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's routes to go", func() bool {
		rts, err := k.RouteList(nl.RouteFilter{Family: nl.FamilyAll, Protocol: 80})
		if err != nil {
			return false
		}
		for _, r := range rts {
			if r.Dst == netip.MustParsePrefix("10.65.0.2/32") {
				return false
			}
		}
		return true
	})
}

func TestAgentRestartKeepsState(t *testing.T) {
	h := newTestHost(t)
	wa, ifa := h.addWorkload("a", "10.66.0.1", "fd00:66::1")
	_, ifb := h.addWorkload("b", "10.66.0.2", "fd00:66::2")
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.66.0.1", "fd00:66::1", "app: a") + "---\n" + wep("b", ifb, "10.66.0.2", "fd00:66::2", "app: b"))
	h.start()
	h.waitProgrammed("a")
	h.waitProgrammed("b")
	h.stop()
	// With the agent gone the kernel keeps what it programmed.
	if !ping(t, wa, "10.66.0.2") {
		t.Fatal("traffic stopped when the agent stopped")
	}
	h.start()
	h.waitProgrammed("a")
	if !ping(t, wa, "10.66.0.2") {
		t.Fatal("traffic does not flow after the agent restarted")
	}
}

func TestAgentRepairsDrift(t *testing.T) {
	h := newTestHost(t)
	_, ifa := h.addWorkload("a", "10.67.0.1", "fd00:67::1")
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.67.0.1", "fd00:67::1", "app: a") + `---
apiVersion: tabby.dev/v1
kind: Configuration
metadata: {name: default}
spec: {routeRefreshInterval: 1s, nftablesRefreshInterval: 1s}
`)
	h.start()
	h.waitProgrammed("a")
	h.ip("-n", filepath.Base(h.host.Path()), "route", "del", "10.67.0.1/32")
	waitFor(t, "the deleted route to come back", func() bool {
		out, _ := exec.Command("ip", "-n", filepath.Base(h.host.Path()), "route", "show", "10.67.0.1/32").Output()
		return strings.Contains(string(out), "10.67.0.1")
	})
	h.ip("-n", filepath.Base(h.host.Path()), "route", "add", "10.99.0.1/32", "dev", ifa, "proto", "80")
	waitFor(t, "a stray Tabby route to be deleted", func() bool {
		out, _ := exec.Command("ip", "-n", filepath.Base(h.host.Path()), "route", "show", "10.99.0.1/32").Output()
		return !strings.Contains(string(out), "10.99.0.1")
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// downStore fails every Get while down is set, as an unreachable datastore
// does (the agent's readiness probe uses Get).
type downStore struct {
	datastore.Store
	down atomic.Bool
}

func (s *downStore) Get(ctx context.Context, k datastore.Key) (datastore.KV, error) {
	if s.down.Load() {
		return datastore.KV{}, errors.New("connection refused")
	}
	return s.Store.Get(ctx, k)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAgentHealthMetricsAndDatastoreDown(t *testing.T) {
	h := newTestHost(t)
	wa, ifa := h.addWorkload("a", "10.68.0.1", "fd00:68::1")
	_, ifb := h.addWorkload("b", "10.68.0.2", "fd00:68::2")
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.68.0.1", "fd00:68::1", "app: a") + "---\n" + wep("b", ifb, "10.68.0.2", "fd00:68::2", "app: b"))
	ds := &downStore{Store: h.client.Store()}
	h.store, h.health = ds, freePort(t)
	h.start()
	h.waitProgrammed("a")
	h.waitProgrammed("b")
	base := "http://" + h.health
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	waitFor(t, "/readyz to be 200", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusOK })
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{"tabby_agent_apply_duration_seconds_count", "tabby_agent_local_endpoints 2", "tabby_agent_set_members", "tabby_agent_datastore_errors_total 0", `tabby_agent_resync_repairs_total{dataplane="nftables"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The datastore goes away: not ready, but the kernel keeps its state.
	ds.down.Store(true)
	waitFor(t, "/readyz to fail", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusServiceUnavailable })
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Error("/healthz fails while only the datastore is down")
	}
	if !ping(t, wa, "10.68.0.2") {
		t.Error("traffic stopped while the datastore was down")
	}
	_, metrics = httpGet(t, base+"/metrics")
	if strings.Contains(metrics, "tabby_agent_datastore_errors_total 0\n") {
		t.Error("datastore errors are not counted")
	}
	ds.down.Store(false)
	waitFor(t, "/readyz to recover", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusOK })
}
