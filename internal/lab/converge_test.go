package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
)

// fakeAgent serves /v1/status on a unix socket, reporting as applied the
// revision of the sync marker in store (a following agent) unless stuck.
type fakeAgent struct {
	stuck atomic.Bool
}

func (f *fakeAgent) serve(t *testing.T, socket string, store datastore.Store) {
	t.Helper()
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := agent.Status{Ready: true}
		if !f.stuck.Load() {
			kv, err := store.Get(r.Context(), agent.SyncMarkerKey)
			if err != nil && !errors.Is(err, datastore.ErrNotFound) {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			st.AppliedRevision = kv.Revision
		}
		_ = json.NewEncoder(w).Encode(st)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

func TestWaitConverged(t *testing.T) {
	_, cfg := etcdtest.StartTestServer(t)
	store := etcdtest.NewStore(t, cfg)
	dir := t.TempDir()
	st := &State{Name: "conv", ClientURL: cfg.Endpoints[0]}
	agents := map[string]*fakeAgent{}
	for _, n := range []string{"n1", "n2"} {
		sock := filepath.Join(dir, n+".sock")
		agents[n] = &fakeAgent{}
		agents[n].serve(t, sock, store)
		st.Nodes = append(st.Nodes, Node{Name: n, Socket: sock})
	}

	if err := WaitConverged(context.Background(), st); err != nil {
		t.Fatalf("both agents follow: %v", err)
	}
	// Each call writes the marker again: the revision goes up.
	first, err := store.Get(context.Background(), agent.SyncMarkerKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitConverged(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	second, err := store.Get(context.Background(), agent.SyncMarkerKey)
	if err != nil || second.Revision <= first.Revision {
		t.Fatalf("marker revisions %d then %d (%v)", first.Revision, second.Revision, err)
	}

	agents["n2"].stuck.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = WaitConverged(ctx, st)
	if err == nil {
		t.Fatal("converged with n2 stuck")
	}
	msg := err.Error()
	if !strings.Contains(msg, "lagging: n2 (applied revision 0)") || strings.Contains(msg, "n1 (") || !strings.Contains(msg, "timed out") {
		t.Errorf("error: %v", err)
	}

	// A node whose agent does not answer lags too, and is named.
	st.Nodes = append(st.Nodes, Node{Name: "n3", Socket: filepath.Join(dir, "none.sock")})
	agents["n2"].stuck.Store(false)
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := WaitConverged(ctx2, st); err == nil || !strings.Contains(err.Error(), "lagging: n3 (asking the agent") {
		t.Errorf("with n3 down: %v", err)
	}
}
