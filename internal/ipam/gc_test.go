package ipam

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore/memory"
)

// alwaysLeader is the trivial Election of a single collector: it leads
// at once, until ctx ends. It counts campaigns and resignations.
type alwaysLeader struct {
	campaigns, resigns atomic.Int32
	term               time.Duration // if set, each leadership ends after it
}

func (e *alwaysLeader) Campaign(ctx context.Context) (context.Context, error) {
	e.campaigns.Add(1)
	if e.term > 0 {
		lctx, cancel := context.WithTimeout(ctx, e.term)
		go func() { <-lctx.Done(); cancel() }()
		return lctx, nil
	}
	return ctx, nil
}

func (e *alwaysLeader) Resign(context.Context) error {
	e.resigns.Add(1)
	return nil
}

// TestGCRun runs the GC loop with an always-leader election over the
// memory store: it releases an orphaned allocation by itself, survives
// losing and regaining the leadership, and returns when its context
// ends.
func TestGCRun(t *testing.T) {
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustApply(t, s, testPool("pool", "10.90.0.0/24", 26), testNode("n1"))
	a, err := New(s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: "orphan", Num4: 2}); err != nil {
		t.Fatal(err)
	}
	gc, err := NewGC(s, GCConfig{Interval: 5 * time.Millisecond, LeakGracePeriod: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	el := &alwaysLeader{term: 30 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- gc.Run(ctx, el) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := Check(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.Allocated == 0 && el.campaigns.Load() >= 2 {
			if !r.Clean() {
				t.Errorf("not clean after GC:\n%s", formatReport(r))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC did not release the orphan (campaigns %d):\n%s", el.campaigns.Load(), formatReport(r))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if c, r := el.campaigns.Load(), el.resigns.Load(); c != r {
		t.Errorf("%d campaigns but %d resignations", c, r)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{MaxRetries: -1}
	c.Defaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "MaxRetries") {
		t.Errorf("Validate = %v, want a MaxRetries error", err)
	}
	g := GCConfig{Interval: -time.Second, LeakGracePeriod: -time.Second}
	g.Defaults()
	err := g.Validate()
	for _, want := range []string{"Interval", "LeakGracePeriod"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("GCConfig.Validate = %v, want an error naming %s", err, want)
		}
	}
	if _, err := New(memory.New(), Config{MaxRetries: 5000}); err == nil {
		t.Error("New accepted MaxRetries 5000")
	}
}
