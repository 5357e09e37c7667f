package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// The plugin binaries are built once per test process into binDir: tabby,
// tabby-ipam (a symlink to it) and links to the reference plugins that are
// installed (portmap, host-local).
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pluginDir builds the plugins (once) and returns the CNI_PATH directory.
func pluginDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tabby-cni-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "tabby"), "github.com/tabbynet/tabby/cmd/tabby").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildErr = os.Symlink("tabby", filepath.Join(dir, IPAMPluginType))
		for _, p := range []string{"portmap", "host-local"} {
			if path := goTool(p); path != "" {
				_ = os.Symlink(path, filepath.Join(dir, p))
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building the plugin: %v", buildErr)
	}
	return binDir
}

var gobin = sync.OnceValue(func() string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(string(out), "\n") // GOBIN's line may be empty
	if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
		return strings.TrimSpace(lines[0])
	}
	if len(lines) > 1 {
		return filepath.Join(strings.TrimSpace(lines[1]), "bin")
	}
	return ""
})

// goTool returns the path of a `go install`ed tool, or "".
func goTool(name string) string {
	p := filepath.Join(gobin(), name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// requireTool returns a tool's path; a missing tool skips the test, or
// fails it with TABBY_E2E=1 (scripts/install-test-deps.sh installs them).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p := goTool(name)
	if p != "" {
		return p
	}
	why := fmt.Sprintf("needs %s in %s (run scripts/install-test-deps.sh)", name, gobin())
	if os.Getenv(testkit.EnvE2E) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", why, testkit.EnvE2E)
	}
	t.Skip(why)
	return ""
}

// testHost is one node: a host network namespace programmed by an
// in-process agent, an embedded etcd, IP pools, an allow-all profile for
// the network, and a CNI configuration directory.
type testHost struct {
	t        testing.TB
	ns       *netns.NS
	node     string
	network  string
	socket   string
	logFile  string
	confDir  string
	cacheDir string
	etcd     etcd.ClientConfig
	etcdURL  string // the datastore as the plugin reaches it from the host namespace
	client   *datastore.Client
	stop     func()
}

type hostOptions struct {
	noAgent    bool
	policyWait string // policy_timeout; default 10s
}

func newTestHost(t testing.TB, opts hostOptions) *testHost {
	t.Helper()
	testkit.RequireRoot(t)
	pluginDir(t)
	_, cfg := etcdtest.StartTestServer(t)
	store := etcdtest.NewStore(t, cfg)
	h := &testHost{
		t: t, node: "node-1", network: testkit.UniqueName(), etcd: cfg, client: datastore.NewClient(store),
		confDir: t.TempDir(), cacheDir: t.TempDir(),
	}
	run := t.TempDir()
	h.socket, h.logFile = filepath.Join(run, "agent.sock"), filepath.Join(run, "cni.log")
	if p := os.Getenv("TABBY_TEST_CNI_LOG"); p != "" {
		h.logFile = p // kept after the test, for reading timings
	}
	h.ns = testkit.NetNS(t)
	h.ip("link", "set", "lo", "up")
	h.relayEtcd()
	h.apply(fmt.Sprintf(`apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: pool4}
spec: {cidr: 10.70.0.0/16}
---
apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: pool6}
spec: {cidr: "fd00:70::/48"}
---
apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: %s}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
`, h.network))
	if !opts.noAgent {
		h.startAgent()
	}
	h.writeConflist(h.network+".conflist", h.conflist("1.1.0", opts.policyWait, nil))
	// cnitool keeps its cache in /var/lib/cni; remove this network's.
	t.Cleanup(func() {
		for _, dir := range []string{"/var/lib/cni/results", "/var/lib/cni/networks/" + h.network} {
			matches, _ := filepath.Glob(filepath.Join(dir, h.network+"-*"))
			for _, m := range matches {
				os.Remove(m)
			}
		}
		os.RemoveAll("/var/lib/cni/networks/" + h.network)
		// And the directories cnitool made, if nothing else is in them.
		for _, dir := range []string{"/var/lib/cni/results", "/var/lib/cni/networks", "/var/lib/cni"} {
			_ = os.Remove(dir)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(h.logFile); err == nil {
				t.Logf("plugin log:\n%s", lastLines(string(b), 60))
			}
		}
	})
	return h
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// relayEtcd lets plugins in the host namespace reach the test's etcd, which
// listens on the loopback of the test's own namespace: a listener on the
// host namespace's loopback whose connections are relayed to etcd.
func (h *testHost) relayEtcd() {
	var ln net.Listener
	err := h.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0") // the socket stays in the host namespace
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	target := strings.TrimPrefix(h.etcd.Endpoints[0], "http://")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	h.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { _, _ = io.Copy(c, up); c.(*net.TCPConn).CloseWrite() })
		}
	})
	h.etcdURL = "http://" + ln.Addr().String()
}

