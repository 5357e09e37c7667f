package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// TestRunBatch attaches workloads in a batch through the CNI plugin,
// checks they are recorded and reach each other, and removes some with
// RemoveBatch.
func TestRunBatch(t *testing.T) {
	testkit.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "tabby")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tabby").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	name := fmt.Sprintf("tb%d-batch", os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := Up(ctx, Config{Name: name, Nodes: 2, Binary: bin}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Down(name, func(err error) { t.Log(err) }); err != nil {
			t.Error(err)
		}
	})

	// Bad batches change nothing.
	for _, bad := range [][]WorkloadConfig{
		{{Name: "a", Node: "n1"}, {Name: "a", Node: "n2"}},
		{{Name: "a", Node: "n3"}},
		{{Name: "A", Node: "n1"}},
		{{Name: "a", Node: "n1", Serve: []string{"tcp:80"}}},
	} {
		if _, err := RunBatch(ctx, name, bad, BatchOptions{}); err == nil {
			t.Errorf("RunBatch(%+v) succeeded", bad)
		}
	}
	if st, err := Load(name); err != nil || len(st.Workloads) != 0 {
		t.Fatalf("after bad batches: %v, workloads %+v", err, st.Workloads)
	}

	var cfgs []WorkloadConfig
	for i := range 6 {
		cfgs = append(cfgs, WorkloadConfig{Name: fmt.Sprintf("w%d", i), Node: fmt.Sprintf("n%d", i%2+1), Labels: map[string]string{"i": fmt.Sprint(i)}})
	}
	added := make([]time.Time, len(cfgs))
	ws, err := RunBatch(ctx, name, cfgs, BatchOptions{Parallel: 3, Added: func(i int, w Workload, start time.Time, err error) {
		if err != nil || !w.IPv4.IsValid() {
			t.Errorf("ADD of %d: %v (%+v)", i, err, w)
		}
		added[i] = start
	}})
	if err != nil || len(ws) != len(cfgs) {
		t.Fatalf("RunBatch: %v, %d workloads", err, len(ws))
	}
	st, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, c := range cfgs {
		w, ok := st.Workload(c.Name)
		if !ok || w.Endpoint == "" || w.Interface == "" || !w.IPv4.IsValid() || w.Node != c.Node || w.Labels["i"] != fmt.Sprint(i) || seen[w.IPv4.String()] {
			t.Errorf("workload %s in the state: %+v", c.Name, w)
			continue
		}
		seen[w.IPv4.String()] = true
		if added[i].IsZero() {
			t.Errorf("no Added call for %s", c.Name)
		}
		if _, err := os.Stat(netns.NamedPath(w.NetNS)); err != nil {
			t.Error(err)
		}
	}
	// Across nodes, through the plugin's veths and BGP.
	if err := Probe(ctx, st, ProbeSpec{From: "w0", To: "w1", Proto: "icmp", Timeout: 5 * time.Second}); err != nil {
		t.Errorf("w0 → w1: %v", err)
	}
	if _, err := RunBatch(ctx, name, cfgs[:1], BatchOptions{}); err == nil {
		t.Error("a workload was created twice")
	}

	if err := RemoveBatch(ctx, name, []string{"w0", "default/w3"}, BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := RemoveBatch(ctx, name, []string{"nope"}, BatchOptions{}); err == nil {
		t.Error("RemoveBatch of an unknown workload succeeded")
	}
	st, err = Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workloads) != 4 {
		t.Errorf("%d workloads left, want 4", len(st.Workloads))
	}
	for _, gone := range []string{"w0", "w3"} {
		if _, ok := st.Workload(gone); ok {
			t.Errorf("%s still in the state", gone)
		}
		if _, err := os.Stat(netns.NamedPath(NSPrefix + name + "-w-" + gone)); err == nil {
			t.Errorf("namespace of %s still exists", gone)
		}
	}
	if err := Probe(ctx, st, ProbeSpec{From: "w1", To: "w2", Proto: "icmp", Timeout: 5 * time.Second}); err != nil {
		t.Errorf("w1 → w2 after removing others: %v", err)
	}
}
