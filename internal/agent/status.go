package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/policy"
)

// EndpointStatus is what the agent reports about one local endpoint.
type EndpointStatus struct {
	// Programmed is true when the endpoint's interface is configured, its
	// routes are in the kernel and its policy is in nftables.
	Programmed bool `json:"programmed"`
	// Revision is the datastore revision of the WorkloadEndpoint that was
	// programmed; a client that wrote the endpoint waits until Revision is
	// at least the revision it wrote.
	Revision int64 `json:"revision"`
	// Problem says why the endpoint is not programmed yet, if known.
	Problem string `json:"problem,omitempty"`
}

// Status is the agent's overall state.
type Status struct {
	Node string `json:"node"`
	// Ready: in sync with the datastore, the datastore is reachable and
	// the last apply succeeded.
	Ready bool `json:"ready"`
	// InSync: every resource has been read from the datastore at least
	// once since start.
	InSync bool `json:"inSync"`
	// DatastoreOK: the last datastore probe succeeded.
	DatastoreOK bool `json:"datastoreOK"`
	// LastApplyError is the error of the last apply, if it failed.
	LastApplyError string `json:"lastApplyError,omitempty"`
	// Endpoints counts local endpoints, and Programmed those programmed.
	Endpoints  int `json:"endpoints"`
	Programmed int `json:"programmed"`
	// AppliedRevision is the datastore revision up to which every change
	// the agent has received was applied to the dataplane (nftables,
	// links, routes, BGP) without error; 0 before the first such apply.
	// Work left pending (an interface that does not exist yet) does not
	// hold it back: EndpointStatus reports that per endpoint. The agent
	// only follows the kinds it needs, so a client that wants every agent
	// past its own writes bumps SyncMarkerKey, which every agent follows,
	// and waits for that revision (lab.WaitConverged does).
	AppliedRevision int64 `json:"appliedRevision"`
}

// SyncMarkerKind is a datastore kind that every agent follows and that
// carries no configuration: writing SyncMarkerKey yields a revision that
// every agent's AppliedRevision reaches once it has applied every change
// written before it.
const SyncMarkerKind = "SyncMarker"

// SyncMarkerKey is the one key of SyncMarkerKind.
var SyncMarkerKey = datastore.Key{Kind: SyncMarkerKind, Name: "marker"}

// statusBoard holds what the HTTP handlers read; the agent loop writes it.
type statusBoard struct {
	mu        sync.Mutex
	status    Status
	endpoints map[policy.EndpointID]EndpointStatus
	alive     time.Time // last time the loop went round
	// changed is closed, and replaced, by every update: waiters select on
	// it (see waitEndpoint).
	changed chan struct{}
	// bgp returns the BGP sessions; nil when BGP does not run.
	bgp func(context.Context) ([]BGPPeerStatus, error)
}

// BGPPeerStatus is one BGP session, as `tabby node status` shows it.
type BGPPeerStatus struct {
	Peer             string        `json:"peer"`
	ASNumber         uint32        `json:"asNumber"`
	Type             string        `json:"type"`
	Name             string        `json:"name,omitempty"`
	State            string        `json:"state"`
	Uptime           time.Duration `json:"uptime"`
	RoutesReceived   int           `json:"routesReceived"`
	RoutesAdvertised int           `json:"routesAdvertised"`
}

func newStatusBoard(node string) *statusBoard {
	return &statusBoard{status: Status{Node: node}, endpoints: map[policy.EndpointID]EndpointStatus{}, changed: make(chan struct{})}
}

func (b *statusBoard) update(f func(s *Status, eps map[policy.EndpointID]EndpointStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.status, b.endpoints)
	close(b.changed)
	b.changed = make(chan struct{})
	b.status.Ready = b.status.InSync && b.status.DatastoreOK && b.status.LastApplyError == ""
	b.status.Endpoints, b.status.Programmed = len(b.endpoints), 0
	for _, e := range b.endpoints {
		if e.Programmed {
			b.status.Programmed++
		}
	}
}

func (b *statusBoard) touch(now time.Time) {
	b.mu.Lock()
	b.alive = now
	b.mu.Unlock()
}

func (b *statusBoard) snapshot() (Status, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status, b.alive
}

func (b *statusBoard) endpoint(id policy.EndpointID) (EndpointStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.endpoints[id]
	return e, ok
}

// livenessTimeout is how long the agent loop may be stuck before /healthz
// fails.
const livenessTimeout = 2 * time.Minute

// healthHandler serves /healthz (the loop is alive), /readyz (Status.Ready)
// and /metrics.
func (b *statusBoard) healthHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, alive := b.snapshot()
		if time.Since(alive) > livenessTimeout {
			http.Error(w, fmt.Sprintf("agent loop stuck since %s", alive.Format(time.RFC3339)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s, _ := b.snapshot()
		if !s.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		writeJSON(w, s)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// statusHandler serves the local status API on the unix socket:
// GET /v1/status and GET /v1/endpoints/{namespace}/{name}.
func (b *statusBoard) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		s, _ := b.snapshot()
		writeJSON(w, s)
	})
	mux.HandleFunc("GET /v1/bgp", func(w http.ResponseWriter, r *http.Request) {
		if b.bgp == nil {
			writeJSON(w, []BGPPeerStatus{})
			return
		}
		peers, err := b.bgp(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, peers)
	})
	mux.HandleFunc("GET /v1/endpoints/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		id := policy.WorkloadEndpointID(r.PathValue("namespace"), r.PathValue("name"))
		e, ok, err := b.endpointRequest(r, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			writeJSON(w, EndpointStatus{Problem: "the agent does not know this endpoint (yet)"})
			return
		}
		writeJSON(w, e)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// serve runs h on l until ctx is done.
func serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("status server stopped", "addr", l.Addr().String(), "err", err)
	}
}

// listenUnix listens on a unix socket path, replacing a stale socket file.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return l, nil
}