func (h *testHost) startAgent() {
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() && os.Getenv("TABBY_TEST_AGENT_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := agent.New(agent.Config{NodeName: h.node, NetNSPath: h.ns.Path(), StatusSocket: h.socket, DisableBGP: true}, h.client.Store(), log)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("agent: %v", err)
		}
	}
	h.t.Cleanup(h.stop)
	// Wait until the agent is ready, so that tests measure the plugin.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := agent.NewStatusClient(h.socket).Status(context.Background())
		if err == nil && st.Ready {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("agent not ready after 20s: %+v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *testHost) ip(args ...string) {
	h.t.Helper()
	full := append([]string{"-n", filepath.Base(h.ns.Path())}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		h.t.Fatalf("ip %s: %v\n%s", strings.Join(full, " "), err, out)
	}
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

// pluginConf is the tabby plugin's configuration in the test's conflists.
func (h *testHost) pluginConf(policyWait string) map[string]any {
	if policyWait == "" {
		policyWait = "10s"
	}
	return map[string]any{
		"type":           PluginType,
		"datastore":      map[string]any{"endpoints": []string{h.etcdURL}},
		"nodename":       h.node,
		"agent_socket":   h.socket,
		"log_file":       h.logFile,
		"log_level":      "debug",
		"policy_timeout": policyWait,
		"ipam":           map[string]any{"type": IPAMPluginType, "assign_ipv4": true, "assign_ipv6": true},
		"args":           map[string]any{"cni": map[string]any{"labels": []map[string]string{{"key": "app", "value": "test"}}}},
	}
}

// conflist returns a network configuration list with the tabby plugin
// (changed by edit, if not nil) and the chained plugins.
func (h *testHost) conflist(version, policyWait string, edit func(map[string]any), chained ...map[string]any) []byte {
	pc := h.pluginConf(policyWait)
	if edit != nil {
		edit(pc)
	}
	plugins := append([]any{pc}, anySlice(chained)...)
	b, err := json.MarshalIndent(map[string]any{"cniVersion": version, "name": h.network, "plugins": plugins}, "", "  ")
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func anySlice[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (h *testHost) writeConflist(name string, b []byte) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.confDir, name), b, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// list parses a conflist.
func (h *testHost) list(b []byte) *libcni.NetworkConfigList {
	h.t.Helper()
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// cniConfig is libcni over the test's plugins with a private cache.
func (h *testHost) cniConfig() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{pluginDir(h.t)}, h.cacheDir, nil)
}

// inHost runs fn on a thread in the host namespace: plugins that libcni
// starts from there run in it, as a runtime's do on a real host.
func (h *testHost) inHost(fn func() error) error {
	return h.ns.Do(fn)
}

func (h *testHost) runtimeConf(wl *netns.NS, id string, args ...[2]string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: wl.Path(), IfName: "eth0", Args: args}
}

// add runs ADD of the list through libcni and returns the result as the
// current version.
func (h *testHost) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*types100.Result, error) {
	var r types.Result
	err := h.inHost(func() (err error) {
		r, err = h.cniConfig().AddNetworkList(context.Background(), l, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(r)
}

func (h *testHost) del(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return h.inHost(func() error { return h.cniConfig().DelNetworkList(context.Background(), l, rt) })
}

func (h *testHost) check(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return h.inHost(func() error { return h.cniConfig().CheckNetworkList(context.Background(), l, rt) })
}

// cnitool runs the real cnitool in the host namespace, as
// `ip netns exec HOST cnitool ARGS...`, with the test's directories.
func (h *testHost) cnitool(env []string, args ...string) (string, error) {
	tool := requireTool(h.t, "cnitool")
	cmd := exec.Command("ip", append([]string{"netns", "exec", filepath.Base(h.ns.Path()), tool}, args...)...)
	cmd.Env = append(os.Environ(), "CNI_PATH="+pluginDir(h.t), "NETCONFPATH="+h.confDir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("cnitool %s: %w\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// endpoints lists every WorkloadEndpoint.
func (h *testHost) endpoints() []*v1.WorkloadEndpoint {
	h.t.Helper()
	objs, _, err := h.client.List(context.Background(), wepKind, "")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*v1.WorkloadEndpoint
	for _, o := range objs {
		out = append(out, o.(*v1.WorkloadEndpoint))
	}
	return out
}

// hostLinks lists the host namespace's interfaces whose name starts with
// the interface prefix.
func (h *testHost) hostLinks() []string {
	h.t.Helper()
	out, err := exec.Command("ip", "-n", filepath.Base(h.ns.Path()), "-o", "link", "show").CombinedOutput()
	if err != nil {
		h.t.Fatalf("ip link: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "tabby") {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// ping sends one ping from a namespace and reports whether it was
// answered within a second.
func ping(from *netns.NS, to string) bool {
	args := []string{"netns", "exec", filepath.Base(from.Path()), "ping", "-c1", "-W1", "-q"}
	if strings.Contains(to, ":") {
		args = append(args, "-6")
	}
	return exec.Command("ip", append(args, to)...).Run() == nil
}

// cniCode returns the CNI error code of err, or 0.
func cniCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// addrsOfResult returns a result's addresses as strings.
func addrsOfResult(r *types100.Result) []string {
	var out []string
	for _, a := range addrsOf(r.IPs) {
		out = append(out, a.String())
	}
	return out
}

func mustKind(kind string) v1.KindInfo {
	k, ok := v1.LookupKind(kind)
	if !ok {
		panic("unknown kind " + kind)
	}
	return k
}
