package bgp_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/bgp"
)

// BenchmarkAdvertiseToInstall measures the time from node A's agent
// advertising a new /32 to the route being in node B's kernel, over a
// two-node mesh. It reports the median and the 99th percentile; run it
// with -benchtime=50x for 50 samples.
func BenchmarkAdvertiseToInstall(b *testing.B) {
	l := newLab(b, 2)
	l.computePeers(meshConfig(true), nil)
	l.startAll()
	l.waitBlocks(converge)
	na, nb := l.nodes[0], l.nodes[1]
	adverts := slices.Clone(na.cfg.Advertised)
	lat := make([]time.Duration, 0, b.N)

	b.ResetTimer()
	for i := range b.N {
		p := netip.MustParsePrefix(fmt.Sprintf("10.70.%d.%d/32", i/250, i%250+1))
		adverts = append(adverts, bgp.Advertisement{Prefix: p})
		start := time.Now()
		na.proc.do(command{Op: "apply", Advertised: adverts})
		for {
			if _, ok := nb.gateways(p); ok {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("%s not installed on %s", p, nb.name)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkConverge10k measures how long 10,000 /32 routes advertised at
// once by one node take to be in the kernels of the two other nodes of a
// three-node mesh.
func BenchmarkConverge10k(b *testing.B) {
	const n = 10000
	l := newLab(b, 3)
	l.computePeers(meshConfig(true), nil)
	l.startAll()
	l.waitBlocks(converge)
	na := l.nodes[0]
	base := slices.Clone(na.cfg.Advertised)
	many := slices.Clone(base)
	for i := range n {
		many = append(many, bgp.Advertisement{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 80, byte(i >> 8), byte(i)}), 32)})
	}
	bench := netip.MustParsePrefix("10.80.0.0/16")
	count := func(node *labNode) int {
		c := 0
		for _, r := range node.kernelRoutes() {
			if bench.Contains(r.Dst.Addr()) {
				c++
			}
		}
		return c
	}
	wait := func(want int) {
		deadline := time.Now().Add(2 * time.Minute)
		for _, node := range l.nodes[1:] {
			for count(node) != want {
				if time.Now().After(deadline) {
					b.Fatalf("%s has %d routes, want %d", node.name, count(node), want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	var total time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		na.proc.do(command{Op: "apply", Advertised: many})
		wait(n)
		total += time.Since(start)

		b.StopTimer()
		na.proc.do(command{Op: "apply", Advertised: base})
		wait(0)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/converge")
	b.ReportMetric(0, "ns/op")
}
