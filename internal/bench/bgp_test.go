package bench

import (
	"testing"
)

func TestBGPQuick(t *testing.T) {
	r := runQuick(t, "bgp")
	if r.Params["convergeRoutes"] != 100 || r.Params["samplesPerRun"] != 5 {
		t.Errorf("params %v", r.Params)
	}
	for _, kind := range []string{"created", "migrated"} {
		p50 := result(t, r, "3 nodes: "+kind+" → every node p50")
		p99 := result(t, r, "3 nodes: "+kind+" → every node p99")
		for _, res := range []Result{p50, p99} {
			if len(res.Values) != 1 || !(res.Median > 0) || res.Median > sampleTimeout.Seconds()*1000 {
				t.Errorf("%s: values %v, want one value in (0, %v ms]", res.Name, res.Values, sampleTimeout.Milliseconds())
			}
		}
		if p99.Median < p50.Median {
			t.Errorf("%s: p99 %v < p50 %v", kind, p99.Median, p50.Median)
		}
	}
	conv := result(t, r, "3 nodes: 100 routes converged")
	writing := result(t, r, "3 nodes: 100 routes converged (writing them)")
	if len(conv.Values) != 1 || !(conv.Median > 0) || !(writing.Median > 0) || writing.Median > conv.Median {
		t.Errorf("converged in %v s, written in %v s: want 0 < writing <= converged", conv.Values, writing.Values)
	}
}
