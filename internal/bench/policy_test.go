package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testkit"
)

// TestPolicyWorld checks the generated cluster: valid objects, a
// deterministic result, and a realistic fraction of policies that apply
// to the node, whose sets the endpoint changes reach.
func TestPolicyWorld(t *testing.T) {
	for _, quick := range []bool{true, false} {
		s := policyScaleFor(quick)
		w, err := newPolicyWorld(s, 9)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.policies) != s.Policies || len(w.locals) != s.Locals {
			t.Fatalf("quick=%v: %d policies, %d locals", quick, len(w.policies), len(w.locals))
		}
		frac := float64(w.active) / float64(s.Policies)
		if frac < 0.05 || frac > 0.6 {
			t.Errorf("quick=%v: %d of %d policies apply locally (%.0f%%)", quick, w.active, s.Policies, 100*frac)
		}
		t.Logf("quick=%v: %d of %d policies active, %d active NetworkPolicies", quick, w.active, s.Policies, len(w.activeNPs))
		w2, _ := newPolicyWorld(s, 9)
		if diff := cmp.Diff(w.remote(123), w2.remote(123)); diff != "" {
			t.Errorf("remote endpoint not deterministic: %s", diff)
		}
		if diff := cmp.Diff(w.policies[17], w2.policies[17]); diff != "" {
			t.Errorf("policy not deterministic: %s", diff)
		}
		for _, o := range w.base() {
			v1.SetDefaults(o)
			if err := v1.Validate(o); err != nil {
				t.Errorf("%s: %v", o.GetObjectMeta().Name, err)
			}
		}
		if err := v1.Validate(w.sentinel()); err != nil {
			t.Errorf("sentinel: %v", err)
		}
		seen := map[string]bool{}
		for i := range 2000 {
			for _, e := range []*v1.WorkloadEndpoint{w.remote(i), w.usedRemote(extraBase + i)} {
				if err := v1.Validate(e); err != nil {
					t.Fatalf("endpoint %d: %v", i, err)
				}
				if seen[e.Metadata.Name] {
					t.Fatalf("endpoint name %s twice", e.Metadata.Name)
				}
				seen[e.Metadata.Name] = true
			}
			if !w.inUsedSet(w.usedRemote(extraBase + i)) {
				t.Fatalf("usedRemote(%d) is in no used set", i)
			}
		}
		n := s.Changes
		if c := w.labelCandidates(n, s.Steps[0], 1000); len(c) < n {
			t.Errorf("quick=%v: %d label candidates, want %d", quick, len(c), n)
		}
	}
	if a, b := remoteAddr(0).String(), remoteAddr(extraBase).String(); a != "10.96.0.1" || b != "10.102.26.129" {
		t.Errorf("remoteAddr: %s %s", a, b)
	}
}

func TestReadProc(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS || s.CPU < 0 {
		t.Fatalf("%+v", s)
	}
}

// TestPolicySuite runs the policy suite small (Quick) on a real lab and
// checks that every result is there with a sane value. It asserts no
// timing goal.
func TestPolicySuite(t *testing.T) {
	testkit.RequireRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tabby")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tabby").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	prefix := fmt.Sprintf("t%d", os.Getpid()%100000)
	t.Cleanup(func() {
		// The suite takes its lab down itself; this is for a crash.
		if _, err := lab.Load(prefix + "-p"); err == nil {
			if err := lab.Down(prefix+"-p", nil); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
	})
	var progress bytes.Buffer
	start := time.Now()
	r, err := Run(t.Context(), "policy", Options{Quick: true, Runs: 2, Binary: bin, LabPrefix: prefix, Progress: &progress})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("policy suite after %s: %v", time.Since(start).Round(time.Second), err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if _, err := lab.Load(prefix + "-p"); err == nil {
		t.Error("the suite left its lab up")
	}

	got := map[string]Result{}
	for _, res := range r.Results {
		got[res.Name] = res
	}
	var want []string
	for _, n := range policyScaleFor(true).Steps {
		l := sizeLabel(n) + " endpoints: "
		want = append(want, l+"load+sync", l+"sync after last write", l+"agent CPU for load+sync",
			l+"agent RSS", l+"agent peak RSS", l+"change→nftables p50", l+"change→nftables p99", l+"agent CPU per change")
		for _, k := range changeKinds {
			want = append(want, l+k+"→nftables p50", l+k+"→nftables p99")
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d results, want %d", len(got), len(want))
	}
	for _, name := range want {
		res, ok := got[name]
		// Changes are measured in 2 rounds, the load once per step.
		values := 1
		if strings.Contains(name, "→nftables") || strings.Contains(name, "per change") {
			values = 2
		}
		switch {
		case !ok:
			t.Errorf("no result %q", name)
		case len(res.Values) != values || math.IsNaN(res.Median) || res.Median < 0:
			t.Errorf("%s: values %v", name, res.Values)
		case res.Median == 0 && !strings.Contains(name, "CPU"):
			// CPU is counted in 10 ms ticks and may round to 0 in a
			// quick run; nothing else may be 0.
			t.Errorf("%s = 0", name)
		}
		if p99, ok := strings.CutSuffix(name, " p99"); ok {
			if p50 := got[p99+" p50"]; res.Median < p50.Median {
				t.Errorf("%s = %v < p50 %v", name, res.Median, p50.Median)
			}
		}
	}
	last := sizeLabel(policyScaleFor(true).Steps[1]) + " endpoints: "
	if got[last+"agent RSS"].Goal == "" || got[last+"change→nftables p99"].Goal == "" {
		t.Error("the largest step's RSS and p99 have no goal")
	}
	if rss := got[last+"agent RSS"].Median; rss < 10 || rss > got[last+"agent peak RSS"].Median {
		t.Errorf("agent RSS %v MB, peak %v MB", rss, got[last+"agent peak RSS"].Median)
	}
	if len(r.Notes) == 0 || r.Runs != 2 {
		t.Errorf("notes %q, runs %d", r.Notes, r.Runs)
	}
}
