// Package startup tunes the Go runtime for a process that runs as a CNI
// plugin, from a package initializer: early enough to matter, because the
// initializers of the packages the tabby binary links (the embedded etcd
// server, GoBGP, Prometheus, …) allocate enough to start a garbage
// collection, which then scans the binary's large data segments; in a
// plugin process that lives for some milliseconds that collection costs
// about a third of the process's CPU time.
//
// Go initializes packages in import-path order as soon as their imports
// are initialized; this package imports only the standard library, so it
// runs before the heavy initializers, which all wait for
// google.golang.org/… packages. cmd/tabby imports it for its side effect.
package startup

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// IPAMPluginName is the name under which the binary runs as the IPAM
// plugin.
const IPAMPluginName = "tabby-ipam"

// Plugin reports whether a process with these arguments and environment
// runs as a CNI plugin: invoked as tabby-ipam, or with CNI_COMMAND set.
func Plugin(args []string, getenv func(string) string) bool {
	return (len(args) > 0 && filepath.Base(args[0]) == IPAMPluginName) || getenv("CNI_COMMAND") != ""
}

func init() {
	if !Plugin(os.Args, os.Getenv) {
		return
	}
	// A plugin allocates a few megabytes and mostly waits for the
	// datastore and the agent: garbage collection, and a scheduler
	// spinning on several cores, would only cost CPU, which many ADDs at
	// once on a node are short of. The memory limit still collects if a
	// plugin that waits long (a large policy_timeout) grows past it.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(64 << 20)
	runtime.GOMAXPROCS(1)
	// The packages initialized after this one (the embedded etcd server
	// above all) register some hundred metrics with Prometheus's default
	// registry. Each registration runs the collector's Describe in a new
	// goroutine and waits for it, and as the main goroutine is locked to
	// its thread during initialization every registration hands the
	// processor between two threads. A plugin serves no metrics, so it
	// registers them nowhere. (This package imports Prometheus, so it is
	// initialized after it but, by import path, before go.etcd.io/….)
	prometheus.DefaultRegisterer = discard{}
}

// discard is a prometheus.Registerer that keeps nothing.
type discard struct{}

func (discard) Register(prometheus.Collector) error  { return nil }
func (discard) MustRegister(...prometheus.Collector) {}
func (discard) Unregister(prometheus.Collector) bool { return true }
