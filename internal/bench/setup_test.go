package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testkit"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// tabbyBinary builds cmd/tabby once per test process, for the labs.
func tabbyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tabby-bench-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "tabby")
		start := time.Now()
		out, err := exec.Command("go", "build", "-o", builtBin, "../../cmd/tabby").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
		t.Logf("built tabby in %s", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestMain removes the binary tabbyBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// quickOptions runs a suite small, with labs named after this test
// process, and checks afterwards that none of them is left.
func quickOptions(t *testing.T) Options {
	t.Helper()
	testkit.RequireRoot(t)
	prefix := fmt.Sprintf("t%d", os.Getpid()%100000)
	t.Cleanup(func() {
		labs, err := lab.List()
		if err != nil {
			t.Error(err)
		}
		for _, l := range labs {
			if strings.HasPrefix(l.Name, prefix+"-") {
				t.Errorf("lab %s is left over", l.Name)
				if err := lab.Down(l.Name, nil); err != nil {
					t.Error(err)
				}
			}
		}
	})
	return Options{Quick: true, Binary: tabbyBinary(t), LabPrefix: prefix, Progress: testWriter{t}}
}

// runQuick runs the suite with quickOptions and logs its table.
func runQuick(t *testing.T, suite string) *Report {
	t.Helper()
	o := quickOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := Run(ctx, suite, o)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := r.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// result returns the report's result called name.
func result(t *testing.T, r *Report, name string) Result {
	t.Helper()
	for _, res := range r.Results {
		if res.Name == name {
			return res
		}
	}
	t.Fatalf("no result %q in %+v", name, r.Results)
	return Result{}
}

func TestSetupQuick(t *testing.T) {
	r := runQuick(t, "setup")
	if r.Params["workloads"] != 20 || r.Runs != 1 || !r.Quick {
		t.Errorf("params %v, runs %d, quick %v", r.Params, r.Runs, r.Quick)
	}
	for _, label := range []string{"1 node", "3 nodes"} {
		rate := result(t, r, label+": workloads/s")
		p50 := result(t, r, label+": time-to-ready p50")
		p99 := result(t, r, label+": time-to-ready p99")
		for _, res := range []Result{rate, p50, p99} {
			if len(res.Values) != 1 || !(res.Median > 0) {
				t.Errorf("%s: values %v, want one value > 0", res.Name, res.Values)
			}
		}
		if p99.Median < p50.Median {
			t.Errorf("%s: p99 %v < p50 %v", label, p99.Median, p50.Median)
		}
		// The last workload answered no earlier than the slowest
		// time-to-ready after the first ADD started, so 20 workloads in
		// that window is the highest possible rate.
		if limit := 20 / (p99.Median / 1000); rate.Median > limit*1.0001 {
			t.Errorf("%s: %v workloads/s, more than 20 in p99 %v ms", label, rate.Median, p99.Median)
		}
	}
	if rate := result(t, r, "1 node: workloads/s"); rate.Goal == "" || rate.Met == nil {
		t.Errorf("1 node: workloads/s has no goal: %+v", rate)
	}
}
