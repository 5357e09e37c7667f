package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/policy"
)

// A long poll on the status socket returns as soon as the endpoint is
// programmed at the wanted revision, not before, and at the end of its
// wait otherwise; a bad wait parameter is a 400 that names it.
func TestStatusLongPoll(t *testing.T) {
	b := newStatusBoard("n1")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go serve(ctx, l, b.statusHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := NewStatusClient(sock)
	id := policy.WorkloadEndpointID("ns1", "wep1")

	// Not known: the wait runs out and the answer says so.
	start := time.Now()
	_, known, err := c.WaitEndpoint(ctx, "ns1", "wep1", 5, 50*time.Millisecond)
	if err != nil || known {
		t.Fatalf("unknown endpoint: known=%v err=%v", known, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("returned after %v, before its wait of 50ms", d)
	}

	type answer struct {
		st    EndpointStatus
		known bool
		err   error
		at    time.Time
	}
	got := make(chan answer, 1)
	go func() {
		st, known, err := c.WaitEndpoint(ctx, "ns1", "wep1", 5, 10*time.Second)
		got <- answer{st, known, err, time.Now()}
	}()
	time.Sleep(30 * time.Millisecond)
	// An older revision, programmed, does not end the wait.
	b.update(func(_ *Status, eps map[policy.EndpointID]EndpointStatus) {
		eps[id] = EndpointStatus{Programmed: true, Revision: 4}
	})
	// The wanted revision, not yet programmed, does not either.
	b.update(func(_ *Status, eps map[policy.EndpointID]EndpointStatus) {
		eps[id] = EndpointStatus{Programmed: false, Revision: 5, Problem: "link missing"}
	})
	select {
	case a := <-got:
		t.Fatalf("returned early: %+v", a)
	case <-time.After(50 * time.Millisecond):
	}
	done := time.Now()
	b.update(func(_ *Status, eps map[policy.EndpointID]EndpointStatus) {
		eps[id] = EndpointStatus{Programmed: true, Revision: 6}
	})
	select {
	case a := <-got:
		if a.err != nil || !a.known || !a.st.Programmed || a.st.Revision != 6 {
			t.Fatalf("answer %+v", a)
		}
		if d := a.at.Sub(done); d > time.Second {
			t.Fatalf("answered %v after the endpoint was programmed", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the endpoint was programmed")
	}

	// Without wait, the request answers at once (as before).
	if st, known, err := c.Endpoint(ctx, "ns1", "wep1"); err != nil || !known || st.Revision != 6 {
		t.Fatalf("plain request: %+v %v %v", st, known, err)
	}
	// A bad parameter names itself.
	if _, err := c.get(ctx, "/v1/endpoints/ns1/wep1?wait=soon", &EndpointStatus{}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad wait: err = %v", err)
	}
}
