package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ p, want float64 }{{0, 1}, {50, 3}, {100, 5}, {25, 2}, {99, 4.96}} {
		if got := Percentile(v, tc.p); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Median([]float64{1, 2, 3, 10}); got != 2.5 {
		t.Errorf("Median even = %v, want 2.5", got)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	if v[0] != 5 {
		t.Error("Percentile sorted its input")
	}
}

func TestNewResultGoal(t *testing.T) {
	r := NewResult("rate", "/s", []float64{150, 250, 210}, ">= 200")
	if r.Median != 210 || r.Min != 150 || r.Max != 250 || r.Met == nil || !*r.Met || r.Goal != ">= 200 /s" {
		t.Fatalf("result %+v", r)
	}
	r = NewResult("p99", "ms", []float64{300}, "<= 250")
	if r.Met == nil || *r.Met {
		t.Fatalf("300 ms met <= 250: %+v", r)
	}
	if r := NewResult("x", "ms", []float64{1}, ""); r.Met != nil || r.Goal != "" {
		t.Fatalf("no goal: %+v", r)
	}
}

func TestRunUnknown(t *testing.T) {
	if _, err := Run(t.Context(), "nope", Options{}); err == nil || !strings.Contains(err.Error(), `unknown suite "nope"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	r := &Report{Suite: "s", Runs: 2}
	r.Add(NewResult("one", "ms", []float64{1.234, 2}, "<= 5"))
	r.Notes = append(r.Notes, "hello")
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RESULT", "one", "1.62", "<= 5 ms (met)", "note: hello"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
