package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tabbynet/tabby/internal/bgp/nodeaddr"
	"github.com/tabbynet/tabby/internal/ipam"
)

// Config is what the agent needs before it can read the datastore. Every
// other setting comes from the Configuration resources ("default" and
// "node.<name>"), see docs/agent.md.
type Config struct {
	// NodeName is the node this agent programs (WorkloadEndpoint and
	// HostEndpoint spec.node). Required.
	NodeName string
	// NetNSPath is the network namespace to program; "" is the agent's own
	// (the normal case: the agent runs in its host's namespace).
	NetNSPath string
	// HealthAddr serves /healthz, /readyz and /metrics over HTTP; "" turns
	// it off. `tabby agent` sets 127.0.0.1:9099 unless told otherwise.
	HealthAddr string
	// StatusSocket is the unix socket where the agent tells local clients
	// (the CNI plugin) whether an endpoint's policy is programmed. Default
	// /run/tabby/<node>/agent.sock.
	StatusSocket string
	// ProbeInterval is how often the agent checks that it can reach the
	// datastore (readiness). Default 5s.
	ProbeInterval time.Duration
	// ApplyDelay batches changes: the dataplane is applied at most once per
	// ApplyDelay while changes keep coming. Default 10ms.
	ApplyDelay time.Duration
	// DisableBGP turns the BGP speaker off (routes then come from
	// elsewhere, or the cluster is a single node).
	DisableBGP bool
	// IPv4Autodetection and IPv6Autodetection find the node's BGP
	// addresses when its Node resource has none: first-found,
	// interface=REGEX, can-reach=DEST, cidr=CIDR[,…] or none. Defaults:
	// first-found for IPv4, none for IPv6 (as Calico).
	IPv4Autodetection string
	IPv6Autodetection string
	// GCElection, if set, makes the agent run IPAM garbage collection
	// whenever it wins this election, so that exactly one collector runs
	// per cluster. `tabby agent` sets it from the etcd datastore.
	GCElection ipam.Election
	// RetryInterval is how soon the agent tries again when something is
	// pending (a workload interface that does not exist yet) or an apply
	// failed. Default 250ms.
	RetryInterval time.Duration
}

// Defaults fills the unset fields.
func (c *Config) Defaults() {
	if c.StatusSocket == "" && c.NodeName != "" {
		c.StatusSocket = StatusSocketPath(c.NodeName)
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 5 * time.Second
	}
	if c.ApplyDelay == 0 {
		c.ApplyDelay = 10 * time.Millisecond
	}
	if c.IPv4Autodetection == "" {
		c.IPv4Autodetection = "first-found"
	}
	if c.IPv6Autodetection == "" {
		c.IPv6Autodetection = "none"
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 250 * time.Millisecond
	}
}

// Validate reports every problem of c, naming the field.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node: must be set"))
	}
	if c.StatusSocket != "" && !filepath.IsAbs(c.StatusSocket) {
		errs = append(errs, fmt.Errorf("status-socket: %q: must be an absolute path", c.StatusSocket))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"probe-interval", c.ProbeInterval}, {"apply-delay", c.ApplyDelay}, {"retry-interval", c.RetryInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v: must not be negative", d.name, d.v))
		}
	}
	for _, m := range []struct{ name, v string }{{"ipv4-autodetection", c.IPv4Autodetection}, {"ipv6-autodetection", c.IPv6Autodetection}} {
		if m.v == "none" {
			continue
		}
		if _, err := nodeaddr.ParseMethod(m.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", m.name, m.v, err))
		}
	}
	return errors.Join(errs...)
}
