package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry        *prometheus.Registry
	applyDuration   prometheus.Histogram
	applyErrors     prometheus.Counter
	endpoints       prometheus.Gauge
	policies        prometheus.Gauge
	setMembers      prometheus.Gauge
	resyncRepairs   *prometheus.CounterVec
	datastoreErrors prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tabby_agent_apply_duration_seconds",
			Help:    "Time to apply a batch of changes to the dataplane.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_agent_apply_errors_total",
			Help: "Dataplane applies that failed.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_agent_local_endpoints",
			Help: "Workload and host endpoints programmed on this node.",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_agent_policies",
			Help: "Policies and profiles that apply to local endpoints.",
		}),
		setMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_agent_set_members",
			Help: "Members of all IP and named-port sets.",
		}),
		resyncRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_agent_resync_repairs_total",
			Help: "Differences between the kernel and the desired state that a periodic resync repaired.",
		}, []string{"dataplane"}),
		datastoreErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_agent_datastore_errors_total",
			Help: "Errors reading or watching the datastore.",
		}),
	}
	for _, dp := range []string{"nftables", "routes", "links"} {
		m.resyncRepairs.WithLabelValues(dp) // exported as 0 from the start
	}
	m.registry.MustRegister(m.applyDuration, m.applyErrors, m.endpoints, m.policies, m.setMembers, m.resyncRepairs, m.datastoreErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
