package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

func TestPolicyManifest(t *testing.T) {
	objs, err := v1.DecodeManifests("test", []byte(policyManifest(1000)))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1000 {
		t.Fatalf("%d objects, want 1000", len(objs))
	}
	orders := map[float64]bool{}
	for _, o := range objs {
		np, ok := o.(*v1.NetworkPolicy)
		if !ok {
			t.Fatalf("%T, want *v1.NetworkPolicy", o)
		}
		if np.Spec.Selector != `role == "iperf"` {
			t.Errorf("%s: selector %q", np.Metadata.Name, np.Spec.Selector)
		}
		if np.Spec.Order == nil || orders[*np.Spec.Order] {
			t.Fatalf("%s: order missing or not unique", np.Metadata.Name)
		}
		orders[*np.Spec.Order] = true
	}
	last := objs[len(objs)-1].(*v1.NetworkPolicy)
	for _, o := range objs[:len(objs)-1] {
		if *o.(*v1.NetworkPolicy).Spec.Order >= *last.Spec.Order {
			t.Fatalf("the allow policy %s is not last in order", last.Metadata.Name)
		}
	}
}

func TestCountPolicyChains(t *testing.T) {
	out := `table inet tabby {
	chain forward {
		type filter hook forward priority filter; policy accept;
	}
	chain pi-np/default/tbd-0001 {
	}
	chain po-np/default/tbd-0001 {
	}
	chain "pi-_abcdefghijklmnop" {
	}
	chain ri-lab-open {
	}
}`
	if in, eg := countPolicyChains(out); in != 2 || eg != 1 {
		t.Errorf("countPolicyChains = %d, %d; want 2, 1", in, eg)
	}
}

// TestDataplaneQuick runs the dataplane suite small: a lab of two nodes,
// the veth pair and the VXLAN overlay, iperf3 on every path, 1,000
// policies; it checks that every result is there and positive, and that
// nothing of the suite is left.
func TestDataplaneQuick(t *testing.T) {
	testkit.RequireRoot(t)
	testkit.RequireCommand(t, "iperf3", "iperf3")
	testkit.RequireCommand(t, "nft", "nftables")
	bin := filepath.Join(t.TempDir(), "tabby")
	start := time.Now()
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tabby").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built tabby in %s", time.Since(start).Round(time.Millisecond))

	prefix := fmt.Sprintf("tb%d", os.Getpid())
	labName := prefix + "-d"
	t.Cleanup(func() {
		if _, err := os.Stat(lab.Dir(labName)); err == nil {
			t.Errorf("lab %s left behind", labName)
			if err := lab.Down(labName, nil); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress, logs bytes.Buffer
	r, err := Run(ctx, "dataplane", Options{
		Quick: true, Binary: bin, LabPrefix: prefix, Progress: &progress,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Logf("log:\n%s", logs.String())
		t.Fatalf("dataplane: %v", err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())

	if r.Runs != 1 {
		t.Errorf("quick report has %d runs, want 1", r.Runs)
	}
	byName := map[string]Result{}
	for _, res := range r.Results {
		byName[res.Name] = res
	}
	var want []string
	for _, m := range []string{"TCP 1 stream", "TCP 4 streams", "UDP 64 B", "UDP 64 B loss"} {
		for _, p := range []string{"routed", "veth", "vxlan", "routed, 1000 policies"} {
			want = append(want, m+": "+p)
		}
	}
	for _, m := range []string{"TCP 1 stream", "TCP 4 streams", "UDP 64 B"} {
		want = append(want, m+": routed / veth", m+": routed / vxlan", m+": routed 1000 / 0 policies")
	}
	for _, name := range want {
		res, ok := byName[name]
		if !ok {
			t.Errorf("no result %q", name)
			continue
		}
		if len(res.Values) != 1 {
			t.Errorf("%s: %d values, want 1", name, len(res.Values))
		}
		for _, v := range res.Values {
			// Loss may be 0; everything else is a rate or a ratio of rates.
			if v < 0 || (v == 0 && !strings.Contains(name, " loss:")) || v != v {
				t.Errorf("%s: value %v", name, v)
			}
		}
	}
	if len(r.Results) != len(want) {
		t.Errorf("%d results, want %d", len(r.Results), len(want))
	}
	for _, name := range []string{"TCP 1 stream: routed / veth", "TCP 1 stream: routed / vxlan", "TCP 1 stream: routed 1000 / 0 policies"} {
		if byName[name].Goal == "" || byName[name].Met == nil {
			t.Errorf("%s: no goal", name)
		}
	}
	if mtu, ok := r.Params["overlayMTU"].(int); !ok || mtu != r.Params["mtu"].(int)-50 {
		t.Errorf("overlay MTU %v, workload MTU %v: want 50 bytes less", r.Params["overlayMTU"], r.Params["mtu"])
	}

	// Nothing of the suite remains: its lab, its namespaces, its iperf3
	// servers.
	if _, err := os.Stat(lab.Dir(labName)); err == nil {
		t.Errorf("lab %s still exists", labName)
	}
	entries, err := os.ReadDir(netns.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())) || strings.HasPrefix(e.Name(), lab.NSPrefix+labName+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	for _, pid := range childProcesses(t) {
		t.Errorf("child process %d left behind", pid)
	}
}

// childProcesses lists the live child processes of this test process.
func childProcesses(t *testing.T) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		s := string(b)
		rest := s[strings.LastIndexByte(s, ')')+1:]
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() && f[0] != "Z" {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, pid)
		}
	}
	return out
}
