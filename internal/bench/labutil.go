package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/lab"
)

// benchLab is a lab a suite built. Suites defer Down right after upLab
// succeeds, so that the lab goes also when the suite fails or its context
// ends (Ctrl-C).
type benchLab struct {
	*lab.State
	o    *Options
	once sync.Once
	err  error
	// client is opened on first use and closed by Down.
	mu     sync.Mutex
	client *datastore.Client
}

// labName is the name of a suite's lab: the options' prefix, a dash and
// the suite's own part ("s1", "b10"); at most 16 characters.
func labName(o *Options, part string) (string, error) {
	name := o.LabPrefix + "-" + part
	if err := lab.CheckName(name); err != nil {
		return "", fmt.Errorf("lab prefix %q: %w", o.LabPrefix, err)
	}
	return name, nil
}

// upLab builds a lab with the suite's binary and logger; cfg.Name is
// required. lab.Up takes down what it built if it fails.
func upLab(ctx context.Context, o *Options, cfg lab.Config) (*benchLab, error) {
	cfg.Binary = o.Binary
	cfg.Log = o.Log
	start := time.Now()
	st, err := lab.Up(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lab %s (%d nodes): %w", cfg.Name, cfg.Nodes, err)
	}
	o.Log.Debug("lab up", "lab", cfg.Name, "nodes", cfg.Nodes, "took", time.Since(start))
	return &benchLab{State: st, o: o}, nil
}

// Down takes the lab down (lab.Down: CNI DEL of every workload, several at
// a time, then everything else). It works after ctx ended, and only once:
// later calls return the first call's result.
func (l *benchLab) Down() error {
	l.once.Do(func() {
		start := time.Now()
		l.mu.Lock()
		if l.client != nil {
			l.client.Store().Close()
		}
		l.mu.Unlock()
		warn := func(err error) { l.o.Log.Warn("taking the lab down", "lab", l.Name, "err", err) }
		l.err = lab.Down(l.Name, warn)
		l.o.Log.Debug("lab down", "lab", l.Name, "took", time.Since(start), "err", l.err)
	})
	return l.err
}

// Client is a datastore client for the lab (through its relay), opened on
// first use and closed by Down.
func (l *benchLab) Client(ctx context.Context) (*datastore.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	cfg := etcd.ClientConfig{Endpoints: []string{l.ClientURL}}
	cfg.Defaults()
	store, err := etcd.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, fmt.Errorf("connecting to the datastore of lab %s: %w", l.Name, err)
	}
	l.client = datastore.NewClient(store)
	return l.client, nil
}

// withLab runs fn with a new lab that is taken down afterwards, and joins
// the errors of both.
func withLab(ctx context.Context, o *Options, cfg lab.Config, fn func(l *benchLab) error) (err error) {
	l, err := upLab(ctx, o, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("taking lab %s down: %w", l.Name, derr))
		}
	}()
	return fn(l)
}
