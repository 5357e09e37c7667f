package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// labEnv runs a freshly built tabby binary with a config file of its own.
type labEnv struct {
	t      *testing.T
	bin    string
	config string
}

var labCounter atomic.Int32

func newLabEnv(t *testing.T) *labEnv {
	t.Helper()
	testkit.RequireRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tabby")
	start := time.Now()
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built tabby in %s", time.Since(start).Round(time.Millisecond))
	return &labEnv{t: t, bin: bin, config: filepath.Join(dir, "config.yaml")}
}

// uniqueLabName is short and unique per test process and call.
func uniqueLabName() string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), labCounter.Add(1))
}

// run runs tabby and returns its output and exit status.
func (e *labEnv) run(args ...string) (string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), "TABBY_CONFIG="+e.config)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		e.t.Fatalf("tabby %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// must runs tabby and fails the test unless it succeeds.
func (e *labEnv) must(args ...string) string {
	e.t.Helper()
	start := time.Now()
	out, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("tabby %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	e.t.Logf("tabby %s (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return out
}

// up starts a lab and registers its removal.
func (e *labEnv) up(name string, args ...string) *lab.State {
	e.t.Helper()
	e.t.Cleanup(func() {
		if _, err := os.Stat(lab.Dir(name)); err == nil {
			if out, code := e.run("lab", "down", "--name", name); code != 0 {
				e.t.Errorf("lab down --name %s: %s", name, out)
			}
		}
	})
	e.t.Log(e.must(append([]string{"lab", "up", "--name", name}, args...)...))
	st, err := lab.Load(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// downAndCheck takes the lab down and checks that none of its
// namespaces, processes or files is left.
func (e *labEnv) downAndCheck(name string) {
	e.t.Helper()
	st, err := lab.Load(name)
	if err != nil {
		e.t.Fatal(err)
	}
	procs, namespaces := st.Procs(), st.Namespaces()
	e.must("lab", "down", "--name", name)
	for _, ns := range namespaces {
		if _, err := os.Stat(netns.NamedPath(ns)); !errors.Is(err, fs.ErrNotExist) {
			e.t.Errorf("namespace %s left behind (%v)", ns, err)
		}
	}
	for _, p := range procs {
		if p.Alive() {
			e.t.Errorf("process %d (%s) left running", p.PID, strings.Join(p.Args, " "))
		}
	}
	if _, err := os.Stat(lab.Dir(name)); !errors.Is(err, fs.ErrNotExist) {
		e.t.Errorf("state directory %s left behind (%v)", lab.Dir(name), err)
	}
	entries, _ := os.ReadDir(netns.RunDir)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), lab.NSPrefix+name+"-") {
			e.t.Errorf("namespace %s left behind", en.Name())
		}
	}
	if cfg, err := os.ReadFile(e.config); err == nil && strings.Contains(string(cfg), "lab-"+name) {
		e.t.Errorf("context lab-%s left in the config file:\n%s", name, cfg)
	}
}

// waitProbe probes until the verdict is want (allowed: exit 0).
// apply writes manifests to a file and applies them to the lab's
// datastore with tabby apply; it returns the file.
func (e *labEnv) apply(name, manifests string) string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(path, []byte(manifests), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.must("--context", "lab-"+name, "apply", "-f", path)
	return path
}

func (e *labEnv) waitProbe(want bool, args ...string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := e.run(append([]string{"lab", "probe"}, args...)...)
		if (code == 0) == want {
			return
		}
		if code != 0 && code != 1 {
			e.t.Fatalf("lab probe %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("lab probe %s: want allowed=%v, still: %s", strings.Join(args, " "), want, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const labDenyPolicy = `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-to-server, namespace: default}
spec:
  selector: app == 'server'
  types: [Ingress]
`

func TestLabEndToEnd(t *testing.T) {
	e := newLabEnv(t)
	name := uniqueLabName()
	st := e.up(name, "--nodes", "2", "--ipv6")
	if len(st.Nodes) != 2 || st.ClientURL == "" {
		t.Fatalf("state: %+v", st)
	}

	// A second lab side by side, with the same fabric addresses space but
	// its own namespaces, datastore and context.
	other := uniqueLabName()
	e.up(other, "--nodes", "1")
	ls := e.must("lab", "ls")
	for _, n := range []string{name, other} {
		if !strings.Contains(ls, n+" ") {
			t.Errorf("lab ls does not list %s:\n%s", n, ls)
		}
	}
	e.downAndCheck(other)

	// The CLI reaches the lab through the context lab up wrote.
	e.must("--context", "lab-"+name, "get", "nodes")

	// tabby node status shows n1's mesh session to n2, established.
	status := e.must("node", "status", "n1", "--status-socket", st.Nodes[0].Socket)
	if !strings.Contains(status, "ready=true") || !strings.Contains(status, "mesh") || !strings.Contains(status, "Established") {
		t.Errorf("tabby node status n1:\n%s", status)
	}

	e.must("lab", "--name", name, "run", "client", "--node", "n1", "--labels", "app=client", "--serve", "tcp:80")
	e.must("lab", "--name", name, "run", "server", "--node", "n2", "--labels", "app=server", "--serve", "tcp:80,udp:53")

	// The route to the other node's block is BGP-learned (protocol 80,
	// via the other node's fabric address).
	for _, fam := range []string{"-4", "-6"} {
		routes := e.must("lab", "--name", name, "exec", "n1", "--", "ip", fam, "route", "show", "proto", "80")
		if !strings.Contains(routes, "via ") {
			t.Errorf("n1 has no learned %s routes:\n%s", fam, routes)
		}
	}

	for _, fam := range []string{"4", "6"} {
		e.waitProbe(true, "--name", name, "client", "server", "--proto", "tcp", "--port", "80", "--family", fam)
		e.waitProbe(true, "--name", name, "client", "server", "--proto", "udp", "--port", "53", "--family", fam)
		e.waitProbe(true, "--name", name, "client", "server", "--proto", "icmp", "--family", fam)
	}

	e.apply(name, labDenyPolicy)
	for _, fam := range []string{"4", "6"} {
		e.waitProbe(false, "--name", name, "client", "server", "--proto", "tcp", "--port", "80", "--family", fam)
		e.waitProbe(true, "--name", name, "server", "client", "--proto", "tcp", "--port", "80", "--family", fam)
	}

	expect := filepath.Join(t.TempDir(), "expect.txt")
	if err := os.WriteFile(expect, []byte("# after the deny policy\nclient server deny\nserver client allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := e.must("lab", "--name", name, "matrix", "--proto", "tcp", "--port", "80", "--expect", expect)
	t.Log(out)

	// The workloads were attached by the CNI plugin: endpoints named by
	// the plugin, orchestrator cni, the network's profile lab-open.
	weps := e.must("--context", "lab-"+name, "get", "workloadendpoints", "-A", "-o", "yaml")
	for _, want := range []string{"name: n1-cni-client-eth0", "name: n2-cni-server-eth0", "orchestrator: cni", "- lab-open", "cni.tabby.dev/network: lab-open"} {
		if !strings.Contains(weps, want) {
			t.Errorf("WorkloadEndpoints lack %q:\n%s", want, weps)
		}
	}
	if cniLog := mustRead(t, filepath.Join(lab.Dir(name), "logs", "cni.log")); strings.Count(cniLog, "ADD done") != 2 {
		t.Errorf("cni.log:\n%s", cniLog)
	}

	// Another namespace (passed to the plugin as a pod's, profile
	// kns.prod) and a wanted address (reserved for the plugin's handle).
	out = e.must("lab", "--name", name, "run", "extra", "--node", "n2", "--namespace", "prod", "--ip", "10.65.200.7", "--serve", "tcp:80")
	if !strings.Contains(out, "10.65.200.7") || !strings.Contains(out, "endpoint prod/n2-k8s-extra-eth0") {
		t.Errorf("lab run extra: %s", out)
	}
	for _, fam := range []string{"4", "6"} {
		e.waitProbe(true, "--name", name, "client", "prod/extra", "--proto", "tcp", "--port", "80", "--family", fam)
	}

	var js lab.State
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(lab.Dir(name), "state.json"))), &js); err != nil || len(js.Workloads) != 3 {
		t.Fatalf("state.json: %v %+v", err, js.Workloads)
	}

	// lab rm: an unknown name removes nothing; a known one goes through
	// DEL (endpoint and addresses gone) and loses its namespace.
	if out, code := e.run("lab", "--name", name, "rm", "prod/extra", "nope"); code == 0 || !strings.Contains(out, `no workload "nope"`) {
		t.Errorf("lab rm with an unknown workload: %d %s", code, out)
	}
	extra, _ := js.Workload("prod/extra")
	if _, err := os.Stat(netns.NamedPath(extra.NetNS)); err != nil {
		t.Fatalf("lab rm with an unknown workload removed prod/extra: %v", err)
	}
	e.must("lab", "--name", name, "rm", "prod/extra")
	if _, err := os.Stat(netns.NamedPath(extra.NetNS)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("namespace %s after lab rm: %v", extra.NetNS, err)
	}
	if out := e.must("--context", "lab-"+name, "get", "workloadendpoints", "-n", "prod", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("endpoints of prod after lab rm: %q", out)
	}
	if cniLog := mustRead(t, filepath.Join(lab.Dir(name), "logs", "cni.log")); strings.Count(cniLog, "DEL done") != 1 {
		t.Errorf("lab rm did not DEL prod/extra; cni.log:\n%s", cniLog)
	}
	e.must("--context", "lab-"+name, "ipam", "check")
	e.must("lab", "--name", name, "run", "extra", "--node", "n2", "--namespace", "prod", "--serve", "tcp:80")
	// Down detaches every workload through the plugin (DEL) first.
	logPath := filepath.Join(t.TempDir(), "cni.log")
	stop := make(chan struct{})
	copied := make(chan struct{})
	go func() { // keep a copy of the log, which Down removes with the lab
		defer close(copied)
		src := filepath.Join(lab.Dir(name), "logs", "cni.log")
		for {
			if b, err := os.ReadFile(src); err == nil {
				_ = os.WriteFile(logPath, b, 0o644)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	e.downAndCheck(name)
	close(stop)
	<-copied
	if b, _ := os.ReadFile(logPath); strings.Count(string(b), "DEL done") != 4 {
		t.Errorf("lab rm and lab down did not DEL 1 + 3 workloads; cni.log:\n%s", b)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
