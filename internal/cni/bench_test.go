package cni

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// BenchmarkAdd measures ADD through libcni and the built plugin, until
// the agent reports the endpoint's policy programmed (ADD returns then):
// one at a time (latency), and rounds of 50 at once (throughput, and the
// latency of each ADD in a round). Namespace creation and DEL are not
// timed. Goals: p99 under 250 ms, at least 100 ADDs/s on 2 cores.
func BenchmarkAdd(b *testing.B) {
	h := newTestHost(b, hostOptions{})
	l := h.list(h.conflist("1.1.0", "60s", func(pc map[string]any) { pc["log_level"] = "warn" }))
	id := 0
	// round ADDs n containers at once and returns each ADD's latency.
	// CPU time of the whole machine, and of the plugin processes, during
	// the timed phases.
	var busy, plugins time.Duration
	round := func(b *testing.B, n int) (lat []time.Duration, took time.Duration) {
		b.StopTimer()
		rts := make([]*libcni.RuntimeConf, n)
		nss := make([]*netns.NS, n)
		for i := range n {
			nss[i] = benchNS(b)
			id++
			rts[i] = h.runtimeConf(nss[i], fmt.Sprintf("bench-%d", id))
		}
		lat = make([]time.Duration, n)
		var wg sync.WaitGroup
		b.StartTimer()
		start, cpu0, child0 := time.Now(), machineBusy(b), childrenCPU(b)
		for i := range n {
			wg.Go(func() {
				start := time.Now()
				if _, err := h.add(l, rts[i]); err != nil {
					b.Errorf("ADD: %v", err)
				}
				lat[i] = time.Since(start)
			})
		}
		wg.Wait()
		took = time.Since(start)
		busy += machineBusy(b) - cpu0
		plugins += childrenCPU(b) - child0
		b.StopTimer()
		for i := range n {
			wg.Go(func() {
				if err := h.del(l, rts[i]); err != nil {
					b.Errorf("DEL: %v", err)
				}
				deleteBenchNS(b, nss[i])
			})
		}
		wg.Wait()
		b.StartTimer()
		return lat, took
	}
	b.Run("one", func(b *testing.B) {
		busy, plugins = 0, 0
		var lat []time.Duration
		for range b.N {
			l, _ := round(b, 1)
			lat = append(lat, l...)
		}
		reportLatency(b, lat)
		reportCPU(b, busy, plugins, len(lat))
	})
	b.Run("parallel-50", func(b *testing.B) {
		busy, plugins = 0, 0
		var lat []time.Duration
		var total time.Duration
		for range b.N {
			l, took := round(b, 50)
			total += took
			lat = append(lat, l...)
		}
		reportLatency(b, lat)
		b.ReportMetric(float64(len(lat))/total.Seconds(), "adds/s")
		reportCPU(b, busy, plugins, len(lat))
	})
}

func reportCPU(b *testing.B, busy, plugins time.Duration, adds int) {
	b.ReportMetric(float64(busy)/float64(time.Millisecond)/float64(adds), "cpu-ms/add")
	b.ReportMetric(float64(plugins)/float64(time.Millisecond)/float64(adds), "plugin-cpu-ms/add")
}

// childrenCPU returns the CPU time of the test's finished child processes:
// the plugins libcni ran.
func childrenCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy returns the CPU time all of the machine's CPUs have spent
// not idle since boot (/proc/stat), so that a benchmark can report what an
// ADD costs in all processes together: plugin, agent, etcd, libcni. Other
// load on the machine counts too.
func machineBusy(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// benchNS makes a workload namespace that deleteBenchNS removes at once
// (testkit.NetNS would keep every round's until the benchmark ends).
func benchNS(b *testing.B) *netns.NS {
	name := testkit.UniqueName()
	ns, err := netns.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deleteBenchNS(b, ns) })
	return ns
}

func deleteBenchNS(b *testing.B, ns *netns.NS) {
	path := ns.Path()
	if err := ns.Close(); err != nil {
		b.Error(err)
	}
	if err := netns.Delete(filepath.Base(path)); err != nil {
		b.Error(err)
	}
}
